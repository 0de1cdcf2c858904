//! The live blocks a `Tracing` made, without a lock: a word per 16 bytes of address space, in a
//! radix tree (`crate::radix`), holding the block's size and traceback id.
//!
//! ```text
//!   word = (size + 1) << 32 | trace id      (0: no block starts here)
//! ```
//!
//! Recording and forgetting a block is three dependent loads to its leaf, a load and a store: no
//! atomic read-modify-write, no lock, no hashing. That is sound because a block's word is only
//! ever written by the thread that holds the block: the one that just allocated it (recording), or
//! the one freeing it (forgetting, before the block goes back to the inner allocator, whose own
//! synchronisation orders that free before the next allocation of the address, and so the next
//! record). Readers (snapshots, lookups) load words and may see a block that is being freed, as
//! any snapshot taken while threads allocate may.
//!
//! What does not fit (an address not 16-aligned, memory tracked in another domain, a size of 4 GiB
//! or more) goes to the hash tables beside this. Leaves take 512 KiB of address space per MiB
//! that ever held a traced block; only the pages holding records are ever touched, so the memory
//! used is about 8 bytes per 16 bytes of densely traced small blocks, 4 KiB per large block.

use core::sync::atomic::AtomicU64;

use crate::radix::{LEAF_SHIFT, Radix};

use super::table::TraceId;

const GRANULE_SHIFT: u32 = 4;
const WORDS: usize = 1 << (LEAF_SHIFT - GRANULE_SHIFT);

/// The blocks recorded here.
pub(crate) struct Records {
    tree: Radix<WORDS>,
}

/// Whether a block of `size` bytes at `addr` can be recorded here.
#[inline]
pub(crate) fn fits(addr: usize, size: usize) -> bool {
    addr & ((1 << GRANULE_SHIFT) - 1) == 0 && size < u32::MAX as usize
}

#[inline]
fn index(addr: usize) -> usize {
    (addr & ((1 << LEAF_SHIFT) - 1)) >> GRANULE_SHIFT
}

#[inline]
fn unpack(word: u64) -> Option<(usize, TraceId)> {
    (word != 0).then(|| ((word >> 32) as usize - 1, TraceId::from_bits(word as u32)))
}

impl Records {
    pub(crate) const fn new() -> Self {
        Records { tree: Radix::new() }
    }

    /// Records the block at `addr` (which [`fits`]); returns the record it replaced (a block the
    /// inner allocator reused without its free passing here), or `Err` if no memory could be had.
    #[inline]
    #[allow(clippy::result_unit_err)]
    pub(crate) fn insert(
        &self,
        addr: usize,
        size: usize,
        trace: TraceId,
    ) -> Result<Option<(usize, TraceId)>, ()> {
        let leaf = self.tree.leaf_or_make(addr).ok_or(())?;
        let w = &leaf.words[index(addr)];
        // Relaxed load and store: the thread that holds the block is the only writer of its
        // word (module documentation).
        let old = w.load(core::sync::atomic::Ordering::Relaxed);
        Self::fill(w, size, trace);
        Ok(unpack(old))
    }

    /// Forgets the block at `addr`; returns its record if it had one.
    #[inline]
    pub(crate) fn remove(&self, addr: usize) -> Option<(usize, TraceId)> {
        let w = &self.tree.leaf(addr)?.words[index(addr)];
        // As in `insert`: the freeing thread holds the block.
        let old = w.load(core::sync::atomic::Ordering::Relaxed);
        if old != 0 {
            w.store(0, core::sync::atomic::Ordering::Relaxed);
        }
        unpack(old)
    }

    /// The word of a block of `size` bytes at `addr` that [`fits`], if its leaf is made and it
    /// holds no record: for [`fill`](Self::fill) to record the block in, once the caller has
    /// checked the rest of what it must (nothing is written here).
    #[inline(always)]
    pub(crate) fn vacant(&self, addr: usize, size: usize) -> Option<&AtomicU64> {
        if !fits(addr, size) {
            return None;
        }
        let w = &self.tree.leaf(addr)?.words[index(addr)];
        // As in `insert`: the thread that holds the block is the only writer of its word.
        (w.load(core::sync::atomic::Ordering::Relaxed) == 0).then_some(w)
    }

    /// Records a block of `size` bytes with `trace` in its [`vacant`](Self::vacant) word.
    #[inline(always)]
    pub(crate) fn fill(w: &AtomicU64, size: usize, trace: TraceId) {
        w.store(
            ((size as u64 + 1) << 32) | u64::from(trace.bits()),
            core::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Forgets the block at `addr` if it has a record and `ok` (given its size) agrees; returns
    /// whether it was forgotten (a block without a record, or one `ok` refused, is left as it
    /// was).
    #[inline(always)]
    pub(crate) fn remove_if(&self, addr: usize, ok: impl FnOnce(usize) -> bool) -> bool {
        let Some(leaf) = self.tree.leaf(addr) else {
            return false;
        };
        let w = &leaf.words[index(addr)];
        // As in `insert`: the freeing thread holds the block.
        let Some((size, _)) = unpack(w.load(core::sync::atomic::Ordering::Relaxed)) else {
            return false;
        };
        if !ok(size) {
            return false;
        }
        w.store(0, core::sync::atomic::Ordering::Relaxed);
        true
    }

    /// The record of the block at `addr`.
    #[inline]
    pub(crate) fn get(&self, addr: usize) -> Option<(usize, TraceId)> {
        let leaf = self.tree.leaf(addr)?;
        unpack(leaf.words[index(addr)].load(core::sync::atomic::Ordering::Relaxed))
    }

    /// Calls `f` with every record: address, size, traceback.
    pub(crate) fn for_each(&self, mut f: impl FnMut(usize, usize, TraceId)) {
        self.tree.for_each_leaf(|base, leaf| {
            for (i, w) in leaf.words.iter().enumerate() {
                if let Some((size, trace)) = unpack(w.load(core::sync::atomic::Ordering::Relaxed)) {
                    f(base + (i << GRANULE_SHIFT), size, trace);
                }
            }
        });
    }

    /// Forgets every record; returns what `weigh` gives for their sizes, summed. A block freed by
    /// another thread meanwhile may be counted by both (the traced total then reads low until it
    /// is freed).
    pub(crate) fn clear(&self, mut weigh: impl FnMut(usize) -> u64) -> u64 {
        let mut bytes = 0;
        self.tree.for_each_leaf(|_, leaf| {
            for w in &leaf.words {
                if let Some((size, _)) = unpack(w.swap(0, core::sync::atomic::Ordering::Relaxed)) {
                    bytes += weigh(size);
                }
            }
        });
        bytes
    }

    /// Bytes of address space the leaves take.
    pub(crate) fn footprint(&self) -> usize {
        self.tree.leaves() * WORDS * size_of::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_kept_per_address_and_forgotten() {
        let r = Records::new();
        let id = TraceId::from_bits(0x1234_5678);
        let a = 0x7f00_1234_5670usize;
        assert!(fits(a, 100) && !fits(a + 1, 100) && !fits(a, u32::MAX as usize));
        assert_eq!(r.insert(a, 0, id), Ok(None), "a size of 0 is a record too");
        assert_eq!(r.get(a), Some((0, id)));
        assert_eq!(r.insert(a, 48, id), Ok(Some((0, id))), "replaced");
        assert_eq!(r.get(a + 16), None);
        let mut seen = Vec::new();
        r.for_each(|addr, size, t| seen.push((addr, size, t)));
        assert_eq!(seen, vec![(a, 48, id)]);
        assert_eq!(r.remove(a), Some((48, id)));
        assert_eq!(r.remove(a), None);
        r.insert(a, 7, id).unwrap();
        r.insert(a + (3 << 20), 9, id).unwrap();
        assert_eq!(r.clear(|size| size as u64), 16);
        assert_eq!(r.get(a), None);
        assert_eq!(r.footprint(), 2 * WORDS * 8);
    }
}
