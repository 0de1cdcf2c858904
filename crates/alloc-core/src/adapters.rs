//! Adapters from [`DomainAllocator`] to Rust's allocator traits.
//!
//! Adapters, not blanket impls: a wrapper type states which face of an allocator is in use, and two
//! crates can never disagree about an impl.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use allocator_api2::alloc::{AllocError as ApiAllocError, Allocator};

use crate::contract::{DomainAllocator, MIN_ALIGN};

/// Makes any [`DomainAllocator`] a [`GlobalAlloc`], for `#[global_allocator]`.
///
/// Every layout goes through the aligned family (`malloc_aligned`, `calloc_aligned`,
/// `realloc_aligned`, `free_aligned`), which knows each block's layout on both ends: for
/// alignments up to [`MIN_ALIGN`] an allocator answers it with its `malloc` family and sized
/// free, and a decorator that needs a block's size on an unsized free (a header) can do without
/// one here.
///
/// ```
/// use alloc_core::{AsGlobalAlloc, System};
///
/// #[global_allocator]
/// static GLOBAL: AsGlobalAlloc<System> = AsGlobalAlloc::new(System);
///
/// let v: Vec<u64> = (0..1000).collect();
/// assert_eq!(v.iter().sum::<u64>(), 499_500);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct AsGlobalAlloc<A>(A);

impl<A> AsGlobalAlloc<A> {
    /// Wraps `allocator`.
    pub const fn new(allocator: A) -> Self {
        AsGlobalAlloc(allocator)
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.0
    }
}

#[inline]
fn or_null(p: Option<NonNull<u8>>) -> *mut u8 {
    p.map_or(ptr::null_mut(), NonNull::as_ptr)
}

// SAFETY: every block comes from `A`'s aligned family (`malloc_aligned`, `calloc_aligned`,
// `realloc_aligned`), which (by its `unsafe impl`) returns valid, disjoint blocks aligned to the
// layout; each is released by `free_aligned` with the layout GlobalAlloc's caller passes back,
// the layout it was allocated with (or, after `realloc`, its new size).
unsafe impl<A: DomainAllocator> GlobalAlloc for AsGlobalAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        or_null(self.0.malloc_aligned(layout))
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        or_null(self.0.calloc_aligned(layout))
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: GlobalAlloc's caller passes a non-null block of this allocator with its layout,
        // made by the aligned family.
        unsafe { self.0.free_aligned(NonNull::new_unchecked(ptr), layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: GlobalAlloc's caller passes a non-null block made with `layout` by the aligned
        // family.
        or_null(unsafe {
            self.0
                .realloc_aligned(NonNull::new_unchecked(ptr), layout, new_size)
        })
    }
}

/// Makes any [`DomainAllocator`] an [`allocator_api2::alloc::Allocator`], so that collections
/// generic over an allocator use it.
///
/// Pass it by reference to share one allocator among collections (allocator-api2 implements
/// `Allocator` for `&A`).
///
/// ```
/// use alloc_core::{AsAllocator, System};
/// use allocator_api2::vec::Vec;
/// use hashbrown::HashMap;
///
/// let alloc = AsAllocator::new(System);
///
/// let mut v = Vec::new_in(&alloc);
/// v.extend(0..100u32);
/// assert_eq!(v.len(), 100);
///
/// let mut m = HashMap::new_in(&alloc);
/// m.insert("pool", 16);
/// m.insert("arena", 1 << 20);
/// assert_eq!(m["arena"], 1 << 20);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct AsAllocator<A>(A);

impl<A> AsAllocator<A> {
    /// Wraps `allocator`.
    pub const fn new(allocator: A) -> Self {
        AsAllocator(allocator)
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.0
    }
}

impl<A: DomainAllocator> AsAllocator<A> {
    #[inline]
    fn block(p: Option<NonNull<u8>>, len: usize) -> Result<NonNull<[u8]>, ApiAllocError> {
        p.map(|p| NonNull::slice_from_raw_parts(p, len))
            .ok_or(ApiAllocError)
    }

    /// Moves a block to a new layout through allocate + copy + deallocate: used when either
    /// alignment is above MIN_ALIGN and the two alignments differ.
    ///
    /// # Safety
    /// `ptr` is a live block of this allocator allocated with `old`.
    unsafe fn relocate(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        zero_tail: bool,
    ) -> Result<NonNull<[u8]>, ApiAllocError> {
        let fresh = self.allocate(new)?;
        let keep = old.size().min(new.size());
        // SAFETY: both blocks are live and disjoint and hold at least `keep` bytes; the tail written
        // with zeros lies inside the new block; `ptr` was allocated with `old` (caller).
        unsafe {
            ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.cast::<u8>().as_ptr(), keep);
            if zero_tail {
                fresh
                    .cast::<u8>()
                    .as_ptr()
                    .add(keep)
                    .write_bytes(0, new.size() - keep);
            }
            self.deallocate(ptr, old);
        }
        Ok(fresh)
    }

    /// # Safety
    /// `ptr` is a live block of this allocator allocated with `old`.
    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        zero_tail: bool,
    ) -> Result<NonNull<[u8]>, ApiAllocError> {
        // Alignments up to MIN_ALIGN are one (the contract), so such a block resizes in place.
        if old.align() == new.align() || (old.align() <= MIN_ALIGN && new.align() <= MIN_ALIGN) {
            // SAFETY: `ptr` was allocated with `old` by the aligned family.
            let p = unsafe { self.0.realloc_aligned(ptr, old, new.size()) };
            let block = Self::block(p, new.size())?;
            if zero_tail && new.size() > old.size() {
                // SAFETY: the bytes from `old.size()` to `new.size()` lie inside the new block.
                unsafe {
                    block
                        .cast::<u8>()
                        .as_ptr()
                        .add(old.size())
                        .write_bytes(0, new.size() - old.size())
                };
            }
            return Ok(block);
        }
        // SAFETY: the caller's guarantee.
        unsafe { self.relocate(ptr, old, new, zero_tail) }
    }
}

// SAFETY: blocks come from `A`'s aligned family (valid, disjoint, aligned to the layout); each
// is released by `free_aligned` with the layout it has (alignments up to MIN_ALIGN being one);
// `realloc_aligned` keeps contents, so grow/shrink preserve them as the trait requires.
unsafe impl<A: DomainAllocator> Allocator for AsAllocator<A> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, ApiAllocError> {
        Self::block(self.0.malloc_aligned(layout), layout.size())
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, ApiAllocError> {
        Self::block(self.0.calloc_aligned(layout), layout.size())
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the Allocator caller passes a live block allocated with `layout` (or a layout
        // that fits it: the same alignment, or one up to MIN_ALIGN for a block made with one up to
        // MIN_ALIGN), by the aligned family.
        unsafe { self.0.free_aligned(ptr, layout) }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, ApiAllocError> {
        // SAFETY: the Allocator caller passes a live block allocated with `old`.
        unsafe { self.resize(ptr, old, new, false) }
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, ApiAllocError> {
        // SAFETY: as for `grow`.
        unsafe { self.resize(ptr, old, new, true) }
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, ApiAllocError> {
        // SAFETY: as for `grow`.
        unsafe { self.resize(ptr, old, new, false) }
    }
}
