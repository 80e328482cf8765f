//! Request encoding: a request is encoded once per target and the bytes reused.

/// HTTP version spoken on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// HTTP/1.0: no keep-alive unless asked for, close-delimited bodies common.
    Http10,
    /// HTTP/1.1: keep-alive by default.
    #[default]
    Http11,
}

/// Everything needed to encode one request.
#[derive(Debug, Clone)]
pub struct RequestSpec<'a> {
    pub method: &'a str,
    /// Value of the `Host` header, already including `:port` when the port is not 80.
    pub host: &'a str,
    /// Path and query, starting with `/`.
    pub path: &'a str,
    /// User headers, sent in order after the defaults; a user `Host`,
    /// `User-Agent`, `Accept` or `Connection` header replaces the default one.
    pub headers: &'a [(String, String)],
    /// Optional body; `Content-Length` is added when present.
    pub body: Option<&'a [u8]>,
    pub version: Version,
    /// `false` adds `Connection: close` (HTTP/1.1); `true` on HTTP/1.0 adds
    /// `Connection: keep-alive`.
    pub keep_alive: bool,
}

/// Encodes a request to its wire bytes.
pub fn encode_request(spec: &RequestSpec<'_>) -> Vec<u8> {
    let _ = spec;
    todo!("helper implements")
}
