//! Header-field rules that requests and responses share: where a head ends,
//! comma-separated lists, and how repeated `Content-Length` values combine.
//! The client's response parser and the server's request parser both call
//! these, so the two sides of a connection cannot disagree on framing.

/// Index just past the first head terminator (`\n` `\n`, optionally with CRs,
/// as httparse accepts) whose final `\n` is at or after `from`.
pub(crate) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    for (off, &b) in tail.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        let i = from + off;
        let before = |k: usize| i.checked_sub(k).and_then(|j| buf.get(j)).copied();
        if before(1) == Some(b'\n') || (before(1) == Some(b'\r') && before(2) == Some(b'\n')) {
            return Some(i + 1);
        }
    }
    None
}

/// Folds one Content-Length field into what earlier fields said: repeated
/// identical values (`5, 5` or two fields) are tolerated per RFC 9110 §8.6,
/// anything else is invalid.
pub(crate) fn merge_content_length(prev: Option<Result<u64, ()>>, value: &[u8]) -> Result<u64, ()> {
    let mut acc = match prev {
        Some(Err(())) => return Err(()),
        Some(Ok(n)) => Some(n),
        None => None,
    };
    for item in value.split(|&b| b == b',') {
        let item = item.trim_ascii();
        if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let n = item.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        match (n, acc) {
            (None, _) => return Err(()),
            (Some(n), Some(a)) if n != a => return Err(()),
            (Some(n), _) => acc = Some(n),
        }
    }
    acc.ok_or(())
}

/// Non-empty, trimmed elements of a comma-separated header list.
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_detection() {
        assert_eq!(find_head_end(b"a\r\n\r\nb", 0), Some(5));
        assert_eq!(find_head_end(b"a\n\nb", 0), Some(3));
        assert_eq!(find_head_end(b"a\r\n\nb", 0), Some(4));
        assert_eq!(find_head_end(b"a\r\n\r\n", 4), Some(5));
        assert_eq!(find_head_end(b"a\r\n\r\n", 5), None);
        assert_eq!(find_head_end(b"\n", 0), None);
        assert_eq!(find_head_end(b"", 3), None);
    }

    #[test]
    fn content_length_repeats_must_agree() {
        assert_eq!(merge_content_length(None, b"5"), Ok(5));
        assert_eq!(merge_content_length(None, b"5, 5"), Ok(5));
        assert_eq!(merge_content_length(Some(Ok(5)), b" 5 "), Ok(5));
        assert_eq!(merge_content_length(Some(Ok(5)), b"6"), Err(()));
        assert_eq!(merge_content_length(None, b"5, 6"), Err(()));
        assert_eq!(merge_content_length(None, b""), Err(()));
        assert_eq!(merge_content_length(None, b"5,"), Err(()));
        assert_eq!(merge_content_length(None, b"-1"), Err(()));
        assert_eq!(merge_content_length(None, b"+1"), Err(()));
        assert_eq!(merge_content_length(None, b"18446744073709551616"), Err(()));
        assert_eq!(
            merge_content_length(None, b"18446744073709551615"),
            Ok(u64::MAX)
        );
        assert_eq!(merge_content_length(Some(Err(())), b"5"), Err(()));
    }
}
