//! Threads: which heap a thread uses, where heaps live, and what happens when a thread ends.
//!
//! A [`PoolAllocator`](crate::PoolAllocator) gives each thread that allocates from it a heap of
//! its own (a `PoolCore` with its own arenas, in a [`HeapSlot`]). The thread finds it through its
//! [`ThreadCache`], a small per-thread table of (allocator id, heap) pairs reached through a
//! native thread-local (with the `std` feature) and one OS thread-local slot (`pthread` keys /
//! fiber-local storage), whose destructor tells of the thread's end: no allocation, usable from
//! the first allocation of a process and inside a C `malloc`.
//!
//! * **Slots** are mapped from the OS, never unmapped, and recycled through a free list when an
//!   allocator is dropped, so a stale pointer to a slot (in the cache of a thread that outlived
//!   its allocator) always points at a slot header, whose `instance` tells that it is stale.
//! * **Thread exit**: the OS calls `on_thread_exit` with the thread's cache; each heap in it is
//!   abandoned (`Owner::abandon`), keeping its pools, bins and live blocks. The next thread that
//!   needs a heap from that allocator adopts it whole; until then, frees into it by other threads
//!   are collected by those threads (see `PoolAllocator`), so nothing is stranded.
//! * **Eviction**: a cache holds `CACHE_WAYS` allocators; a thread that uses more abandons the heap
//!   of the one it evicts (it adopts a heap again when it comes back).

// Without an OS only the heap slot's types are used (by `pool_core`): `PoolAllocator`, which
// uses the rest, needs one.
#![cfg_attr(not(any(unix, windows)), allow(dead_code))]

use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};

use alloc_core::ArenaProvider;

use crate::pool_core::PoolCore;
use crate::remote::{NotifyStack, Owner};
use crate::sync::{AtomicPtr, AtomicUsize, Ordering, SpinLock};

/// The part of a per-thread heap that other threads touch, in two cache lines: the first is
/// read by every free (`owner`) and written almost never; the second (`notify`) is written by
/// other threads' remote frees. Apart, and apart from the owner's core after them, a remote
/// free's notification does not take from the owner's core the line that its every free reads,
/// nor does the owner's work take from a remote freer the line holding `owner`.
#[repr(C, align(64))]
pub(crate) struct SlotHeader {
    /// Who owns the heap: a thread token (`ThreadCache::token`), 0, or `remote::DEAD`.
    pub(crate) owner: Owner,
    /// The registry id of the pool allocator the heap belongs to (0 while the slot is free).
    pub(crate) instance: AtomicUsize,
    /// The next heap of the same allocator (a push-only list), or the next free slot.
    pub(crate) next: AtomicPtr<SlotHeader>,
    /// 1 while the heap keeps memory its owner learned to keep (`PoolCore::learned_pools`), else
    /// 0: written by whoever holds the heap, when that changes; read by `PoolAllocator`'s sweep
    /// of heaps nobody owns (a hint: the sweep claims a heap before it touches it).
    pub(crate) learned: AtomicUsize,
    /// Pools with remote frees waiting (on a line of its own).
    pub(crate) notify: NotifyLine,
}

/// `SlotHeader::notify`, alone on its cache line.
#[repr(C, align(64))]
pub(crate) struct NotifyLine(pub(crate) NotifyStack<crate::arena::PoolMeta>);

impl core::ops::Deref for NotifyLine {
    type Target = NotifyStack<crate::arena::PoolMeta>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

const _: () = assert!(core::mem::size_of::<SlotHeader>() == 128);
const _: () = assert!(core::mem::offset_of!(SlotHeader, notify) == 64);

/// A provider reached through a pointer that the owning front refreshes on every entry: a heap
/// lives apart from its `PoolAllocator`, which may move between calls.
pub(crate) struct ProviderRef<P>(pub(crate) *const P);

// SAFETY: forwards to a live `P` (the front stores `&self.provider` before every use), which
// upholds the contract itself.
unsafe impl<P: ArenaProvider> ArenaProvider for ProviderRef<P> {
    fn alloc(&self, layout: core::alloc::Layout) -> Result<NonNull<u8>, alloc_core::ArenaError> {
        // SAFETY: refreshed by the front before the core runs (see the type's documentation).
        unsafe { (*self.0).alloc(layout) }
    }
    unsafe fn free(&self, ptr: NonNull<u8>, layout: core::alloc::Layout) {
        // SAFETY: as above; the caller's guarantee is forwarded.
        unsafe { (*self.0).free(ptr, layout) }
    }
    unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> bool {
        // SAFETY: as above.
        unsafe { (*self.0).decommit(ptr, len) }
    }
    unsafe fn commit(&self, ptr: NonNull<u8>, len: usize) -> Result<(), alloc_core::ArenaError> {
        // SAFETY: as above.
        unsafe { (*self.0).commit(ptr, len) }
    }
    fn fresh_memory_is_zeroed(&self) -> bool {
        // SAFETY: as above.
        unsafe { (*self.0).fresh_memory_is_zeroed() }
    }
}

/// One per-thread heap: the shared header, then the owner's core.
#[repr(C)]
pub(crate) struct HeapSlot<P: ArenaProvider> {
    pub(crate) hdr: SlotHeader,
    pub(crate) core: UnsafeCell<PoolCore<ProviderRef<P>>>,
}

/// Bytes reserved for every slot, whatever `P` (the core holds only a pointer to it).
pub(crate) const SLOT_BYTES: usize = 192 << 10;

/// Free slots (linked through `SlotHeader::next`).
struct FreeSlots(*mut SlotHeader);
// SAFETY: the pointers are slots owned by the list, handed out under its lock.
unsafe impl Send for FreeSlots {}

static FREE_SLOTS: SpinLock<FreeSlots> = SpinLock::new(FreeSlots(ptr::null_mut()));

/// Memory for one slot and whether it is a fresh mapping (all zero bytes) rather than a recycled
/// slot. Null if the OS refuses.
pub(crate) fn take_slot_memory() -> (*mut SlotHeader, bool) {
    let recycled = FREE_SLOTS.with(|f| {
        let s = f.0;
        if !s.is_null() {
            // SAFETY: slots on the free list are valid headers owned by the list.
            f.0 = unsafe { (*s).next.load(Ordering::Relaxed) };
        }
        s
    });
    if !recycled.is_null() {
        return (recycled, false);
    }
    let fresh = crate::os::map_forever(SLOT_BYTES).map_or(ptr::null_mut(), |p| p.cast().as_ptr());
    (fresh, true)
}

/// Puts a slot whose heap was dropped on the free list. Its header stays valid memory for ever.
///
/// # Safety
/// `slot` came from `take_slot_memory`, its core was dropped, and its owner is `DEAD`.
pub(crate) unsafe fn recycle_slot(slot: *mut SlotHeader) {
    FREE_SLOTS.with(|f| {
        // SAFETY: the caller hands the slot over; its header is valid memory.
        unsafe {
            (*slot).instance.store(0, Ordering::Release);
            (*slot).next.store(f.0, Ordering::Relaxed);
        }
        f.0 = slot;
    });
}

/// Where a free word (`free_word`) keeps its allocator's key, and a thread's way its id's tag:
/// bits 48 to 61. No user-space address of today's 64-bit systems reaches them (x86-64 and
/// AArch64 hand out 47 or 48 bits of address unless a program asks for more, and a reservation
/// above them gets no free word).
pub const FREE_TAG_SHIFT: u32 = 48;
/// Ids from here on have no tag (their ways' tags match no free word).
pub(crate) const FREE_TAG_IDS: usize = 1 << 14;
/// The tag bits of a free word.
pub(crate) const FREE_TAG_MASK: u64 = (FREE_TAG_IDS as u64 - 1) << FREE_TAG_SHIFT;

/// The tag of allocator id `id` in a thread's way (see `free_word`): the id in bits 48 to 61, 0
/// for an empty way (id 0), bit 63 for an id too large for the bits (which then no free word
/// matches: such an allocator's blocks take the registry's way).
#[inline]
pub(crate) const fn free_tag(id: usize) -> u64 {
    if id < FREE_TAG_IDS {
        (id as u64) << FREE_TAG_SHIFT
    } else {
        1 << 63
    }
}

/// How many allocators a thread keeps a heap of at once.
pub(crate) const CACHE_WAYS: usize = 8;

/// One (allocator id, heap) pair of a thread.
#[derive(Clone, Copy)]
pub(crate) struct Way {
    pub(crate) id: usize,
    pub(crate) slot: *mut SlotHeader,
    /// The first bin of the heap's core (`PoolCore::bins_base`), so that the fast paths reach
    /// a class's bin with one addition from what they load.
    pub(crate) bins: *mut u8,
    /// The id again, as the C library's `free` compares it in one exclusive-or with the word it
    /// tests a pointer with ([`free_tag`] of `id`): zero while the way is empty.
    pub(crate) tag: u64,
}

/// A thread's heaps, one way per allocator id modulo `CACHE_WAYS`. Its address is the thread's
/// token.
pub(crate) struct ThreadCache {
    pub(crate) ways: [Way; CACHE_WAYS],
    /// The next free cache in the store (without `std`).
    #[cfg_attr(feature = "std", allow(dead_code))]
    next_free: *mut ThreadCache,
    /// Whether the OS slot holds this cache (so that the thread's end is heard of).
    pub(crate) registered: bool,
    /// Frees this thread sent straight home because it had no heap of the block's allocator,
    /// since it last took a heap for that reason (see `PoolAllocator::free_heapless`).
    pub(crate) heapless_frees: u32,
}

const NO_WAYS: [Way; CACHE_WAYS] = [Way {
    id: 0,
    slot: ptr::null_mut(),
    bins: ptr::null_mut(),
    tag: 0,
}; CACHE_WAYS];

impl ThreadCache {
    // Without `std` nothing reads it; on x86-64 Linux only a compile-time check does (which
    // older compilers' dead-code lint does not count).
    #[cfg_attr(
        any(not(feature = "std"), all(target_arch = "x86_64", target_os = "linux")),
        allow(dead_code)
    )]
    pub(crate) const EMPTY: ThreadCache = ThreadCache {
        ways: NO_WAYS,
        next_free: ptr::null_mut(),
        registered: false,
        heapless_frees: 0,
    };

    /// The token that marks heaps this thread owns; `this` is the calling thread's cache. With
    /// `std` it is `os::thread_local::token` (on x86-64 Linux the thread pointer, which the
    /// fast free reads in one instruction; elsewhere the cache's address), without `std` the
    /// cache's address (caches then come from a store, one per live thread).
    #[inline(always)]
    pub(crate) fn token(this: *const ThreadCache) -> usize {
        #[cfg(feature = "std")]
        {
            debug_assert!(ptr::eq(this, crate::os::thread_local::cache()));
            crate::os::thread_local::token()
        }
        #[cfg(not(feature = "std"))]
        {
            this as usize
        }
    }

    /// The way that holds allocator `id`'s heap, if the thread has one: the cache is direct
    /// mapped, so that a thread that alternates between allocators (a program whose blocks span
    /// the mem domain's three pools) finds each one's heap with one compare.
    #[inline(always)]
    pub(crate) const fn way_of(id: usize) -> usize {
        id % CACHE_WAYS
    }

    /// Puts `(id, slot)` in its way, with the first bin of the slot's core (`bins`), evicting the
    /// heap there: that heap is abandoned (if the slot still belongs to its allocator and this
    /// thread), and its allocator adopts a heap again when the thread comes back to it.
    pub(crate) fn insert(&mut self, id: usize, slot: *mut SlotHeader, bins: *mut u8) {
        let i = Self::way_of(id);
        let old = self.ways[i];
        if !old.slot.is_null() && old.id != id {
            // SAFETY: slot headers are never unmapped.
            unsafe { abandon_way(old, ThreadCache::token(self)) };
        }
        self.ways[i] = Way {
            id,
            slot,
            bins,
            tag: free_tag(id),
        };
    }
}

/// Abandons the heap of `way` if it still belongs to the way's allocator and to `token`.
///
/// # Safety
/// `way.slot` is a slot header (they are never unmapped).
unsafe fn abandon_way(way: Way, token: usize) {
    // SAFETY: the caller's guarantee.
    let h = unsafe { &*way.slot };
    // The instance of a slot changes only when its allocator is dropped (owner DEAD, so the
    // compare-exchange below fails) or after recycling (a new owner token, not ours, unless we
    // adopted it for the new allocator, which the id check excludes).
    if h.instance.load(Ordering::Acquire) == way.id {
        h.owner.abandon_if(token);
    }
}

#[cfg(not(feature = "std"))]
/// Free caches, and the chunk they are carved from.
struct CacheStore {
    free: *mut ThreadCache,
}
#[cfg(not(feature = "std"))]
// SAFETY: the pointers are caches owned by the store, handed out under its lock.
unsafe impl Send for CacheStore {}

#[cfg(not(feature = "std"))]
static CACHES: SpinLock<CacheStore> = SpinLock::new(CacheStore {
    free: ptr::null_mut(),
});

#[cfg(not(feature = "std"))]
const CACHE_CHUNK: usize = 64 << 10;

#[cfg(not(feature = "std"))]
fn take_cache() -> *mut ThreadCache {
    CACHES.with(|s| {
        if s.free.is_null() {
            let Some(chunk) = crate::os::map_forever(CACHE_CHUNK) else {
                return ptr::null_mut();
            };
            let n = CACHE_CHUNK / core::mem::size_of::<ThreadCache>();
            let base = chunk.cast::<ThreadCache>().as_ptr();
            for i in 0..n {
                // SAFETY: `i < n` caches fit in the fresh chunk, which is suitably aligned (page).
                unsafe {
                    base.add(i).write(ThreadCache {
                        ways: NO_WAYS,
                        next_free: s.free,
                        registered: false,
                        heapless_frees: 0,
                    });
                    s.free = base.add(i);
                }
            }
        }
        let c = s.free;
        // SAFETY: a cache on the free list, owned by the store.
        s.free = unsafe { (*c).next_free };
        c
    })
}

#[cfg(not(feature = "std"))]
/// # Safety
/// `c` came from `take_cache` and is no longer any thread's.
unsafe fn give_back_cache(c: *mut ThreadCache) {
    CACHES.with(|s| {
        // SAFETY: the caller hands the cache over.
        unsafe {
            (*c).ways = NO_WAYS;
            (*c).registered = false;
            (*c).next_free = s.free;
        }
        s.free = c;
    });
}

/// The OS's per-thread slot that holds each thread's cache; a thread's end gives the cache up.
static CACHE_KEY: crate::os::ExitKey<CacheEnds> = crate::os::ExitKey::new();

/// What [`CACHE_KEY`] does at a thread's end.
struct CacheEnds;

impl crate::os::ThreadExit for CacheEnds {
    fn ended(value: *mut core::ffi::c_void) {
        // SAFETY: the value is the one the ending thread stored: its cache, which nobody else
        // uses.
        unsafe { thread_ended(value.cast()) }
    }
}

/// Runs when a thread with a cache ends: abandons its heaps and forgets them (a cache in the
/// native thread-local) or recycles the cache (one from the store).
///
/// # Safety
/// `c` is the ending thread's cache, used by nobody else.
pub(crate) unsafe fn thread_ended(c: *mut ThreadCache) {
    let token = ThreadCache::token(c);
    // SAFETY: the cache is the ending thread's, so nobody else touches it.
    let ways = unsafe { (*c).ways };
    for w in ways {
        if !w.slot.is_null() {
            // SAFETY: slot headers are never unmapped.
            unsafe { abandon_way(w, token) };
        }
    }
    // An allocation made later in this thread's exit (by another destructor) starts from an empty
    // cache and registers it again; the OS runs the destructor again for it.
    #[cfg(feature = "std")]
    // SAFETY: the thread-local cache of the ending thread, alive until the thread is gone.
    unsafe {
        (*c).ways = NO_WAYS;
        (*c).registered = false;
        (*c).heapless_frees = 0;
    }
    #[cfg(not(feature = "std"))]
    // SAFETY: the thread is ending and the OS cleared its slot: nothing refers to the cache.
    unsafe {
        give_back_cache(c)
    };
}

/// Fork support: the child has only the forking thread, so every heap owned by another token is
/// an orphan; the child's allocators mark them dead (see `PoolAllocator::forked_child`).
pub(crate) fn current_token() -> usize {
    ThreadCache::token(cache_if_any())
}

/// Takes the global locks of this module for a fork.
pub(crate) fn lock_for_fork() {
    FREE_SLOTS.acquire_for_fork();
    #[cfg(not(feature = "std"))]
    CACHES.acquire_for_fork();
    crate::registry::lock_for_fork();
}

/// # Safety
/// After `lock_for_fork`, on the same thread (or the child's only thread).
pub(crate) unsafe fn unlock_after_fork() {
    // SAFETY: the caller's guarantee.
    unsafe {
        crate::registry::unlock_after_fork();
        #[cfg(not(feature = "std"))]
        CACHES.release_after_fork();
        FREE_SLOTS.release_after_fork();
    }
}

/// The calling thread's cache, registered with the OS on first use; null if the OS refuses.
#[inline]
pub(crate) fn cache_fast() -> *mut ThreadCache {
    let c = cache_if_any();
    // SAFETY: a non-null cache is the calling thread's.
    if !c.is_null() && unsafe { (*c).registered } {
        return c;
    }
    cache_slow(c)
}

/// The calling thread's cache if it has one (null otherwise; with `std` always one, perhaps
/// empty): what an allocation and a free look at first.
#[inline(always)]
pub(crate) fn cache_if_any() -> *mut ThreadCache {
    #[cfg(feature = "std")]
    {
        crate::os::thread_local::cache()
    }
    #[cfg(not(feature = "std"))]
    {
        CACHE_KEY.get().cast()
    }
}

#[cold]
#[inline(never)]
fn cache_slow(current: *mut ThreadCache) -> *mut ThreadCache {
    #[cfg(feature = "std")]
    let c = current;
    #[cfg(not(feature = "std"))]
    let c = {
        debug_assert!(current.is_null());
        take_cache()
    };
    if c.is_null() {
        return c;
    }
    if !CACHE_KEY.set(c.cast()) {
        #[cfg(not(feature = "std"))]
        // SAFETY: never published.
        unsafe {
            give_back_cache(c)
        };
        return ptr::null_mut();
    }
    // SAFETY: the calling thread's cache.
    unsafe { (*c).registered = true };
    c
}
