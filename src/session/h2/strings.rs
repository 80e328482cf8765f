//! Huffman-coded strings of the server's header blocks, decoded once per
//! connection: a load test gets the same response head again and again,
//! and `loona_hpack` decodes a Huffman string slowly (it builds its code
//! table as a hash map for every string: 90% of the client's CPU against
//! nginx, which Huffman-codes every field).
//!
//! Before a block goes to the decoder, [`Strings::rewrite`] replaces each
//! Huffman string with the same string as a raw literal, from a cache
//! keyed by its coded bytes (a miss is decoded by `loona_hpack`'s own
//! Huffman decoder). The representations, their order and every index
//! stay as they were, so the decoder, its dynamic table included, sees
//! exactly the fields the server sent. A block it cannot walk goes to the
//! decoder unchanged, which names the error.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FNV-1a: the keys are a server's few coded strings, not an attacker's
/// choice of many (the cache starts over past [`MAX_ENTRIES`]), and
/// SipHash cost a tenth of the client's CPU here.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// The cache's bounds: past either it starts over.
const MAX_ENTRIES: usize = 256;
const MAX_BYTES: usize = 64 * 1024;

#[derive(Debug, Default)]
pub(crate) struct Strings {
    decoded: HashMap<Vec<u8>, Vec<u8>, BuildHasherDefault<Fnv>>,
    bytes: usize,
}

/// An HPACK integer with an `n`-bit prefix at the start of `b`: its value
/// and length; `None` if it is cut short or longer than 5 bytes.
pub(crate) fn integer(b: &[u8], n: u8) -> Option<(usize, usize)> {
    let max = (1usize << n) - 1;
    let first = (*b.first()? as usize) & max;
    if first < max {
        return Some((first, 1));
    }
    let mut value = max;
    for (i, &byte) in b.iter().enumerate().skip(1).take(4) {
        value += ((byte & 0x7f) as usize) << (7 * (i - 1));
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

impl Strings {
    /// Writes `block` with its Huffman strings raw into `out`; `false`
    /// (and `out` is to be ignored) if it has none or cannot be walked.
    pub fn rewrite(&mut self, block: &[u8], out: &mut Vec<u8>) -> bool {
        out.clear();
        let mut huffman = false;
        let mut b = block;
        while let Some(&first) = b.first() {
            let (prefix, literal) = match first {
                0x80..=0xff => (7, false),
                0x40..=0x7f => (6, true),
                0x20..=0x3f => (5, false),
                _ => (4, true),
            };
            let Some((index, n)) = integer(b, prefix) else {
                return false;
            };
            out.extend_from_slice(&b[..n]);
            b = &b[n..];
            if !literal {
                continue;
            }
            let strings = if index == 0 { 2 } else { 1 };
            for _ in 0..strings {
                match self.string(b, out) {
                    Some((used, coded)) => {
                        huffman |= coded;
                        b = &b[used..];
                    }
                    None => return false,
                }
            }
        }
        huffman
    }

    /// Copies the string literal at the start of `b` into `out`, raw; how
    /// many bytes of `b` it took and whether it was Huffman-coded.
    fn string(&mut self, b: &[u8], out: &mut Vec<u8>) -> Option<(usize, bool)> {
        let (len, n) = integer(b, 7)?;
        let end = n.checked_add(len).filter(|&e| e <= b.len())?;
        let coded = &b[n..end];
        if b[0] & 0x80 == 0 {
            out.extend_from_slice(&b[..end]);
            return Some((end, false));
        }
        if !self.decoded.contains_key(coded) {
            let raw = loona_hpack::huffman::HuffmanDecoder::new()
                .decode(coded)
                .ok()?;
            if self.decoded.len() >= MAX_ENTRIES || self.bytes > MAX_BYTES {
                self.decoded.clear();
                self.bytes = 0;
            }
            self.bytes += coded.len() + raw.len();
            self.decoded.insert(coded.to_vec(), raw);
        }
        let raw = self.decoded.get(coded)?;
        // Raw strings keep the H bit clear.
        loona_hpack::encoder::encode_integer_into(raw.len(), 7, 0, out).ok()?;
        out.extend_from_slice(raw);
        Some((end, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huffman_strings_become_raw_and_decode_the_same() {
        // nginx's head for a 4-byte file: every field Huffman-coded, most
        // with incremental indexing.
        let block = hex(
            "887689aa6355e580ae212e1f6196c361be94034a5f29141004e2816ee09eb8d014c5a37f5f87497ca58ae819aa5c01346c96c361be94034a5f29141004e2816ee05eb81694c5a37f00832a47378afe5c8c2291f8dc59afe7008919085ad2b583aa62a3848fd24a8f",
        );
        let mut strings = Strings::default();
        let mut out = Vec::new();
        assert!(strings.rewrite(&block, &mut out));
        let want = loona_hpack::Decoder::new().decode(&block).unwrap();
        let got = loona_hpack::Decoder::new().decode(&out).unwrap();
        assert_eq!(got, want);
        assert!(
            want.iter()
                .any(|(n, v)| n == b"server" && v == b"nginx/1.22.1")
        );
        // Again, from the cache, on a decoder whose table holds the first.
        let mut d = loona_hpack::Decoder::new();
        d.decode(&block).unwrap();
        let mut out2 = Vec::new();
        assert!(strings.rewrite(&block, &mut out2));
        assert_eq!(out2, out);
        assert_eq!(d.decode(&out2).unwrap(), want);
        // No Huffman string, or a block cut short: left alone.
        assert!(!strings.rewrite(&[0x88, 0x0f, 0x0d, 0x01, b'3'], &mut out));
        assert!(!strings.rewrite(&block[..block.len() - 3], &mut out));
        assert!(!strings.rewrite(&[0x00, 0x85, 0xff], &mut out));
    }

    proptest::proptest! {
        /// Whatever the block, rewriting never panics, and a block that
        /// decodes decodes to the same fields rewritten.
        #[test]
        fn rewriting_keeps_what_decodes(fields in proptest::collection::vec(
            (proptest::collection::vec(proptest::num::u8::ANY, 0..12),
             proptest::collection::vec(proptest::num::u8::ANY, 0..12)), 0..6),
            noise in proptest::collection::vec(proptest::num::u8::ANY, 0..24)) {
            // Raw fields, then arbitrary bytes (Huffman strings among them).
            let mut block = loona_hpack::Encoder::new()
                .encode(fields.iter().map(|(n, v)| (&n[..], &v[..])));
            block.extend_from_slice(&noise);
            let mut out = Vec::new();
            let rewritten = Strings::default().rewrite(&block, &mut out);
            if rewritten {
                let a = loona_hpack::Decoder::new().decode(&block);
                let b = loona_hpack::Decoder::new().decode(&out);
                if let Ok(a) = a {
                    proptest::prop_assert_eq!(Ok(a), b);
                }
            }
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
