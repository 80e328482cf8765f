//! Request encoding: a request is encoded once per target and the bytes reused.
//!
//! Encoding happens off the hot path, so it favours clarity over cleverness;
//! the only allocation is the returned buffer, sized up front.

/// HTTP version spoken on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// HTTP/1.0: no keep-alive unless asked for, close-delimited bodies common.
    Http10,
    /// HTTP/1.1: keep-alive by default.
    #[default]
    Http11,
}

impl Version {
    /// The protocol token as it appears in the request line.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
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
    /// `User-Agent`, `Accept` or `Connection` header replaces the default one
    /// (the default is dropped and the user's header is sent in its place in
    /// the user order). A user `Content-Length` likewise replaces the computed one.
    pub headers: &'a [(String, String)],
    /// Optional body; `Content-Length` is added when present.
    pub body: Option<&'a [u8]>,
    pub version: Version,
    /// `false` adds `Connection: close` (HTTP/1.1); `true` on HTTP/1.0 adds
    /// `Connection: keep-alive`.
    pub keep_alive: bool,
}

/// Identifies the user agent so server logs can tell load-test traffic apart.
const USER_AGENT: &str = concat!("uringfetch/", env!("CARGO_PKG_VERSION"));

/// Encodes a request to its wire bytes.
///
/// Header names and values are written verbatim: validating them (no CR/LF)
/// is the caller's job, done once when the command line is parsed.
pub fn encode_request(spec: &RequestSpec<'_>) -> Vec<u8> {
    let user_has = |name: &str| {
        spec.headers
            .iter()
            .any(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    };
    let body = spec.body.unwrap_or_default();
    let user_len: usize = spec
        .headers
        .iter()
        .map(|(n, v)| n.len() + v.len() + 4)
        .sum();
    let mut out = Vec::with_capacity(
        spec.method.len() + spec.path.len() + spec.host.len() + user_len + body.len() + 128,
    );

    let line = |out: &mut Vec<u8>, name: &str, value: &[u8]| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };

    out.extend_from_slice(spec.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(spec.path.as_bytes());
    out.push(b' ');
    out.extend_from_slice(spec.version.as_str().as_bytes());
    out.extend_from_slice(b"\r\n");

    if !user_has("host") {
        line(&mut out, "Host", spec.host.as_bytes());
    }
    if !user_has("user-agent") {
        line(&mut out, "User-Agent", USER_AGENT.as_bytes());
    }
    if !user_has("accept") {
        line(&mut out, "Accept", b"*/*");
    }
    for (name, value) in spec.headers {
        line(&mut out, name, value.as_bytes());
    }
    if let Some(body) = spec.body
        && !user_has("content-length")
    {
        line(
            &mut out,
            "Content-Length",
            body.len().to_string().as_bytes(),
        );
    }
    if !user_has("connection") {
        match (spec.version, spec.keep_alive) {
            (Version::Http11, false) => line(&mut out, "Connection", b"close"),
            (Version::Http10, true) => line(&mut out, "Connection", b"keep-alive"),
            _ => {}
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}
