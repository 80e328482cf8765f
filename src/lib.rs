//! uringfetch: an HTTP fetcher and load generator whose network I/O runs on
//! Linux io_uring, with readiness-model and blocking variants of the same
//! workload so that the I/O model is the only thing a comparison changes.
//!
//! ```text
//! URL(s) + flags ──cli──▶ config: Target(s) + Plan ──runner──▶ Session per connection
//!     ◀──wants / events──▶ Backend driver (I/O only) ──▶ Sink ──merge──▶ Report
//! ```
//! Data flows one way. A backend performs what each session wants and
//! feeds back what happened; the plan decides when to stop and at what
//! rate, the session how a connection's requests live (retry, keep-alive,
//! deadlines, counting), `http` parses, `stats` counts, `report` formats.
//!
//! The crate is a program: its one entry point is [`main_exit_code`]; the
//! [`testing`] module opens what the integration tests need.

/// `eprintln!` for a stderr that may be gone: a closed pipe (`2>&1 | head`)
/// or a full disk is ignored instead of panicking. What it would have said
/// has nowhere to go anyway.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod backend;
mod cli;
mod cmd;
mod doctor;
mod error;
mod http;
mod ktls;
mod plan;
mod report;
mod runner;
mod server;
mod session;
mod stats;
mod target;
mod tls;
mod tui;
mod wallclock;

/// Parses the command line, runs the command, and returns the process's
/// exit code (see `--help`): all `main` does.
pub fn main_exit_code() -> i32 {
    use clap::Parser as _;
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version: clap's own output, styled as it likes.
            let _ = e.print();
            return e.exit_code();
        }
        Err(e) => {
            say!("{}", escape_arguments(&e.render().to_string()).trim_end());
            return e.exit_code();
        }
    };
    match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Arguments reach messages: their control characters are shown
            // escaped, never sent to the terminal.
            say!("uringfetch: {}", report::escape_controls(&format!("{e:#}")));
            if e.downcast_ref::<cmd::Usage>().is_some() {
                2
            } else {
                1
            }
        }
    }
}

/// A command-line error as clap words it, with the arguments it quotes
/// shown escaped: a value holding control characters (an escape sequence
/// that would clear the screen, a CR/LF that would forge a line) reaches
/// the terminal as text.
fn escape_arguments(message: &str) -> String {
    let mut out = message.to_string();
    let mut args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .filter(|a| a.chars().any(char::is_control))
        .collect();
    // The longest first, so that no argument is cut by one inside it.
    args.sort_by_key(|a| std::cmp::Reverse(a.len()));
    for arg in args {
        for piece in [arg.as_str(), arg.split_once('=').map_or("", |(_, v)| v)] {
            if !piece.is_empty() && piece.chars().any(char::is_control) {
                out = out.replace(piece, &report::escape_controls(piece));
            }
        }
    }
    out
}

/// What the integration tests, the fuzz targets and the micro-benchmarks
/// reach inside the crate: not an API.
#[doc(hidden)]
pub mod testing {
    pub use crate::backend::uring_loop::ring::Profile;
    pub use crate::backend::{Backend, BackendKind, ConnOptions, Live};
    pub use crate::doctor::limits::Rlimit;
    pub use crate::doctor::probe::uring_loop_features;
    pub use crate::http::{
        HttpError, Progress, RequestSpec, Response, ResponseParser, Version, encode_request,
    };
    pub use crate::plan::{Rate, Stop};
    pub use crate::runner::LoadConfig;
    pub use crate::server::{ServeOptions, ServerHandle};
    pub use crate::stats::{Recorder, histogram_from_base64, new_histogram};
    pub use crate::target::{RequestOptions, Target};
    pub use crate::wallclock::unix_ns;

    /// The ring's setup, for the allocation test.
    pub mod ring {
        pub use crate::backend::uring_loop::ring::{Profile, build};
    }

    /// Runs without the command line.
    pub mod runner {
        pub use crate::runner::{LoadConfig, fetch, run};
    }

    /// The demo server in-process.
    pub mod server {
        pub use crate::server::{
            Engine, LOCAL_NAMES, SelfSigned, ServeOptions, ServerHandle, config_from_pem,
            self_signed, start,
        };
    }
}
