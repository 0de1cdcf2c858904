//! `System`: the C library's allocator, the default of the raw domain.

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::contract::{DomainAllocator, MIN_ALIGN, Ownership};

/// The C library's allocator (`malloc`, `calloc`, `realloc`, `free`, and `posix_memalign` on unix or
/// `_aligned_malloc` on windows): the raw domain's default, as `PyMem_RawMalloc` is `malloc`. With
/// glibc and the `glibc-direct` feature it calls the allocator's own entry points
/// (`__libc_malloc`, ...), so it is glibc's allocator even where `malloc` itself has been replaced
/// (by domalloc's C library, which turns the feature on).
///
/// It adds PEP 445's rules where the C library differs: 0-byte requests ask for 1 byte (so the block
/// is unique and non-null on every libc), `realloc(p, 0)` keeps a block instead of freeing it, and
/// sizes above `isize::MAX` fail before reaching the C library.
///
/// `System` is available where the C library guarantees 16-byte alignment from `malloc`
/// (64-bit unix and windows).
///
/// ```
/// use alloc_core::{DomainAllocator, System};
///
/// let p = System.calloc(4, 8).unwrap();
/// // SAFETY: `p` is a live 32-byte block of `System`.
/// let zero = unsafe { core::slice::from_raw_parts(p.as_ptr(), 32) }.iter().all(|&b| b == 0);
/// assert!(zero);
/// // SAFETY: `p` is live and freed once.
/// let p = unsafe { System.realloc(p.as_ptr(), 64) }.unwrap();
/// // SAFETY: as above.
/// unsafe { System.free(p.as_ptr()) };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct System;

// The C library's `malloc` guarantees `alignof(max_align_t)`, 16 bytes on the 64-bit targets
// `System` is built for; the contract needs MIN_ALIGN.
const _: () = assert!(MIN_ALIGN == 16 && cfg!(target_pointer_width = "64"));

mod ffi {
    use core::ffi::c_void;

    // With glibc and the `glibc-direct` feature (domalloc's C library turns it on), the
    // allocator's own entry points (`__libc_malloc` and friends), which glibc exports for
    // allocators that replace `malloc`: `System` then stays the C library's allocator even in a
    // process whose `malloc` is domalloc's (`LD_PRELOAD`), instead of calling back into the domain
    // that uses it. Off by default: a sanitizer that replaces `malloc` must see every block.
    #[cfg(all(target_os = "linux", target_env = "gnu", feature = "glibc-direct"))]
    unsafe extern "C" {
        #[link_name = "__libc_malloc"]
        pub fn malloc(size: usize) -> *mut c_void;
        #[link_name = "__libc_calloc"]
        pub fn calloc(nelem: usize, elsize: usize) -> *mut c_void;
        #[link_name = "__libc_realloc"]
        pub fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
        #[link_name = "__libc_free"]
        pub fn free(ptr: *mut c_void);
        #[link_name = "__libc_memalign"]
        pub fn memalign(align: usize, size: usize) -> *mut c_void;
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu", feature = "glibc-direct")))]
    unsafe extern "C" {
        pub fn malloc(size: usize) -> *mut c_void;
        pub fn calloc(nelem: usize, elsize: usize) -> *mut c_void;
        pub fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
        pub fn free(ptr: *mut c_void);
    }

    #[cfg(all(
        unix,
        not(all(target_os = "linux", target_env = "gnu", feature = "glibc-direct"))
    ))]
    unsafe extern "C" {
        pub fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32;
    }

    #[cfg(all(
        any(target_os = "linux", target_os = "android", target_os = "freebsd"),
        not(all(target_os = "linux", target_env = "gnu", feature = "glibc-direct"))
    ))]
    unsafe extern "C" {
        pub fn malloc_usable_size(ptr: *mut c_void) -> usize;
    }

    /// glibc has no `__libc_` name for `malloc_usable_size`: with `glibc-direct`, the one that
    /// follows the object `System` is linked into (domalloc's C library, whose own
    /// `malloc_usable_size` answers for domalloc's blocks) is found once by `dlsym(RTLD_NEXT)`.
    #[cfg(all(target_os = "linux", target_env = "gnu", feature = "glibc-direct"))]
    pub unsafe fn malloc_usable_size(ptr: *mut c_void) -> usize {
        use core::sync::atomic::{AtomicPtr, Ordering};
        unsafe extern "C" {
            fn dlsym(handle: *mut c_void, symbol: *const core::ffi::c_char) -> *mut c_void;
        }
        static NEXT: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
        let mut f = NEXT.load(Ordering::Acquire);
        if f.is_null() {
            // RTLD_NEXT is `(void *)-1` on glibc. `dlsym` may allocate, through `malloc`, which
            // does not come back here.
            // SAFETY: a NUL-terminated symbol name.
            f = unsafe { dlsym(usize::MAX as *mut c_void, c"malloc_usable_size".as_ptr()) };
            if f.is_null() {
                return 0;
            }
            NEXT.store(f, Ordering::Release);
        }
        // SAFETY: glibc's `malloc_usable_size`, which takes any live block of glibc's.
        let f: unsafe extern "C" fn(*mut c_void) -> usize = unsafe { core::mem::transmute(f) };
        // SAFETY: the caller's guarantee: a live block of glibc's.
        unsafe { f(ptr) }
    }

    #[cfg(target_vendor = "apple")]
    unsafe extern "C" {
        pub fn malloc_size(ptr: *const c_void) -> usize;
    }

    #[cfg(windows)]
    unsafe extern "C" {
        pub fn _aligned_malloc(size: usize, align: usize) -> *mut c_void;
        pub fn _aligned_free(ptr: *mut c_void);
        pub fn _msize(ptr: *mut c_void) -> usize;
    }
}

/// PEP 445: a 0-byte request behaves as a 1-byte one.
#[inline]
fn nonzero(size: usize) -> usize {
    if size == 0 { 1 } else { size }
}

#[inline]
fn too_large(size: usize) -> bool {
    size > isize::MAX as usize
}

// SAFETY: every block comes from the C library, which returns valid, disjoint blocks aligned to 16
// bytes on the targets this is built for (checked above); aligned blocks come from posix_memalign or
// _aligned_malloc with the requested alignment; usable_size asks the C library itself.
unsafe impl DomainAllocator for System {
    #[inline]
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        if too_large(size) {
            return None;
        }
        // SAFETY: `malloc` may be called with any size.
        NonNull::new(unsafe { ffi::malloc(nonzero(size)) }.cast())
    }

    #[inline]
    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        let size = crate::checked_array_size(nelem, elsize).ok()?;
        // SAFETY: `calloc` may be called with any sizes; the product is known not to overflow.
        NonNull::new(unsafe { ffi::calloc(1, nonzero(size)) }.cast())
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        if too_large(new_size) {
            return None;
        }
        // SAFETY: the caller guarantees `ptr` is null or a live block of the C library's `malloc`.
        // `nonzero` keeps glibc from treating size 0 as a free.
        NonNull::new(unsafe { ffi::realloc(ptr.cast(), nonzero(new_size)) }.cast())
    }

    #[inline]
    unsafe fn free(&self, ptr: *mut u8) {
        // SAFETY: the caller guarantees `ptr` is null or a live block of the C library's `malloc`.
        unsafe { ffi::free(ptr.cast()) }
    }

    fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        if layout.align() <= MIN_ALIGN {
            return self.malloc(layout.size());
        }
        aligned_malloc(layout)
    }

    fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        // The aligned family is the `malloc` family here for small alignments.
        crate::calloc_aligned_via_calloc(self, layout)
    }

    unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.align() <= MIN_ALIGN {
            // SAFETY: blocks of small alignment come from `malloc`.
            unsafe { self.free(ptr.as_ptr()) };
            return;
        }
        // SAFETY: the caller guarantees `ptr` came from `aligned_malloc` (or `realloc_aligned`).
        unsafe { aligned_free(ptr) }
    }

    unsafe fn realloc_aligned(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        if layout.align() <= MIN_ALIGN {
            // SAFETY: blocks of small alignment come from `malloc`.
            return unsafe { self.realloc(ptr.as_ptr(), new_size) };
        }
        let new = aligned_malloc(Layout::from_size_align(new_size, layout.align()).ok()?)?;
        // SAFETY: both blocks are live and disjoint; each holds at least the smaller size. The old
        // block came from `aligned_malloc` (the caller's guarantee).
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), new.as_ptr(), layout.size().min(new_size));
            aligned_free(ptr);
        }
        Some(new)
    }

    #[allow(unreachable_code, unused_variables)]
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
        // SAFETY: the caller guarantees `ptr` is a live `malloc` block.
        return Some(unsafe { ffi::malloc_usable_size(ptr.as_ptr().cast()) });
        #[cfg(target_vendor = "apple")]
        // SAFETY: the caller guarantees `ptr` is a live `malloc` block.
        return Some(unsafe { ffi::malloc_size(ptr.as_ptr().cast()) });
        #[cfg(windows)]
        // SAFETY: the caller guarantees `ptr` is a live `malloc` block.
        return Some(unsafe { ffi::_msize(ptr.as_ptr().cast()) });
        None
    }

    fn owns(&self, _ptr: *const u8) -> Ownership {
        Ownership::Unknown
    }

    fn name(&self) -> &str {
        "system"
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu", feature = "glibc-direct"))]
fn aligned_malloc(layout: Layout) -> Option<NonNull<u8>> {
    // SAFETY: the alignment is a power of two (Layout); `__libc_memalign` takes any size.
    NonNull::new(unsafe { ffi::memalign(layout.align(), nonzero(layout.size())) }.cast())
}

#[cfg(all(
    unix,
    not(all(target_os = "linux", target_env = "gnu", feature = "glibc-direct"))
))]
fn aligned_malloc(layout: Layout) -> Option<NonNull<u8>> {
    let mut out: *mut core::ffi::c_void = core::ptr::null_mut();
    // SAFETY: `out` is a valid place for the result; the alignment is a power of two (Layout) and a
    // multiple of the pointer size (it exceeds MIN_ALIGN).
    let rc = unsafe { ffi::posix_memalign(&mut out, layout.align(), nonzero(layout.size())) };
    if rc != 0 {
        return None;
    }
    NonNull::new(out.cast())
}

#[cfg(unix)]
/// # Safety
/// `ptr` came from `aligned_malloc` and is not used afterwards.
unsafe fn aligned_free(ptr: NonNull<u8>) {
    // SAFETY: posix_memalign blocks are released with `free` (the caller's guarantee on `ptr`).
    unsafe { ffi::free(ptr.as_ptr().cast()) }
}

#[cfg(windows)]
fn aligned_malloc(layout: Layout) -> Option<NonNull<u8>> {
    // SAFETY: `_aligned_malloc` may be called with any size and a power-of-two alignment.
    NonNull::new(unsafe { ffi::_aligned_malloc(nonzero(layout.size()), layout.align()) }.cast())
}

#[cfg(windows)]
/// # Safety
/// `ptr` came from `aligned_malloc` and is not used afterwards.
unsafe fn aligned_free(ptr: NonNull<u8>) {
    // SAFETY: `_aligned_malloc` blocks are released with `_aligned_free` (the caller's guarantee).
    unsafe { ffi::_aligned_free(ptr.as_ptr().cast()) }
}
