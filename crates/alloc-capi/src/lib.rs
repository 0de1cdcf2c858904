//! # libdomalloc: domalloc's C ABI
//!
//! Two faces, one shared library (`libdomalloc.so`, and `libdomalloc.a`):
//!
//! * **The malloc family**, exported under the C library's names (`malloc`, `calloc`, `realloc`,
//!   `free`, `posix_memalign`, `aligned_alloc`, `memalign`, `valloc`, `pvalloc`,
//!   `malloc_usable_size`, `reallocarray`), so that `LD_PRELOAD=libdomalloc.so program` makes
//!   domalloc the allocator of a program that was never built for it. Every call goes through the
//!   mem domain (the pool by default; `DOMALLOC=` chooses, as `PYTHONMALLOC` does).
//! * **PEP 445's API for C callers** (`include/domalloc.h`): allocators as structs of function
//!   pointers, per-domain get / set, `domalloc_setup_debug_hooks`, the arena allocator, the pools'
//!   statistics and tracemalloc's entry points.
//!
//! Rules the exports keep (glibc's, where C leaves a choice): a failed request returns null with
//! `errno` set to `ENOMEM`; a bad alignment is `EINVAL`; `free(NULL)` does nothing;
//! `realloc(p, 0)` frees `p` and returns null; a block the domain does not claim (made by glibc
//! before the library was loaded, or by glibc's own entry points) goes back to glibc, unless it
//! lies in domalloc's arenas (another domain's block, one freed twice, a pointer inside a block),
//! which is reported on one line before the process aborts (the hooks' full report under the
//! debug presets). Requests with
//! an alignment above 16 come from the standard pools while the mem domain uses them (up to 4 KiB
//! alignment and 64 KiB: pool blocks of a multiple of the alignment, freed like any other), and
//! from glibc (`__libc_memalign`) otherwise, so `free` finds them whatever the domain holds.
//!
//! Works from the first allocation (no Rust runtime or thread-local is needed before a call: the
//! domain table configures itself from `DOMALLOC` on its first call, without allocating), through
//! thread creation and exit (the pool's per-thread heaps are abandoned and adopted), and through
//! `fork` (the library's constructor registers the domains' fork handlers with `pthread_atfork`).
//!
//! `DOMALLOC_TRACE_SAMPLE=BYTES` starts sampled tracing of the mem domain when the library loads
//! and writes a profile when the program exits (to `DOMALLOC_TRACE_OUT`, by default
//! `domalloc-trace.<pid>.txt`); see `trace_env`.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use core::ffi::{c_char, c_int, c_void};
use core::ptr::{self, NonNull};

use alloc_arena::{FastFree, FastRealloc, NO_KEY, WordFree};
use alloc_core::{AsGlobalAlloc, DomainAllocator, Ownership, System};
use alloc_domains::{DomainId, MEM, mem_fast_path};

mod api;
mod cxx;
mod trace_env;

/// The library's own Rust allocations (a leaked allocator record, a report's text) go straight to
/// glibc, never through its own exports.
#[global_allocator]
static RUST_ALLOC: AsGlobalAlloc<System> = AsGlobalAlloc::new(System);

const ALIGN: usize = 16;

unsafe extern "C" {
    fn __libc_free(ptr: *mut c_void);
    fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
}

fn set_errno(e: c_int) {
    // SAFETY: `__errno_location` returns this thread's errno.
    unsafe { *libc::__errno_location() = e };
}

fn oom() -> *mut c_void {
    set_errno(libc::ENOMEM);
    ptr::null_mut()
}

/// Whether `p` goes to the mem domain (else it is glibc's): always while a debug hook made every
/// block of the domain (`DOMALLOC=debug`, `pool_debug`, `malloc_debug`: aligned blocks too, see
/// `aligned`), so that a pointer it does not claim is one for the hook to report (freed already,
/// inside a block, of another domain, glibc's), never one for glibc's checks; otherwise when
/// the domain claims it. Pointers elsewhere that the domain does not claim are glibc's (its
/// aligned blocks, the pool's large blocks once freed). While the mem domain counts its
/// statistics (`DOMALLOC_STATS=1`), a pointer the domain cannot tell apart (`Unknown`: the C
/// library is its allocator, `DOMALLOC=malloc`) goes to it too, so that the free is counted:
/// the domain hands it to glibc's `free` all the same.
#[inline]
fn ours(p: *mut c_void) -> bool {
    if alloc_domains::guards_every_block(DomainId::MEM) {
        return true;
    }
    match MEM.owns(p.cast()) {
        Ownership::Owned => true,
        Ownership::Unknown => MEM.stats_enabled(),
        Ownership::NotOwned => false,
    }
}

/// glibc's `malloc_usable_size` (the one behind ours, which `System` finds).
fn glibc_usable_size(p: *mut c_void) -> usize {
    NonNull::new(p.cast())
        // SAFETY: `p` is a live glibc block (the caller's guarantee to `malloc_usable_size`).
        .and_then(|p| unsafe { alloc_core::System.usable_size(p) })
        .unwrap_or(0)
}

/// `malloc(3)` through the mem domain.
///
/// # Safety
/// C's contract for `malloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    let (pool, key) = mem_fast_path();
    // SAFETY: the key the domain table gives for its pool.
    if let Some(p) = unsafe { pool.malloc_fast(size, key) } {
        return p.as_ptr().cast();
    }
    malloc_slow(size)
}

/// `malloc` the long way (`extern "C"`, so that `malloc` reaches it by a tail jump).
#[cold]
#[inline(never)]
extern "C" fn malloc_slow(size: usize) -> *mut c_void {
    // A block of 1 KiB to 8 KiB from the thread's bin of the medium pool, with no frame.
    if mem_fast_path().1 != NO_KEY
        && let Some(p) = alloc_domains::malloc_medium_fast(size)
    {
        return p.as_ptr().cast();
    }
    malloc_slower(size)
}

/// The rest of [`malloc_slow`].
#[cold]
#[inline(never)]
extern "C" fn malloc_slower(size: usize) -> *mut c_void {
    let (pool, key) = mem_fast_path();
    let p = if size > alloc_domains::SMALL_POOL.threshold && key != NO_KEY {
        // The medium and large pools, and the spans, directly.
        alloc_domains::malloc_standard_large(size)
    } else if let Some(p) = {
        // A small block whose bin was empty: from the calling thread's heap at once.
        // SAFETY: the key the domain table gives for its pool.
        unsafe { pool.malloc_refill(size, key) }
    } {
        return p.as_ptr().cast();
    } else {
        MEM.malloc(size)
    };
    match p {
        Some(p) => p.as_ptr().cast(),
        None => oom(),
    }
}

/// A block of `size` bytes (at most 1 KiB) by the pools' two fast steps: the calling thread's bin
/// of its class, else the thread's heap (`malloc_refill`); `None` where neither serves (a larger
/// size, no fast path, no heap yet), for the caller's long way.
#[inline(always)]
fn small_block(size: usize) -> Option<NonNull<u8>> {
    let (pool, key) = mem_fast_path();
    // SAFETY: the key the domain table gives for its pool.
    if let Some(p) = unsafe { pool.malloc_fast(size, key) } {
        return Some(p);
    }
    // SAFETY: as above.
    unsafe { pool.malloc_refill(size, key) }
}

/// `calloc(3)`: zeroed; an overflowing product fails with `ENOMEM`.
///
/// The common case, a small block from the calling thread's bin, keeps no frame: its zeroing is
/// a tail call of `memset`, and everything else is a tail call of `calloc_slow`.
///
/// # Safety
/// C's contract for `calloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(nelem: usize, elsize: usize) -> *mut c_void {
    if let Some(size) = nelem.checked_mul(elsize) {
        let (pool, key) = mem_fast_path();
        // SAFETY: the key the domain table gives for its pool.
        if let Some(p) = unsafe { pool.malloc_fast(size, key) } {
            // A reused block holds old data: its requested bytes zeroed, as the pool's `calloc`
            // does. `memset` returns its first argument, so this is its tail call.
            // SAFETY: a fresh block of at least `size` bytes.
            return unsafe { libc::memset(p.as_ptr().cast(), 0, size) };
        }
    }
    calloc_slow(nelem, elsize)
}

/// `calloc` past the bin: a small block from the thread's heap, a medium one from the thread's
/// bin of the medium pool, else the domain's `calloc`.
#[cold]
#[inline(never)]
extern "C" fn calloc_slow(nelem: usize, elsize: usize) -> *mut c_void {
    if let Some(size) = nelem.checked_mul(elsize)
        && let Some(p) = small_block(size).or_else(|| {
            // 1 KiB to 8 KiB: the thread's bin of the medium pool.
            (mem_fast_path().1 != NO_KEY)
                .then(|| alloc_domains::malloc_medium_fast(size))
                .flatten()
        })
    {
        // SAFETY: a fresh block of at least `size` bytes.
        unsafe { p.as_ptr().write_bytes(0, size) };
        return p.as_ptr().cast();
    }
    match MEM.calloc(nelem, elsize) {
        Some(p) => p.as_ptr().cast(),
        None => oom(),
    }
}

/// `free(3)`: a block the domain claims goes to it (through the pool's fast path while the mem
/// domain has its standard pool), a pointer into domalloc's arenas that it does not claim is
/// reported (see `not_glibcs`), any other goes to glibc.
///
/// # Safety
/// C's contract for `free`: `p` is null or a live block of this process's malloc family.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: the caller's guarantee.
    unsafe { free_inline(p) }
}

/// The body of [`free`], for the C++ `delete` forms too.
///
/// # Safety
/// As for [`free`].
#[inline(always)]
unsafe fn free_inline(p: *mut c_void) {
    // The common case: a block of the standard pool, told by its address alone (the pool's own
    // reservation of arenas) with the fast path on and a heap of the pool on this thread, all
    // three in one test of the word and the thread's way.
    let (pool, word) = alloc_domains::mem_fast_free();
    // SAFETY: the mem domain's free word for its pool; `p` is a live block of the process's
    // malloc family (the caller's guarantee): the pool's, another allocator's, or a bad pointer
    // the checks refuse.
    match unsafe { pool.free_fast_word(p.cast(), word) } {
        WordFree::Done => {}
        // Refused by the checks, or the bin is full: the long way, which reports a bad pointer.
        // SAFETY: the caller's guarantee; the owner is not looked up.
        WordFree::Refused => unsafe { free_slower(p, NO_KEY) },
        // SAFETY: the caller's guarantee.
        WordFree::Elsewhere => unsafe { free_routed(p) },
    }
}

/// [`free`] of a pointer outside the standard pool's reservation (or any pointer while the fast
/// path is off, or on a thread with no heap of the pool): the registry tells whose it is. The
/// small pool's own blocks come here from arenas outside the reservation (once it is full, or
/// from an arena allocator the program set), and from threads that only free them.
///
/// # Safety
/// As for [`free`].
#[inline(never)]
unsafe extern "C" fn free_routed(p: *mut c_void) {
    let (pool, key) = mem_fast_path();
    // SAFETY: the key the domain table gives for its pool; `p` is null or a live block of the
    // process's malloc family, which the pool's fast path takes (it frees only its own blocks).
    match unsafe { pool.free_fast_routed(p.cast(), key) } {
        FastFree::Done => {}
        // SAFETY: the caller's guarantee; the registry's owner of `p` (or `NO_KEY`).
        FastFree::Owner(owner) => unsafe { free_slow(p, owner) },
        // A block of the small pool that a full bin or the checks refused: its owner is looked
        // up again (an argument fewer on the fast path).
        // SAFETY: as above.
        FastFree::Refused => unsafe { free_slower(p, NO_KEY) },
    }
}

/// `free` the long way: through the domain, or glibc's for blocks the domain does not claim.
/// `owner` is the registry's owner of `p`'s arena as the fast path found it (0: none), or
/// `NO_KEY` where it was not looked up.
///
/// # Safety
/// As for `free`; `owner` is `arena_owner(p)` or `NO_KEY`.
#[cold]
#[inline(never)]
unsafe extern "C" fn free_slow(p: *mut c_void, owner: u32) {
    let (_, key) = mem_fast_path();
    // SAFETY: the caller's guarantee; the standard pools are the mem domain's allocator (a key).
    if key != NO_KEY && unsafe { alloc_domains::free_medium_owned(p.cast(), owner) } {
        return;
    }
    // SAFETY: as above.
    unsafe { free_slower(p, owner) }
}

/// The rest of [`free_slow`].
///
/// # Safety
/// As for [`free_slow`].
#[cold]
#[inline(never)]
unsafe extern "C" fn free_slower(p: *mut c_void, owner: u32) {
    let (_, key) = mem_fast_path();
    if key != NO_KEY {
        // The medium and large pools and the spans by the owner the fast path read, with no
        // second lookup.
        // SAFETY: the pool is the mem domain's only allocator: it takes null, its blocks, and
        // (handing them to glibc's free) every block it does not claim, as below.
        return unsafe { alloc_domains::free_standard_owned(p.cast(), owner) };
    }
    if p.is_null() {
        return;
    }
    if alloc_domains::mem_counts_on_pool() {
        // The domain counts its statistics on its standard pools: their blocks (checked and
        // counted) to the pools, anything else to glibc.
        // SAFETY: as above, with the counting twin of the key.
        return unsafe { alloc_domains::free_standard_counted(p.cast()) };
    }
    if ours(p) {
        // SAFETY: a live block the domain claims.
        unsafe { MEM.free(p.cast()) }
    } else {
        not_glibcs("free", p);
        // SAFETY: a live block of glibc's (nobody here claims it).
        unsafe { __libc_free(p) }
    }
}

/// Reports and aborts if `p`, which the mem domain does not claim, lies in domalloc's arenas
/// (another domain's block, say) or in the address space domalloc reserved for them (where no
/// arena is now): such a pointer never goes to glibc, whose checks would read memory that is
/// not its own.
fn not_glibcs(op: &str, p: *mut c_void) {
    if alloc_arena::in_pool_arena(p.cast()) {
        alloc_arena::report_other_allocator(op, p.cast());
    }
    if alloc_domains::in_reserved_arenas(p.cast()) {
        alloc_arena::report_no_arena(op, p.cast());
    }
}

/// `realloc(3)`, glibc's way: `realloc(NULL, n)` is `malloc(n)`, `realloc(p, 0)` frees `p` and
/// returns null; on failure the block is untouched and `errno` is `ENOMEM`.
///
/// # Safety
/// C's contract for `realloc`.
///
/// The common cases keep no frame: a block of the calling thread's pools resized within its
/// class is answered at once, one that moves is a tail call of `realloc_moving`, with the
/// checks made; everything else is a tail call of `realloc_slow`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // The common case, as `free`'s: a block of the standard pool told by its address alone, on a
    // thread with a heap of the pool.
    let (pool, word) = alloc_domains::mem_fast_free();
    // SAFETY: the mem domain's free word for its pool; `p` is null, a live block of the
    // process's malloc family (the caller's guarantee), or a bad pointer the checks refuse
    // (sizes of 0 too).
    match unsafe { pool.realloc_fast_check_word(p.cast(), size, word) } {
        // SAFETY: the check's answer for `p`, `size` and the word's key, just now on this thread.
        Some(answer) => unsafe {
            realloc_answered(p, size, answer, alloc_arena::free_word_key(word))
        },
        // SAFETY: the caller's guarantee.
        None => unsafe { realloc_routed(p, size) },
    }
}

/// [`realloc`] of a pointer outside the standard pool's reservation (or any pointer while the
/// fast path is off, or on a thread with no heap of the pool): the registry tells whether it is a block of the small pool (one from an
/// arena outside the reservation), which then takes the same fast path.
///
/// # Safety
/// As for [`realloc`].
#[inline(never)]
unsafe extern "C" fn realloc_routed(p: *mut c_void, size: usize) -> *mut c_void {
    let (pool, key) = mem_fast_path();
    // SAFETY: the key the domain table gives for its pool; `p` is null or a live block of the
    // process's malloc family, which the checks take (null and sizes of 0 are refused).
    let answer = unsafe { pool.realloc_fast_check(p.cast(), size, key) };
    // SAFETY: the check's answer for `p`, `size` and `key`, just now on this thread.
    unsafe { realloc_answered(p, size, answer, key) }
}

/// What `realloc` does with the fast check's answer.
///
/// # Safety
/// As for [`realloc`]; `answer` is what the standard pool's fast check answered for `p`, `size`
/// and `key` on this thread, just now.
#[inline(always)]
unsafe fn realloc_answered(
    p: *mut c_void,
    size: usize,
    answer: FastRealloc,
    key: u32,
) -> *mut c_void {
    match answer {
        FastRealloc::Stays => p,
        // SAFETY: the check's answer, just now on this thread.
        FastRealloc::Moves { bin, block } => unsafe { realloc_moving(p, size, bin, block, key) },
        // SAFETY: the caller's guarantee.
        FastRealloc::Refused => unsafe { realloc_slow(p, size) },
    }
}

/// `realloc` of a block of the calling thread's pools that moves to another class.
///
/// # Safety
/// The standard pool's `realloc_fast_check` answered `Moves { bin, block }` for `p`, `size` and
/// `key` on this thread, just now.
#[inline(never)]
unsafe extern "C" fn realloc_moving(
    p: *mut c_void,
    size: usize,
    bin: *mut u8,
    block: usize,
    key: u32,
) -> *mut c_void {
    let (pool, _) = mem_fast_path();
    // SAFETY: the caller's guarantee.
    match unsafe { pool.realloc_move_fast(p.cast(), size, key, bin, block) } {
        Some(q) => q.as_ptr().cast(),
        None => oom(),
    }
}

/// `realloc` past its common case: null, a size of 0, a block of the medium pool (resized by
/// that pool's fast realloc, after the whole check), any other pointer.
///
/// # Safety
/// As for `realloc`.
#[cold]
#[inline(never)]
unsafe extern "C" fn realloc_slow(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        // SAFETY: as `malloc`.
        return unsafe { malloc(size) };
    }
    if size == 0 {
        // SAFETY: a live block, freed once.
        unsafe { free(p) };
        return ptr::null_mut();
    }
    let (pool, key) = mem_fast_path();
    if key != NO_KEY {
        // A block of the medium pool resized within it, by that pool's fast path.
        // SAFETY: the standard pools are the domain's allocator (a key); the caller's guarantee.
        if let Some(q) = unsafe { alloc_domains::realloc_medium_fast(p.cast(), size) } {
            return match q {
                Some(q) => q.as_ptr().cast(),
                None => oom(),
            };
        }
        // `realloc`'s fast checks refused the pointer (or were made before the key was set):
        // the pools' blocks (checked: a bad pointer is reported) to the pools directly, anything
        // else to glibc.
        if alloc_domains::check_standard_live(p.cast(), "realloc") {
            // SAFETY: a live block of the standard pools or spans, the domain's only allocator.
            return match unsafe { pool.realloc(p.cast(), size) } {
                Some(q) => q.as_ptr().cast(),
                None => oom(),
            };
        }
    } else if ours(p) {
        // SAFETY: a live block the domain claims.
        return match unsafe { MEM.realloc(p.cast(), size) } {
            Some(q) => q.as_ptr().cast(),
            None => oom(),
        };
    }
    not_glibcs("realloc", p);
    // SAFETY: a live block of glibc's.
    let q = unsafe { __libc_realloc(p, size) };
    if q.is_null() {
        set_errno(libc::ENOMEM);
    }
    q
}

/// `reallocarray(3)`: `realloc(p, nelem * elsize)` with overflow checked (`ENOMEM`).
///
/// # Safety
/// C's contract for `reallocarray`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void {
    match nelem.checked_mul(elsize) {
        // SAFETY: as `realloc`.
        Some(n) => unsafe { realloc(p, n) },
        None => oom(),
    }
}

/// The largest alignment, and the largest size rounded to it, that the standard pools serve for
/// an aligned request: their blocks of a size that is a multiple of the alignment are aligned to
/// it (pools start at 16 KiB, 64 KiB and 256 KiB boundaries), and `free` finds them by the
/// registry like any other block, with no alignment. Beyond (a span's block is only 64-aligned),
/// glibc's.
const POOL_ALIGN_MAX: usize = 4096;
const POOL_ALIGNED_SIZE_MAX: usize = 64 << 10;

/// The size of the small block that serves `size` bytes aligned to `align` (a power of two
/// above 16): `size` (at least 1) rounded up to a multiple of `align`, where both are at most
/// the small pool's threshold (1 KiB, a multiple of any such alignment, so the rounded size is
/// within it too); `None` otherwise.
#[inline(always)]
fn small_aligned_size(align: usize, size: usize) -> Option<usize> {
    const SMALL: usize = alloc_domains::SMALL_POOL.threshold;
    // A mask, not a division: `align` is a power of two, and the sum cannot overflow.
    (size <= SMALL && align <= SMALL).then(|| (size.max(1) + align - 1) & !(align - 1))
}

/// [`aligned`]'s common case, with no call: a block from the calling thread's bin (of its class
/// for an alignment up to 16, of the rounded size above); `None` for the long way.
#[inline(always)]
fn aligned_fast(align: usize, size: usize) -> Option<NonNull<u8>> {
    const SMALL: usize = alloc_domains::SMALL_POOL.threshold;
    let (pool, key) = mem_fast_path();
    if size > SMALL {
        return None;
    }
    // `size` rounded up to a multiple of `align` (a power of two, so below 2^63: the sum cannot
    // overflow), as `small_aligned_size` does, with no test of the alignment: a rounded size past
    // the pools' threshold (an alignment above it, say), or 0 (a size of 0), is refused by
    // `malloc_fast`'s own test of the size, and takes the long way. An alignment up to 16 rounds
    // within the size's class (classes are multiples of 16).
    let rounded = (size + align - 1) & align.wrapping_neg();
    // SAFETY: the key the domain table gives for its pool.
    unsafe { pool.malloc_fast(rounded, key) }
}

/// An aligned block: the domain for alignments up to 16; above, the standard pools while the mem
/// domain uses them (up to [`POOL_ALIGN_MAX`] and [`POOL_ALIGNED_SIZE_MAX`]), the domain's debug
/// hook while one made every block (its guards around the block, its alignment in the header,
/// so that `free` and `realloc` need no layout), glibc otherwise (its blocks are freed by `free`
/// whatever the domain holds). Null with `errno` on failure.
fn aligned(align: usize, size: usize) -> *mut c_void {
    if align <= ALIGN {
        // SAFETY: as `malloc`.
        return unsafe { malloc(size) };
    }
    if let Some(rounded) = small_aligned_size(align, size) {
        // A small block whose size is a multiple of `align`, from the calling thread's bin or
        // heap: the pools' blocks of such a size start at multiples of it from a pool's first
        // byte, itself aligned to the pool's size, so they are aligned (what the pools' aligned
        // routing relies on too); a plain block as far as `free`, `realloc` and the checks know.
        if let Some(p) = small_block(rounded) {
            debug_assert!((p.as_ptr() as usize).is_multiple_of(align));
            return p.as_ptr().cast();
        }
    }
    if alloc_domains::guards_every_block(DomainId::MEM) {
        return match core::alloc::Layout::from_size_align(size, align)
            .ok()
            .and_then(|layout| MEM.malloc_aligned(layout))
        {
            Some(p) => p.as_ptr().cast(),
            None => oom(),
        };
    }
    if align <= POOL_ALIGN_MAX
        && size.max(1).next_multiple_of(align) <= POOL_ALIGNED_SIZE_MAX
        && (mem_fast_path().1 != NO_KEY || alloc_domains::enable_mem_fast_path() != NO_KEY)
        && let Ok(layout) = core::alloc::Layout::from_size_align(size, align)
    {
        // A block of the pools whose size is a multiple of `align` (the pools' aligned
        // routing), so a plain block as far as `free`, `realloc` and the checks know.
        return match mem_fast_path().0.malloc_aligned(layout) {
            Some(p) => p.as_ptr().cast(),
            None => oom(),
        };
    }
    // SAFETY: a power-of-two alignment (checked by every caller); any size.
    let p = unsafe { __libc_memalign(align, size) };
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p
}

/// `posix_memalign(3)`: `EINVAL` unless `align` is a power of two and a multiple of the pointer
/// size; `ENOMEM` on failure; `*out` untouched on failure.
///
/// # Safety
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    // A power of two (0 included, refused next) and a multiple of the pointer's size.
    if align & align.wrapping_sub(1) != 0 || align < size_of::<*mut c_void>() {
        return libc::EINVAL;
    }
    if let Some(p) = aligned_fast(align, size) {
        // SAFETY: the caller's guarantee.
        unsafe { *out = p.as_ptr().cast() };
        return 0;
    }
    // SAFETY: as above.
    unsafe { posix_memalign_slow(out, align, size) }
}

/// `posix_memalign` past the thread's bin, for a valid alignment: `errno` is kept as it was.
///
/// # Safety
/// `out` is valid for a write; `align` is a power of two and a multiple of the pointer size.
#[cold]
#[inline(never)]
unsafe extern "C" fn posix_memalign_slow(
    out: *mut *mut c_void,
    align: usize,
    size: usize,
) -> c_int {
    let saved = errno();
    let p = aligned(align, size);
    if p.is_null() {
        set_errno(saved);
        return libc::ENOMEM;
    }
    // SAFETY: the caller's guarantee.
    unsafe { *out = p };
    0
}

fn errno() -> c_int {
    // SAFETY: this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// `aligned_alloc(3)` (C11), glibc's way (2.36): an alignment that is not a power of two is
/// rounded up to the next one (0 is malloc's); one above `SIZE_MAX / 2 + 1` is `EINVAL`.
///
/// # Safety
/// C's contract for `aligned_alloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    match align.max(1).checked_next_power_of_two() {
        Some(align) => match aligned_fast(align, size) {
            Some(p) => p.as_ptr().cast(),
            None => aligned(align, size),
        },
        None => {
            set_errno(libc::EINVAL);
            ptr::null_mut()
        }
    }
}

/// `memalign(3)`: as `aligned_alloc` (glibc rounds a non-power-of-two alignment up).
///
/// # Safety
/// C's contract for `memalign`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: the same contract.
    unsafe { aligned_alloc(align, size) }
}

fn page_size() -> usize {
    // SAFETY: sysconf with a valid name.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as usize } else { 4096 }
}

/// `valloc(3)`: page-aligned.
///
/// # Safety
/// C's contract for `valloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    aligned(page_size(), size)
}

/// `pvalloc(3)`: page-aligned, the size rounded up to whole pages.
///
/// # Safety
/// C's contract for `pvalloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    match size.max(1).checked_next_multiple_of(page) {
        Some(n) => aligned(page, n),
        None => oom(),
    }
}

/// `malloc_usable_size(3)`: the bytes the program may use in the block (0 for null).
///
/// # Safety
/// `p` is null or a live block of this process's malloc family.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    let Some(nn) = NonNull::new(p.cast::<u8>()) else {
        return 0;
    };
    let (pool, key) = mem_fast_path();
    if key != NO_KEY {
        if alloc_domains::check_standard_live(p.cast(), "malloc_usable_size") {
            // SAFETY: a live block of the standard pools or spans (checked).
            return unsafe { pool.usable_size(nn) }.unwrap_or(0);
        }
    } else if ours(p) {
        // SAFETY: a live block the domain claims.
        if let Some(n) = unsafe { MEM.usable_size(nn) } {
            return n;
        }
    }
    not_glibcs("malloc_usable_size", p);
    glibc_usable_size(p)
}

/// The library's own frames, for tracers to skip (`alloc_core::plumbing`): its Rust functions
/// (the crate is named `domalloc`) ...
static FRAMES: alloc_core::plumbing::Prefixes = &["domalloc::"];
/// ... and its C exports: the malloc family, C++'s operators and PEP 445's C API.
static EXPORTS: alloc_core::plumbing::Prefixes = &[
    "malloc",
    "calloc",
    "realloc",
    "reallocarray",
    "free",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "domalloc_*",
    // C++'s operators new and delete, every form (`cxx`).
    "_Znwm*",
    "_Znam*",
    "_ZdlPv*",
    "_ZdaPv*",
];

/// The library's constructor: registers its frames for tracers and the domains' fork handlers,
/// finds glibc's `malloc_usable_size` and starts sampled tracing if the environment asks (each
/// may allocate, which comes back through the exports, ready by then).
extern "C" fn init() {
    alloc_core::plumbing::register(&FRAMES);
    alloc_core::plumbing::register_c_names(&EXPORTS);
    extern "C" fn prepare() {
        alloc_domains::prepare_fork();
    }
    extern "C" fn parent() {
        // SAFETY: pthread_atfork runs this after `prepare`, on the forking thread.
        unsafe { alloc_domains::after_fork_parent() }
    }
    extern "C" fn child() {
        // SAFETY: pthread_atfork runs this in the child, on the thread the fork returned in,
        // after `prepare` ran in the parent.
        unsafe { alloc_domains::after_fork_child() }
    }
    // SAFETY: plain functions that only call the domains' fork handlers.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    // Resolves glibc's `malloc_usable_size` while nothing else runs, on a block of glibc's.
    if let Some(p) = alloc_core::System.malloc(1) {
        let _ = glibc_usable_size(p.as_ptr().cast());
        // SAFETY: a live block of `System`, freed once.
        unsafe { alloc_core::System.free(p.as_ptr()) };
    }
    // `DOMALLOC_TRACE_SAMPLE`: sampled tracing from here, a profile at exit.
    trace_env::start_from_env();
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

/// The domain with C id `id` (0 raw, 1 mem, 2 object, then user domains in the order added).
fn domain(id: c_int) -> Option<DomainId> {
    u32::try_from(id).ok().and_then(DomainId::from_raw)
}

/// Copies `text` into `buf` (NUL-terminated, truncated to `cap`); returns the bytes the whole
/// text needs, without the NUL (so a caller can retry with a larger buffer).
///
/// # Safety
/// `buf` is null (with `cap` 0) or valid for `cap` bytes.
unsafe fn copy_out(text: &str, buf: *mut c_char, cap: usize) -> usize {
    if !buf.is_null() && cap > 0 {
        let n = text.len().min(cap - 1);
        // SAFETY: the caller's guarantee; `n + 1 <= cap`.
        unsafe {
            ptr::copy_nonoverlapping(text.as_ptr(), buf.cast(), n);
            *buf.add(n) = 0;
        }
    }
    text.len()
}
