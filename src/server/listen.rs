//! The server's listening sockets: one `SO_REUSEPORT` group shared by its
//! threads and by nobody else, with room in the kernel's accept queues for a
//! burst of 10,000 connects.
//!
//! **An address another process holds is refused.** `SO_REUSEPORT` lets any
//! socket of the same user that also sets it join a group, so a second
//! `serve` on a busy port used to start silently and take a share of the
//! connections. The first listener is therefore bound *without*
//! `SO_REUSEPORT`: the bind fails with EADDRINUSE if any other socket
//! listens there (with or without the option), as Python's and nginx's do.
//! Only then is `SO_REUSEPORT` set on it, and the other listeners bind to
//! the same address with it. Linux checks the option when a socket binds
//! and forms the group when the sockets listen, so ours form one group.
//! (A socket of the same user that sets `SO_REUSEPORT` can still join later,
//! as it can join nginx's `reuseport` listeners; a second `serve` cannot,
//! since its own first bind is exclusive.)
//!
//! **Accept-queue room.** Each listener queues at most `net.core.somaxconn`
//! connections (4096 by default since Linux 5.4); past that the kernel drops
//! SYNs and the client retries after its 1 s retransmit timeout. The kernel
//! spreads connections over a group's sockets by a hash of the address
//! pair, evenly, so several listeners per thread multiply the room. Enough
//! are opened for [`ACCEPT_ROOM`] in all, read from `/proc` at start.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Connections the listeners together can queue before SYNs are dropped:
/// a 10,000-connect burst with room to spare for an uneven hash (figures in
/// bench/README.md, "C10K against the demo server").
pub(crate) const ACCEPT_ROOM: usize = 16 * 1024;

/// At most this many listeners per thread, whatever `somaxconn` says.
const MAX_PER_THREAD: usize = 8;

/// What `listen` asks for. The kernel caps it at `somaxconn`.
const BACKLOG: i32 = 65_535;

/// Every listener of one server.
pub(crate) struct Listeners {
    /// Where they listen (the port the kernel chose for port 0).
    pub addr: SocketAddr,
    /// One list per server thread, each with the same number of listeners.
    pub per_thread: Vec<Vec<TcpListener>>,
}

/// Binds `threads` times [`per_thread`] listeners on `addr`, non-blocking,
/// in one `SO_REUSEPORT` group that no other process was in.
pub(crate) fn bind(addr: SocketAddr, threads: usize) -> io::Result<Listeners> {
    let threads = threads.max(1);
    let per = per_thread(threads, somaxconn());
    let first = open(addr, false).map_err(|e| refused(addr, e))?;
    let addr = first.local_addr()?;
    let mut per_thread = Vec::with_capacity(threads);
    let mut first = Some(first);
    for _ in 0..threads {
        let mut mine = Vec::with_capacity(per);
        for _ in 0..per {
            let l = match first.take() {
                Some(l) => l,
                None => open(addr, true).map_err(|e| refused(addr, e))?,
            };
            mine.push(l);
        }
        per_thread.push(mine);
    }
    // Listen only once all are bound: a group forms as its sockets listen,
    // and the listeners are spread evenly over the threads.
    for l in per_thread.iter().flatten() {
        socket2::SockRef::from(l).listen(BACKLOG)?;
    }
    Ok(Listeners { addr, per_thread })
}

/// A bound, non-blocking TCP socket with `SO_REUSEADDR` (a restart need not
/// wait out TIME_WAIT) and, if `join`, `SO_REUSEPORT` before the bind; the
/// first one (`join == false`) gets it after its exclusive bind.
fn open(addr: SocketAddr, join: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if join {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    if !join {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Says which address could not be had, and why in words for EADDRINUSE.
fn refused(addr: SocketAddr, e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::AddrInUse {
        io::Error::new(
            e.kind(),
            format!(
                "cannot listen on {addr}: address already in use (another process listens \
                 there; stop it or choose another --addr)"
            ),
        )
    } else {
        io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
    }
}

/// `net.core.somaxconn`, or Linux's default since 5.4 if unreadable.
pub(crate) fn somaxconn() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(4096)
}

/// Listeners per thread for [`ACCEPT_ROOM`] in all, each queueing
/// `min(somaxconn, BACKLOG)`.
fn per_thread(threads: usize, somaxconn: usize) -> usize {
    let each = somaxconn.min(BACKLOG as usize).max(1);
    let total = ACCEPT_ROOM.div_ceil(each);
    total.div_ceil(threads).clamp(1, MAX_PER_THREAD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    #[test]
    fn enough_listeners_for_the_room() {
        assert_eq!(per_thread(1, 4096), 4);
        assert_eq!(per_thread(2, 4096), 2);
        assert_eq!(per_thread(3, 4096), 2);
        assert_eq!(per_thread(16, 4096), 1);
        assert_eq!(per_thread(2, 65_535), 1);
        assert_eq!(per_thread(2, 1 << 20), 1);
        assert_eq!(per_thread(1, 128), MAX_PER_THREAD);
        assert_eq!(per_thread(1, 0), MAX_PER_THREAD);
    }

    /// Our own listeners share the port and each gets connections.
    #[test]
    fn one_group_for_our_listeners() {
        let ls = bind("127.0.0.1:0".parse().unwrap(), 2).expect("bind");
        let all: Vec<&TcpListener> = ls.per_thread.iter().flatten().collect();
        assert!(all.len() >= 2);
        let clients: Vec<TcpStream> = (0..64)
            .map(|_| TcpStream::connect(ls.addr).expect("connect"))
            .collect();
        let mut counts = vec![0; all.len()];
        let start = std::time::Instant::now();
        while counts.iter().sum::<usize>() < clients.len() {
            assert!(start.elapsed().as_secs() < 5, "accepted {counts:?}");
            for (i, l) in all.iter().enumerate() {
                if let Ok((mut s, _)) = l.accept() {
                    counts[i] += 1;
                    let _ = s.write_all(b"x");
                }
            }
        }
        assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
        let mut c = &clients[0];
        let mut b = [0u8; 1];
        assert_eq!(c.read(&mut b).ok(), Some(1));
    }

    /// Whoever else listens on the address, with or without `SO_REUSEPORT`,
    /// the bind fails with "address already in use".
    #[test]
    fn a_foreign_listener_is_refused() {
        let plain = TcpListener::bind("127.0.0.1:0").expect("bind");
        let shared = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        shared.set_reuse_port(true).expect("reuseport");
        shared
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .expect("bind");
        shared.listen(8).expect("listen");
        let shared_addr = shared.local_addr().unwrap().as_socket().unwrap();
        for addr in [plain.local_addr().unwrap(), shared_addr] {
            let e = bind(addr, 2).err().expect("refused");
            assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
            assert!(e.to_string().contains("address already in use"), "{e}");
            assert!(e.to_string().contains(&addr.to_string()), "{e}");
        }
        // A second server of ours on the first one's port, too.
        let ours = bind("127.0.0.1:0".parse().unwrap(), 1).expect("bind");
        assert!(bind(ours.addr, 1).is_err());
    }
}
