//! The one routing of the `DomainAllocator` calls that both fronts use, [`Heap`](crate::Heap)
//! (one owner, no lock, in `heap`) and [`PoolAllocator`](crate::PoolAllocator) (shared, in
//! `pool`): the `Front` trait each implements, and the `domain_allocator_for_front!` macro that
//! makes a front a `DomainAllocator`.
//!
//! Routing, for both:
//!
//! * requests of at most `threshold` bytes (and aligned requests whose alignment-rounded size fits)
//!   go to the pools; larger ones to the large-block allocator `L`;
//! * a free or realloc asks the registry whether the block lies in one of this allocator's arenas
//!   (O(1), no arena memory read) and sends it to the pools or to `L` accordingly, so no size is
//!   needed; a sized free also takes the class from the size, reading no pool metadata at all;
//! * realloc stays in place while the new size keeps the same class, and moves between the pools
//!   and `L` across the threshold.

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use alloc_core::{ArenaProvider, DomainAllocator, MIN_ALIGN, Ownership};

use crate::check::BadFree;
use crate::registry;
use crate::size_class::{Geometry, PoolConfig};
use crate::sync::{AtomicU32, Ordering};

pub(crate) const DEFAULT_GEOMETRY: Geometry = match Geometry::new(PoolConfig::DEFAULT) {
    Ok(g) => g,
    Err(_) => panic!("the default configuration is valid"),
};

/// The geometry the fast paths (`fast.rs`) are compiled for: [`PoolConfig::WIDE`]'s.
// The fast paths need an OS (their thread cache).
#[cfg_attr(not(any(unix, windows)), allow(dead_code))]
pub(crate) const FAST_GEOMETRY: Geometry = match Geometry::new(PoolConfig::WIDE) {
    Ok(g) => g,
    Err(_) => panic!("the wide configuration is valid"),
};

/// What the shared routing needs of a front.
pub(crate) trait Front {
    type P: ArenaProvider;
    type L: DomainAllocator;
    fn geometry(&self) -> &Geometry;
    fn owner_id(&self) -> &AtomicU32;
    fn large(&self) -> &Self::L;
    /// A block of size class `class` from the pools.
    fn alloc_class_fast(&self, class: usize) -> Option<NonNull<u8>>;
    /// Frees a pool block; `class` is its size class when the caller knows it.
    ///
    /// # Safety
    /// `ptr` is a live block of this front's pools (of `class`, if given), not used afterwards.
    unsafe fn free_block_fast(&self, ptr: NonNull<u8>, class: Option<usize>);
    /// Whether `ptr`, a block start of a pool of `class` that holds the freed mark (any block
    /// start, without the marks), is among the free blocks the calling thread can see
    /// (`PoolCore::holds_freed` of its heap): a double free.
    ///
    /// # Safety
    /// `ptr` starts a block of a pool in use of this allocator, of class `class`.
    unsafe fn freed_already(&self, ptr: *mut u8, class: usize) -> bool;
    /// Resizes a block the registry places in this front's arenas by its fast path, where it
    /// has one (a per-thread heap's bin); `None`, having done nothing, to take the long way.
    ///
    /// # Safety
    /// As for `PoolAllocator::realloc_in_arenas`.
    unsafe fn realloc_owned(&self, _ptr: *mut u8, _new_size: usize) -> Option<Option<NonNull<u8>>> {
        None
    }
    /// Frees a block the registry places in this front's arenas by its fast path, where it has
    /// one (into the calling thread's bin, after the fast free's checks); false, having done
    /// nothing, to take the long way (which checks the pointer whole and reports a bad one).
    ///
    /// # Safety
    /// As for `PoolAllocator::free_fast_in_arenas`.
    unsafe fn free_owned(&self, _ptr: *mut u8) -> bool {
        false
    }
    /// Takes the front's locks for a fork (none for a heap).
    fn lock_for_fork(&self) {}
    /// Releases what `lock_for_fork` took.
    ///
    /// # Safety
    /// On the thread that called `lock_for_fork` (in the child: the one the fork returned in).
    unsafe fn unlock_after_fork(&self) {}
    /// In the child of a fork, after `unlock_after_fork`: the state of other threads is gone.
    ///
    /// # Safety
    /// In the child of a fork, on its only thread.
    unsafe fn forked_child(&self) {}
}

/// The block size of a live pool block: read from its pool's meta, found by masking (any thread
/// may read it: it was written before the block was handed out, and stays until it is freed).
///
/// # Safety
/// `ptr` is a live block of a pool of geometry `g`.
#[inline]
pub(crate) unsafe fn pool_block_size(g: &Geometry, ptr: NonNull<u8>) -> usize {
    // SAFETY: the caller's guarantee: the meta of a live block's pool is initialised.
    unsafe { (*pool_meta(g, ptr.as_ptr() as usize)).block_size as usize }
}

/// The meta of the pool holding `addr`, an address inside a live arena of geometry `g`.
#[inline]
pub(crate) fn pool_meta(g: &Geometry, addr: usize) -> *mut crate::arena::PoolMeta {
    let arena = (addr & !(g.arena_size - 1)) as *mut crate::arena::ArenaHeader;
    let index = (addr - arena as usize) >> g.pool_shift;
    // SAFETY: the metas of a live arena follow its header; `index < pools_per_arena` because the
    // offset is below the arena size. Only the address is computed here.
    unsafe { crate::arena::ArenaHeader::meta(arena, index) }
}

/// The class of a pointer the registry places in `f`'s arenas, or the hardened default's report
/// and abort if it does not start a block of a pool in use (see `check`).
///
/// # Safety
/// `ptr` lies in one of `f`'s live arenas.
#[inline]
pub(crate) unsafe fn checked_class<F: Front>(f: &F, op: &str, ptr: NonNull<u8>) -> usize {
    let addr = ptr.as_ptr() as usize;
    // SAFETY: the caller's guarantee.
    match unsafe { crate::check::check_pointer(f.geometry(), addr) } {
        Ok(class) => class,
        Err(bad) => crate::check::bad_free(op, addr, bad),
    }
}

/// [`checked_class`], then the double-free check of a block that holds the freed mark: it is
/// looked for among the free blocks the calling thread can see, and reported if it is there
/// (see `check::FREED_MARK`). Without the marks (the `asan` and `valgrind` builds) every block
/// is looked for, so that a double free the fast paths refused (the block on its bin's top)
/// is reported here too, not freed again. For the calls that take a live block: `free`,
/// `realloc`, `malloc_usable_size` (`op`).
///
/// # Safety
/// As for [`checked_class`].
#[inline]
pub(crate) unsafe fn checked_live_class<F: Front>(f: &F, op: &str, ptr: NonNull<u8>) -> usize {
    // SAFETY: the caller's guarantee.
    let class = unsafe { checked_class(f, op, ptr) };
    // SAFETY: a block start of a pool in use (checked), of class `class`.
    unsafe {
        if (!crate::check::MARKS || crate::check::marked_freed(ptr.as_ptr()))
            && f.freed_already(ptr.as_ptr(), class)
        {
            crate::check::bad_free(op, ptr.as_ptr() as usize, BadFree::DoubleFree);
        }
    }
    class
}

#[inline]
fn owned<F: Front>(f: &F, ptr: *const u8) -> bool {
    let id = f.owner_id().load(Ordering::Relaxed);
    id != 0 && registry::owner_of(ptr as usize) == id
}

#[inline]
fn small<F: Front>(f: &F, size: usize) -> Option<NonNull<u8>> {
    f.alloc_class_fast(f.geometry().class_of(size))
}

/// The block size to ask the pools for an aligned request, if the pools can serve it: the size
/// rounded up to the alignment (blocks of a multiple of `align` bytes are `align`-aligned).
#[inline]
fn small_aligned_size(g: &Geometry, layout: Layout) -> Option<usize> {
    if layout.align() > g.threshold {
        return None;
    }
    let size = layout
        .size()
        .max(1)
        .checked_next_multiple_of(layout.align())?;
    (size <= g.threshold).then_some(size)
}

#[inline(always)]
pub(crate) fn malloc<F: Front>(f: &F, size: usize) -> Option<NonNull<u8>> {
    if size <= f.geometry().threshold {
        small(f, size)
    } else {
        malloc_large(f, size)
    }
}

#[inline(never)]
fn malloc_large<F: Front>(f: &F, size: usize) -> Option<NonNull<u8>> {
    f.large().malloc(size)
}

pub(crate) fn calloc<F: Front>(f: &F, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
    let size = alloc_core::checked_array_size(nelem, elsize).ok()?;
    if size > f.geometry().threshold {
        return f.large().calloc(nelem, elsize);
    }
    let p = small(f, size)?;
    // SAFETY: a fresh block of at least `size` bytes (reused blocks hold old data).
    unsafe { p.as_ptr().write_bytes(0, size) };
    Some(p)
}

/// # Safety
/// `ptr` is a live block of `f` from malloc/calloc/realloc.
#[inline]
unsafe fn free_nonnull<F: Front>(f: &F, ptr: NonNull<u8>) {
    if owned(f, ptr.as_ptr()) {
        // The front's fast path first (the same checks, a bad pointer refused to the long way).
        // SAFETY: the registry says the block lies in our arenas; the caller's guarantee.
        if unsafe { f.free_owned(ptr.as_ptr()) } {
            return;
        }
        // SAFETY: the registry says the block lies in our arenas.
        let class = unsafe { checked_live_class(f, "free", ptr) };
        // SAFETY: a block start of a pool in use (checked), freed now.
        unsafe { crate::check::mark_freed(ptr.as_ptr()) };
        // SAFETY: the caller says it is live; the check says it starts a block of `class`.
        unsafe { f.free_block_fast(ptr, Some(class)) };
    } else {
        // SAFETY: not in our arenas, so it came from `L` (the caller's guarantee).
        unsafe { f.large().free(ptr.as_ptr()) }
    }
}

/// # Safety
/// `ptr` is a live block of `f` from malloc/calloc/realloc whose last requested size is `size`.
#[inline]
pub(crate) unsafe fn free_sized<F: Front>(f: &F, ptr: NonNull<u8>, size: usize) {
    let g = f.geometry();
    if size <= g.threshold {
        // Every live block last requested at most `threshold` bytes is a pool block: `malloc` and
        // `calloc` put such requests in the pools (or fail), and `realloc` moves a block into the
        // pools when it shrinks that far (or fails), never leaving it with `L`. So the registry
        // need not be asked.
        let class = g.class_of(size);
        // SAFETY: a live pool block requested with `size` (above), whose class realloc keeps
        // equal to `class_of(size)` (it stays in place only within the class).
        unsafe { f.free_block_fast(ptr, Some(class)) };
    } else {
        // SAFETY: the caller's guarantee.
        unsafe { free_sized_large(f, ptr, size) }
    }
}

/// `free_sized` above the threshold, out of line (a large-block allocator's code inlined here
/// would make every small free pay for its stack frame).
///
/// # Safety
/// As for [`free_sized`], with `size` above the threshold.
#[inline(never)]
unsafe fn free_sized_large<F: Front>(f: &F, ptr: NonNull<u8>, size: usize) {
    if owned(f, ptr.as_ptr()) {
        // SAFETY: a live block of our pools (a size above the threshold is a caller's error
        // that the class lookup tolerates).
        unsafe { f.free_block_fast(ptr, None) };
    } else {
        // SAFETY: not in our arenas, so a live block of `L` with this size.
        unsafe { f.large().free_sized(ptr, size) }
    }
}

/// # Safety
/// `ptr` is null or a live block of `f` from malloc/calloc/realloc.
#[inline]
pub(crate) unsafe fn free<F: Front>(f: &F, ptr: *mut u8) {
    if let Some(p) = NonNull::new(ptr) {
        // SAFETY: the caller's guarantee.
        unsafe { free_nonnull(f, p) }
    }
}

/// Moves a live block to a fresh one: allocate, copy `keep` bytes, free the old one.
///
/// # Safety
/// `old` is a live block with at least `keep` readable bytes, released by `release` afterwards.
unsafe fn relocate(
    new: Option<NonNull<u8>>,
    old: NonNull<u8>,
    keep: usize,
    release: impl FnOnce(),
) -> Option<NonNull<u8>> {
    let new = new?;
    // SAFETY: the blocks are distinct live blocks; `keep` fits both (the caller and the new size).
    unsafe { ptr::copy_nonoverlapping(old.as_ptr(), new.as_ptr(), keep) };
    release();
    Some(new)
}

/// Whether a pool block of `block` bytes can hold `new_size` in place: only within its class
/// (pymalloc also keeps a block that shrinks by less than a quarter; domalloc does not, so that the
/// class of every pool block follows from its last requested size and a sized free needs no
/// metadata).
#[inline]
fn fits_in_place(g: &Geometry, block: usize, new_size: usize) -> bool {
    new_size <= g.threshold && g.block_size(g.class_of(new_size)) == block
}

/// # Safety
/// `ptr` is null or a live block of `f` from malloc/calloc/realloc.
pub(crate) unsafe fn realloc<F: Front>(
    f: &F,
    ptr: *mut u8,
    new_size: usize,
) -> Option<NonNull<u8>> {
    let Some(old) = NonNull::new(ptr) else {
        return malloc(f, new_size);
    };
    let g = *f.geometry();
    if owned(f, ptr) {
        // SAFETY: in our arenas (the registry); the caller's guarantee.
        if let Some(q) = unsafe { f.realloc_owned(ptr, new_size) } {
            return q;
        }
        // SAFETY: in our arenas (the registry).
        let class = unsafe { checked_live_class(f, "realloc", old) };
        // A live block of our pools (registry + the caller) of `class`, checked above.
        let block = g.block_size(class);
        if fits_in_place(&g, block, new_size) {
            return Some(old);
        }
        // SAFETY: `old` holds `block` bytes; it is freed once after the copy, with its class
        // (so through the bin), marked freed as an unsized free's block is.
        return unsafe {
            relocate(malloc(f, new_size), old, block.min(new_size), || {
                crate::check::mark_freed(old.as_ptr());
                f.free_block_fast(old, Some(class))
            })
        };
    }
    if new_size > g.threshold {
        // SAFETY: not ours, so a live block of `L` (the caller's guarantee).
        return unsafe { f.large().realloc(ptr, new_size) };
    }
    // A large block shrinks below the threshold: it moves into the pools (or the call fails and
    // the block stays as it was), so that no block last requested at most `threshold` bytes is
    // left with `L` (what lets a sized free skip the registry). It was requested with more than
    // `threshold` bytes (how blocks come to `L`), so `new_size` bytes of it can be copied.
    // SAFETY: `old` holds more than `new_size` bytes; it is freed once through `L` after the copy.
    unsafe { relocate(small(f, new_size), old, new_size, || f.large().free(ptr)) }
}

/// Small alignments are `malloc` (inlined, so a decorator's aligned call costs what `malloc` does);
/// larger ones take [`malloc_overaligned`].
#[inline(always)]
pub(crate) fn malloc_aligned<F: Front>(f: &F, layout: Layout) -> Option<NonNull<u8>> {
    if layout.align() <= MIN_ALIGN {
        return malloc(f, layout.size());
    }
    malloc_overaligned(f, layout)
}

#[inline(never)]
fn malloc_overaligned<F: Front>(f: &F, layout: Layout) -> Option<NonNull<u8>> {
    match small_aligned_size(f.geometry(), layout) {
        Some(size) => small(f, size),
        None => f.large().malloc_aligned(layout),
    }
}

/// # Safety
/// `ptr` is a live block of `f` from malloc_aligned/calloc_aligned/realloc_aligned with `layout`.
#[inline(always)]
pub(crate) unsafe fn free_aligned<F: Front>(f: &F, ptr: NonNull<u8>, layout: Layout) {
    if layout.align() <= MIN_ALIGN {
        // SAFETY: small alignments were made by `malloc` with this size (`malloc_aligned`).
        return unsafe { free_sized(f, ptr, layout.size()) };
    }
    // SAFETY: the caller's guarantee.
    unsafe { free_overaligned(f, ptr, layout) }
}

/// # Safety
/// As for [`free_aligned`], with an alignment above `MIN_ALIGN`.
#[inline(never)]
unsafe fn free_overaligned<F: Front>(f: &F, ptr: NonNull<u8>, layout: Layout) {
    if owned(f, ptr.as_ptr()) {
        match small_aligned_size(f.geometry(), layout) {
            Some(size) => {
                let class = f.geometry().class_of(size);
                // SAFETY: a live pool block made by `malloc_aligned(layout)`, so of this class.
                unsafe { f.free_block_fast(ptr, Some(class)) };
            }
            // SAFETY: a live block of our pools.
            None => unsafe { f.free_block_fast(ptr, None) },
        }
    } else {
        // SAFETY: a live block of `L` made with `layout` (malloc_aligned routes the same way).
        unsafe { f.large().free_aligned(ptr, layout) }
    }
}

/// # Safety
/// `ptr` is a live block of `f` from malloc_aligned/realloc_aligned with `layout`.
pub(crate) unsafe fn realloc_aligned<F: Front>(
    f: &F,
    ptr: NonNull<u8>,
    layout: Layout,
    new_size: usize,
) -> Option<NonNull<u8>> {
    if layout.align() <= MIN_ALIGN {
        // SAFETY: small alignments come from malloc.
        return unsafe { realloc(f, ptr.as_ptr(), new_size) };
    }
    let new_layout = Layout::from_size_align(new_size, layout.align()).ok()?;
    let g = *f.geometry();
    let new_small = small_aligned_size(&g, new_layout);
    if owned(f, ptr.as_ptr()) {
        // SAFETY: a live block of our pools.
        let block = unsafe { pool_block_size(&g, ptr) };
        if new_small == Some(block) {
            return Some(ptr);
        }
        // SAFETY: `ptr` holds at least `layout.size()` bytes; freed once after the copy.
        return unsafe {
            relocate(
                malloc_aligned(f, new_layout),
                ptr,
                layout.size().min(new_size),
                || f.free_block_fast(ptr, None),
            )
        };
    }
    if new_small.is_some() {
        // SAFETY: a live `L` block of `layout.size()` bytes, freed once through `L` with its layout.
        return unsafe {
            relocate(
                malloc_aligned(f, new_layout),
                ptr,
                layout.size().min(new_size),
                || f.large().free_aligned(ptr, layout),
            )
        };
    }
    // SAFETY: a live `L` block made with `layout`.
    unsafe { f.large().realloc_aligned(ptr, layout, new_size) }
}

/// # Safety
/// `ptr` is a live block of `f`.
pub(crate) unsafe fn usable_size<F: Front>(f: &F, ptr: NonNull<u8>) -> Option<usize> {
    if owned(f, ptr.as_ptr()) {
        // SAFETY: in our arenas (the registry).
        unsafe { checked_live_class(f, "malloc_usable_size", ptr) };
        // SAFETY: a live block of our pools.
        Some(unsafe { pool_block_size(f.geometry(), ptr) })
    } else {
        // SAFETY: a live block of `L`.
        unsafe { f.large().usable_size(ptr) }
    }
}

pub(crate) fn owns<F: Front>(f: &F, ptr: *const u8) -> Ownership {
    if owned(f, ptr) {
        Ownership::Owned
    } else {
        f.large().owns(ptr)
    }
}

/// `starts_block`: in our arenas, whether `ptr` starts a block of a pool in use (the hardened
/// default's test); elsewhere, the large-block allocator's answer.
pub(crate) fn starts_block<F: Front>(f: &F, ptr: *const u8) -> Ownership {
    if !owned(f, ptr) {
        return f.large().starts_block(ptr);
    }
    // SAFETY: the registry maps the pointer's chunk to our live arenas, of our geometry.
    match unsafe { crate::check::check_pointer(f.geometry(), ptr as usize) } {
        Ok(_) => Ownership::Owned,
        Err(_) => Ownership::NotOwned,
    }
}

/// Implements `DomainAllocator` for a front by forwarding to the shared routing above.
macro_rules! domain_allocator_for_front {
    ($front:ident, $name:literal) => {
        // SAFETY: pool blocks are disjoint blocks of live arenas, aligned as `size_class` explains
        // (multiples of 16, and of the alignment for aligned requests); large blocks come from `L`,
        // which upholds the contract; frees are routed by the registry to the allocator that made
        // the block; realloc copies `min(old, new)` bytes; calloc zeroes pool blocks and uses `L`'s
        // calloc otherwise; usable_size reports the block size, at least the request.
        unsafe impl<P: ArenaProvider, L: DomainAllocator> DomainAllocator for $front<P, L> {
            #[inline]
            fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
                $crate::routing::malloc(self, size)
            }
            fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
                $crate::routing::calloc(self, nelem, elsize)
            }
            unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
                // SAFETY: the caller's guarantee is the routing's.
                unsafe { $crate::routing::realloc(self, ptr, new_size) }
            }
            #[inline]
            unsafe fn free(&self, ptr: *mut u8) {
                // SAFETY: the caller's guarantee is the routing's.
                unsafe { $crate::routing::free(self, ptr) }
            }
            #[inline]
            unsafe fn free_sized(&self, ptr: NonNull<u8>, size: usize) {
                // SAFETY: the caller's guarantee is the routing's.
                unsafe { $crate::routing::free_sized(self, ptr, size) }
            }
            #[inline]
            fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
                $crate::routing::malloc_aligned(self, layout)
            }
            fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
                // Small alignments are the `malloc` family (see `malloc_aligned`).
                alloc_core::calloc_aligned_via_calloc(self, layout)
            }
            #[inline]
            unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
                // SAFETY: the caller's guarantee is the routing's.
                unsafe { $crate::routing::free_aligned(self, ptr, layout) }
            }
            unsafe fn realloc_aligned(
                &self,
                ptr: NonNull<u8>,
                layout: Layout,
                new_size: usize,
            ) -> Option<NonNull<u8>> {
                // SAFETY: the caller's guarantee is the routing's.
                unsafe { $crate::routing::realloc_aligned(self, ptr, layout, new_size) }
            }
            unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
                // SAFETY: the caller's guarantee is the routing's.
                unsafe { $crate::routing::usable_size(self, ptr) }
            }
            fn owns(&self, ptr: *const u8) -> Ownership {
                $crate::routing::owns(self, ptr)
            }
            fn starts_block(&self, ptr: *const u8) -> Ownership {
                $crate::routing::starts_block(self, ptr)
            }
            fn track_ownership(&self) -> bool {
                // Pool blocks are known by their arenas; large ones are the large allocator's.
                self.large().track_ownership()
            }
            fn declares_ownership(&self) -> bool {
                // Every pool block is `Owned` (by its arena); large blocks are the C library's or
                // the large allocator's, which claims them or answers `Unknown` (the C library).
                true
            }
            fn name(&self) -> &str {
                $name
            }
            fn prepare_fork(&self) {
                self.lock_for_fork();
                self.large().prepare_fork();
            }
            unsafe fn after_fork_parent(&self) {
                // SAFETY: the caller's guarantee: on the thread that ran `prepare_fork`.
                unsafe {
                    self.large().after_fork_parent();
                    self.unlock_after_fork();
                }
            }
            unsafe fn after_fork_child(&self) {
                // SAFETY: the caller's guarantee: in the child, on the thread the fork returned in.
                unsafe {
                    self.large().after_fork_child();
                    self.unlock_after_fork();
                    self.forked_child();
                }
            }
        }
    };
}

/// The parts of [`Front`] both fronts answer from their fields alike.
macro_rules! front_fields {
    () => {
        type P = P;
        type L = L;
        #[inline]
        fn geometry(&self) -> &Geometry {
            &self.geo
        }
        #[inline]
        fn owner_id(&self) -> &AtomicU32 {
            &self.id
        }
        #[inline]
        fn large(&self) -> &L {
            &self.large
        }
    };
}
