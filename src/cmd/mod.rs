//! The subcommands: each turns its parsed arguments into configuration,
//! runs it, and says what happened. `main` only dispatches here.

pub mod compare;
pub mod demo;
pub mod doctor;
pub mod get;
mod interrupt;
pub mod load;
pub mod merge;
pub mod serve;

use crate::cli::{Cli, Command};

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Get(args) => get::run(args),
        Command::Load(args) => load::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Doctor(args) => doctor::run(args),
    }
}

/// Writes a report to stdout. A reader that went away (`| head`) is not an
/// error worth a panic: the rest of the report is simply dropped.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
