//! Thin entry point: everything is in the library; this maps its result
//! to the process's exit code (0 done, 1 failed, 2 bad usage, 3 a
//! `--fail-on` condition held).

fn main() {
    std::process::exit(uringfetch::main_exit_code());
}
