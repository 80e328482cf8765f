//! A memo of the last header block's decoded facts, so that a server
//! sending the same response head again and again (as a load test makes
//! it) costs a comparison, not an HPACK decode: `loona_hpack` decodes
//! slowly (an allocation per literal, its table kept as owned strings),
//! and nginx sends every field but `:status` as a literal (Huffman-coded,
//! most with incremental indexing).
//!
//! Two kinds of block are remembered; any other (a table size update, a
//! block that both reads the dynamic table and adds to it, one that does
//! not decode) makes the memo forget:
//!
//! - One that leaves the dynamic table alone (indexed fields and literals
//!   without indexing): decoding it is a pure function of the block and
//!   the table, and the table cannot have changed since the memo was made
//!   (every other block decoded replaces the memo).
//! - One that adds to the table but reads only the static one (indexed
//!   fields and literal names of index 1-61, or new names): its fields do
//!   not depend on the table at all, so a repeat's facts are the memo's.
//!   Its additions still count: a repeat is counted, not decoded, and the
//!   count is applied to the table ([`Memo::take_repeats`]) before any
//!   other block is decoded. HPACK's table drops its oldest entries
//!   first, so it always holds the newest entries that fit in its size;
//!   once the repeats applied last added at least that many bytes, what
//!   came before them is gone, whatever it was. Every entry takes at least
//!   32 bytes, so ceil(size / (32 x additions per block)) repeats suffice
//!   (26 for nginx's five additions in a 4 KiB table), and fewer are
//!   applied one for one.
//!
//! Scanning a block for its representations reads only prefixes and
//! lengths; the decoding itself stays `loona_hpack`'s.

/// What the session needs of a decoded response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facts {
    pub status: Option<Result<u16, ()>>,
    pub malformed: Option<&'static str>,
    /// The header list size (RFC 9113 §6.5.2: names, values, 32 each).
    pub list: usize,
}

/// The largest block the memo keeps.
const MAX_BLOCK: usize = 2048;
/// Entries of HPACK's static table (RFC 7541 Appendix A).
const STATIC_ENTRIES: usize = 61;
/// The least an entry adds to the table's size (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// The last block remembered, its facts, and its repeats not yet applied.
#[derive(Debug, Default)]
pub(crate) struct Memo {
    block: Vec<u8>,
    facts: Option<Facts>,
    /// Entries a decode of `block` adds to the table (0: it adds none).
    adds: usize,
    /// Repeats of `block` counted since it was last decoded.
    repeats: usize,
}

impl Memo {
    /// The facts of `block` if it is the one remembered (a repeat that
    /// adds to the table is counted).
    #[inline]
    pub fn get(&mut self, block: &[u8]) -> Option<Facts> {
        let facts = self.facts.filter(|_| self.block == block)?;
        if self.adds > 0 {
            self.repeats += 1;
        }
        Some(facts)
    }

    /// `block` was decoded to `facts` (after [`Memo::take_repeats`]):
    /// remembered if it is of a kind the memo keeps, else forgotten.
    pub fn put(&mut self, block: &[u8], facts: Facts) {
        debug_assert_eq!(self.repeats, 0, "repeats not applied before a decode");
        self.repeats = 0;
        match (block.len() <= MAX_BLOCK).then(|| scan(block)).flatten() {
            Some(s) if s.adds == 0 || !s.reads_dynamic => {
                self.block.clear();
                self.block.extend_from_slice(block);
                self.facts = Some(facts);
                self.adds = s.adds;
            }
            _ => self.facts = None,
        }
    }

    /// The remembered block and how many times it must be decoded for the
    /// table to be as if every repeat counted since had been, for a table
    /// of at most `table_size` bytes; `None` if there is nothing to apply.
    /// The count restarts.
    pub fn take_repeats(&mut self, table_size: usize) -> Option<(&[u8], usize)> {
        let repeats = std::mem::take(&mut self.repeats);
        if repeats == 0 || self.adds == 0 {
            return None;
        }
        let enough = table_size.div_ceil(ENTRY_OVERHEAD * self.adds).max(1);
        Some((&self.block, repeats.min(enough)))
    }
}

use super::strings::integer;

/// The length of the string literal at the start of `b`.
fn string(b: &[u8]) -> Option<usize> {
    let (len, n) = integer(b, 7)?;
    let end = n.checked_add(len)?;
    (end <= b.len()).then_some(end)
}

/// What decoding a block does with the dynamic table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Entries it adds (literals with incremental indexing).
    pub adds: usize,
    /// Whether it refers to an entry past the static table.
    pub reads_dynamic: bool,
}

/// How `block` uses the dynamic table; `None` for a table size update or
/// a block cut short (the memo keeps neither).
pub(crate) fn scan(block: &[u8]) -> Option<Scan> {
    let mut s = Scan {
        adds: 0,
        reads_dynamic: false,
    };
    let mut b = block;
    while let Some(&first) = b.first() {
        let (prefix, literal) = match first {
            0x80..=0xff => (7, false),
            0x40..=0x7f => (6, true),
            // A table size update.
            0x20..=0x3f => return None,
            // Literal without indexing (0000) or never indexed (0001).
            _ => (4, true),
        };
        let (index, mut n) = integer(b, prefix)?;
        s.reads_dynamic |= index > STATIC_ENTRIES;
        if literal {
            if index == 0 {
                n += string(&b[n..])?;
            }
            n += string(&b[n..])?;
            if prefix == 6 {
                s.adds += 1;
            }
        }
        b = &b[n..];
    }
    Some(s)
}

/// Whether `block` holds only indexed fields and literals that are not
/// indexed (so decoding it leaves the dynamic table as it was); `false`
/// for anything else, a malformed block included.
#[cfg(test)]
pub(crate) fn leaves_table_alone(block: &[u8]) -> bool {
    scan(block).is_some_and(|s| s.adds == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_memo_keeps_and_counts() {
        // :status 200 (indexed), content-length: 3 (static name, no indexing).
        assert!(leaves_table_alone(&[0x88, 0x0f, 0x0d, 0x01, b'3']));
        // A literal name and value, never indexed.
        assert!(leaves_table_alone(&[0x10, 0x01, b'x', 0x01, b'y']));
        // Incremental indexing, a size update, a block cut short.
        assert!(!leaves_table_alone(&[0x40, 0x01, b'x', 0x01, b'y']));
        assert!(!leaves_table_alone(&[0x3f, 0xe1, 0x1f]));
        assert!(!leaves_table_alone(&[0x0f, 0x0d, 0x05, b'3']));
        assert!(!leaves_table_alone(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
        let mut memo = Memo::default();
        let facts = Facts {
            status: Some(Ok(200)),
            malformed: None,
            list: 60,
        };
        memo.put(&[0x88], facts);
        assert_eq!(memo.get(&[0x88]), Some(facts));
        assert_eq!(memo.get(&[0x89]), None);
        // A block that adds to the table from the static one: kept, its
        // repeats counted, at most enough of them to fill the table.
        let adds = [0x40, 0x01, b'x', 0x01, b'y', 0x76, 0x01, b'z'];
        memo.put(&adds, facts);
        assert_eq!(memo.get(&[0x88]), None);
        assert_eq!(memo.take_repeats(4096), None);
        for _ in 0..3 {
            assert_eq!(memo.get(&adds), Some(facts));
        }
        assert_eq!(memo.take_repeats(4096), Some((&adds[..], 3)));
        assert_eq!(memo.take_repeats(4096), None, "the count restarts");
        for _ in 0..100 {
            memo.get(&adds);
        }
        assert_eq!(memo.take_repeats(4096), Some((&adds[..], 64)));
        // One that both reads the dynamic table and adds to it: forgotten.
        memo.put(&[0xbe, 0x40, 0x01, b'x', 0x01, b'y'], facts);
        assert_eq!(memo.get(&[0xbe, 0x40, 0x01, b'x', 0x01, b'y']), None);
        // One that reads it and leaves it alone: kept, nothing counted.
        memo.put(&[0xbe], facts);
        assert_eq!(memo.get(&[0xbe]), Some(facts));
        assert_eq!(memo.take_repeats(4096), None);
        // A size update: forgotten.
        memo.put(&[0x20, 0x88], facts);
        assert_eq!(memo.get(&[0x20, 0x88]), None);
    }
}
