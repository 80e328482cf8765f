//! `uringfetch get`: fetch URLs (concurrently over the chosen backend, or one
//! after another with blocking sockets) and print what the servers sent.
//!
//! Bodies stream out as they arrive, in the order of the URLs, in constant
//! memory whatever their length (as curl): the first URL not yet finished
//! writes straight to stdout (or `-o`'s file); the others wait in a spool
//! that moves to an unlinked temporary file past [`SPOOL_IN_MEMORY`].

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Seek, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::backend::BackendKind;
use crate::cli::GetArgs;
use crate::error::FetchError;
use crate::session::{Done, Sink};
use crate::stats::resources::Usage;
use crate::target::Target;

/// A URL waiting for the ones before it keeps this much in memory, then
/// spools to a temporary file.
const SPOOL_IN_MEMORY: usize = 1 << 20;

/// Where bodies go: stdout, or `-o`'s file, made when the first byte comes
/// (a URL that fails before any leaves no file, as with curl).
enum Out {
    Stdout(BufWriter<io::Stdout>),
    File { path: PathBuf, file: Option<File> },
}

impl Out {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Out::Stdout(w) => w.write_all(bytes),
            Out::File { path, file } => {
                if file.is_none() {
                    *file = Some(File::create(&*path).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
                    })?);
                }
                match file {
                    Some(f) => f.write_all(bytes),
                    None => Ok(()),
                }
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::Stdout(w) => w.flush(),
            Out::File { file: Some(f), .. } => f.flush(),
            Out::File { .. } => Ok(()),
        }
    }
}

/// Bytes of a URL that is not first in line yet.
#[derive(Default)]
enum Spool {
    #[default]
    Empty,
    Mem(Vec<u8>),
    File(File),
}

impl Spool {
    fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        let held = match self {
            Spool::Empty => Some(&[][..]),
            Spool::Mem(m) => Some(&m[..]),
            Spool::File(_) => None,
        };
        if let Some(held) = held
            && held.len() + bytes.len() > SPOOL_IN_MEMORY
        {
            let mut file = unlinked_temp_file()?;
            file.write_all(held)?;
            *self = Spool::File(file);
        }
        match self {
            Spool::Empty => *self = Spool::Mem(bytes.to_vec()),
            Spool::Mem(m) => m.extend_from_slice(bytes),
            Spool::File(f) => f.write_all(bytes)?,
        }
        Ok(())
    }

    /// Writes what is held to `out`; the last byte written, if any.
    fn drain_into(&mut self, out: &mut Out) -> io::Result<Option<u8>> {
        match std::mem::take(self) {
            Spool::Empty => Ok(None),
            Spool::Mem(m) => out.write(&m).map(|()| m.last().copied()),
            Spool::File(mut f) => {
                f.rewind()?;
                let mut buf = vec![0; 64 * 1024];
                let mut last = None;
                loop {
                    let n = io::Read::read(&mut f, &mut buf)?;
                    if n == 0 {
                        return Ok(last);
                    }
                    out.write(&buf[..n])?;
                    last = Some(buf[n - 1]);
                }
            }
        }
    }
}

/// A file in the temporary directory that is gone from it as soon as made.
fn unlinked_temp_file() -> io::Result<File> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("uringfetch-get-{}-{n}", std::process::id()));
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// One URL of the command line.
struct Part {
    /// As reports show it (no `user:password`).
    shown: String,
    spool: Spool,
    /// `Ok(bytes after the response that were ignored, from where)` or the error.
    outcome: Option<Result<(usize, std::net::SocketAddr), String>>,
}

/// `get`'s sink: streams heads (with `-i`) and bodies out in URL order.
struct Printer {
    include: bool,
    silent: bool,
    out: Out,
    parts: Vec<Part>,
    /// The part streaming to `out` now: every one before it is done.
    front: usize,
    /// Ticket sequence number (a good URL's index) to part.
    part_of: Vec<usize>,
    /// Whether the last byte written to stdout was a newline.
    ends_in_newline: bool,
    wrote: bool,
    /// The first write error (a full disk): the rest goes nowhere.
    error: Option<io::Error>,
    failures: usize,
}

impl Printer {
    fn emit(&mut self, seq: u64, bytes: &[u8]) {
        let Some(&p) = usize::try_from(seq).ok().and_then(|i| self.part_of.get(i)) else {
            return;
        };
        if self.error.is_some() || bytes.is_empty() {
            return;
        }
        let r = if p == self.front {
            self.wrote = true;
            self.ends_in_newline = bytes.last() == Some(&b'\n');
            self.out.write(bytes)
        } else {
            self.parts[p].spool.push(bytes)
        };
        if let Err(e) = r {
            self.error = Some(e);
        }
    }

    fn settle(&mut self, seq: u64, outcome: Result<(usize, std::net::SocketAddr), String>) {
        if let Some(&p) = usize::try_from(seq).ok().and_then(|i| self.part_of.get(i)) {
            self.parts[p].outcome.get_or_insert(outcome);
        }
        self.advance();
    }

    /// Finishes the parts at the front that are done, and lets the next
    /// one's spooled bytes out.
    fn advance(&mut self) {
        while let Some(part) = self.parts.get_mut(self.front) {
            let Some(outcome) = part.outcome.clone() else {
                break;
            };
            if self.error.is_none()
                && let Err(e) = self.out.flush()
            {
                self.error = Some(e);
            }
            let shown = part.shown.clone();
            match outcome {
                Ok((excess, peer)) if excess > 0 && !self.silent => {
                    // As curl: the body as framed is kept, the rest ignored.
                    crate::say!(
                        "uringfetch: warning: {excess} bytes after the end of the response from \
                         {peer} were ignored ({shown})"
                    );
                }
                Ok(_) => {}
                Err(msg) => {
                    self.failures += 1;
                    // A message that names the URL already needs it no more.
                    if msg.contains(&shown) {
                        crate::say!("uringfetch: {msg}");
                    } else {
                        crate::say!("uringfetch: {msg} ({shown})");
                    }
                }
            }
            self.front += 1;
            if let Some(next) = self.parts.get_mut(self.front)
                && self.error.is_none()
            {
                match next.spool.drain_into(&mut self.out) {
                    Err(e) => self.error = Some(e),
                    Ok(Some(last)) => {
                        self.wrote = true;
                        self.ends_in_newline = last == b'\n';
                    }
                    Ok(None) => {}
                }
            }
        }
    }
}

impl Sink for Printer {
    const COLLECT: bool = true;

    fn issued(&mut self, _n: u64) {}

    fn connected(&mut self, _took: Duration, _reconnect: bool) {}

    fn closed(&mut self) {}

    fn handshake(&mut self, _took: Duration, _resumed: bool) {}

    fn retried(&mut self, _n: u64) {}

    fn head(&mut self, seq: u64, head: &[u8]) {
        if self.include {
            self.emit(seq, head);
        }
    }

    fn body(&mut self, seq: u64, bytes: &[u8]) {
        self.emit(seq, bytes);
    }

    fn response(&mut self, done: &Done<'_>) {
        self.settle(done.seq, Ok((done.excess, done.peer)));
    }

    fn failed(&mut self, seq: u64, error: &FetchError) {
        self.settle(seq, Err(error.message.clone()));
    }

    fn in_flight(&mut self, _n: u64) {}

    fn bytes(&mut self, _read: u64, _written: u64) {}

    fn ended(&mut self, _at: Instant) {}

    fn cpu(&mut self, _usage: Usage) {}
    fn h2_streams_open(&mut self, _n: usize) {}
    fn h2_connection(&mut self) {}

    fn goaway(&mut self, _code: u32) {}

    fn stream_reset(&mut self, _code: u32) {}
}

/// Runs `get`; returns the process exit code.
pub fn run(args: GetArgs) -> anyhow::Result<i32> {
    if args.output.is_some() && args.urls.len() != 1 {
        anyhow::bail!("-o FILE takes exactly one URL ({} given)", args.urls.len());
    }
    if let Some(name) = args.output.as_ref().and_then(|p| p.to_str())
        && ["text", "json", "csv"].contains(&name)
    {
        // Elsewhere `-o json` names a report format; get has none.
        anyhow::bail!(
            "get -o writes the body to a file, and get has no report format: to write the body \
             to a file named '{name}', say -o ./{name}"
        );
    }
    // One request per connection: say so, and the server may close at once.
    let opts = super::config::request_options(&args.request, false)?;
    let https = super::config::any_https(args.urls.iter().map(String::as_str));
    let conn = super::config::conn_options(&args.request, false, Vec::new(), 1, https)?;
    let started = Instant::now();
    // Bad URLs are reported in place; the good ones are still fetched.
    let mut good = Vec::new();
    let mut part_of = Vec::new();
    let parts: Vec<Part> = args
        .urls
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let outcome = match Target::new(u, &opts) {
                Ok(t) => {
                    good.push(t);
                    part_of.push(i);
                    None
                }
                Err(e) => Some(Err(e.to_string())),
            };
            Part {
                shown: crate::target::shown_url(u),
                spool: Spool::Empty,
                outcome,
            }
        })
        .collect();
    let to_stdout = args.output.is_none();
    let out = match &args.output {
        Some(path) => Out::File {
            path: path.clone(),
            file: None,
        },
        None => Out::Stdout(BufWriter::with_capacity(64 * 1024, io::stdout())),
    };
    let mut printer = Printer {
        include: args.include,
        silent: args.silent,
        out,
        parts,
        front: 0,
        part_of,
        ends_in_newline: true,
        wrote: false,
        error: None,
        failures: 0,
    };
    printer.advance();
    // The first Ctrl-C ends the fetch: what arrived is printed, what did
    // not is named (a second one exits at once, 130).
    let mut ctrl_c = None;
    let on_plan = |plan| ctrl_c = Some(super::interrupt::CancelOnCtrlC::new(plan));
    let mut printer = if good.is_empty() {
        printer
    } else if args.sequential {
        // The article's synchronous client: one blocking connection at a time.
        crate::runner::fetch_into(BackendKind::Threads, &good, &conn, 1, printer, on_plan)?
    } else {
        let backend = super::config::backend(args.backend, &args.request);
        if https {
            super::config::check_ktls(&args.request, args.backend)?;
        }
        crate::runner::fetch_into(backend, &good, &conn, good.len(), printer, on_plan)?
    };
    drop(ctrl_c);
    // Every ticket ends in a response or an error, or was cut off by Ctrl-C.
    for p in &mut printer.parts {
        p.outcome
            .get_or_insert_with(|| Err("interrupted before a response arrived".into()));
    }
    printer.advance();
    if let Some(e) = printer.error.take() {
        anyhow::bail!("cannot write the response: {e}");
    }
    printer.out.flush()?;
    let elapsed = started.elapsed();
    if !args.silent && !good.is_empty() {
        if to_stdout
            && printer.wrote
            && !printer.ends_in_newline
            && io::stdout().is_terminal()
            && io::stderr().is_terminal()
        {
            // The body did not end its line: the timing goes on the next.
            crate::say!();
        }
        crate::say!(
            "{} URL{} in {:.3} s{}",
            good.len(),
            if good.len() == 1 { "" } else { "s" },
            elapsed.as_secs_f64(),
            if args.sequential {
                " (sequential, blocking)".to_string()
            } else {
                format!(" (concurrent, {})", args.backend)
            }
        );
    }
    Ok(if printer.failures > 0 { 1 } else { 0 })
}
