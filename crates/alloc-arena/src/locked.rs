//! [`LockedHeap`]: one [`Heap`] behind the crate's spin lock, shared by any number of threads (or
//! interrupt-free contexts) with no thread machinery and no OS: the `#[global_allocator]` of a
//! target that has no threads to give heaps to (an embedded `target_os = "none"`), or a simple
//! shared pool anywhere.

use core::alloc::Layout;
use core::ptr::NonNull;

use alloc_core::{ArenaProvider, DomainAllocator, Ownership};

use crate::heap::Heap;
use crate::stats::PoolStats;
use crate::sync::SpinLock;

/// A [`Heap`] behind a spin lock: `Sync`, so it can be a `static` (`#[global_allocator]`), and
/// it needs no OS: over a [`RegionArenas`](crate::RegionArenas) with [`Spans`](crate::Spans) of
/// the same region for large blocks, it runs on a bare-metal target.
///
/// Every call takes the lock for its duration (the heap's fast paths then run as in a `Heap`);
/// the large-block allocator is called under it too. A waiter spins (and yields to the OS where
/// there is one). The lock is not reentrant: code that runs while it is held (an interrupt
/// handler on the same core, the arena provider, `L`) must not allocate from the same
/// `LockedHeap`. With threads and an OS, [`PoolAllocator`](crate::PoolAllocator), a heap per
/// thread and no lock, scales where this does not.
///
/// ```
/// use alloc_arena::{Heap, LockedHeap, RegionArenas, RegionBuffer, Spans};
/// use alloc_core::{AsGlobalAlloc, DomainAllocator, Ownership};
///
/// static BUFFER: RegionBuffer<{ 4 << 20 }> = RegionBuffer::new();
/// // SAFETY: `BUFFER` is handed to this provider only.
/// static ARENAS: RegionArenas = unsafe { RegionArenas::from_buffer(&BUFFER) };
/// // Pools and large blocks from the one region; nothing from an OS or a C library.
/// static POOL: LockedHeap<&RegionArenas, Spans<&RegionArenas>> =
///     LockedHeap::new(Heap::with_parts(&ARENAS, Spans::with_provider(&ARENAS)));
///
/// let small = POOL.malloc(100).unwrap();
/// let large = POOL.malloc(100_000).unwrap();
/// assert!(ARENAS.contains(small.as_ptr()) && ARENAS.contains(large.as_ptr()));
/// assert_eq!(POOL.owns(large.as_ptr()), Ownership::Owned);
/// // SAFETY: live blocks, each freed once.
/// unsafe {
///     POOL.free(small.as_ptr());
///     POOL.free(large.as_ptr());
/// }
/// assert_eq!(POOL.stats().blocks_in_use(), 0);
/// ```
pub struct LockedHeap<
    P: ArenaProvider = crate::DefaultArenas,
    L: DomainAllocator = crate::DefaultLarge,
> {
    lock: SpinLock<()>,
    heap: Heap<P, L>,
}

// SAFETY: the heap is reached only with the lock held (`with`, and the fork handlers, which hold
// it from `prepare_fork` to `after_fork_*`), so one thread at a time uses it, which is what a
// `Heap` needs (it is `Send`: moving access between threads is sound when `P` and `L` are).
unsafe impl<P: ArenaProvider + Send, L: DomainAllocator + Send> Sync for LockedHeap<P, L> {}

impl<P: ArenaProvider, L: DomainAllocator> LockedHeap<P, L> {
    /// Puts `heap` behind the lock. `const`, so that it can initialise a `static`.
    pub const fn new(heap: Heap<P, L>) -> Self {
        LockedHeap {
            lock: SpinLock::new(()),
            heap,
        }
    }

    /// Runs `f` on the heap, with the lock held.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&Heap<P, L>) -> R) -> R {
        let _held = self.lock.lock();
        f(&self.heap)
    }

    /// Statistics of the pools; see [`PoolStats`].
    pub fn stats(&self) -> PoolStats {
        self.with(Heap::stats)
    }

    /// Gives back everything kept for reuse; see [`Heap::trim`].
    pub fn trim(&self) {
        self.with(Heap::trim);
    }
}

// SAFETY: every call is the heap's own (which upholds the contract), made with the lock held, so
// the heap sees one caller at a time as it requires.
unsafe impl<P: ArenaProvider, L: DomainAllocator> DomainAllocator for LockedHeap<P, L> {
    #[inline]
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        self.with(|h| h.malloc(size))
    }
    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        self.with(|h| h.calloc(nelem, elsize))
    }
    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: the caller's guarantee is the heap's.
        self.with(|h| unsafe { h.realloc(ptr, new_size) })
    }
    #[inline]
    unsafe fn free(&self, ptr: *mut u8) {
        // SAFETY: the caller's guarantee is the heap's.
        self.with(|h| unsafe { h.free(ptr) })
    }
    #[inline]
    unsafe fn free_sized(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: the caller's guarantee is the heap's.
        self.with(|h| unsafe { h.free_sized(ptr, size) })
    }
    #[inline]
    fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        self.with(|h| h.malloc_aligned(layout))
    }
    fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        self.with(|h| h.calloc_aligned(layout))
    }
    #[inline]
    unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's guarantee is the heap's.
        self.with(|h| unsafe { h.free_aligned(ptr, layout) })
    }
    unsafe fn realloc_aligned(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: the caller's guarantee is the heap's.
        self.with(|h| unsafe { h.realloc_aligned(ptr, layout, new_size) })
    }
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        // SAFETY: the caller's guarantee is the heap's.
        self.with(|h| unsafe { h.usable_size(ptr) })
    }
    fn owns(&self, ptr: *const u8) -> Ownership {
        self.with(|h| h.owns(ptr))
    }
    fn starts_block(&self, ptr: *const u8) -> Ownership {
        self.with(|h| h.starts_block(ptr))
    }
    fn track_ownership(&self) -> bool {
        self.heap.large().track_ownership()
    }
    fn name(&self) -> &str {
        "pool-locked"
    }
    fn prepare_fork(&self) {
        // Ours first: a thread inside the heap holds it while it calls `L`.
        self.lock.acquire_for_fork();
        self.heap.prepare_fork();
    }
    unsafe fn after_fork_parent(&self) {
        // SAFETY: the caller's guarantee: on the thread that ran `prepare_fork`, which holds the
        // lock (so it alone uses the heap).
        unsafe {
            self.heap.after_fork_parent();
            self.lock.release_after_fork();
        }
    }
    unsafe fn after_fork_child(&self) {
        // SAFETY: as for `after_fork_parent`, in the child.
        unsafe {
            self.heap.after_fork_child();
            self.lock.release_after_fork();
        }
    }
}
