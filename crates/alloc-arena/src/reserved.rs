//! [`ReservedArenas`]: arenas of one size carved from a single reservation of address space
//! aligned to its size, so that "is this pointer in one of these arenas" is one exclusive-or and
//! one shift, with no table to read.
//!
//! ```text
//!   reservation: 2^RESERVED_SHIFT bytes (16 GiB), aligned to its size, read-only zero pages
//!   +---------+---------+---------+-----     -----+---------+
//!   | slot 0  | slot 1  | slot 2  |      ...      | slot n  |   slot = one arena (1 MiB)
//!   +---------+---------+---------+-----     -----+---------+
//!     in use    free      in use                    free
//!   (writable) (zeros)  (writable)                 (zeros)
//! ```
//!
//! * **The reservation** is made once, at the first arena (or the first
//!   [`range_base`](ReservedArenas::range_base)), as a read-only private anonymous mapping with no
//!   commit charge: every byte of it reads as zero until a slot is handed out, and a slot given
//!   back reads as zero again. So a reader that finds a pointer inside the range may read any
//!   arena header or pool meta there without faulting: a slot not in use holds zeros, which the
//!   pools' checks refuse (a pool of multiplier 0 starts no block).
//! * **A slot** is handed out (made writable) for a request of exactly the slot's size and an
//!   alignment up to it; given back, its pages go back to the OS and are closed to writes again.
//!   Which slots are in use is a bitmap under a spin lock (arenas come and go rarely: the lock is
//!   held for a scan of at most a few hundred words; the slot's page-table changes are made
//!   outside it, and only the one call that makes the reservation is made under it).
//! * **Anything else** goes to [`OsArenas`]: other sizes, every request once the slots run out
//!   (a program with more than 16 GiB of small blocks), and every request where the OS refused
//!   the reservation (an address-space limit) or there is none to make (not 64-bit unix).
//!
//! The mem domain's small-object pool takes its arenas from one of these, alone: then a pointer
//! inside the range is that pool's block or a bad one, which lets the C library's `free` skip
//! the registry (see `PoolAllocator::free_fast_word`).

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use alloc_core::lock::Lock;
use alloc_core::{ArenaError, ArenaProvider};

use crate::OsArenas;

/// The reservation's size and alignment, as a power of two: 16 GiB.
pub const RESERVED_SHIFT: u32 = 34;
/// A slot's size (an arena), as a power of two: 1 MiB, the registry's chunk.
const SLOT_SHIFT: u32 = crate::registry::CHUNK_SHIFT;
/// Slots in the reservation.
const SLOTS: usize = 1 << (RESERVED_SHIFT - SLOT_SHIFT);
/// Words of the bitmap of slots in use.
const WORDS: usize = SLOTS / 64;

/// Whether `ptr` lies in the reservation at `base` (a multiple of 2^[`RESERVED_SHIFT`], whose
/// low bits may carry anything): one exclusive-or and one shift. In 64 bits, so that the shift is
/// defined with 32-bit pointers too (where there is no reservation).
#[inline(always)]
pub fn in_reservation(ptr: *const u8, base: u64) -> bool {
    (ptr as usize as u64 ^ base) >> RESERVED_SHIFT == 0
}

/// Whether `ptr` lies in the reservation that the free word `word` ([`free_word`]) names, its
/// key set aside; [`FREE_WORD_OFF`] matches no address.
#[inline(always)]
pub fn free_word_covers(ptr: *const u8, word: u64) -> bool {
    in_reservation(ptr, word & !FREE_TAG_MASK)
}

pub use crate::threads::FREE_TAG_SHIFT;
use crate::threads::{FREE_TAG_IDS, FREE_TAG_MASK, free_tag};

/// The free word that passes no test: bit 62, which no address, key or tag has.
pub const FREE_WORD_OFF: u64 = 1 << 62;

/// The word with which the C library's `free` tests a pointer (see
/// `PoolAllocator::free_fast_word`): the reservation's `base` with the allocator's fast `key` in
/// bits 48 to 61. For a pointer `p` and the tag of way 0 of the calling thread's cache (the id of
/// the allocator whose heap the way holds), `(p ^ word ^ tag) >> RESERVED_SHIFT == 0` says at
/// once that `p` lies in the reservation and that the way holds a heap of the key's allocator;
/// a key too large for the bits, or a base of 0, not aligned to the reservation's size or
/// reaching bit 48, gives [`FREE_WORD_OFF`] instead.
pub fn free_word(base: usize, key: u32) -> u64 {
    let base = base as u64;
    let aligned =
        base != 0 && base & ((1 << RESERVED_SHIFT) - 1) == 0 && base >> FREE_TAG_SHIFT == 0;
    if aligned && key != 0 && (key as usize) < FREE_TAG_IDS {
        base | free_tag(key as usize)
    } else {
        FREE_WORD_OFF
    }
}

/// The key a free word carries ([`free_word`]); meaningful only for a word that is not
/// [`FREE_WORD_OFF`].
#[inline(always)]
pub fn free_word_key(word: u64) -> u32 {
    ((word & FREE_TAG_MASK) >> FREE_TAG_SHIFT) as u32
}

/// `base` before the reservation was tried.
const UNTRIED: usize = 0;
/// `base` once the reservation was refused (or cannot be made here): for good.
const REFUSED: usize = 1;

/// Which slots are in use, and where to start looking.
struct Slots {
    used: [u64; WORDS],
    /// A word at or before the first with a free slot, as far as the last scan knows.
    hint: usize,
    /// Slots that may be handed out, at most (`SLOTS`, or fewer for a test of the fallback).
    limit: usize,
}

/// An [`ArenaProvider`] of arenas of one size (1 MiB) carved from one reservation of 16 GiB
/// aligned to its size, and of everything else through [`OsArenas`] (see the module
/// documentation): `(addr ^ base) >> RESERVED_SHIFT == 0` tells whether an address lies in
/// the reservation.
///
/// ```
/// use alloc_arena::ReservedArenas;
/// use alloc_core::ArenaProvider;
/// use core::alloc::Layout;
///
/// static ARENAS: ReservedArenas = ReservedArenas::new();
/// let layout = Layout::from_size_align(1 << 20, 1 << 20).unwrap();
/// let arena = ARENAS.alloc(layout).unwrap();
/// # #[cfg(all(unix, target_pointer_width = "64"))]
/// assert!(ARENAS.contains(arena.as_ptr()));
/// // SAFETY: the arena was just made with this layout and is not used afterwards.
/// unsafe { ARENAS.free(arena, layout) };
/// ```
pub struct ReservedArenas {
    /// The reservation's address, or `UNTRIED` / `REFUSED`.
    base: AtomicUsize,
    slots: Lock<Slots>,
    fallback: OsArenas,
}

impl Default for ReservedArenas {
    fn default() -> Self {
        Self::new()
    }
}

impl ReservedArenas {
    /// A provider whose reservation is made at its first use.
    pub const fn new() -> Self {
        Self::with_slot_limit(SLOTS)
    }

    /// A provider that hands out at most `limit` slots (at most 16,384) before it goes to the
    /// OS for every arena, as one does once its reservation is full.
    pub const fn with_slot_limit(limit: usize) -> Self {
        ReservedArenas {
            base: AtomicUsize::new(UNTRIED),
            slots: Lock::new(Slots {
                used: [0; WORDS],
                hint: 0,
                limit: if limit < SLOTS { limit } else { SLOTS },
            }),
            fallback: OsArenas::new(),
        }
    }

    /// The reservation's address (a multiple of 2^[`RESERVED_SHIFT`]), made now if it was not
    /// yet; `None` where the OS refused it or there is none to make (not 64-bit unix).
    pub fn range_base(&self) -> Option<usize> {
        // Acquire: pairs with the Release in `reserve` (nothing is read through the address
        // but the OS's zero pages, but a reader may rely on the range existing).
        match self.base.load(Ordering::Acquire) {
            UNTRIED => self.reserve(),
            REFUSED => None,
            base => Some(base),
        }
    }

    /// Whether `ptr` lies in the reservation (false while there is none).
    #[inline]
    pub fn contains(&self, ptr: *const u8) -> bool {
        match self.base.load(Ordering::Acquire) {
            UNTRIED | REFUSED => false,
            base => in_reservation(ptr, base as u64),
        }
    }

    /// Makes the reservation (once, under the lock), or records that it cannot be made.
    #[cold]
    fn reserve(&self) -> Option<usize> {
        let _held = self.slots.lock();
        match self.base.load(Ordering::Acquire) {
            UNTRIED => {}
            REFUSED => return None,
            base => return Some(base),
        }
        #[cfg(all(unix, target_pointer_width = "64"))]
        let made = crate::os::reserve_aligned_zeroed(1 << RESERVED_SHIFT);
        #[cfg(not(all(unix, target_pointer_width = "64")))]
        let made: Option<NonNull<u8>> = None;
        let base = made.map_or(REFUSED, |p| p.as_ptr() as usize);
        self.base.store(base, Ordering::Release);
        (base != REFUSED).then_some(base)
    }

    /// A free slot, made writable; `None` when there is no reservation, every slot (up to the
    /// limit) is in use, or the OS refused to open it.
    fn take_slot(&self) -> Option<NonNull<u8>> {
        let base = self.range_base()?;
        let index = {
            let mut s = self.slots.lock();
            let limit = s.limit;
            let start = s.hint;
            let found = (start..limit.div_ceil(64)).find_map(|w| {
                let free = !s.used[w];
                (free != 0)
                    .then(|| w * 64 + free.trailing_zeros() as usize)
                    .filter(|&i| i < limit)
            })?;
            s.used[found / 64] |= 1 << (found % 64);
            s.hint = found / 64;
            found
        };
        let at = base + (index << SLOT_SHIFT);
        // SAFETY: a slot of the reservation (index below `SLOTS`), not a null address.
        let slot = unsafe { NonNull::new_unchecked(at as *mut u8) };
        #[cfg(all(unix, target_pointer_width = "64"))]
        // SAFETY: a page-aligned range of our own reservation, claimed above by this call alone.
        let opened = unsafe { crate::os::make_writable(slot, 1 << SLOT_SHIFT) };
        #[cfg(not(all(unix, target_pointer_width = "64")))]
        let opened = false;
        if !opened {
            self.clear_slot(index);
            return None;
        }
        Some(slot)
    }

    /// Marks slot `index` free again.
    fn clear_slot(&self, index: usize) {
        let mut s = self.slots.lock();
        s.used[index / 64] &= !(1 << (index % 64));
        s.hint = s.hint.min(index / 64);
    }

    /// Slots in use now (for tests and statistics).
    pub fn slots_in_use(&self) -> usize {
        let s = self.slots.lock();
        s.used.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Fork support: takes the lock slot changes hold (a leaf: nothing else is taken while it is
    /// held), so that a `fork` does not copy it held by a thread the child will not have.
    pub fn prepare_fork(&self) {
        self.slots.acquire_for_fork();
    }

    /// Fork support, after `fork()` in the parent or the child: releases what
    /// [`prepare_fork`](Self::prepare_fork) took.
    ///
    /// # Safety
    /// In the parent, on the thread that called `prepare_fork`; in the child, on the thread the
    /// fork returned in, after the parent's `prepare_fork`.
    pub unsafe fn after_fork(&self) {
        // SAFETY: the caller's guarantee.
        unsafe { self.slots.release_after_fork() };
    }

    /// Whether `layout` is a slot's: its size, and an alignment up to it.
    fn fits_slot(layout: Layout) -> bool {
        layout.size() == 1 << SLOT_SHIFT && layout.align() <= 1 << SLOT_SHIFT
    }
}

/// A provider that is dropped gives its reservation back (one that lives in a `static`, as the
/// mem domain's, never is). Its arenas must have been given back first, as for any provider.
impl Drop for ReservedArenas {
    fn drop(&mut self) {
        #[cfg(all(unix, target_pointer_width = "64"))]
        if let base @ 2.. = *self.base.get_mut() {
            // SAFETY: the reservation made by `reserve`, of this size, which no arena uses any
            // more (the contract of a provider: its arenas go back before it does).
            unsafe {
                crate::os::unreserve(NonNull::new_unchecked(base as *mut u8), 1 << RESERVED_SHIFT)
            };
        }
    }
}

// SAFETY: a slot is handed out to one caller at a time (claimed in the bitmap under the lock,
// cleared only after it was given back), is `layout.size()` bytes aligned to the slot size (so to
// any alignment up to it), writable while handed out, and zero when handed out (fresh, or given
// back with its pages replaced by fresh zero pages; a slot the OS did not replace is never handed
// out again). Everything else is `OsArenas`', which upholds the contract.
// Decommitted ranges of a slot come back zeroed on first touch, as `OsArenas`' do.
unsafe impl ArenaProvider for ReservedArenas {
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, ArenaError> {
        if Self::fits_slot(layout)
            && let Some(slot) = self.take_slot()
        {
            return Ok(slot);
        }
        self.fallback.alloc(layout)
    }

    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout) {
        if !self.contains(ptr.as_ptr()) {
            // SAFETY: the caller's guarantee; an arena outside the range came from `fallback`.
            return unsafe { self.fallback.free(ptr, layout) };
        }
        #[cfg(all(unix, target_pointer_width = "64"))]
        // SAFETY: a slot of our reservation (the caller's guarantee: an arena we handed out), no
        // longer used; its bit is cleared only after, so nobody reopens it meanwhile.
        let zeroed = unsafe { crate::os::release_zeroed(ptr, 1 << SLOT_SHIFT) };
        #[cfg(not(all(unix, target_pointer_width = "64")))]
        let zeroed = false;
        if !zeroed {
            // The OS kept the slot's pages as they were: it is not handed out again (its bit
            // stays set), since a slot handed out must read as zeros.
            return;
        }
        let base = self.base.load(Ordering::Acquire);
        self.clear_slot((ptr.as_ptr() as usize - base) >> SLOT_SHIFT);
    }

    unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> bool {
        // SAFETY: the caller's guarantee: a page-aligned range of a live arena, writable and
        // private anonymous memory whether it is a slot or an arena of the fallback, which
        // `OsArenas` decommits the same way.
        unsafe { self.fallback.decommit(ptr, len) }
    }

    unsafe fn commit(&self, ptr: NonNull<u8>, len: usize) -> Result<(), ArenaError> {
        // SAFETY: as above.
        unsafe { self.fallback.commit(ptr, len) }
    }

    fn fresh_memory_is_zeroed(&self) -> bool {
        true
    }
}

#[cfg(all(test, unix, target_pointer_width = "64"))]
mod tests {
    use super::*;

    const ARENA: usize = 1 << SLOT_SHIFT;

    fn layout() -> Layout {
        Layout::from_size_align(ARENA, ARENA).unwrap()
    }

    #[test]
    fn a_free_word_matches_its_reservation_and_its_key_s_tag_alone() {
        if usize::BITS < 64 {
            return; // 32-bit: no address reaches a reservation's alignment.
        }
        // A reservation's own test takes any base of its alignment, above bit 48 too (where
        // there is no free word).
        let high = 1u64 << FREE_TAG_SHIFT;
        assert!(in_reservation((high + 4096) as usize as *const u8, high));
        assert!(!in_reservation(4096 as *const u8, high));
        let base = (3u64 << RESERVED_SHIFT) as usize;
        let word = free_word(base, 8);
        assert_eq!(free_word_key(word), 8);
        // `PoolAllocator::free_fast_word`'s test, for a thread whose way 0 has `tag`.
        let test =
            |addr: usize, word: u64, tag: u64| (addr as u64 ^ word ^ tag) >> RESERVED_SHIFT == 0;
        let inside = [base, base + 4096 + 16, base + (1 << RESERVED_SHIFT) - 16];
        for a in inside {
            assert!(free_word_covers(a as *const u8, word));
            assert!(test(a, word, free_tag(8)), "{a:#x}");
            // Another allocator's heap in the way, an empty way, an id without a tag: no match.
            for id in [16, 8 + 8 * 1024, 0, FREE_TAG_IDS, FREE_TAG_IDS + 8] {
                assert!(!test(a, word, free_tag(id)), "{a:#x}, id {id}");
            }
        }
        for a in [
            base - 16,
            base + (1 << RESERVED_SHIFT),
            0,
            4096,
            usize::MAX & !15,
        ] {
            assert!(!free_word_covers(a as *const u8, word), "{a:#x}");
            assert!(!test(a, word, free_tag(8)), "{a:#x}");
        }
        // Off: a key without a tag, no key, an unaligned base, a base at the tag's bits.
        for off in [
            free_word(base, FREE_TAG_IDS as u32),
            free_word(base, 0),
            free_word(base, u32::MAX),
            free_word(base + 4096, 8),
            free_word(1 << FREE_TAG_SHIFT, 8),
            free_word(0, 8),
        ] {
            assert_eq!(off, FREE_WORD_OFF);
            for a in inside {
                assert!(!free_word_covers(a as *const u8, off));
                for id in [0, 8, FREE_TAG_IDS] {
                    assert!(!test(a, off, free_tag(id)), "{a:#x}, id {id}");
                }
            }
        }
    }

    #[test]
    fn slots_come_from_the_aligned_reservation_and_are_reused_zeroed() {
        let r = ReservedArenas::new();
        assert!(!r.contains(core::ptr::null()));
        let Some(base) = r.range_base() else {
            return std::eprintln!("no reservation here (an address-space limit?): skipped");
        };
        let a = r.alloc(layout()).unwrap();
        assert_eq!(base % (1 << RESERVED_SHIFT), 0);
        assert!(r.contains(a.as_ptr()));
        assert!(!r.contains((base - 1) as *const u8));
        assert!(!r.contains((base + (1 << RESERVED_SHIFT)) as *const u8));
        assert_eq!(a.as_ptr() as usize % ARENA, 0);
        // SAFETY: a fresh arena of `ARENA` writable bytes.
        unsafe { a.as_ptr().add(ARENA - 1).write(7) };
        let b = r.alloc(layout()).unwrap();
        assert_ne!(a, b);
        assert_eq!(r.slots_in_use(), 2);
        // SAFETY: live arenas of this provider, each freed once.
        unsafe { r.free(a, layout()) };
        // A slot given back reads as zero, and is the next handed out (the lowest free).
        // SAFETY: inside the reservation, which reads as zeros where no slot is in use.
        assert_eq!(unsafe { a.as_ptr().add(ARENA - 1).read_volatile() }, 0);
        let c = r.alloc(layout()).unwrap();
        assert_eq!(c, a);
        // SAFETY: as above.
        assert_eq!(unsafe { c.as_ptr().add(ARENA - 1).read() }, 0);
        // SAFETY: live arenas of this provider, each freed once.
        unsafe {
            r.free(b, layout());
            r.free(c, layout());
        }
        assert_eq!(r.slots_in_use(), 0);
    }

    #[test]
    fn other_sizes_and_a_full_reservation_go_to_the_os() {
        let r = ReservedArenas::with_slot_limit(2);
        if r.range_base().is_none() {
            return std::eprintln!("no reservation here (an address-space limit?): skipped");
        }
        let a = r.alloc(layout()).unwrap();
        let b = r.alloc(layout()).unwrap();
        let c = r.alloc(layout()).unwrap();
        let big = Layout::from_size_align(4 * ARENA, 4 * ARENA).unwrap();
        let d = r.alloc(big).unwrap();
        assert!(r.contains(a.as_ptr()) && r.contains(b.as_ptr()));
        assert!(!r.contains(c.as_ptr()) && !r.contains(d.as_ptr()));
        assert_eq!(c.as_ptr() as usize % ARENA, 0);
        assert_eq!(d.as_ptr() as usize % (4 * ARENA), 0);
        // SAFETY: live arenas of this provider, each freed once with its layout.
        unsafe {
            c.as_ptr().write(1);
            r.free(c, layout());
            r.free(d, big);
            r.free(a, layout());
        }
        // The slot given back is handed out again before the OS is asked.
        let e = r.alloc(layout()).unwrap();
        assert_eq!(e, a);
        // SAFETY: as above.
        unsafe {
            r.free(b, layout());
            r.free(e, layout());
        }
    }

    #[test]
    fn threads_never_share_a_slot() {
        static R: ReservedArenas = ReservedArenas::with_slot_limit(64);
        std::thread::scope(|s| {
            for t in 0..4u8 {
                s.spawn(move || {
                    for round in 0..50u8 {
                        let mine: std::vec::Vec<_> =
                            (0..8).map(|_| R.alloc(layout()).unwrap()).collect();
                        for p in &mine {
                            // SAFETY: a live arena of this thread's.
                            unsafe { p.as_ptr().write(t ^ round) };
                        }
                        for p in mine {
                            // SAFETY: as above; freed once.
                            unsafe {
                                assert_eq!(p.as_ptr().read(), t ^ round);
                                R.free(p, layout());
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(R.slots_in_use(), 0);
    }
}
