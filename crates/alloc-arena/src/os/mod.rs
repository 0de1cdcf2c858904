//! The operating system, behind one provider type: `OsArenas`.
//!
//! Every OS difference lives in `unix.rs` or `windows.rs`; both offer the same private functions
//! (`map_aligned`, `unmap`, `decommit`, `commit`, `page_size`, `advise_huge`, `yield_now`, `fatal`,
//! `now_ms`, `random_u64`) and the public [`ExitKey`] (the OS's per-thread slot, whose destructor
//! reports a thread's end), and this module builds the public [`OsArenas`] from them.
//! `thread_local` holds the `std` build's native thread-local (hand-written initial-exec TLS on
//! x86-64 Linux). No other module of the crate calls the OS. On a target with neither (an
//! embedded `target_os = "none"`), `none.rs` gives the same functions without one: nothing is
//! mapped, there is no clock and no thread key, and `OsArenas` (with `PoolAllocator`, whose
//! per-thread heaps need the OS) does not exist.

#[cfg(any(unix, windows))]
use core::alloc::Layout;
use core::ptr::NonNull;

#[cfg(any(unix, windows))]
use alloc_core::{ArenaError, ArenaProvider};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

#[cfg(not(any(unix, windows)))]
mod none;
#[cfg(not(any(unix, windows)))]
use none as imp;

pub use imp::ExitKey;
pub(crate) use imp::{fatal, now_ms, page_size, random_u64, yield_now};
#[cfg(all(unix, target_pointer_width = "64", not(loom)))]
pub(crate) use imp::{
    make_writable, release_zeroed, reserve_aligned_zeroed, reserve_zeroed, unreserve,
};

/// What an [`ExitKey`] does when a thread that stored a value in it ends.
///
/// An `ExitKey<H>` is one slot per thread for a pointer-sized value, kept by the OS (a pthread
/// key on unix, a fiber-local index on windows) and created at its first `set`, with no
/// allocation by this crate and no destructor of its own; when a thread that stored a non-null
/// value ends, the OS calls `H::ended` with it. The pools hear of a thread's end this way (to
/// give its heaps up), and so can a crate above them (alloc-domains gives a reader slot back).
/// Without an OS the key stores nothing and no end is heard.
///
/// ```
/// # #[cfg(unix)] {
/// use alloc_arena::{ExitKey, ThreadExit};
/// use core::sync::atomic::{AtomicUsize, Ordering};
///
/// static ENDED: AtomicUsize = AtomicUsize::new(0);
/// struct Count;
/// impl ThreadExit for Count {
///     fn ended(value: *mut core::ffi::c_void) {
///         ENDED.fetch_add(value as usize, Ordering::SeqCst);
///     }
/// }
/// static KEY: ExitKey<Count> = ExitKey::new();
///
/// std::thread::spawn(|| {
///     assert!(KEY.set(7 as *mut _));
///     assert_eq!(KEY.get() as usize, 7);
/// })
/// .join()
/// .unwrap();
/// assert_eq!(ENDED.load(Ordering::SeqCst), 7);
/// assert!(KEY.get().is_null()); // this thread stored nothing
/// # }
/// ```
pub trait ThreadExit {
    /// Called on the ending thread, with the non-null value it stored last. It runs among the
    /// thread's other destructors: it must not rely on thread-locals that may be gone, and
    /// what it allocates, it frees.
    fn ended(value: *mut core::ffi::c_void);
}

impl<H: ThreadExit> Default for ExitKey<H> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "std")]
pub(crate) mod thread_local;

#[cfg(feature = "valgrind")]
pub(crate) mod valgrind;

/// An [`ArenaProvider`] that maps arenas from the operating system: `mmap`/`munmap` on unix,
/// `VirtualAlloc`/`VirtualFree` on windows.
///
/// * Arenas are aligned to their layout's alignment (the pool asks for alignment equal to the
///   arena size, so an arena is found by masking any address inside it).
/// * [`decommit`](ArenaProvider::decommit) gives pages back (`madvise(MADV_DONTNEED)` /
///   `MEM_DECOMMIT`) while keeping the addresses; [`free`](ArenaProvider::free) returns the whole
///   arena to the OS.
/// * Optional transparent huge-page advice (`MADV_HUGEPAGE`, linux only).
/// * A refused mapping is an [`ArenaError::Os`] carrying the OS error code, never a panic.
///
/// ```
/// use alloc_arena::OsArenas;
/// use alloc_core::ArenaProvider;
/// use core::alloc::Layout;
///
/// let layout = Layout::from_size_align(1 << 20, 1 << 20).unwrap();
/// let arena = OsArenas::new().alloc(layout).expect("the OS refused 1 MiB");
/// assert_eq!(arena.as_ptr() as usize % (1 << 20), 0);
/// // SAFETY: the arena was just made with this layout and is not used afterwards.
/// unsafe { OsArenas::new().free(arena, layout) };
/// ```
#[cfg(any(unix, windows))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OsArenas {
    huge_pages: bool,
}

#[cfg(any(unix, windows))]
impl OsArenas {
    /// A provider with default settings (no huge-page advice).
    pub const fn new() -> Self {
        OsArenas { huge_pages: false }
    }

    /// A provider that advises the OS to back arenas with transparent huge pages where it can
    /// (linux `MADV_HUGEPAGE`; ignored elsewhere). Faster TLB behaviour for large heaps, at the
    /// cost of coarser memory return.
    pub const fn with_huge_pages(huge_pages: bool) -> Self {
        OsArenas { huge_pages }
    }

    /// The OS page size.
    pub fn page_size() -> usize {
        page_size()
    }
}

// SAFETY: arenas come from fresh anonymous mappings of exactly `layout.size()` bytes at an address
// aligned to `layout.align()` (map_aligned trims the over-allocation); mappings never overlap; they
// stay valid until unmapped in `free`. Decommitted ranges come back zeroed on first touch (unix) or
// after `commit` (windows).
#[cfg(any(unix, windows))]
unsafe impl ArenaProvider for OsArenas {
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, ArenaError> {
        let page = page_size();
        if layout.size() == 0 || !layout.size().is_multiple_of(page) {
            return Err(ArenaError::Unsupported {
                size: layout.size(),
                align: layout.align(),
                reason: "the size must be a non-zero multiple of the page size",
            });
        }
        let p = imp::map_aligned(layout.size(), layout.align().max(page))?;
        if self.huge_pages {
            imp::advise_huge(p, layout.size());
        }
        Ok(p)
    }

    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` is a live arena of `layout.size()` bytes from `alloc`.
        unsafe { imp::unmap(ptr, layout.size()) }
    }

    unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> bool {
        let page = page_size();
        if !(ptr.as_ptr() as usize).is_multiple_of(page) || !len.is_multiple_of(page) {
            return false;
        }
        // SAFETY: the caller guarantees the range is inside a live arena and no longer needed.
        unsafe { imp::decommit(ptr, len) }
    }

    unsafe fn commit(&self, ptr: NonNull<u8>, len: usize) -> Result<(), ArenaError> {
        // SAFETY: the caller guarantees the range is inside a live arena.
        unsafe { imp::commit(ptr, len) }
    }

    fn fresh_memory_is_zeroed(&self) -> bool {
        true
    }
}

/// Maps `size` bytes of zeroed memory for the process lifetime (the registry's leaves), or `None`.
pub(crate) fn map_forever(size: usize) -> Option<NonNull<u8>> {
    imp::map_aligned(size.next_multiple_of(page_size()), page_size()).ok()
}

/// Returns memory from [`map_forever`] that turned out not to be needed.
///
/// # Safety
/// `ptr` and `size` are exactly what `map_forever(size)` returned and were given, and the memory is
/// not used afterwards.
pub(crate) unsafe fn unmap_forever(ptr: NonNull<u8>, size: usize) {
    // SAFETY: the caller's guarantee; the size is rounded as in `map_forever`.
    unsafe { imp::unmap(ptr, size.next_multiple_of(page_size())) }
}
