//! The subcommands: each turns its parsed arguments into configuration,
//! runs it, and says what happened. `main` only dispatches here.

pub mod chart;
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
        Command::Chart(args) => chart::run(args),
        Command::Doctor(args) => doctor::run(args),
    };
    match (result, take_write_error()) {
        (Ok(_), Some(e)) => {
            let to = OUTPUT_FILE
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map_or_else(
                    || "standard output".to_string(),
                    |(p, _)| p.display().to_string(),
                );
            Err(anyhow::anyhow!("cannot write the report to {to}: {e}"))
        }
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

/// Returns a [`Usage`] error (exit 2) made with `format!`, as `bail!`
/// returns any other.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err($crate::cmd::Usage(format!($($arg)*)).into())
    };
}
pub(crate) use usage;

/// A mistake in the arguments found after clap parsed them: exit 2, as
/// clap's own usage errors.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Where [`emit`] writes: `-o FILE`, or stdout.
static OUTPUT_FILE: Mutex<Option<(std::path::PathBuf, std::fs::File)>> = Mutex::new(None);

/// Resolves `--output-format` and `-o/--output`: `-o` with a format's name
/// is that format (as the flag meant before it also took files); `-o FILE`
/// sends the report to that file (made now, so a bad path fails before the
/// run), in `--output-format`, or the format its extension names, or text.
pub fn report_output<F: clap::ValueEnum + Copy + PartialEq + std::fmt::Debug>(
    output: Option<&str>,
    format: Option<F>,
    default: F,
) -> anyhow::Result<F> {
    let named = |v: &str| F::from_str(v, true).ok();
    let Some(output) = output else {
        return Ok(format.unwrap_or(default));
    };
    if named(output).is_none() && ["text", "json", "csv"].contains(&output) {
        // Another command's format: surely not meant as a file name.
        let known: Vec<String> = F::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        return Err(Usage(format!(
            "this command has no {output} format (it writes {}); -o ./{output} would write a \
             file named {output}",
            known.join(" or ")
        ))
        .into());
    }
    if let Some(f) = named(output) {
        if let Some(g) = format
            && g != f
        {
            return Err(Usage(format!(
                "-o {output} and --output-format {g:?} name two formats"
            ))
            .into());
        }
        return Ok(f);
    }
    let path = std::path::PathBuf::from(output);
    let by_extension = path.extension().and_then(|e| e.to_str()).and_then(named);
    let file = std::fs::File::create(&path)
        .map_err(|e| anyhow::anyhow!("cannot write the report to {output}: {e}"))?;
    *OUTPUT_FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some((path, file));
    Ok(format.or(by_extension).unwrap_or(default))
}

/// Writes a report to stdout (or `-o`'s file, see [`report_output`]). A report that could not be written (a full
/// disk, `> /dev/full`, an I/O error) fails the command in [`run`], and
/// nothing more is written after it (no torn rest of a report). A reader
/// that went away (`| head`: EPIPE) is no failure: it has what it wanted,
/// and the rest of the report is dropped quietly.
pub fn emit(text: &str) {
    let mut failed = WRITE_ERROR.lock().unwrap_or_else(|e| e.into_inner());
    if failed.is_some() {
        return;
    }
    let mut file = OUTPUT_FILE.lock().unwrap_or_else(|e| e.into_inner());
    let written = match file.as_mut() {
        Some((_, f)) => f.write_all(text.as_bytes()).and_then(|()| f.flush()),
        None => {
            let mut out = io::stdout().lock();
            out.write_all(text.as_bytes()).and_then(|()| out.flush())
        }
    };
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => *failed = Some(e),
    }
}
