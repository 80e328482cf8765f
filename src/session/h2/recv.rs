//! The receiving half of [`H2Conn`]: frames taken apart as they arrive
//! (a frame split across reads waits in `partial`), each checked and
//! turned into [`Event`]s or a connection error.

use super::*;
use crate::http::h2::*;

impl H2Conn {
    /// Takes bytes the server sent; `f` hears what they meant. An error
    /// is a connection error: nothing more is to be read.
    pub fn receive<F: FnMut(Event<'_>)>(
        &mut self,
        mut data: &[u8],
        reqs: &[H2Request],
        f: &mut F,
    ) -> Result<(), H2Error> {
        if !self.heard && !data.is_empty() {
            self.heard = true;
            if data.starts_with(b"HTTP/1.") || data.starts_with(b"HTTP/0.") {
                return Err(proto(
                    "the server answered in HTTP/1.x: it does not speak HTTP/2 without upgrade (h2c)",
                ));
            }
        }
        if !self.partial.is_empty() {
            if self.partial.len() < HEAD_LEN {
                let n = (HEAD_LEN - self.partial.len()).min(data.len());
                self.partial.extend_from_slice(&data[..n]);
                data = &data[n..];
                if self.partial.len() < HEAD_LEN {
                    return Ok(());
                }
            }
            let head = self.frame_head(&self.partial[..HEAD_LEN])?;
            let n = (HEAD_LEN + head.len - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.partial.len() < HEAD_LEN + head.len {
                return Ok(());
            }
            let whole = std::mem::take(&mut self.partial);
            let result = self.frame(head, &whole[HEAD_LEN..], reqs, f);
            self.partial = whole;
            self.partial.clear();
            result?;
        }
        while data.len() >= HEAD_LEN {
            let head = self.frame_head(&data[..HEAD_LEN])?;
            if data.len() < HEAD_LEN + head.len {
                break;
            }
            let (whole, rest) = data.split_at(HEAD_LEN + head.len);
            self.frame(head, &whole[HEAD_LEN..], reqs, f)?;
            data = rest;
        }
        self.partial.extend_from_slice(data);
        self.pump(reqs);
        Ok(())
    }

    /// A frame header, checked against the frame size we allow.
    fn frame_head(&self, bytes: &[u8]) -> Result<Head, H2Error> {
        let mut b = [0u8; HEAD_LEN];
        b.copy_from_slice(bytes);
        let head = Head::parse(&b);
        if head.len > DEFAULT_MAX_FRAME {
            return Err(err(
                FRAME_SIZE_ERROR,
                format!(
                    "a {} frame of {} bytes, over the {DEFAULT_MAX_FRAME} the client allows",
                    kind_name(head.kind),
                    head.len
                ),
            ));
        }
        Ok(head)
    }

    fn frame<F: FnMut(Event<'_>)>(
        &mut self,
        head: Head,
        payload: &[u8],
        reqs: &[H2Request],
        f: &mut F,
    ) -> Result<(), H2Error> {
        self.block.check_between(head)?;
        match head.kind {
            DATA => self.on_data(head, payload, f),
            HEADERS => self.on_headers(head, payload, f),
            PRIORITY => {
                if head.stream == 0 {
                    return Err(proto("PRIORITY on stream 0"));
                }
                if head.len != 5 {
                    return Err(err(FRAME_SIZE_ERROR, "a PRIORITY frame not of 5 bytes"));
                }
                Ok(())
            }
            RST_STREAM => self.on_rst(head, payload, f),
            SETTINGS => self.on_settings(head, payload, reqs),
            PUSH_PROMISE => Err(proto("PUSH_PROMISE, though the client disabled push")),
            PING => self.on_ping(head, payload),
            GOAWAY => self.on_goaway(head, payload, f),
            WINDOW_UPDATE => self.on_window_update(head, payload),
            CONTINUATION => self.on_continuation(head, payload, f),
            // Unknown frame types are ignored (RFC 9113 §5.5).
            _ => Ok(()),
        }
    }

    /// The index of stream `id` if it is open; an error if the client
    /// never opened it (an even id, or one not used yet).
    fn lookup(&self, id: u32, kind: u8) -> Result<Option<usize>, H2Error> {
        if id.is_multiple_of(2) || id >= self.next_id {
            return Err(proto(format!(
                "{} on stream {id}, which the client never opened",
                kind_name(kind)
            )));
        }
        Ok(self.find(id))
    }

    /// The index of open stream `id`: servers mostly answer the oldest
    /// first, so the front is looked at before a binary search.
    #[inline]
    fn find(&self, id: u32) -> Option<usize> {
        if self.streams.front().is_some_and(|s| s.id == id) {
            return Some(0);
        }
        self.streams.binary_search_by_key(&id, |s| s.id).ok()
    }

    pub(super) fn remove(&mut self, i: usize) -> Option<Stream> {
        let s = self.streams.remove(i)?;
        if s.body_sent != usize::MAX {
            self.uploading -= 1;
        }
        Some(s)
    }

    fn on_data<F: FnMut(Event<'_>)>(
        &mut self,
        head: Head,
        payload: &[u8],
        f: &mut F,
    ) -> Result<(), H2Error> {
        if head.stream == 0 {
            return Err(proto("DATA on stream 0"));
        }
        let body = unpad(head, payload)?;
        let len = payload.len() as i64;
        self.recv_window -= len;
        if self.recv_window < 0 {
            return Err(err(
                FLOW_CONTROL_ERROR,
                "the server sent more DATA than the connection window allowed",
            ));
        }
        if self.recv_window < OUR_WINDOW / 2 {
            put_window_update(&mut self.next, 0, (OUR_WINDOW - self.recv_window) as u32);
            self.recv_window = OUR_WINDOW;
        }
        let Some(i) = self.lookup(head.stream, DATA)? else {
            // A stream we reset or that timed out: its DATA is dropped.
            return Ok(());
        };
        let collect = self.collect;
        let s = &mut self.streams[i];
        if s.status == 0 {
            return Err(proto(format!(
                "DATA on stream {} before its response head",
                s.id
            )));
        }
        s.recv_window -= len;
        if s.recv_window < 0 {
            return Err(err(
                FLOW_CONTROL_ERROR,
                format!(
                    "the server sent more DATA on stream {} than its window allowed",
                    s.id
                ),
            ));
        }
        s.body_bytes += body.len() as u64;
        s.wire_bytes += (HEAD_LEN + payload.len()) as u64;
        if collect && !body.is_empty() {
            f(Event::Body {
                seq: s.ticket.seq,
                bytes: body,
            });
        }
        if head.has(END_STREAM) {
            self.complete(i, f);
        } else if s.recv_window < OUR_WINDOW / 2 {
            let id = s.id;
            let increment = (OUR_WINDOW - s.recv_window) as u32;
            s.recv_window = OUR_WINDOW;
            put_window_update(&mut self.next, id, increment);
        }
        Ok(())
    }

    fn on_headers<F: FnMut(Event<'_>)>(
        &mut self,
        head: Head,
        payload: &[u8],
        f: &mut F,
    ) -> Result<(), H2Error> {
        if head.stream == 0 {
            return Err(proto("HEADERS on stream 0"));
        }
        let mut block = unpad(head, payload)?;
        if head.has(PRIORITY_FLAG) {
            if block.len() < 5 {
                return Err(err(
                    FRAME_SIZE_ERROR,
                    "a HEADERS frame too short for its priority fields",
                ));
            }
            block = &block[5..];
        }
        self.lookup(head.stream, HEADERS)?;
        if head.has(END_HEADERS) {
            return self.header_block(head.stream, head.has(END_STREAM), block, 1, f);
        }
        self.block.start(head, block);
        Ok(())
    }

    fn on_continuation<F: FnMut(Event<'_>)>(
        &mut self,
        head: Head,
        payload: &[u8],
        f: &mut F,
    ) -> Result<(), H2Error> {
        if !self.block.continuation(head, payload, MAX_HEADER_BLOCK)? {
            return Ok(());
        }
        let (id, end, frames) = self.block.finish();
        let mut block = std::mem::take(&mut self.block.bytes);
        let result = self.header_block(id, end, &block, frames, f);
        block.clear();
        if block.capacity() <= 4 * DEFAULT_MAX_FRAME {
            self.block.bytes = block;
        }
        result
    }

    /// A whole header block for stream `id`: HPACK-decoded (every block,
    /// for the table's sake, though a repeat is counted rather than
    /// decoded: see `head.rs`), then a response head or trailers.
    fn header_block<F: FnMut(Event<'_>)>(
        &mut self,
        id: u32,
        end_stream: bool,
        block: &[u8],
        frames: usize,
        f: &mut F,
    ) -> Result<(), H2Error> {
        let wire = block.len() + frames * HEAD_LEN;
        let mut text = std::mem::take(&mut self.head);
        text.clear();
        let decoded = self.heads.decode(block, self.collect.then_some(&mut text));
        let result = match decoded {
            Ok(facts) => self.on_fields(id, end_stream, facts, &text, wire, f),
            Err(e) => Err(err(
                COMPRESSION_ERROR,
                format!("the server's header block on stream {id} did not decode ({e:?})"),
            )),
        };
        self.head = text;
        result
    }

    /// The decoded fields of a header block on stream `id`.
    fn on_fields<F: FnMut(Event<'_>)>(
        &mut self,
        id: u32,
        end_stream: bool,
        facts: memo::Facts,
        fields: &[u8],
        wire: usize,
        f: &mut F,
    ) -> Result<(), H2Error> {
        let memo::Facts {
            status,
            malformed,
            list,
        } = facts;
        let Some(i) = self.find(id) else {
            // A stream we no longer track: decoded for HPACK's sake only.
            return Ok(());
        };
        let s = &mut self.streams[i];
        s.wire_bytes += wire as u64;
        // Ok(whether this block is the final response head), or why the
        // stream cannot go on.
        let outcome: Result<bool, String> = if list > MAX_HEADER_LIST {
            Err(format!(
                "a response header list of {list} bytes on stream {id}, over the {MAX_HEADER_LIST} the client allows"
            ))
        } else if let Some(what) = malformed {
            Err(format!("a malformed response head on stream {id}: {what}"))
        } else if s.status != 0 {
            // Trailers: they end the stream.
            if end_stream {
                Ok(false)
            } else {
                Err(format!("trailers without END_STREAM on stream {id}"))
            }
        } else {
            match status {
                Some(Ok(code)) if (100..200).contains(&code) => {
                    if end_stream || code == 101 {
                        Err(format!("an interim {code} response ending stream {id}"))
                    } else {
                        // Interim: the final head follows.
                        return Ok(());
                    }
                }
                Some(Ok(code)) => {
                    s.status = code;
                    s.head_bytes = wire;
                    Ok(true)
                }
                Some(Err(())) => Err(format!("an invalid :status on stream {id}")),
                None => Err(format!("a response head without :status on stream {id}")),
            }
        };
        match outcome {
            Err(reason) => {
                put_rst(&mut self.next, id, PROTOCOL_ERROR);
                if let Some(s) = self.remove(i) {
                    f(Event::Failed {
                        ticket: s.ticket,
                        reason,
                    });
                }
            }
            Ok(head_now) => {
                let s = &self.streams[i];
                if self.collect && head_now {
                    let mut head = format!("HTTP/2 {}\r\n", s.status).into_bytes();
                    head.extend_from_slice(fields);
                    head.extend_from_slice(b"\r\n");
                    f(Event::Head {
                        seq: s.ticket.seq,
                        head: &head,
                    });
                }
                if end_stream {
                    self.complete(i, f);
                }
            }
        }
        Ok(())
    }

    /// Stream `i`'s response is complete.
    fn complete<F: FnMut(Event<'_>)>(&mut self, i: usize, f: &mut F) {
        let Some(s) = self.remove(i) else {
            return;
        };
        if s.body_sent != usize::MAX {
            // The server answered before the request body was all sent.
            put_rst(&mut self.next, s.id, CANCEL);
        }
        self.served += 1;
        f(Event::Done {
            ticket: s.ticket,
            sent_at: s.sent_at,
            response: Response {
                status: s.status,
                version_minor: 0,
                head_bytes: s.head_bytes,
                body_bytes: s.body_bytes,
                wire_bytes: s.wire_bytes,
                keep_alive: true,
                consumed: 0,
            },
        });
    }

    fn on_rst<F: FnMut(Event<'_>)>(
        &mut self,
        head: Head,
        payload: &[u8],
        f: &mut F,
    ) -> Result<(), H2Error> {
        if head.stream == 0 {
            return Err(proto("RST_STREAM on stream 0"));
        }
        if payload.len() != 4 {
            return Err(err(FRAME_SIZE_ERROR, "a RST_STREAM frame not of 4 bytes"));
        }
        let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
        if let Some(i) = self.lookup(head.stream, RST_STREAM)?
            && let Some(s) = self.remove(i)
        {
            f(Event::Reset {
                ticket: s.ticket,
                code,
            });
        }
        Ok(())
    }

    fn on_settings(
        &mut self,
        head: Head,
        payload: &[u8],
        reqs: &[H2Request],
    ) -> Result<(), H2Error> {
        let Some(settings) = Settings::read(head, payload)? else {
            self.settings_by = None;
            return Ok(());
        };
        if let Some(n) = settings.max_concurrent_streams {
            self.peer_max_streams = n as usize;
        }
        if let Some(window) = settings.initial_window {
            let windows = self.streams.iter_mut().map(|s| &mut s.send_window);
            shift_windows(&mut self.peer_initial_window, window, windows)?;
        }
        if let Some(n) = settings.max_frame {
            self.peer_max_frame = n;
        }
        self.peer_settings = true;
        self.control_room()?;
        put_head(&mut self.next, 0, SETTINGS, ACK, 0);
        self.pump(reqs);
        Ok(())
    }

    /// Replies to the server's PINGs and SETTINGS must not pile up.
    fn control_room(&self) -> Result<(), H2Error> {
        if self.next.len() > MAX_CONTROL_BACKLOG {
            return Err(err(
                ENHANCE_YOUR_CALM,
                format!(
                    "over {} KiB of replies to PING and SETTINGS frames wait unsent (a flood)",
                    MAX_CONTROL_BACKLOG / 1024
                ),
            ));
        }
        Ok(())
    }

    fn on_ping(&mut self, head: Head, payload: &[u8]) -> Result<(), H2Error> {
        if let Some(opaque) = read_ping(head, payload)? {
            self.control_room()?;
            put_ping(&mut self.next, ACK, opaque);
        }
        Ok(())
    }

    fn on_goaway<F: FnMut(Event<'_>)>(
        &mut self,
        head: Head,
        payload: &[u8],
        f: &mut F,
    ) -> Result<(), H2Error> {
        if head.stream != 0 {
            return Err(proto("GOAWAY on a stream"));
        }
        if payload.len() < 8 {
            return Err(err(FRAME_SIZE_ERROR, "a GOAWAY frame under 8 bytes"));
        }
        let last =
            u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & MAX_STREAM_ID;
        let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
        let last = self.goaway.map_or(last, |l| l.min(last));
        self.goaway = Some(last);
        f(Event::GoAway { code });
        while self.streams.back().is_some_and(|s| s.id > last) {
            if let Some(s) = self.remove(self.streams.len() - 1) {
                f(Event::Retry {
                    ticket: s.ticket,
                    code,
                });
            }
        }
        Ok(())
    }

    fn on_window_update(&mut self, head: Head, payload: &[u8]) -> Result<(), H2Error> {
        if payload.len() != 4 {
            return Err(err(
                FRAME_SIZE_ERROR,
                "a WINDOW_UPDATE frame not of 4 bytes",
            ));
        }
        let inc = (u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
            & MAX_STREAM_ID) as i64;
        if inc == 0 {
            return Err(proto(format!(
                "a WINDOW_UPDATE of 0 on stream {}",
                head.stream
            )));
        }
        let window = if head.stream == 0 {
            &mut self.send_window
        } else {
            match self.lookup(head.stream, WINDOW_UPDATE)? {
                Some(i) => &mut self.streams[i].send_window,
                None => return Ok(()),
            }
        };
        *window += inc;
        if *window > MAX_WINDOW {
            return Err(err(
                FLOW_CONTROL_ERROR,
                format!("a WINDOW_UPDATE past 2^31-1 on stream {}", head.stream),
            ));
        }
        Ok(())
    }
}
