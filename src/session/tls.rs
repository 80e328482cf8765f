//! The session's TLS layer: a rustls client connection between the
//! socket's bytes and the HTTP bytes, with no I/O of its own.
//!
//! Ciphertext goes out in chunks the driver may hold by address or by
//! ownership until the kernel has taken them: `sending` is never changed
//! while any of it is unsent, and what rustls produces meanwhile waits in
//! `next`. Received ciphertext goes through rustls at once and the
//! plaintext comes back to the session in a scratch buffer it reuses.

use std::io::{self, BufRead, Write};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rustls::client::ClientConnection;
use rustls::pki_types::ServerName;

/// What the received bytes amounted to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// Go on (plaintext, if any, is in the buffer given).
    More,
    /// The peer closed the TLS session (`close_notify`): treat as end of
    /// stream after the plaintext.
    Closed,
}

/// One connection's TLS state.
pub(crate) struct TlsLayer {
    conn: ClientConnection,
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
}

impl std::fmt::Debug for TlsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsLayer")
            .field("handshaking", &self.conn.is_handshaking())
            .field(
                "unsent",
                &(self.sending.len() - self.sent + self.next.len()),
            )
            .finish()
    }
}

impl TlsLayer {
    /// Starts a handshake: the ClientHello is ready to send.
    pub fn new(
        config: &Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
        now: Instant,
    ) -> Result<Self, rustls::Error> {
        let conn = ClientConnection::new(config.clone(), name)?;
        let mut layer = Self {
            conn,
            sending: Bytes::new(),
            sent: 0,
            next: Vec::new(),
            started: now,
            heard: false,
        };
        layer.flush();
        layer.promote();
        Ok(layer)
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether ALPN chose HTTP/2.
    pub fn alpn_h2(&self) -> bool {
        self.conn.alpn_protocol() == Some(b"h2")
    }

    /// Whether the handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
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
        self.sent < self.sending.len() || !self.next.is_empty()
    }

    /// The kernel took `n` bytes of [`TlsLayer::to_send`].
    pub fn on_sent(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.sending.len());
        self.promote();
    }

    /// Encrypts as much of `plain` as rustls buffers now; how much. The
    /// ciphertext waits for [`TlsLayer::promote`].
    pub fn write(&mut self, plain: &[u8]) -> usize {
        let n = self.conn.writer().write(plain).unwrap_or(0);
        self.flush();
        n
    }

    /// Moves what rustls has to send behind the outgoing chunk.
    fn flush(&mut self) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(&mut self.next).unwrap_or(0) == 0 {
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
        let mut closed = false;
        while !data.is_empty() {
            match self.conn.read_tls(&mut data) {
                Ok(_) => {}
                Err(e) => return Err(RecvError::Io(e)),
            }
            let state = self.conn.process_new_packets();
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
        let mut reader = self.conn.reader();
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
