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
    let cli = cli::Cli::parse();
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
