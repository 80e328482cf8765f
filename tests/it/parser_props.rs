//! Property tests of the sans-IO response parser (the fuzz targets in
//! `fuzz/` explore the same ground at length): it never panics, and the
//! outcome of a byte stream does not depend on where the reads split it.

use proptest::prelude::*;

/// The fuzz targets' driver: everything the parser reports for a stream
/// split into pieces (each finished response, with `consumed` zeroed as it
/// depends on the split, and its body; then the error or the EOF outcome).
/// One copy serves both, so the two explore with the same checks.
#[allow(dead_code)]
#[path = "../../fuzz/fuzz_targets/common.rs"]
mod fuzz_common;
use fuzz_common::drive;
use uringfetch::testing::HttpError;

/// Bytes that look like responses often enough to reach deep states:
/// plausible heads, framing headers, chunk lines, and raw noise.
fn wire() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"HTTP/1.1 200 OK\r\n".to_vec()),
        Just(b"HTTP/1.0 204 No Content\r\n".to_vec()),
        Just(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
        Just(b"Content-Length: 3\r\n".to_vec()),
        Just(b"Content-Length: 1, 1\r\n".to_vec()),
        Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
        Just(b"Connection: close\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"3\r\nabc\r\n".to_vec()),
        Just(b"0\r\n\r\n".to_vec()),
        Just(b"1;ext=1\r\nx\r\n".to_vec()),
        Just(b"X-T: t\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(token, 0..12).prop_map(|v| v.concat())
}

/// Regression from the `response_parser` fuzz target: a head with more than
/// `MAX_HEADERS` headers that never ends is `TooManyHeaders` when it comes
/// in one read, but `UnexpectedEof` when split (the buffered path parses a
/// head only once its blank line is there). Either way an error, never a
/// response or a panic.
#[test]
fn endless_head_with_too_many_headers_is_an_error_however_split() {
    let mut wire = b"HTTP/1.0 200 OK\n".to_vec();
    for i in 0..150 {
        wire.extend_from_slice(format!("X-{i}: y\n").as_bytes());
    }
    let whole = drive(&[&wire], false);
    assert!(whole.0.is_empty());
    assert!(
        matches!(whole.1, Some(HttpError::TooManyHeaders(_))),
        "{whole:?}"
    );
    let (a, b) = wire.split_at(40);
    let split = drive(&[a, b], false);
    assert!(split.0.is_empty());
    assert!(
        matches!(split.1, Some(HttpError::UnexpectedEof(_))),
        "{split:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512), head in any::<bool>()) {
        let _ = drive(&[&bytes], head);
    }

    #[test]
    fn any_split_gives_the_same_result(
        bytes in wire(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        head in any::<bool>(),
    ) {
        let whole = drive(&[&bytes], head);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        at.sort_unstable();
        let mut pieces = Vec::new();
        let mut prev = 0;
        for a in at.into_iter().chain([bytes.len()]) {
            pieces.push(&bytes[prev..a]);
            prev = a;
        }
        let split = drive(&pieces, head);
        // A head split across reads may be rejected later (at EOF instead of
        // at once, as the parser documents); whatever completed must agree.
        prop_assert_eq!(&whole.0, &split.0);
        match (&whole.1, &split.1) {
            (
                Some(HttpError::BadHead(_) | HttpError::TooManyHeaders(_)),
                Some(HttpError::UnexpectedEof(_)),
            ) => {}
            (a, b) => prop_assert_eq!(a, b),
        }
    }
}
