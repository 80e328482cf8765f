//! `uringfetch serve`: the demo server in the foreground until Ctrl-C.

use crate::cli::ServeArgs;
use crate::runner::default_threads;
use crate::server::{self, ServeOptions};

/// Runs the server; returns the exit code once stopped.
pub fn run(args: ServeArgs) -> anyhow::Result<i32> {
    let threads = args.threads.unwrap_or_else(default_threads).max(1);
    server::run_foreground(ServeOptions {
        addr: args.addr,
        delay: args.delay,
        threads,
        max_head_bytes: args.max_head_bytes,
        idle_timeout: args.idle_timeout,
        engine: args.engine,
    })?;
    Ok(0)
}
