//! [`PoolAllocator`]: the pool allocator for any number of threads, a heap per thread.
//!
//! pymalloc relies on the GIL; this front shards instead (mimalloc's free-list sharding, at the
//! granularity of pymalloc's heaps; see `docs/ARCHITECTURE.md`):
//!
//! * Each thread that allocates gets a heap of its own: a `PoolCore` (bins, used pools, arenas)
//!   that only it touches, found through its thread cache (`threads`). Allocation and a free by the
//!   owner run exactly the single-owner code of [`Heap`](crate::Heap): no lock, no atomic
//!   read-modify-write.
//! * A free puts the block into the calling thread's own bin of its class, whichever thread's
//!   heap made it, so that the thread reuses it while it is in its cache (jemalloc's tcache
//!   does the same). A heap's arenas carry a pointer to the heap: when a bin is flushed, the
//!   blocks of other heaps go home, each pushed onto its pool's remote list and, the first time,
//!   the pool onto the heap's notification stack (`remote`); the owner takes them back when a
//!   size class runs out of pools, before it takes a new pool, and on `trim`. A thread with no
//!   heap here (or a secure heap, whose bins hold nothing) pushes such a block home at once,
//!   until its 64th such free takes it a heap (`free_heapless`; a secure pool gives none).
//! * A thread that ends abandons its heap whole (pools, bins, live blocks); the next thread that
//!   needs a heap adopts it. A block sent home to an abandoned heap is collected at once by the
//!   sending thread, which takes the heap for a moment. So thread churn reuses heaps instead of
//!   mapping new arenas, and nothing is stranded in a heap nobody owns.

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use alloc_core::{ArenaProvider, DomainAllocator, Ownership};

use crate::pool_core::PoolCore;
use crate::registry;
use crate::remote::{self, DEAD, PushList};
use crate::routing::{DEFAULT_GEOMETRY, Front};
use crate::size_class::{ConfigError, Geometry, PoolConfig};
use crate::stats::PoolStats;
use crate::sync::{AtomicU32, Ordering};
use crate::threads::{self, HeapSlot, ProviderRef, SLOT_BYTES, SlotHeader, ThreadCache};

/// A thread with no heap of an allocator sends this many of its frees of that allocator's blocks
/// straight home, then takes a heap for the next (see `PoolAllocator::free_heapless`).
const HEAPLESS_FREES_BEFORE_HEAP: u32 = 64;

/// The pymalloc-style pool allocator, shareable between threads: a heap per thread.
///
/// Small requests (at most `threshold` bytes, 512 by default) are served from 16-byte-spaced size
/// classes in 16 KiB pools inside 1 MiB arenas from the provider `P`; larger ones go to `L`.
/// Each thread allocates from a heap of its own, without locks; a block freed by another thread
/// goes back to its heap through a lock-free list (see the module documentation of the crate).
/// For one owner at a time, [`Heap`](crate::Heap) is the same allocator with no thread machinery.
///
/// ```
/// use alloc_arena::PoolAllocator;
/// use alloc_core::{AsGlobalAlloc, DomainAllocator, Ownership};
///
/// let pool = PoolAllocator::new();
/// let small = pool.malloc(100).unwrap();
/// let large = pool.malloc(100_000).unwrap(); // above the threshold: the C library
/// assert_eq!(pool.owns(small.as_ptr()), Ownership::Owned);
/// // SAFETY: both blocks are live and freed once; free needs no size.
/// unsafe {
///     pool.free(small.as_ptr());
///     pool.free(large.as_ptr());
/// }
///
/// // As the program's allocator:
/// #[global_allocator]
/// static GLOBAL: AsGlobalAlloc<PoolAllocator> = AsGlobalAlloc::new(PoolAllocator::new());
/// ```
pub struct PoolAllocator<
    P: ArenaProvider = crate::DefaultArenas,
    L: DomainAllocator = crate::DefaultLarge,
> {
    geo: Geometry,
    /// The registry id of this allocator's arenas, and the key of its heaps in thread caches
    /// (0 until the first heap is made).
    id: AtomicU32,
    /// Every heap made for this allocator (they are never unlinked while it lives).
    heaps: PushList<SlotHeader>,
    provider: P,
    large: L,
}

// SAFETY: each heap's core is touched only by the thread owning the heap (the `Owner` protocol);
// everything else shared is atomic. `P` is used from several threads by reference (the heaps call
// it), so it must be `Sync`; `L` likewise.
unsafe impl<P: ArenaProvider + Sync, L: DomainAllocator + Sync> Sync for PoolAllocator<P, L> {}
// SAFETY: the heaps are owned by the value (their slots return to the store on drop); moving it
// moves that ownership.
unsafe impl<P: ArenaProvider + Send, L: DomainAllocator + Send> Send for PoolAllocator<P, L> {}

#[cfg(target_pointer_width = "64")]
impl PoolAllocator {
    /// A pool allocator with pymalloc's parameters over OS arenas, passing large requests to the C
    /// library. `const`, so it can initialise a `static` (`#[global_allocator]`); nothing is mapped
    /// until the first allocation.
    pub const fn new() -> Self {
        PoolAllocator::with_parts(crate::OsArenas::new(), alloc_core::System)
    }
}

#[cfg(target_pointer_width = "64")]
impl Default for PoolAllocator {
    fn default() -> Self {
        PoolAllocator::new()
    }
}

impl<P: ArenaProvider, L: DomainAllocator> PoolAllocator<P, L> {
    /// A pool allocator with pymalloc's parameters over `provider`, passing large requests to `large`.
    pub const fn with_parts(provider: P, large: L) -> Self {
        Self::from_geometry(DEFAULT_GEOMETRY, provider, large)
    }

    const fn from_geometry(geo: Geometry, provider: P, large: L) -> Self {
        PoolAllocator {
            geo,
            id: AtomicU32::new(0),
            heaps: PushList::new(),
            provider,
            large,
        }
    }

    /// A pool allocator with the parameters of `config`, in a `const` context (a `static`): an
    /// invalid configuration is a compile-time error there (and a panic elsewhere); use
    /// [`with_config`](Self::with_config) for a configuration known only at run time.
    ///
    /// ```
    /// use alloc_arena::{OsArenas, PoolAllocator, PoolConfig};
    /// use alloc_core::System;
    ///
    /// const MEDIUM: PoolConfig = PoolConfig {
    ///     spacing: 128,
    ///     threshold: 8 << 10,
    ///     pool_size: 64 << 10,
    ///     arena_size: 4 << 20,
    ///     ..PoolConfig::DEFAULT
    /// };
    /// static POOL: PoolAllocator<OsArenas, System> =
    ///     PoolAllocator::with_valid_config(MEDIUM, OsArenas::new(), System);
    /// ```
    pub const fn with_valid_config(config: PoolConfig, provider: P, large: L) -> Self {
        match Geometry::new(config) {
            Ok(g) => Self::from_geometry(g, provider, large),
            Err(_) => panic!("an invalid PoolConfig"),
        }
    }

    /// A pool allocator with the parameters of `config`, or the reason they cannot work.
    ///
    /// ```
    /// use alloc_arena::{OsArenas, PoolAllocator, PoolConfig};
    /// use alloc_core::System;
    ///
    /// let config = PoolConfig { threshold: 1024, pool_size: 64 << 10, ..PoolConfig::DEFAULT };
    /// let pool = PoolAllocator::with_config(config, OsArenas::new(), System).unwrap();
    /// ```
    pub fn with_config(config: PoolConfig, provider: P, large: L) -> Result<Self, ConfigError> {
        Ok(Self::from_geometry(Geometry::new(config)?, provider, large))
    }

    /// The large-block allocator.
    pub fn large(&self) -> &L {
        &self.large
    }

    /// Runs `f` on the arena provider.
    pub fn with_provider<R>(&self, f: impl FnOnce(&P) -> R) -> R {
        f(&self.provider)
    }

    /// This allocator's id, assigned on first use: one that does not map to way 0 of the thread
    /// cache, which is kept for the allocators with a fast-path key (`fast_key`), so that no
    /// other allocator evicts the standard pool's heap from it.
    #[cold]
    fn assign_id(&self) -> u32 {
        let fresh = loop {
            let id = registry::new_owner_id();
            if ThreadCache::way_of(id as usize) != 0 {
                break id;
            }
        };
        registry::install_id(&self.id, fresh)
    }

    /// This allocator's id, assigned now if it has none, from the ids that map to way 0 of the
    /// thread cache (see `fast_key`).
    #[cold]
    pub(crate) fn assign_id_for_way_zero(&self) -> u32 {
        let fresh = loop {
            let id = registry::new_owner_id();
            if ThreadCache::way_of(id as usize) == 0 {
                break id;
            }
        };
        registry::install_id(&self.id, fresh)
    }

    /// The core of `slot`, with the provider pointer refreshed (the allocator may have moved).
    ///
    /// # Safety
    /// The calling thread owns `slot` (or holds it for a collection), and no other reference to
    /// its core is alive.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    unsafe fn core_of(&self, slot: *mut SlotHeader) -> &mut PoolCore<ProviderRef<P>> {
        // SAFETY: the caller's guarantee.
        let core = unsafe { self.core_unrefreshed(slot) };
        core.provider_mut().0 = &self.provider;
        core
    }

    /// The core of `slot` without the provider refresh: only for what touches no provider (the
    /// bins).
    ///
    /// # Safety
    /// As for `core_of`.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn core_unrefreshed(
        &self,
        slot: *mut SlotHeader,
    ) -> &mut PoolCore<ProviderRef<P>> {
        // SAFETY: a slot of this allocator holds a `HeapSlot<P>` (made by `new_heap`), and the
        // caller owns it, so this is the only reference to the core.
        unsafe { &mut *(*slot.cast::<HeapSlot<P>>()).core.get() }
    }

    /// The way of the calling thread's cache that holds its heap of this allocator (a heap the
    /// thread owns, with its bins: ways are filled whole); `None` if the thread has no cache or
    /// its way holds no heap of this allocator. The fast paths' one test.
    #[inline(always)]
    pub(crate) fn my_way(&self) -> Option<threads::Way> {
        let c = threads::cache_if_any();
        if c.is_null() {
            return None;
        }
        let id = self.id.load(Ordering::Relaxed) as usize;
        // SAFETY: the calling thread's cache, touched only by it.
        let w = unsafe { (*c).ways[ThreadCache::way_of(id)] };
        (w.id == id && id != 0).then_some(w)
    }

    /// The heap of this allocator in the calling thread's cache ([`my_way`](Self::my_way)'s);
    /// null if there is none.
    #[inline(always)]
    fn current_heap(&self) -> *mut SlotHeader {
        self.my_way().map_or(ptr::null_mut(), |w| w.slot)
    }

    #[cold]
    #[inline(never)]
    fn my_heap_slow(&self) -> *mut SlotHeader {
        let c = threads::cache_fast();
        if c.is_null() {
            return ptr::null_mut();
        }
        let mut id = self.id.load(Ordering::Relaxed);
        if id == 0 {
            id = self.assign_id();
        }
        let id = id as usize;
        // SAFETY: the calling thread's cache, touched only by it.
        let cache = unsafe { &mut *c };
        let w = cache.ways[ThreadCache::way_of(id)];
        if w.id == id && !w.slot.is_null() {
            return w.slot;
        }
        let token = ThreadCache::token(c);
        let slot = match self.adopt(token) {
            Some(slot) => {
                // SAFETY: the calling thread owns the heap it just adopted; no other reference
                // to the core is alive. The working set its last owner learned is not this
                // thread's.
                unsafe { self.core_of(slot) }.unlearn();
                slot
            }
            None => self.new_heap(id, token),
        };
        if !slot.is_null() {
            // SAFETY: the calling thread owns the heap it just adopted or made; no other
            // reference to the core is alive.
            let bins = unsafe { self.core_unrefreshed(slot) }.bins_base();
            cache.insert(id, slot, bins);
        }
        slot
    }

    /// Takes an abandoned heap of this allocator, if there is one.
    fn adopt(&self, token: usize) -> Option<*mut SlotHeader> {
        let mut h = self.heaps.head();
        while !h.is_null() {
            // SAFETY: heaps on the list are valid slots while the allocator lives.
            let hdr = unsafe { &*h };
            if hdr.owner.try_claim(token) {
                return Some(h);
            }
            // Acquire: pairs with the Release push that published the next heap.
            h = hdr.next.load(Ordering::Acquire);
        }
        None
    }

    /// Makes a heap owned by `token`; null if the OS refuses the memory.
    fn new_heap(&self, id: usize, token: usize) -> *mut SlotHeader {
        const {
            assert!(core::mem::size_of::<HeapSlot<P>>() <= SLOT_BYTES);
            assert!(core::mem::align_of::<HeapSlot<P>>() <= 4096);
        };
        let (slot, zeroed) = threads::take_slot_memory();
        if slot.is_null() {
            return slot;
        }
        // SAFETY: the slot memory is ours (fresh or recycled: a recycled header may still be read
        // by a thread with a stale cache way, so its atomics are written atomically; the core is
        // only ever touched by owners, and nobody owns the slot now).
        unsafe {
            let hdr = &*slot;
            hdr.owner.set_fresh(token);
            hdr.instance.store(id, Ordering::Release);
            // A recycled slot's flag may be its last heap's.
            hdr.learned.store(0, Ordering::Relaxed);
            let heap = slot.cast::<HeapSlot<P>>();
            let core = ptr::addr_of_mut!((*heap).core);
            // In place, leaving a fresh slot's bins untouched (see `PoolCore::init_in_slot`);
            // `UnsafeCell<T>` has `T`'s layout.
            PoolCore::init_in_slot(
                core.cast::<PoolCore<ProviderRef<P>>>(),
                self.geo,
                ProviderRef(&self.provider),
                zeroed,
            );
            (*(*core).get()).set_slot(slot);
            self.heaps.push(slot, |n, next| {
                (*n).next.store(next, Ordering::Relaxed);
            });
        }
        slot
    }

    /// Takes back the blocks freed into an abandoned heap, and the blocks its bins hold, then
    /// abandons it again; repeats while notifications arrive meanwhile. Returns at once if another
    /// thread owns the heap (it will see the notifications). Returns whether the flush of its bins
    /// sent blocks home to a heap it found unowned (`PoolCore::take_orphans`): the caller then
    /// collects those (`collect_all_orphans`).
    fn collect(&self, slot: *mut SlotHeader, full: bool) -> bool {
        let marker = 0u8;
        // A token unique to this call: the address of a local of the running thread.
        let token = ptr::addr_of!(marker) as usize;
        // SAFETY: heaps of a live allocator are valid slots.
        let hdr = unsafe { &*slot };
        let mut orphans = false;
        let mut drain = || {
            // SAFETY: run with the heap claimed, so this is the only reference to the core.
            let core = unsafe { self.core_of(slot) };
            if full {
                core.trim();
            } else {
                // What its owner learned to keep is nobody's working set now.
                core.unlearn();
                while core.drain_remote() {}
                core.flush_bins();
            }
            // Its bins' blocks of other heaps went home; some of those may be unowned too.
            orphans |= !core.take_orphans().0.is_null();
        };
        while let Some(true) = remote::run_unowned(&hdr.owner, &hdr.notify, token, &mut drain) {}
        orphans
    }

    /// `alloc_class_fast` when the bin cannot serve: makes or adopts the thread's heap if it has
    /// none, then takes a block from the pools.
    #[cold]
    #[inline(never)]
    fn alloc_class_slow(&self, class: usize) -> Option<NonNull<u8>> {
        let slot = self.current_heap();
        if !slot.is_null() {
            // `alloc_class_fast` found this same way (its test is this one, and nothing changed
            // the thread's cache since) and the bin of `class` empty: straight to the pools,
            // with no second look at the bin.
            // SAFETY: the calling thread owns the heap of its way; no other reference to the
            // core is alive (the routing does not re-enter, and `P` / `L` must not call back
            // into this allocator); `class` is the front's, below its class count.
            return unsafe { self.alloc_from_pools_fast(slot, class) };
        }
        self.alloc_class_no_heap(class)
    }

    /// `alloc_class_slow` for a thread whose way holds no heap of this allocator: makes or
    /// adopts one (none if the OS refuses the memory), then serves the block from it. Apart, so
    /// that the common slow path keeps a small frame.
    #[cold]
    #[inline(never)]
    fn alloc_class_no_heap(&self, class: usize) -> Option<NonNull<u8>> {
        let slot = self.my_heap_slow();
        if slot.is_null() {
            return None;
        }
        // SAFETY: the calling thread owns the heap just made or adopted; no other reference to
        // the core is alive (as in `alloc_class_slow`); `class` is below the class count.
        unsafe { self.alloc_in_heap(slot, class) }
    }

    /// A block of `class` from heap `slot`: its bin, else its pools (the bin refilled), then
    /// the heap settled (orphans collected, learned memory swept).
    ///
    /// # Safety
    /// `slot` is a heap of this allocator that the calling thread owns, with no other reference
    /// to its core alive; `class` is below the geometry's class count.
    #[inline]
    pub(crate) unsafe fn alloc_in_heap(
        &self,
        slot: *mut SlotHeader,
        class: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: the caller's guarantee (the routing does not re-enter, and `P` / `L` must not
        // call back into this allocator).
        if let Some(p) = unsafe { self.core_unrefreshed(slot) }.pop_bin(class) {
            return Some(p);
        }
        // SAFETY: the caller's guarantee.
        unsafe { self.alloc_from_pools_fast(slot, class) }
    }

    /// A block of `class` from the pools of heap `slot`, for a caller that found its bin empty
    /// (the bin is not looked at again; were it not empty, the block would still be right, only
    /// not the bin's), then the heap settled.
    ///
    /// # Safety
    /// As for [`alloc_in_heap`](Self::alloc_in_heap).
    #[inline(always)]
    pub(crate) unsafe fn alloc_from_pools_fast(
        &self,
        slot: *mut SlotHeader,
        class: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: the caller's guarantee (the pop touches no provider: no refresh needed).
        if let Some(p) = unsafe { self.core_unrefreshed(slot).pop_pool_list(class) } {
            return Some(p);
        }
        // SAFETY: the caller's guarantee.
        unsafe { self.alloc_from_pools_slow(slot, class) }
    }

    /// `alloc_from_pools_fast` past the quick pop of a free list (`PoolCore::pop_pool_list`): the
    /// pools' whole path, the bin armed and refilled where the pool carves, then the heap
    /// settled.
    ///
    /// # Safety
    /// As for [`alloc_in_heap`](Self::alloc_in_heap).
    #[cold]
    #[inline(never)]
    unsafe fn alloc_from_pools_slow(
        &self,
        slot: *mut SlotHeader,
        class: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: the caller's guarantee.
        let core = unsafe { self.core_of(slot) };
        let p = core.alloc_from_pools(class, &self.id);
        self.settle_fast(slot, false);
        p
    }

    /// Frees a block of a heap the calling thread does not own.
    ///
    /// # Safety
    /// `ptr` is a live block of the pools of heap `slot` of this allocator.
    #[cold]
    pub(crate) unsafe fn free_remote(&self, slot: *mut SlotHeader, ptr: NonNull<u8>) {
        let meta = crate::routing::pool_meta(&self.geo, ptr.as_ptr() as usize);
        // SAFETY: the block is live (so its pool and heap are), and from now on it is free:
        // nobody else writes it; the pool cannot be recycled while the block is not back. A
        // double free of a block gone home at once is reported by `push_one_home`.
        unsafe {
            crate::instrument::block_freed(ptr.as_ptr(), (*meta).block_size as usize);
            if crate::pool_core::push_one_home(slot, meta, ptr.as_ptr())
                && self.collect(slot, false)
            {
                self.collect_all_orphans(false);
            }
        }
    }

    /// Frees a block into a heap the calling thread owns.
    ///
    /// # Safety
    /// The calling thread owns `slot`, and `ptr` is a live block of it (of `class`, if given),
    /// or, with `class` given, a live block of class `class` of another heap of this allocator
    /// (it joins the bin: see `PoolCore::free_in_class`).
    #[inline(always)]
    unsafe fn free_local_fast(
        &self,
        slot: *mut SlotHeader,
        ptr: NonNull<u8>,
        class: Option<usize>,
    ) {
        if let Some(k) = class {
            // SAFETY: the caller's guarantee: our heap, a live block of class `k`, below the
            // class count; its bins lie `bin_stride` apart in this allocator's geometry, the
            // core's (read from the allocator, whose line the caller has read already).
            if unsafe {
                let bins = self.core_unrefreshed(slot).bins_base();
                crate::pool_core::push_bin_in(
                    bins,
                    k,
                    self.geo.bin_stride,
                    ptr,
                    self.geo.block_size(k),
                )
            } {
                return;
            }
        }
        // SAFETY: the caller's guarantee.
        unsafe { self.free_local_slow(slot, ptr, class) }
    }

    /// `free_local_fast` when the bin has no room or the class is not known: through the pools.
    ///
    /// # Safety
    /// As for `free_local_fast`.
    #[cold]
    #[inline(never)]
    unsafe fn free_local_slow(
        &self,
        slot: *mut SlotHeader,
        ptr: NonNull<u8>,
        class: Option<usize>,
    ) {
        // SAFETY: the caller's guarantee: our heap, no other reference to its core alive.
        let core = unsafe { self.core_of(slot) };
        match class {
            // SAFETY: the caller's guarantee.
            Some(k) => unsafe { core.free_in_class(ptr, k) },
            // SAFETY: the caller's guarantee.
            None => unsafe { core.free(ptr) },
        }
        self.settle_fast(slot, false);
    }

    /// A free whose heap is not the calling thread's most recent one: another heap of ours in its
    /// cache, or a remote free.
    ///
    /// # Safety
    /// `ptr` is a live block of heap `slot` of this allocator; `c` is the calling thread's cache
    /// or null.
    #[cold]
    #[inline(never)]
    unsafe fn free_block_slow(
        &self,
        slot: *mut SlotHeader,
        c: *mut ThreadCache,
        ptr: NonNull<u8>,
        class: Option<usize>,
    ) {
        if !c.is_null() {
            let id = self.id.load(Ordering::Relaxed) as usize;
            // SAFETY: the calling thread's cache.
            let ways = unsafe { &(*c).ways };
            if ways.iter().any(|w| w.slot == slot && w.id == id) {
                // SAFETY: a current way of this allocator: the heap is ours.
                unsafe { self.free_local_fast(slot, ptr, class) };
                return;
            }
            let w = ways[ThreadCache::way_of(id)];
            if w.id == id && id != 0 {
                // SAFETY: the heap of the current way is ours; the block is another heap's
                // (above), live (the caller's guarantee).
                unsafe { self.free_into_my_bin(w.slot, ptr, class) };
                return;
            }
        }
        // SAFETY: the caller's guarantee; the calling thread has no heap of this allocator, so
        // the block's heap is another thread's, or nobody's.
        unsafe { self.free_heapless(slot, ptr, class) }
    }

    /// A free by a thread that has no heap of this allocator (one that frees what others made: a
    /// consumer). Its first frees go straight home, one compare-exchange each
    /// ([`free_remote`](Self::free_remote)), so that a thread freeing a few blocks takes no
    /// heap. Every [`HEAPLESS_FREES_BEFORE_HEAP`]th such free gets the thread a heap (adopted, or
    /// new), as its first allocation would: from then on its frees join its bins and go home a
    /// run of one pool at a time when a bin overflows (`PoolCore::flush_bin`), as every
    /// allocating thread's do (not with a secure geometry, whose bins hold nothing). The price
    /// is the allocating threads': blocks waiting in the bins of such a heap when its thread
    /// ends stay out of their pools until another thread adopts the heap (at most a bin's worth
    /// per class).
    ///
    /// # Safety
    /// `ptr` is a live block of heap `slot` of this allocator (of `class`, if given), which the
    /// calling thread does not own; the calling thread has no heap of this allocator.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn free_heapless(
        &self,
        slot: *mut SlotHeader,
        ptr: NonNull<u8>,
        class: Option<usize>,
    ) {
        let c = threads::cache_if_any();
        // A secure heap's bins hold nothing: a heap would send each block home all the same.
        if !c.is_null() && !self.geo.secure {
            // SAFETY: the calling thread's cache, touched only by it.
            let n = unsafe { &mut (*c).heapless_frees };
            *n += 1;
            if *n >= HEAPLESS_FREES_BEFORE_HEAP {
                *n = 0;
                let mine = self.my_heap_slow();
                if mine == slot {
                    // SAFETY: the calling thread just adopted the block's own heap.
                    unsafe { self.free_local_fast(mine, ptr, class) };
                    return;
                }
                if !mine.is_null() {
                    // SAFETY: the calling thread owns `mine`, a heap of this allocator; the
                    // block is a live block of another of its heaps (of `class`, if given).
                    unsafe { self.free_into_my_bin(mine, ptr, class) };
                    return;
                }
            }
        }
        // SAFETY: the caller's guarantee.
        unsafe { self.free_remote(slot, ptr) }
    }

    /// A free of another heap's block into the calling thread's own heap `mine`: the block
    /// joins the bin of its class there, to be reused by this thread while it is in its cache,
    /// and goes home when the bin is flushed (`PoolCore::free_in_class`).
    ///
    /// # Safety
    /// The calling thread owns `mine`, a heap of this allocator; `ptr` is a live block of
    /// another heap of this allocator (of `class`, if given).
    unsafe fn free_into_my_bin(
        &self,
        mine: *mut SlotHeader,
        ptr: NonNull<u8>,
        class: Option<usize>,
    ) {
        let class = match class {
            Some(k) => k,
            // SAFETY: a live block's pool has a class (the caller's guarantee).
            None => unsafe {
                (*crate::routing::pool_meta(&self.geo, ptr.as_ptr() as usize)).class as usize
            },
        };
        // SAFETY: the caller's guarantee: our heap, a live block of class `class` of the same
        // allocator.
        unsafe { self.free_local_fast(mine, ptr, Some(class)) }
    }

    /// Collects the heaps that the core of `mine` found unowned while it sent blocks home (see
    /// `PoolCore::take_orphans`): with more than one, every unowned heap with notifications
    /// waiting, until none is left; with `full`, each is trimmed (see `collect`).
    ///
    /// Called after every call into a core that can flush a bin. The calling thread owns `mine`
    /// (or holds it claimed), a heap of this allocator.
    #[inline(always)]
    fn settle_fast(&self, mine: *mut SlotHeader, full: bool) {
        // SAFETY: the caller's guarantee.
        if unsafe { self.core_unrefreshed(mine) }.needs_settling() {
            self.settle_slow(mine, full);
        }
    }

    /// `settle_fast` when the core found an unowned heap or is due a sweep.
    #[cold]
    #[inline(never)]
    fn settle_slow(&self, mine: *mut SlotHeader, full: bool) {
        // SAFETY: the caller's guarantee.
        let core = unsafe { self.core_unrefreshed(mine) };
        let (orphan, more) = core.take_orphans();
        if core.take_sweep() {
            self.sweep_learned(full);
        }
        if orphan.is_null() {
            return;
        }
        if self.collect(orphan.cast_mut(), full) || more {
            self.collect_all_orphans(full);
        }
    }

    /// Collects every heap nobody owns that keeps memory its ended owner learned to keep (see
    /// `PoolCore::learn_regrowth`): collecting it forgets that (`PoolCore::unlearn`) and gives
    /// back at once what is past what any heap keeps. Run now and then by a running thread (when
    /// its heap maps an arena, or purges by time), so that the heaps of threads that ended do not
    /// keep their working sets until another thread adopts them.
    #[cold]
    fn sweep_learned(&self, full: bool) {
        let mut orphans = false;
        let mut h = self.heaps.head();
        while !h.is_null() {
            // SAFETY: heaps on the list are valid slots while the allocator lives.
            let hdr = unsafe { &*h };
            if hdr.owner.is_unowned() && hdr.learned.load(Ordering::Relaxed) != 0 {
                orphans |= self.collect(h, full);
            }
            h = hdr.next.load(Ordering::Acquire);
        }
        if orphans {
            self.collect_all_orphans(full);
        }
    }

    /// Collects every heap nobody owns whose notifications wait, until a round finds none: for
    /// the rare case of a thread that ended while blocks of its heap waited in other threads'
    /// bins, when a flush found more than one such heap, or a collection found another.
    #[cold]
    fn collect_all_orphans(&self, full: bool) {
        loop {
            let mut again = false;
            let mut h = self.heaps.head();
            while !h.is_null() {
                // SAFETY: heaps on the list are valid slots while the allocator lives.
                let hdr = unsafe { &*h };
                if hdr.owner.is_unowned() && hdr.notify.is_pending() {
                    again |= self.collect(h, full);
                }
                h = hdr.next.load(Ordering::Acquire);
            }
            if !again {
                return;
            }
        }
    }

    /// The hardened default's whole check of a pointer handed back to the pools, for the C
    /// library's long way: `None` if `ptr` is not in this allocator's arenas; otherwise its class,
    /// unless it does not start a block of a pool in use, is among the last blocks freed into
    /// the calling thread's bin, or holds the freed mark and is found among the thread's free
    /// blocks (`PoolCore::holds_freed`), which is reported on one line of stderr (naming `op`)
    /// before the process aborts.
    fn checked_live_class(&self, ptr: *const u8, op: &str) -> Option<usize> {
        let p = NonNull::new(ptr.cast_mut())?;
        let id = self.id.load(Ordering::Relaxed);
        if id == 0 || registry::owner_of(ptr as usize) != id {
            return None;
        }
        // SAFETY: in our arenas (the registry).
        let class = unsafe { crate::routing::checked_live_class(self, op, p) };
        // A block among the thread's last few frees, whichever heap it comes from (a free puts
        // every block of this allocator in the freeing thread's bin), is freed already too.
        if self.my_way().is_some_and(|w| {
            // SAFETY: a way of this allocator holds a heap the calling thread owns, so it alone
            // reads the bins.
            unsafe { self.core_unrefreshed(w.slot) }.bin_recently_holds(p.as_ptr(), class)
        }) {
            crate::check::bad_free(op, ptr as usize, crate::check::BadFree::DoubleFree);
        }
        Some(class)
    }

    /// Whether `ptr` (a block start of class `class` with the freed mark) is among the free
    /// blocks of the calling thread's heap of this allocator (none: false).
    fn freed_in_my_heap(&self, ptr: *mut u8, class: usize) -> bool {
        self.my_way().is_some_and(|w| {
            // SAFETY: a way of this allocator holds a heap the calling thread owns, so it alone
            // reads its bins and its pools' lists.
            unsafe { self.core_unrefreshed(w.slot) }.holds_freed(ptr, class)
        })
    }

    /// This allocator's registry id: the owner [`arena_owner`](crate::arena_owner) answers for
    /// a pointer into its arenas (0 until its first heap or fast key).
    pub fn registry_id(&self) -> u32 {
        self.id.load(Ordering::Relaxed)
    }

    /// Whether `ptr` lies in this allocator's arenas, after the hardened default's whole check
    /// of it (see [`free_checked`](Self::free_checked)): a bad pointer there ends the process
    /// with one line on stderr naming `op`, the call the program made (`realloc`,
    /// `malloc_usable_size`).
    pub fn check_live(&self, ptr: *const u8, op: &str) -> bool {
        self.checked_live_class(ptr, op).is_some()
    }

    /// Frees `ptr` if it lies in this allocator's arenas, with the hardened default's whole check
    /// (for the C library's long way): a pointer there that does not start a block of a pool in
    /// use, or a block already free (see `checked_live_class`), is reported on one line of stderr
    /// and the process aborts (see the crate README); a block that passes is marked freed. Returns false, having done nothing, for a
    /// pointer elsewhere (null included).
    ///
    /// # Safety
    /// `ptr` is null, a live block of this allocator's pools or a pointer elsewhere; a bad
    /// pointer into the pools is caught, not undefined.
    pub unsafe fn free_checked(&self, ptr: *mut u8) -> bool {
        let Some(class) = self.checked_live_class(ptr, "free") else {
            return false;
        };
        // SAFETY: a live block of our pools of `class` (the caller's guarantee, checked), marked
        // freed as it is freed.
        unsafe {
            crate::check::mark_freed(ptr);
            self.free_block_fast(NonNull::new_unchecked(ptr), Some(class));
        }
        true
    }

    /// Statistics of the pools (per size class, arenas, bytes); see [`PoolStats`].
    ///
    /// Counts the calling thread's heap and every heap no thread owns now (taking each for a
    /// moment); the heaps of other running threads are left alone (their owners may be changing
    /// them), so with several threads allocating this is a lower bound. Blocks of other heaps
    /// that wait in the bins of the heaps it counts are first sent home (a free puts any block
    /// in the freeing thread's bin), so that they count as free; those in other running threads'
    /// bins count as in use. A thread's heap is given up when it ends (before `join` returns on
    /// it), so once the threads that freed blocks are joined, their bins are counted.
    pub fn stats(&self) -> PoolStats {
        let mut total = PoolStats::empty(&self.geo);
        self.for_each_reachable_heap(false, |core| core.send_parked_home());
        self.for_each_reachable_heap(false, |core| {
            while core.drain_remote() {}
            total.add(&core.stats());
        });
        total
    }

    /// Gives back everything kept for reuse, like `malloc_trim(0)`, in the calling thread's heap and
    /// in every heap no thread owns: blocks other threads freed, empty pools kept by their size
    /// class, empty arenas kept mapped (returned to the provider), and the pages of every empty
    /// pool (decommitted).
    pub fn trim(&self) {
        self.for_each_reachable_heap(true, |core| core.trim());
        // A heap's bins may hold blocks of heaps trimmed before it, which its trim sent home
        // (`PoolCore::send_home`): a second round takes them back, with every bin now empty.
        self.for_each_reachable_heap(true, |core| core.trim());
    }

    /// Runs `f` on the core of the calling thread's heap and of every unowned heap (abandoned
    /// heaps are claimed for the call, then abandoned again and collected if frees arrived).
    fn for_each_reachable_heap(
        &self,
        full: bool,
        mut f: impl FnMut(&mut PoolCore<ProviderRef<P>>),
    ) {
        let c = threads::cache_if_any();
        let id = self.id.load(Ordering::Relaxed) as usize;
        let mine = if c.is_null() || id == 0 {
            ptr::null_mut()
        } else {
            // SAFETY: the calling thread's cache.
            unsafe {
                (*c).ways
                    .iter()
                    .find(|w| w.id == id)
                    .map_or(ptr::null_mut(), |w| w.slot)
            }
        };
        let marker = 0u8;
        let token = ptr::addr_of!(marker) as usize;
        let mut h = self.heaps.head();
        while !h.is_null() {
            // SAFETY: heaps on the list are valid slots while the allocator lives.
            let hdr = unsafe { &*h };
            if h == mine {
                // SAFETY: our own heap, not in use elsewhere on this thread.
                f(unsafe { self.core_of(h) });
                self.settle_fast(h, full);
            } else {
                let mut orphans = false;
                let visit = || {
                    // SAFETY: run with the heap claimed.
                    let core = unsafe { self.core_of(h) };
                    f(core);
                    orphans = !core.take_orphans().0.is_null();
                };
                if let Some(true) = remote::run_unowned(&hdr.owner, &hdr.notify, token, visit) {
                    orphans |= self.collect(h, full);
                }
                if orphans {
                    self.collect_all_orphans(full);
                }
            }
            h = hdr.next.load(Ordering::Acquire);
        }
    }

    /// How many heaps this allocator has made (one per thread that allocated at once, at most).
    pub fn heaps(&self) -> usize {
        let mut n = 0;
        let mut h = self.heaps.head();
        while !h.is_null() {
            n += 1;
            // SAFETY: heaps on the list are valid slots while the allocator lives.
            h = unsafe { (*h).next.load(Ordering::Acquire) };
        }
        n
    }

    /// How many blocks the calling thread's bin of `class` holds, and its limit (its heap made
    /// if it has none).
    #[cfg(test)]
    pub(crate) fn my_bin_fill(&self, class: usize) -> (usize, usize) {
        let mut slot = self.current_heap();
        if slot.is_null() {
            slot = self.my_heap_slow();
        }
        assert!(!slot.is_null());
        // SAFETY: the calling thread owns its heap; no other reference to the core is alive.
        unsafe { self.core_unrefreshed(slot) }.bin_fill(class)
    }

    /// How many heaps nobody owns (`waiting`: with remote frees waiting, which a collection
    /// leaves none of).
    #[cfg(test)]
    pub(crate) fn unowned_heaps(&self, waiting: bool) -> usize {
        let mut n = 0;
        let mut h = self.heaps.head();
        while !h.is_null() {
            // SAFETY: heaps on the list are valid slots while the allocator lives.
            let hdr = unsafe { &*h };
            n += usize::from(hdr.owner.is_unowned() && (!waiting || hdr.notify.is_pending()));
            h = hdr.next.load(Ordering::Acquire);
        }
        n
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        self.for_each_reachable_heap(false, |core| core.check_invariants());
    }
}

impl<P: ArenaProvider, L: DomainAllocator> Drop for PoolAllocator<P, L> {
    fn drop(&mut self) {
        let mut h = self.heaps.take_all();
        while !h.is_null() {
            // SAFETY: the heaps are this allocator's; `&mut self` means no thread is inside it.
            // A heap orphaned by a fork (owner already DEAD) may be inconsistent: it is left as it
            // is (its arenas stay mapped) rather than walked.
            unsafe {
                let hdr = &*h;
                let next = hdr.next.load(Ordering::Acquire);
                let orphan = hdr.owner.get() == DEAD;
                hdr.owner.kill();
                if !orphan {
                    let core = self.core_of(h);
                    ptr::drop_in_place(core);
                    threads::recycle_slot(h);
                }
                h = next;
            }
        }
    }
}

impl<P: ArenaProvider, L: DomainAllocator> Front for PoolAllocator<P, L> {
    front_fields!();

    #[inline]
    unsafe fn realloc_owned(&self, ptr: *mut u8, new_size: usize) -> Option<Option<NonNull<u8>>> {
        // SAFETY: the caller's guarantee.
        unsafe { self.realloc_in_arenas(ptr, new_size) }
    }

    #[inline]
    unsafe fn free_owned(&self, ptr: *mut u8) -> bool {
        // SAFETY: the caller's guarantee.
        unsafe { self.free_fast_in_arenas(ptr) }
    }

    /// The fast path: the thread's heap of this allocator from its way, a block from its bin;
    /// everything else (no heap yet, an empty bin) in `alloc_class_slow`, out of line, so that
    /// this inlines into every caller.
    #[inline(always)]
    fn alloc_class_fast(&self, class: usize) -> Option<NonNull<u8>> {
        if let Some(w) = self.my_way() {
            // SAFETY: a way of this allocator holds a heap the calling thread owns and its bins
            // (a non-null slot: ways are filled whole); no other reference to the core is alive
            // (the routing does not re-enter); `class` is the front's, below its class count.
            if let Some(p) = unsafe {
                crate::pool_core::pop_bin_in(
                    w.bins,
                    class,
                    self.geo.bin_stride,
                    self.geo.block_size(class),
                )
            } {
                return Some(p);
            }
        }
        self.alloc_class_slow(class)
    }

    #[inline(always)]
    unsafe fn free_block_fast(&self, ptr: NonNull<u8>, class: Option<usize>) {
        // The block's heap, read only where it is needed: a free of known class joins the
        // thread's bin whatever its heap (a load and three instructions fewer there).
        let slot_of = || {
            let arena = (ptr.as_ptr() as usize & !(self.geo.arena_size - 1))
                as *const crate::arena::ArenaHeader;
            // SAFETY: a live block's arena is live; its heap pointer was written before any of
            // its blocks was handed out.
            unsafe { (*arena).slot }.cast_mut()
        };
        let c = threads::cache_if_any();
        if !c.is_null() {
            let id = self.id.load(Ordering::Relaxed) as usize;
            // SAFETY: the calling thread's cache.
            let w = unsafe { (*c).ways[ThreadCache::way_of(id)] };
            // A block of this allocator joins the calling thread's bin of its class, whichever
            // heap it comes from (see `PoolCore::free_in_class`); without its class known, only
            // a block of that heap takes the fast way.
            if w.id == id && (class.is_some() || w.slot == slot_of()) {
                // SAFETY: the heap is ours (the current way of this allocator); the caller's
                // guarantee makes the block a live block of this allocator, of that heap when
                // its class is not given.
                unsafe { self.free_local_fast(w.slot, ptr, class) };
                return;
            }
        }
        // SAFETY: the caller's guarantee.
        unsafe { self.free_block_slow(slot_of(), c, ptr, class) }
    }

    unsafe fn freed_already(&self, ptr: *mut u8, class: usize) -> bool {
        self.freed_in_my_heap(ptr, class)
    }

    fn lock_for_fork(&self) {
        threads::lock_for_fork();
    }

    unsafe fn unlock_after_fork(&self) {
        // SAFETY: the caller's guarantee.
        unsafe { threads::unlock_after_fork() }
    }

    unsafe fn forked_child(&self) {
        // The threads that owned the other heaps do not exist in the child; their heaps may have
        // been in the middle of a change, so they are marked dead (never adopted, never walked).
        let mine = threads::current_token();
        let mut h = self.heaps.head();
        while !h.is_null() {
            // SAFETY: heaps on the list are valid slots while the allocator lives.
            let hdr = unsafe { &*h };
            let owner = hdr.owner.get();
            if owner != 0 && owner != mine {
                hdr.owner.kill();
            }
            h = hdr.next.load(Ordering::Acquire);
        }
    }
}

domain_allocator_for_front!(PoolAllocator, "pool");
