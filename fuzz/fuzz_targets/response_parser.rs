//! The response parser on arbitrary bytes: no panic, and the same outcome
//! whether the bytes arrive whole or split.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::check(data, b""));
