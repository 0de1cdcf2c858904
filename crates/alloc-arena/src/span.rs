//! [`Spans`]: large blocks, each in a span of whole mebibytes mapped for it, with a bounded cache
//! of freed spans so that bursts of large blocks reuse mappings instead of calling `mmap` and
//! `munmap` every time (glibc's `mmap` threshold moves for the same reason).
//!
//! ```text
//!   span (a multiple of 1 MiB, aligned to 1 MiB, registered in the registry)
//!   +-----------+--------------------------------------------------+----------------------+
//!   | header 64 | the block (what malloc returns points here)      | the rest of the span |
//!   +-----------+--------------------------------------------------+----------------------+
//! ```
//!
//! * **Ownership** is the registry's: every chunk of a span maps to the allocator's id while the
//!   span is mapped (live or cached), so `owns` answers for any pointer and reads no memory.
//!   A pointer outside the spans is the C library's (`System`): `free`, `realloc` and
//!   `usable_size` hand it there and `owns` asks it, as the pools do with the blocks they pass to
//!   their large-block allocator, so that a block nobody claims keeps meaning "the C library's".
//!   Without a C library (an embedded target), such a pointer is reported as a bad free.
//! * **The header** holds the span's size and its state (live or cached). A free checks both: a
//!   pointer that is not 64 bytes into a chunk-aligned span, or a span already cached, is a bad
//!   free, reported on one line before the process aborts (the hardened default of `check`).
//! * **The cache** holds up to `CACHE_SPANS` freed spans, and bytes up to the larger of
//!   `CACHE_BYTES` and half the bytes of the spans that hold live blocks (a program that keeps
//!   300 MiB of large buffers and replaces them one by one reuses the freed ones, as glibc's heap
//!   does, instead of mapping and faulting in new ones; one that frees everything is back to
//!   `CACHE_BYTES` at its next large free). A request takes a cached span of the size it needs,
//!   or one up to twice that (the smallest, and among equals the most recently freed, whose pages
//!   are resident in the shape the program last used); a free puts its span in the cache and
//!   unmaps the spans that have stayed there longer than `DECAY_MS`, or that do not fit
//!   the bounds, oldest first. Cached memory therefore goes back to the OS within about a second
//!   of the program's last large free, and at once on [`Spans::trim`]. Without an OS there is
//!   no cache: a freed span goes back to its provider (a region the pools share) at once.
//! * **realloc** stays in place while the new size fits the span (a growing buffer costs no copy
//!   until it crosses a mebibyte), and moves otherwise.
//!
//! One lock guards the cache (large blocks are rare next to small ones, and the lock is held for a
//! scan of at most `CACHE_SPANS` entries); a span's mapping and unmapping happen outside it.

use core::alloc::Layout;
use core::ptr::{self, NonNull};
// The live bytes' counter is a plain atomic even under loom: no protocol rests on it.
use core::sync::atomic as plain;

use alloc_core::{ArenaProvider, DomainAllocator, Ownership};

use crate::check::{BadFree, bad_free};
use crate::registry;
use crate::sync::{AtomicU32, Ordering, SpinLock};

/// Span granularity and alignment: the registry's chunk.
const CHUNK: usize = 1 << registry::CHUNK_SHIFT;
/// Bytes before the block: the header, and the block's alignment.
const HEADER: usize = 64;
/// Freed spans kept for reuse, at most.
const CACHE_SPANS: usize = 32;
/// Bytes of freed spans kept for reuse, at most. Without an OS there is no clock to let cached
/// spans decay, and the provider is a region the pools draw from too: nothing is cached, a freed
/// span goes back to the provider at once.
const CACHE_BYTES: usize = if cfg!(any(unix, windows)) {
    64 << 20
} else {
    0
};
/// The cache may hold more than `CACHE_BYTES`: up to the live spans' bytes over this.
const LIVE_SHARE: usize = 2;
/// How long a freed span stays cached before it is unmapped.
const DECAY_MS: u64 = 1000;

/// `SpanHeader::state` of a span holding a live block.
#[cfg(target_pointer_width = "64")]
const LIVE: usize = 0x5ba4_11fe_0000_0001;
/// `SpanHeader::state` of a span in the cache.
#[cfg(target_pointer_width = "64")]
const CACHED: usize = 0x5ba4_11fe_0000_0002;
/// `SpanHeader::state` of a span holding a live block.
#[cfg(not(target_pointer_width = "64"))]
const LIVE: usize = 0x5ba4_0001;
/// `SpanHeader::state` of a span in the cache.
#[cfg(not(target_pointer_width = "64"))]
const CACHED: usize = 0x5ba4_0002;

#[repr(C)]
struct SpanHeader {
    /// The span's bytes (a multiple of `CHUNK`).
    size: usize,
    state: usize,
}

#[derive(Clone, Copy)]
struct Cached {
    base: usize,
    size: usize,
    at_ms: u64,
}

struct Cache {
    spans: [Cached; CACHE_SPANS],
    len: usize,
    bytes: usize,
}

/// Large blocks in spans mapped from `P`, with a bounded, decaying cache of freed spans; see the
/// module documentation. The mem domain's blocks above 64 KiB come from here.
///
/// ```
/// use alloc_arena::Spans;
/// use alloc_core::{DomainAllocator, Ownership};
///
/// let spans = Spans::new();
/// let p = spans.malloc(300 << 10).unwrap();
/// assert_eq!(spans.owns(p.as_ptr()), Ownership::Owned);
/// // SAFETY: a live block of `spans`, resized in place (it fits its span), then freed once.
/// unsafe {
///     let q = spans.realloc(p.as_ptr(), 600 << 10).unwrap();
///     assert_eq!(q, p);
///     spans.free(q.as_ptr());
/// }
/// let again = spans.malloc(200 << 10).unwrap(); // the cached span, no new mapping
/// assert_eq!(again, p);
/// # // SAFETY: a live block of `spans`, freed once.
/// # unsafe { spans.free(again.as_ptr()) };
/// ```
pub struct Spans<P: ArenaProvider = crate::DefaultArenas> {
    provider: P,
    /// The registry id of the spans (0 until the first span).
    id: AtomicU32,
    /// Bytes of the spans holding live blocks: the cache's bound follows it. A heuristic read
    /// and written with relaxed atomics (no protocol rests on it), out of the cache's lock so
    /// that a fresh span's mapping takes no lock.
    live: plain::AtomicUsize,
    cache: SpinLock<Cache>,
}

// SAFETY: the cache is behind its lock; spans are owned by the blocks' holders; `P` is shared.
unsafe impl<P: ArenaProvider + Sync> Sync for Spans<P> {}

#[cfg(any(unix, windows))]
impl Spans {
    /// Spans mapped from the OS.
    pub const fn new() -> Self {
        Spans::with_provider(crate::OsArenas::new())
    }
}

#[cfg(any(unix, windows))]
impl Default for Spans {
    fn default() -> Self {
        Spans::new()
    }
}

impl<P: ArenaProvider> Spans<P> {
    /// Spans mapped from `provider` (asked for multiples of 1 MiB aligned to 1 MiB).
    pub const fn with_provider(provider: P) -> Self {
        Spans {
            provider,
            id: AtomicU32::new(0),
            live: plain::AtomicUsize::new(0),
            cache: SpinLock::new(Cache {
                spans: [Cached {
                    base: 0,
                    size: 0,
                    at_ms: 0,
                }; CACHE_SPANS],
                len: 0,
                bytes: 0,
            }),
        }
    }

    fn id(&self) -> u32 {
        match self.id.load(Ordering::Relaxed) {
            0 => registry::install_id(&self.id, registry::new_owner_id()),
            id => id,
        }
    }

    /// The layout of a span of `size` bytes (a multiple of `CHUNK`); `None` past `isize::MAX`.
    fn layout(size: usize) -> Option<Layout> {
        Layout::from_size_align(size, CHUNK).ok()
    }

    /// A span of at least `need` bytes: a cached one (and whether it was), or a fresh mapping.
    fn take(&self, need: usize) -> Option<(usize, usize, bool)> {
        let cached = self.cache.with(|c| {
            let i = (0..c.len)
                .filter(|&i| c.spans[i].size >= need && c.spans[i].size <= 2 * need)
                // The smallest that fits; among those, the most recently freed, whose pages are
                // the likeliest to be resident already in the shape the program last used.
                .min_by_key(|&i| (c.spans[i].size, core::cmp::Reverse(i)))?;
            let s = c.spans[i];
            c.spans.copy_within(i + 1..c.len, i);
            c.len -= 1;
            c.bytes -= s.size;
            Some(s)
        });
        if let Some(s) = cached {
            return Some((s.base, s.size, true));
        }
        let layout = Self::layout(need)?;
        let base = self.provider.alloc(layout).ok()?.as_ptr() as usize;
        if registry::register(base, need, self.id()).is_err() {
            // SAFETY: just mapped with this layout, never handed out.
            unsafe {
                self.provider
                    .free(NonNull::new_unchecked(base as *mut u8), layout)
            };
            return None;
        }
        Some((base, need, false))
    }

    /// The most bytes the cache may hold while spans of `live` bytes hold live blocks: the
    /// larger of `CACHE_BYTES` and a share of `live`; 0 without an OS (nothing is cached).
    fn cache_bound(live: usize) -> usize {
        if CACHE_BYTES == 0 {
            0
        } else {
            CACHE_BYTES.max(live / LIVE_SHARE)
        }
    }

    /// Unregisters and unmaps a span nobody can reach any more.
    fn release(&self, s: Cached) {
        registry::unregister(s.base, s.size);
        // Its block was marked free: the memory goes back to the provider accessible.
        crate::instrument::region_accessible(s.base as *mut u8, s.size);
        if let Some(layout) = Self::layout(s.size) {
            // SAFETY: mapped by `take` with this layout; out of the cache, so unreachable.
            unsafe {
                self.provider
                    .free(NonNull::new_unchecked(s.base as *mut u8), layout)
            };
        }
    }

    fn block(&self, size: usize, zeroed: bool) -> Option<NonNull<u8>> {
        let need = size.checked_add(HEADER)?.checked_next_multiple_of(CHUNK)?;
        let (base, span, reused) = self.take(need)?;
        self.live.fetch_add(span, plain::Ordering::Relaxed);
        let header = base as *mut SpanHeader;
        // SAFETY: the span is mapped, ours alone, and starts with room for its header.
        unsafe {
            header.write(SpanHeader {
                size: span,
                state: LIVE,
            });
            let p = (base + HEADER) as *mut u8;
            // The whole usable part of the span is the block (`usable_size`, and realloc in
            // place); a fresh span's memory is zero where the provider says so.
            let fresh_zero = !reused && self.provider.fresh_memory_is_zeroed();
            crate::instrument::block_allocated(p, span - HEADER, fresh_zero);
            if zeroed && !fresh_zero {
                p.write_bytes(0, size);
            }
            NonNull::new(p)
        }
    }

    /// The header of the span of `ptr`, after the hardened checks (`op` names the call).
    ///
    /// # Safety
    /// `ptr` lies in one of this allocator's spans (the registry says so).
    unsafe fn header(&self, ptr: *mut u8, op: &str) -> *mut SpanHeader {
        let addr = ptr as usize;
        if addr & (CHUNK - 1) != HEADER {
            bad_free(op, addr, BadFree::Interior);
        }
        let header = (addr - HEADER) as *mut SpanHeader;
        // SAFETY: the span is mapped (registered), and its header was written when it was made.
        match unsafe { (*header).state } {
            LIVE => header,
            CACHED => bad_free(op, addr, BadFree::DoubleFree),
            _ => bad_free(op, addr, BadFree::Interior),
        }
    }

    /// Unmaps every cached span (like `malloc_trim`).
    pub fn trim(&self) {
        loop {
            let s = self.cache.with(|c| {
                if c.len == 0 {
                    return None;
                }
                c.len -= 1;
                c.bytes -= c.spans[c.len].size;
                Some(c.spans[c.len])
            });
            match s {
                Some(s) => self.release(s),
                None => return,
            }
        }
    }

    /// The registry id of the spans (0 until the first span): what `arena_owner` answers for a
    /// pointer into one.
    pub fn registry_id(&self) -> u32 {
        self.id.load(Ordering::Relaxed)
    }

    /// How many freed spans, and how many bytes, the cache holds now.
    pub fn cached(&self) -> (usize, usize) {
        self.cache.with(|c| (c.len, c.bytes))
    }

    fn owned(&self, ptr: *const u8) -> bool {
        let id = self.id.load(Ordering::Relaxed);
        id != 0 && registry::owner_of(ptr as usize) == id
    }
}

/// Where a pointer outside the spans goes: the C library's allocator where `alloc_core` has it
/// (`System`), which made it; elsewhere nothing else can have made it, so it is a bad pointer.
#[cfg(all(any(unix, windows), target_pointer_width = "64"))]
mod foreign {
    use alloc_core::{DomainAllocator, System};
    use core::ptr::NonNull;

    /// # Safety
    /// `ptr` is a live block of the C library's allocator.
    #[inline(always)]
    pub(super) unsafe fn realloc(ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: the caller's guarantee.
        unsafe { System.realloc(ptr, new_size) }
    }

    /// # Safety
    /// As for `realloc`.
    #[inline(always)]
    pub(super) unsafe fn free(ptr: *mut u8) {
        // SAFETY: the caller's guarantee.
        unsafe { System.free(ptr) }
    }

    /// # Safety
    /// As for `realloc`.
    #[inline(always)]
    pub(super) unsafe fn usable_size(ptr: NonNull<u8>) -> Option<usize> {
        // SAFETY: the caller's guarantee.
        unsafe { System.usable_size(ptr) }
    }
}

/// Where a pointer outside the spans goes: with no C library, nothing else can have made it, so
/// it is reported as a bad pointer (then the process ends: see `check`).
#[cfg(not(all(any(unix, windows), target_pointer_width = "64")))]
mod foreign {
    use crate::check::{BadFree, bad_free};
    use core::ptr::NonNull;

    /// # Safety
    /// None needed: the pointer is reported, never read.
    pub(super) unsafe fn realloc(ptr: *mut u8, _new_size: usize) -> Option<NonNull<u8>> {
        bad_free("realloc", ptr as usize, BadFree::OtherAllocator)
    }

    /// # Safety
    /// None needed: the pointer is reported, never read.
    pub(super) unsafe fn free(ptr: *mut u8) {
        bad_free("free", ptr as usize, BadFree::OtherAllocator)
    }

    /// # Safety
    /// None needed: the pointer is never read.
    pub(super) unsafe fn usable_size(_ptr: NonNull<u8>) -> Option<usize> {
        None
    }
}

// SAFETY: each block lies in a span of its own, mapped (or reused from the cache) for it and
// 64-byte aligned within it; the header before it records the span, so free and realloc need no
// size; a span returns to the cache or the OS only from `free` (or `realloc` moving), once: the
// header's state refuses a second free.
unsafe impl<P: ArenaProvider + Sync> DomainAllocator for Spans<P> {
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        self.block(size, false)
    }

    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        let size = alloc_core::checked_array_size(nelem, elsize).ok()?;
        self.block(size, true)
    }

    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        let Some(old) = NonNull::new(ptr) else {
            return self.malloc(new_size);
        };
        if !self.owned(ptr) {
            // SAFETY: not a span: the C library's (the caller's guarantee).
            return unsafe { foreign::realloc(ptr, new_size) };
        }
        // SAFETY: the caller's guarantee: a live block of ours.
        let span = unsafe { (*self.header(ptr, "realloc")).size };
        if new_size <= span - HEADER && new_size + HEADER > span / 2 {
            return Some(old);
        }
        let new = self.malloc(new_size)?;
        // SAFETY: both live and distinct; the old block has `span - HEADER` usable bytes.
        unsafe {
            ptr::copy_nonoverlapping(ptr, new.as_ptr(), new_size.min(span - HEADER));
            self.free(ptr);
        }
        Some(new)
    }

    unsafe fn free(&self, ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        if !self.owned(ptr) {
            // SAFETY: not a span: the C library's (the caller's guarantee).
            return unsafe { foreign::free(ptr) };
        }
        // SAFETY: the caller's guarantee: a live block of ours.
        let header = unsafe { self.header(ptr, "free") };
        // SAFETY: a live span's header; from now on the span is the cache's.
        let size = unsafe {
            (*header).state = CACHED;
            (*header).size
        };
        crate::instrument::block_freed(ptr, size - HEADER);
        let live = self
            .live
            .fetch_sub(size, plain::Ordering::Relaxed)
            .saturating_sub(size);
        let bound = Self::cache_bound(live);
        let now = crate::os::now_ms();
        let mut victims = [Cached {
            base: 0,
            size: 0,
            at_ms: 0,
        }; CACHE_SPANS + 1];
        let mut n = 0;
        self.cache.with(|c| {
            // Oldest first: the stale, then whatever keeps the cache over its bounds.
            while c.len > 0
                && (now.wrapping_sub(c.spans[0].at_ms) > DECAY_MS
                    || c.len == CACHE_SPANS
                    || c.bytes + size > bound)
            {
                victims[n] = c.spans[0];
                n += 1;
                c.bytes -= c.spans[0].size;
                c.spans.copy_within(1..c.len, 0);
                c.len -= 1;
            }
            // The bound is 0 without an OS: then no span is ever cached.
            if size <= bound {
                c.spans[c.len] = Cached {
                    base: header as usize,
                    size,
                    at_ms: now,
                };
                c.len += 1;
                c.bytes += size;
            } else {
                victims[n] = Cached {
                    base: header as usize,
                    size,
                    at_ms: now,
                };
                n += 1;
            }
        });
        for v in &victims[..n] {
            self.release(*v);
        }
    }

    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        if !self.owned(ptr.as_ptr()) {
            // SAFETY: not a span: the C library's (the caller's guarantee).
            return unsafe { foreign::usable_size(ptr) };
        }
        // SAFETY: the caller's guarantee: a live block of ours.
        Some(unsafe { (*self.header(ptr.as_ptr(), "malloc_usable_size")).size } - HEADER)
    }

    /// Exact: the spans it made are registered. (A pointer elsewhere that its `free` is given
    /// goes to the C library, but it is not one of its blocks.)
    fn owns(&self, ptr: *const u8) -> Ownership {
        if self.owned(ptr) {
            Ownership::Owned
        } else {
            Ownership::NotOwned
        }
    }

    /// A span's block starts `HEADER` bytes into it, while the span is live (a cached one holds
    /// no block).
    fn starts_block(&self, ptr: *const u8) -> Ownership {
        if !self.owned(ptr) {
            return Ownership::NotOwned;
        }
        let addr = ptr as usize;
        if addr & (CHUNK - 1) != HEADER {
            return Ownership::NotOwned;
        }
        // SAFETY: the span is mapped (registered), and its header was written when it was made.
        match unsafe { (*((addr - HEADER) as *const SpanHeader)).state } {
            LIVE => Ownership::Owned,
            _ => Ownership::NotOwned,
        }
    }

    fn name(&self) -> &str {
        "spans"
    }

    fn prepare_fork(&self) {
        self.cache.acquire_for_fork();
    }

    unsafe fn after_fork_parent(&self) {
        // SAFETY: the caller's guarantee: on the thread that ran `prepare_fork`.
        unsafe { self.cache.release_after_fork() };
    }

    unsafe fn after_fork_child(&self) {
        // SAFETY: the caller's guarantee: in the child, on the thread the fork returned in.
        unsafe { self.cache.release_after_fork() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_span_is_reused_and_its_block_zeroed_for_calloc() {
        let spans = Spans::new();
        let p = spans.malloc(100 << 10).unwrap();
        // SAFETY: a live block of 100 KiB, written, then freed once.
        unsafe {
            p.as_ptr().write_bytes(0xab, 100 << 10);
            spans.free(p.as_ptr());
        }
        assert_eq!(spans.cached(), (1, CHUNK));
        let q = spans.calloc(1, 90 << 10).unwrap();
        assert_eq!(q, p, "the cached span is taken again");
        // SAFETY: a live block of 90 KiB.
        let bytes = unsafe { core::slice::from_raw_parts(q.as_ptr(), 90 << 10) };
        assert!(bytes.iter().all(|&b| b == 0));
        assert_eq!(spans.cached(), (0, 0));
        // SAFETY: live, freed once.
        unsafe { spans.free(q.as_ptr()) };
        spans.trim();
        assert_eq!(spans.cached(), (0, 0));
        assert_ne!(
            spans.owns(q.as_ptr()),
            Ownership::Owned,
            "unmapped and unregistered"
        );
    }

    #[test]
    fn realloc_stays_in_place_within_the_span_and_moves_past_it() {
        let spans = Spans::new();
        let p = spans.malloc(70 << 10).unwrap();
        // SAFETY: live blocks throughout, each freed once.
        unsafe {
            p.as_ptr().write_bytes(7, 70 << 10);
            assert_eq!(spans.usable_size(p), Some(CHUNK - HEADER));
            let q = spans.realloc(p.as_ptr(), CHUNK - HEADER).unwrap();
            assert_eq!(q, p);
            let r = spans.realloc(q.as_ptr(), CHUNK).unwrap();
            assert_ne!(r, q);
            assert_eq!(spans.usable_size(r), Some(2 * CHUNK - HEADER));
            let kept = core::slice::from_raw_parts(r.as_ptr(), 70 << 10);
            assert!(kept.iter().all(|&b| b == 7));
            spans.free(r.as_ptr());
        }
        spans.trim();
    }

    #[test]
    fn the_cache_keeps_its_bounds() {
        let spans = Spans::new();
        let blocks: std::vec::Vec<_> = (0..CACHE_SPANS + 8)
            .map(|_| spans.malloc(200 << 10).unwrap())
            .collect();
        for b in &blocks {
            // SAFETY: each live block freed once.
            unsafe { spans.free(b.as_ptr()) };
        }
        let (n, bytes) = spans.cached();
        assert!(
            n <= CACHE_SPANS && bytes <= CACHE_BYTES,
            "{n} spans, {bytes} bytes"
        );
        for b in &blocks[..8] {
            assert_ne!(
                spans.owns(b.as_ptr()),
                Ownership::Owned,
                "the oldest went back"
            );
        }
        spans.trim();
    }

    #[test]
    fn the_cache_grows_with_the_live_spans_and_shrinks_when_they_go() {
        // 30 live blocks of 8 MiB spans (mapped, never touched): freeing ten of them keeps all
        // ten (80 MiB, over `CACHE_BYTES`, within half the 160 MiB still live), so replacing
        // them maps nothing; once every block is freed the cache is back within `CACHE_BYTES`.
        const SPAN: usize = 8 << 20;
        let spans = Spans::new();
        let blocks: std::vec::Vec<_> = (0..30)
            .map(|_| spans.malloc(SPAN - HEADER).unwrap())
            .collect();
        for b in &blocks[..10] {
            // SAFETY: each live block freed once.
            unsafe { spans.free(b.as_ptr()) };
        }
        assert_eq!(spans.cached(), (10, 10 * SPAN));
        const { assert!(10 * SPAN > CACHE_BYTES) };
        let again: std::vec::Vec<_> = (0..10)
            .map(|_| spans.malloc(SPAN - HEADER).unwrap())
            .collect();
        assert_eq!(
            spans.cached(),
            (0, 0),
            "every replacement reused a cached span"
        );
        for b in again.iter().chain(&blocks[10..]) {
            // SAFETY: each live block freed once.
            unsafe { spans.free(b.as_ptr()) };
        }
        let (n, bytes) = spans.cached();
        assert!(bytes <= CACHE_BYTES, "{n} spans, {bytes} bytes");
        spans.trim();
    }

    #[test]
    fn a_request_takes_the_most_recently_freed_of_equal_spans() {
        // A program that frees a sparse buffer and a dense one of the same size, then asks for
        // them again in the order it freed them, gets each back: the cache reuses last in, first
        // out, so pages stay resident where they were (and no more of them become so).
        let spans = Spans::new();
        let a = spans.malloc(300 << 10).unwrap();
        let b = spans.malloc(300 << 10).unwrap();
        let c = spans.malloc(300 << 10).unwrap();
        // SAFETY: live blocks, each freed once.
        unsafe {
            spans.free(a.as_ptr());
            spans.free(b.as_ptr());
            spans.free(c.as_ptr());
        }
        let first = spans.malloc(300 << 10).unwrap();
        let second = spans.malloc(300 << 10).unwrap();
        assert_eq!((first, second), (c, b), "newest first");
        // A smaller span that fits still wins over a newer, larger one.
        let big = spans.malloc(1500 << 10).unwrap();
        // SAFETY: live blocks, each freed once.
        unsafe {
            spans.free(first.as_ptr());
            spans.free(big.as_ptr());
        }
        let third = spans.malloc(900 << 10).unwrap();
        assert_eq!(third, c, "the newest of the smallest that fit");
        // SAFETY: live blocks, each freed once.
        unsafe {
            spans.free(second.as_ptr());
            spans.free(third.as_ptr());
        }
        spans.trim();
    }

    #[test]
    fn an_oversized_request_fails_cleanly() {
        let spans = Spans::new();
        assert!(spans.malloc(usize::MAX - 10).is_none());
        assert!(spans.malloc(isize::MAX as usize).is_none());
    }
}
