//! Which blocks a decorator made, where its inner allocator cannot tell.
//!
//! A decorator that puts a header before its blocks must answer `owns` exactly, or a domain that
//! routes frees by `owns` could hand it a block it did not make (one its inner allocator made
//! before the decorator was stacked on it). Reading a mark in front of a pointer is not an answer:
//! the bytes may belong to another live block (never written, or being written by another thread).
//! So the decorator remembers every live block it made, here: one bit per 16 bytes of address
//! space, in a radix tree of bitmaps (`crate::radix`: a root of 2^14 entries, middles of 2^14,
//! leaves of 8 KiB covering 1 MiB each), whose nodes come from the OS or the C library (never
//! from the decorated allocator, so it cannot recurse). Setting, clearing and testing a bit is a few dependent loads and one atomic
//! read-modify-write: no lock and no hashing, from any thread. Nodes are made on first use and
//! kept until the decorator is dropped (8 KiB per MiB of address space that ever held one of its
//! blocks).
//!
//! Remembering costs two atomic read-modify-writes per block (one when it is made, one when it is
//! freed), the largest part of a header decorator's overhead, and only a domain that routes frees
//! by `owns` needs it. So the set starts switched off: `owns` answers `Unknown` and nothing is
//! remembered, until [`Claims::track`] (a domain installing the decorator calls
//! `DomainAllocator::track_ownership`) or a decorator built with tracking on switches it on. The
//! switch is `tracking::Tracker`.

use std::sync::atomic::{AtomicU64, Ordering};

use alloc_core::Ownership;

use crate::radix::{LEAF_SHIFT, Radix};
use crate::tracking::Tracker;

/// Blocks are at least 16-byte aligned: one bit per 16 bytes.
const GRANULE_SHIFT: u32 = 4;
/// Words of bits per leaf (1 MiB of addresses).
const LEAF_WORDS: usize = (1 << (LEAF_SHIFT - GRANULE_SHIFT)) / 64;

/// Where the bit of `data` lives in its leaf: (word, bit), or `None` for an address that is not
/// 16-aligned (never one of our blocks).
#[inline]
fn locate(data: usize) -> Option<(usize, u64)> {
    if data & ((1 << GRANULE_SHIFT) - 1) != 0 {
        return None;
    }
    let granule = (data & ((1 << LEAF_SHIFT) - 1)) >> GRANULE_SHIFT;
    Some((granule / 64, 1 << (granule % 64)))
}

pub(crate) struct Claims {
    /// Whether blocks are remembered.
    tracker: Tracker,
    bits: Radix<LEAF_WORDS>,
}

impl Claims {
    /// A set that remembers nothing until [`track`](Self::track) is called.
    pub(crate) const fn new() -> Self {
        Claims {
            tracker: Tracker::new(),
            bits: Radix::new(),
        }
    }

    /// A set that remembers every block from the start.
    #[cfg(test)]
    fn tracking() -> Self {
        let mut c = Self::new();
        c.track_from_start();
        c
    }

    /// Makes a new set remember every block from the start (for a decorator's `const` builder).
    pub(crate) const fn track_from_start(&mut self) {
        self.tracker.track_from_start();
    }

    /// Switches remembering on; returns whether every live block is remembered (no block was made
    /// before while it was off).
    pub(crate) fn track(&self) -> bool {
        self.tracker.track()
    }

    /// Whether blocks are being remembered.
    #[inline]
    fn is_tracking(&self) -> bool {
        self.tracker.is_tracking()
    }

    /// The answer to `owns` for `data`: exact while tracking, `Unknown` before.
    pub(crate) fn owns(&self, data: *const u8) -> Ownership {
        if !self.is_tracking() {
            Ownership::Unknown
        } else if self.contains(data as usize) {
            Ownership::Owned
        } else {
            Ownership::NotOwned
        }
    }

    /// Whether `data` is a live block of ours as far as the set can say for certain: `Owned`
    /// where it is remembered, `NotOwned` where it is not and every live block is remembered,
    /// `Unknown` otherwise (not tracking, or blocks made before tracking began).
    pub(crate) fn live(&self, data: *const u8) -> Ownership {
        if !self.is_tracking() {
            Ownership::Unknown
        } else if self.contains(data as usize) {
            Ownership::Owned
        } else if self.tracker.is_complete() {
            Ownership::NotOwned
        } else {
            Ownership::Unknown
        }
    }

    /// The fast key of the decorator's fast paths: its number while a block made now needs no
    /// note and the fast path was opened, else 0 (see `tracking`'s fast key).
    #[inline(always)]
    pub(crate) fn fast_key(&self) -> u64 {
        self.tracker.fast_key()
    }

    /// Opens the fast paths under `key` (the decorator's number) if blocks need no note now.
    pub(crate) fn open_fast(&self, key: u64) {
        self.tracker.open_fast(key);
    }

    /// Notes a block just made at `data`: remembered while tracking; otherwise the set records
    /// that a block went unremembered. Returns false if memory to remember it could not be had
    /// (the caller then gives the block back and fails the allocation).
    #[inline]
    pub(crate) fn made(&self, data: usize) -> bool {
        !self.tracker.made() || self.insert(data)
    }

    /// Notes that the block at `data` is given up (forgotten, if it was remembered).
    #[inline]
    pub(crate) fn given_up(&self, data: usize) {
        if self.is_tracking() {
            self.remove(data);
        }
    }

    /// Makes sure the next [`made`](Self::made) cannot fail for want of memory (see
    /// [`reserve_one`](Self::reserve_one)); free while not tracking.
    pub(crate) fn ready_for_one(&self) -> bool {
        !self.is_tracking() || self.reserve_one()
    }

    /// The word holding `data`'s bit, if its leaf exists: three dependent loads.
    #[inline]
    fn find(&self, data: usize) -> Option<(&AtomicU64, u64)> {
        let (w, bit) = locate(data)?;
        Some((&self.bits.leaf(data)?.words[w], bit))
    }

    /// The word holding `data`'s bit, its leaf made on the way.
    #[inline]
    fn find_or_make(&self, data: usize) -> Option<(&AtomicU64, u64)> {
        let (w, bit) = locate(data)?;
        Some((&self.bits.leaf_or_make(data)?.words[w], bit))
    }

    /// Remembers `data` as a block of ours. Returns false if the memory for it could not be had
    /// (the caller then gives the block back and fails the allocation).
    fn insert(&self, data: usize) -> bool {
        match self.find_or_make(data) {
            Some((word, bit)) => {
                // Relaxed: the block reaches any thread that asks about it through a
                // happens-before edge that follows this write.
                word.fetch_or(bit, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Makes room for one more block, so that the next `insert` cannot fail for want of memory
    /// (while no other thread inserts meanwhile); false if the memory could not be had.
    fn reserve_one(&self) -> bool {
        self.bits.reserve_one()
    }

    /// Forgets `data`; returns whether it was remembered.
    fn remove(&self, data: usize) -> bool {
        self.find(data)
            .is_some_and(|(word, bit)| word.fetch_and(!bit, Ordering::Relaxed) & bit != 0)
    }

    fn contains(&self, data: usize) -> bool {
        self.find(data)
            .is_some_and(|(word, bit)| word.load(Ordering::Relaxed) & bit != 0)
    }

    /// Fork support: the set takes no lock, so there is nothing to take.
    pub(crate) fn prepare_fork(&self) {}

    /// Releases what [`prepare_fork`](Self::prepare_fork) took: nothing.
    ///
    /// # Safety
    /// Only by the thread that called `prepare_fork` (in the child: the one the fork returned in).
    pub(crate) unsafe fn after_fork(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_exactly_what_was_inserted() {
        let c = Claims::new();
        let a = 0x7f00_0000_1230usize;
        assert!(!c.contains(a));
        assert!(c.insert(a));
        assert!(c.contains(a));
        assert!(!c.contains(a + 16), "the neighbouring granule");
        assert!(!c.contains(a + 1), "an unaligned pointer is never ours");
        assert!(!c.contains(a + (1 << 20)), "another leaf");
        assert!(c.reserve_one());
        assert!(c.insert(a + (5 << 20)));
        assert!(c.remove(a));
        assert!(!c.remove(a), "removing twice says it was not there");
        assert!(!c.contains(a));
        assert!(c.contains(a + (5 << 20)));
        assert!(!c.insert(1 << 50), "beyond the address range");
    }

    #[test]
    fn remembers_nothing_until_tracking_and_then_answers_exactly() {
        let c = Claims::new();
        let a = 0x7f00_0000_1230usize;
        assert_eq!(c.owns(a as *const u8), Ownership::Unknown);
        assert!(c.made(a));
        assert!(!c.contains(a), "not remembered while off");
        assert!(!c.track(), "a block was made before tracking began");
        assert!(c.made(a + 32));
        assert_eq!(c.owns((a + 32) as *const u8), Ownership::Owned);
        assert_eq!(c.owns(a as *const u8), Ownership::NotOwned);
        c.given_up(a + 32);
        assert_eq!(c.owns((a + 32) as *const u8), Ownership::NotOwned);
    }

    #[test]
    fn tracking_from_the_first_block_covers_every_block() {
        let c = Claims::new();
        assert!(c.track(), "nothing was made before");
        assert!(c.made(0x7f00_0000_1000));
        assert!(c.track(), "asking again changes nothing");
        assert_eq!(c.owns(0x7f00_0000_1000 as *const u8), Ownership::Owned);
        let t = Claims::tracking();
        assert!(t.made(0x7f00_0000_2000));
        assert_eq!(t.owns(0x7f00_0000_2000 as *const u8), Ownership::Owned);
    }
}
