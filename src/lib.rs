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
pub mod stats;
pub mod target;
pub mod wallclock;
