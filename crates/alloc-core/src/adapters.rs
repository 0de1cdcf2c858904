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
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        or_null(self.0.malloc_aligned(layout))
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        or_null(self.0.calloc_aligned(layout))
    }

    #[inline(always)]
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

/// Makes any [`GlobalAlloc`] (mimalloc, jemalloc, `std::alloc::System`, another crate's global
/// allocator) a [`DomainAllocator`], so that the decorators (`Counting`, `Tracing`, `Guarded`)
/// and the domain table can stand over it.
///
/// `GlobalAlloc` frees need the layout, which PEP 445's `free` does not give: a block of the
/// `malloc` family carries its size in a 16-byte header before it (so it stays 16-aligned), and
/// `free`, `realloc` and `usable_size` read it there. The aligned family (`malloc_aligned`,
/// `free_aligned`, which Rust's own allocations use through [`AsGlobalAlloc`]) passes layouts
/// straight through, with no header. `owns` answers `Unknown`: a `GlobalAlloc` cannot tell its
/// blocks.
///
/// ```
/// use alloc_core::{DomainAllocator, FromGlobalAlloc};
///
/// static STD: FromGlobalAlloc<std::alloc::System> = FromGlobalAlloc::new(std::alloc::System);
///
/// let p = STD.malloc(100).unwrap();
/// // SAFETY: a live block of 100 bytes, freed once.
/// unsafe {
///     assert_eq!(STD.usable_size(p), Some(100));
///     STD.free(p.as_ptr());
/// }
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct FromGlobalAlloc<G>(G);

/// The header before a block of [`FromGlobalAlloc`]'s `malloc` family: the requested size, in
/// `MIN_ALIGN` bytes so the block keeps its alignment.
const SIZE_HEADER: usize = MIN_ALIGN;

impl<G> FromGlobalAlloc<G> {
    /// Wraps `allocator`.
    pub const fn new(allocator: G) -> Self {
        FromGlobalAlloc(allocator)
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &G {
        &self.0
    }
}

/// The layout `G` gets for an aligned-family `layout`: PEP 445's 0-byte rule (one byte) and the
/// contract's 16-byte minimum alignment; the same on allocation and on free.
fn inner_layout(layout: Layout) -> Option<Layout> {
    Layout::from_size_align(layout.size().max(1), layout.align().max(MIN_ALIGN)).ok()
}

/// The inner layout of a `malloc`-family block of `size` bytes (header included).
fn headed(size: usize) -> Option<Layout> {
    let total = size.max(1).checked_add(SIZE_HEADER)?;
    Layout::from_size_align(total, MIN_ALIGN).ok()
}

impl<G: GlobalAlloc> FromGlobalAlloc<G> {
    /// Writes the header of a fresh inner block `raw` of `size` requested bytes; returns the
    /// block's pointer.
    ///
    /// # Safety
    /// `raw` is a live inner block of at least `SIZE_HEADER + size` bytes, aligned to `MIN_ALIGN`.
    #[inline]
    unsafe fn dress(raw: *mut u8, size: usize) -> NonNull<u8> {
        // SAFETY: the caller's guarantee: the header's word is inside the block and aligned.
        unsafe {
            raw.cast::<usize>().write(size.max(1));
            NonNull::new_unchecked(raw.add(SIZE_HEADER))
        }
    }

    /// The inner block of a `malloc`-family block and its inner layout.
    ///
    /// # Safety
    /// `ptr` is a live block of this allocator's `malloc` family.
    #[inline]
    unsafe fn undress(ptr: *mut u8) -> (*mut u8, Layout) {
        // SAFETY: the caller's guarantee: the header precedes the block.
        unsafe {
            let raw = ptr.sub(SIZE_HEADER);
            let size = raw.cast::<usize>().read();
            // The size was accepted by `headed` when the block was made.
            let layout = Layout::from_size_align_unchecked(size + SIZE_HEADER, MIN_ALIGN);
            (raw, layout)
        }
    }
}

// SAFETY: every block comes from `G` (whose `GlobalAlloc` contract gives valid, disjoint blocks
// of the layout asked for): a `malloc`-family block lies `SIZE_HEADER` bytes into an inner block
// of `size + SIZE_HEADER` bytes aligned to `MIN_ALIGN`, so it is 16-aligned and `size` bytes are
// usable; it is released with the layout its header records, the one it was made with. Aligned
// blocks are `G`'s own, released with the caller's layout (the contract's `free_aligned`).
// `realloc` uses `G::realloc` with the recorded layout, which keeps the contents; `calloc` uses
// `G::alloc_zeroed`. A 0-byte request asks for one byte, so blocks are unique.
unsafe impl<G: GlobalAlloc> DomainAllocator for FromGlobalAlloc<G> {
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        let layout = headed(size)?;
        if layout.size() > isize::MAX as usize - MIN_ALIGN {
            return None;
        }
        // SAFETY: a non-zero size.
        let raw = NonNull::new(unsafe { self.0.alloc(layout) })?;
        // SAFETY: a fresh block of `layout`, which holds the header and `size` bytes.
        Some(unsafe { Self::dress(raw.as_ptr(), size) })
    }

    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        let size = crate::checked_array_size(nelem, elsize).ok()?;
        let layout = headed(size)?;
        // SAFETY: a non-zero size.
        let raw = NonNull::new(unsafe { self.0.alloc_zeroed(layout) })?;
        // SAFETY: as in `malloc`; the data bytes stay zeroed (only the header is written).
        Some(unsafe { Self::dress(raw.as_ptr(), size) })
    }

    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        if ptr.is_null() {
            return self.malloc(new_size);
        }
        let new = headed(new_size)?;
        // SAFETY: the caller's guarantee: a live block of the `malloc` family.
        let (raw, old) = unsafe { Self::undress(ptr) };
        // SAFETY: `raw` was allocated by `G` with `old`; `new.size()` is non-zero and fits.
        let moved = NonNull::new(unsafe { self.0.realloc(raw, old, new.size()) })?;
        // SAFETY: a live block of `new`'s size, its old contents (header included) kept.
        Some(unsafe { Self::dress(moved.as_ptr(), new_size) })
    }

    unsafe fn free(&self, ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        // SAFETY: the caller's guarantee: a live block of the `malloc` family, freed once.
        unsafe {
            let (raw, layout) = Self::undress(ptr);
            self.0.dealloc(raw, layout);
        }
    }

    fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        let layout = inner_layout(layout)?;
        // SAFETY: a non-zero size.
        NonNull::new(unsafe { self.0.alloc(layout) })
    }

    fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        let layout = inner_layout(layout)?;
        // SAFETY: a non-zero size.
        NonNull::new(unsafe { self.0.alloc_zeroed(layout) })
    }

    unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
        let layout = inner_layout(layout).unwrap_or(layout);
        // SAFETY: the caller's guarantee: made by `malloc_aligned` with `layout` (adjusted the
        // same way), freed once.
        unsafe { self.0.dealloc(ptr.as_ptr(), layout) }
    }

    unsafe fn realloc_aligned(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        let old = inner_layout(layout)?;
        let new_size = new_size.max(1);
        Layout::from_size_align(new_size, old.align()).ok()?;
        // SAFETY: the caller's guarantee: made with `layout` (adjusted as above); the new size
        // is non-zero and fits with the alignment.
        NonNull::new(unsafe { self.0.realloc(ptr.as_ptr(), old, new_size) })
    }

    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        // SAFETY: the caller's guarantee: a live block of the `malloc` family.
        let (_, layout) = unsafe { Self::undress(ptr.as_ptr()) };
        Some(layout.size() - SIZE_HEADER)
    }

    fn name(&self) -> &str {
        "global-alloc"
    }
}

#[cfg(test)]
mod from_global_alloc_tests {
    use super::FromGlobalAlloc;

    /// A `GlobalAlloc` over `std`'s allocator, as another crate's global allocator would be.
    struct StdGlobal;
    // SAFETY: forwards to `std::alloc::System`, which upholds the contract.
    unsafe impl core::alloc::GlobalAlloc for StdGlobal {
        unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
            // SAFETY: forwarded.
            unsafe { std::alloc::GlobalAlloc::alloc(&std::alloc::System, layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
            // SAFETY: forwarded.
            unsafe { std::alloc::GlobalAlloc::dealloc(&std::alloc::System, ptr, layout) }
        }
    }

    crate::conformance_tests!(over_std_system, FromGlobalAlloc::new(StdGlobal));
}
