//! A connection's response heads, HPACK-decoded into what the session
//! needs of them ([`memo::Facts`]), with the work a load test repeats
//! skipped: a block the server sent last time is not decoded again
//! ([`memo`]), and Huffman strings are decoded once ([`strings`]).
//!
//! The decoder's dynamic table stays exact: a remembered block that adds
//! to it (nginx sends every field but `:status` with incremental indexing)
//! is counted rather than decoded, and the count is applied to the table,
//! bounded by the table's size, before any other block is decoded (see
//! [`memo`] for why that gives the same table).

use super::memo::{self, Facts};
use super::strings;
use super::{DEFAULT_MAX_FRAME, MAX_HEADER_LIST};

/// The dynamic table size the client allows the server (the HPACK
/// default, `SETTINGS_HEADER_TABLE_SIZE` left as it is).
pub(crate) const TABLE_SIZE: usize = 4096;

/// The HPACK decoder of one connection and what spares it work.
pub(crate) struct HeadDecoder {
    decoder: loona_hpack::Decoder<'static>,
    /// The last block, its facts, and how often it came since its decode.
    memo: memo::Memo,
    /// Huffman strings decoded, and a block rewritten with them raw.
    strings: strings::Strings,
    unhuffed: Vec<u8>,
}

impl Default for HeadDecoder {
    fn default() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(TABLE_SIZE);
        Self {
            decoder,
            memo: memo::Memo::default(),
            strings: strings::Strings::default(),
            unhuffed: Vec::new(),
        }
    }
}

impl HeadDecoder {
    /// Decodes `block`: its facts, and with `text` its regular fields
    /// written to it as `name: value` lines (while the list stays under
    /// [`MAX_HEADER_LIST`]). An error is the decoder's: the connection's
    /// table can no longer be trusted.
    pub fn decode(
        &mut self,
        block: &[u8],
        text: Option<&mut Vec<u8>>,
    ) -> Result<Facts, loona_hpack::decoder::DecoderError> {
        if text.is_none()
            && let Some(facts) = self.memo.get(block)
        {
            return Ok(facts);
        }
        self.replay()?;
        let mut status: Option<Result<u16, ()>> = None;
        let mut list = 0usize;
        let mut malformed: Option<&'static str> = None;
        let mut regular = false;
        let mut text = text;
        let mut unhuffed = std::mem::take(&mut self.unhuffed);
        let input = if self.strings.rewrite(block, &mut unhuffed) {
            &unhuffed[..]
        } else {
            block
        };
        let decoded = self.decoder.decode_with_cb(input, |name, value| {
            list += name.len() + value.len() + 32;
            if name.first() == Some(&b':') {
                if regular {
                    malformed.get_or_insert("a pseudo-header after a regular field");
                } else if &name[..] == b":status" && status.is_none() {
                    let s = std::str::from_utf8(&value)
                        .ok()
                        .filter(|v| v.len() == 3)
                        .and_then(|v| v.parse::<u16>().ok())
                        .filter(|s| (100..=999).contains(s));
                    status = Some(s.ok_or(()));
                } else {
                    malformed.get_or_insert("an unknown or repeated pseudo-header");
                }
                return;
            }
            regular = true;
            if name.iter().any(u8::is_ascii_uppercase) {
                malformed.get_or_insert("an upper-case field name");
            }
            if let Some(text) = text.as_deref_mut()
                && list <= MAX_HEADER_LIST
            {
                text.extend_from_slice(&name);
                text.extend_from_slice(b": ");
                text.extend_from_slice(&value);
                text.extend_from_slice(b"\r\n");
            }
        });
        if unhuffed.capacity() > 4 * DEFAULT_MAX_FRAME {
            unhuffed = Vec::new();
        }
        self.unhuffed = unhuffed;
        decoded?;
        let facts = Facts {
            status,
            malformed,
            list,
        };
        self.memo.put(block, facts);
        Ok(facts)
    }

    /// Applies to the table the remembered block's repeats that were
    /// counted instead of decoded (see [`memo::Memo::take_repeats`]).
    fn replay(&mut self) -> Result<(), loona_hpack::decoder::DecoderError> {
        let Some((block, times)) = self.memo.take_repeats(TABLE_SIZE) else {
            return Ok(());
        };
        let input = if self.strings.rewrite(block, &mut self.unhuffed) {
            &self.unhuffed[..]
        } else {
            block
        };
        for _ in 0..times {
            self.decoder.decode_with_cb(input, |_, _| {})?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Facts and fields as a fresh reading of every block would give them.
    fn reference(
        d: &mut loona_hpack::Decoder<'static>,
        block: &[u8],
    ) -> Option<(Option<u16>, usize, Vec<u8>)> {
        let fields = d.decode(block).ok()?;
        let mut status: Option<Option<u16>> = None;
        let mut list = 0;
        let mut text = Vec::new();
        let mut regular = false;
        for (n, v) in &fields {
            list += n.len() + v.len() + 32;
            if n.first() == Some(&b':') {
                if !regular && n == b":status" && status.is_none() {
                    status = Some(
                        std::str::from_utf8(v)
                            .ok()
                            .filter(|v| v.len() == 3)
                            .and_then(|v| v.parse().ok())
                            .filter(|s| (100..=999).contains(s)),
                    );
                }
            } else {
                regular = true;
                if list <= MAX_HEADER_LIST {
                    text.extend_from_slice(n);
                    text.extend_from_slice(b": ");
                    text.extend_from_slice(v);
                    text.extend_from_slice(b"\r\n");
                }
            }
        }
        Some((status.flatten(), list, text))
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// nginx 1.22's head for a 4-byte file: `:status` indexed, the rest
    /// Huffman-coded literals, most with incremental indexing.
    const NGINX: &str = "887689aa6355e580ae212e1f6196c361be94034a5f29141004e2816ee09eb8d014c5a37f5f87497ca58ae819aa5c01346c96c361be94034a5f29141004e2816ee05eb81694c5a37f00832a47378afe5c8c2291f8dc59afe7008919085ad2b583aa62a3848fd24a8f";

    /// Representations of HPACK blocks (RFC 7541 §6), built by hand so
    /// that they refer to the dynamic table and add to it.
    #[derive(Debug, Clone)]
    enum Rep {
        /// An indexed field, static (1-61) or dynamic (62 and up).
        Indexed(u8),
        /// A literal with incremental indexing, its name by static index
        /// (0: a new name) and a raw value.
        Insert(u8, Vec<u8>),
        /// A literal without indexing, name by static index, raw value.
        Plain(u8, Vec<u8>),
        /// A table size update (valid only first).
        Size(u16),
        /// A literal with incremental indexing of an empty new name and an
        /// empty value: the smallest entry (32 bytes).
        InsertEmpty,
    }

    fn integer(out: &mut Vec<u8>, value: usize, prefix: u8, bits: u8) {
        loona_hpack::encoder::encode_integer_into(value, prefix, bits, out).unwrap();
    }

    fn encode(reps: &[Rep]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in reps {
            match r {
                Rep::Indexed(i) => integer(&mut out, *i as usize, 7, 0x80),
                Rep::Insert(i, v) | Rep::Plain(i, v) => {
                    let (prefix, bits) = if matches!(r, Rep::Insert(..)) {
                        (6, 0x40)
                    } else {
                        (4, 0)
                    };
                    integer(&mut out, *i as usize, prefix, bits);
                    if *i == 0 {
                        integer(&mut out, 3, 7, 0);
                        out.extend_from_slice(b"x-n");
                    }
                    integer(&mut out, v.len(), 7, 0);
                    out.extend_from_slice(v);
                }
                Rep::Size(s) => integer(&mut out, *s as usize, 5, 0x20),
                Rep::InsertEmpty => out.extend_from_slice(&[0x40, 0, 0]),
            }
        }
        out
    }

    fn rep() -> impl proptest::strategy::Strategy<Value = Rep> {
        use proptest::prelude::*;
        prop_oneof![
            (1u8..70).prop_map(Rep::Indexed),
            (0u8..62, proptest::collection::vec(b'a'..=b'z', 0..300))
                .prop_map(|(i, v)| Rep::Insert(i, v)),
            (0u8..62, proptest::collection::vec(b'a'..=b'z', 0..8))
                .prop_map(|(i, v)| Rep::Plain(i, v)),
            (0u16..5000).prop_map(Rep::Size),
            Just(Rep::InsertEmpty),
        ]
    }

    #[test]
    fn nginx_heads_repeated_keep_the_table_exact() {
        check_repeats(&hex(NGINX), &[1, 2, 3, 10, 25, 26, 27, 100]);
    }

    #[test]
    fn the_smallest_entries_repeated_keep_the_table_exact() {
        // One entry of 32 bytes and nothing else (an empty name and
        // value), after a block that fills the table with entries of
        // their own: its repeats must push out every one of them.
        let tiny = encode(&[Rep::Indexed(8), Rep::InsertEmpty]);
        check_repeats(&tiny, &[1, 2, 64, 127, 128, 129, 300]);
    }

    /// `block` decoded `repeats` times (after a block that fills the
    /// table), then every entry of the table read, on a [`HeadDecoder`]
    /// and on a plain decoder that decodes every block.
    fn check_repeats(block: &[u8], counts: &[usize]) {
        let filler: Vec<Rep> = (0..40)
            .map(|i| Rep::Insert(0, vec![b'a' + i % 26; 70]))
            .collect();
        let filler = encode(&filler);
        for &repeats in counts {
            let mut ours = HeadDecoder::default();
            let mut theirs = loona_hpack::Decoder::new();
            ours.decode(&filler, None).unwrap();
            reference(&mut theirs, &filler).unwrap();
            for _ in 0..repeats {
                let facts = ours.decode(block, None).unwrap();
                let want = reference(&mut theirs, block).unwrap();
                assert_eq!((facts.status, facts.list), (Some(Ok(200)), want.1));
            }
            // Every entry of the dynamic table, and the first index past
            // it, read on both: the same fields, or an error on both.
            let mut entries = 0;
            for index in 62..=255u8 {
                let reader = encode(&[Rep::Indexed(8), Rep::Indexed(index)]);
                let mut text = Vec::new();
                let got = ours.decode(&reader, Some(&mut text));
                let want = reference(&mut theirs, &reader);
                match (got, want) {
                    (Ok(facts), Some(want)) => {
                        assert_eq!((facts.list, &text), (want.1, &want.2), "{repeats}: {index}");
                        entries += 1;
                    }
                    (Err(_), None) => break,
                    (got, want) => panic!("{repeats}: {index}: {got:?} against {want:?}"),
                }
            }
            assert!(entries > 0, "{repeats}: no entry");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever the sequence of blocks (each from a small set, so
        /// that blocks repeat), the facts, and the fields written out, are
        /// those of decoding every block in turn on one decoder.
        #[test]
        fn remembered_blocks_decode_as_every_block_would(
            set in proptest::collection::vec(proptest::collection::vec(rep(), 0..6), 1..5),
            order in proptest::collection::vec((0usize..5, 0u8..4, 1usize..150), 1..40),
        ) {
            let mut blocks: Vec<Vec<u8>> = set.iter().map(|b| encode(b)).collect();
            blocks.push(hex(NGINX));
            let mut ours = HeadDecoder::default();
            let mut theirs = loona_hpack::Decoder::new();
            theirs.set_max_allowed_table_size(TABLE_SIZE);
            let runs = order.iter().flat_map(|&(i, how, run)| {
                // A run of one block, its fields asked for on its last.
                (0..run).map(move |k| (i, if k + 1 == run { how } else { 1 }))
            });
            for (i, how) in runs {
                let block = &blocks[i % blocks.len()];
                let want = reference(&mut theirs, block);
                // Now and then the fields are asked for (no memo then).
                let mut text = Vec::new();
                let got = ours.decode(block, (how == 0).then_some(&mut text));
                match (got, want) {
                    (Ok(facts), Some((status, list, fields))) => {
                        proptest::prop_assert_eq!(facts.list, list);
                        proptest::prop_assert_eq!(facts.status.and_then(Result::ok), status);
                        if how == 0 {
                            proptest::prop_assert_eq!(text, fields);
                        }
                    }
                    // A block that does not decode ends the connection.
                    (Err(_), None) => break,
                    (got, want) => proptest::prop_assert!(false, "{got:?} against {want:?}"),
                }
            }
        }
    }
}
