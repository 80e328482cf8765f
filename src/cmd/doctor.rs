//! `uringfetch doctor`: prints what this kernel and machine let uringfetch
//! do ([`crate::doctor::Report`]), and with `--self-test` runs every backend
//! against a server on loopback. Exit code 1 only if a backend that this
//! kernel supports failed the self-test.

use crate::cli::{DoctorArgs, TableFormat};
use crate::doctor::{self, Report, selftest};

/// Runs `doctor`; returns the exit code.
pub fn run(args: DoctorArgs) -> anyhow::Result<i32> {
    let report = Report::gather();
    let format = super::report_output(
        args.output.output.as_deref(),
        args.output.output_format,
        TableFormat::Text,
    )?;
    let json = format == TableFormat::Json;
    if !args.self_test {
        if json {
            super::emit(&format!("{}\n", serde_json::to_string_pretty(&report)?));
        } else {
            super::emit(&doctor::render(&report));
        }
        return Ok(0);
    }
    if !json {
        // The tables are `doctor`'s; the self-test shows what it ran on.
        super::emit(&doctor::render_head(&report));
    }
    let opts = selftest::Options {
        requests: args.requests.max(1),
        ..selftest::Options::default()
    };
    let result = selftest::run(&report, &opts).map_err(anyhow::Error::msg)?;
    if json {
        let both = serde_json::json!({ "report": report, "self_test": result });
        super::emit(&format!("{}\n", serde_json::to_string_pretty(&both)?));
    } else {
        super::emit(&selftest::render(&result));
    }
    Ok(if result.passed { 0 } else { 1 })
}
