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
/// Layouts aligned to at most [`MIN_ALIGN`] use `malloc`/`calloc`/`realloc` and the sized free;
/// larger alignments use the aligned entry points.
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

// SAFETY: every block comes from `A`, which (by its `unsafe impl`) returns valid, disjoint blocks
// aligned to MIN_ALIGN, or to the layout through the aligned entry points; blocks are released
// through the entry point family that made them (chosen by the same alignment test on both sides,
// and GlobalAlloc's callers pass back the layout they allocated with).
unsafe impl<A: DomainAllocator> GlobalAlloc for AsGlobalAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MIN_ALIGN {
            or_null(self.0.malloc(layout.size()))
        } else {
            or_null(self.0.malloc_aligned(layout))
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MIN_ALIGN {
            return or_null(self.0.calloc(1, layout.size()));
        }
        let p = self.0.malloc_aligned(layout);
        if let Some(p) = p {
            // SAFETY: `p` is a fresh block of `layout.size()` bytes.
            unsafe { p.as_ptr().write_bytes(0, layout.size()) };
        }
        or_null(p)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: GlobalAlloc's caller passes a non-null block of this allocator with its layout.
        let ptr = unsafe { NonNull::new_unchecked(ptr) };
        if layout.align() <= MIN_ALIGN {
            // SAFETY: small alignments were allocated with `malloc` (or `calloc`/`realloc`) of
            // `layout.size()` bytes.
            unsafe { self.0.free_sized(ptr, layout.size()) }
        } else {
            // SAFETY: large alignments were allocated with `malloc_aligned(layout)`.
            unsafe { self.0.free_aligned(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MIN_ALIGN {
            // SAFETY: small alignments were allocated with `malloc`/`calloc`/`realloc`.
            or_null(unsafe { self.0.realloc(ptr, new_size) })
        } else {
            // SAFETY: GlobalAlloc's caller passes a non-null block made with `malloc_aligned(layout)`.
            or_null(unsafe {
                self.0
                    .realloc_aligned(NonNull::new_unchecked(ptr), layout, new_size)
            })
        }
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
        if old.align() <= MIN_ALIGN && new.align() <= MIN_ALIGN {
            // SAFETY: small alignments were allocated with `malloc`/`calloc`/`realloc`.
            let p = unsafe { self.0.realloc(ptr.as_ptr(), new.size()) };
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
        if old.align() == new.align() {
            // SAFETY: `ptr` was allocated with `malloc_aligned(old)` (same alignment family).
            let p = unsafe { self.0.realloc_aligned(ptr, old, new.size()) };
            let block = Self::block(p, new.size())?;
            if zero_tail && new.size() > old.size() {
                // SAFETY: as above.
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

// SAFETY: blocks come from `A` (valid, disjoint, aligned as the contract says, to the layout through
// the aligned entry points); each is released through the family that made it, chosen by the same
// alignment test; `realloc` keeps contents, so grow/shrink preserve them as the trait requires.
unsafe impl<A: DomainAllocator> Allocator for AsAllocator<A> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, ApiAllocError> {
        let p = if layout.align() <= MIN_ALIGN {
            self.0.malloc(layout.size())
        } else {
            self.0.malloc_aligned(layout)
        };
        Self::block(p, layout.size())
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, ApiAllocError> {
        if layout.align() <= MIN_ALIGN {
            return Self::block(self.0.calloc(1, layout.size()), layout.size());
        }
        let block = self.allocate(layout)?;
        // SAFETY: the block is fresh and `layout.size()` bytes long.
        unsafe { block.cast::<u8>().as_ptr().write_bytes(0, layout.size()) };
        Ok(block)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.align() <= MIN_ALIGN {
            // SAFETY: the Allocator caller passes a live block allocated with `layout`: small
            // alignments came from `malloc` with `layout.size()` bytes.
            unsafe { self.0.free_sized(ptr, layout.size()) }
        } else {
            // SAFETY: large alignments came from `malloc_aligned(layout)`.
            unsafe { self.0.free_aligned(ptr, layout) }
        }
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
