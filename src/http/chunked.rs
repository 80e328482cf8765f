//! Chunked transfer-coding decoder (RFC 9112 §7.1).
//!
//! It is a byte-level state machine rather than a line parser so that it
//! never buffers: chunk data is skipped (or copied when collecting) in bulk,
//! and only the short framing lines are walked byte by byte. Framing is
//! strict about CRLF because a lenient chunk parser is a classic source of
//! desynchronisation, and a load generator that silently resynchronises
//! would report numbers for a conversation that did not happen.

use super::{HttpError, MAX_HEAD_BYTES};

/// Longest chunk-size line (size plus extensions) accepted; real servers send
/// a few bytes, so anything near this is a broken or hostile peer.
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the hex size; `ws` once whitespace followed the digits (only `;`
    /// or CR may come next).
    Size {
        size: u64,
        digits: bool,
        ws: bool,
    },
    /// In a chunk extension; its content is ignored.
    Ext {
        size: u64,
    },
    /// Saw the CR ending the size line.
    SizeLf {
        size: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// What one `feed` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    /// Input bytes used; less than the input only when `done`.
    pub consumed: usize,
    /// Decoded body bytes among them.
    pub data: u64,
    pub done: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// Bytes of the current size line, or of the whole trailer section, to
    /// bound work on input that never ends a line.
    line: usize,
}

impl ChunkedDecoder {
    pub(crate) fn new() -> Self {
        Self {
            state: State::Size {
                size: 0,
                digits: false,
                ws: false,
            },
            line: 0,
        }
    }

    /// Decodes as much of `input` as belongs to this body. Decoded data is
    /// appended to `sink` when given, so the non-collecting path never copies.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        mut sink: Option<&mut Vec<u8>>,
    ) -> Result<Step, HttpError> {
        let mut i = 0;
        let mut data = 0u64;
        while i < input.len() {
            if let State::Data(rem) = self.state {
                let avail = &input[i..];
                // `n` is at most `avail.len()`, so the cast back cannot truncate.
                let n = rem.min(avail.len() as u64) as usize;
                if let Some(sink) = sink.as_deref_mut() {
                    sink.extend_from_slice(&avail[..n]);
                }
                i += n;
                data += n as u64;
                let left = rem - n as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = self.step(b)?;
            if self.state == State::Done {
                return Ok(Step {
                    consumed: i,
                    data,
                    done: true,
                });
            }
        }
        Ok(Step {
            consumed: i,
            data,
            done: self.state == State::Done,
        })
    }

    /// One framing byte; never called in `Data`.
    fn step(&mut self, b: u8) -> Result<State, HttpError> {
        use State::*;
        match self.state {
            Size { .. } | Ext { .. } => {
                self.line += 1;
                if self.line > MAX_CHUNK_LINE {
                    return Err(HttpError::BadChunk);
                }
            }
            TrailerStart | TrailerLine | TrailerLf | EndLf => {
                self.line += 1;
                if self.line > MAX_HEAD_BYTES {
                    return Err(HttpError::HeadTooLarge(MAX_HEAD_BYTES));
                }
            }
            _ => {}
        }
        let next = match (self.state, b) {
            (
                Size {
                    size, ws: false, ..
                },
                _,
            ) if b.is_ascii_hexdigit() => {
                let size = size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(hex_value(b)))
                    .ok_or(HttpError::BadChunk)?;
                Size {
                    size,
                    digits: true,
                    ws: false,
                }
            }
            (
                Size {
                    size, digits: true, ..
                },
                b' ' | b'\t',
            ) => Size {
                size,
                digits: true,
                ws: true,
            },
            (
                Size {
                    size, digits: true, ..
                },
                b';',
            ) => Ext { size },
            (
                Size {
                    size, digits: true, ..
                },
                b'\r',
            ) => SizeLf { size },
            (Ext { size }, b'\r') => SizeLf { size },
            (Ext { .. }, b'\n') => return Err(HttpError::BadChunk),
            (Ext { size }, _) => Ext { size },
            (SizeLf { size: 0 }, b'\n') => {
                self.line = 0;
                TrailerStart
            }
            (SizeLf { size }, b'\n') => {
                self.line = 0;
                Data(size)
            }
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Size {
                size: 0,
                digits: false,
                ws: false,
            },
            (TrailerStart, b'\r') => EndLf,
            (TrailerStart | TrailerLine, b'\n') => return Err(HttpError::BadChunk),
            (TrailerLine, b'\r') => TrailerLf,
            (TrailerStart | TrailerLine, _) => TrailerLine,
            (TrailerLf, b'\n') => TrailerStart,
            (EndLf, b'\n') => Done,
            _ => return Err(HttpError::BadChunk),
        };
        Ok(next)
    }
}

/// Value of an ASCII hex digit; callers check `is_ascii_hexdigit` first.
fn hex_value(b: u8) -> u64 {
    let v = match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    };
    u64::from(v)
}
