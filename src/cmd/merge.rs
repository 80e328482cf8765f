//! `uringfetch merge`: reads the JSON reports of one test run on several
//! clients and prints them added up (see [`crate::report::merge`]), as text
//! with a per-input table, or as one JSON report like `load` writes.

use std::io::Read;

use anyhow::{Context, bail};

use crate::cli::{MergeArgs, OutputFormat};
use crate::report::merge::{self, Input};

/// Reads every input (`-` is stdin, read once however often it is named).
fn read_inputs(files: &[String]) -> anyhow::Result<Vec<Input>> {
    let mut inputs = Vec::new();
    let mut stdin_read = false;
    for file in files {
        let text = if file == "-" {
            if stdin_read {
                continue;
            }
            stdin_read = true;
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read stdin")?;
            s
        } else {
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", crate::report::escape(file)))?
        };
        let source = if file == "-" { "stdin" } else { file.as_str() };
        inputs.extend(merge::parse_documents(source, &text).map_err(anyhow::Error::msg)?);
    }
    Ok(inputs)
}

/// Runs `merge`; returns the exit code.
pub fn run(args: MergeArgs) -> anyhow::Result<i32> {
    let format = super::report_output(
        args.output.output.as_deref(),
        args.output.output_format,
        OutputFormat::Text,
    )?;
    let inputs = read_inputs(&args.files)?;
    if inputs.is_empty() {
        bail!("no report to merge");
    }
    if let Err(why) = merge::check_same_test(&inputs) {
        if !args.force {
            bail!(
                "refusing to merge: {why}. Their sum would mean nothing; merge the reports \
                 of one test only, or pass --force to add them up anyway"
            );
        }
        crate::say!("uringfetch: warning: merging different tests (--force): {why}");
    }
    let merged = merge::merge(&inputs).map_err(anyhow::Error::msg)?;
    for w in &merged.warnings {
        crate::say!("uringfetch: warning: {w}");
    }
    // The text report carries its notes; JSON and CSV readers get them here.
    if format != OutputFormat::Text {
        for n in &merged.notes {
            crate::say!("uringfetch: note: {n}");
        }
    }
    match format {
        OutputFormat::Text => super::emit(&merge::render_text(&merged)),
        OutputFormat::Json => {
            super::emit(&(serde_json::to_string_pretty(&merged.summary)? + "\n"));
        }
        OutputFormat::Csv => super::emit(&merged.summary.to_csv()),
    }
    if let Some(path) = &args.chart {
        super::chart::write(path, &merged.summary)?;
    }
    Ok(crate::report::thresholds::verdict(
        &merged.summary,
        args.fail_on.as_ref(),
    ))
}
