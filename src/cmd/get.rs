//! `uringfetch get`: fetch URLs (concurrently over the chosen backend, or one
//! after another with blocking sockets) and print what the servers sent.

use std::io::Write;
use std::time::Instant;

use crate::backend::{BackendKind, Fetched};
use crate::cli::GetArgs;
use crate::error::FetchError;
use crate::target::Target;

/// Writes one fetched response the way curl does (`-i` adds the head).
fn print_response(out: &mut impl Write, f: &Fetched, include: bool) -> std::io::Result<()> {
    if include {
        out.write_all(&f.head)?;
    }
    out.write_all(&f.body)
}

/// Runs `get`; returns the process exit code.
pub fn run(args: GetArgs) -> anyhow::Result<i32> {
    if args.output.is_some() && args.urls.len() != 1 {
        anyhow::bail!("-o FILE takes exactly one URL ({} given)", args.urls.len());
    }
    // One request per connection: say so, and the server may close at once.
    let opts = super::config::request_options(&args.request, false)?;
    let conn = super::config::conn_options(&args.request, false, Vec::new(), 1);
    let started = Instant::now();
    // Bad URLs are reported in place; the good ones are still fetched.
    let targets: Vec<Result<Target, String>> = args
        .urls
        .iter()
        .map(|u| Target::new(u, &opts).map_err(|e| e.to_string()))
        .collect();
    let good: Vec<Target> = targets
        .iter()
        .filter_map(|t| t.as_ref().ok().cloned())
        .collect();
    let mut fetched: Vec<Result<Fetched, FetchError>> = if good.is_empty() {
        Vec::new()
    } else if args.sequential {
        // The article's synchronous client: one blocking connection at a time.
        crate::runner::fetch(BackendKind::Threads, &good, &conn, 1)?
    } else {
        crate::runner::fetch(args.backend, &good, &conn, good.len())?
    };
    let elapsed = started.elapsed();
    let mut failures = 0;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut results = fetched.drain(..);
    for (url, target) in args.urls.iter().zip(&targets) {
        let result = match target {
            Err(msg) => Err(msg.clone()),
            Ok(_) => results
                .next()
                .unwrap_or_else(|| {
                    Err(FetchError::new(crate::error::ErrorKind::Other, "no result"))
                })
                .map_err(|e| e.message),
        };
        match result {
            Ok(f) => {
                if f.excess > 0 {
                    // As curl: the body as framed is kept, the rest ignored.
                    crate::say!(
                        "uringfetch: warning: {} bytes after the end of the response from {} were ignored",
                        f.excess,
                        f.peer
                    );
                }
                if let Some(path) = &args.output {
                    // As curl: with -i the head goes into the file too.
                    let mut file = Vec::with_capacity(f.head.len() + f.body.len());
                    print_response(&mut file, &f, args.include)?;
                    std::fs::write(path, &file)
                        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                } else {
                    print_response(&mut out, &f, args.include)?;
                }
            }
            Err(msg) => {
                failures += 1;
                out.flush()?;
                let shown = crate::target::shown_url(url);
                crate::say!("uringfetch: {msg} ({shown})");
            }
        }
    }
    out.flush()?;
    crate::say!(
        "{} URL{} in {:.3} s{}",
        args.urls.len(),
        if args.urls.len() == 1 { "" } else { "s" },
        elapsed.as_secs_f64(),
        if args.sequential {
            " (sequential, blocking)".to_string()
        } else {
            format!(" (concurrent, {})", args.backend)
        }
    );
    Ok(if failures > 0 { 1 } else { 0 })
}
