//! `uringfetch serve` as a user runs it: options refused before anything
//! runs, and an address another process holds.

use std::time::Duration;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(20);

/// `--max-head-bytes 0` made every request a 431, and a huge value let one
/// header line take hundreds of MB of the server: both are usage errors.
#[test]
fn max_head_bytes_is_bounded_at_parse_time() {
    for bad in ["0", "1023", "1048577", "1000000000000"] {
        let out = uringfetch(
            &["serve", "--addr", "127.0.0.1:0", "--max-head-bytes", bad],
            LIMIT,
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("1 KiB to 1 MiB"), "{bad}: {err}");
    }
}
