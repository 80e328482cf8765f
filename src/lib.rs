//! uringfetch: an HTTP fetcher and load generator whose network I/O runs on
//! Linux io_uring, with readiness-model and blocking variants of the same
//! workload so that the I/O model is the only thing a comparison changes.
//!
//! ```text
//! URL(s) + flags ──cli──▶ Target(s) + Plan ──▶ Backend worker(s) ──▶ Recorder(s) ──merge──▶ Report
//! ```
//! Data flows one way. A backend does I/O and nothing else: the [`plan`]
//! decides when to stop and at what rate, [`http`] parses, [`stats`] counts,
//! [`report`] formats. [`runner`] wires one run together; [`cmd`] holds the
//! subcommands.

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

pub mod backend;
pub mod cli;
pub mod cmd;
pub mod doctor;
pub mod error;
pub mod http;
pub mod plan;
pub mod report;
pub mod runner;
pub mod server;
pub(crate) mod session;
pub mod stats;
pub mod target;
pub mod wallclock;
