//! A target's request in HTTP/2 form: its HPACK header block and body,
//! made once per run from the HTTP/1.x request bytes the run already
//! encoded, so both protocols send exactly the same request.
//!
//! The block is encoded with a dynamic table of size 0: it refers to the
//! static table only, so the same bytes are valid on every stream of
//! every connection, and no request costs an encoding.

use bytes::Bytes;

/// One target's request for HTTP/2 streams.
#[derive(Debug, Clone, Default)]
pub struct H2Request {
    /// The HPACK header block (pseudo-headers first).
    pub block: Bytes,
    /// The request body (`--body`, `--body-file`), sent as DATA frames.
    pub body: Bytes,
}

/// Header fields that are HTTP/1.x connection-specific and must not be
/// sent on HTTP/2 (RFC 9113 §8.2.2).
const CONNECTION_SPECIFIC: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// The HTTP/2 form of `request` (an HTTP/1.x request as the run encoded
/// it) for `scheme`; an error says what could not be carried over.
pub fn from_http1(request: &[u8], scheme: &str) -> Result<H2Request, String> {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Request::new(&mut fields);
    let head_len = match parsed.parse(request) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("the request head is incomplete".into()),
        Err(e) => return Err(format!("the request cannot be read back: {e}")),
    };
    let method = parsed.method.unwrap_or("GET");
    let path = parsed.path.unwrap_or("/");
    let mut authority = "";
    let mut headers: Vec<(Vec<u8>, &[u8])> = Vec::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        if name == "host" {
            authority = std::str::from_utf8(h.value).unwrap_or_default();
        }
        if CONNECTION_SPECIFIC.contains(&name.as_str())
            || (name == "te" && !h.value.eq_ignore_ascii_case(b"trailers"))
        {
            continue;
        }
        headers.push((name.into_bytes(), h.value));
    }
    let mut encoder = loona_hpack::Encoder::new();
    encoder.set_max_table_size(0);
    let pseudo: [(&[u8], &[u8]); 4] = [
        (b":method", method.as_bytes()),
        (b":scheme", scheme.as_bytes()),
        (b":authority", authority.as_bytes()),
        (b":path", path.as_bytes()),
    ];
    let all = pseudo
        .into_iter()
        .chain(headers.iter().map(|(n, v)| (n.as_slice(), *v)));
    let block = encoder.encode(all);
    Ok(H2Request {
        block: Bytes::from(block),
        body: Bytes::copy_from_slice(&request[head_len..]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_carries_the_request_without_connection_fields() {
        let http1 = b"POST /up?x=1 HTTP/1.1\r\nHost: example.test:8080\r\nUser-Agent: uf\r\n\
                      Connection: keep-alive\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabc";
        let req = from_http1(http1, "http").unwrap();
        assert_eq!(&req.body[..], b"abc");
        let fields = loona_hpack::Decoder::new().decode(&req.block).unwrap();
        let fields: Vec<(String, String)> = fields
            .into_iter()
            .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        let want = [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "example.test:8080"),
            (":path", "/up?x=1"),
            ("user-agent", "uf"),
            ("content-length", "3"),
            ("x-a", "b"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(fields, want);
        // Static-table references only: decoding it twice on one
        // decoder (as a server does, stream after stream) gives the same.
        let mut d = loona_hpack::Decoder::new();
        assert_eq!(d.decode(&req.block).unwrap(), d.decode(&req.block).unwrap());
    }

    #[test]
    fn a_broken_request_is_an_error() {
        assert!(from_http1(b"GET / HTTP/1.1\r\n", "http").is_err());
    }
}
