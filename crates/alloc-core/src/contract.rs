//! The `DomainAllocator` contract: PEP 445's `PyMemAllocatorEx` as a Rust trait.

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use crate::error::AllocError;

/// The alignment every block of every [`DomainAllocator`] has at least: 16 bytes, CPython's
/// `ALIGNMENT`, which is also what `malloc` guarantees on 64-bit platforms.
///
/// Larger alignments are requested through [`DomainAllocator::malloc_aligned`].
pub const MIN_ALIGN: usize = 16;

/// Whether an allocator made a block: the answer of [`DomainAllocator::owns`].
///
/// pymalloc's `address_in_range` answers this for its arenas, which is how a free without a size
/// finds its way; compositions use it to route a free to the allocator that made the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ownership {
    /// The pointer lies in memory this allocator manages: it made the block (if the block is live).
    Owned,
    /// The pointer is certainly not from this allocator.
    NotOwned,
    /// The allocator cannot tell (the C library's `malloc`, for example).
    Unknown,
}

impl Ownership {
    /// `true` only for [`Ownership::Owned`].
    #[inline]
    pub fn is_owned(self) -> bool {
        matches!(self, Ownership::Owned)
    }
}

/// An allocator with PEP 445's contract: the four operations of `PyMemAllocatorEx` (`malloc`,
/// `calloc`, `realloc`, `free`) with `&self` as the context pointer, plus alignment and sizes.
///
/// # The contract
///
/// Every method below restates the rules that apply to it. In short:
///
/// * **Zero bytes.** A request for 0 bytes returns a unique, non-null block that can be freed, as
///   `PyMem_Malloc(0)` does (as if 1 byte had been asked for). `realloc(p, 0)` resizes `p` to a
///   zero-size block; it never frees it.
/// * **Null.** `free(null)` does nothing; `realloc(null, n)` is `malloc(n)`.
/// * **Overflow.** `calloc(nelem, elsize)` whose product overflows fails cleanly (returns `None`).
/// * **Alignment.** Every block from `malloc`, `calloc` and `realloc` is aligned to at least
///   [`MIN_ALIGN`] (16 bytes). Larger alignments go through [`malloc_aligned`](Self::malloc_aligned),
///   which every allocator supports, by itself or by the provided fallback; such blocks are released
///   with [`free_aligned`](Self::free_aligned) and resized with
///   [`realloc_aligned`](Self::realloc_aligned).
/// * **Sizes.** `free` does not need the size (a C caller does not have it);
///   [`free_sized`](Self::free_sized) is a faster path for callers who know it.
///   [`usable_size`](Self::usable_size) and [`owns`](Self::owns) answer where the allocator knows,
///   and may answer "unknown".
/// * **Failure** is a value (`None`), never a panic and never an abort inside the allocator. A failed
///   `realloc` leaves the original block untouched and still owned by the caller.
///
/// Allocation methods return `Option<NonNull<u8>>` (`None` is the C `NULL`); the `try_*` methods
/// return the same as a typed [`AllocError`] for callers who want to report why.
///
/// # Safety
///
/// The trait is `unsafe` to implement: the implementor promises that
///
/// * every block it returns is valid for reads and writes of the requested size, aligned as stated
///   above, and disjoint from every other live block of this allocator;
/// * a block stays valid until it is passed to `free`, `free_sized`, `free_aligned` or moved by a
///   successful `realloc`/`realloc_aligned`, and not longer;
/// * `realloc` and `realloc_aligned` keep the contents up to the smaller of the old and new sizes;
/// * `calloc` returns zeroed memory;
/// * `usable_size`, when it answers `Some(n)`, answers with `n` at least the requested size, and all
///   `n` bytes may be used;
/// * `owns` never answers [`Ownership::Owned`] for a block made elsewhere nor
///   [`Ownership::NotOwned`] for a block it made.
///
/// An implementation that overrides one of `malloc_aligned` and `free_aligned` overrides both; the
/// provided `realloc_aligned` is built on them (allocate, copy, free), so it may stay.
///
/// # Example
///
/// A counting wrapper, the PEP 445 hook pattern: forward every call to the allocator it wraps.
///
/// ```
/// use alloc_core::{DomainAllocator, System};
/// use core::ptr::NonNull;
/// use core::sync::atomic::{AtomicUsize, Ordering};
///
/// struct CountMallocs<A> { inner: A, mallocs: AtomicUsize }
///
/// // SAFETY: every block comes from `inner`, which upholds the contract; nothing is changed.
/// unsafe impl<A: DomainAllocator> DomainAllocator for CountMallocs<A> {
///     fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
///         self.mallocs.fetch_add(1, Ordering::Relaxed);
///         self.inner.malloc(size)
///     }
///     unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
///         // SAFETY: the caller's guarantee for `ptr` is the one `inner.realloc` needs.
///         unsafe { self.inner.realloc(ptr, new_size) }
///     }
///     unsafe fn free(&self, ptr: *mut u8) {
///         // SAFETY: as for realloc.
///         unsafe { self.inner.free(ptr) }
///     }
/// }
///
/// let a = CountMallocs { inner: System, mallocs: AtomicUsize::new(0) };
/// let p = a.malloc(100).unwrap();
/// // SAFETY: `p` is a live block of `a`, freed once.
/// unsafe { a.free(p.as_ptr()) };
/// assert_eq!(a.mallocs.load(Ordering::Relaxed), 1);
/// ```
pub unsafe trait DomainAllocator {
    /// Allocates `size` bytes, uninitialised, aligned to [`MIN_ALIGN`].
    ///
    /// `size == 0` returns a unique non-null block that must be freed like any other. Returns `None`
    /// when the memory cannot be had (or `size` exceeds `isize::MAX`); never panics.
    fn malloc(&self, size: usize) -> Option<NonNull<u8>>;

    /// Allocates `nelem * elsize` bytes, zeroed, aligned to [`MIN_ALIGN`].
    ///
    /// Returns `None` if `nelem * elsize` overflows `usize` (or exceeds `isize::MAX`), without
    /// allocating. A zero product returns a unique non-null block, as [`malloc(0)`](Self::malloc).
    ///
    /// The provided implementation is `malloc` followed by zeroing; allocators that know their fresh
    /// memory is zero override it.
    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        let size = checked_array_size(nelem, elsize).ok()?;
        let p = self.malloc(size)?;
        // SAFETY: `p` is a fresh block of `size` bytes (the contract of `malloc`).
        unsafe { p.as_ptr().write_bytes(0, size) };
        Some(p)
    }

    /// Resizes the block at `ptr` to `new_size` bytes, keeping its contents up to the smaller of the
    /// old and new sizes; the block may move.
    ///
    /// * `ptr` null: same as [`malloc(new_size)`](Self::malloc).
    /// * `new_size == 0`: the block becomes a zero-size block (unique, non-null); it is not freed.
    /// * Failure: returns `None` and the block at `ptr` is untouched and still live.
    ///
    /// # Safety
    ///
    /// `ptr` is null or a live block returned by `malloc`, `calloc` or `realloc` of this allocator
    /// (not by `malloc_aligned`). On success the old pointer must no longer be used.
    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>>;

    /// Releases the block at `ptr`. `ptr` null: does nothing.
    ///
    /// # Safety
    ///
    /// `ptr` is null or a live block returned by `malloc`, `calloc` or `realloc` of this allocator
    /// (not by `malloc_aligned`), and is not used after this call.
    unsafe fn free(&self, ptr: *mut u8);

    /// Releases a block whose size the caller knows: the fast path of `free` (pool allocators skip
    /// the lookup of the size class). The provided implementation calls [`free`](Self::free).
    ///
    /// # Safety
    ///
    /// As for [`free`](Self::free), and `size` is the size most recently requested for the block (by
    /// `malloc`, `realloc`, or `nelem * elsize` for `calloc`).
    unsafe fn free_sized(&self, ptr: NonNull<u8>, size: usize) {
        let _ = size;
        // SAFETY: the caller's guarantee is `free`'s guarantee.
        unsafe { self.free(ptr.as_ptr()) }
    }

    /// Allocates a block for `layout`: `layout.size()` bytes aligned to at least
    /// `max(layout.align(), MIN_ALIGN)`. A zero-size layout gives a unique non-null block.
    ///
    /// The provided implementation calls `malloc` when the alignment is at most [`MIN_ALIGN`];
    /// otherwise it over-allocates with `malloc` and keeps the original pointer just before the
    /// aligned block, so the block must be released with [`free_aligned`](Self::free_aligned).
    fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        if layout.align() <= MIN_ALIGN {
            return self.malloc(layout.size());
        }
        let total = layout.size().checked_add(layout.align())?;
        let raw = self.malloc(total)?;
        let addr = raw.as_ptr() as usize;
        // `raw` is MIN_ALIGN-aligned and `align > MIN_ALIGN`, so the aligned address is at least
        // MIN_ALIGN bytes past `raw` (room for the back pointer) and at most `align` bytes past it
        // (room for `size` bytes after it within `total`).
        let offset = (addr + 1).next_multiple_of(layout.align()) - addr;
        // SAFETY: `offset <= align`, so `raw + offset` stays within the `total`-byte block.
        let aligned = unsafe { raw.as_ptr().add(offset) };
        // SAFETY: `offset >= MIN_ALIGN >= size_of::<*mut u8>()`, so the word before `aligned` lies in
        // the block; it is aligned because `aligned` is aligned to more than a word.
        unsafe { aligned.cast::<*mut u8>().sub(1).write(raw.as_ptr()) };
        NonNull::new(aligned)
    }

    /// Allocates a zeroed block for `layout`, of the aligned family: released with
    /// [`free_aligned`](Self::free_aligned), resized with
    /// [`realloc_aligned`](Self::realloc_aligned). The provided implementation zeroes a block from
    /// [`malloc_aligned`](Self::malloc_aligned) (so it keeps to that family whatever the
    /// implementation does there); an allocator whose aligned family is its `malloc` family for
    /// small alignments may answer with `calloc` instead, which can skip the zeroing of fresh
    /// memory.
    fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        zeroed(self.malloc_aligned(layout), layout.size())
    }

    /// Releases a block from [`malloc_aligned`](Self::malloc_aligned),
    /// [`calloc_aligned`](Self::calloc_aligned) or [`realloc_aligned`](Self::realloc_aligned).
    ///
    /// Alignments up to [`MIN_ALIGN`] are all one: a block made with one of them may be given
    /// back, or resized, with a layout of another (every block is `MIN_ALIGN`-aligned anyway).
    ///
    /// # Safety
    ///
    /// `ptr` is a live block returned by `malloc_aligned`, `calloc_aligned` or `realloc_aligned`
    /// of this allocator with this `layout` (its size, and its alignment or another up to
    /// `MIN_ALIGN` when it was made with one up to `MIN_ALIGN`; for `realloc_aligned`: the new
    /// size), and is not used after this call.
    unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.align() <= MIN_ALIGN {
            // SAFETY: blocks of small alignment came from `malloc` with this size.
            unsafe { self.free_sized(ptr, layout.size()) };
            return;
        }
        // SAFETY: the provided `malloc_aligned` stored the original pointer in the word before the
        // block; the caller guarantees `ptr` came from it.
        let raw = unsafe { ptr.as_ptr().cast::<*mut u8>().sub(1).read() };
        // SAFETY: `raw` is the live `malloc` block that holds `ptr`.
        unsafe { self.free(raw) };
    }

    /// Resizes a block from [`malloc_aligned`](Self::malloc_aligned) to `new_size` bytes, keeping
    /// its alignment and its contents up to the smaller size. On failure returns `None` and the old
    /// block is untouched.
    ///
    /// # Safety
    ///
    /// `ptr` is a live block of the aligned family of this allocator with this `layout` (as for
    /// [`free_aligned`](Self::free_aligned)). On success the old pointer must no longer be used.
    unsafe fn realloc_aligned(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        if layout.align() <= MIN_ALIGN {
            // SAFETY: blocks of small alignment came from `malloc`.
            return unsafe { self.realloc(ptr.as_ptr(), new_size) };
        }
        let new_layout = Layout::from_size_align(new_size, layout.align()).ok()?;
        let new = self.malloc_aligned(new_layout)?;
        // SAFETY: both blocks are live, disjoint, and at least `min(old, new)` bytes long.
        unsafe {
            ptr::copy_nonoverlapping(ptr.as_ptr(), new.as_ptr(), layout.size().min(new_size));
            self.free_aligned(ptr, layout);
        }
        Some(new)
    }

    /// The number of bytes usable at `ptr`, at least the size requested; `None` when the allocator
    /// cannot tell (the provided answer).
    ///
    /// # Safety
    ///
    /// `ptr` is a live block returned by `malloc`, `calloc` or `realloc` of this allocator.
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        let _ = ptr;
        None
    }

    /// Whether `ptr` lies in memory this allocator manages; [`Ownership::Unknown`] when it cannot
    /// tell (the provided answer). Safe to call with any pointer, live or not.
    fn owns(&self, ptr: *const u8) -> Ownership {
        let _ = ptr;
        Ownership::Unknown
    }

    /// Whether a block of this allocator starts at `ptr`: [`Ownership::Owned`] where one does
    /// (live, or freed in memory it still manages), [`Ownership::NotOwned`] where none can (memory
    /// of its own where no block starts: inside a block, misaligned, a pool with no block in
    /// use; or memory it does not manage), [`Ownership::Unknown`] when it cannot tell. Safe to
    /// call with any pointer. The provided answer is [`owns`](Self::owns)'s, which an allocator
    /// that knows where its blocks start narrows (the pools and spans do).
    ///
    /// A domain asks it to tell a block made before a debug hook was stacked on the allocator
    /// (which the allocator frees) from a pointer into the allocator's memory that is no block
    /// of it, such as a block the hook made and freed already (which the hook reports).
    fn starts_block(&self, ptr: *const u8) -> Ownership {
        self.owns(ptr)
    }

    /// Asks the allocator to answer [`owns`](Self::owns) exactly from now on: `Owned` for every
    /// block it makes after this call, `NotOwned` for every pointer it did not make. Returns
    /// whether that holds for every live block it made, including those made before the call.
    ///
    /// Most allocators answer `owns` from their own structures at no extra cost and ignore the
    /// request (the provided implementation returns `true`). An allocator that must remember its
    /// blocks to tell them apart, at a price on every allocation and free (a decorator that puts
    /// a header in front of its inner allocator's blocks), remembers nothing until asked, answers
    /// `Unknown` until then, and returns `false` if it made blocks before the call (it cannot
    /// claim those). A decorator that hands out its inner allocator's blocks unchanged forwards
    /// the call. A domain asks this of every allocator it installs (see `alloc-domains`), so that
    /// frees can be routed by `owns`; a composition used directly never pays for it.
    fn track_ownership(&self) -> bool {
        true
    }

    /// Whether this allocator declares that, once [`track_ownership`](Self::track_ownership)
    /// returned `true`, [`owns`](Self::owns) answers `Owned` for every block it makes, except the
    /// blocks it takes from the C library unchanged (a pool's large blocks over `System`), which
    /// every allocator of a domain hands back to the C library's `free`. A domain reads it, and
    /// calls nothing else, to decide whether frees may be routed by `owns` when the allocator
    /// cannot tell about a pointer it never made (it answers `Unknown` there, as a pool over the
    /// C library does).
    ///
    /// The provided answer is `false`, the safe one: such an allocator is accepted by a domain
    /// only before the domain's first allocation. The pools declare `true`; a decorator that
    /// hands out its inner allocator's blocks unchanged forwards the question.
    fn declares_ownership(&self) -> bool {
        false
    }

    /// A short name for reports and listings; the provided one is the type's name.
    fn name(&self) -> &str {
        core::any::type_name::<Self>()
    }

    /// Writes where the block at `ptr` was allocated, if this allocator, or one it wraps, records
    /// it (a tracing decorator does); returns whether it wrote anything. Debug decorators put it in
    /// their reports. The provided implementation knows nothing and returns `false`.
    ///
    /// Safe to call with any pointer: an allocator that does not know the block writes nothing.
    fn write_origin(&self, ptr: *const u8, out: &mut dyn core::fmt::Write) -> bool {
        let _ = (ptr, out);
        false
    }

    /// [`write_origin`](Self::write_origin) for a block of the aligned family made with `layout`
    /// (a decorator that lays out the two families differently finds its inner block by the
    /// layout). The provided implementation asks `write_origin`.
    fn write_origin_aligned(
        &self,
        ptr: *const u8,
        layout: Layout,
        out: &mut dyn core::fmt::Write,
    ) -> bool {
        let _ = layout;
        self.write_origin(ptr, out)
    }

    /// Fork support, first half: called in the parent just before `fork()` (a `pthread_atfork`
    /// prepare handler), it takes every lock the allocator's paths can hold, its own and those of
    /// the allocators it wraps (outermost first), so that the child does not inherit a lock held by
    /// a thread that no longer exists there. Reaching the same allocator twice for one fork (one
    /// allocator under two decorators) must be harmless: take each lock at most once per fork
    /// ([`Lock::acquire_for_fork`](crate::lock::Lock::acquire_for_fork) does). Provided: nothing
    /// to take.
    fn prepare_fork(&self) {}

    /// Fork support, in the parent after `fork()`: releases what [`prepare_fork`] took (innermost
    /// first). Provided: nothing.
    ///
    /// # Safety
    /// Only after [`prepare_fork`] on this allocator, by the same thread; a second call for the
    /// same fork must do nothing.
    ///
    /// [`prepare_fork`]: Self::prepare_fork
    unsafe fn after_fork_parent(&self) {}

    /// Fork support, in the child after `fork()`: releases what [`prepare_fork`] took and makes the
    /// allocator usable by the child's only thread. Provided: nothing.
    ///
    /// # Safety
    /// Only in the child of a `fork()` whose parent called [`prepare_fork`] on this allocator
    /// just before; a second call for the same fork must do nothing.
    ///
    /// [`prepare_fork`]: Self::prepare_fork
    unsafe fn after_fork_child(&self) {}

    /// [`malloc`](Self::malloc) with a typed error.
    fn try_malloc(&self, size: usize) -> Result<NonNull<u8>, AllocError> {
        self.malloc(size).ok_or(AllocError::OutOfMemory {
            size,
            align: MIN_ALIGN,
        })
    }

    /// [`calloc`](Self::calloc) with a typed error that tells overflow from exhaustion.
    fn try_calloc(&self, nelem: usize, elsize: usize) -> Result<NonNull<u8>, AllocError> {
        let size = checked_array_size(nelem, elsize)?;
        self.calloc(nelem, elsize).ok_or(AllocError::OutOfMemory {
            size,
            align: MIN_ALIGN,
        })
    }

    /// [`malloc_aligned`](Self::malloc_aligned) with a typed error.
    fn try_malloc_aligned(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.malloc_aligned(layout).ok_or(AllocError::OutOfMemory {
            size: layout.size(),
            align: layout.align(),
        })
    }
}

/// [`calloc_aligned`](DomainAllocator::calloc_aligned) for an allocator whose aligned family, at
/// alignments up to [`MIN_ALIGN`], is its `malloc` family (as the provided `malloc_aligned` makes
/// it): `calloc` there, which may skip zeroing fresh memory, and a zeroed block from
/// `malloc_aligned` above.
pub fn calloc_aligned_via_calloc<A: DomainAllocator + ?Sized>(
    a: &A,
    layout: Layout,
) -> Option<NonNull<u8>> {
    if layout.align() <= MIN_ALIGN {
        return a.calloc(1, layout.size());
    }
    zeroed(a.malloc_aligned(layout), layout.size())
}

/// `p`, a fresh block of `size` bytes if any, with its bytes zeroed.
fn zeroed(p: Option<NonNull<u8>>, size: usize) -> Option<NonNull<u8>> {
    let p = p?;
    // SAFETY: a fresh block of `size` bytes (the callers').
    unsafe { p.as_ptr().write_bytes(0, size) };
    Some(p)
}

/// `nelem * elsize` if it fits in `isize::MAX`, as `calloc` needs.
///
/// ```
/// # use alloc_core::AllocError;
/// assert_eq!(alloc_core::checked_array_size(3, 8), Ok(24));
/// assert!(matches!(
///     alloc_core::checked_array_size(usize::MAX, 2),
///     Err(AllocError::SizeOverflow { .. })
/// ));
/// ```
pub fn checked_array_size(nelem: usize, elsize: usize) -> Result<usize, AllocError> {
    match nelem.checked_mul(elsize) {
        Some(n) if n <= isize::MAX as usize => Ok(n),
        _ => Err(AllocError::SizeOverflow { nelem, elsize }),
    }
}

// SAFETY: forwards every call to `A`, which upholds the contract.
unsafe impl<A: DomainAllocator + ?Sized> DomainAllocator for &A {
    #[inline]
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        (**self).malloc(size)
    }
    #[inline]
    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        (**self).calloc(nelem, elsize)
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: the caller's guarantee, forwarded unchanged.
        unsafe { (**self).realloc(ptr, new_size) }
    }
    #[inline]
    unsafe fn free(&self, ptr: *mut u8) {
        // SAFETY: the caller's guarantee, forwarded unchanged.
        unsafe { (**self).free(ptr) }
    }
    #[inline]
    unsafe fn free_sized(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: the caller's guarantee, forwarded unchanged.
        unsafe { (**self).free_sized(ptr, size) }
    }
    #[inline]
    fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        (**self).malloc_aligned(layout)
    }
    #[inline]
    fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        (**self).calloc_aligned(layout)
    }
    #[inline]
    unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's guarantee, forwarded unchanged.
        unsafe { (**self).free_aligned(ptr, layout) }
    }
    #[inline]
    unsafe fn realloc_aligned(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: the caller's guarantee, forwarded unchanged.
        unsafe { (**self).realloc_aligned(ptr, layout, new_size) }
    }
    #[inline]
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        // SAFETY: the caller's guarantee, forwarded unchanged.
        unsafe { (**self).usable_size(ptr) }
    }
    #[inline]
    fn owns(&self, ptr: *const u8) -> Ownership {
        (**self).owns(ptr)
    }
    fn starts_block(&self, ptr: *const u8) -> Ownership {
        (**self).starts_block(ptr)
    }
    fn track_ownership(&self) -> bool {
        (**self).track_ownership()
    }
    fn declares_ownership(&self) -> bool {
        (**self).declares_ownership()
    }
    fn name(&self) -> &str {
        (**self).name()
    }
    fn write_origin(&self, ptr: *const u8, out: &mut dyn core::fmt::Write) -> bool {
        (**self).write_origin(ptr, out)
    }
    fn write_origin_aligned(
        &self,
        ptr: *const u8,
        layout: Layout,
        out: &mut dyn core::fmt::Write,
    ) -> bool {
        (**self).write_origin_aligned(ptr, layout, out)
    }
    fn prepare_fork(&self) {
        (**self).prepare_fork()
    }
    unsafe fn after_fork_parent(&self) {
        // SAFETY: the caller's guarantee, forwarded unchanged.
        unsafe { (**self).after_fork_parent() }
    }
    unsafe fn after_fork_child(&self) {
        // SAFETY: the caller's guarantee, forwarded unchanged.
        unsafe { (**self).after_fork_child() }
    }
}
