//! `ArenaProvider`: PEP 445's `PyObjectArenaAllocator`, the source of a pool allocator's memory.

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::error::ArenaError;

/// A source of large, aligned chunks of memory ("arenas") for a pool allocator: PEP 445's
/// `PyObjectArenaAllocator` (`alloc(ctx, size)` / `free(ctx, ptr, size)`), with the alignment made
/// explicit and the decommit operations pymalloc's successors need.
///
/// Pool allocators ask for arenas aligned to their size, so that the arena (and pool) of any block is
/// found by masking its address.
///
/// # Safety
///
/// The trait is `unsafe` to implement: the implementor promises that an arena returned by
/// [`alloc`](Self::alloc) is valid for reads and writes of `layout.size()` bytes, aligned to
/// `layout.align()`, disjoint from every other live arena, and stays valid until passed to
/// [`free`](Self::free); and that after [`decommit`](Self::decommit) followed by
/// [`commit`](Self::commit) the range is again valid.
pub unsafe trait ArenaProvider {
    /// Allocates an arena of `layout.size()` bytes aligned to `layout.align()`.
    ///
    /// Failure is an [`ArenaError`], never a panic.
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, ArenaError>;

    /// Returns an arena to the provider.
    ///
    /// # Safety
    ///
    /// `ptr` was returned by [`alloc`](Self::alloc) of this provider with this `layout`, and no part
    /// of it is used after this call.
    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout);

    /// Gives the physical memory behind `len` bytes at `ptr` back to the system while keeping the
    /// address range reserved. Returns whether anything was done; the provided implementation does
    /// nothing and returns `false`.
    ///
    /// # Safety
    ///
    /// The range lies inside a live arena of this provider, is page-aligned, and its contents are no
    /// longer needed. Before it is used again it must be [`commit`](Self::commit)ted.
    unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> bool {
        let _ = (ptr, len);
        false
    }

    /// Makes a range decommitted by [`decommit`](Self::decommit) usable again. The provided
    /// implementation does nothing (for providers whose decommit is a no-op, or whose decommitted
    /// pages come back on first touch).
    ///
    /// # Safety
    ///
    /// The range lies inside a live arena of this provider and is page-aligned.
    unsafe fn commit(&self, ptr: NonNull<u8>, len: usize) -> Result<(), ArenaError> {
        let _ = (ptr, len);
        Ok(())
    }

    /// Whether fresh arenas (and recommitted ranges) read as zero, so a pool may skip zeroing for
    /// `calloc`. The provided answer is `false`.
    fn fresh_memory_is_zeroed(&self) -> bool {
        false
    }
}

// SAFETY: forwards every call to `P`, which upholds the contract.
unsafe impl<P: ArenaProvider + ?Sized> ArenaProvider for &P {
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, ArenaError> {
        (**self).alloc(layout)
    }
    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's guarantee, forwarded unchanged.
        unsafe { (**self).free(ptr, layout) }
    }
    unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> bool {
        // SAFETY: the caller's guarantee, forwarded unchanged.
        unsafe { (**self).decommit(ptr, len) }
    }
    unsafe fn commit(&self, ptr: NonNull<u8>, len: usize) -> Result<(), ArenaError> {
        // SAFETY: the caller's guarantee, forwarded unchanged.
        unsafe { (**self).commit(ptr, len) }
    }
    fn fresh_memory_is_zeroed(&self) -> bool {
        (**self).fresh_memory_is_zeroed()
    }
}
