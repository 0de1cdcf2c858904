//! `Profiling<A>`: the allocation profiler Marangozov's 2002 proposal asked for before pymalloc's
//! parameters are changed: the exact histogram of request sizes, and how long blocks live, counted
//! in allocations between a block's malloc and its free.
//!
//! Sizes up to [`EXACT_SIZES`] bytes are counted exactly (one counter per byte count, relaxed
//! atomics); larger ones per power of two. A block's birth (the allocation clock when it was made)
//! is kept in a table in the C library's memory behind a lock that never allocates through the
//! profiled allocator, so the decorator changes no block's layout and can sit under
//! `#[global_allocator]`.

use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use alloc_core::lock::Lock;
use alloc_core::{AsAllocator, DomainAllocator, Ownership, System};
use hashbrown::{DefaultHashBuilder, HashMap};

/// Request sizes counted one by one: 0 to this many bytes.
pub const EXACT_SIZES: usize = 4096;
/// Buckets of the lifetime histogram and of the large-size histogram: bucket `k` holds values `v`
/// with `2^(k-1) <= v < 2^k` (bucket 0 holds 0).
pub const LOG_BUCKETS: usize = 65;

type Births = HashMap<usize, u64, DefaultHashBuilder, AsAllocator<System>>;

/// The log2 bucket of `v`: 0 for 0, else `floor(log2 v) + 1`.
pub fn log_bucket(v: u64) -> usize {
    (u64::BITS - v.leading_zeros()) as usize
}

/// Records the request sizes and block lifetimes of everything allocated through it, then
/// forwards to `A` unchanged (same blocks, same layout).
///
/// ```
/// use alloc_core::{DomainAllocator, System};
/// use alloc_debug::Profiling;
///
/// let p = Profiling::new(System);
/// let a = p.malloc(24).unwrap();
/// let b = p.malloc(24).unwrap();
/// // SAFETY: live blocks, freed once.
/// unsafe {
///     p.free(a.as_ptr()); // lived 1 allocation (b was made meanwhile)
///     p.free(b.as_ptr()); // lived 0 allocations
/// }
/// let profile = p.profile();
/// assert_eq!(profile.count_of(24), 2);
/// assert_eq!(profile.lifetimes[0], 1);
/// assert_eq!(profile.lifetimes[1], 1);
/// ```
pub struct Profiling<A> {
    inner: A,
    clock: AtomicU64,
    frees: AtomicU64,
    reallocs: AtomicU64,
    exact: [AtomicU64; EXACT_SIZES + 1],
    large: [AtomicU64; LOG_BUCKETS],
    lifetimes: [AtomicU64; LOG_BUCKETS],
    births: Lock<Option<Births>>,
}

impl<A> Profiling<A> {
    /// Profiles `inner`.
    pub const fn new(inner: A) -> Self {
        Profiling {
            inner,
            clock: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            reallocs: AtomicU64::new(0),
            exact: [const { AtomicU64::new(0) }; EXACT_SIZES + 1],
            large: [const { AtomicU64::new(0) }; LOG_BUCKETS],
            lifetimes: [const { AtomicU64::new(0) }; LOG_BUCKETS],
            births: Lock::new(None),
        }
    }

    /// The profiled allocator.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    fn count_request(&self, size: usize) {
        if size <= EXACT_SIZES {
            self.exact[size].fetch_add(1, Ordering::Relaxed);
        } else {
            self.large[log_bucket(size as u64)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A block was made: count it and remember its birth.
    fn born(&self, p: NonNull<u8>, size: usize) {
        self.count_request(size);
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut b = self.births.lock();
        let map = b.get_or_insert_with(|| {
            HashMap::with_hasher_in(DefaultHashBuilder::default(), AsAllocator::new(System))
        });
        // Without memory for the record the block still works; its lifetime goes unmeasured.
        if map.try_reserve(1).is_ok() {
            map.insert(p.as_ptr() as usize, now);
        }
    }

    /// A block ends: record how many allocations it lived.
    fn died(&self, p: *mut u8) {
        let birth = self
            .births
            .lock()
            .as_mut()
            .and_then(|m| m.remove(&(p as usize)));
        self.frees.fetch_add(1, Ordering::Relaxed);
        if let Some(birth) = birth {
            let lived = self.clock.load(Ordering::Relaxed).saturating_sub(birth + 1);
            self.lifetimes[log_bucket(lived)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A block moved or was resized: it keeps its birth.
    fn moved(&self, old: *mut u8, new: NonNull<u8>, size: usize) {
        self.count_request(size);
        self.reallocs.fetch_add(1, Ordering::Relaxed);
        if old == new.as_ptr() {
            return;
        }
        let mut b = self.births.lock();
        if let Some(m) = b.as_mut()
            && let Some(birth) = m.remove(&(old as usize))
        {
            m.insert(new.as_ptr() as usize, birth);
        }
    }

    /// What was recorded so far.
    pub fn profile(&self) -> Profile {
        let exact: Vec<(usize, u64)> = self
            .exact
            .iter()
            .enumerate()
            .map(|(s, c)| (s, c.load(Ordering::Relaxed)))
            .filter(|&(_, c)| c > 0)
            .collect();
        let load = |a: &[AtomicU64; LOG_BUCKETS]| {
            let mut out = [0u64; LOG_BUCKETS];
            for (o, v) in out.iter_mut().zip(a) {
                *o = v.load(Ordering::Relaxed);
            }
            out
        };
        let live = self.births.lock().as_ref().map_or(0, |m| m.len());
        Profile {
            exact,
            large: load(&self.large),
            lifetimes: load(&self.lifetimes),
            allocations: self.clock.load(Ordering::Relaxed),
            frees: self.frees.load(Ordering::Relaxed),
            reallocs: self.reallocs.load(Ordering::Relaxed),
            live_blocks: live as u64,
        }
    }
}

/// A profile: request sizes and block lifetimes of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// `(size, requests)` for every size up to [`EXACT_SIZES`] that was asked for, smallest first
    /// (reallocs count as requests of their new size).
    pub exact: Vec<(usize, u64)>,
    /// Requests above [`EXACT_SIZES`], per [`log_bucket`] of the size.
    pub large: [u64; LOG_BUCKETS],
    /// Freed blocks per [`log_bucket`] of their lifetime, in allocations made while they lived.
    pub lifetimes: [u64; LOG_BUCKETS],
    /// Allocations (malloc, calloc and aligned forms).
    pub allocations: u64,
    /// Frees.
    pub frees: u64,
    /// Reallocs of existing blocks.
    pub reallocs: u64,
    /// Blocks still live when the profile was taken.
    pub live_blocks: u64,
}

impl Profile {
    /// How many requests asked for exactly `size` bytes (`size <= EXACT_SIZES`).
    pub fn count_of(&self, size: usize) -> u64 {
        self.exact
            .binary_search_by_key(&size, |&(s, _)| s)
            .map_or(0, |i| self.exact[i].1)
    }

    /// Requests of at most `threshold` bytes, and their bytes.
    pub fn small_requests(&self, threshold: usize) -> (u64, u64) {
        self.exact
            .iter()
            .filter(|&&(s, _)| s <= threshold)
            .fold((0, 0), |(n, b), &(s, c)| (n + c, b + c * s as u64))
    }

    /// Bytes lost to rounding if requests of at most `threshold` bytes are served from size
    /// classes `spacing` bytes apart (a request of 0 takes one spacing, like 1): internal
    /// fragmentation, as (wasted bytes, requested bytes).
    pub fn rounding_waste(&self, spacing: usize, threshold: usize) -> (u64, u64) {
        let mut wasted = 0u64;
        let mut requested = 0u64;
        for &(s, c) in self.exact.iter().filter(|&&(s, _)| s <= threshold) {
            let block = s.max(1).next_multiple_of(spacing);
            wasted += c * (block - s) as u64;
            requested += c * s as u64;
        }
        (wasted, requested)
    }

    /// The median lifetime bucket's upper bound (allocations), over freed blocks.
    pub fn median_lifetime(&self) -> u64 {
        let total: u64 = self.lifetimes.iter().sum();
        let mut seen = 0;
        for (k, &n) in self.lifetimes.iter().enumerate() {
            seen += n;
            if seen * 2 >= total && n > 0 {
                return if k == 0 { 0 } else { (1u64 << k) - 1 };
            }
        }
        0
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "allocations {}, frees {}, reallocs {}, live at the end {}",
            self.allocations, self.frees, self.reallocs, self.live_blocks
        )?;
        let total: u64 =
            self.exact.iter().map(|&(_, c)| c).sum::<u64>() + self.large.iter().sum::<u64>();
        let mut top: Vec<(usize, u64)> = self.exact.clone();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        writeln!(f, "most requested sizes:")?;
        for (s, c) in top.iter().take(10) {
            writeln!(
                f,
                "  {s:>6} bytes  {c:>10}  {:>5.1}%",
                *c as f64 * 100.0 / total.max(1) as f64
            )?;
        }
        writeln!(
            f,
            "block lifetimes (allocations made while the block lived):"
        )?;
        for (k, &n) in self.lifetimes.iter().enumerate().filter(|&(_, &n)| n > 0) {
            let (lo, hi) = if k == 0 {
                (0, 0)
            } else {
                (1u64 << (k - 1), (1u64 << k) - 1)
            };
            writeln!(f, "  {lo:>10} .. {hi:<10} {n:>10}")?;
        }
        Ok(())
    }
}

// SAFETY: every block is the inner allocator's, returned unchanged; the decorator only records.
unsafe impl<A: DomainAllocator> DomainAllocator for Profiling<A> {
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        let p = self.inner.malloc(size)?;
        self.born(p, size);
        Some(p)
    }
    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        let p = self.inner.calloc(nelem, elsize)?;
        self.born(p, nelem.saturating_mul(elsize));
        Some(p)
    }
    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        if ptr.is_null() {
            return self.malloc(new_size);
        }
        // SAFETY: the caller's guarantee, forwarded.
        let p = unsafe { self.inner.realloc(ptr, new_size) }?;
        self.moved(ptr, p, new_size);
        Some(p)
    }
    unsafe fn free(&self, ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        self.died(ptr);
        // SAFETY: the caller's guarantee, forwarded.
        unsafe { self.inner.free(ptr) }
    }
    unsafe fn free_sized(&self, ptr: NonNull<u8>, size: usize) {
        self.died(ptr.as_ptr());
        // SAFETY: the caller's guarantee, forwarded.
        unsafe { self.inner.free_sized(ptr, size) }
    }
    fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        let p = self.inner.malloc_aligned(layout)?;
        self.born(p, layout.size());
        Some(p)
    }
    fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        let p = self.inner.calloc_aligned(layout)?;
        self.born(p, layout.size());
        Some(p)
    }
    unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
        self.died(ptr.as_ptr());
        // SAFETY: the caller's guarantee, forwarded.
        unsafe { self.inner.free_aligned(ptr, layout) }
    }
    unsafe fn realloc_aligned(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: the caller's guarantee, forwarded.
        let p = unsafe { self.inner.realloc_aligned(ptr, layout, new_size) }?;
        self.moved(ptr.as_ptr(), p, new_size);
        Some(p)
    }
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        // SAFETY: forwarded.
        unsafe { self.inner.usable_size(ptr) }
    }
    fn owns(&self, ptr: *const u8) -> Ownership {
        self.inner.owns(ptr)
    }
    fn track_ownership(&self) -> bool {
        self.inner.track_ownership()
    }
    fn declares_ownership(&self) -> bool {
        self.inner.declares_ownership()
    }
    fn name(&self) -> &str {
        "profiling"
    }
    fn write_origin(&self, ptr: *const u8, out: &mut dyn fmt::Write) -> bool {
        self.inner.write_origin(ptr, out)
    }
    fn write_origin_aligned(
        &self,
        ptr: *const u8,
        layout: Layout,
        out: &mut dyn fmt::Write,
    ) -> bool {
        self.inner.write_origin_aligned(ptr, layout, out)
    }
    fn prepare_fork(&self) {
        self.births.acquire_for_fork();
        self.inner.prepare_fork();
    }
    unsafe fn after_fork_parent(&self) {
        // SAFETY: the caller's guarantee: on the thread that ran `prepare_fork`.
        unsafe {
            self.inner.after_fork_parent();
            self.births.release_after_fork();
        }
    }
    unsafe fn after_fork_child(&self) {
        // SAFETY: the caller's guarantee: in the child, on the thread the fork returned in.
        unsafe {
            self.inner.after_fork_child();
            self.births.release_after_fork();
        }
    }
}
