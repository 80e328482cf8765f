//! The subcommands: each turns its parsed arguments into configuration,
//! runs it, and says what happened. `main` only dispatches here.

pub mod compare;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod get;
mod interrupt;
pub mod load;
pub mod merge;
pub mod serve;

use std::io::{self, Write};
use std::sync::Mutex;

use crate::cli::{Cli, Command};

/// Runs the parsed command line; returns the process exit code. A report
/// that [`emit`] could not write makes the command fail (exit 1), whatever
/// it returned: its output is lost.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let result = match cli.command {
        Command::Get(args) => get::run(args),
        Command::Load(args) => load::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Doctor(args) => doctor::run(args),
    };
    match (result, take_write_error()) {
        (Ok(_), Some(e)) => Err(anyhow::anyhow!(
            "cannot write the report to standard output: {e}"
        )),
        // The command's own failure says more than the write's.
        (result, _) => result,
    }
}

/// The first error [`emit`] met, kept for [`run`]: the commands return
/// their exit code, not whether their report arrived, so the write's
/// failure is passed on here rather than through every caller.
static WRITE_ERROR: Mutex<Option<io::Error>> = Mutex::new(None);

fn take_write_error() -> Option<io::Error> {
    WRITE_ERROR.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// Writes a report to stdout. A report that could not be written (a full
/// disk, `> /dev/full`, an I/O error) fails the command in [`run`], and
/// nothing more is written after it (no torn rest of a report). A reader
/// that went away (`| head`: EPIPE) is no failure: it has what it wanted,
/// and the rest of the report is dropped quietly.
pub fn emit(text: &str) {
    let mut failed = WRITE_ERROR.lock().unwrap_or_else(|e| e.into_inner());
    if failed.is_some() {
        return;
    }
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => *failed = Some(e),
    }
}
