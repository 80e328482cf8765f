//! Shared by the fuzz targets (and, for `drive`, by the proptest in
//! `tests/it/parser_props.rs`): feed a byte stream to the response parser
//! whole and split at fuzzer-chosen points, and demand the same outcome.

use uringfetch::testing::{HttpError, Progress, Response, ResponseParser};

/// Finished responses (`consumed` zeroed) with their bodies, then the error.
pub type Outcome = (Vec<(Response, Vec<u8>)>, Option<HttpError>);

pub fn drive(pieces: &[&[u8]], head_request: bool) -> Outcome {
    let mut p = ResponseParser::new(true);
    p.reset(head_request);
    let mut done = Vec::new();
    for piece in pieces {
        let mut rest = *piece;
        loop {
            match p.feed(rest) {
                Err(e) => return (done, Some(e)),
                Ok(Progress::NeedMore) => break,
                Ok(Progress::Done(mut r)) => {
                    assert!(r.consumed <= rest.len());
                    rest = &rest[r.consumed..];
                    r.consumed = 0;
                    assert_eq!(r.body_bytes, p.body().len() as u64);
                    done.push((r, p.body().to_vec()));
                    p.reset(head_request);
                    if rest.is_empty() {
                        break;
                    }
                }
            }
        }
    }
    if p.started() {
        match p.feed_eof() {
            Ok(r) => done.push((Response { consumed: 0, ..r }, p.body().to_vec())),
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

/// The first two bytes choose the split (a piece length pattern) and
/// whether the request was HEAD; the rest is the stream.
pub fn check(data: &[u8], prefix: &[u8]) {
    let (ctl, body) = match data {
        [a, b, rest @ ..] => ([*a, *b], rest),
        _ => return,
    };
    let head_request = ctl[0] & 1 == 1;
    let stream = [prefix, body].concat();
    let whole = drive(&[&stream], head_request);
    let step = usize::from(ctl[1] % 61) + 1;
    let mut pieces = Vec::new();
    let mut at = 0;
    let mut k = usize::from(ctl[0] >> 1);
    while at < stream.len() {
        let n = ((k * 7 + step) % (2 * step) + 1).min(stream.len() - at);
        pieces.push(&stream[at..at + n]);
        at += n;
        k += 1;
    }
    let split = drive(&pieces, head_request);
    assert_eq!(whole.0, split.0, "responses differ by split");
    match (&whole.1, &split.1) {
        // Documented: a malformed head (or one with too many headers) split
        // across reads may only be rejected at EOF when it never ends.
        (
            Some(HttpError::BadHead(_) | HttpError::TooManyHeaders(_)),
            Some(HttpError::UnexpectedEof(_)),
        ) => {}
        (a, b) => assert_eq!(a, b, "errors differ by split"),
    }
}
