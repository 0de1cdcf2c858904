//! unix: `mmap`, `munmap`, `madvise`.

use crate::sync::{AtomicUsize, Ordering};
use core::ffi::c_void;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use alloc_core::ArenaError;

use super::ThreadExit;

fn errno() -> i32 {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "emscripten"))]
    // SAFETY: `__errno_location` returns the calling thread's errno slot.
    return unsafe { *libc::__errno_location() };
    #[cfg(any(
        target_vendor = "apple",
        target_os = "freebsd",
        target_os = "dragonfly"
    ))]
    // SAFETY: `__error` returns the calling thread's errno slot.
    return unsafe { *libc::__error() };
    #[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
    // SAFETY: `__errno` returns the calling thread's errno slot.
    return unsafe { *libc::__errno() };
    #[allow(unreachable_code)]
    0
}

pub(crate) fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let p = PAGE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let p = if p > 0 { p as usize } else { 4096 };
    PAGE.store(p, Ordering::Relaxed);
    p
}

/// Maps `size` bytes aligned to `align` (a power of two, at least a page): over-maps by
/// `align - page` and unmaps the unaligned head and the tail.
pub(crate) fn map_aligned(size: usize, align: usize) -> Result<NonNull<u8>, ArenaError> {
    let page = page_size();
    let len = size
        .checked_add(align - page)
        .ok_or(ArenaError::Unsupported {
            size,
            align,
            reason: "size plus alignment overflows the address space",
        })?;
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing has no
    // preconditions; failure is MAP_FAILED.
    let raw = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return Err(ArenaError::Os {
            operation: "map",
            size,
            code: errno(),
        });
    }
    let start = raw as usize;
    let aligned = start.next_multiple_of(align);
    let head = aligned - start;
    let tail = len - head - size;
    // SAFETY: the head `[start, aligned)` and the tail `[aligned + size, start + len)` are parts of
    // the mapping just made, page-aligned (start, align, size and len are page multiples), and
    // nobody else knows of them.
    unsafe {
        if head > 0 {
            libc::munmap(raw, head);
        }
        if tail > 0 {
            libc::munmap((aligned + size) as *mut libc::c_void, tail);
        }
    }
    // `aligned` lies inside a successful mapping, so it is not null.
    NonNull::new(aligned as *mut u8).ok_or(ArenaError::Os {
        operation: "map",
        size,
        code: 0,
    })
}

/// # Safety
/// `[ptr, ptr + size)` is a mapping made by `map_aligned`, no longer used.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, size: usize) {
    // SAFETY: the caller's guarantee. munmap of a valid range cannot fail in a way we could act on.
    unsafe { libc::munmap(ptr.as_ptr().cast(), size) };
}

/// # Safety
/// The page-aligned range lies in a live mapping and its contents are no longer needed.
pub(crate) unsafe fn decommit(ptr: NonNull<u8>, len: usize) -> bool {
    // SAFETY: the caller's guarantee; MADV_DONTNEED on private anonymous memory drops the pages,
    // which read as zero on the next touch.
    unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_DONTNEED) == 0 }
}

/// # Safety
/// The range lies in a live mapping.
pub(crate) unsafe fn commit(_ptr: NonNull<u8>, _len: usize) -> Result<(), ArenaError> {
    // Decommitted pages of a private anonymous mapping come back on first touch.
    Ok(())
}

pub(crate) fn advise_huge(ptr: NonNull<u8>, len: usize) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: advice on a live mapping; failure (no THP support) is harmless and ignored.
    unsafe {
        libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_HUGEPAGE);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (ptr, len);
}

/// Writes `line` to stderr in one call and aborts the process (no allocation, no unwinding).
pub(crate) fn fatal(line: &[u8]) -> ! {
    // SAFETY: a valid buffer of `line.len()` bytes; abort has no preconditions.
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::abort()
    }
}

/// 64 random bits for the secure pools' keys: `getrandom` where the OS has it (Linux), else the
/// clock and an address mixed (not cryptographic; enough to keep links unguessable across runs).
pub(crate) fn random_u64() -> u64 {
    let mut v = 0u64;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: a valid 8-byte buffer; GRND_NONBLOCK never waits (it fails early at boot).
        let n = unsafe { libc::getrandom(ptr::addr_of_mut!(v).cast(), 8, libc::GRND_NONBLOCK) };
        if n == 8 {
            return v;
        }
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid place for the result.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    v ^= (ts.tv_sec as u64).rotate_left(32) ^ ts.tv_nsec as u64 ^ ptr::addr_of!(ts) as u64;
    v
}

pub(crate) fn yield_now() {
    // SAFETY: sched_yield has no preconditions.
    unsafe { libc::sched_yield() };
}

/// A coarse monotonic clock in milliseconds (for purge delays; read only on rare paths).
pub(crate) fn now_ms() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC_COARSE;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid place for the result; the clock id is supported on this OS.
    unsafe { libc::clock_gettime(CLOCK, &mut ts) };
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

/// Reserves `len` bytes (a multiple of the page size) of address space that reads as zeros and
/// costs neither memory nor commit charge until written: a private anonymous mapping that is
/// read-only (the kernel backs reads with its shared zero page). [`make_writable`] opens the pages
/// about to be written. `None` if the OS refuses (an address-space limit, say).
#[cfg_attr(any(loom, not(target_pointer_width = "64")), allow(dead_code))]
pub(crate) fn reserve_zeroed(len: usize) -> Option<NonNull<u8>> {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing has no
    // preconditions; failure is MAP_FAILED.
    let raw = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return None;
    }
    NonNull::new(raw.cast())
}

/// Makes the pages of `[ptr, ptr + len)` writable (idempotent); false if the OS refuses.
///
/// # Safety
/// The range lies in a mapping made by [`reserve_zeroed`], and `ptr` is page-aligned.
#[cfg_attr(any(loom, not(target_pointer_width = "64")), allow(dead_code))]
pub(crate) unsafe fn make_writable(ptr: NonNull<u8>, len: usize) -> bool {
    // SAFETY: the caller's guarantee: pages of our own reservation.
    unsafe { libc::mprotect(ptr.as_ptr().cast(), len, libc::PROT_READ | libc::PROT_WRITE) == 0 }
}

/// Reserves `len` bytes (a power of two, at least a page) of zero-reading address space, as
/// [`reserve_zeroed`], at an address aligned to `len`: the exact length first (kept if the OS
/// happened to align it), else twice the length, whose unaligned head and tail go back. `None` if
/// the OS refuses.
#[cfg_attr(any(loom, not(target_pointer_width = "64")), allow(dead_code))]
pub(crate) fn reserve_aligned_zeroed(len: usize) -> Option<NonNull<u8>> {
    if let Some(p) = reserve_zeroed(len) {
        if (p.as_ptr() as usize).is_multiple_of(len) {
            return Some(p);
        }
        // SAFETY: the reservation just made, of `len` bytes, that nobody else knows of.
        unsafe { unreserve(p, len) };
    }
    let twice = len.checked_mul(2)?;
    let raw = reserve_zeroed(twice)?.as_ptr() as usize;
    let aligned = raw.next_multiple_of(len);
    let head = aligned - raw;
    let tail = twice - head - len;
    // SAFETY: the head `[raw, aligned)` and the tail `[aligned + len, raw + twice)` are parts of
    // the reservation just made, page-aligned (raw, len and twice are page multiples), that
    // nobody else knows of.
    unsafe {
        if head > 0 {
            libc::munmap(raw as *mut libc::c_void, head);
        }
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
    }
    NonNull::new(aligned as *mut u8)
}

/// Gives back a reservation made by [`reserve_zeroed`] or [`reserve_aligned_zeroed`].
///
/// # Safety
/// `[ptr, ptr + len)` is such a reservation (or a page-aligned part of one), no longer used.
#[cfg_attr(any(loom, not(target_pointer_width = "64")), allow(dead_code))]
pub(crate) unsafe fn unreserve(ptr: NonNull<u8>, len: usize) {
    // SAFETY: the caller's guarantee.
    unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
}

/// Replaces the pages of `[ptr, ptr + len)` with fresh read-only zero pages in one step (a fixed
/// mapping over them, as [`reserve_zeroed`] made them: no memory, no commit charge); true when
/// done. A write racing it lands in the old pages, never in the new ones (which a separate
/// `madvise` and `mprotect` could not promise: a write between them would bring a page back
/// that is not zero), and every unix gives zeros (where `MADV_DONTNEED` does not everywhere).
///
/// # Safety
/// The range lies in a mapping made by [`reserve_zeroed`], is page-aligned, and its contents are
/// no longer needed.
#[cfg_attr(any(loom, not(target_pointer_width = "64")), allow(dead_code))]
pub(crate) unsafe fn release_zeroed(ptr: NonNull<u8>, len: usize) -> bool {
    // SAFETY: the caller's guarantee: pages of our own reservation, no longer needed, which the
    // fixed mapping replaces (and nothing else: the range lies inside the reservation).
    let raw = unsafe {
        libc::mmap(
            ptr.as_ptr().cast(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    raw == ptr.as_ptr().cast()
}

/// A pthread key whose destructor calls `H::ended` (see [`ExitKey`](super::ExitKey)).
pub struct ExitKey<H> {
    /// The pthread key plus one (0: not created yet). A plain atomic, not the loom shim's: a
    /// handle made once, in no protocol the models check.
    key: core::sync::atomic::AtomicUsize,
    handler: PhantomData<fn() -> H>,
}

impl<H: ThreadExit> ExitKey<H> {
    /// A key not created yet (it is, at the first [`set`](Self::set)).
    pub const fn new() -> Self {
        ExitKey {
            key: core::sync::atomic::AtomicUsize::new(0),
            handler: PhantomData,
        }
    }

    extern "C" fn destructor(value: *mut libc::c_void) {
        // The OS calls a key's destructor only for a non-null value, the one `set` stored.
        H::ended(value.cast());
    }

    fn key(&self) -> Option<libc::pthread_key_t> {
        use core::sync::atomic::Ordering;
        let k = self.key.load(Ordering::Acquire);
        if k != 0 {
            return Some((k - 1) as libc::pthread_key_t);
        }
        let mut fresh: libc::pthread_key_t = 0;
        // SAFETY: a valid out-pointer and an `extern "C"` destructor.
        if unsafe { libc::pthread_key_create(&mut fresh, Some(Self::destructor)) } != 0 {
            return None;
        }
        match self
            .key
            .compare_exchange(0, fresh as usize + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Some(fresh),
            Err(winner) => {
                // SAFETY: our key was never used.
                unsafe { libc::pthread_key_delete(fresh) };
                Some((winner - 1) as libc::pthread_key_t)
            }
        }
    }

    /// The calling thread's value (null if it set none, or if the key was never created).
    #[inline]
    pub fn get(&self) -> *mut c_void {
        let k = self.key.load(core::sync::atomic::Ordering::Relaxed);
        if k == 0 {
            return ptr::null_mut();
        }
        // SAFETY: a key made by `key()` (the field holds created keys only).
        unsafe { libc::pthread_getspecific((k - 1) as libc::pthread_key_t).cast() }
    }

    /// Stores the calling thread's value (null: no call at its end); false if the OS has no key
    /// left, or refused the value.
    pub fn set(&self, value: *mut c_void) -> bool {
        let Some(k) = self.key() else { return false };
        // SAFETY: a created key; the value is only handed back (to `get` and `H::ended`).
        unsafe { libc::pthread_setspecific(k, value.cast_const().cast()) == 0 }
    }
}
