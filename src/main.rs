//! Thin entry point: parse arguments, run, map errors to exit codes
//! (0 success, 1 a fetch or run failed, 2 bad usage, 3 a --fail-on
//! condition held).

use clap::Parser;

fn main() {
    let cli = uringfetch::cli::Cli::parse();
    let code = match uringfetch::cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Arguments reach messages: their control characters are shown
            // escaped, never sent to the terminal.
            uringfetch::say!(
                "uringfetch: {}",
                uringfetch::report::escape_controls(&format!("{e:#}"))
            );
            if e.downcast_ref::<uringfetch::cmd::Usage>().is_some() {
                2
            } else {
                1
            }
        }
    };
    std::process::exit(code);
}
