//! Thin entry point: parse arguments, run, map errors to exit codes
//! (0 success, 1 a fetch or run failed, 2 bad usage).

use clap::Parser;

fn main() {
    let cli = uringfetch::cli::Cli::parse();
    let code = match uringfetch::cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            uringfetch::say!("uringfetch: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
