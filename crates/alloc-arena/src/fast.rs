//! The fast paths for a caller that knows which allocator it talks to: a `malloc` of a small
//! block from the calling thread's bin, and a `free` of a block into it, with the allocator's
//! pymalloc geometry as constants and every check folded into comparisons with one key.
//!
//! The exported C `malloc`/`free` (and the mem domain on its standard pool) take these first; any
//! answer other than "done" sends the caller to the general routing (`routing`), which does the
//! same work the long way and everything else (empty bins, full bins, other threads' blocks,
//! large blocks, foreign pointers, null).
//!
//! **The key.** [`PoolAllocator::fast_key`] is the allocator's registry id when the allocator
//! uses the fast paths' geometry ([`PoolConfig::WIDE`](crate::PoolConfig::WIDE)'s: pymalloc's
//! with classes up to 1 KiB), and [`NO_KEY`] otherwise; a caller may pass [`NO_KEY`] to mean "not
//! now" (the domain table does while a domain has another allocator). One comparison then
//! answers several questions at once:
//!
//! * `malloc`: the thread's heap in this allocator's way of its cache is this allocator's, and the caller
//!   allows the fast path (no way holds [`NO_KEY`]: registry ids never take that value);
//! * `free`: the registry maps the block's 1 MiB chunk to this allocator's arenas, and the caller
//!   allows the fast path. Null and every pointer outside domalloc's arenas map to 0 or to
//!   another id, so they go the long way.
//!
//! ```text
//!   malloc(n): n <= 1024 ─ way.id == key ─ bin[(n-1)/16] not empty ─> pop     (else: front)
//!   free(p):   registry[p >> 20] == key ─ way.id == key ─ block start ─ bin not full ─> push
//!                                                                                  (else: front)
//! ```
//!
//! A caller that knows the allocator takes its arenas from a
//! [`ReservedArenas`](crate::ReservedArenas) of its own may skip the registry for a pointer in
//! that reservation ([`PoolAllocator::free_fast_word`],
//! [`PoolAllocator::realloc_fast_check_word`], with the reservation's [`free_word`](crate::free_word)):
//! one test of the pointer against the word and the tag of the thread's way 0 says that the
//! pointer lies there and that the way holds the allocator's heap; every 1 MiB chunk there is one
//! of its arenas, or zeros, whose pool metas (multiplier 0) the block-start test refuses.
//!
//! A free puts the block into the calling thread's own bin of its class, whichever thread's heap
//! it comes from: the thread reuses it while it is in its cache, and a bin's flush sends other
//! heaps' blocks home (see `PoolCore::send_home`).

use core::ptr::{self, NonNull};

use alloc_core::{ArenaProvider, DomainAllocator};

use crate::pool::PoolAllocator;
use crate::registry;
use crate::routing::{FAST_GEOMETRY, Front, pool_meta};
use crate::size_class::Geometry;
use crate::sync::Ordering;
use crate::threads::{self, ThreadCache, Way};

/// What [`PoolAllocator::realloc_fast_check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastRealloc {
    /// The block serves the new size as it is.
    Stays,
    /// The block must move: `bin` is the thread's bin of its class, `block` its size (for
    /// [`PoolAllocator::realloc_move_fast`]).
    Moves {
        /// The calling thread's bin of the block's class.
        bin: *mut u8,
        /// The block's size in bytes.
        block: usize,
    },
    /// Not a block for the fast path (nothing was done).
    Refused,
}

/// What [`PoolAllocator::free_fast_word`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WordFree {
    /// The block is freed, into the calling thread's bin.
    Done,
    /// Nothing was done to a pointer in the reservation, on a thread whose way 0 holds a heap of
    /// the allocator: the checks refused it or the bin is full (then the allocator's `free`
    /// takes it, and reports a bad pointer).
    Refused,
    /// Nothing was done: the pointer is not in the reservation, the word is off, or the thread
    /// holds no heap of the allocator in way 0 (then the registry's way takes it).
    Elsewhere,
}

/// What [`PoolAllocator::free_fast_routed`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastFree {
    /// The block is freed (into the calling thread's bin, or home).
    Done,
    /// Nothing was done: the registry's owner of the pointer's arena is not the key (0: no
    /// arena; [`NO_KEY`]: not looked up, the flat table does not cover the address). With the
    /// key [`NO_KEY`] (no fast path) this allocator's own blocks come back this way too, with
    /// its id.
    Owner(u32),
    /// Nothing was done to a pointer in this allocator's arenas: the checks refused it, the
    /// bin is full, or the thread has no cache (then the allocator's `free_checked` takes it).
    Refused,
}

/// The key that no allocator has: passed to the fast paths, it sends every call the long way.
pub const NO_KEY: u32 = u32::MAX;

impl<P: ArenaProvider, L: DomainAllocator> PoolAllocator<P, L> {
    /// The key of this allocator's fast paths: its registry id (assigned now if it has none yet,
    /// one that maps to way 0 of the thread cache) if it uses the fast paths' geometry
    /// ([`PoolConfig::WIDE`](crate::PoolConfig::WIDE)'s: the fast paths compute size classes and
    /// pool positions from it as constants) and maps to way 0,
    /// [`NO_KEY`] otherwise (an allocator whose id was assigned by its first allocation, before
    /// this was asked, may not). An allocator of another geometry is given no id here (way 0 is
    /// left to one that can use it).
    pub fn fast_key(&self) -> u32 {
        let g = self.geometry();
        let d = &FAST_GEOMETRY;
        let wide = !g.secure
            && g.class_shift == d.class_shift
            && g.threshold == d.threshold
            && g.pool_shift == d.pool_shift
            && g.arena_size == d.arena_size;
        if !wide {
            return NO_KEY;
        }
        let id = match self.owner_id().load(Ordering::Relaxed) {
            0 => self.assign_id_for_way_zero(),
            id => id,
        };
        // The fast path reads way 0 of the thread cache only (no index to compute).
        if ThreadCache::way_of(id as usize) != 0 {
            return NO_KEY;
        }
        if id != 0 { id } else { NO_KEY }
    }

    /// The class of `size` bytes in the fast paths' geometry and the calling thread's way 0, if
    /// `size` is within the threshold (0 wraps above it) and the way holds a heap of the
    /// allocator whose key is `key`; `None` otherwise. What `malloc_fast`, `malloc_refill` and
    /// `free_sized_fast` ask first.
    #[inline(always)]
    fn small_class_in_way0(size: usize, key: u32) -> Option<(usize, threads::Way)> {
        let g = &FAST_GEOMETRY;
        // `size - 1`, so that 0 wraps and goes the long way with the sizes above the threshold,
        // and the class is one shift.
        let below = size.wrapping_sub(1);
        if below >= g.threshold {
            return None;
        }
        let c = threads::cache_if_any();
        if c.is_null() {
            return None;
        }
        // SAFETY: the calling thread's cache, touched only by it.
        let w = unsafe { (*c).ways[0] };
        if w.id != key as usize {
            return None;
        }
        Some((below >> g.class_shift, w))
    }

    /// A block of at least `size` bytes from the calling thread's bin of its class, or `None`
    /// when the fast path cannot serve it (then call `malloc`, which always can).
    ///
    /// # Safety
    /// `key` is [`NO_KEY`] or a value [`fast_key`](Self::fast_key) returned for this allocator.
    #[inline(always)]
    pub unsafe fn malloc_fast(&self, size: usize, key: u32) -> Option<NonNull<u8>> {
        let g = &FAST_GEOMETRY;
        let (class, w) = Self::small_class_in_way0(size, key)?;
        // SAFETY: the way holds a heap the calling thread owns, and its bins, of the allocator
        // whose id is `key`: this one (the caller's guarantee), with the fast paths' geometry, so
        // `class_of` by that geometry is the heap's class; no other reference to the core
        // is alive.
        unsafe { crate::pool_core::pop_bin_in(w.bins, class, g.bin_stride, g.block_size(class)) }
    }

    /// A block of at least `size` bytes from the calling thread's bin of its class, for an
    /// allocator of any geometry (its own, read from it), with no call; `None`, having done
    /// nothing, where the size is above the threshold (or 0), the thread has no heap of this
    /// allocator yet, or the bin is empty (then call `malloc`, which always can). What the C
    /// library asks of the mem domain's medium pool, whose blocks start above 1 KiB.
    #[inline(always)]
    pub fn malloc_bin_fast(&self, size: usize) -> Option<NonNull<u8>> {
        let g = self.geometry();
        let below = size.wrapping_sub(1);
        if below >= g.threshold {
            return None;
        }
        let class = below >> g.class_shift;
        let w = self.my_way()?;
        // SAFETY: a way of this allocator holds a heap the calling thread owns and its bins,
        // of this allocator's geometry `g`; `class` is below its class count (the size is
        // within the threshold); no other reference to the core is alive.
        unsafe { crate::pool_core::pop_bin_in(w.bins, class, g.bin_stride, g.block_size(class)) }
    }

    /// What follows a `None` from [`malloc_fast`](Self::malloc_fast) for a small size: a block
    /// from the calling thread's heap by its pools' path (the bin refilled on the way), without
    /// the general routing's second look at the size and the thread cache. `None`, having done
    /// nothing, where `malloc_fast` would not serve `size` (above the threshold, or 0), where the
    /// thread has no heap of this allocator, or where the heap has no memory (then call `malloc`,
    /// which makes heaps and reports failure).
    ///
    /// # Safety
    /// `key` is [`NO_KEY`] or a value [`fast_key`](Self::fast_key) returned for this allocator.
    #[cold]
    #[inline(never)]
    pub unsafe fn malloc_refill(&self, size: usize, key: u32) -> Option<NonNull<u8>> {
        let (class, w) = Self::small_class_in_way0(size, key)?;
        // SAFETY: the way holds a heap of this allocator (the key's) that the calling thread
        // owns; the class is of the fast paths' geometry, this allocator's (the key's condition).
        // The bin is not looked at again: `malloc_fast` found it empty (and a caller that did
        // not ask it first still gets a right block, from the pools).
        unsafe { self.alloc_from_pools_fast(w.slot, class) }
    }

    /// Frees `ptr` into the calling thread's bin if it is a block of this allocator's pools, the
    /// thread has a heap of this allocator and the bin has room; returns false, having done nothing, otherwise
    /// (then call `free`, which takes any block, null included).
    ///
    /// # Safety
    /// `key` is [`NO_KEY`] or a value [`fast_key`](Self::fast_key) returned for this allocator;
    /// `ptr` is null or a live block of this allocator, or a pointer the allocator's `free` takes
    /// (a block of its large-block allocator), not used after a true answer.
    #[inline(always)]
    pub unsafe fn free_fast(&self, ptr: *mut u8, key: u32) -> bool {
        // Where the flat table does not cover `ptr` this answers no, and the long way asks the
        // tree.
        if !registry::owned_by_fast(ptr as usize, key) {
            return false;
        }
        // SAFETY: the registry maps the chunk to this allocator's arenas (the key is its id),
        // whose geometry is the fast paths' (the key's condition), and whose heaps are in way 0
        // of thread caches (the key's condition too); the caller's guarantee.
        unsafe { self.free_into_bin(&FAST_GEOMETRY, ptr, key as usize, 0) }
    }

    /// [`free_fast`](Self::free_fast) that tells its caller where to go when it does not free:
    /// [`FastFree::Owner`] carries the registry's owner of `ptr`'s arena (0: none; [`NO_KEY`]:
    /// the flat table does not cover it) for a pointer outside this allocator's arenas, and
    /// [`FastFree::Refused`] is one of its own that the checks or a full bin turned away, so
    /// that a caller routing among several allocators
    /// (the C library's `free`: the medium and large pools, the spans, glibc) needs no second
    /// lookup. The same checks and the same common case as `free_fast`, with no call.
    ///
    /// # Safety
    /// As for [`free_fast`](Self::free_fast).
    #[inline(always)]
    pub unsafe fn free_fast_routed(&self, ptr: *mut u8, key: u32) -> FastFree {
        let Some(owner) = registry::owner_fast(ptr as usize) else {
            return FastFree::Owner(NO_KEY);
        };
        if owner != key {
            return FastFree::Owner(owner);
        }
        // SAFETY: as in `free_fast`: the registry maps the chunk to this allocator's arenas.
        if unsafe { self.free_into_bin(&FAST_GEOMETRY, ptr, key as usize, 0) } {
            FastFree::Done
        } else {
            FastFree::Refused
        }
    }

    /// [`free_fast`](Self::free_fast) for the C library's `free`, with no registry: one test of
    /// `ptr` against `word` and the tag of the calling thread's way 0 (`(ptr ^ word ^ tag) >>
    /// RESERVED_SHIFT == 0`, see [`free_word`](crate::free_word)) says at once that `ptr` lies in
    /// the reservation of a [`ReservedArenas`](crate::ReservedArenas) that this allocator alone
    /// takes arenas from, that the fast path is on (the word is not
    /// [`FREE_WORD_OFF`](crate::FREE_WORD_OFF)), and that the way holds a heap of this allocator
    /// that the thread owns. Then the block goes into the thread's bin, after the hardened
    /// default's checks ([`WordFree::Done`]); a pointer they refuse, or a full bin, is left
    /// alone ([`WordFree::Refused`]: then call `free`, which reports a bad pointer). Any other
    /// pointer, or a thread with no heap of this allocator in way 0, is
    /// [`WordFree::Elsewhere`], having done nothing: then the registry's way
    /// ([`free_fast_routed`](Self::free_fast_routed)) takes it, a thread with no heap here
    /// included.
    ///
    /// # Safety
    /// `word` is [`FREE_WORD_OFF`](crate::FREE_WORD_OFF) or `free_word(base, key)` for the base
    /// of a `ReservedArenas` from which this allocator alone takes arenas (so each 1 MiB chunk in
    /// it is an arena of this allocator, or reads as zeros: pool metas of multiplier 0, which the
    /// checks refuse) and a `key` that [`fast_key`](Self::fast_key) returned for this allocator;
    /// `ptr` is a live block of this allocator or a pointer of another allocator (or a bad one);
    /// not used after a [`WordFree::Done`] answer.
    #[inline(always)]
    pub unsafe fn free_fast_word(&self, ptr: *mut u8, word: u64) -> WordFree {
        let Some(w) = way_for_word(ptr, word) else {
            return WordFree::Elsewhere;
        };
        // SAFETY: the test above, with the caller's guarantee: the way holds a heap of this
        // allocator (its key is its registry id, of the fast paths' geometry, heaps in way 0),
        // which the calling thread owns; `ptr` lies in the reservation, whose chunks are this
        // allocator's arenas or zeros.
        if unsafe { Self::free_into_way(&FAST_GEOMETRY, ptr, w) } {
            WordFree::Done
        } else {
            WordFree::Refused
        }
    }

    /// Frees a block of `size` requested bytes (a sized free: Rust's `dealloc`) into the calling
    /// thread's bin if the size is within the pools' threshold, the thread's heap in way 0 of its
    /// cache is this allocator's (`key`), and the bin has room; returns false, having done
    /// nothing, otherwise (then call `free_sized` or `free_aligned`, which take any block). No
    /// registry, no geometry and no pool are read: the size gives the class, as for
    /// `free_sized`, which trusts it the same way. A block of another thread's heap joins this
    /// thread's bin too (see [`free_fast`](Self::free_fast)).
    ///
    /// # Safety
    /// `key` is [`NO_KEY`] or a value [`fast_key`](Self::fast_key) returned for this allocator;
    /// `ptr` is a live block of this allocator made for `size` bytes with an alignment of at most
    /// 16 (by `malloc`, `calloc`, `realloc` or `malloc_aligned`), not used after a true answer.
    #[inline(always)]
    pub unsafe fn free_sized_fast(&self, ptr: NonNull<u8>, size: usize, key: u32) -> bool {
        let g = &FAST_GEOMETRY;
        let Some((class, w)) = Self::small_class_in_way0(size, key) else {
            return false;
        };
        // SAFETY: the way holds a heap the calling thread owns and its bins, of this allocator
        // (the key), with the fast paths' geometry; the block is of a heap of this allocator (the
        // caller's guarantee); a block made for `size <= threshold` bytes at an alignment of at
        // most 16 is of class `class_of(size)` (realloc keeps it so); no other reference to the
        // core is alive.
        unsafe {
            crate::pool_core::push_bin_in(w.bins, class, g.bin_stride, ptr, g.block_size(class))
        }
    }

    /// Resizes `ptr` if it is a block of this allocator's pools and the calling thread has a heap
    /// of this allocator (`key`): in place when `size` falls in the block's class, otherwise into
    /// a new block (the fast allocation, or `malloc`), the old one's bytes copied and the old
    /// block freed (into the thread's bin, or by `free`). `Some(answer)`: done, where
    /// `Some(None)` means no memory for the new block (the old one is untouched); `None`, having
    /// done nothing: any other pointer (null, a large block, a foreign one, a bad one), or a
    /// thread with no heap here; then call `realloc`, which takes them all and reports the bad
    /// ones.
    ///
    /// The same checks as [`free_fast`](Self::free_fast) come first: a pointer that does not
    /// start a block of a pool in use, or a block freed already (its freed mark, `check::
    /// FREED_MARK`; without the marks, the top of its bin), goes the long way, which reports it. `realloc`'s rules are kept: a block stays in
    /// place only within its class, so that a sized free can trust the size.
    ///
    /// # Safety
    /// `key` is [`NO_KEY`] or a value [`fast_key`](Self::fast_key) returned for this allocator;
    /// `ptr` is null, a live block of this allocator made by `malloc`, `calloc` or `realloc`, or a
    /// pointer the allocator's `realloc` takes; on a `Some(Some(_))` answer other than `ptr`, `ptr`
    /// is not used again.
    #[inline]
    pub unsafe fn realloc_fast(
        &self,
        ptr: *mut u8,
        size: usize,
        key: u32,
    ) -> Option<Option<NonNull<u8>>> {
        if !registry::owned_by_fast(ptr as usize, key) {
            return None;
        }
        // SAFETY: the registry maps the chunk to this allocator's arenas (the key is its id), of
        // the fast paths' geometry, whose heaps are in way 0 (the key's conditions); the caller's
        // guarantee.
        unsafe { self.realloc_into(&FAST_GEOMETRY, ptr, size, key as usize, key, 0) }
    }

    /// [`realloc_fast`](Self::realloc_fast) in two steps, for a caller that keeps its common
    /// case free of calls: this one makes the checks (no call), and says whether the block
    /// [stays](FastRealloc::Stays) (then `ptr` is the answer), [moves](FastRealloc::Moves) (then
    /// [`realloc_move_fast`](Self::realloc_move_fast) with what it gives), or is
    /// [refused](FastRealloc::Refused), having done nothing (then call `realloc_fast` or
    /// `realloc`, which take any pointer). A size of 0 is refused: `realloc(p, 0)` frees in C.
    ///
    /// # Safety
    /// As for [`realloc_fast`](Self::realloc_fast).
    #[inline(always)]
    pub unsafe fn realloc_fast_check(&self, ptr: *mut u8, size: usize, key: u32) -> FastRealloc {
        if !registry::owned_by_fast(ptr as usize, key) {
            return FastRealloc::Refused;
        }
        // SAFETY: as in `realloc_fast`: the registry maps the chunk to this allocator's arenas
        // (the key is its id), of the fast paths' geometry, heaps in way 0 (the key's
        // conditions); the caller's guarantee.
        let target = unsafe { self.realloc_target(&FAST_GEOMETRY, ptr, key as usize, 0) };
        Self::realloc_answer(size, target)
    }

    /// [`realloc_fast_check`](Self::realloc_fast_check) for the C library's `realloc`, with no
    /// registry: the test of [`free_fast_word`](Self::free_fast_word) first, then the same
    /// answers. `None`, having done nothing: a pointer the test does not pass (outside the
    /// reservation, the fast path off, or a thread with no heap of this allocator in way 0);
    /// then call `realloc_fast_check` or `realloc`, which take any pointer.
    ///
    /// # Safety
    /// `word` as for [`free_fast_word`](Self::free_fast_word); `ptr` is null, a live block of
    /// this allocator made by `malloc`, `calloc` or `realloc`, or a pointer the allocator's
    /// `realloc` takes.
    #[inline(always)]
    pub unsafe fn realloc_fast_check_word(
        &self,
        ptr: *mut u8,
        size: usize,
        word: u64,
    ) -> Option<FastRealloc> {
        let w = way_for_word(ptr, word)?;
        // SAFETY: as in `free_fast_word`: the way holds a heap of this allocator that the calling
        // thread owns, of the fast paths' geometry; `ptr` lies in its reservation, whose chunks
        // are its arenas or zeros (metas of multiplier 0, which the checks refuse).
        let target = unsafe { Self::realloc_target_in(&FAST_GEOMETRY, ptr, w) };
        Some(Self::realloc_answer(size, target))
    }

    /// What the fast reallocs answer for `size` and the block's bin and size (if the checks
    /// passed).
    #[inline(always)]
    fn realloc_answer(size: usize, target: Option<(*mut u8, usize)>) -> FastRealloc {
        let g = &FAST_GEOMETRY;
        match target {
            Some((_, block)) if Self::stays_in(g, size, block) => FastRealloc::Stays,
            // A size of 0 is C's free (`realloc(p, 0)`), for the long way.
            Some((bin, block)) if size != 0 => FastRealloc::Moves { bin, block },
            _ => FastRealloc::Refused,
        }
    }

    /// Whether a block of `block` bytes serves `size` in place: the size is of the block's class
    /// (a block stays only within its class, so that a sized free can trust the size).
    #[inline(always)]
    fn stays_in(g: &Geometry, size: usize, block: usize) -> bool {
        let below = size.wrapping_sub(1);
        below < g.threshold && g.block_size(below >> g.class_shift) == block
    }

    /// [`realloc_fast`](Self::realloc_fast) for any geometry, for a pointer the caller already
    /// found in this allocator's arenas (`arena_owner(ptr) == registry_id()`): the routing's
    /// `realloc` tries it before its whole check of the pointer, and the C library's for a block
    /// of the mem domain's medium pool. A block that moves goes to this allocator's `malloc`
    /// (so a caller that wants another allocator for the new size asks only for sizes this
    /// one's pools serve).
    ///
    /// # Safety
    /// `ptr` lies in this allocator's arenas (the registry says so) and is a live block of it
    /// made by `malloc`, `calloc` or `realloc`, or a bad pointer the checks refuse; on a
    /// `Some(Some(_))` answer other than `ptr`, `ptr` is not used again.
    #[inline]
    pub unsafe fn realloc_in_arenas(
        &self,
        ptr: *mut u8,
        size: usize,
    ) -> Option<Option<NonNull<u8>>> {
        let id = self.owner_id().load(Ordering::Relaxed) as usize;
        // SAFETY: the caller's guarantee (the registry maps `ptr` to this allocator's id, so it
        // is not 0); the allocator's own geometry, id and way; `NO_KEY` makes the new block's
        // fast allocation (the fast paths' geometry only) step aside.
        unsafe {
            self.realloc_into(
                self.geometry(),
                ptr,
                size,
                id,
                NO_KEY,
                ThreadCache::way_of(id),
            )
        }
    }

    /// The checks of both fast reallocs, those of the fast free: the calling thread owns a heap
    /// of this allocator (in `way`), `ptr` starts a block of a pool in use and holds no freed
    /// mark (without the marks: is not the top of its bin). Then the bin of the block's class in the thread's
    /// heap, and the block's size; `None`, having done nothing, otherwise.
    ///
    /// # Safety
    /// As for [`realloc_into`](Self::realloc_into).
    #[inline(always)]
    unsafe fn realloc_target(
        &self,
        g: &Geometry,
        ptr: *mut u8,
        id: usize,
        way: usize,
    ) -> Option<(*mut u8, usize)> {
        let c = threads::cache_if_any();
        if c.is_null() {
            return None;
        }
        // SAFETY: the calling thread's cache, touched only by it.
        let w = unsafe { (*c).ways[way] };
        // A way of this allocator holds a heap the calling thread owns.
        if w.id != id {
            return None;
        }
        // SAFETY: the way holds a heap of this allocator (above); the caller's guarantee.
        unsafe { Self::realloc_target_in(g, ptr, w) }
    }

    /// [`realloc_target`](Self::realloc_target) past the way's test: `w` holds a heap of this
    /// allocator that the calling thread owns.
    ///
    /// # Safety
    /// `w` is a way of the calling thread's cache that holds a heap of this allocator, of geometry
    /// `g`; `ptr` lies in this allocator's arenas, or in a reservation whose chunks are its
    /// arenas or zeros; the block is live, or a bad pointer the checks refuse.
    #[inline(always)]
    unsafe fn realloc_target_in(g: &Geometry, ptr: *mut u8, w: Way) -> Option<(*mut u8, usize)> {
        let addr = ptr as usize;
        let meta = pool_meta(g, addr);
        // SAFETY: the registry maps the chunk to this allocator's arenas, whose metas are
        // initialised (or zero: never taken, multiplier 0, refused below).
        let (magic, block, class) = unsafe {
            (
                (*meta).start_magic,
                (*meta).block_size as usize,
                (*meta).class as usize,
            )
        };
        // SAFETY: as above.
        if !unsafe { crate::check::starts_carved_block(g, meta, addr, magic) } {
            return None;
        }
        // A pool that passes has a class: its bin in this thread's heap (the way's), whose top is
        // a block freed a moment ago.
        // SAFETY: the way holds a heap of this allocator that the calling thread owns; the bin of
        // the pool's class lies `bin_at` into its slot (or `class` bins into its bins).
        let bin = unsafe {
            #[cfg(target_pointer_width = "64")]
            {
                let _ = class;
                w.slot.cast::<u8>().add((*meta).bin_at as usize)
            }
            #[cfg(not(target_pointer_width = "64"))]
            {
                w.bins.add(class * g.bin_stride)
            }
        };
        // A block freed already (its mark, or the bin's top without the marks) goes the long
        // way, which reports it.
        // SAFETY: as above; the bin is read by its owner, the calling thread; `ptr` starts a
        // block of the pool.
        if unsafe { crate::pool_core::freed_before(bin, ptr) } {
            return None;
        }
        Some((bin, block))
    }

    /// The body of both fast reallocs: `g` is this allocator's geometry (a constant for the
    /// fast paths' one), `id` its registry id, `key` its fast key (or [`NO_KEY`], when the new block
    /// comes from `malloc`) and `way` the way of the thread cache that holds its heaps.
    ///
    /// # Safety
    /// The registry places `ptr` in this allocator's arenas, of geometry `g`; the block is live
    /// (made by `malloc`, `calloc` or `realloc`), or a bad pointer the checks refuse. `id` is this
    /// allocator's registry id (not 0), `key` its fast key or `NO_KEY`, and `way` is
    /// `ThreadCache::way_of(id)`.
    #[inline(always)]
    unsafe fn realloc_into(
        &self,
        g: &Geometry,
        ptr: *mut u8,
        size: usize,
        id: usize,
        key: u32,
        way: usize,
    ) -> Option<Option<NonNull<u8>>> {
        // SAFETY: the caller's guarantee.
        let (bin, block) = unsafe { self.realloc_target(g, ptr, id, way) }?;
        // SAFETY: a block start of a pool in use (checked), so not null.
        let old = unsafe { NonNull::new_unchecked(ptr) };
        if Self::stays_in(g, size, block) {
            return Some(Some(old));
        }
        // SAFETY: the block passed the checks (above) on this thread, just now.
        Some(unsafe { self.realloc_move_fast(ptr, size, key, bin, block) })
    }

    /// The second step of [`realloc_fast_check`](Self::realloc_fast_check), and the move of both
    /// fast reallocs: the block moves into a new one of `size` bytes (the fast allocation, or
    /// `malloc`), its bytes copied, the old one freed into `bin` (or by `free` if the bin is
    /// full). `None`: no memory for the new block (the old one is untouched).
    ///
    /// # Safety
    /// `ptr` passed the fast checks on this thread (`realloc_fast_check`'s answer for `ptr` and
    /// `size` was `Moves { bin, block }`), with nothing done to the thread's heap since; `key`
    /// is this allocator's fast key or [`NO_KEY`]; `ptr` is not used again on a `Some` answer.
    #[inline(always)]
    pub unsafe fn realloc_move_fast(
        &self,
        ptr: *mut u8,
        size: usize,
        key: u32,
        bin: *mut u8,
        block: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: `key` is this allocator's fast key or `NO_KEY` (the caller's guarantee).
        let new = unsafe { self.malloc_fast(size, key) }.or_else(|| self.malloc(size))?;
        // SAFETY: two distinct live blocks, the old of `block` bytes (a block start, checked, so
        // not null) and the new of at least `size`; the old one is freed once, after the copy:
        // into the bin (the bin of its class in a heap the calling thread owns, checked), or by
        // `free` if the bin is full.
        unsafe {
            ptr::copy_nonoverlapping(ptr, new.as_ptr(), block.min(size));
            if !crate::pool_core::push_bin_at(bin, NonNull::new_unchecked(ptr), block) {
                self.free(ptr);
            }
        }
        Some(new)
    }

    /// [`free_fast`](Self::free_fast) for any geometry, for a pointer the caller already found
    /// in this allocator's arenas (`arena_owner(ptr) == registry_id()`, one registry lookup for
    /// several allocators): into the calling thread's bin if the thread owns the block's heap,
    /// the pointer starts a block of a pool in use, holds no freed mark (without the marks: is
    /// not the bin's top), and the bin has room;
    /// false, having done nothing, otherwise (then call `free_checked`).
    ///
    /// # Safety
    /// `ptr` lies in this allocator's arenas (the registry says so) and is a live block of it,
    /// or a bad pointer the checks refuse; not used after a true answer.
    #[inline]
    pub unsafe fn free_fast_in_arenas(&self, ptr: *mut u8) -> bool {
        let id = self.owner_id().load(Ordering::Relaxed) as usize;
        // SAFETY: the caller's guarantee; the allocator's own geometry, id and way.
        unsafe { self.free_into_bin(self.geometry(), ptr, id, ThreadCache::way_of(id)) }
    }

    /// The body of both fast frees: `g` is this allocator's geometry (a constant for the
    /// fast paths' one, so that the fast path computes positions from immediates), `id` its registry
    /// id and `way` the way of the thread cache that holds its heaps.
    ///
    /// The block goes into the calling thread's own bin of its class, whichever heap it belongs
    /// to: a block of another thread's heap is reused here while it is in this thread's cache,
    /// and goes home when the bin is flushed (`PoolCore::send_home`). The pool's `bin_at` is the
    /// same in every heap.
    ///
    /// # Safety
    /// The registry places `ptr` in this allocator's arenas, of geometry `g`; the block is live,
    /// or a bad pointer the checks refuse; not used after a true answer. `id` is this
    /// allocator's registry id, not 0, and `way` is `ThreadCache::way_of(id)`.
    #[inline(always)]
    unsafe fn free_into_bin(&self, g: &Geometry, ptr: *mut u8, id: usize, way: usize) -> bool {
        let c = threads::cache_if_any();
        if c.is_null() {
            return false;
        }
        // SAFETY: the calling thread's cache, touched only by it.
        let w = unsafe { (*c).ways[way] };
        // A way of this allocator holds a heap that the calling thread owns (a thread gives a
        // heap up when its way changes, and before its cache goes). Ids are `u32`s (registry
        // ids), so their low halves compare as well, and a caller holding the id in the low half
        // of a wider word needs no instruction to clear the rest.
        if w.id as u32 != id as u32 {
            // SAFETY: the caller's guarantee; the thread has no heap of this allocator.
            unsafe { free_home_at_once(self, ptr) };
            return true;
        }
        // SAFETY: the way holds a heap of this allocator (above); the caller's guarantee.
        unsafe { Self::free_into_way(g, ptr, w) }
    }

    /// [`free_into_bin`](Self::free_into_bin) past the way's test: the checks, then the push
    /// into the bin of the block's class in the heap of way `w`; false, having done nothing, if
    /// the checks refuse `ptr` or the bin is full.
    ///
    /// # Safety
    /// `w` is a way of the calling thread's cache that holds a heap of this allocator, of geometry
    /// `g`, which the thread owns; `ptr` lies in this allocator's arenas (or in a reservation
    /// whose chunks are its arenas or zeros) and is a live block of it or a bad pointer.
    #[inline(always)]
    unsafe fn free_into_way(g: &Geometry, ptr: *mut u8, w: Way) -> bool {
        let addr = ptr as usize;
        #[cfg(target_pointer_width = "64")]
        let slot = w.slot;
        let meta = pool_meta(g, addr);
        #[cfg(target_pointer_width = "64")]
        // SAFETY: the arena's metas are initialised (or zero: never taken). The bin's place (or,
        // with 32-bit pointers, the class) is read before the test (a volatile read is not moved
        // past it), so that the load keeps the meta's address in its operand instead of
        // computing it apart.
        let (bin_at, magic, bias) = unsafe {
            (
                ptr::read_volatile(ptr::addr_of!((*meta).bin_at)) as usize,
                (*meta).start_magic,
                (*meta).start_bias,
            )
        };
        // SAFETY: as above.
        #[cfg(not(target_pointer_width = "64"))]
        let (class, magic) = unsafe {
            (
                ptr::read_volatile(ptr::addr_of!((*meta).class)) as usize,
                (*meta).start_magic,
            )
        };
        // The hardened default (see `check`): a pointer that does not start a block of its pool
        // (or lies in an empty pool or one never taken: multiplier 0) goes the long way, which
        // reports it. A pool that passes has a class, so `bin_at` (or `class`) is its bin's.
        // `check::starts_block_below` with the pool's bias (`check::start_bias`): the address
        // times the multiplier plus the bias is the pool offset times the multiplier, compared
        // with the pool's bound (`check::start_limit`, which refuses the tail past the last
        // block and those not carved yet). The bound is atomic (the owner raises it as it
        // carves); its relaxed load is a plain one, which the compare takes from memory.
        #[cfg(target_pointer_width = "64")]
        // SAFETY: as above.
        let starts = (addr as u64).wrapping_mul(magic).wrapping_add(bias)
            < unsafe { (*meta).start_limit.load(crate::sync::Ordering::Relaxed) };
        #[cfg(not(target_pointer_width = "64"))]
        // SAFETY: as above.
        let starts = unsafe { crate::check::starts_carved_block(g, meta, addr, magic) };
        if !starts {
            return false;
        }
        // SAFETY: this thread owns the heap of the way (above), whose core no other reference
        // reaches; a block start of a pool in use of a heap of this allocator, whose bin lies
        // `bin_at` into every heap's slot (the bin of `class` among the core's bins: `w.bins`
        // is the first); `ptr` is not null (null maps to no owner).
        unsafe {
            #[cfg(target_pointer_width = "64")]
            let bin = slot.cast::<u8>().add(bin_at);
            #[cfg(not(target_pointer_width = "64"))]
            let bin = w.bins.add(class * g.bin_stride);
            crate::pool_core::push_bin_at(
                bin,
                NonNull::new_unchecked(ptr),
                (*meta).block_size as usize,
            )
        }
    }
}

/// The test of [`PoolAllocator::free_fast_word`] and [`PoolAllocator::realloc_fast_check_word`]:
/// way 0 of the calling thread's cache if `ptr ^ word ^ its tag` has no bit from
/// `RESERVED_SHIFT` up (`ptr` in the word's reservation, the word on, and the way's id the
/// word's key: the tag is the id in the key's bits, 0 while the way is empty, bit 63 for an id
/// too large for them); `None` otherwise, or for a thread with no cache.
#[inline(always)]
fn way_for_word(ptr: *mut u8, word: u64) -> Option<Way> {
    let c = threads::cache_if_any();
    if c.is_null() {
        return None;
    }
    // SAFETY: the calling thread's cache, touched only by it.
    let w = unsafe { (*c).ways[0] };
    ((ptr as usize as u64 ^ word ^ w.tag) >> crate::RESERVED_SHIFT == 0).then_some(w)
}

/// The fast free of a thread that has no heap of `pool` (one that frees what others made, a
/// consumer): the hardened default's whole check of the pointer (a bad one is reported there and
/// the process aborts), then `PoolAllocator::free_heapless` (the block goes straight home to its
/// pool's remote list, which refuses the block heading it, or, every so many such frees, into a
/// heap the thread takes for them), without the long way's second lookup. An `extern "C"` function, which cannot unwind, so that the fast
/// path's call to it is its last act (a jump: no frame, no register kept on the fast path).
///
/// # Safety
/// `pool` is a live allocator; the registry places `ptr` in its arenas; the block is live, or a
/// bad pointer the check refuses; the calling thread owns no heap of `pool`.
#[cold]
#[inline(never)]
unsafe extern "C" fn free_home_at_once<P: ArenaProvider, L: DomainAllocator>(
    pool: *const PoolAllocator<P, L>,
    ptr: *mut u8,
) {
    // SAFETY: the caller's guarantee.
    let pool = unsafe { &*pool };
    let g = pool.geometry();
    // SAFETY: the registry places `ptr` in the arenas (the caller's guarantee), so it is not null.
    let p = unsafe { NonNull::new_unchecked(ptr) };
    // SAFETY: as above; a bad pointer there is reported and does not return.
    let class = unsafe { crate::routing::checked_class(pool, "free", p) };
    // Marked freed, so that a later free of it is looked for (see `check::FREED_MARK`).
    // SAFETY: a block start of a pool in use (checked), freed now.
    unsafe { crate::check::mark_freed(ptr) };
    let arena = (ptr as usize & !(g.arena_size - 1)) as *const crate::arena::ArenaHeader;
    // SAFETY: a block start of a pool in use (checked), of class `class`, so its arena is live
    // and its heap was written before any of its blocks was handed out; not the calling
    // thread's (it has no heap here).
    unsafe { pool.free_heapless((*arena).slot.cast_mut(), p, Some(class)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    use alloc_core::DomainAllocator;

    use crate::PoolConfig;

    #[test]
    fn a_fast_realloc_resizes_in_place_within_the_class_moves_across_and_refuses_the_rest() {
        static POOL: PoolAllocator = PoolAllocator::with_valid_config(
            PoolConfig::WIDE,
            crate::OsArenas::new(),
            alloc_core::System,
        );
        let pool = &POOL;
        let key = pool.fast_key();
        assert_ne!(key, NO_KEY);
        let p = pool.malloc(40).unwrap();
        // SAFETY: every block below is this pool's and live where it is used; each is freed
        // once (a refused fast realloc does nothing).
        unsafe {
            p.as_ptr().write_bytes(0xab, 40);
            // Within the class (33..=48 bytes): in place.
            assert_eq!(pool.realloc_fast(p.as_ptr(), 48, key), Some(Some(p)));
            // Across it: a new block with the old bytes, the old block in this thread's bin
            // (the next allocation of its class).
            let q = pool.realloc_fast(p.as_ptr(), 200, key).unwrap().unwrap();
            assert_ne!(q, p);
            assert!(
                core::slice::from_raw_parts(q.as_ptr(), 40)
                    .iter()
                    .all(|&b| b == 0xab)
            );
            assert_eq!(pool.malloc_fast(40, key), Some(p));
            // Refused, untouched: another key, a pointer inside a block, a block freed a moment
            // ago (its freed mark: the long way reports it), a large block, null, a foreign one.
            assert_eq!(pool.realloc_fast(q.as_ptr(), 300, NO_KEY), None);
            assert_eq!(pool.realloc_fast(q.as_ptr().add(16), 300, key), None);
            pool.free(p.as_ptr());
            assert_eq!(pool.realloc_fast(p.as_ptr(), 300, key), None);
            let big = pool.malloc(1100).unwrap();
            assert_eq!(pool.realloc_fast(big.as_ptr(), 1200, key), None);
            assert_eq!(pool.realloc_fast(ptr::null_mut(), 700, key), None);
            let foreign = alloc_core::System.malloc(64).unwrap();
            assert_eq!(pool.realloc_fast(foreign.as_ptr(), 100, key), None);
            alloc_core::System.free(foreign.as_ptr());
            pool.free(big.as_ptr());
            pool.free(q.as_ptr());
        }
    }

    #[test]
    fn the_word_s_free_takes_the_pool_s_blocks_on_a_thread_with_its_heap_alone() {
        use crate::{FREE_WORD_OFF, ReservedArenas, SwappableArenas, free_word};
        use std::thread;
        static RESERVED: ReservedArenas = ReservedArenas::new();
        static POOL: PoolAllocator<SwappableArenas> = PoolAllocator::with_valid_config(
            PoolConfig::WIDE,
            SwappableArenas::new(&RESERVED),
            alloc_core::System,
        );
        static OTHER: PoolAllocator = PoolAllocator::with_valid_config(
            PoolConfig::WIDE,
            crate::OsArenas::new(),
            alloc_core::System,
        );
        let key = POOL.fast_key();
        let p = POOL.malloc(64).unwrap().as_ptr();
        let word = match RESERVED.range_base() {
            Some(base) => free_word(base, key),
            None => FREE_WORD_OFF,
        };
        if word == FREE_WORD_OFF {
            // SAFETY: a live block of the pool, freed once.
            unsafe { POOL.free(p) };
            return std::eprintln!("no reservation here, or the key has no tag: skipped");
        }
        assert!(RESERVED.contains(p));
        let addr = p as usize;
        // SAFETY: `p` is a live block of the pool until its fast free below answers `Done`; every
        // refused or elsewhere answer did nothing; the foreign block is glibc's, freed by it.
        unsafe {
            // Inside a block: the checks refuse it (the long way reports it).
            assert_eq!(POOL.free_fast_word(p.add(16), word), WordFree::Refused);
            // The word off, or a foreign pointer: not for this path.
            assert_eq!(POOL.free_fast_word(p, FREE_WORD_OFF), WordFree::Elsewhere);
            let foreign = alloc_core::System.malloc(64).unwrap().as_ptr();
            assert_eq!(POOL.free_fast_word(foreign, word), WordFree::Elsewhere);
            alloc_core::System.free(foreign);
            // A thread with no heap of the pool (an empty way 0), and one whose way 0 holds
            // another pool's heap: the registry's way, which sends the block home.
            thread::spawn(move || {
                assert_eq!(
                    POOL.free_fast_word(addr as *mut u8, word),
                    WordFree::Elsewhere
                );
            })
            .join()
            .unwrap();
            thread::spawn(move || {
                assert_ne!(OTHER.fast_key(), NO_KEY);
                let q = OTHER.malloc(64).unwrap();
                assert_eq!(
                    POOL.free_fast_word(addr as *mut u8, word),
                    WordFree::Elsewhere
                );
                OTHER.free(q.as_ptr());
            })
            .join()
            .unwrap();
            // The pool's block on its thread: into the bin, whose next block it is.
            assert_eq!(POOL.free_fast_word(p, word), WordFree::Done);
            assert_eq!(POOL.malloc(64).map(NonNull::as_ptr), Some(p));
            // Freed again after a free: its freed mark sends it the long way.
            POOL.free(p);
            assert_eq!(POOL.free_fast_word(p, word), WordFree::Refused);
            // In place within its class, through the same test; elsewhere from another thread.
            let r = POOL.malloc(40).unwrap().as_ptr();
            assert_eq!(
                POOL.realloc_fast_check_word(r, 48, word),
                Some(FastRealloc::Stays)
            );
            assert!(matches!(
                POOL.realloc_fast_check_word(r, 200, word),
                Some(FastRealloc::Moves { .. })
            ));
            assert_eq!(POOL.realloc_fast_check_word(r, 48, FREE_WORD_OFF), None);
            let r_addr = r as usize;
            thread::spawn(move || {
                assert_eq!(
                    POOL.realloc_fast_check_word(r_addr as *mut u8, 48, word),
                    None
                );
            })
            .join()
            .unwrap();
            POOL.free(r);
        }
    }

    #[test]
    fn realloc_of_a_pool_of_another_geometry_resizes_by_the_bin_too() {
        use crate::{OsArenas, PoolConfig};
        let config = PoolConfig {
            spacing: 1 << 10,
            threshold: 64 << 10,
            pool_size: 256 << 10,
            arena_size: 16 << 20,
            ..PoolConfig::DEFAULT
        };
        let pool = PoolAllocator::with_config(config, OsArenas::new(), alloc_core::System).unwrap();
        let p = pool.malloc(9000).unwrap();
        // SAFETY: live blocks of this pool, each freed once; `realloc` takes the old block.
        unsafe {
            p.as_ptr().write_bytes(0x5a, 9000);
            // Within the class (8193..=9216 bytes): in place, through the routing's fast body.
            assert_eq!(pool.realloc_in_arenas(p.as_ptr(), 9100), Some(Some(p)));
            assert_eq!(pool.realloc(p.as_ptr(), 9216), Some(p));
            // Across: moved, the bytes kept, the old block in this thread's bin.
            let q = pool.realloc(p.as_ptr(), 20_000).unwrap();
            assert_ne!(q, p);
            assert!(
                core::slice::from_raw_parts(q.as_ptr(), 9000)
                    .iter()
                    .all(|&b| b == 0x5a)
            );
            assert_eq!(pool.malloc(9000), Some(p));
            // A pointer inside a block is refused by the fast body (the long way reports it).
            assert_eq!(pool.realloc_in_arenas(q.as_ptr().add(16), 30_000), None);
            pool.free(q.as_ptr());
            pool.free(p.as_ptr());
        }
    }

    #[test]
    fn a_refill_serves_small_sizes_from_the_threads_heap_and_refuses_the_rest() {
        static POOL: PoolAllocator = PoolAllocator::with_valid_config(
            PoolConfig::WIDE,
            crate::OsArenas::new(),
            alloc_core::System,
        );
        let pool = &POOL;
        let key = pool.fast_key();
        // SAFETY: the key is the pool's (or NO_KEY); every block is freed once.
        unsafe {
            // No heap on this thread yet: the long way makes it.
            assert_eq!(pool.malloc_refill(256, key), None);
            let first = pool.malloc(16).unwrap();
            // The bin of a class not used yet is empty: the refill takes its block from the pools.
            assert_eq!(pool.malloc_fast(256, key), None);
            let p = pool.malloc_refill(256, key).unwrap();
            assert_eq!(pool.usable_size(p), Some(256));
            assert_eq!(pool.malloc_refill(256, NO_KEY), None);
            assert_eq!(pool.malloc_refill(0, key), None);
            assert_eq!(pool.malloc_refill(1025, key), None);
            pool.free(p.as_ptr());
            pool.free(first.as_ptr());
        }
    }

    #[test]
    fn a_sized_fast_free_takes_small_blocks_of_any_heap_and_refuses_the_rest() {
        static POOL: PoolAllocator = PoolAllocator::with_valid_config(
            PoolConfig::WIDE,
            crate::OsArenas::new(),
            alloc_core::System,
        );
        let pool = &POOL;
        std::boxed::Box::leak(std::boxed::Box::new(PoolAllocator::new()));
        let key = pool.fast_key();
        assert_ne!(key, NO_KEY, "a wide pool whose id maps to way 0 has a key");
        let p = pool.malloc(64).unwrap();
        // SAFETY: every block below is this pool's, made for the size it is freed with, and freed
        // once (a refused fast free does nothing); the key is the pool's.
        unsafe {
            // Into this thread's bin, whence the next allocation of the class takes it back.
            assert!(pool.free_sized_fast(p, 64, key));
            assert_eq!(pool.malloc_fast(64, key), Some(p));
            // Not with another key, nor for a size above the threshold (the block is untouched:
            // freed the long way after each refusal).
            assert!(!pool.free_sized_fast(p, 64, NO_KEY));
            let big = pool.malloc(1100).unwrap();
            assert!(!pool.free_sized_fast(big, 1100, key));
            pool.free_sized(big, 1100);
            // Blocks above 512 bytes up to the threshold (1 KiB) take the same path.
            let mid = pool.malloc(600).unwrap();
            assert!(pool.free_sized_fast(mid, 600, key));
            assert_eq!(pool.malloc_fast(600, key), Some(mid));
            pool.free_sized(mid, 600);
            // A block of another thread's heap joins this thread's bin too, and is reused here.
            let q = std::thread::spawn(move || pool.malloc(64).unwrap().as_ptr() as usize)
                .join()
                .unwrap();
            let q = NonNull::new(q as *mut u8).unwrap();
            assert!(pool.free_sized_fast(q, 64, key));
            assert_eq!(pool.malloc_fast(64, key), Some(q));
            pool.free_sized(q, 64);
            pool.free_sized(p, 64);
        }
    }
}
