//! Certificates and the rustls configuration of `serve --tls`: a
//! self-signed certificate made at start (rcgen), or a chain and key read
//! from PEM files; TLS 1.2 and 1.3 with the aws-lc-rs provider, ALPN
//! `h2` and `http/1.1` (in that order of preference), and session resumption (rustls's in-memory session cache,
//! plus stateless tickets so that TLS 1.3 resumption works for any number
//! of clients).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The names a self-signed certificate always covers: what a client on
/// this machine dials.
pub const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A certificate made here, with its key, in PEM.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The certificate, which clients trust as its own root (`--cacert`).
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
    /// The names it is valid for (DNS names and IP addresses).
    pub names: Vec<String>,
}

impl SelfSigned {
    /// The server configuration that presents this certificate.
    pub fn config(&self) -> Result<Arc<ServerConfig>, String> {
        config_from_pem(&self.cert_pem, &self.key_pem)
    }
}

/// Makes a self-signed certificate (ECDSA P-256) for [`LOCAL_NAMES`] and
/// `extra` names; an IP address among them becomes an IP address name.
/// Not a CA: clients trust the certificate itself.
pub fn self_signed(extra: &[&str]) -> Result<SelfSigned, String> {
    let mut names: Vec<String> = LOCAL_NAMES.iter().map(|n| n.to_string()).collect();
    for name in extra {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    let made = rcgen::generate_simple_self_signed(names.clone())
        .map_err(|e| format!("cannot make a certificate for {}: {e}", names.join(", ")))?;
    Ok(SelfSigned {
        cert_pem: made.cert.pem(),
        key_pem: made.key_pair.serialize_pem(),
        names,
    })
}

/// The server configuration for a chain (leaf first) and its key.
pub fn config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    // The provider is named, not taken from the process default, so no
    // other crate's choice (or two enabled providers) can change or break it.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // HTTP/2 where the client offers it ([`super::h2`]), else HTTP/1.1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Stateless tickets (keys rotated every 6 hours): TLS 1.3 and TLS 1.2
    // clients resume without a server-side entry each; the default session
    // cache still serves TLS 1.2 clients that resume by session ID.
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(Arc::new(config))
}

/// The server configuration for a PEM chain and PEM key held in memory.
pub fn config_from_pem(cert_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, String> {
    let chain = parse_chain(cert_pem.as_bytes()).map_err(|e| format!("certificate: {e}"))?;
    let key = parse_key(key_pem.as_bytes()).map_err(|e| format!("key: {e}"))?;
    config(chain, key).map_err(|e| format!("certificate and key: {}", tls_error(&e)))
}

/// The server configuration for `--cert FILE --key FILE`. Each error is
/// one line naming the file (or both) and why.
pub fn config_from_files(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = parse_chain(&read(cert, "--cert")?)
        .map_err(|e| format!("--cert {}: {e}", cert.display()))?;
    let key_der =
        parse_key(&read(key, "--key")?).map_err(|e| format!("--key {}: {e}", key.display()))?;
    config(chain, key_der).map_err(|e| {
        format!(
            "--cert {} and --key {}: {}",
            cert.display(),
            key.display(),
            tls_error(&e)
        )
    })
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {flag} {}: {e}", path.display()))
}

fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate chain ({e})"))?;
    if chain.is_empty() {
        return Err("no PEM certificate in it (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(chain)
}

fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            "no PEM private key in it (-----BEGIN PRIVATE KEY-----, or an RSA or EC one)"
                .to_string()
        }
        e => format!("not a PEM private key ({e})"),
    })
}

/// rustls's reasons, in words for the two a user meets.
fn tls_error(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(_) => "the key is not the certificate's".into(),
        e => e.to_string(),
    }
}

/// Where a self-signed certificate is written for clients.
#[derive(Debug)]
pub struct CertFile {
    pub path: PathBuf,
    /// A directory of our own to remove when the server stops, if the
    /// path was chosen here rather than by `--write-cert`.
    temp_dir: Option<PathBuf>,
}

impl CertFile {
    /// Writes `pem` to `path` (replacing it), or, without a path, to
    /// `cert.pem` in a new directory of the temporary directory that
    /// [`CertFile::remove`] deletes.
    pub fn write(pem: &str, path: Option<&Path>) -> Result<CertFile, String> {
        if let Some(path) = path {
            std::fs::write(path, pem)
                .map_err(|e| format!("cannot write --write-cert {}: {e}", path.display()))?;
            return Ok(CertFile {
                path: path.to_path_buf(),
                temp_dir: None,
            });
        }
        // A new directory (never an existing one, nor a link someone
        // planted), so the file in it is ours.
        let dir = std::env::temp_dir().join(format!("uringfetch-serve-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| {
            format!(
                "cannot make {} for the certificate: {e} (choose a file with --write-cert)",
                dir.display()
            )
        })?;
        let path = dir.join("cert.pem");
        if let Err(e) = std::fs::write(&path, pem) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!(
                "cannot write {}: {e} (choose a file with --write-cert)",
                path.display()
            ));
        }
        Ok(CertFile {
            path,
            temp_dir: Some(dir),
        })
    }

    /// Removes the file if it was a temporary one.
    pub fn remove(self) {
        if let Some(dir) = self.temp_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_covers_the_local_names_and_extra_ones() {
        let made = self_signed(&["example.test", "localhost", "10.1.2.3"]).unwrap();
        assert_eq!(
            made.names,
            ["localhost", "127.0.0.1", "::1", "example.test", "10.1.2.3"]
        );
        assert!(made.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(made.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        made.config().expect("its own key matches");
    }

    /// A rustls client (webpki) trusting the certificate itself, as the
    /// client's `--cacert` does, completes a handshake with the server's
    /// configuration for each local name, over TLS 1.2 and 1.3, and agrees
    /// on ALPN h2 when offered, else http/1.1.
    #[test]
    fn a_rustls_client_trusting_the_certificate_completes_a_handshake() {
        let made = self_signed(&[]).unwrap();
        let server_config = made.config().unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(made.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let offers: [(&[&[u8]], &[u8]); 3] = [
            (&[b"h2", b"http/1.1"], b"h2"),
            (&[b"http/1.1", b"h2"], b"h2"),
            (&[b"http/1.1"], b"http/1.1"),
        ];
        for (version, (offer, agreed)) in [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .flat_map(|v| offers.iter().map(move |o| (v, o)))
        {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut client_config = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[version])
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            client_config.alpn_protocols = offer.iter().map(|p| p.to_vec()).collect();
            let client_config = Arc::new(client_config);
            for name in LOCAL_NAMES {
                let name = rustls::pki_types::ServerName::try_from(name).unwrap();
                let mut client =
                    rustls::ClientConnection::new(client_config.clone(), name).unwrap();
                let mut server = rustls::ServerConnection::new(server_config.clone()).unwrap();
                for _ in 0..10 {
                    let mut wire = Vec::new();
                    client.write_tls(&mut wire).unwrap();
                    server.read_tls(&mut &wire[..]).unwrap();
                    server.process_new_packets().unwrap();
                    let mut wire = Vec::new();
                    server.write_tls(&mut wire).unwrap();
                    client.read_tls(&mut &wire[..]).unwrap();
                    client.process_new_packets().unwrap();
                }
                assert!(!client.is_handshaking() && !server.is_handshaking());
                assert_eq!(client.alpn_protocol(), Some(*agreed));
                assert_eq!(client.protocol_version(), Some(version.version));
            }
        }
    }

    #[test]
    fn bad_pem_and_mismatched_keys_are_refused_with_a_reason() {
        let a = self_signed(&[]).unwrap();
        let b = self_signed(&[]).unwrap();
        let e = config_from_pem(&a.cert_pem, &b.key_pem).unwrap_err();
        assert!(e.contains("not the certificate's"), "{e}");
        let e = config_from_pem("hello", &a.key_pem).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = config_from_pem(&a.cert_pem, &a.cert_pem).unwrap_err();
        assert!(e.contains("no PEM private key"), "{e}");
        let e = config_from_files(Path::new("/nonexistent/c.pem"), Path::new("k.pem")).unwrap_err();
        assert!(
            e.starts_with("cannot read --cert /nonexistent/c.pem: "),
            "{e}"
        );
    }
}
