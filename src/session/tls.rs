//! The session's TLS layer: a rustls client connection between the
//! socket's bytes and the HTTP bytes, with no I/O of its own.
//!
//! Ciphertext goes out in chunks the driver may hold by address or by
//! ownership until the kernel has taken them: `sending` is never changed
//! while any of it is unsent, and what rustls produces meanwhile waits in
//! `next`. Received ciphertext goes through rustls at once and the
//! plaintext comes back to the session in a scratch buffer it reuses.
//!
//! Under kernel TLS (`--ktls`, see [`crate::ktls`]) the handshake runs on
//! rustls' unbuffered connection, the one that can hand its keys over.
//! Once it is done, the first requests are encrypted here (after the
//! handshake's last flight, in one send), the keys leave rustls, and the
//! driver installs them on the socket in two steps the session asks for:
//! the receive side before that send goes out (what the server answers
//! to it, tickets first, must reach the kernel's TLS, not the driver's
//! receive as ciphertext), the send side once it has gone (a send after
//! that is encrypted by the kernel). From then on the driver moves
//! plaintext; what rustls still does is keep the server's session
//! tickets ([`TlsLayer::on_record`]).

use std::io::{self, BufRead, Write};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rustls::client::{ClientConnection, ClientConnectionData, UnbufferedClientConnection};
use rustls::kernel::KernelConnection;
use rustls::pki_types::ServerName;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};

use crate::ktls::{self, Dir};

/// What the received bytes amounted to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// Go on (plaintext, if any, is in the buffer given).
    More,
    /// The peer closed the TLS session (`close_notify`): treat as end of
    /// stream after the plaintext.
    Closed,
}

/// Which rustls connection does the TLS, and where the keys are. The
/// userspace connection is the common one and stays inline: the whole
/// layer is boxed in its session.
#[allow(clippy::large_enum_variant)]
enum Conn {
    /// rustls encrypts and decrypts for the whole connection.
    User(ClientConnection),
    /// A handshake whose keys go to the kernel once it is `done`.
    ForKernel {
        conn: Box<UnbufferedClientConnection>,
        /// Received ciphertext not yet taken by rustls.
        incoming: Vec<u8>,
        done: bool,
    },
    /// The kernel has (or is about to get) the keys.
    Kernel(Box<Kernel>),
    /// Between two of the above (never seen outside a method).
    Gone,
}

/// A connection whose keys the kernel takes.
struct Kernel {
    /// What rustls still does: keep session tickets.
    conn: KernelConnection<ClientConnectionData>,
    /// Each direction's `tls_crypto_info` until the driver installed it.
    rx: Option<Vec<u8>>,
    tx: Option<Vec<u8>>,
    /// A handshake message split over records.
    partial: Vec<u8>,
}

impl Drop for Kernel {
    fn drop(&mut self) {
        // Key material does not outlive its use.
        for info in [&mut self.rx, &mut self.tx].into_iter().flatten() {
            info.fill(0);
        }
    }
}

/// One connection's TLS state.
pub(crate) struct TlsLayer {
    conn: Conn,
    /// The ciphertext chunk offered to the driver, and how much of it went.
    sending: Bytes,
    sent: usize,
    /// Ciphertext produced while `sending` was out.
    next: Vec<u8>,
    /// When the handshake started (the TCP connect ended).
    pub started: Instant,
    /// Whether any byte came from the peer yet (a plaintext server is
    /// told apart by its first bytes).
    heard: bool,
    /// Whether the handshake resumed a session (kept once rustls is gone).
    resumed: bool,
}

impl std::fmt::Debug for TlsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsLayer")
            .field("handshaking", &self.is_handshaking())
            .field("kernel", &matches!(self.conn, Conn::Kernel(_)))
            .field(
                "unsent",
                &(self.sending.len() - self.sent + self.next.len()),
            )
            .finish()
    }
}

impl TlsLayer {
    /// Starts a handshake: the ClientHello is ready to send. `kernel`:
    /// the keys go to the kernel after it (the configuration must allow
    /// their extraction).
    pub fn new(
        config: &Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
        now: Instant,
        kernel: bool,
    ) -> Result<Self, rustls::Error> {
        let conn = if kernel {
            Conn::ForKernel {
                conn: Box::new(UnbufferedClientConnection::new(config.clone(), name)?),
                incoming: Vec::new(),
                done: false,
            }
        } else {
            Conn::User(ClientConnection::new(config.clone(), name)?)
        };
        let mut layer = Self {
            conn,
            sending: Bytes::new(),
            sent: 0,
            next: Vec::new(),
            started: now,
            heard: false,
            resumed: false,
        };
        if let Conn::ForKernel { conn, incoming, .. } = &mut layer.conn {
            handshake(conn, incoming, &mut layer.next)?;
        }
        layer.flush();
        layer.promote();
        Ok(layer)
    }

    pub fn is_handshaking(&self) -> bool {
        match &self.conn {
            Conn::User(conn) => conn.is_handshaking(),
            Conn::ForKernel { done, .. } => !done,
            Conn::Kernel(_) | Conn::Gone => false,
        }
    }

    /// Whether ALPN chose HTTP/2.
    pub fn alpn_h2(&self) -> bool {
        let alpn = match &self.conn {
            Conn::User(conn) => conn.alpn_protocol(),
            Conn::ForKernel { conn, .. } => conn.alpn_protocol(),
            Conn::Kernel(_) | Conn::Gone => None,
        };
        alpn == Some(b"h2")
    }

    /// Whether the handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        let kind = match &self.conn {
            Conn::User(conn) => conn.handshake_kind(),
            Conn::ForKernel { conn, .. } => conn.handshake_kind(),
            Conn::Kernel(_) | Conn::Gone => return self.resumed,
        };
        kind == Some(rustls::HandshakeKind::Resumed)
    }

    /// The kernel decrypts what the socket receives: the driver's bytes
    /// are plaintext.
    #[inline]
    pub fn plaintext_in(&self) -> bool {
        matches!(&self.conn, Conn::Kernel(k) if k.rx.is_none())
    }

    /// The kernel encrypts what the socket sends: the driver sends
    /// plaintext.
    #[inline]
    pub fn plaintext_out(&self) -> bool {
        matches!(&self.conn, Conn::Kernel(k) if k.tx.is_none())
    }

    /// The keys of one direction the driver must install on its socket
    /// now (see the module docs), if any.
    pub fn offload_due(&self) -> Option<(Dir, &[u8])> {
        let Conn::Kernel(k) = &self.conn else {
            return None;
        };
        match (&k.rx, &k.tx) {
            (Some(rx), _) => Some((Dir::Rx, rx)),
            (None, Some(tx)) if !self.has_unsent() => Some((Dir::Tx, tx)),
            _ => None,
        }
    }

    /// The driver installed `dir`'s keys.
    pub fn offloaded(&mut self, dir: Dir) {
        if let Conn::Kernel(k) = &mut self.conn {
            let info = match dir {
                Dir::Rx => k.rx.take(),
                Dir::Tx => k.tx.take(),
            };
            if let Some(mut info) = info {
                info.fill(0);
            }
        }
    }

    /// Hands the keys over once the handshake is done and the first
    /// requests are encrypted (see the module docs). An error is why not.
    pub fn hand_to_kernel(&mut self) -> Result<(), String> {
        // Not before every record the server sent after its Finished is
        // whole and taken by rustls (its tickets, its sequence number).
        if !matches!(&self.conn, Conn::ForKernel { done: true, incoming, .. } if incoming.is_empty())
        {
            return Ok(());
        }
        let Conn::ForKernel { conn, incoming, .. } = std::mem::replace(&mut self.conn, Conn::Gone)
        else {
            return Ok(());
        };
        self.resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        if !incoming.is_empty() {
            return Err(format!(
                "the server sent {} bytes after the handshake before any request",
                incoming.len()
            ));
        }
        let (secrets, conn) = conn
            .dangerous_into_kernel_connection()
            .map_err(|e| format!("rustls kept the keys: {e}"))?;
        let version = conn.protocol_version();
        let suite = conn.negotiated_cipher_suite().suite();
        let (rx_seq, rx) = &secrets.rx;
        let (tx_seq, tx) = &secrets.tx;
        let (Some(rx), Some(tx)) = (
            ktls::crypto_info(version, rx, *rx_seq, Dir::Rx),
            ktls::crypto_info(version, tx, *tx_seq, Dir::Tx),
        ) else {
            return Err(format!("{suite:?} has no kernel TLS cipher"));
        };
        self.conn = Conn::Kernel(Box::new(Kernel {
            conn,
            rx: Some(rx),
            tx: Some(tx),
            partial: Vec::new(),
        }));
        Ok(())
    }

    /// A record that is not application data, read from a kernel TLS
    /// socket: session tickets go to rustls' store; `close_notify` ends
    /// the stream; any other alert or a key update is an error (why).
    pub fn on_record(&mut self, kind: u8, payload: &[u8]) -> Result<Received, String> {
        let Conn::Kernel(k) = &mut self.conn else {
            return Err("a TLS record outside kernel TLS (a bug)".into());
        };
        match kind {
            ktls::HANDSHAKE => {
                k.partial.extend_from_slice(payload);
                while let [typ, a, b, c, rest @ ..] = &k.partial[..] {
                    let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
                    if rest.len() < len {
                        if len > 1 << 16 {
                            return Err(format!(
                                "a {len}-byte handshake message after the handshake"
                            ));
                        }
                        break;
                    }
                    match *typ {
                        // NewSessionTicket
                        4 => {
                            // A ticket rustls cannot take is no reason to fail the
                            // exchange: the next connection does a full handshake.
                            let _ = k.conn.handle_new_session_ticket(&rest[..len]);
                        }
                        24 => {
                            return Err("the server updated its TLS keys (KeyUpdate), which kernel TLS cannot follow here (--ktls off avoids it)".into());
                        }
                        other => {
                            return Err(format!(
                                "an unexpected TLS handshake message ({other}) after the handshake"
                            ));
                        }
                    }
                    k.partial.drain(..4 + len);
                }
                Ok(Received::More)
            }
            ktls::ALERT => match payload {
                [_, 0] => Ok(Received::Closed),
                [_, desc] => Err(format!(
                    "the server sent the TLS alert {:?}",
                    rustls::AlertDescription::from(*desc)
                )),
                _ => Err("a malformed TLS alert".into()),
            },
            other => Err(format!("a TLS record of unknown type {other}")),
        }
    }

    /// Ciphertext waiting to be sent.
    #[inline]
    pub fn to_send(&self) -> &[u8] {
        self.sending.get(self.sent..).unwrap_or_default()
    }

    /// [`TlsLayer::to_send`] as a shared handle.
    pub fn to_send_bytes(&self) -> Bytes {
        self.sending.slice(self.sent.min(self.sending.len())..)
    }

    /// Whether any ciphertext waits.
    pub fn has_unsent(&self) -> bool {
        if self.holding() {
            return false;
        }
        self.sent < self.sending.len() || !self.next.is_empty()
    }

    /// The handshake is done but the keys wait for the kernel: the last
    /// flight and the first requests are held back until then (what the
    /// server answers to them must reach the kernel's TLS). Only while
    /// the server's records after its Finished (TLS 1.3 session tickets,
    /// which Go's servers send at once) are partly received.
    fn holding(&self) -> bool {
        matches!(self.conn, Conn::ForKernel { done: true, .. })
    }

    /// Whether the handshake runs for kernel TLS (its end must be read
    /// by one receive at a time: see the module docs).
    pub fn for_kernel(&self) -> bool {
        matches!(self.conn, Conn::ForKernel { .. })
    }

    /// The kernel took `n` bytes of [`TlsLayer::to_send`].
    pub fn on_sent(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.sending.len());
        self.promote();
    }

    /// Encrypts as much of `plain` as rustls buffers now; how much. The
    /// ciphertext waits for [`TlsLayer::promote`].
    pub fn write(&mut self, plain: &[u8]) -> usize {
        match &mut self.conn {
            Conn::User(conn) => {
                let n = conn.writer().write(plain).unwrap_or(0);
                self.flush();
                n
            }
            Conn::ForKernel {
                conn, done: true, ..
            } => encrypt(conn, plain, &mut self.next),
            _ => 0,
        }
    }

    /// The connection's last bytes, as it closes on our side: `plain`
    /// encrypted, then close_notify, behind what waits to be offered.
    /// `None` while ciphertext offered to the driver is unsent (more would
    /// follow a cut record) or under kernel TLS (the kernel has the keys).
    pub fn parting(&mut self, plain: &[u8]) -> Option<Vec<u8>> {
        if self.sent < self.sending.len() {
            return None;
        }
        let Conn::User(conn) = &mut self.conn else {
            return None;
        };
        if std::io::Write::write_all(&mut conn.writer(), plain).is_err() {
            return None;
        }
        conn.send_close_notify();
        self.flush();
        Some(std::mem::take(&mut self.next))
    }

    /// Moves what rustls has to send behind the outgoing chunk.
    fn flush(&mut self) {
        let Conn::User(conn) = &mut self.conn else {
            return;
        };
        while conn.wants_write() {
            // Writing into a Vec cannot fail.
            if conn.write_tls(&mut self.next).unwrap_or(0) == 0 {
                break;
            }
        }
    }

    /// Offers what waits as the next chunk, once the current one is all
    /// sent. The session calls it when it has produced all it will for
    /// now, so that the handshake's last flight and the first request
    /// leave in one send: two small sends in a row would meet Nagle's
    /// delay (the io_uring loop's direct sockets cannot set TCP_NODELAY).
    pub fn promote(&mut self) {
        if self.sent == self.sending.len() && !self.next.is_empty() {
            self.sending = Bytes::from(std::mem::take(&mut self.next));
            self.sent = 0;
        }
    }

    /// Takes received ciphertext; appends the plaintext it held to `plain`.
    /// An error is the TLS failure (`first` bytes are given back for a
    /// server that never spoke TLS).
    pub fn receive(&mut self, mut data: &[u8], plain: &mut Vec<u8>) -> Result<Received, RecvError> {
        if !self.heard && !data.is_empty() {
            self.heard = true;
            // A TLS record starts with its content type (20-24) and major
            // version 3; anything else is not TLS at all.
            if !matches!(data, [20..=24, 3, ..] | [20..=24]) {
                return Err(RecvError::NotTls(data[..data.len().min(16)].to_vec()));
            }
        }
        if let Conn::ForKernel {
            conn,
            incoming,
            done,
        } = &mut self.conn
        {
            incoming.extend_from_slice(data);
            if !*done {
                *done = handshake(conn, incoming, &mut self.next).map_err(RecvError::Tls)?;
            }
            if *done {
                after_handshake(conn, incoming, &mut self.next).map_err(RecvError::Tls)?;
            }
            return Ok(Received::More);
        }
        if matches!(self.conn, Conn::Kernel(_)) && !data.is_empty() {
            // The receive keys go to the kernel before anything can come
            // (see the module docs): bytes read past it would be lost.
            return Err(RecvError::Tls(rustls::Error::General(
                "bytes were read past the hand-over to kernel TLS (a bug)".into(),
            )));
        }
        let mut closed = false;
        while !data.is_empty() {
            let Conn::User(conn) = &mut self.conn else {
                break;
            };
            match conn.read_tls(&mut data) {
                Ok(_) => {}
                Err(e) => return Err(RecvError::Io(e)),
            }
            let state = conn.process_new_packets();
            // An alert to send (or handshake messages) goes out either way.
            self.flush();
            let state = state.map_err(RecvError::Tls)?;
            closed |= state.peer_has_closed();
            closed |= self.drain(plain);
        }
        Ok(if closed {
            Received::Closed
        } else {
            Received::More
        })
    }

    /// Copies the plaintext rustls holds into `plain`; whether the peer
    /// closed the session.
    fn drain(&mut self, plain: &mut Vec<u8>) -> bool {
        let Conn::User(conn) = &mut self.conn else {
            return false;
        };
        let mut reader = conn.reader();
        loop {
            match reader.fill_buf() {
                Ok([]) => return true,
                Ok(chunk) => {
                    let n = chunk.len();
                    plain.extend_from_slice(chunk);
                    reader.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
    }
}

/// Why received bytes could not be taken.
#[derive(Debug)]
pub(crate) enum RecvError {
    /// The peer's first bytes were not TLS (these are they).
    NotTls(Vec<u8>),
    Tls(rustls::Error),
    Io(io::Error),
}

/// Encodes a handshake record rustls has for the server behind `next`.
fn encode(
    data: &mut rustls::unbuffered::EncodeTlsData<'_, ClientConnectionData>,
    next: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    let at = next.len();
    loop {
        match data.encode(&mut next[at..]) {
            Ok(n) => {
                next.truncate(at + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                next.resize(at + required_size, 0)
            }
            Err(e) => {
                next.truncate(at);
                return Err(rustls::Error::General(format!("{e}")));
            }
        }
    }
}

/// Runs rustls' unbuffered handshake on what `incoming` holds: handshake
/// records to send go behind `next`; taken bytes leave `incoming`.
/// Whether the handshake is done.
fn handshake(
    conn: &mut UnbufferedClientConnection,
    incoming: &mut Vec<u8>,
    next: &mut Vec<u8>,
) -> Result<bool, rustls::Error> {
    loop {
        let UnbufferedStatus { discard, state } = conn.process_tls_records(incoming);
        let mut stop = None;
        match state? {
            ConnectionState::EncodeTlsData(mut data) => encode(&mut data, next)?,
            // What was encoded is in `next`, which the driver sends in order.
            ConnectionState::TransmitTlsData(data) => data.done(),
            ConnectionState::BlockedHandshake => stop = Some(false),
            ConnectionState::WriteTraffic(_) => stop = Some(true),
            ConnectionState::PeerClosed | ConnectionState::Closed => {
                return Err(rustls::Error::AlertReceived(
                    rustls::AlertDescription::CloseNotify,
                ));
            }
            _ => {
                return Err(rustls::Error::General(
                    "data from the server before the handshake ended".into(),
                ));
            }
        }
        incoming.drain(..discard);
        if let Some(done) = stop {
            return Ok(done);
        }
    }
}

/// Takes the whole records the server sent after its Finished (TLS 1.3
/// session tickets) into rustls, which keeps the tickets and counts the
/// records in the sequence number the kernel starts from; a partial one
/// stays in `incoming` until the rest comes. Application data before the
/// first request is an error.
fn after_handshake(
    conn: &mut UnbufferedClientConnection,
    incoming: &mut Vec<u8>,
    next: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    while !incoming.is_empty() {
        let UnbufferedStatus { discard, state } = conn.process_tls_records(incoming);
        match state? {
            ConnectionState::WriteTraffic(_) => {}
            ConnectionState::EncodeTlsData(mut data) => encode(&mut data, next)?,
            ConnectionState::TransmitTlsData(data) => data.done(),
            ConnectionState::PeerClosed | ConnectionState::Closed => {
                return Err(rustls::Error::AlertReceived(
                    rustls::AlertDescription::CloseNotify,
                ));
            }
            _ => {
                return Err(rustls::Error::General(
                    "data from the server before any request".into(),
                ));
            }
        }
        incoming.drain(..discard);
        if discard == 0 {
            break;
        }
    }
    Ok(())
}

/// Encrypts `plain` behind `next` with a handshake-done unbuffered
/// connection; how much of it (all, or none on an error).
fn encrypt(conn: &mut UnbufferedClientConnection, plain: &[u8], next: &mut Vec<u8>) -> usize {
    let UnbufferedStatus { state, .. } = conn.process_tls_records(&mut []);
    let Ok(ConnectionState::WriteTraffic(mut traffic)) = state else {
        return 0;
    };
    let at = next.len();
    loop {
        match traffic.encrypt(plain, &mut next[at..]) {
            Ok(n) => {
                next.truncate(at + n);
                return plain.len();
            }
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                next.resize(at + required_size, 0);
            }
            Err(_) => {
                next.truncate(at);
                return 0;
            }
        }
    }
}
