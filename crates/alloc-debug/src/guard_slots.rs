//! The states of [`GuardPages`](crate::GuardPages)' slots and the lists they are on, apart from
//! the pages they guard (`guard_pages/slots.rs` maps those), so that the loom models
//! (`loom_models.rs`) run this code on records of their own.
//!
//! A slot goes `UNUSED` or `FREE` → `RESERVED` (taken off the free list, under the decorator's
//! lock) → `LIVE` (its block placed, published by a Release store) → `FREEING` (claimed by the
//! free that frees the block: a compare-exchange, without the lock) → `QUARANTINED` (on the FIFO
//! quarantine, under the lock) → `FREE` (out of the quarantine once it is longer than its
//! limit, onto the free list, under the lock). A slot taken but not opened goes back from
//! `RESERVED` to `FREE`.
//!
//! The one step taken without the lock is the claim of a block by its free, which two frees of
//! the same block (a double free) can race: exactly one moves the slot out of `LIVE`, the other is
//! refused and reported. The claim must not be fooled by the slot's reuse either: a free of a
//! block that read the slot live just before another thread freed the block, quarantined the
//! slot, took it again and placed a new block there, must not free the new block. So a slot's
//! state word counts the blocks placed in it above the state (a generation), and the claim's
//! compare-exchange expects the word it read, generation included, not merely `LIVE`.

use core::ops::DerefMut;

use crate::sync::{AtomicU32, AtomicUsize, Ordering};

/// Return addresses kept per slot for its allocation and for its free.
pub const GUARD_FRAMES: usize = 4;
/// The end of a slot list.
pub(crate) const NONE: u32 = u32::MAX;

/// Never held a block.
pub(crate) const UNUSED: u32 = 0;
/// Taken for a block being placed.
pub(crate) const RESERVED: u32 = 1;
/// Holds a live block (its pages are open).
pub(crate) const LIVE: u32 = 2;
/// Its block is being freed.
pub(crate) const FREEING: u32 = 3;
/// Its block was freed; in the quarantine (pages closed).
pub(crate) const QUARANTINED: u32 = 4;
/// Its block was freed and it left the quarantine: on the free list (pages closed).
pub(crate) const FREE: u32 = 5;

/// The state's bits of a state word; the bits above count the blocks placed in the slot
/// (wrapping: a claim would be fooled only by a free stalled across 2^29 placements in its slot).
const STATE: u32 = 0b111;
/// One more block placed.
const GENERATION: u32 = STATE + 1;

/// A slot's record. All zeroes is a record of an `UNUSED` slot (the OS's zeroed pages).
#[repr(C)]
pub(crate) struct Record {
    /// The state (low bits) and the generation (see the module documentation).
    state: AtomicU32,
    /// The next slot of the list the slot is on (free list or quarantine), under the lock.
    next: AtomicU32,
    /// The block's address and requested size (those of the last block, once freed).
    pub(crate) addr: AtomicUsize,
    pub(crate) size: AtomicUsize,
    pub(crate) allocated: [AtomicUsize; GUARD_FRAMES],
    pub(crate) freed: [AtomicUsize; GUARD_FRAMES],
}

impl Record {
    /// An `UNUSED` record (under loom, whose atomics are made, not mapped zeroed).
    #[cfg(loom)]
    pub(crate) fn new() -> Record {
        Record {
            state: AtomicU32::new(UNUSED),
            next: AtomicU32::new(NONE),
            addr: AtomicUsize::new(0),
            size: AtomicUsize::new(0),
            allocated: core::array::from_fn(|_| AtomicUsize::new(0)),
            freed: core::array::from_fn(|_| AtomicUsize::new(0)),
        }
    }

    /// The state now, for a report (racy: the slot may be changing).
    pub(crate) fn state(&self) -> u32 {
        self.state.load(Ordering::Relaxed) & STATE
    }

    /// Sets the state, keeping the generation: by the slot's one writer of the moment (the lock's
    /// holder for a slot on no list or on one of the lists, the placing or freeing thread for a
    /// `RESERVED` or `FREEING` slot), never while the slot is `LIVE`.
    fn set(&self, state: u32, order: Ordering) {
        let word = self.state.load(Ordering::Relaxed);
        debug_assert_ne!(word & STATE, LIVE);
        self.state.store((word & !STATE) | state, order);
    }

    /// Whether the slot holds a live block at `addr`.
    pub(crate) fn holds(&self, addr: usize) -> bool {
        // Acquire: pairs with `publish`'s Release (the block's address is the placed one).
        self.state.load(Ordering::Acquire) & STATE == LIVE
            && self.addr.load(Ordering::Relaxed) == addr
    }

    /// Publishes the block placed at `addr` (`size` bytes) in this `RESERVED` slot: its record
    /// first (the caller wrote the allocation's frames), then the state, `LIVE` in a new
    /// generation.
    pub(crate) fn publish(&self, addr: usize, size: usize) {
        self.addr.store(addr, Ordering::Relaxed);
        self.size.store(size, Ordering::Relaxed);
        for f in &self.freed {
            f.store(0, Ordering::Relaxed);
        }
        let word = self.state.load(Ordering::Relaxed);
        debug_assert_eq!(word & STATE, RESERVED);
        // Release: a thread that sees the block live sees its record.
        self.state.store(
            (word & !STATE).wrapping_add(GENERATION) | LIVE,
            Ordering::Release,
        );
    }

    /// A free's claim on the block at `addr`: whether this free is the one that frees it (the
    /// slot moves from `LIVE` to `FREEING`). `false` when the slot holds no live block at `addr`:
    /// it was freed already (a double free, racing this one or not), or the slot holds another
    /// block, or none.
    pub(crate) fn claim_free(&self, addr: usize) -> bool {
        // Acquire: as in `holds`.
        let word = self.state.load(Ordering::Acquire);
        if word & STATE != LIVE || self.addr.load(Ordering::Relaxed) != addr {
            return false;
        }
        // The word read, generation included: a slot freed and given a new block since then is
        // not claimed for the old one.
        self.state
            .compare_exchange(
                word,
                (word & !STATE) | FREEING,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }
}

/// The slot lists and the counts of a pool, kept under the decorator's lock.
#[derive(Debug)]
pub(crate) struct Lists {
    /// The free list's first slot (last in, first out).
    free: u32,
    /// The quarantine, oldest first.
    quarantine_head: u32,
    quarantine_tail: u32,
    /// Blocks placed in slots.
    pub(crate) guarded: u64,
    /// Requests that found no free slot, or a slot that could not be opened.
    pub(crate) missed: u64,
    /// Slots taken and not freed.
    pub(crate) live: u32,
    /// Slots in the quarantine.
    pub(crate) quarantined: u32,
}

impl Lists {
    /// No slot on any list (until [`link`](Self::link)).
    pub(crate) const fn new() -> Lists {
        Lists {
            free: NONE,
            quarantine_head: NONE,
            quarantine_tail: NONE,
            guarded: 0,
            missed: 0,
            live: 0,
            quarantined: 0,
        }
    }

    /// Puts every slot of `records`, all unused, on the free list, the first slot first.
    pub(crate) fn link(&mut self, records: &[Record]) {
        for (i, r) in records.iter().enumerate() {
            let next = if i + 1 < records.len() {
                i as u32 + 1
            } else {
                NONE
            };
            r.next.store(next, Ordering::Relaxed);
        }
        self.free = if records.is_empty() { NONE } else { 0 };
    }

    /// Takes a slot off the free list for a block (`RESERVED`); `None` (a miss) if none is free.
    pub(crate) fn take(&mut self, records: &[Record]) -> Option<usize> {
        if self.free == NONE {
            self.missed += 1;
            return None;
        }
        let slot = self.free as usize;
        let r = &records[slot];
        self.free = r.next.load(Ordering::Relaxed);
        r.set(RESERVED, Ordering::Relaxed);
        self.guarded += 1;
        self.live += 1;
        Some(slot)
    }

    /// Gives back a slot [`take`](Self::take) returned that holds no block (it could not be
    /// opened): it counts as a miss.
    pub(crate) fn put_back(&mut self, records: &[Record], slot: usize) {
        let r = &records[slot];
        r.set(FREE, Ordering::Relaxed);
        r.next.store(self.free, Ordering::Relaxed);
        self.free = slot as u32;
        self.guarded -= 1;
        self.live -= 1;
        self.missed += 1;
    }

    /// Quarantines `slot`, whose block was claimed by its free ([`Record::claim_free`]); the
    /// oldest slot of the quarantine goes onto the free list if the quarantine is then longer
    /// than `limit` (so it never is).
    pub(crate) fn quarantine(&mut self, records: &[Record], slot: usize, limit: u32) {
        let r = &records[slot];
        r.set(QUARANTINED, Ordering::Release);
        r.next.store(NONE, Ordering::Relaxed);
        match self.quarantine_tail {
            NONE => self.quarantine_head = slot as u32,
            tail => records[tail as usize]
                .next
                .store(slot as u32, Ordering::Relaxed),
        }
        self.quarantine_tail = slot as u32;
        self.live -= 1;
        self.quarantined += 1;
        if self.quarantined > limit {
            // The oldest leaves the quarantine for the free list (its pages stay closed).
            let oldest = self.quarantine_head as usize;
            let o = &records[oldest];
            self.quarantine_head = o.next.load(Ordering::Relaxed);
            if self.quarantine_head == NONE {
                self.quarantine_tail = NONE;
            }
            self.quarantined -= 1;
            o.set(FREE, Ordering::Release);
            o.next.store(self.free, Ordering::Relaxed);
            self.free = oldest as u32;
        }
    }

    /// The free list's slots, first to be taken first.
    #[cfg(loom)]
    pub(crate) fn free_slots(&self, records: &[Record]) -> Vec<usize> {
        Self::walk(records, self.free)
    }

    /// The quarantine's slots, oldest first.
    #[cfg(loom)]
    pub(crate) fn quarantined_slots(&self, records: &[Record]) -> Vec<usize> {
        let slots = Self::walk(records, self.quarantine_head);
        assert_eq!(
            slots.last().map(|&s| s as u32).unwrap_or(NONE),
            self.quarantine_tail,
            "the quarantine's tail is its last slot"
        );
        slots
    }

    /// A list's slots from `head` on (a list longer than the slots is a cycle: a panic).
    #[cfg(loom)]
    fn walk(records: &[Record], head: u32) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = head;
        while at != NONE {
            assert!(out.len() < records.len(), "a slot list runs in a cycle");
            out.push(at as usize);
            at = records[at as usize].next.load(Ordering::Relaxed);
        }
        out
    }
}

/// Frees the block at `addr` in `slot`: claims it ([`Record::claim_free`]); if that fails, returns
/// `false` (the caller reports the pointer). Otherwise runs `closing` (which records where the
/// block was freed and closes the slot's pages), takes the pool's lock by `lock` (its value holds
/// the lists) and quarantines the slot with `limit` ([`Lists::quarantine`]).
pub(crate) fn free<L>(
    records: &[Record],
    slot: usize,
    addr: usize,
    limit: u32,
    closing: impl FnOnce(&Record),
    lock: impl FnOnce() -> L,
) -> bool
where
    L: DerefMut<Target: AsMut<Lists>>,
{
    let r = &records[slot];
    if !r.claim_free(addr) {
        return false;
    }
    closing(r);
    lock().as_mut().quarantine(records, slot, limit);
    true
}

impl AsMut<Lists> for Lists {
    fn as_mut(&mut self) -> &mut Lists {
        self
    }
}
