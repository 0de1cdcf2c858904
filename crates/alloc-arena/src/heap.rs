//! [`Heap`]: the pool allocator for one owner at a time, one `PoolCore` behind the shared routing
//! (`routing`), with no thread machinery.

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::ptr::NonNull;

use alloc_core::{ArenaProvider, DomainAllocator, Ownership};

use crate::pool_core::PoolCore;
use crate::routing::{DEFAULT_GEOMETRY, Front};
use crate::size_class::{ConfigError, Geometry, PoolConfig};
use crate::stats::PoolStats;
use crate::sync::AtomicU32;

/// The pool allocator for one owner at a time: the same pools, arenas and routing as
/// `PoolAllocator` with no thread machinery. It is `Send` but not `Sync`: move it to a thread,
/// use it there, or share it behind a lock ([`LockedHeap`](crate::LockedHeap)), which needs no
/// OS.
///
/// ```
/// use alloc_arena::Heap;
/// use alloc_core::{AsAllocator, DomainAllocator};
///
/// let heap = Heap::new();
/// let alloc = AsAllocator::new(&heap);
/// let mut v = alloc_core::allocator_api2::vec::Vec::new_in(&alloc);
/// v.extend([1u32, 2, 3]);
/// assert_eq!(heap.stats().blocks_in_use(), 1);
/// ```
pub struct Heap<P: ArenaProvider = crate::DefaultArenas, L: DomainAllocator = crate::DefaultLarge> {
    geo: Geometry,
    id: AtomicU32,
    core: UnsafeCell<PoolCore<P>>,
    large: L,
}

// SAFETY: all state moves with the value (arenas are owned by it); `P` and `L` move with it.
unsafe impl<P: ArenaProvider + Send, L: DomainAllocator + Send> Send for Heap<P, L> {}

#[cfg(all(any(unix, windows), target_pointer_width = "64"))]
impl Heap {
    /// A heap with pymalloc's parameters over OS arenas, large requests to the C library.
    pub const fn new() -> Self {
        Heap::with_parts(crate::OsArenas::new(), alloc_core::System)
    }
}

#[cfg(all(any(unix, windows), target_pointer_width = "64"))]
impl Default for Heap {
    fn default() -> Self {
        Heap::new()
    }
}

impl<P: ArenaProvider, L: DomainAllocator> Heap<P, L> {
    /// A heap with pymalloc's parameters over `provider`, large requests to `large`.
    pub const fn with_parts(provider: P, large: L) -> Self {
        Self::from_geometry(DEFAULT_GEOMETRY, provider, large)
    }

    const fn from_geometry(geo: Geometry, provider: P, large: L) -> Self {
        Heap {
            geo,
            id: AtomicU32::new(0),
            core: UnsafeCell::new(PoolCore::new(geo, provider)),
            large,
        }
    }

    /// A heap with the parameters of `config`, or the reason they cannot work.
    pub fn with_config(config: PoolConfig, provider: P, large: L) -> Result<Self, ConfigError> {
        Ok(Self::from_geometry(Geometry::new(config)?, provider, large))
    }

    /// Statistics of the pools; see [`PoolStats`].
    pub fn stats(&self) -> PoolStats {
        self.with_core(|core, _| core.stats())
    }

    /// Gives back everything kept for reuse, like `malloc_trim(0)`: the empty pools kept by their
    /// size class, empty arenas kept (returned to the provider), and the pages of every empty
    /// pool (decommitted).
    pub fn trim(&self) {
        self.with_core(|core, _| core.trim());
    }

    /// Runs `f` on the arena provider.
    pub fn with_provider<R>(&self, f: impl FnOnce(&P) -> R) -> R {
        self.with_core(|core, _| f(core.provider_mut()))
    }

    /// The large-block allocator.
    pub fn large(&self) -> &L {
        &self.large
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        self.with_core(|core, _| core.check_invariants());
    }

    /// How many blocks the bin of `class` holds, and its limit.
    #[cfg(test)]
    pub(crate) fn bin_fill(&self, class: usize) -> (usize, usize) {
        self.with_core(|core, _| core.bin_fill(class))
    }

    /// How many state transitions the debug checks have seen (see `PoolCore::check_transition`).
    #[cfg(all(test, debug_assertions))]
    pub(crate) fn transitions_checked(&self) -> u32 {
        self.with_core(|core, _| core.transitions_checked())
    }
}

impl<P: ArenaProvider, L: DomainAllocator> Heap<P, L> {
    #[inline]
    fn with_core<R>(&self, f: impl FnOnce(&mut PoolCore<P>, &AtomicU32) -> R) -> R {
        // SAFETY: `Heap` is not `Sync`, so only this thread can reach the core, and the routing
        // never calls `with_core` while inside it (the provider and `L` must not call back into
        // this heap), so this is the only reference.
        f(unsafe { &mut *self.core.get() }, &self.id)
    }
}

impl<P: ArenaProvider, L: DomainAllocator> Front for Heap<P, L> {
    front_fields!();
    #[inline]
    fn alloc_class_fast(&self, class: usize) -> Option<NonNull<u8>> {
        self.with_core(|core, id| core.alloc_fast(class, id))
    }
    #[inline]
    unsafe fn free_block_fast(&self, ptr: NonNull<u8>, class: Option<usize>) {
        let geo = &self.geo;
        self.with_core(|core, _| match class {
            Some(c) => {
                // The bin's push inline, as `PoolAllocator`'s free does; a full or unarmed bin
                // (or a secure heap's, limit 0) takes the core's whole free of the class.
                // SAFETY: the caller's guarantee: a live block of ours of class `c`, below the
                // class count; the core's bins lie `bin_stride` apart in its geometry, ours, and
                // `with_core` holds the only reference to it.
                if unsafe {
                    crate::pool_core::push_bin_in(
                        core.bins_base(),
                        c,
                        geo.bin_stride,
                        ptr,
                        geo.block_size(c),
                    )
                } {
                    return;
                }
                // SAFETY: as above.
                unsafe { core.free_in_class(ptr, c) }
            }
            // SAFETY: the caller's guarantee: a live block of ours.
            None => unsafe { core.free(ptr) },
        })
    }
    unsafe fn freed_already(&self, ptr: *mut u8, class: usize) -> bool {
        self.with_core(|core, _| core.holds_freed(ptr, class))
    }
}

domain_allocator_for_front!(Heap, "pool-heap");
