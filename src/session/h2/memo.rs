//! A memo of the last header block's decoded facts, so that a server
//! sending the same response head again and again (as a load test makes
//! it) costs a comparison, not an HPACK decode: `loona_hpack` decodes
//! Huffman strings slowly (it builds its code table for each string),
//! and nginx Huffman-codes most response fields.
//!
//! The memo is sound because decoding a block that holds no
//! representation that changes the dynamic table (a literal with
//! incremental indexing, a table size update) is a pure function of the
//! block and the table, and the table cannot have changed since the memo
//! was made: every block that changes it clears the memo first. Scanning
//! a block for those representations reads only prefixes and lengths; the
//! decoding itself stays `loona_hpack`'s.

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

/// The last block that left the table alone, and its facts.
#[derive(Debug, Default)]
pub(crate) struct Memo {
    block: Vec<u8>,
    facts: Option<Facts>,
}

impl Memo {
    /// The facts of `block` if it is the one remembered.
    #[inline]
    pub fn get(&self, block: &[u8]) -> Option<Facts> {
        self.facts.filter(|_| self.block == block)
    }

    /// `block` was decoded to `facts`: remembered if it left the table
    /// alone; else the memo is forgotten (the table changed).
    pub fn put(&mut self, block: &[u8], facts: Facts) {
        if block.len() <= MAX_BLOCK && leaves_table_alone(block) {
            self.block.clear();
            self.block.extend_from_slice(block);
            self.facts = Some(facts);
        } else {
            self.facts = None;
        }
    }
}

use super::strings::integer;

/// The length of the string literal at the start of `b`.
fn string(b: &[u8]) -> Option<usize> {
    let (len, n) = integer(b, 7)?;
    let end = n.checked_add(len)?;
    (end <= b.len()).then_some(end)
}

/// Whether `block` holds only indexed fields and literals that are not
/// indexed (so decoding it leaves the dynamic table as it was); `false`
/// for anything else, a malformed block included.
pub(crate) fn leaves_table_alone(block: &[u8]) -> bool {
    let mut b = block;
    while let Some(&first) = b.first() {
        let used = if first & 0x80 != 0 {
            integer(b, 7).map(|(_, n)| n)
        } else if first & 0xe0 == 0 {
            // Literal without indexing (0000) or never indexed (0001).
            integer(b, 4).and_then(|(index, n)| {
                let name = if index == 0 { string(&b[n..])? } else { 0 };
                let value = string(&b[n + name..])?;
                Some(n + name + value)
            })
        } else {
            // Incremental indexing (01) or a table size update (001).
            None
        };
        match used {
            Some(n) => b = &b[n..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_blocks_that_leave_the_table_alone_are_pure() {
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
        memo.put(&[0x40, 0x01, b'x', 0x01, b'y'], facts);
        assert_eq!(memo.get(&[0x88]), None, "the table changed");
    }
}
