//! One connection: read request heads, discard bodies, answer in order.
//!
//! Written as one straight-line async loop per connection (the point of the
//! article: the switch between requests happens in user space, here in the
//! executor, without splitting the code into callbacks), generic over the
//! I/O engine ([`super::io`]): the same loop runs on io_uring and on epoll.
//!
//! Buffers are *owned*: a read takes the buffer and gives it back on
//! completion, and on io_uring, if the future is dropped first (a timeout)
//! the buffer and a reference to the fd stay with the kernel operation until
//! it completes. Two consequences shape this file:
//! - the read buffer lives in `Conn::buf` and is moved in and out of each
//!   read; after a timeout it is gone, so a timeout always ends the
//!   connection;
//! - before giving up on a connection with a read in flight we call
//!   `shutdown(Both)`, which completes that read at once so the fd is really
//!   closed (dropping the stream alone would leave it open until the peer
//!   sends something).
//!
//! A connection whose first bytes are HTTP/2's preface (h2c with prior
//! knowledge), or whose TLS agreed on `h2`, is handed to [`super::h2`]
//! before any head is parsed; nothing else changes for HTTP/1.x.
//!
//! Memory per idle connection is one 4 KiB read buffer (grown only while a
//! head larger than that is being received, up to `max_head_bytes + 1`, and
//! shrunk back once consumed) plus an output buffer that is empty between
//! answers and keeps at most 4 KiB of allocation. Large bodies are written
//! from a static pattern, never allocated.

use std::net::Shutdown;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::{Instant, timeout, timeout_at};

use super::io::Stream;
use super::reaper::Reaper;
use super::request::{self, Parsed, Request};
use super::routes::{self, Body, FILL, FILL_LEN, Plan};
use crate::http::h2::PREFACE;
use crate::http::server::{
    ConnHeader, Framing, RequestBody, RequestHeadReader, ResponseHead, push_chunk_size,
    push_decimal, reason,
};

/// Per-thread copy of the options a connection needs.
#[derive(Debug, Clone)]
pub(crate) struct ConnConfig {
    pub delay: Duration,
    pub max_head_bytes: usize,
    pub idle_timeout: Duration,
}

/// Read buffer size a connection starts with and shrinks back to.
const INITIAL_BUF: usize = 4096;

/// Largest single `write_all`; each one gets its own `idle_timeout`, so a
/// peer that stops reading is dropped, while a slow but steady one is not.
const WRITE_CHUNK: usize = 64 * 1024;

/// Bodies up to this size are copied into the output buffer (one write
/// with the head); larger ones are written straight from [`FILL`].
const INLINE_BODY: u64 = 16 * 1024;

/// At most this much is read and thrown away when closing after an error.
const LINGER_BYTES: usize = 1 << 20;
/// And for at most this long (also bounded by `idle_timeout`).
const LINGER_TIME: Duration = Duration::from_secs(2);

// A pattern write is one `WRITE_CHUNK`.
const _: () = assert!(FILL_LEN == WRITE_CHUNK);

/// How a connection ends (HTTP/2's loop, [`super::h2`], ends the same ways).
pub(super) enum End {
    /// Everything answered and the answer said we close: close normally,
    /// at once (we are the side that closes first).
    Graceful,
    /// The peer closed between requests: close, behind the answers still
    /// due (see [`super::reaper`]).
    PeerClosed,
    /// Closing after an error answer while the peer may still be sending:
    /// half-close, then drain for a moment so the kernel does not reset the
    /// connection and destroy the answer before the peer reads it.
    Linger,
    /// Timeout or I/O error: shut down both directions (completing any
    /// in-flight read so the fd is released) and drop.
    Abort,
    /// The client speaks HTTP/2: its preface came first (h2c with prior
    /// knowledge), or TLS agreed on `h2` by ALPN. [`super::h2`] takes the
    /// connection over, with what was read.
    Http2,
}

/// The connection cannot continue (I/O error, timeout, peer gone).
struct Abort;

struct Conn<S: Stream> {
    stream: S,
    cfg: Rc<ConnConfig>,
    /// Received bytes; `buf[start..]` is not yet consumed. Invariant:
    /// `start <= buf.len()`.
    buf: Vec<u8>,
    start: usize,
    /// Answers not yet written. Flushed before every read or sleep, so a
    /// pipelined batch of requests gets its answers in one write, and no
    /// answer waits behind a blocking step.
    out: Vec<u8>,
    /// Where the search for the end of the next head resumes.
    heads: RequestHeadReader,
    /// No request has been read yet: the connection may still turn out
    /// to speak HTTP/2.
    fresh: bool,
}

/// Serves one accepted connection until it ends; never panics on input and
/// swallows all I/O errors (a vanished client only ends its own task).
pub(crate) async fn serve<S: Stream>(stream: S, cfg: Rc<ConnConfig>, reaper: Rc<Reaper<S>>) {
    let mut conn = Conn {
        stream,
        cfg,
        buf: Vec::with_capacity(INITIAL_BUF),
        start: 0,
        out: Vec::new(),
        heads: RequestHeadReader::default(),
        fresh: true,
    };
    let end = match conn.run().await {
        Ok(end) => end,
        Err(Abort) => End::Abort,
    };
    if let End::Http2 = end {
        let Conn {
            stream,
            cfg,
            buf,
            start,
            ..
        } = conn;
        // Boxed: inline, HTTP/2's larger state would make every HTTP/1.x
        // connection's task that much bigger (5.2 KiB per idle connection
        // became 6.3).
        return Box::pin(super::h2::serve(stream, buf, start, cfg, reaper)).await;
    }
    finish(conn.stream, end, &conn.cfg, &reaper).await;
}

impl<S: Stream> Conn<S> {
    async fn run(&mut self) -> Result<End, Abort> {
        loop {
            let req = match self.next_head().await? {
                Ok(req) => req,
                Err(end) => return Ok(end),
            };
            self.start += req.head_len;

            match req.body {
                RequestBody::None => {}
                RequestBody::Length(n) => {
                    let buffered = (self.buf.len() - self.start) as u64;
                    if req.expect_continue && req.minor >= 1 && buffered < n {
                        self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        self.flush().await?;
                    }
                    self.discard_body(n).await?;
                }
                RequestBody::Chunked => {
                    self.push_error(411, req.minor);
                    self.flush().await?;
                    return Ok(End::Linger);
                }
            }
            self.compact_if_empty();

            let keep_alive = req.keep_alive && !req.plan.close;
            if !req.plan.delay.is_zero() {
                self.flush().await?;
                tokio::time::sleep(req.plan.delay).await;
            }
            self.respond(&req, keep_alive).await?;
            if !keep_alive {
                self.flush().await?;
                // Unconsumed pipelined bytes mean the peer may still be
                // sending: linger so the close does not turn into a reset.
                return Ok(if self.start < self.buf.len() {
                    End::Linger
                } else {
                    End::Graceful
                });
            }
            if self.out.len() >= WRITE_CHUNK {
                self.flush().await?;
            }
        }
    }

    /// Waits for the next complete head. `Ok(Err(end))` means the connection
    /// is over (peer closed between requests, or an error was answered).
    async fn next_head(&mut self) -> Result<Result<Request, End>, Abort> {
        // The idle clock starts when we first have to wait, i.e. after our
        // pending answers are flushed, and covers the whole head: a client
        // dribbling one byte at a time cannot hold the connection forever.
        let mut deadline: Option<Instant> = None;
        loop {
            let pending = &self.buf[self.start..];
            if self.fresh && !pending.is_empty() {
                if pending.starts_with(PREFACE) || self.stream.speaks_h2() {
                    return Ok(Err(End::Http2));
                }
                // Part of the preface: wait for the rest before deciding.
                self.fresh = PREFACE.starts_with(pending);
            }
            let parsed = if self.fresh {
                Parsed::Partial
            } else {
                request::parse(
                    &mut self.heads,
                    pending,
                    self.cfg.max_head_bytes,
                    self.cfg.delay,
                )
            };
            match parsed {
                Parsed::Complete(req) => return Ok(Ok(req)),
                Parsed::Invalid(status) => {
                    self.push_error(status, 1);
                    self.flush().await?;
                    return Ok(Err(End::Linger));
                }
                Parsed::Partial => {}
            }
            self.flush().await?;
            // About to wait: an idle connection must not keep what a big
            // answer grew (`/chunked/70000` left 73 KiB per idle connection).
            if self.out.capacity() > INITIAL_BUF {
                self.out = Vec::new();
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + self.cfg.idle_timeout);
            self.make_room_for_head();
            if self.read_more(deadline).await? == 0 {
                // Peer closed, possibly mid-head: nobody to answer.
                return Ok(Err(End::PeerClosed));
            }
        }
    }

    /// Reads `n` body bytes (some may already be buffered) and drops them,
    /// within a [`BodyDeadline`].
    async fn discard_body(&mut self, n: u64) -> Result<(), Abort> {
        let buffered = (self.buf.len() - self.start) as u64;
        let take = buffered.min(n);
        self.start += take as usize;
        let mut remaining = n - take;
        let mut deadline = BodyDeadline::new(Instant::now(), self.cfg.idle_timeout);
        while remaining > 0 {
            // `take < n` means the buffer was fully consumed.
            self.compact_if_empty();
            let got = self.read_more(deadline.at).await? as u64;
            if got == 0 {
                return Err(Abort);
            }
            deadline.received(Instant::now(), got);
            let take = got.min(remaining);
            self.start += take as usize;
            remaining -= take;
        }
        Ok(())
    }

    /// Appends one read to `buf`. Requires spare capacity in `buf`.
    async fn read_more(&mut self, deadline: Instant) -> Result<usize, Abort> {
        if self.buf.len() >= self.buf.capacity() {
            // Callers guarantee room; a full buffer would read nothing.
            self.buf.reserve(INITIAL_BUF);
        }
        let buf = std::mem::take(&mut self.buf);
        let read = self.stream.read_append(buf);
        // On timeout the buffer stays with the in-flight read; we abort.
        let (res, buf) = timeout_at(deadline, read).await.map_err(|_| Abort)?;
        self.buf = buf;
        res.map_err(|_| Abort)
    }

    /// Moves unconsumed bytes to the front and makes sure there is room for
    /// at least one more byte, growing (by doubling) only up to
    /// `max_head_bytes + 1`, enough to detect an oversized head.
    fn make_room_for_head(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(self.buf.len() - self.start);
            self.start = 0;
        }
        let (len, cap) = (self.buf.len(), self.buf.capacity());
        if len == cap {
            let target = (cap * 2)
                .min(self.cfg.max_head_bytes.saturating_add(1))
                .max(cap + 1);
            self.buf.reserve_exact(target - len);
        }
    }

    /// When everything received is consumed, reset the buffer (and give back
    /// memory a large head made it grow to).
    fn compact_if_empty(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > INITIAL_BUF {
                self.buf = Vec::with_capacity(INITIAL_BUF);
            }
        }
    }

    /// Queues (and for big bodies, writes) the answer to `req`.
    async fn respond(&mut self, req: &Request, keep_alive: bool) -> Result<(), Abort> {
        let plan: &Plan = &req.plan;
        let conn = if !keep_alive {
            ConnHeader::Close
        } else if req.minor == 0 {
            ConnHeader::KeepAlive
        } else {
            ConnHeader::Default
        };
        let head_only = req.head_only;
        match plan.body {
            Body::Empty => {
                self.push_head(req.minor, plan.status, None, Framing::None, conn);
            }
            Body::Static(body) => {
                let framing = Framing::Length(body.len() as u64);
                self.push_head(
                    req.minor,
                    plan.status,
                    Some(plan.content_type),
                    framing,
                    conn,
                );
                if !head_only {
                    self.out.extend_from_slice(body);
                }
            }
            Body::Status => {
                let phrase = reason(plan.status);
                // "NNN Reason\n": three digits, a space, the reason, newline.
                let framing = Framing::Length(3 + 1 + phrase.len() as u64 + 1);
                self.push_head(
                    req.minor,
                    plan.status,
                    Some(plan.content_type),
                    framing,
                    conn,
                );
                if !head_only {
                    push_decimal(&mut self.out, plan.status.into());
                    self.out.push(b' ');
                    self.out.extend_from_slice(phrase.as_bytes());
                    self.out.push(b'\n');
                }
            }
            Body::Fill(n) => {
                self.push_head(
                    req.minor,
                    plan.status,
                    Some(plan.content_type),
                    Framing::Length(n),
                    conn,
                );
                if !head_only {
                    self.write_fill(n).await?;
                }
            }
            // HTTP/1.0 has no chunked encoding: send it Content-Length framed.
            Body::Chunked(n) if req.minor == 0 => {
                self.push_head(
                    req.minor,
                    plan.status,
                    Some(plan.content_type),
                    Framing::Length(n),
                    conn,
                );
                if !head_only {
                    self.write_fill(n).await?;
                }
            }
            Body::Chunked(n) => {
                self.push_head(
                    req.minor,
                    plan.status,
                    Some(plan.content_type),
                    Framing::Chunked,
                    conn,
                );
                if !head_only {
                    self.write_chunked(n).await?;
                }
            }
        }
        Ok(())
    }

    /// Writes `n` pattern bytes: small ones inline, large ones straight from
    /// the static pattern after flushing the head.
    async fn write_fill(&mut self, n: u64) -> Result<(), Abort> {
        if n <= INLINE_BODY {
            self.out.extend_from_slice(&FILL[..n as usize]);
            return Ok(());
        }
        self.flush().await?;
        let mut remaining = n;
        while remaining > 0 {
            let k = remaining.min(FILL_LEN as u64) as usize;
            let chunk: &'static [u8] = &FILL[..k];
            self.write_static_timed(chunk).await?;
            remaining -= k as u64;
        }
        Ok(())
    }

    /// Writes `n` pattern bytes as chunks of at most [`routes::CHUNK`] bytes,
    /// then the last chunk; flushed every [`WRITE_CHUNK`] bytes.
    async fn write_chunked(&mut self, n: u64) -> Result<(), Abort> {
        let mut remaining = n;
        while remaining > 0 {
            let k = remaining.min(routes::CHUNK as u64) as usize;
            push_chunk_size(&mut self.out, k);
            self.out.extend_from_slice(&FILL[..k]);
            self.out.extend_from_slice(b"\r\n");
            remaining -= k as u64;
            if self.out.len() >= WRITE_CHUNK {
                self.flush().await?;
            }
        }
        self.out.extend_from_slice(b"0\r\n\r\n");
        Ok(())
    }

    /// Queues a short error answer that closes the connection.
    fn push_error(&mut self, status: u16, minor: u8) {
        let phrase = reason(status);
        let framing = Framing::Length(phrase.len() as u64 + 1);
        self.push_head(
            minor,
            status,
            Some("text/plain"),
            framing,
            ConnHeader::Close,
        );
        self.out.extend_from_slice(phrase.as_bytes());
        self.out.push(b'\n');
    }

    fn push_head(
        &mut self,
        minor: u8,
        status: u16,
        content_type: Option<&str>,
        framing: Framing,
        connection: ConnHeader,
    ) {
        ResponseHead {
            minor,
            status,
            content_type,
            framing,
            connection,
        }
        .encode(&mut self.out);
    }

    /// Writes and clears `out`, keeping its allocation for the rest of the
    /// answer unless a big body made it large (`next_head` drops anything
    /// over 4 KiB before the connection waits).
    async fn flush(&mut self) -> Result<(), Abort> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let mut out = self.write_vec_timed(out).await?;
        out.clear();
        if out.capacity() <= 2 * WRITE_CHUNK {
            self.out = out;
        }
        Ok(())
    }

    /// Writes all of `buf` within `idle_timeout`; gives the buffer back.
    async fn write_vec_timed(&mut self, buf: Vec<u8>) -> Result<Vec<u8>, Abort> {
        let (res, buf) = timeout(self.cfg.idle_timeout, self.stream.write_vec(buf))
            .await
            .map_err(|_| Abort)?;
        res.map_err(|_| Abort)?;
        Ok(buf)
    }

    /// Writes all of a static slice within `idle_timeout`.
    async fn write_static_timed(&mut self, buf: &'static [u8]) -> Result<(), Abort> {
        timeout(self.cfg.idle_timeout, self.stream.write_static(buf))
            .await
            .map_err(|_| Abort)?
            .map_err(|_| Abort)
    }
}

/// Ends a connection. A close the peer started, or an abort, is left to
/// the thread's reaper (see [`super::reaper`]), behind the answers; a
/// close after a `Connection: close` answer happens at once, so the peer
/// sees the end of the answer's stream without delay.
///
/// Every end but an abort is orderly: a protocol over the socket (TLS)
/// says goodbye first ([`Stream::close_notify`]; nothing for plain TCP).
pub(super) async fn finish<S: Stream>(stream: S, end: End, cfg: &ConnConfig, reaper: &Reaper<S>) {
    let limit = cfg.idle_timeout.min(LINGER_TIME);
    match end {
        End::Graceful => {
            stream.close_notify(limit).await;
            let _ = stream.shutdown(Shutdown::Write);
        }
        End::PeerClosed => {
            stream.close_notify(limit).await;
            reaper.hand(stream, Shutdown::Write);
        }
        End::Linger => {
            stream.close_notify(limit).await;
            let _ = stream.shutdown(Shutdown::Write);
            let mut buf = Vec::with_capacity(INITIAL_BUF);
            let mut drained = 0;
            let drain = async {
                while drained < LINGER_BYTES {
                    buf.clear();
                    let (res, b) = stream.read_append(buf).await;
                    buf = b;
                    match res {
                        Ok(n) if n > 0 => drained += n,
                        _ => break,
                    }
                }
            };
            let _ = timeout(limit, drain).await;
            // Completes a read still in flight if the drain timed out.
            let _ = stream.shutdown(Shutdown::Both);
        }
        // `Http2` never gets here: the HTTP/2 loop ends as one of the others.
        End::Abort | End::Http2 => reaper.hand(stream, Shutdown::Both),
    }
    // Dropping the stream closes the fd (once no op holds it).
}

/// A request body must keep arriving at [`BODY_MIN_RATE`] on average
/// (Apache mod_reqtimeout's `body=T,MinRate=R`, with T the idle timeout):
/// the body starts with `idle_timeout` to arrive, each byte received adds
/// `1 / BODY_MIN_RATE` s, and the deadline is never more than
/// `idle_timeout` ahead, so an early burst buys no long stall. A body
/// dribbled at 1 byte/s is cut after about `idle_timeout`, however large its
/// `Content-Length`.
///
/// HTTP/2 connections ([`super::h2`]) keep one for the whole connection:
/// a request or an answer made is progress ([`BodyDeadline::reset`]),
/// request body bytes earn credit as here, and nothing else moves it.
pub(super) struct BodyDeadline {
    pub(super) at: Instant,
    idle: Duration,
}

/// Bytes per second a request body must average (mod_reqtimeout's default).
const BODY_MIN_RATE: u64 = 500;

impl BodyDeadline {
    pub(super) fn new(now: Instant, idle: Duration) -> Self {
        Self {
            at: now + idle,
            idle,
        }
    }

    /// Progress at `now`: a whole `idle_timeout` from here.
    pub(super) fn reset(&mut self, now: Instant) {
        self.at = now + self.idle;
    }

    /// `n` more bytes arrived at `now`.
    pub(super) fn received(&mut self, now: Instant, n: u64) {
        let credit = Duration::from_micros(n.saturating_mul(1_000_000) / BODY_MIN_RATE);
        let cap = now + self.idle;
        self.at = self.at.checked_add(credit).map_or(cap, |at| at.min(cap));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_must_average_the_minimum_rate() {
        let idle = Duration::from_secs(2);
        let t0 = Instant::now();
        let sec = |n: u64| t0 + Duration::from_secs(n);
        // One byte a second: 2 ms of credit each, so the deadline barely
        // moves past the first two seconds.
        let mut d = BodyDeadline::new(t0, idle);
        d.received(sec(1), 1);
        assert_eq!(d.at, sec(2) + Duration::from_millis(2));
        // 500 bytes a second keeps pace for ever.
        let mut d = BodyDeadline::new(t0, idle);
        for s in 1..100 {
            d.received(sec(s), BODY_MIN_RATE);
            assert!(d.at >= sec(s + 1), "{s}");
        }
        // A megabyte at once buys idle_timeout, not 2,000 seconds.
        let mut d = BodyDeadline::new(t0, idle);
        d.received(sec(1), 1 << 20);
        assert_eq!(d.at, sec(3));
        d.received(sec(1), u64::MAX);
        assert_eq!(d.at, sec(3));
    }
}
