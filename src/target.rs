//! What to fetch: a URL turned into a resolved socket address and the
//! request bytes to send there, encoded once and shared by every connection.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

use bytes::Bytes;

use crate::http::{RequestSpec, Version, encode_request};

/// Why a URL cannot be fetched; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("invalid URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot resolve host '{host}': {reason}")]
    Resolve { host: String, reason: String },
}

/// How every request of a run is built.
#[derive(Debug, Clone)]
pub struct RequestOptions {
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub version: Version,
    pub keep_alive: bool,
    /// Where a URL's host and port connect (`--resolve`, `--connect-to`).
    pub routes: Routes,
}

impl Default for RequestOptions {
    fn default() -> Self {
        Self {
            method: "GET".into(),
            headers: Vec::new(),
            body: None,
            version: Version::Http11,
            keep_alive: true,
            routes: Routes::default(),
        }
    }
}

/// curl's `--resolve HOST:PORT:ADDR[,ADDR]...`: a host and port that
/// connect to these addresses without asking the resolver. `*` as the host
/// matches every host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveRule {
    pub host: String,
    pub port: u16,
    pub addrs: Vec<std::net::IpAddr>,
}

/// curl's and oha's `--connect-to HOST1:PORT1:HOST2:PORT2`: requests for
/// HOST1:PORT1 connect to HOST2:PORT2 instead; the URL's host still goes
/// into `Host` (`:authority`), SNI and the certificate check. An empty
/// HOST1 or PORT1 matches any; an empty HOST2 or PORT2 keeps the URL's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTo {
    pub from_host: Option<String>,
    pub from_port: Option<u16>,
    pub to_host: Option<String>,
    pub to_port: Option<u16>,
}

/// The `--resolve` and `--connect-to` rules of a run; the first rule that
/// matches wins, as in curl. `--connect-to` applies first, and the host it
/// leads to is looked up in `--resolve` before the resolver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    pub resolve: Vec<ResolveRule>,
    pub connect_to: Vec<ConnectTo>,
}

/// Compares host names as DNS does (case-insensitively), and IPv6
/// literals with or without their brackets.
fn same_host(a: &str, b: &str) -> bool {
    let bare = |h: &str| h.trim_start_matches('[').trim_end_matches(']').to_string();
    bare(a).eq_ignore_ascii_case(&bare(b))
}

impl Routes {
    /// Where a connection for `host:port` goes: the host and port to
    /// connect to and their addresses.
    pub fn addrs(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, TargetError> {
        let (host, port) = self
            .connect_to
            .iter()
            .find(|c| {
                c.from_host.as_deref().is_none_or(|h| same_host(h, host))
                    && c.from_port.is_none_or(|p| p == port)
            })
            .map_or((host, port), |c| {
                (
                    c.to_host.as_deref().unwrap_or(host),
                    c.to_port.unwrap_or(port),
                )
            });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match self
            .resolve
            .iter()
            .find(|r| r.port == port && (r.host == "*" || same_host(&r.host, bare)))
        {
            Some(rule) => Ok(rule
                .addrs
                .iter()
                .map(|&ip| SocketAddr::new(ip, port))
                .collect()),
            None => resolve(bare, port),
        }
    }
}

/// Splits `host:rest` where the host may be an IPv6 literal in brackets.
fn split_host(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('[') {
        let end = s.find(']')?;
        let rest = s[end + 1..].strip_prefix(':')?;
        Some((&s[..=end], rest))
    } else {
        s.split_once(':')
    }
}

fn parse_port(s: &str, what: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("'{s}' is not a port (1 to 65535) for {what}"))
}

/// Parses `--resolve HOST:PORT:ADDR[,ADDR]...` (IPv6 addresses in brackets
/// or bare, as curl takes them).
pub fn parse_resolve(s: &str) -> Result<ResolveRule, String> {
    let usage =
        || format!("'{s}' is not HOST:PORT:ADDRESS[,ADDRESS...] (e.g. example.com:443:127.0.0.1)");
    let (host, rest) = split_host(s.trim()).ok_or_else(usage)?;
    let (port, addrs) = rest.split_once(':').ok_or_else(usage)?;
    if host.is_empty() || addrs.is_empty() {
        return Err(usage());
    }
    let port = parse_port(port, "--resolve")?;
    let addrs = addrs
        .split(',')
        .map(|a| {
            let a = a.trim();
            a.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .map_err(|_| format!("'{a}' in --resolve '{s}' is not an IP address"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ResolveRule {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        addrs,
    })
}

/// Parses `--connect-to HOST1:PORT1:HOST2:PORT2` (each part may be empty;
/// IPv6 literals in brackets).
pub fn parse_connect_to(s: &str) -> Result<ConnectTo, String> {
    let usage = || {
        format!(
            "'{s}' is not HOST1:PORT1:HOST2:PORT2 (e.g. example.com:443:127.0.0.1:8443; \
             an empty part matches any, or keeps the URL's)"
        )
    };
    let (from_host, rest) = split_host(s.trim()).ok_or_else(usage)?;
    let (from_port, rest) = rest.split_once(':').ok_or_else(usage)?;
    let (to_host, to_port) = split_host(rest).ok_or_else(usage)?;
    if to_port.contains(':') {
        return Err(usage());
    }
    let some = |h: &str| (!h.is_empty()).then(|| h.to_string());
    let port = |p: &str| {
        (!p.is_empty())
            .then(|| parse_port(p, "--connect-to"))
            .transpose()
    };
    Ok(ConnectTo {
        from_host: some(from_host.trim_start_matches('[').trim_end_matches(']')),
        from_port: port(from_port)?,
        to_host: some(to_host.trim_start_matches('[').trim_end_matches(']')),
        to_port: port(to_port)?,
    })
}

/// One resolved URL and its encoded request.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as the user wrote it (normalised), for messages and reports.
    pub url: String,
    pub host: String,
    pub port: u16,
    /// Path and query.
    pub path: String,
    pub method: String,
    /// The first of `addrs`.
    pub addr: SocketAddr,
    /// Every address the host resolved to, in the order they are tried.
    pub addrs: Vec<SocketAddr>,
    /// The request's wire bytes; cloning is a reference-count bump.
    pub request: Bytes,
    /// HEAD responses have no body whatever their headers say.
    pub head_request: bool,
    /// `https://`: TLS to `server_name` (the host, for SNI and the certificate).
    pub tls: bool,
    pub server_name: Option<rustls::pki_types::ServerName<'static>>,
}

/// The parts of an `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Normalised, without any user name or password (it goes into reports).
    pub url: String,
    pub host: String,
    pub port: u16,
    pub path: String,
    /// `user:password` from the URL, percent-decoded: sent as Basic
    /// authorization, as curl does.
    pub credentials: Option<String>,
    /// `https://`.
    pub tls: bool,
}

impl HttpUrl {
    /// `Host` header value: the port is added when it is not the scheme's.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Parses an `http://` or `https://` URL; a URL without a scheme is taken
/// as `http://`, as curl does.
pub fn parse_url(input: &str) -> Result<HttpUrl, TargetError> {
    let trimmed = input.trim();
    let lower = trimmed.to_ascii_lowercase();
    for scheme in ["http:", "https:"] {
        if lower.starts_with(scheme) && !lower[scheme.len()..].starts_with("//") {
            // `http:/host` or `http:host`: not a host named "http".
            return Err(TargetError::InvalidUrl {
                url: input.to_string(),
                reason: format!("malformed: a URL starts with {scheme}// (two slashes)"),
            });
        }
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let invalid = |reason: String| TargetError::InvalidUrl {
        url: input.to_string(),
        reason,
    };
    let parsed = url::Url::parse(&with_scheme).map_err(|e| invalid(e.to_string()))?;
    let tls = match parsed.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(invalid(format!(
                "unsupported scheme '{other}' (only http:// and https://)"
            )));
        }
    };
    let host = match parsed.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err(invalid("no host".into())),
    };
    if host.is_empty() {
        return Err(invalid("no host".into()));
    }
    let port = parsed
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let mut path = parsed.path().to_string();
    if path.is_empty() {
        path.push('/');
    }
    if let Some(q) = parsed.query() {
        path.push('?');
        path.push_str(q);
    }
    let credentials = (!parsed.username().is_empty() || parsed.password().is_some()).then(|| {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        format!(
            "{}:{}",
            decode(parsed.username()),
            decode(parsed.password().unwrap_or(""))
        )
    });
    let mut shown = parsed.clone();
    // Cannot fail on an http URL with a host.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    Ok(HttpUrl {
        url: shown.to_string(),
        host,
        port,
        path,
        credentials,
        tls,
    })
}

/// A URL as messages and reports show it: parsed, so without any
/// `user:password`; the input itself if it does not parse.
pub fn shown_url(input: &str) -> String {
    parse_url(input).map_or_else(|_| input.to_string(), |u| u.url)
}

/// Resolves a host name to every address it has, IPv4 first (most test
/// servers listen there), each once; a connect that is refused, cannot
/// reach or times out on one tries the next (see `Session`).
pub fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, TargetError> {
    let err = |reason: String| TargetError::Resolve {
        host: host.to_string(),
        reason,
    };
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for a in (host, port)
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
    {
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    addrs.sort_by_key(|a| !a.is_ipv4());
    if addrs.is_empty() {
        return Err(err("no address found".into()));
    }
    Ok(addrs)
}

impl Target {
    /// Parses, resolves and encodes; all the work that must not happen per request.
    pub fn new(input: &str, opts: &RequestOptions) -> Result<Self, TargetError> {
        let url = parse_url(input)?;
        let server_name = if url.tls {
            let name =
                crate::tls::server_name(&url.host).map_err(|reason| TargetError::InvalidUrl {
                    url: input.to_string(),
                    reason,
                })?;
            Some(name)
        } else {
            None
        };
        let addrs = opts.routes.addrs(&url.host, url.port)?;
        let addr = addrs[0];
        let host_header = url.host_header();
        let mut headers = std::borrow::Cow::Borrowed(&opts.headers);
        if let Some(c) = &url.credentials
            && !headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        {
            use base64::Engine as _;
            let basic = base64::engine::general_purpose::STANDARD.encode(c);
            headers
                .to_mut()
                .push(("Authorization".to_string(), format!("Basic {basic}")));
        }
        let request = encode_request(&RequestSpec {
            method: &opts.method,
            host: &host_header,
            path: &url.path,
            headers: &headers,
            body: opts.body.as_deref(),
            version: opts.version,
            keep_alive: opts.keep_alive,
        });
        Ok(Self {
            url: url.url,
            host: url.host,
            port: url.port,
            path: url.path,
            method: opts.method.clone(),
            addr,
            addrs,
            request: Bytes::from(request),
            // Methods are case-sensitive (RFC 9110 §9.1): `head` is not HEAD,
            // and its response has the body its headers announce.
            head_request: opts.method == "HEAD",
            tls: url.tls,
            server_name,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// Parses a `Name: value` header argument.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    // curl's `Name;` sends the field with an empty value.
    let (name, value) = match s.split_once(':') {
        Some(nv) => nv,
        None => s
            .trim_end()
            .strip_suffix(';')
            .map(|name| (name, ""))
            .ok_or_else(|| {
                format!(
                    "invalid header '{s}': expected 'Name: value' (or 'Name;' for an empty one)"
                )
            })?,
    };
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(format!("invalid header name in '{s}'"));
    }
    let value = value.trim();
    if value.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(format!("invalid header value in '{s}'"));
    }
    Ok((name.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_urls() {
        let u = parse_url("http://127.0.0.1:5555/bar?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 5555, "/bar?x=1")
        );
        assert_eq!(u.host_header(), "127.0.0.1:5555");
        let u = parse_url("localhost").unwrap();
        assert_eq!(
            (u.port, u.path.as_str(), u.host_header().as_str()),
            (80, "/", "localhost")
        );
        let u = parse_url("http://[::1]:8080/").unwrap();
        assert_eq!(u.host_header(), "[::1]:8080");
    }

    #[test]
    fn resolve_and_connect_to_rules_parse_as_curl_writes_them() {
        let r = parse_resolve("Example.com:443:127.0.0.1,[::1]").unwrap();
        assert_eq!((r.host.as_str(), r.port), ("Example.com", 443));
        assert_eq!(
            r.addrs,
            [
                "127.0.0.1".parse::<std::net::IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        let r = parse_resolve("[::1]:80:::1").unwrap();
        assert_eq!((r.host.as_str(), r.addrs.len()), ("::1", 1));
        for bad in [
            "a",
            "a:80",
            ":80:127.0.0.1",
            "a:0:127.0.0.1",
            "a:80:",
            "a:80:x",
            "a:80:1.2.3.4,",
        ] {
            assert!(parse_resolve(bad).is_err(), "{bad}");
        }
        let c = parse_connect_to("a.test:443:[::1]:8443").unwrap();
        assert_eq!(
            c,
            ConnectTo {
                from_host: Some("a.test".into()),
                from_port: Some(443),
                to_host: Some("::1".into()),
                to_port: Some(8443),
            }
        );
        let c = parse_connect_to(":::").unwrap();
        assert_eq!(
            (c.from_host, c.from_port, c.to_host, c.to_port),
            (None, None, None, None)
        );
        for bad in ["a:443:b", "a:443:b:c", "a:x:b:1", "a:1:b:2:3", "[::1:1:b:2"] {
            assert!(parse_connect_to(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes_pick_the_first_matching_rule() {
        let routes = Routes {
            resolve: vec![
                parse_resolve("b.test:9000:127.0.0.9").unwrap(),
                parse_resolve("*:9000:127.0.0.8").unwrap(),
            ],
            connect_to: vec![
                parse_connect_to("A.TEST:80:b.test:9000").unwrap(),
                parse_connect_to("a.test::c.test:9000").unwrap(),
                parse_connect_to("::[::1]:").unwrap(),
            ],
        };
        let at = |h: &str, p: u16| routes.addrs(h, p).unwrap();
        assert_eq!(at("a.test", 80), ["127.0.0.9:9000".parse().unwrap()]);
        assert_eq!(at("a.test", 81), ["127.0.0.8:9000".parse().unwrap()]);
        assert_eq!(at("z.test", 7), ["[::1]:7".parse().unwrap()]);
        assert_eq!(
            Routes::default().addrs("127.0.0.1", 5).unwrap(),
            ["127.0.0.1:5".parse().unwrap()]
        );
    }

    #[test]
    fn credentials_become_basic_authorization_and_leave_the_shown_url() {
        let u = parse_url("http://us%20er:p%40ss@127.0.0.1:5555/x").unwrap();
        assert_eq!(u.credentials.as_deref(), Some("us er:p@ss"));
        assert_eq!(u.url, "http://127.0.0.1:5555/x");
        let opts = RequestOptions::default();
        let t = Target::new("http://Aladdin:open%20sesame@127.0.0.1:9/", &opts).unwrap();
        let req = String::from_utf8(t.request.to_vec()).unwrap();
        assert!(
            req.contains("Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"),
            "{req}"
        );
        assert_eq!(t.url, "http://127.0.0.1:9/");
        // An Authorization header given with -H wins.
        let opts = RequestOptions {
            headers: vec![("authorization".into(), "Bearer t".into())],
            ..opts
        };
        let t = Target::new("http://a:b@127.0.0.1:9/", &opts).unwrap();
        let req = String::from_utf8(t.request.to_vec()).unwrap();
        assert!(!req.contains("Basic"), "{req}");
        assert!(
            parse_url("http://127.0.0.1/")
                .unwrap()
                .credentials
                .is_none()
        );
    }

    #[test]
    fn https_urls_default_to_port_443_and_say_so_in_host_only_when_not() {
        let u = parse_url("https://example.com/x").unwrap();
        assert!(u.tls);
        assert_eq!((u.port, u.host_header().as_str()), (443, "example.com"));
        let u = parse_url("https://example.com:8443/").unwrap();
        assert_eq!(u.host_header(), "example.com:8443");
        let u = parse_url("https://example.com:80/").unwrap();
        assert_eq!(u.host_header(), "example.com:80");
        assert!(!parse_url("example.com").unwrap().tls);
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(matches!(
            parse_url("http://[::1"),
            Err(TargetError::InvalidUrl { .. })
        ));
        assert!(matches!(
            parse_url("ftp://x/"),
            Err(TargetError::InvalidUrl { .. })
        ));
        assert!(matches!(
            parse_url("http://:80/"),
            Err(TargetError::InvalidUrl { .. })
        ));
        let msg = parse_url("http://[::1").unwrap_err().to_string();
        assert!(msg.starts_with("invalid URL 'http://[::1'"), "{msg}");
        // Issue 19 item 13: a typo in the scheme is not a host named "http".
        for typo in ["http:/127.0.0.1:8080/bar", "HTTP:127.0.0.1/", "https:/x/"] {
            let msg = parse_url(typo).unwrap_err().to_string();
            assert!(
                msg.contains("malformed: a URL starts with"),
                "{typo}: {msg}"
            );
        }
        assert!(parse_url("localhost:8080/x").is_ok());
    }

    #[test]
    fn parses_headers() {
        assert_eq!(
            parse_header("X-A: b c").unwrap(),
            ("X-A".into(), "b c".into())
        );
        assert!(parse_header("nocolon").is_err());
        assert!(parse_header(": v").is_err());
        // curl's way to send an empty value.
        assert_eq!(
            parse_header("X-Empty;").unwrap(),
            ("X-Empty".into(), "".into())
        );
        assert!(parse_header(";").is_err());
    }
}
