//! `uringfetch chart`: draws a run's charts from its JSON report alone, and
//! the `--chart` of `load` and `merge` (see [`crate::report::chart::write_run_svg`]).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};

use crate::cli::ChartArgs;
use crate::report::{Summary, chart, escape, merge};

/// Draws `summary`'s charts into `path`, and says where.
pub fn write(path: &Path, summary: &Summary) -> anyhow::Result<()> {
    chart::write_run_svg(path, summary).map_err(|e| {
        anyhow::anyhow!(
            "cannot draw the chart {}: {e}",
            escape(&path.display().to_string())
        )
    })?;
    crate::say!("chart written to {}", escape(&path.display().to_string()));
    Ok(())
}

/// Checks before a run that its `--chart` file can be written, so a typo
/// in the path does not cost the run: opened without truncating, and
/// removed again if this made it.
pub fn check_writable(path: &Path) -> anyhow::Result<()> {
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot write the chart to {}: {e} (checked before the run)",
                escape(&path.display().to_string())
            )
        })?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Runs `chart`; returns the exit code.
pub fn run(args: ChartArgs) -> anyhow::Result<i32> {
    let text = if args.report == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read stdin")?;
        s
    } else {
        std::fs::read_to_string(&args.report)
            .with_context(|| format!("cannot read {}", escape(&args.report)))?
    };
    let source = if args.report == "-" {
        "stdin"
    } else {
        args.report.as_str()
    };
    let mut inputs = merge::parse_documents(source, &text).map_err(anyhow::Error::msg)?;
    let summary = match inputs.len() {
        1 => inputs.remove(0).summary,
        0 => bail!("{}: no report in it", escape(source)),
        n => bail!(
            "{}: holds {n} reports; `uringfetch merge --chart FILE.svg` draws them added up",
            escape(source)
        ),
    };
    write(&args.output, &summary)?;
    Ok(0)
}
