//! Thin entry point: parse arguments, run, map errors to exit codes.
fn main() {}
