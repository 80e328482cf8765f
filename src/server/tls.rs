//! HTTPS for the demo server: [`TlsStream`] runs a `rustls` server
//! connection over any engine's [`Stream`] and is itself a [`Stream`], so
//! the one connection loop ([`conn`](super::conn)), reaper and accept loop
//! serve TLS on io_uring and on epoll alike. Plain connections never meet
//! it: the accept loop is monomorphised per stream type.
//!
//! rustls is sans-I/O: it turns received ciphertext into plaintext and
//! plaintext to send into ciphertext, and says when it has something to
//! send. This file moves bytes between it and the socket:
//! - a read ([`Stream::read_append`]) first hands out plaintext rustls has
//!   already decrypted, then sends whatever rustls wants sent (handshake
//!   messages, session tickets, alerts), then reads ciphertext from the
//!   socket and feeds it in, until there is plaintext or the stream ends.
//!   The handshake is simply what the first reads do, so it runs under the
//!   deadline the connection loop puts on reading a request head: a client
//!   that connects and says nothing, or stops mid-handshake, is cut off by
//!   the idle timeout like any slowloris;
//! - a write encrypts and sends the ciphertext in one socket write per
//!   64 KiB of plaintext (rustls's send buffer limit);
//! - an orderly close sends `close_notify` first ([`Stream::close_notify`]);
//! - a read and a write may be under way at once (HTTP/2 keeps a read
//!   pending while it answers), and both may send: what rustls has to send
//!   is taken and written under one lock (the output buffer's), so records
//!   reach the socket whole and in the order rustls made them.
//!
//! Buffers stay owned, as the io_uring engine needs: ciphertext in and out
//! lives in `Vec`s moved into each socket operation and back. A timeout
//! that drops an operation takes its buffer with it; the connection is over
//! then anyway (see [`io`](super::io)), and a missing buffer is simply a new
//! empty one.
//!
//! A TLS error (a bad ClientHello, plain HTTP sent to the TLS port, a bad
//! record) is a read error: rustls's alert is sent if the socket takes it
//! at once, and the connection loop aborts the connection, quietly.
//!
//! Memory: an idle TLS connection held about 22 KiB of the server against
//! about 5 KiB for a plain one (2,000 idle connections after one request
//! each, Python's ssl client, TLS 1.3): rustls's state and buffers, and
//! the 4 KiB ciphertext buffer of the read in flight.

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection};

use super::io::Stream;

/// A ciphertext output buffer up to this size is kept between writes (an
/// answer's records usually fit); a larger one, grown by a big body, is
/// freed, as the connection loop does with its own output buffer.
const KEEP_OUT: usize = 4096;

/// A server-side TLS connection over an engine's stream.
pub(crate) struct TlsStream<S> {
    inner: S,
    tls: RefCell<ServerConnection>,
    /// Ciphertext read from the socket that rustls has not taken yet
    /// (it takes no more while its plaintext buffer is full).
    incoming: Cell<Vec<u8>>,
    /// The output buffer, empty between writes; its lock is held from
    /// taking rustls's records until they are written.
    outgoing: tokio::sync::Mutex<Vec<u8>>,
}

impl<S: Stream> TlsStream<S> {
    /// Starts the server side of a TLS connection over `inner`; nothing is
    /// read or written until the first read.
    pub(crate) fn new(inner: S, config: &Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(TlsStream {
            inner,
            tls: RefCell::new(ServerConnection::new(config.clone())?),
            incoming: Cell::default(),
            outgoing: tokio::sync::Mutex::default(),
        })
    }

    /// Appends decrypted plaintext to `buf`, at most its spare capacity.
    /// `None` when there is none yet; `Some(Ok(0))` after the peer's
    /// `close_notify`.
    fn take_plaintext(&self, buf: &mut Vec<u8>) -> Option<io::Result<usize>> {
        let mut tls = self.tls.borrow_mut();
        let mut reader = tls.reader();
        let mut taken = 0;
        loop {
            let room = buf.capacity() - buf.len();
            if room == 0 {
                return Some(Ok(taken));
            }
            match reader.fill_buf() {
                Ok([]) => return Some(Ok(taken)),
                Ok(chunk) => {
                    let n = chunk.len().min(room);
                    buf.extend_from_slice(&chunk[..n]);
                    reader.consume(n);
                    taken += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return (taken > 0).then_some(Ok(taken));
                }
                Err(e) => return Some(if taken > 0 { Ok(taken) } else { Err(e) }),
            }
        }
    }

    /// Hands buffered ciphertext to rustls and processes it, keeping what
    /// it does not take yet. Returns whether it took any.
    fn feed(&self, incoming: &mut Vec<u8>) -> io::Result<bool> {
        let mut tls = self.tls.borrow_mut();
        let mut rest: &[u8] = incoming;
        while !rest.is_empty() {
            match tls.read_tls(&mut rest) {
                Ok(n) if n > 0 => {}
                // `Ok(0)`: a close_notify was received, nothing more is
                // taken. `Err`: its plaintext buffer is full until read.
                _ => break,
            }
            tls.process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        let taken = incoming.len() - rest.len();
        incoming.drain(..taken);
        Ok(taken > 0)
    }

    /// Sends everything rustls has to send.
    async fn flush(&self) -> io::Result<()> {
        let mut held = self.outgoing.lock().await;
        let mut out = std::mem::take(&mut *held);
        {
            let mut tls = self.tls.borrow_mut();
            // Writing into a `Vec` cannot fail; `Ok(0)` would mean nothing
            // is left.
            while tls.wants_write() {
                match tls.write_tls(&mut out) {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
        }
        if out.is_empty() {
            *held = out;
            return Ok(());
        }
        let (res, mut out) = self.inner.write_vec(out).await;
        if out.capacity() <= KEEP_OUT {
            out.clear();
            *held = out;
        }
        res
    }

    /// Encrypts and sends all of `data`.
    async fn write_plain(&self, mut data: &[u8]) -> io::Result<()> {
        loop {
            let took = self.tls.borrow_mut().writer().write(data)?;
            data = &data[took..];
            self.flush().await?;
            if data.is_empty() {
                return Ok(());
            }
            if took == 0 {
                // Nothing was buffered and nothing is pending: rustls takes
                // no more (the connection is closing).
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
    }
}

impl<S: Stream> Stream for TlsStream<S> {
    async fn read_append(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        if buf.len() == buf.capacity() {
            // No room would read 0 bytes, which means end of stream.
            buf.reserve(4096);
        }
        let mut stalled = false;
        loop {
            if let Some(res) = self.take_plaintext(&mut buf) {
                return (res, buf);
            }
            if stalled {
                // rustls took none of the bytes and made no plaintext of
                // them: reading more would loop for ever.
                let e = io::Error::new(io::ErrorKind::InvalidData, "TLS input not consumed");
                return (Err(e), buf);
            }
            // Handshake messages, tickets or a key update to answer, before
            // waiting for the peer (which may be waiting for them).
            if let Err(e) = self.flush().await {
                return (Err(e), buf);
            }
            let mut incoming = self.incoming.take();
            if incoming.is_empty() {
                let (res, got) = self.inner.read_append(incoming).await;
                incoming = got;
                match res {
                    Ok(n) if n > 0 => {}
                    // The peer closed the socket, mid-handshake or without a
                    // close_notify: nobody is left to answer either way.
                    Ok(_) => {
                        self.incoming.set(incoming);
                        return (Ok(0), buf);
                    }
                    Err(e) => return (Err(e), buf),
                }
            }
            let fed = self.feed(&mut incoming);
            self.incoming.set(incoming);
            match fed {
                Ok(took) => stalled = !took,
                Err(e) => {
                    // The alert rustls queued, if the socket takes it now;
                    // the caller's deadline bounds this too.
                    let _ = self.flush().await;
                    return (Err(e), buf);
                }
            }
        }
    }

    async fn write_vec(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let res = self.write_plain(&buf).await;
        (res, buf)
    }

    async fn write_static(&self, buf: &'static [u8]) -> io::Result<()> {
        self.write_plain(buf).await
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    fn speaks_h2(&self) -> bool {
        self.tls.borrow().alpn_protocol() == Some(b"h2")
    }

    async fn close_notify(&self, limit: Duration) {
        self.tls.borrow_mut().send_close_notify();
        let _ = tokio::time::timeout(limit, self.flush()).await;
    }

    async fn end_turn() {
        S::end_turn().await;
    }
}
