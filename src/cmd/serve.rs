//! `uringfetch serve`: the demo server in the foreground until Ctrl-C;
//! with `--tls`, over HTTPS, with the given certificate or one made here
//! (written to a file for clients to trust).

use std::sync::Arc;

use crate::cli::ServeArgs;
use crate::cmd::Usage;
use crate::runner::default_threads;
use crate::server::{self, CertFile, ServeOptions};

/// Runs the server; returns the exit code once stopped.
pub fn run(args: ServeArgs) -> anyhow::Result<i32> {
    let threads = args.threads.unwrap_or_else(default_threads).max(1);
    let tls = if args.tls {
        Some(Tls::new(&args)?)
    } else {
        None
    };
    let note = tls.as_ref().and_then(|t| t.made.as_ref()).map(|made| {
        format!(
            "self-signed certificate for {} (clients trust it with --cacert): {}",
            made.names,
            made.file.path.display()
        )
    });
    let result = server::run_foreground(
        ServeOptions {
            addr: args.addr.addr,
            delay: args.delay,
            threads,
            max_head_bytes: args.max_head_bytes,
            idle_timeout: args.idle_timeout,
            engine: args.engine,
            tls: tls.as_ref().map(|t| t.config.clone()),
        },
        note.as_deref(),
    );
    if let Some(made) = tls.and_then(|t| t.made) {
        made.file.remove();
    }
    result?;
    Ok(0)
}

/// What `--tls` serves with.
struct Tls {
    config: Arc<rustls::ServerConfig>,
    /// Without `--cert`: the certificate made here.
    made: Option<Made>,
}

struct Made {
    /// Where it was written for clients.
    file: CertFile,
    /// The names it is for, as a list.
    names: String,
}

impl Tls {
    /// From `--cert`/`--key`, or a self-signed certificate made now and
    /// written out. Unreadable or unusable files are usage errors naming
    /// the file.
    fn new(args: &ServeArgs) -> anyhow::Result<Tls> {
        if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
            let config = server::config_from_files(cert, key).map_err(Usage)?;
            return Ok(Tls { config, made: None });
        }
        // The host --addr names, unless it names no host in particular.
        let host = args.addr.host.as_str();
        let wildcard = host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified());
        let extra: &[&str] = if host.is_empty() || wildcard {
            &[]
        } else {
            &[host]
        };
        let made = server::self_signed(extra).map_err(anyhow::Error::msg)?;
        let config = made.config().map_err(anyhow::Error::msg)?;
        let file = CertFile::write(&made.cert_pem, args.write_cert.as_deref()).map_err(Usage)?;
        Ok(Tls {
            config,
            made: Some(Made {
                file,
                names: made.names.join(", "),
            }),
        })
    }
}
