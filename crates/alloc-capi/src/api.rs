//! PEP 445's API for C callers: the functions declared in `include/domalloc.h`.

use core::alloc::Layout;
use core::ffi::{c_char, c_int, c_void};
use core::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, Ordering};

use alloc_arena::DynArenaProvider;
use alloc_core::lock::Lock;
use alloc_core::{ArenaError, ArenaProvider, DomainAllocator};
use alloc_debug::{KeyType, Tracing, TracingError};
use alloc_domains::{Domain, DomainError, DynAllocator, StatsError};

use crate::{copy_out, domain};

/// Return codes of the functions that can fail (see `domalloc.h`).
pub const DOMALLOC_OK: c_int = 0;
/// No domain has this id.
pub const DOMALLOC_ERR_UNKNOWN_DOMAIN: c_int = -1;
/// The domain has served allocations and the new allocator cannot tell its blocks from others'.
pub const DOMALLOC_ERR_AMBIGUOUS: c_int = -2;
/// A table is full (domains, providers, callbacks).
pub const DOMALLOC_ERR_FULL: c_int = -3;
/// A null or malformed argument.
pub const DOMALLOC_ERR_INVALID: c_int = -4;
/// A domain of that name exists already.
pub const DOMALLOC_ERR_EXISTS: c_int = -5;
/// The domain still has live blocks (it cannot be removed).
pub const DOMALLOC_ERR_LIVE_BLOCKS: c_int = -6;
/// A standard domain (raw, mem, object): never removed.
pub const DOMALLOC_ERR_STANDARD: c_int = -7;
/// No memory could be had (the tracing tables).
pub const DOMALLOC_ERR_NOMEM: c_int = -8;
/// The domain's statistics are off.
pub const DOMALLOC_ERR_STATS_OFF: c_int = -9;
/// The domain has allocated already (statistics are turned on before its first allocation).
pub const DOMALLOC_ERR_USED: c_int = -10;

fn code(e: &DomainError) -> c_int {
    match e {
        DomainError::DuplicateName(_) => DOMALLOC_ERR_EXISTS,
        DomainError::UnknownDomain { .. } | DomainError::Removed { .. } => {
            DOMALLOC_ERR_UNKNOWN_DOMAIN
        }
        DomainError::LiveBlocks { .. } => DOMALLOC_ERR_LIVE_BLOCKS,
        DomainError::StandardDomain(_) => DOMALLOC_ERR_STANDARD,
        DomainError::AmbiguousOwnership { .. } => DOMALLOC_ERR_AMBIGUOUS,
        DomainError::TableFull { .. }
        | DomainError::TooManyCallbacks { .. }
        | DomainError::ArenaAllocator(_) => DOMALLOC_ERR_FULL,
        _ => DOMALLOC_ERR_INVALID,
    }
}

/// PEP 445's `PyMemAllocatorEx`: a context and four functions.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DomallocAllocator {
    /// Passed to every function.
    pub ctx: *mut c_void,
    /// `malloc(ctx, size)`.
    pub malloc: Option<unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void>,
    /// `calloc(ctx, nelem, elsize)`.
    pub calloc: Option<unsafe extern "C" fn(*mut c_void, usize, usize) -> *mut c_void>,
    /// `realloc(ctx, ptr, new_size)`.
    pub realloc: Option<unsafe extern "C" fn(*mut c_void, *mut c_void, usize) -> *mut c_void>,
    /// `free(ctx, ptr)`.
    pub free: Option<unsafe extern "C" fn(*mut c_void, *mut c_void)>,
}

/// A C allocator as a [`DomainAllocator`]. It cannot tell its blocks from others' (`owns` is
/// unknown), so a domain accepts it only before its first allocation.
struct CAllocator(DomallocAllocator);

// SAFETY: the C side promises thread-safe functions (PEP 445's contract for the mem and object
// domains when used without a lock; documented in the header).
unsafe impl Send for CAllocator {}
// SAFETY: as above.
unsafe impl Sync for CAllocator {}

type MallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
type CallocFn = unsafe extern "C" fn(*mut c_void, usize, usize) -> *mut c_void;
type ReallocFn = unsafe extern "C" fn(*mut c_void, *mut c_void, usize) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(*mut c_void, *mut c_void);

impl CAllocator {
    /// The four functions (all present: checked when installed).
    fn fns(&self) -> (MallocFn, CallocFn, ReallocFn, FreeFn) {
        let a = self.0;
        match (a.malloc, a.calloc, a.realloc, a.free) {
            (Some(m), Some(c), Some(r), Some(f)) => (m, c, r, f),
            _ => unreachable!("checked when installed"),
        }
    }
}

// SAFETY: the C allocator's contract is PEP 445's (malloc semantics, 16-byte alignment for the
// 64-bit targets this is built for, realloc keeps contents); 0-byte requests ask for 1 byte.
unsafe impl DomainAllocator for CAllocator {
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        // SAFETY: the C allocator's contract.
        NonNull::new(unsafe { (self.fns().0)(self.0.ctx, size.max(1)) }.cast())
    }
    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        alloc_core::checked_array_size(nelem, elsize).ok()?;
        // SAFETY: the C allocator's contract.
        NonNull::new(unsafe { (self.fns().1)(self.0.ctx, nelem.max(1), elsize.max(1)) }.cast())
    }
    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: the caller's guarantee, forwarded.
        NonNull::new(unsafe { (self.fns().2)(self.0.ctx, ptr.cast(), new_size.max(1)) }.cast())
    }
    unsafe fn free(&self, ptr: *mut u8) {
        if !ptr.is_null() {
            // SAFETY: the caller's guarantee, forwarded.
            unsafe { (self.fns().3)(self.0.ctx, ptr.cast()) }
        }
    }
    /// A C allocator cannot answer `owns`: it never claims blocks (asked, it says so, and is
    /// never called to find out).
    fn track_ownership(&self) -> bool {
        false
    }
    fn name(&self) -> &str {
        "c-allocator"
    }
}

/// Handles given to C for allocators read with `domalloc_get_allocator`, one per allocator.
static HANDLES: Lock<Vec<&'static &'static DynAllocator>> = Lock::new(Vec::new());

fn handle(a: &'static DynAllocator) -> *mut c_void {
    handle_in(&HANDLES, a)
}

/// The one handle of `a` among `handles` (made on first use): a leaked `&'static T` whose
/// address C holds as a context, found again by the address of `a`.
fn handle_in<T: ?Sized>(handles: &Lock<Vec<&'static &'static T>>, a: &'static T) -> *mut c_void {
    let mut h = handles.lock();
    if let Some(found) = h
        .iter()
        .copied()
        .find(|&found: &&'static &'static T| ptr::addr_eq(ptr::from_ref(*found), a))
    {
        return ptr::from_ref(found).cast_mut().cast();
    }
    let leaked: &'static &'static T = Box::leak(Box::new(a));
    h.push(leaked);
    ptr::from_ref(leaked).cast_mut().cast()
}

/// # Safety
/// `ctx` came from `handle`.
unsafe fn from_handle(ctx: *mut c_void) -> &'static DynAllocator {
    // SAFETY: the caller's guarantee: a leaked `&'static DynAllocator`.
    unsafe { *ctx.cast::<&'static DynAllocator>() }
}

unsafe extern "C" fn handle_malloc(ctx: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: `ctx` is one of our handles (it came with these functions).
    unsafe { from_handle(ctx) }
        .malloc(size)
        .map_or(ptr::null_mut(), |p| p.as_ptr().cast())
}
unsafe extern "C" fn handle_calloc(ctx: *mut c_void, n: usize, m: usize) -> *mut c_void {
    // SAFETY: as above.
    unsafe { from_handle(ctx) }
        .calloc(n, m)
        .map_or(ptr::null_mut(), |p| p.as_ptr().cast())
}
unsafe extern "C" fn handle_realloc(ctx: *mut c_void, p: *mut c_void, n: usize) -> *mut c_void {
    // SAFETY: as above; the block is the allocator's (the C caller's guarantee).
    unsafe { from_handle(ctx).realloc(p.cast(), n) }.map_or(ptr::null_mut(), |p| p.as_ptr().cast())
}
unsafe extern "C" fn handle_free(ctx: *mut c_void, p: *mut c_void) {
    // SAFETY: as above.
    unsafe { from_handle(ctx).free(p.cast()) }
}

/// `PyMem_GetAllocator`: the allocator a domain uses now, as C function pointers.
///
/// # Safety
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn domalloc_get_allocator(id: c_int, out: *mut DomallocAllocator) -> c_int {
    if out.is_null() {
        return DOMALLOC_ERR_INVALID;
    }
    let Some(d) = domain(id) else {
        return DOMALLOC_ERR_UNKNOWN_DOMAIN;
    };
    match alloc_domains::get(d) {
        Ok(a) => {
            // SAFETY: the caller's guarantee.
            unsafe { out.write(as_c(a)) };
            DOMALLOC_OK
        }
        Err(e) => code(&e),
    }
}

/// A Rust allocator as C function pointers (its handle as the context).
fn as_c(a: &'static DynAllocator) -> DomallocAllocator {
    DomallocAllocator {
        ctx: handle(a),
        malloc: Some(handle_malloc),
        calloc: Some(handle_calloc),
        realloc: Some(handle_realloc),
        free: Some(handle_free),
    }
}

/// PEP 445's hook pattern in one call: writes the domain's current allocator to `old`, then
/// installs `wrapper`, which declares that it forwards every call to `old` and hands out its
/// blocks unchanged (so it may be installed at any time: every block, made before or after, is
/// freed through it while it is installed). `old` is written before the wrapper can be called,
/// so the wrapper's context may point at it. `domalloc_set_allocator(domain, old)` removes the
/// hook again.
///
/// # Safety
/// `wrapper` is valid for a read and `old` for a write; the wrapper's functions honour PEP 445's
/// contract from any thread, by forwarding to `old`'s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn domalloc_hook_allocator(
    id: c_int,
    wrapper: *const DomallocAllocator,
    old: *mut DomallocAllocator,
) -> c_int {
    // SAFETY: the caller's guarantee.
    let Some(w) = (unsafe { wrapper.as_ref() }) else {
        return DOMALLOC_ERR_INVALID;
    };
    if old.is_null()
        || w.malloc.is_none()
        || w.calloc.is_none()
        || w.realloc.is_none()
        || w.free.is_none()
    {
        return DOMALLOC_ERR_INVALID;
    }
    let Some(d) = domain(id) else {
        return DOMALLOC_ERR_UNKNOWN_DOMAIN;
    };
    let c: &'static CAllocator = Box::leak(Box::new(CAllocator(*w)));
    alloc_domains::hook_forwarding(d, |prev| {
        // SAFETY: the caller's guarantee; written before the wrapper is installed.
        unsafe { old.write(as_c(prev)) };
        c
    })
    .map_or_else(|e| code(&e), |()| DOMALLOC_OK)
}

/// `PyMem_SetAllocator`: makes a C allocator the domain's (before its first allocation: a C
/// allocator cannot claim its blocks).
///
/// # Safety
/// `alloc` is valid for a read; its functions honour PEP 445's contract from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn domalloc_set_allocator(
    id: c_int,
    alloc: *const DomallocAllocator,
) -> c_int {
    // SAFETY: the caller's guarantee.
    let Some(a) = (unsafe { alloc.as_ref() }) else {
        return DOMALLOC_ERR_INVALID;
    };
    if a.malloc.is_none() || a.calloc.is_none() || a.realloc.is_none() || a.free.is_none() {
        return DOMALLOC_ERR_INVALID;
    }
    let Some(d) = domain(id) else {
        return DOMALLOC_ERR_UNKNOWN_DOMAIN;
    };
    // One of our own handles set back (the hook pattern): install the Rust allocator itself,
    // which keeps its ability to claim blocks.
    if HANDLES
        .lock()
        .iter()
        .any(|h| ptr::eq(ptr::from_ref(*h).cast::<c_void>(), a.ctx))
    {
        // SAFETY: the context is one of our handles (a leaked `&'static DynAllocator`).
        let inner = unsafe { from_handle(a.ctx) };
        return alloc_domains::set(d, inner).map_or_else(|e| code(&e), |()| DOMALLOC_OK);
    }
    let c: &'static CAllocator = Box::leak(Box::new(CAllocator(*a)));
    alloc_domains::set(d, c).map_or_else(|e| code(&e), |()| DOMALLOC_OK)
}

/// `PyMem_SetupDebugHooks`; returns how many domains refused the hook.
#[unsafe(no_mangle)]
pub extern "C" fn domalloc_setup_debug_hooks() -> c_int {
    alloc_domains::setup_debug_hooks().len() as c_int
}

/// Allocates through a domain (`PyMem_RawMalloc` for 0, `PyMem_Malloc` 1, `PyObject_Malloc` 2).
#[unsafe(no_mangle)]
pub extern "C" fn domalloc_malloc(id: c_int, size: usize) -> *mut c_void {
    domain(id).map_or(ptr::null_mut(), |d| {
        Domain::new(d)
            .ok()
            .and_then(|d| d.malloc(size))
            .map_or(ptr::null_mut(), |p| p.as_ptr().cast())
    })
}

/// `calloc` through a domain.
#[unsafe(no_mangle)]
pub extern "C" fn domalloc_calloc(id: c_int, nelem: usize, elsize: usize) -> *mut c_void {
    domain(id).map_or(ptr::null_mut(), |d| {
        Domain::new(d)
            .ok()
            .and_then(|d| d.calloc(nelem, elsize))
            .map_or(ptr::null_mut(), |p| p.as_ptr().cast())
    })
}

/// `realloc` through a domain (PEP 445's rules: `realloc(p, 0)` keeps a block).
///
/// # Safety
/// `p` is null or a live block of that domain.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn domalloc_realloc(id: c_int, p: *mut c_void, size: usize) -> *mut c_void {
    let Some(d) = domain(id).and_then(|d| Domain::new(d).ok()) else {
        return ptr::null_mut();
    };
    // SAFETY: the caller's guarantee.
    let q = unsafe { d.realloc(p.cast(), size) };
    q.map_or(ptr::null_mut(), |p| p.as_ptr().cast())
}

/// `free` through a domain.
///
/// # Safety
/// `p` is null or a live block of that domain.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn domalloc_free(id: c_int, p: *mut c_void) {
    if let Some(d) = domain(id).and_then(|d| Domain::new(d).ok()) {
        // SAFETY: the caller's guarantee.
        unsafe { d.free(p.cast()) }
    }
}

/// PEP 445's `PyObjectArenaAllocator`: a context, and arenas allocated and freed by size.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DomallocArenaAllocator {
    /// Passed to both functions.
    pub ctx: *mut c_void,
    /// `alloc(ctx, size)`: `size` bytes, any alignment, or null.
    pub alloc: Option<unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void>,
    /// `free(ctx, ptr, size)`: what `alloc` returned, with its size.
    pub free: Option<unsafe extern "C" fn(*mut c_void, *mut c_void, usize)>,
}

/// A C arena allocator as an [`ArenaProvider`]: it asks for `size + align` bytes and aligns
/// inside them, remembering where each arena really starts.
struct CArenas {
    c: DomallocArenaAllocator,
    starts: Lock<Vec<(usize, usize)>>,
}

// SAFETY: the C side promises thread-safe functions (documented in the header).
unsafe impl Send for CArenas {}
// SAFETY: as above.
unsafe impl Sync for CArenas {}

// SAFETY: each arena lies inside a fresh C block of `size + align` bytes, aligned within it, so it
// is valid, aligned and disjoint from others until freed; freed through the block's real start.
unsafe impl ArenaProvider for CArenas {
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, ArenaError> {
        let total = layout
            .size()
            .checked_add(layout.align())
            .ok_or(ArenaError::Unsupported {
                size: layout.size(),
                align: layout.align(),
                reason: "too large",
            })?;
        let (Some(alloc), Some(_)) = (self.c.alloc, self.c.free) else {
            return Err(ArenaError::Exhausted {
                size: total,
                available: 0,
            });
        };
        // SAFETY: the C allocator's contract.
        let raw = unsafe { alloc(self.c.ctx, total) } as usize;
        if raw == 0 {
            return Err(ArenaError::Exhausted {
                size: total,
                available: 0,
            });
        }
        let start = raw.next_multiple_of(layout.align());
        self.starts.lock().push((start, raw));
        // SAFETY: inside a non-null block.
        Ok(unsafe { NonNull::new_unchecked(start as *mut u8) })
    }

    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout) {
        let raw = {
            let mut s = self.starts.lock();
            let i = s.iter().position(|&(a, _)| a == ptr.as_ptr() as usize);
            i.map(|i| s.swap_remove(i).1)
        };
        if let (Some(raw), Some(free)) = (raw, self.c.free) {
            // SAFETY: the block `alloc` got for this arena, with its size.
            unsafe {
                free(
                    self.c.ctx,
                    raw as *mut c_void,
                    layout.size() + layout.align(),
                )
            }
        }
    }
}

/// Handles for providers read with `domalloc_get_arena_allocator`.
static ARENA_HANDLES: Lock<Vec<&'static &'static DynArenaProvider>> = Lock::new(Vec::new());

fn arena_handle(p: &'static DynArenaProvider) -> *mut c_void {
    handle_in(&ARENA_HANDLES, p)
}

/// Arenas handed to C through a provider handle are page-aligned.
const C_ARENA_ALIGN: usize = 4096;

unsafe extern "C" fn arena_handle_alloc(ctx: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: `ctx` is one of our handles.
    let p: &'static DynArenaProvider = unsafe { *ctx.cast::<&'static DynArenaProvider>() };
    let size = size.max(1).next_multiple_of(C_ARENA_ALIGN);
    match Layout::from_size_align(size, C_ARENA_ALIGN) {
        Ok(l) => p.alloc(l).map_or(ptr::null_mut(), |a| a.as_ptr().cast()),
        Err(_) => ptr::null_mut(),
    }
}

unsafe extern "C" fn arena_handle_free(ctx: *mut c_void, arena: *mut c_void, size: usize) {
    // SAFETY: `ctx` is one of our handles.
    let p: &'static DynArenaProvider = unsafe { *ctx.cast::<&'static DynArenaProvider>() };
    let size = size.max(1).next_multiple_of(C_ARENA_ALIGN);
    if let (Some(a), Ok(l)) = (
        NonNull::new(arena.cast()),
        Layout::from_size_align(size, C_ARENA_ALIGN),
    ) {
        // SAFETY: the C caller's guarantee: an arena from `arena_handle_alloc` with this size.
        unsafe { p.free(a, l) }
    }
}

/// `PyObject_GetArenaAllocator`: where the standard pools take arenas now.
///
/// # Safety
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn domalloc_get_arena_allocator(out: *mut DomallocArenaAllocator) -> c_int {
    if out.is_null() {
        return DOMALLOC_ERR_INVALID;
    }
    let p = alloc_domains::arena_allocator();
    // SAFETY: the caller's guarantee.
    unsafe {
        out.write(DomallocArenaAllocator {
            ctx: arena_handle(p),
            alloc: Some(arena_handle_alloc),
            free: Some(arena_handle_free),
        })
    };
    DOMALLOC_OK
}

/// `PyObject_SetArenaAllocator`: the standard pools take new arenas from `alloc`; arenas already
/// made go back to their maker.
///
/// # Safety
/// `alloc` is valid for a read; its functions are thread-safe and must not allocate through this
/// library's `malloc` (they would need an arena to do so).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn domalloc_set_arena_allocator(
    alloc: *const DomallocArenaAllocator,
) -> c_int {
    // SAFETY: the caller's guarantee.
    let Some(a) = (unsafe { alloc.as_ref() }) else {
        return DOMALLOC_ERR_INVALID;
    };
    if a.alloc.is_none() || a.free.is_none() {
        return DOMALLOC_ERR_INVALID;
    }
    if ARENA_HANDLES
        .lock()
        .iter()
        .any(|h| ptr::eq(ptr::from_ref(*h).cast::<c_void>(), a.ctx))
    {
        // SAFETY: the context is one of our handles (a leaked `&'static DynArenaProvider`).
        let p: &'static DynArenaProvider = unsafe { *a.ctx.cast::<&'static DynArenaProvider>() };
        return alloc_domains::set_arena_allocator(p).map_or_else(|e| code(&e), |()| DOMALLOC_OK);
    }
    let c: &'static CArenas = Box::leak(Box::new(CArenas {
        c: *a,
        starts: Lock::new(Vec::new()),
    }));
    alloc_domains::set_arena_allocator(c).map_or_else(|e| code(&e), |()| DOMALLOC_OK)
}

/// The standard pools' statistics (see `PoolStats`).
#[repr(C)]
pub struct DomallocPoolStats {
    /// Arenas mapped now.
    pub arenas: usize,
    /// The most arenas mapped at once.
    pub arenas_highest: usize,
    /// Bytes mapped for arenas.
    pub bytes_mapped: usize,
    /// Bytes of allocated blocks.
    pub bytes_in_use: usize,
    /// Allocated blocks.
    pub blocks_in_use: usize,
    /// Empty pools.
    pub pools_empty: usize,
}

/// Fills `out` with the standard pools' statistics, as the calling thread sees them.
///
/// # Safety
/// `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn domalloc_pool_stats(out: *mut DomallocPoolStats) -> c_int {
    if out.is_null() {
        return DOMALLOC_ERR_INVALID;
    }
    let s = alloc_domains::pool_stats();
    // SAFETY: the caller's guarantee.
    unsafe {
        out.write(DomallocPoolStats {
            arenas: s.arenas,
            arenas_highest: s.arenas_highest,
            bytes_mapped: s.bytes_mapped,
            bytes_in_use: s.bytes_in_use,
            blocks_in_use: s.blocks_in_use(),
            pools_empty: s.pools_empty,
        })
    };
    DOMALLOC_OK
}

/// The statistics table (`sys._debugmallocstats()`'s), NUL-terminated into `buf`; returns its
/// full length.
///
/// # Safety
/// `buf` is null (with `cap` 0) or valid for `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn domalloc_pool_stats_text(buf: *mut c_char, cap: usize) -> usize {
    let text = alloc_domains::pool_stats().to_string();
    // SAFETY: the caller's guarantee.
    unsafe { copy_out(&text, buf, cap) }
}

/// A domain's statistics (`alloc_domains::DomainStats`): counted from the domain's first
/// allocation while it counts (`DOMALLOC_STATS=1`, `domalloc_domain_stats_enable`).
#[repr(C)]
pub struct DomallocDomainStats {
    /// Allocations that succeeded through the domain.
    pub allocations: u64,
    /// Frees of non-null blocks through the domain.
    pub frees: u64,
    /// Blocks made and not freed yet.
    pub live_blocks: u64,
    /// Bytes of the live blocks (usable sizes: `malloc_usable_size`'s).
    pub live_bytes: u64,
    /// The most live bytes at any moment since counting started.
    pub peak_live_bytes: u64,
}

fn stats_code(e: &StatsError) -> c_int {
    match e {
        StatsError::NotEnabled(_) => DOMALLOC_ERR_STATS_OFF,
        StatsError::AlreadyAllocated(_) => DOMALLOC_ERR_USED,
        StatsError::Domain(e) => code(e),
        _ => DOMALLOC_ERR_INVALID,
    }
}

/// The handle of domain `id`, or `DOMALLOC_ERR_UNKNOWN_DOMAIN`.
fn domain_handle(id: c_int) -> Result<Domain, c_int> {
    domain(id)
        .and_then(|d| Domain::new(d).ok())
        .ok_or(DOMALLOC_ERR_UNKNOWN_DOMAIN)
}

/// Turns a domain's statistics on, before its first allocation: `DOMALLOC_OK` (also if they are
/// on already), `DOMALLOC_ERR_UNKNOWN_DOMAIN` or `DOMALLOC_ERR_USED`.
#[unsafe(no_mangle)]
pub extern "C" fn domalloc_domain_stats_enable(id: c_int) -> c_int {
    match domain_handle(id).map(|d| d.enable_stats()) {
        Ok(Ok(())) => DOMALLOC_OK,
        Ok(Err(e)) => stats_code(&e),
        Err(code) => code,
    }
}

/// Fills `out` with a domain's statistics: `DOMALLOC_OK`, `DOMALLOC_ERR_INVALID` (null `out`),
/// `DOMALLOC_ERR_UNKNOWN_DOMAIN` or `DOMALLOC_ERR_STATS_OFF` (`out` untouched on error).
///
/// # Safety
/// `out` is null or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn domalloc_domain_stats(id: c_int, out: *mut DomallocDomainStats) -> c_int {
    if out.is_null() {
        return DOMALLOC_ERR_INVALID;
    }
    let s = match domain_handle(id).map(|d| d.stats()) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return stats_code(&e),
        Err(code) => return code,
    };
    // SAFETY: the caller's guarantee (not null: checked above).
    unsafe {
        out.write(DomallocDomainStats {
            allocations: s.allocations,
            frees: s.frees,
            live_blocks: s.live_blocks,
            live_bytes: s.live_bytes,
            peak_live_bytes: s.peak_live_bytes,
        })
    };
    DOMALLOC_OK
}

/// `malloc_trim(0)` for the standard pools.
#[unsafe(no_mangle)]
pub extern "C" fn domalloc_trim() {
    alloc_domains::trim_pools();
}

/// The tracer hooked on the mem domain by `domalloc_tracing_start`.
static TRACER: AtomicPtr<Tracing<&'static DynAllocator>> = AtomicPtr::new(ptr::null_mut());

pub(crate) fn tracer() -> Option<&'static Tracing<&'static DynAllocator>> {
    // SAFETY: a leaked tracer, published with Release.
    unsafe { TRACER.load(Ordering::Acquire).as_ref() }
}

/// tracemalloc's `start(nframe)`: traces every block of the mem domain (hooking it the first
/// time) with `depth` frames per traceback.
#[unsafe(no_mangle)]
pub extern "C" fn domalloc_tracing_start(depth: c_int) -> c_int {
    tracing_start(depth, None)
}

/// [`domalloc_tracing_start`], recording only a sample of the blocks: bytes are sampled every
/// `interval` bytes on average (a block of `s` bytes with probability `1 - exp(-s / interval)`),
/// and every figure (traced memory, top, leak report) estimates all the blocks. An `interval` of
/// 0 or above `DOMALLOC_MAX_SAMPLE_INTERVAL` is `DOMALLOC_ERR_INVALID`. Changing between exact
/// and sampled tracing, or the interval, forgets the traces.
#[unsafe(no_mangle)]
pub extern "C" fn domalloc_tracing_start_sampled(depth: c_int, interval: usize) -> c_int {
    if interval == 0 {
        return DOMALLOC_ERR_INVALID;
    }
    tracing_start(depth, Some(interval))
}

/// Starts the mem domain's tracer (hooked the first time) with `depth` frames, sampled or not.
pub(crate) fn tracing_start(depth: c_int, interval: Option<usize>) -> c_int {
    let Ok(depth) = usize::try_from(depth) else {
        return DOMALLOC_ERR_INVALID;
    };
    let t = match tracer() {
        Some(t) => t,
        None => match hook_tracer() {
            Ok(t) => t,
            Err(code) => return code,
        },
    };
    match t.set_depth(depth).and_then(|()| t.set_sampling(interval)) {
        Ok(()) => {
            t.start();
            DOMALLOC_OK
        }
        Err(TracingError::NoMemory) => DOMALLOC_ERR_NOMEM,
        Err(_) => DOMALLOC_ERR_INVALID,
    }
}

/// Hooks a tracer on the mem domain.
fn hook_tracer() -> Result<&'static Tracing<&'static DynAllocator>, c_int> {
    let mut made: Option<&'static Tracing<&'static DynAllocator>> = None;
    // Tracing hands out the blocks it wraps unchanged: a forwarding hook, accepted at any time.
    let r = alloc_domains::hook_forwarding(alloc_domains::DomainId::MEM, |prev| {
        let t: &'static Tracing<&'static DynAllocator> = Box::leak(Box::new(Tracing::new(prev)));
        made = Some(t);
        t
    });
    match (r, made) {
        (Ok(()), Some(t)) => {
            TRACER.store(ptr::from_ref(t).cast_mut(), Ordering::Release);
            Ok(t)
        }
        (Err(e), _) => Err(code(&e)),
        _ => Err(DOMALLOC_ERR_INVALID),
    }
}

/// tracemalloc's `stop()`.
#[unsafe(no_mangle)]
pub extern "C" fn domalloc_tracing_stop() {
    if let Some(t) = tracer() {
        t.stop();
    }
}

/// tracemalloc's `is_tracing()`.
#[unsafe(no_mangle)]
pub extern "C" fn domalloc_tracing_is_tracing() -> c_int {
    c_int::from(tracer().is_some_and(|t| t.is_tracing()))
}

/// tracemalloc's `get_traced_memory()`.
///
/// # Safety
/// Each pointer is null or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn domalloc_tracing_traced_memory(current: *mut usize, peak: *mut usize) {
    let (c, p) = tracer().map_or((0, 0), |t| t.traced_memory());
    // SAFETY: the caller's guarantee.
    unsafe {
        if !current.is_null() {
            *current = c;
        }
        if !peak.is_null() {
            *peak = p;
        }
    }
}

/// tracemalloc's `reset_peak()`.
#[unsafe(no_mangle)]
pub extern "C" fn domalloc_tracing_reset_peak() {
    if let Some(t) = tracer() {
        t.reset_peak();
    }
}

/// The `limit` largest sites of a snapshot taken now, by line, as tracemalloc prints them.
///
/// # Safety
/// `buf` is null (with `cap` 0) or valid for `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn domalloc_tracing_top(buf: *mut c_char, cap: usize, limit: c_int) -> usize {
    let text = tracer().map_or_else(String::new, |t| {
        t.take_snapshot()
            .format_top(KeyType::Lineno, usize::try_from(limit).unwrap_or(10))
    });
    // SAFETY: the caller's guarantee.
    unsafe { copy_out(&text, buf, cap) }
}

/// What is live now, grouped by site: the leak report.
///
/// # Safety
/// `buf` is null (with `cap` 0) or valid for `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn domalloc_tracing_leak_report(buf: *mut c_char, cap: usize) -> usize {
    let text = tracer().map_or_else(String::new, |t| t.leak_report().to_string());
    // SAFETY: the caller's guarantee.
    unsafe { copy_out(&text, buf, cap) }
}

// ---------------------------------------------------------------------------------------------
// User domains and change callbacks.

/// The names given to `domalloc_add_domain`, each kept once for the rest of the program (a
/// domain's name is `&'static`): adding and removing domains of the same names reuses them.
static C_NAMES: Lock<Vec<&'static str>> = Lock::new(Vec::new());

/// Adds a domain named `name` (NUL-terminated, copied), using the allocator the mem domain uses
/// now; returns its id (3 and up; an id of a removed domain is not given again), or
/// `DOMALLOC_ERR_INVALID` (null or empty name, not UTF-8), `DOMALLOC_ERR_EXISTS` or
/// `DOMALLOC_ERR_FULL`.
///
/// # Safety
/// `name` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn domalloc_add_domain(name: *const c_char) -> c_int {
    if name.is_null() {
        return DOMALLOC_ERR_INVALID;
    }
    // SAFETY: the caller's guarantee.
    let Ok(text) = unsafe { core::ffi::CStr::from_ptr(name) }.to_str() else {
        return DOMALLOC_ERR_INVALID;
    };
    if text.is_empty() {
        return DOMALLOC_ERR_INVALID;
    }
    let Ok(mem) = alloc_domains::get(alloc_domains::DomainId::MEM) else {
        return DOMALLOC_ERR_INVALID;
    };
    let name: &'static str = {
        let mut names = C_NAMES.lock();
        match names.iter().find(|n| **n == text) {
            Some(n) => n,
            None => {
                let n: &'static str = Box::leak(text.to_owned().into_boxed_str());
                names.push(n);
                n
            }
        }
    };
    match alloc_domains::add_domain(name, mem) {
        Ok(id) => c_id(id),
        Err(e) => code(&e),
    }
}

/// The number C knows a domain by (see `DomainId::to_raw`: the first domain at an index has the
/// index's number).
fn c_id(id: alloc_domains::DomainId) -> c_int {
    id.to_raw() as c_int
}

/// Removes a user domain that owns no live block (`alloc_domains::remove_domain`): its id is
/// never valid again. Returns `DOMALLOC_OK`, `DOMALLOC_ERR_UNKNOWN_DOMAIN` (no domain has this
/// id, or it was removed already), `DOMALLOC_ERR_STANDARD` (raw, mem or object) or
/// `DOMALLOC_ERR_LIVE_BLOCKS` (a block made through the domain is not freed yet).
#[unsafe(no_mangle)]
pub extern "C" fn domalloc_remove_domain(id: c_int) -> c_int {
    let Some(d) = domain(id) else {
        return DOMALLOC_ERR_UNKNOWN_DOMAIN;
    };
    alloc_domains::remove_domain(d).map_or_else(|e| code(&e), |()| DOMALLOC_OK)
}

/// Writes the ids of the existing domains to `ids` (up to `cap` of them, in id order); returns
/// how many exist.
///
/// # Safety
/// `ids` is null (with `cap` 0) or valid for `cap` writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn domalloc_domains(ids: *mut c_int, cap: usize) -> usize {
    let all = alloc_domains::domains();
    if !ids.is_null() {
        for (i, d) in all.iter().take(cap).enumerate() {
            // SAFETY: the caller's guarantee: `i < cap`.
            unsafe { ids.add(i).write(c_id(d.id)) };
        }
    }
    all.len()
}

/// Copies the name of domain `id` into `buf` (NUL-terminated, truncated to `cap`); returns the
/// bytes the whole name needs (without the NUL), or 0 for an unknown domain.
///
/// # Safety
/// `buf` is null (with `cap` 0) or valid for `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn domalloc_domain_name(id: c_int, buf: *mut c_char, cap: usize) -> usize {
    match domain(id).map(alloc_domains::name) {
        // SAFETY: the caller's guarantee.
        Some(Ok(name)) => unsafe { copy_out(name, buf, cap) },
        _ => 0,
    }
}

/// A C change callback: `callback(ctx, domain, now)`, `now` the domain's allocator after the
/// change, as C function pointers.
pub type DomallocChangeCallback =
    Option<unsafe extern "C" fn(*mut c_void, c_int, *const DomallocAllocator)>;

/// The C callbacks registered, by the id given to C (positive, never reused).
static C_CALLBACKS: Lock<Vec<(i64, alloc_domains::CallbackId)>> = Lock::new(Vec::new());
static NEXT_C_CALLBACK: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);

/// Registers `callback` for domain `id`: called at once with the current allocator, then after
/// every change of that domain (outside the table's lock, so it may read the table). Returns the
/// callback's id (positive), or `DOMALLOC_ERR_UNKNOWN_DOMAIN`, `DOMALLOC_ERR_FULL` or
/// `DOMALLOC_ERR_INVALID` (a null callback).
///
/// # Safety
/// `callback` may be called from any thread that changes the domain, with `ctx`, until removed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn domalloc_on_change(
    id: c_int,
    callback: DomallocChangeCallback,
    ctx: *mut c_void,
) -> i64 {
    let Some(cb) = callback else {
        return i64::from(DOMALLOC_ERR_INVALID);
    };
    let Some(d) = domain(id) else {
        return i64::from(DOMALLOC_ERR_UNKNOWN_DOMAIN);
    };
    let ctx = ctx as usize;
    let f: &'static alloc_domains::ChangeCallback = Box::leak(Box::new(
        move |d: alloc_domains::DomainId, now: &'static DynAllocator| {
            let c = as_c(now);
            // SAFETY: the caller's guarantee: the callback takes its context and a domain.
            unsafe { cb(ctx as *mut c_void, c_id(d), &c) };
        },
    ));
    match alloc_domains::on_change(d, f) {
        Ok(cid) => {
            let n = NEXT_C_CALLBACK.fetch_add(1, Ordering::Relaxed);
            C_CALLBACKS.lock().push((n, cid));
            n
        }
        Err(e) => i64::from(code(&e)),
    }
}

/// Unregisters a callback `domalloc_on_change` returned; `DOMALLOC_OK`, or `DOMALLOC_ERR_INVALID`
/// for an id that is not registered.
#[unsafe(no_mangle)]
pub extern "C" fn domalloc_remove_change_callback(callback_id: i64) -> c_int {
    let cid = {
        let mut l = C_CALLBACKS.lock();
        let Some(i) = l.iter().position(|&(n, _)| n == callback_id) else {
            return DOMALLOC_ERR_INVALID;
        };
        l.swap_remove(i).1
    };
    if alloc_domains::remove_callback(cid) {
        DOMALLOC_OK
    } else {
        DOMALLOC_ERR_INVALID
    }
}
