//! Grace periods for the domain table's records: per-thread announcement slots and an asymmetric
//! fence, so that a record taken out of the table is freed only once no thread can be reading it.
//!
//! # The protocol
//!
//! A thread reads the table only inside a **section** ([`Readers::enter`]): it marks its
//! announcement slot active (its counter becomes odd), then reads the table's slots and records,
//! then marks the slot idle again (the counter becomes even, with Release). A section contains no
//! wait and no allocation; it may call an allocator's `owns` or `starts_block` (which may read
//! the table again: sections nest, and only the outermost one touches the counter).
//!
//! A writer takes records out of the table (so that no new section can reach them), then waits
//! for a **grace period** ([`Readers::synchronize`]): a heavy fence, then, for every slot that is
//! active, until its counter changes. After it, every section that could have reached the records
//! has ended (its idle store, Release, is read with Acquire: what the reader read happens before
//! the writer frees), so they are freed.
//!
//! The reader's announcement must be visible before its first read of the table, and the
//! writer's removal before its read of the slots (a store-then-load pattern on both sides):
//!
//! * on Linux, the writer's heavy fence is `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, which
//!   runs a full fence on every thread of the process that is running, and the reader needs only
//!   a compiler fence (the read side stays a few plain loads and stores);
//! * where `membarrier` is not available (another OS, a kernel without it, valgrind), and under
//!   loom, both sides use a `SeqCst` fence. The mode goes from fences to `membarrier` once, when
//!   the registration succeeds at start-up, never back (but in a child after `fork`, where one
//!   thread runs).
//!
//! Each thread takes a slot at its first section (a compare-and-swap over a static array: no
//! allocation) and gives it back when it ends (a pthread key's destructor, or a fiber-local one
//! on Windows; neither allocates for the first keys). A thread that finds no free slot, or that
//! reads the table after its slot was given back (from another thread-exit destructor), counts
//! itself in a shared counter instead, which a grace period waits for only a bounded time: if it
//! does not drop to zero, the records wait for the next writer.
//!
//! A thread inside a section never waits for a grace period (it would wait for itself): a writer
//! called from inside one leaves its records for the next writer. In a child after `fork`, the
//! slots of the parent's other threads are given back (those threads do not exist there).

use core::cell::Cell;
#[cfg(not(loom))]
use core::sync::atomic::compiler_fence;

use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence, spin};

/// How many threads have a slot of their own at once; more read through the shared counter.
/// (Under loom, a few: the models use two or three threads, and every slot is a step of the
/// search.)
pub(crate) const SLOTS: usize = if cfg!(loom) { 3 } else { 128 };

/// How many rounds a grace period waits for the shared counter before it leaves the records for
/// the next writer.
const OVERFLOW_ROUNDS: u32 = if cfg!(loom) { 4 } else { 10_000 };

/// The calling thread's slot: 0 none yet, `i + 1` slot `i`, [`SHARED`] the shared counter.
pub(crate) const SHARED: usize = usize::MAX;

#[cfg(not(loom))]
std::thread_local! {
    /// How deep the calling thread is in sections counted in the shared counter
    /// (const-initialised, no destructor: no registration with std and no allocation).
    static SHARED_DEPTH: Cell<usize> = const { Cell::new(0) };
}
#[cfg(loom)]
loom::thread_local! {
    static MINE: Cell<usize> = Cell::new(0);
    static SHARED_DEPTH: Cell<usize> = Cell::new(0);
}

/// The calling thread's slot (0 none yet, `i + 1` slot `i`, [`SHARED`]).
#[inline(always)]
fn mine() -> usize {
    #[cfg(loom)]
    return MINE.with(Cell::get);
    #[cfg(not(loom))]
    crate::os::thread_slot::get()
}

/// Sets the calling thread's slot.
#[inline]
pub(crate) fn set_mine(v: usize) {
    #[cfg(loom)]
    MINE.with(|m| m.set(v));
    #[cfg(not(loom))]
    crate::os::thread_slot::set(v);
}

/// How many domains the per-thread live-block counts cover (the table's `MAX_DOMAINS`).
pub(crate) const DOMAINS: usize = if cfg!(loom) { 1 } else { 16 };

/// One thread's announcement, and its counts of live blocks per domain.
#[repr(align(128))]
pub(crate) struct Slot {
    taken: AtomicBool,
    /// Odd while the owning thread is in a section; written only by that thread.
    count: AtomicU64,
    /// Blocks made minus blocks freed through each domain by the threads that held this slot
    /// (wrapping); written only by the owning thread, summed by [`Readers::live_sum`].
    live: [AtomicU64; DOMAINS],
}

impl Slot {
    #[cfg(not(loom))]
    const fn new() -> Slot {
        Slot {
            taken: AtomicBool::new(false),
            count: AtomicU64::new(0),
            live: [const { AtomicU64::new(0) }; DOMAINS],
        }
    }
    #[cfg(loom)]
    fn new() -> Slot {
        Slot {
            taken: AtomicBool::new(false),
            count: AtomicU64::new(0),
            live: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The announcement slots of every thread that reads the table.
pub(crate) struct Readers {
    slots: [Slot; SLOTS],
    /// How many sections of threads without a slot are running.
    shared: AtomicUsize,
    /// The live-block counts of threads without a slot.
    shared_live: [AtomicU64; DOMAINS],
}

/// A section: while it lives, no record reachable from the table is freed. Leaving it (drop)
/// ends the thread's announcement.
#[must_use]
pub(crate) struct Section<'r> {
    /// The thread's slot (`None`: a section counted in the shared counter).
    slot: Option<&'r Slot>,
    /// What leaving does: [`NESTED`] nothing, [`SHARED_EXIT`] leave the shared counter, else the
    /// count to store in the slot.
    leave: u64,
    readers: &'r Readers,
}

/// `Section::leave` of a nested section.
const NESTED: u64 = 0;
/// `Section::leave` of a section counted in the shared counter.
const SHARED_EXIT: u64 = 1;

impl Drop for Section<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        if self.leave > SHARED_EXIT
            && let Some(slot) = self.slot
        {
            // Release: every read of the section happens before a writer's Acquire load that
            // sees the new count (and so before it frees what the section read).
            slot.count.store(self.leave, Ordering::Release);
        } else if self.leave == SHARED_EXIT {
            self.leave_shared();
        }
    }
}

impl Section<'_> {
    #[cold]
    fn leave_shared(&self) {
        SHARED_DEPTH.with(|d| d.set(d.get() - 1));
        self.readers.shared.fetch_sub(1, Ordering::Release);
    }

    /// Adds `delta` (wrapping) to the calling thread's count of live blocks of domain `d`, as
    /// [`Readers::count`] does, through the slot the section already holds.
    #[inline(always)]
    pub(crate) fn count(&self, d: usize, delta: u64) {
        match self.slot {
            Some(slot) => {
                let c = &slot.live[d];
                // Only the slot's owner writes it: a load and a store are an increment.
                c.store(
                    c.load(Ordering::Relaxed).wrapping_add(delta),
                    Ordering::Relaxed,
                );
            }
            None => {
                self.readers.shared_live[d].fetch_add(delta, Ordering::Relaxed);
            }
        }
    }
}

impl Readers {
    /// No thread registered.
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Readers {
        Readers {
            slots: [const { Slot::new() }; SLOTS],
            shared: AtomicUsize::new(0),
            shared_live: [const { AtomicU64::new(0) }; DOMAINS],
        }
    }
    /// No thread registered.
    #[cfg(loom)]
    pub(crate) fn new() -> Readers {
        Readers {
            slots: core::array::from_fn(|_| Slot::new()),
            shared: AtomicUsize::new(0),
            shared_live: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Enters a section: until the returned guard drops, no record the thread reaches from the
    /// table is freed. Allocates nothing and never waits.
    #[inline(always)]
    pub(crate) fn enter(&self) -> Section<'_> {
        if let Some(slot) = self.slots.get(mine().wrapping_sub(1)) {
            let now = slot.count.load(Ordering::Relaxed);
            if now & 1 == 1 {
                return Section {
                    slot: Some(slot),
                    leave: NESTED,
                    readers: self,
                };
            }
            // Relaxed, then the light fence: the announcement is ordered before the table's
            // reads by the writer's heavy fence (module documentation).
            slot.count.store(now + 1, Ordering::Relaxed);
            light_fence();
            return Section {
                slot: Some(slot),
                leave: now + 2,
                readers: self,
            };
        }
        self.enter_slow()
    }

    #[cold]
    #[inline(never)]
    fn enter_slow(&self) -> Section<'_> {
        if mine() == 0 && self.register() {
            return self.enter();
        }
        SHARED_DEPTH.with(|d| d.set(d.get() + 1));
        self.shared.fetch_add(1, Ordering::Relaxed);
        // Always a full fence here: the shared counter is the rare path.
        fence(Ordering::SeqCst);
        Section {
            slot: None,
            leave: SHARED_EXIT,
            readers: self,
        }
    }

    /// Adds `delta` (wrapping: `u64::MAX` is -1) to the calling thread's count of live blocks of
    /// domain `d`: a load and a store to its own slot (no read-modify-write), or, for a thread
    /// without a slot, an atomic add to the shared count. Needs no section.
    #[inline(always)]
    pub(crate) fn count(&self, d: usize, delta: u64) {
        match self.slots.get(mine().wrapping_sub(1)) {
            Some(slot) => {
                let c = &slot.live[d];
                // Only the slot's owner writes it: a load and a store are an increment.
                c.store(
                    c.load(Ordering::Relaxed).wrapping_add(delta),
                    Ordering::Relaxed,
                );
            }
            None => {
                self.shared_live[d].fetch_add(delta, Ordering::Relaxed);
            }
        }
    }

    /// The sum (wrapping) of every thread's count of live blocks of domain `d`, ever: the
    /// difference of two sums is what was made and not freed between them.
    pub(crate) fn live_sum(&self, d: usize) -> u64 {
        self.slots
            .iter()
            .map(|s| s.live[d].load(Ordering::Acquire))
            .fold(
                self.shared_live[d].load(Ordering::Acquire),
                u64::wrapping_add,
            )
    }

    /// Takes a free slot for the calling thread; false (and the thread uses the shared counter
    /// from now on) if none is free.
    fn register(&self) -> bool {
        for (i, slot) in self.slots.iter().enumerate() {
            if !slot.taken.load(Ordering::Relaxed)
                && slot
                    .taken
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                // Set before the exit watch is armed: arming it may allocate (a high pthread
                // key), and that allocation's section must find the thread registered.
                set_mine(i + 1);
                #[cfg(not(loom))]
                crate::os::thread_exit::watch(i);
                return true;
            }
        }
        set_mine(SHARED);
        false
    }

    /// Whether the calling thread is inside a section.
    pub(crate) fn in_section(&self) -> bool {
        let mine = mine();
        match self.slots.get(mine.wrapping_sub(1)) {
            Some(slot) => slot.count.load(Ordering::Relaxed) & 1 == 1,
            None => SHARED_DEPTH.with(Cell::get) > 0,
        }
    }

    /// Waits for a grace period: every section running when it was called (and so every section
    /// that could reach a record taken out of the table before the call) has ended. Returns false
    /// if it cannot tell now: the calling thread is inside a section, the heavy fence failed, or
    /// the shared counter stayed above zero; the caller keeps its records for a later try.
    pub(crate) fn synchronize(&self) -> bool {
        if self.in_section() {
            return false;
        }
        if !heavy_fence() {
            return false;
        }
        for slot in &self.slots {
            // Acquire: pairs with the Release of the section's end.
            let seen = slot.count.load(Ordering::Acquire);
            if seen & 1 == 1 {
                let mut round = 0;
                while slot.count.load(Ordering::Acquire) == seen {
                    spin(round);
                    round = round.saturating_add(1);
                }
            }
        }
        let mut round = 0;
        while self.shared.load(Ordering::Acquire) != 0 {
            if round == OVERFLOW_ROUNDS {
                return false;
            }
            spin(round);
            round += 1;
        }
        true
    }

    /// Gives slot `i` back (its thread has ended, outside any section).
    #[cfg(not(loom))]
    pub(crate) fn release(&self, i: usize) {
        self.slots[i].taken.store(false, Ordering::Release);
    }

    /// In a child after `fork`, on its only thread: gives back every slot but the calling
    /// thread's (their threads do not exist in the child, and one of them may have been inside a
    /// section), and forgets the shared readers for the same reason.
    ///
    /// # Safety
    /// Only in the child of a `fork`, before it starts a thread.
    #[cfg(not(loom))]
    pub(crate) unsafe fn after_fork_child(&self) {
        let mine = mine();
        for (i, slot) in self.slots.iter().enumerate() {
            if i + 1 != mine {
                let c = slot.count.load(Ordering::Relaxed);
                slot.count.store((c + 1) & !1, Ordering::Relaxed);
                slot.taken.store(false, Ordering::Relaxed);
            }
        }
        self.shared
            .store(SHARED_DEPTH.with(Cell::get), Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }
}

/// The reader's side of the asymmetric fence.
#[inline(always)]
fn light_fence() {
    #[cfg(not(loom))]
    if crate::os::membarrier::registered() {
        compiler_fence(Ordering::SeqCst);
        return;
    }
    fence(Ordering::SeqCst);
}

/// The writer's side of the asymmetric fence; false if it could not be had.
fn heavy_fence() -> bool {
    fence(Ordering::SeqCst);
    #[cfg(not(loom))]
    if crate::os::membarrier::registered() {
        return crate::os::membarrier::expedited();
    }
    true
}

/// The process's readers of the table.
#[cfg(not(loom))]
pub(crate) static READERS: Readers = Readers::new();
