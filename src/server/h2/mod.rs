//! HTTP/2 in the demo server (RFC 9113): h2c with prior knowledge on a
//! plain listener (a connection whose first bytes are the preface `PRI *
//! HTTP/2.0\r\n\r\nSM\r\n\r\n`), and h2 by ALPN under `serve --tls`. The
//! HTTP/1.x loop ([`super::conn`]) looks at a connection's first bytes and
//! hands it over here; nothing changes for HTTP/1.x. The `Upgrade: h2c`
//! dance of RFC 7540 is not offered (RFC 9113 deprecates it): such a
//! request is answered in HTTP/1.1.
//!
//! The protocol is [`codec`], sans-IO; this file is the connection's one
//! async loop, generic over the engine's stream like the HTTP/1.x loop, so
//! it runs on io_uring and epoll, plain or over TLS. Every stream's answer
//! waits for its own delay: the codec records when each is due, and the
//! loop sleeps until the earliest, so two 1 s requests on one connection
//! are both answered after 1 s.
//!
//! The loop keeps one read in flight while it writes: a read is never
//! cancelled (on io_uring a dropped read would still consume bytes), so
//! while it waits the loop races that same pending read against the next
//! answer's due time and the idle deadline, and while it writes it polls
//! the read too (over TLS a read may have to send, and so wait for the
//! stream's output lock; unpolled, it would hold up the next write for
//! ever). Input is taken only while the
//! codec wants it ([`codec::Codec::wants_input`]): with output piling up
//! (a client that sends PINGs and reads nothing) no more is read, and the
//! write's own timeout ends the connection.
//!
//! Timeouts: a connection is given up after `idle_timeout` without
//! progress (a request made whole, an answer frame written, request body
//! bytes at the HTTP/1.x loop's minimum rate), unless an answer is only
//! waiting for its delay; it then says GOAWAY (NO_ERROR) and closes. A
//! write gets `idle_timeout` too, as in HTTP/1.x.
//!
//! Memory per idle HTTP/2 connection: the 4 KiB read buffer (grown to one
//! 16 KiB frame while one arrives, shrunk back once idle), the codec's
//! state with the client's HPACK table (4 KiB at most), and nothing else:
//! the output buffer, the stream table and header block buffers are let go
//! when no stream is open.

pub(crate) mod codec;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::Poll;

use tokio::time::{Instant, sleep_until, timeout};

use super::conn::{BodyDeadline, ConnConfig, End, finish};
use super::io::Stream;
use super::reaper::Reaper;
use codec::Codec;

/// The read buffer a connection keeps while idle (as HTTP/1.x's).
const INITIAL_BUF: usize = 4096;

/// Serves an HTTP/2 connection whose first bytes, `buf[start..]`, were
/// read already (all or part of the preface), until it ends; never panics
/// on input and swallows I/O errors, as the HTTP/1.x loop.
pub(crate) async fn serve<S: Stream>(
    stream: S,
    buf: Vec<u8>,
    start: usize,
    cfg: Rc<ConnConfig>,
    reaper: Rc<Reaper<S>>,
) {
    let mut codec = Codec::new(cfg.delay, cfg.max_head_bytes);
    let end = run(&stream, &mut codec, buf, start, &cfg).await;
    drop(codec);
    finish(stream, end, &cfg, &reaper).await;
}

/// The connection's loop; returns how to close it.
async fn run<S: Stream>(
    stream: &S,
    codec: &mut Codec,
    mut buf: Vec<u8>,
    mut start: usize,
    cfg: &ConnConfig,
) -> End {
    // The one read in flight, if any; it owns `buf` meanwhile.
    let mut read = pin!(unstarted(|| stream.read_append(Vec::new())));
    let mut eof = false;
    let mut deadline = BodyDeadline::new(Instant::now(), cfg.idle_timeout);
    loop {
        let now = Instant::now();
        if read.is_none() {
            let (requests, body) = (codec.requests, codec.body_bytes);
            start += codec.receive(&buf[start..], now.into_std());
            if codec.requests != requests {
                deadline.reset(now);
            } else if codec.body_bytes != body {
                deadline.received(now, codec.body_bytes - body);
            }
            if start == buf.len() {
                buf.clear();
                start = 0;
            }
        }
        let frames = codec.answer_frames;
        codec.produce(now.into_std());
        let answered = codec.answer_frames != frames;

        // Read on while writing, if the codec wants more.
        if read.is_none() && !eof && codec.wants_input(&buf[start..]) {
            make_room(&mut buf, &mut start, codec);
            read.set(Some(stream.read_append(std::mem::take(&mut buf))));
            if let Some(got) = ready_now(read.as_mut()).await {
                read.set(None);
                if let Err(end) = take_read(got, &mut buf, &mut eof) {
                    return end;
                }
                continue;
            }
        }

        if codec.has_output() {
            let out = codec.take_output();
            let write = timeout(cfg.idle_timeout, stream.write_vec(out));
            let (written, got) = alongside(write, read.as_mut()).await;
            match written {
                Ok((Ok(()), out)) => codec.give_back(out),
                _ => return End::Abort,
            }
            if answered {
                deadline.reset(Instant::now());
            }
            if let Some(got) = got
                && let Err(end) = take_read(got, &mut buf, &mut eof)
            {
                return end;
            }
            continue;
        }
        if codec.finished() {
            return End::Linger;
        }
        if eof && read.is_none() && codec.is_idle() {
            return End::PeerClosed;
        }
        if codec.is_idle() && read.is_some() {
            codec.trim(INITIAL_BUF);
        }

        // Nothing to write: wait for the client, the next answer's delay,
        // or the idle deadline.
        let due = codec.next_due().map(Instant::from_std);
        let idle_at = (!codec.waiting()).then_some(deadline.at);
        let reading = read.is_some();
        tokio::select! {
            biased;
            got = async {
                match read.as_mut().as_pin_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            }, if reading => {
                read.set(None);
                if let Err(end) = take_read(got, &mut buf, &mut eof) {
                    return end;
                }
            }
            _ = sleep_until(due.unwrap_or(now)), if due.is_some() => {}
            _ = sleep_until(idle_at.unwrap_or(now)), if idle_at.is_some() => {
                codec.time_out("idle timeout");
            }
            // Nothing can happen any more (the client is gone, no answer
            // waits): only reachable with no deadline, which `waiting` rules
            // out; closing is the safe answer.
            else => return End::Abort,
        }
    }
}

/// A read's result: its buffer back into `buf`; end of stream noted; an
/// error ends the connection.
fn take_read(
    (res, got): (std::io::Result<usize>, Vec<u8>),
    buf: &mut Vec<u8>,
    eof: &mut bool,
) -> Result<(), End> {
    *buf = got;
    match res {
        Ok(0) => *eof = true,
        Ok(_) => {}
        Err(_) => return Err(End::Abort),
    }
    Ok(())
}

/// Before a read: what is left of `buf` moves to the front, and there is
/// room for what the codec needs next (a whole frame, at most 16 KiB and
/// its header). An idle connection's buffer shrinks back to 4 KiB.
fn make_room(buf: &mut Vec<u8>, start: &mut usize, codec: &Codec) {
    if *start > 0 {
        buf.copy_within(*start.., 0);
        buf.truncate(buf.len() - *start);
        *start = 0;
    }
    if buf.is_empty() && codec.is_idle() && buf.capacity() > INITIAL_BUF {
        *buf = Vec::with_capacity(INITIAL_BUF);
    }
    let want = codec.need(buf).max(buf.len() + 1).max(INITIAL_BUF);
    if buf.capacity() < want {
        buf.reserve_exact(want - buf.len());
    }
}

/// `None`, typed as the future `make` would make (never called): the
/// pending read's slot before any read.
fn unstarted<F>(_make: impl FnOnce() -> F) -> Option<F> {
    None
}

/// Runs `main` to completion while also polling the read in `slot` (if
/// any), so that the read makes progress meanwhile: over TLS both may need
/// the stream's output lock, and a read waiting for it would hold up the
/// write if it were not polled. A read that completes leaves the slot
/// empty and its output is returned.
async fn alongside<M: Future, F: Future>(
    main: M,
    mut slot: Pin<&mut Option<F>>,
) -> (M::Output, Option<F::Output>) {
    let mut main = pin!(main);
    let mut got = None;
    let done = std::future::poll_fn(|cx| {
        if let Some(f) = slot.as_mut().as_pin_mut()
            && let Poll::Ready(v) = f.poll(cx)
        {
            got = Some(v);
            slot.set(None);
        }
        main.as_mut().poll(cx)
    })
    .await;
    (done, got)
}

/// Polls the future in `slot` once: its output if it is ready now.
async fn ready_now<F: Future>(mut slot: Pin<&mut Option<F>>) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match slot.as_mut().as_pin_mut() {
            Some(f) => match f.poll(cx) {
                Poll::Ready(v) => Some(v),
                Poll::Pending => None,
            },
            None => None,
        })
    })
    .await
}
