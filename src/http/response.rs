//! Incremental response parser on httparse.

/// A typed framing error; never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("response header block larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("more than {0} response headers")]
    TooManyHeaders(usize),
    #[error("malformed response head: {0}")]
    BadHead(String),
    #[error("invalid Content-Length")]
    BadContentLength,
    #[error("invalid chunk size line")]
    BadChunk,
    #[error("connection closed inside a response ({0})")]
    UnexpectedEof(&'static str),
}

/// What a finished response looked like.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// Bytes of the final head (status line + headers + blank line); interim
    /// 1xx heads are not counted here.
    pub head_bytes: usize,
    /// Bytes of the decoded body (chunked framing not counted).
    pub body_bytes: u64,
    /// Bytes on the wire for this response, interim 1xx heads and chunk framing included.
    pub wire_bytes: u64,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
    /// Bytes of the slice passed to the last `feed` that belong to this
    /// response; anything after them is the start of the next response.
    pub consumed: usize,
}

/// Progress after feeding bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    NeedMore,
    Done(Response),
}

/// Parses one response at a time; `reset` readies it for the next one and
/// keeps its buffers, so the steady state does not allocate.
#[derive(Debug, Default)]
pub struct ResponseParser {}

impl ResponseParser {
    /// `collect` keeps the raw final head and the decoded body (for `get`).
    pub fn new(collect: bool) -> Self {
        let _ = collect;
        todo!("helper implements")
    }
    /// Starts a new response. `head_request`: the request was HEAD, so no body.
    pub fn reset(&mut self, head_request: bool) {
        let _ = head_request;
        todo!()
    }
    /// Feeds bytes received from the peer.
    pub fn feed(&mut self, data: &[u8]) -> Result<Progress, HttpError> {
        let _ = data;
        todo!()
    }
    /// The peer closed the connection: completes a close-delimited body, or errors.
    pub fn feed_eof(&mut self) -> Result<Response, HttpError> {
        todo!()
    }
    /// Whether any byte of the current response has been seen.
    pub fn started(&self) -> bool {
        todo!()
    }
    /// With `collect`: the raw final head (status line and headers, CRLFs included).
    pub fn head(&self) -> &[u8] {
        todo!()
    }
    /// With `collect`: the decoded body.
    pub fn body(&self) -> &[u8] {
        todo!()
    }
}
