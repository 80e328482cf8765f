//! The operations a `uring-loop` worker has in the kernel, and what each
//! one owns, so that memory the kernel may use is safe by construction.
//!
//! Every operation that posts a completion is an entry of [`Ops`] from the
//! moment its SQE is queued until its last completion (a multishot receive
//! posts many): the count pending is the table's length, never a counter
//! kept by hand. What the kernel reads or writes after submission (a plain
//! receive's buffer, a connect's address, a TIMEOUT's timespec) moves into
//! the entry and comes back only with that last completion. A send whose
//! success posts nothing (`CQE_SKIP_SUCCESS`) is no entry: it owns nothing
//! (it sends the run's encoded requests, which outlive the ring) and its
//! failure, if any, names its slot in `user_data` itself.
//!
//! [`Uring`] owns the ring, the provided-buffer ring and the table, and
//! frees buffers only once the kernel is done with them: with no operation
//! in flight and the buffer ring unregistered. Otherwise it leaks them.

use io_uring::IoUring;
use slab::Slab;

use super::ring::{BufRing, Features};

/// What an operation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// IORING_OP_SOCKET into a direct descriptor.
    Socket,
    Connect,
    /// A send that posts its completion.
    Send,
    /// A multishot or plain receive.
    Recv,
    /// A TIMEOUT op bounding a wait (5.10 profile).
    Timer,
    /// An ASYNC_CANCEL or CLOSE whose result does not matter.
    Ignore,
}

/// What an operation owns while the kernel may use it. The address and
/// the timespec are only held, never read again: what matters is that they
/// live (and stay put, boxed) until the operation's last completion.
#[derive(Debug)]
#[allow(dead_code)]
pub enum Owned {
    Nothing,
    /// A plain receive's buffer (5.10 profile), the slot's own.
    Buf(Vec<u8>),
    /// A connect's destination, read by the kernel when it issues the op.
    Addr(Box<socket2::SockAddr>),
    /// A TIMEOUT op's duration.
    Timespec(Box<io_uring::types::Timespec>),
    /// A TLS send's ciphertext (see `Session::is_tls`).
    Bytes(bytes::Bytes),
}

/// One operation in flight.
#[derive(Debug)]
pub struct Op {
    pub slot: usize,
    /// The slot's connection generation when the op was queued.
    pub generation: u32,
    pub kind: OpKind,
    pub owned: Owned,
}

/// `user_data` of a silent send: this bit, generation (bits 32-55), slot
/// (bits 0-31). Any other `user_data` is a key of [`Ops`], or [`WAKE`].
const SILENT: u64 = 1 << 63;
/// `user_data` of the poll on the worker's wake-up eventfd, which owns
/// nothing and never ends before the ring does (no entry of [`Ops`], so
/// a drain does not wait for it).
pub const WAKE: u64 = 1 << 62;

/// What a completion's `user_data` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    /// An entry of the table.
    Op(usize),
    /// A silent send's failure: its slot and generation.
    SilentSend { slot: usize, generation: u32 },
    /// The wake-up eventfd was written: the run was cancelled.
    Wake,
}

/// `user_data` of a silent send of `slot` on connection `generation`.
pub fn silent_send(slot: usize, generation: u32) -> u64 {
    SILENT | ((generation as u64 & 0xFF_FFFF) << 32) | (slot as u64 & 0xFFFF_FFFF)
}

pub fn decode(user_data: u64) -> Named {
    if user_data == WAKE {
        Named::Wake
    } else if user_data & SILENT != 0 {
        Named::SilentSend {
            slot: (user_data & 0xFFFF_FFFF) as usize,
            generation: ((user_data >> 32) & 0xFF_FFFF) as u32,
        }
    } else {
        Named::Op(user_data as usize)
    }
}

/// Generations wrap at 24 bits, the room they have in a silent send's `user_data`.
pub fn next_generation(g: u32) -> u32 {
    (g + 1) & 0xFF_FFFF
}

/// The operations in flight.
#[derive(Debug, Default)]
pub struct Ops {
    table: Slab<Op>,
}

impl Ops {
    /// Adds an operation about to be queued; its `user_data`.
    pub fn insert(&mut self, op: Op) -> u64 {
        self.table.insert(op) as u64
    }

    /// The operation a completion is for, left in the table.
    pub fn get(&self, key: usize) -> Option<&Op> {
        self.table.get(key)
    }

    /// The operation's last completion came: it and what it owned come back.
    pub fn remove(&mut self, key: usize) -> Option<Op> {
        self.table.try_remove(key)
    }

    /// An operation that was never submitted (its SQE could not be queued).
    pub fn cancel_unsubmitted(&mut self, user_data: u64) -> Option<Op> {
        match decode(user_data) {
            Named::Op(key) => self.remove(key),
            Named::SilentSend { .. } | Named::Wake => None,
        }
    }

    pub fn pending(&self) -> usize {
        self.table.len()
    }
}

/// The ring and the memory the kernel may write into. Dropped on the thread
/// that made it (the registered ring index belongs to that thread).
pub struct Uring {
    pub ring: IoUring,
    pub features: Features,
    pub bufs: Option<BufRing>,
    pub ops: Ops,
}

impl Drop for Uring {
    /// Frees the provided buffers only when no operation can still write
    /// into them: nothing in flight, and the kernel let go of the buffer
    /// ring (unregistered). Otherwise the buffers and every owned resource
    /// of the operations still in flight are leaked: the kernel tears a
    /// closed ring down asynchronously, and memory it may still write must
    /// never return to the allocator. Then the registered ring index is
    /// released, so that dropping the ring really closes it (see
    /// [`super::ring::unregister_ring_index`]).
    fn drop(&mut self) {
        let idle = self.ops.pending() == 0;
        if let Some(b) = self.bufs.take() {
            if idle && b.unregister(&self.ring).is_ok() {
                drop(b);
            } else {
                std::mem::forget(b);
            }
        }
        if !idle {
            std::mem::forget(std::mem::take(&mut self.ops));
        }
        if let Some(index) = self.features.ring_index.take() {
            super::ring::unregister_ring_index(&self.ring, index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_names_an_op_or_a_silent_send() {
        let ud = silent_send(12_345, 0xAB_CDEF);
        assert_eq!(
            decode(ud),
            Named::SilentSend {
                slot: 12_345,
                generation: 0xAB_CDEF
            }
        );
        let mut ops = Ops::default();
        let key = ops.insert(Op {
            slot: 3,
            generation: 1,
            kind: OpKind::Recv,
            owned: Owned::Buf(vec![0; 8]),
        });
        assert_eq!(decode(key), Named::Op(key as usize));
        assert_eq!(ops.pending(), 1);
        let op = ops.remove(key as usize).expect("op");
        assert!(matches!(op.owned, Owned::Buf(b) if b.len() == 8));
        assert_eq!(ops.pending(), 0);
        assert_eq!(next_generation(0xFF_FFFF), 0);
    }
}
