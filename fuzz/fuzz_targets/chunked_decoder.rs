//! The chunked decoder, reached through the parser behind a fixed chunked
//! head so that every input byte is chunk framing, data or trailers.
#![no_main]

mod common;

const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::check(data, HEAD));
