//! TLS for `https://` URLs: the client configuration, built once per run
//! and shared by every connection (trust as curl does it, client
//! certificates, session resumption, ALPN), and what a failed handshake
//! means in words a user can act on.
//!
//! The provider is rustls' default, aws-lc-rs: its AES-GCM and ChaCha20
//! are the fastest rustls has on x86-64 and aarch64, and it builds here
//! with a C compiler alone (see bench/README.md for the measurement).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, Error};

use crate::error::{ErrorKind, FetchError};

/// What the user said about TLS (`--cacert`, `-k`, `--cert`, `--key`,
/// `--no-tls-resume`).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Trust these CA certificates (PEM) instead of the system's roots.
    pub cacert: Option<PathBuf>,
    /// Do not verify the server's certificate (curl's `-k`).
    pub insecure: bool,
    /// A client certificate chain (PEM) to present, and its key (PEM; the
    /// certificate's file when not given, as curl does).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Resume sessions on reconnect (TLS 1.3 tickets, TLS 1.2 ids/tickets).
    pub resume: bool,
    /// Trust this certificate (PEM) too: the in-process demo server's
    /// self-signed one (`demo --tls`, `compare --tls`).
    pub also_trust: Option<String>,
    /// Kernel TLS with these ciphers: the keys may leave rustls, and only
    /// cipher suites the kernel takes are offered.
    pub ktls: Option<crate::ktls::Ciphers>,
    /// The newest version offered (`--tls-max`); both 1.2 and 1.3 if none.
    pub max: Option<TlsMax>,
    /// Offer HTTP/2 in ALPN (`h2`, then `http/1.1`).
    pub http2: bool,
}

static TLS12_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// `--tls-max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsMax {
    #[value(name = "1.2")]
    Tls12,
    #[value(name = "1.3")]
    Tls13,
}

/// The TLS library and provider, as `doctor` names them.
#[cfg(not(feature = "ring"))]
pub const LIBRARY: &str = "rustls 0.23 with aws-lc-rs (userspace)";
#[cfg(feature = "ring")]
pub const LIBRARY: &str = "rustls 0.23 with ring (userspace; built with --features ring)";

/// The provider every client TLS connection of the process uses.
///
/// Its ClientHello carries an X25519 key share, as wrk's, oha's and curl's
/// (OpenSSL 3.0) do: aws-lc-rs would lead with X25519MLKEM768, whose
/// share takes 58 µs to make here against 21 µs (a quarter of a resumed
/// connection's client CPU), wasted on the many servers without ML-KEM.
/// It is still offered: a server that wants it asks for it (a
/// HelloRetryRequest), and the handshake then uses it.
pub fn provider() -> Arc<CryptoProvider> {
    #[cfg(not(feature = "ring"))]
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(feature = "ring")]
    let mut provider = rustls::crypto::ring::default_provider();
    // A stable sort: X25519 first, the rest in the provider's order.
    provider
        .kx_groups
        .sort_by_key(|g| g.name() != rustls::NamedGroup::X25519);
    Arc::new(provider)
}

/// Builds the client configuration; the message names the file at fault.
pub fn client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>, String> {
    let mut provider = provider();
    if let Some(ciphers) = opts.ktls {
        let p = Arc::make_mut(&mut provider);
        p.cipher_suites.retain(|s| ciphers.takes(s.suite()));
    }
    warm_up(&provider);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(match opts.max {
            Some(TlsMax::Tls12) => TLS12_ONLY,
            _ => rustls::DEFAULT_VERSIONS,
        })
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let builder = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let mut roots = roots(opts.cacert.as_deref(), opts.also_trust.is_some())?;
        if let Some(pem) = &opts.also_trust {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("the demo server's certificate: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("the demo server's certificate: {e}"))?;
            }
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| format!("TLS setup failed: {e}"))?;
        builder.with_webpki_verifier(verifier)
    };
    let mut config = match &opts.cert {
        Some(cert) => {
            let key = opts.key.as_deref().unwrap_or(cert);
            let chain = read_certs(cert, "--cert")?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("--key {}: no private key read: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("--cert/--key: {e}"))?
        }
        None if opts.key.is_some() => return Err("--key needs --cert".into()),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = if opts.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    config.enable_secret_extraction = opts.ktls.is_some();
    config.resumption = if opts.resume {
        Resumption::store(Arc::new(Sessions::default()))
    } else {
        Resumption::disabled()
    };
    Ok(Arc::new(config))
}

/// The sessions a run resumes: rustls' in-memory store, but with room
/// for as many TLS 1.3 tickets per server as a load test has connections.
/// rustls' own keeps 8 per server, and each ticket resumes one connection
/// once: with 64 connections reconnecting at once, a quarter of the
/// handshakes found no ticket and were full ones (5,898 of 8,039 resumed
/// against nginx, which sends one new ticket per resumed handshake).
#[derive(Debug, Default)]
struct Sessions {
    servers: std::sync::Mutex<std::collections::HashMap<ServerName<'static>, ServerData>>,
}

/// At most this many servers and tickets per server (a ticket with its
/// secret and certificate chain is a few KiB).
const MAX_SERVERS: usize = 256;
const MAX_TICKETS_PER_SERVER: usize = 4096;

#[derive(Debug, Default)]
struct ServerData {
    kx_hint: Option<rustls::NamedGroup>,
    tls12: Option<rustls::client::Tls12ClientSessionValue>,
    /// Newest last; taken newest first, as rustls does.
    tls13: std::collections::VecDeque<rustls::client::Tls13ClientSessionValue>,
}

impl Sessions {
    fn edit<R>(&self, name: &ServerName<'_>, f: impl FnOnce(&mut ServerData) -> R) -> R {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        let key = name.to_owned();
        if !servers.contains_key(&key) && servers.len() >= MAX_SERVERS {
            // A run talks to a few servers; past the bound any one goes.
            if let Some(old) = servers.keys().next().cloned() {
                servers.remove(&old);
            }
        }
        f(servers.entry(key).or_default())
    }

    /// A lookup: adds no entry (and so evicts none).
    fn read<R: Default>(&self, name: &ServerName<'_>, f: impl FnOnce(&mut ServerData) -> R) -> R {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        servers.get_mut(&name.to_owned()).map(f).unwrap_or_default()
    }
}

impl rustls::client::ClientSessionStore for Sessions {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.edit(&name, |d| d.kx_hint = Some(group));
    }

    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.read(name, |d| d.kx_hint)
    }

    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.edit(&name, |d| d.tls12 = Some(value));
    }

    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.read(name, |d| d.tls12.clone())
    }

    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.read(name, |d| d.tls12 = None);
    }

    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.edit(&name, |d| {
            if d.tls13.len() >= MAX_TICKETS_PER_SERVER {
                d.tls13.pop_front();
            }
            d.tls13.push_back(value);
        });
    }

    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.read(name, |d| d.tls13.pop_back())
    }
}

/// Makes aws-lc do its one-time set-up now, not in the run: the first key
/// share a process makes takes 40 ms here (the next ones 30 µs), which
/// would land in the first connections' handshake times.
fn warm_up(provider: &CryptoProvider) {
    for group in &provider.kx_groups {
        let _ = group.start();
    }
}

/// `--cacert`'s certificates, or the system's roots (none if `none_ok`
/// and the system has none).
fn roots(cacert: Option<&Path>, none_ok: bool) -> Result<rustls::RootCertStore, String> {
    let mut store = rustls::RootCertStore::empty();
    if let Some(path) = cacert {
        for cert in read_certs(path, "--cacert")? {
            store
                .add(cert)
                .map_err(|e| format!("--cacert {}: {e}", path.display()))?;
        }
        return Ok(store);
    }
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 && !none_ok {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), |e| e.to_string());
        return Err(format!(
            "no trusted root certificates on this system ({why}): install them \
             (apt-get install -y ca-certificates), or give --cacert FILE, or -k to skip verification"
        ));
    }
    Ok(store)
}

/// Every certificate in a PEM file; an empty file is an error.
fn read_certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{flag} {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{flag} {shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{flag} {shown}: no PEM certificate in it"));
    }
    Ok(certs)
}

/// The server name a connection presents (SNI) and checks the
/// certificate against: the URL's host.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("'{host}' is not a TLS server name: {e}"))
}

/// `-k`: any certificate is accepted, but the handshake's signatures are
/// still checked (they prove the peer holds the key it presented).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS failure as a request's error: which certificate problem, or
/// how the handshake failed, and what to do.
pub fn tls_error(e: &Error, host: &str, addr: SocketAddr, handshaking: bool) -> FetchError {
    match e {
        Error::InvalidCertificate(c) => {
            let (what, fix) = certificate_problem(c, host);
            FetchError::new(
                ErrorKind::TlsCertificate,
                format!("certificate problem with {host} ({addr}): {what}{fix}"),
            )
        }
        Error::AlertReceived(alert) => {
            let why = match alert {
                AlertDescription::ProtocolVersion => {
                    ": the server speaks no TLS version uringfetch does (1.2, 1.3)"
                }
                AlertDescription::HandshakeFailure => {
                    ": no cipher suite or parameters in common with the server"
                }
                AlertDescription::CertificateRequired | AlertDescription::BadCertificate => {
                    ": the server wants a client certificate (--cert FILE --key FILE)"
                }
                AlertDescription::UnknownCA => ": the server does not trust our client certificate",
                _ => "",
            };
            let when = if handshaking {
                "TLS handshake with"
            } else {
                "TLS connection to"
            };
            FetchError::new(
                ErrorKind::TlsHandshake,
                format!("{when} {addr} failed: the server sent the alert {alert:?}{why}"),
            )
        }
        Error::PeerIncompatible(p) => FetchError::new(
            ErrorKind::TlsHandshake,
            format!("TLS handshake with {addr} failed: the server is incompatible: {p:?}"),
        ),
        _ if handshaking => FetchError::new(
            ErrorKind::TlsHandshake,
            format!("TLS handshake with {addr} failed: {e}"),
        ),
        _ => FetchError::new(
            ErrorKind::TlsHandshake,
            format!("TLS error with {addr}: {e}"),
        ),
    }
}

/// The plaintext server behind an `https://` URL (its first bytes were
/// not a TLS record).
pub fn not_tls(addr: SocketAddr, first: &[u8]) -> FetchError {
    let looks_http = first.starts_with(b"HTTP/");
    let what = if looks_http {
        "answered in plain HTTP, not TLS"
    } else {
        "answered with bytes that are not TLS"
    };
    FetchError::new(
        ErrorKind::NotTls,
        format!("{addr} {what}: is the URL meant to be http://?"),
    )
}

/// Whether bytes that broke an HTTP response are a TLS record (a TLS
/// server behind an `http://` URL answers a plaintext request with an alert).
pub fn looks_like_tls(first: &[u8]) -> bool {
    matches!(first, [0x15 | 0x16, 0x03, 0x00..=0x04, ..])
}

fn certificate_problem(c: &CertificateError, host: &str) -> (String, &'static str) {
    const TRUST: &str = " (use --cacert FILE to trust its CA, or -k to skip verification)";
    match c {
        CertificateError::UnknownIssuer => {
            ("unknown issuer: not signed by a trusted CA".into(), TRUST)
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => (
            "the certificate has expired".into(),
            " (-k skips verification)",
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => (
            "the certificate is not valid yet (check the clock)".into(),
            " (-k skips verification)",
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => (
            format!("name mismatch: the certificate is not valid for '{host}'"),
            " (-k skips verification)",
        ),
        CertificateError::Revoked => ("the certificate is revoked".into(), ""),
        CertificateError::BadSignature => (
            "a certificate in the chain has a bad signature".into(),
            TRUST,
        ),
        other if format!("{other:?}").contains("CaUsedAsEndEntity") => (
            "the server's certificate is a CA certificate (basicConstraints CA:TRUE) \
             used as its own, which rustls refuses even when --cacert trusts it: \
             sign a server certificate with that CA, or make the self-signed one \
             with `openssl req -x509 ... -addext basicConstraints=critical,CA:FALSE`"
                .into(),
            " (-k skips verification)",
        ),
        other => (format!("{other:?}"), TRUST),
    }
}

#[cfg(test)]
mod tests {
    use rustls::NamedGroup;

    #[test]
    fn the_client_hello_leads_with_x25519_and_still_offers_the_rest() {
        let groups: Vec<NamedGroup> = super::provider()
            .kx_groups
            .iter()
            .map(|g| g.name())
            .collect();
        assert_eq!(groups[0], NamedGroup::X25519, "{groups:?}");
        assert!(groups.contains(&NamedGroup::secp256r1), "{groups:?}");
        #[cfg(not(feature = "ring"))]
        assert!(groups.contains(&NamedGroup::X25519MLKEM768), "{groups:?}");
    }

    #[test]
    fn tls_records_are_told_from_plaintext() {
        assert!(super::looks_like_tls(&[
            0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46
        ]));
        assert!(super::looks_like_tls(&[0x16, 0x03, 0x01]));
        assert!(!super::looks_like_tls(b"HTTP/1.1 200 OK\r\n"));
        assert!(!super::looks_like_tls(&[0x15]));
    }
}
