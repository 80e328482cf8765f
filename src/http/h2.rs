//! HTTP/2 frame layout (RFC 9113 §4, §6): the 9-byte frame header, the
//! frame types, flags, settings and error codes, the encoders of the
//! frames either side sends, the connection error both sides raise
//! ([`H2Error`]) and the reading of a peer's SETTINGS ([`Settings`]). No
//! state lives here: the client's connection
//! (`session::h2`) and the demo server's (`server::h2`) both frame with
//! these, into whatever buffer they send from (any [`BufMut`]: the
//! client's `BytesMut`, the server's owned `Vec<u8>`).

use bytes::BufMut;
#[cfg(test)]
use bytes::BytesMut;

/// What a client sends first on an HTTP/2 connection (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bytes of a frame header.
pub(crate) const HEAD_LEN: usize = 9;

pub(crate) const DATA: u8 = 0x0;
pub(crate) const HEADERS: u8 = 0x1;
pub(crate) const PRIORITY: u8 = 0x2;
pub(crate) const RST_STREAM: u8 = 0x3;
pub(crate) const SETTINGS: u8 = 0x4;
pub(crate) const PUSH_PROMISE: u8 = 0x5;
pub(crate) const PING: u8 = 0x6;
pub(crate) const GOAWAY: u8 = 0x7;
pub(crate) const WINDOW_UPDATE: u8 = 0x8;
pub(crate) const CONTINUATION: u8 = 0x9;

pub(crate) const END_STREAM: u8 = 0x1;
pub(crate) const ACK: u8 = 0x1;
pub(crate) const END_HEADERS: u8 = 0x4;
pub(crate) const PADDED: u8 = 0x8;
pub(crate) const PRIORITY_FLAG: u8 = 0x20;

pub(crate) const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub(crate) const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub(crate) const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub(crate) const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
pub(crate) const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

pub(crate) const NO_ERROR: u32 = 0x0;
pub(crate) const PROTOCOL_ERROR: u32 = 0x1;
pub(crate) const FLOW_CONTROL_ERROR: u32 = 0x3;
pub(crate) const SETTINGS_TIMEOUT: u32 = 0x4;
pub(crate) const STREAM_CLOSED: u32 = 0x5;
pub(crate) const FRAME_SIZE_ERROR: u32 = 0x6;
pub(crate) const REFUSED_STREAM: u32 = 0x7;
pub(crate) const CANCEL: u32 = 0x8;
pub(crate) const COMPRESSION_ERROR: u32 = 0x9;
pub(crate) const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The largest flow-control window (RFC 9113 §6.9.1).
pub(crate) const MAX_WINDOW: i64 = (1 << 31) - 1;
/// The initial window and frame size every peer starts with.
pub(crate) const DEFAULT_WINDOW: i64 = 65_535;
pub(crate) const DEFAULT_MAX_FRAME: usize = 16_384;
/// The largest `SETTINGS_MAX_FRAME_SIZE` a peer may announce.
pub(crate) const MAX_FRAME_LIMIT: usize = (1 << 24) - 1;

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    /// The stream identifier, its reserved bit cleared.
    pub stream: u32,
}

impl Head {
    pub fn parse(b: &[u8; HEAD_LEN]) -> Self {
        Self {
            len: (b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize,
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    #[inline]
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Appends a frame header.
#[inline]
pub(crate) fn put_head(out: &mut impl BufMut, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = len as u32;
    out.put_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.put_u32(stream & 0x7fff_ffff);
}

/// Appends a SETTINGS frame with `values`.
pub(crate) fn put_settings(out: &mut impl BufMut, values: &[(u16, u32)]) {
    put_head(out, values.len() * 6, SETTINGS, 0, 0);
    for &(id, value) in values {
        out.put_u16(id);
        out.put_u32(value);
    }
}

/// Appends a WINDOW_UPDATE frame.
pub(crate) fn put_window_update(out: &mut impl BufMut, stream: u32, increment: u32) {
    put_head(out, 4, WINDOW_UPDATE, 0, stream);
    out.put_u32(increment & 0x7fff_ffff);
}

/// Appends a RST_STREAM frame.
pub(crate) fn put_rst(out: &mut impl BufMut, stream: u32, code: u32) {
    put_head(out, 4, RST_STREAM, 0, stream);
    out.put_u32(code);
}

/// Appends a PING frame (with `ACK`, the answer to one).
pub(crate) fn put_ping(out: &mut impl BufMut, flags: u8, payload: &[u8; 8]) {
    put_head(out, 8, PING, flags, 0);
    out.put_slice(payload);
}

/// Appends a GOAWAY frame: the last stream the sender processed, the
/// error code, and `debug` (a reason for people; at most
/// [`MAX_GOAWAY_DEBUG`] bytes of it are sent).
pub(crate) fn put_goaway(out: &mut impl BufMut, last_stream: u32, code: u32, debug: &[u8]) {
    let debug = &debug[..debug.len().min(MAX_GOAWAY_DEBUG)];
    put_head(out, 8 + debug.len(), GOAWAY, 0, 0);
    out.put_u32(last_stream & 0x7fff_ffff);
    out.put_u32(code);
    out.put_slice(debug);
}

/// A connection error (RFC 9113 §5.4.1), on either side: the code a
/// GOAWAY carries and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct H2Error {
    pub code: u32,
    pub reason: String,
}

impl std::fmt::Display for H2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason, error_name(self.code))
    }
}

/// A connection error of `code`.
pub(crate) fn err(code: u32, reason: impl Into<String>) -> H2Error {
    H2Error {
        code,
        reason: reason.into(),
    }
}

/// A connection error of kind PROTOCOL_ERROR.
pub(crate) fn proto(reason: impl Into<String>) -> H2Error {
    err(PROTOCOL_ERROR, reason)
}

/// What a peer's SETTINGS frame changes of what may be sent to it, each
/// value checked (RFC 9113 §6.5.2); of a setting repeated in one frame,
/// the last counts. The header table size binds an encoder with a dynamic
/// table (neither side's has one), the header list size is advisory, and
/// unknown settings are ignored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    pub max_concurrent_streams: Option<u32>,
    pub initial_window: Option<i64>,
    pub max_frame: Option<usize>,
}

impl Settings {
    /// Reads a SETTINGS frame (its head and payload): `None` for an ACK.
    pub fn read(head: Head, payload: &[u8]) -> Result<Option<Settings>, H2Error> {
        if head.stream != 0 {
            return Err(proto("SETTINGS on a stream"));
        }
        if head.has(ACK) {
            if !payload.is_empty() {
                return Err(err(FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload"));
            }
            return Ok(None);
        }
        if !payload.len().is_multiple_of(6) {
            return Err(err(
                FRAME_SIZE_ERROR,
                "a SETTINGS frame whose length is not a multiple of 6",
            ));
        }
        let mut s = Settings::default();
        for setting in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
            match id {
                SETTINGS_ENABLE_PUSH if value > 1 => {
                    return Err(proto(format!("SETTINGS_ENABLE_PUSH of {value}")));
                }
                SETTINGS_MAX_CONCURRENT_STREAMS => s.max_concurrent_streams = Some(value),
                SETTINGS_INITIAL_WINDOW_SIZE => {
                    let value = value as i64;
                    if value > MAX_WINDOW {
                        return Err(err(
                            FLOW_CONTROL_ERROR,
                            format!("SETTINGS_INITIAL_WINDOW_SIZE of {value}"),
                        ));
                    }
                    s.initial_window = Some(value);
                }
                SETTINGS_MAX_FRAME_SIZE => {
                    let value = value as usize;
                    if !(DEFAULT_MAX_FRAME..=MAX_FRAME_LIMIT).contains(&value) {
                        return Err(proto(format!("SETTINGS_MAX_FRAME_SIZE of {value}")));
                    }
                    s.max_frame = Some(value);
                }
                _ => {}
            }
        }
        Ok(Some(s))
    }
}

/// The most CONTINUATION frames after one HEADERS, on either side.
pub(crate) const MAX_CONTINUATIONS: usize = 64;

/// A header block under way (RFC 9113 §6.10): a HEADERS frame without
/// END_HEADERS, then its CONTINUATIONs, gathered within bounds (at most
/// [`MAX_CONTINUATIONS`] of them, and a byte limit each side chooses).
#[derive(Debug, Default)]
pub(crate) struct HeaderBlock {
    /// Its stream; 0 while none is under way.
    pub stream: u32,
    /// Whether its HEADERS frame ended the stream.
    pub end_stream: bool,
    /// Frames so far, its HEADERS included.
    pub frames: usize,
    /// Its fragments so far.
    pub bytes: Vec<u8>,
}

impl HeaderBlock {
    /// A frame other than CONTINUATION while a block is under way is a
    /// connection error.
    pub fn check_between(&self, head: Head) -> Result<(), H2Error> {
        if self.stream != 0 && head.kind != CONTINUATION {
            return Err(proto(format!(
                "a {} frame while the header block of stream {} was unfinished",
                kind_name(head.kind),
                self.stream
            )));
        }
        Ok(())
    }

    /// Starts a block with its HEADERS frame's fragment.
    pub fn start(&mut self, head: Head, fragment: &[u8]) {
        self.stream = head.stream;
        self.end_stream = head.has(END_STREAM);
        self.frames = 1;
        self.bytes.clear();
        self.bytes.extend_from_slice(fragment);
    }

    /// Adds a CONTINUATION frame, the block staying within `max_bytes`:
    /// whether the block is now whole (END_HEADERS).
    pub fn continuation(
        &mut self,
        head: Head,
        payload: &[u8],
        max_bytes: usize,
    ) -> Result<bool, H2Error> {
        if self.stream == 0 || head.stream != self.stream {
            return Err(proto(format!(
                "CONTINUATION on stream {} without a header block under way there",
                head.stream
            )));
        }
        self.frames += 1;
        if self.frames > MAX_CONTINUATIONS + 1 {
            return Err(err(
                ENHANCE_YOUR_CALM,
                format!("more than {MAX_CONTINUATIONS} CONTINUATION frames in one header block"),
            ));
        }
        if self.bytes.len() + payload.len() > max_bytes {
            return Err(err(
                ENHANCE_YOUR_CALM,
                format!("a header block over {max_bytes} bytes"),
            ));
        }
        self.bytes.extend_from_slice(payload);
        Ok(head.has(END_HEADERS))
    }

    /// Ends the block (its bytes stay in `bytes` for the caller): its
    /// stream, whether it ended the stream, and its frames.
    pub fn finish(&mut self) -> (u32, bool, usize) {
        let done = (self.stream, self.end_stream, self.frames);
        self.stream = 0;
        done
    }
}

/// Reads a PING frame: its payload if it asks for an answer (a PING
/// with ACK asks for none).
pub(crate) fn read_ping(head: Head, payload: &[u8]) -> Result<Option<&[u8; 8]>, H2Error> {
    if head.stream != 0 {
        return Err(proto("PING on a stream"));
    }
    let Ok(opaque) = <&[u8; 8]>::try_from(payload) else {
        return Err(err(FRAME_SIZE_ERROR, "a PING frame not of 8 bytes"));
    };
    Ok((!head.has(ACK)).then_some(opaque))
}

/// A DATA or HEADERS frame's payload without its padding (PADDED).
pub(crate) fn unpad(head: Head, payload: &[u8]) -> Result<&[u8], H2Error> {
    if !head.has(PADDED) {
        return Ok(payload);
    }
    let Some((&pad, rest)) = payload.split_first() else {
        return Err(err(
            FRAME_SIZE_ERROR,
            format!("a padded {} frame with no pad length", kind_name(head.kind)),
        ));
    };
    if pad as usize > rest.len() {
        return Err(proto(format!(
            "a {} frame's padding ({pad} bytes) is longer than its payload",
            kind_name(head.kind)
        )));
    }
    Ok(&rest[..rest.len() - pad as usize])
}

/// The peer's new initial window (`initial`, from its SETTINGS) replaces
/// `current` and moves every open stream's send window by the difference
/// (RFC 9113 §6.9.2); one pushed past 2^31-1 is a connection error.
pub(crate) fn shift_windows<'a>(
    current: &mut i64,
    initial: i64,
    windows: impl Iterator<Item = &'a mut i64>,
) -> Result<(), H2Error> {
    let delta = initial - std::mem::replace(current, initial);
    for w in windows {
        *w += delta;
        if *w > MAX_WINDOW {
            return Err(err(
                FLOW_CONTROL_ERROR,
                "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream's window",
            ));
        }
    }
    Ok(())
}

/// The most bytes of debug data [`put_goaway`] sends.
pub(crate) const MAX_GOAWAY_DEBUG: usize = 256;

/// The name of an error code (RFC 9113 §7), as reports show it.
pub(crate) fn error_name(code: u32) -> &'static str {
    match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        _ => "UNKNOWN_ERROR",
    }
}

/// The name of a frame type, for error messages.
pub(crate) fn kind_name(kind: u8) -> &'static str {
    match kind {
        DATA => "DATA",
        HEADERS => "HEADERS",
        PRIORITY => "PRIORITY",
        RST_STREAM => "RST_STREAM",
        SETTINGS => "SETTINGS",
        PUSH_PROMISE => "PUSH_PROMISE",
        PING => "PING",
        GOAWAY => "GOAWAY",
        WINDOW_UPDATE => "WINDOW_UPDATE",
        CONTINUATION => "CONTINUATION",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_round_trips_and_clears_the_reserved_bit() {
        let mut out = BytesMut::new();
        put_head(
            &mut out,
            0x12_3456,
            HEADERS,
            END_HEADERS | END_STREAM,
            0xffff_ffff,
        );
        let head = Head::parse(out[..HEAD_LEN].try_into().unwrap());
        assert_eq!(
            head,
            Head {
                len: 0x12_3456,
                kind: HEADERS,
                flags: END_HEADERS | END_STREAM,
                stream: 0x7fff_ffff
            }
        );
        assert!(head.has(END_STREAM) && !head.has(PADDED));
    }
}
