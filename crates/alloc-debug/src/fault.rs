//! `FaultInjecting<A>`: make allocations fail on purpose, to test that a program survives running
//! out of memory (PEP 445's "simulate out of memory" use case, and CPython's test hook
//! `_testcapi.set_nomemory(start, stop)`).

use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use alloc_core::{DomainAllocator, Ownership};

/// A predicate on the requested size: return `true` to let the rules fail this request.
pub type FaultPredicate = fn(usize) -> bool;

/// Wraps an allocator and fails chosen allocation requests (malloc, calloc, realloc and their
/// aligned forms; frees always go through).
///
/// Requests are numbered from 0 as they arrive (only those that pass the size floor and the
/// predicate are counted); a request fails when any rule that is set matches:
///
/// * [`fail_range(start, stop)`](Self::fail_range): numbers `start..stop` (CPython's
///   `set_nomemory`; `stop = u64::MAX` for "from `start` on");
/// * [`fail_nth(n)`](Self::fail_nth): the `n`th request (1-based), once;
/// * [`fail_every(n)`](Self::fail_every): every `n`th request;
/// * [`fail_with_probability(p, seed)`](Self::fail_with_probability): each with probability `p`, from
///   a seeded generator (reproducible);
/// * [`only_at_least(size)`](Self::only_at_least) and [`only_when(predicate)`](Self::only_when)
///   restrict which requests count.
///
/// It starts disabled: nothing fails until [`enable`](Self::enable). Disabled, it costs one relaxed
/// load per request.
///
/// ```
/// use alloc_core::{DomainAllocator, System};
/// use alloc_debug::FaultInjecting;
///
/// let a = FaultInjecting::new(System);
/// a.fail_range(2, 4);
/// a.enable();
/// let got: Vec<bool> = (0..6).map(|_| {
///     let p = a.malloc(32);
///     // SAFETY: a live block (or null), freed once.
///     unsafe { a.free(p.map_or(core::ptr::null_mut(), |p| p.as_ptr())) };
///     p.is_some()
/// }).collect();
/// assert_eq!(got, [true, true, false, false, true, true]);
/// assert_eq!(a.failures(), 2);
/// ```
pub struct FaultInjecting<A> {
    inner: A,
    enabled: AtomicBool,
    requests: AtomicU64,
    failures: AtomicU64,
    range_start: AtomicU64,
    range_stop: AtomicU64,
    nth: AtomicU64,
    every: AtomicU64,
    /// Probability as a fraction of 2^32 (0: rule off).
    probability: AtomicU64,
    rng: AtomicU64,
    min_size: AtomicUsize,
    predicate: AtomicUsize,
}

impl<A> FaultInjecting<A> {
    /// Wraps `inner`, disabled, with no rule set.
    pub const fn new(inner: A) -> Self {
        FaultInjecting {
            inner,
            enabled: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            range_start: AtomicU64::new(0),
            range_stop: AtomicU64::new(0),
            nth: AtomicU64::new(0),
            every: AtomicU64::new(0),
            probability: AtomicU64::new(0),
            rng: AtomicU64::new(0),
            min_size: AtomicUsize::new(0),
            predicate: AtomicUsize::new(0),
        }
    }

    /// The wrapped allocator.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    /// Starts failing requests by the rules set.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Stops failing requests (the rules and counts stay).
    pub fn disable(&self) {
        self.enabled.store(false, Ordering::Relaxed);
    }

    /// Whether requests can fail now.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Fails requests numbered `start..stop` (counting from the next [`reset`](Self::reset), or from
    /// the start).
    pub fn fail_range(&self, start: u64, stop: u64) {
        self.range_start.store(start, Ordering::Relaxed);
        self.range_stop.store(stop, Ordering::Relaxed);
    }

    /// Fails the `n`th request (1-based) only; 0 clears the rule.
    pub fn fail_nth(&self, n: u64) {
        self.nth.store(n, Ordering::Relaxed);
    }

    /// Fails every `n`th request; 0 clears the rule.
    pub fn fail_every(&self, n: u64) {
        self.every.store(n, Ordering::Relaxed);
    }

    /// Fails each request with probability `p` (0.0 clears the rule), drawing from a generator
    /// seeded with `seed`, so a run can be repeated.
    pub fn fail_with_probability(&self, p: f64, seed: u64) {
        let p = (p.clamp(0.0, 1.0) * (1u64 << 32) as f64) as u64;
        self.rng.store(seed, Ordering::Relaxed);
        self.probability.store(p, Ordering::Relaxed);
    }

    /// Only requests of at least `size` bytes count and can fail.
    pub fn only_at_least(&self, size: usize) {
        self.min_size.store(size, Ordering::Relaxed);
    }

    /// Only requests for which `predicate(size)` is true count and can fail; `None` clears it.
    pub fn only_when(&self, predicate: Option<FaultPredicate>) {
        self.predicate
            .store(predicate.map_or(0, |f| f as usize), Ordering::Relaxed);
    }

    /// Requests failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Requests counted so far (those that passed the size floor and the predicate while enabled).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Clears every rule and count (and disables).
    pub fn reset(&self) {
        self.disable();
        for a in [
            &self.requests,
            &self.failures,
            &self.range_start,
            &self.range_stop,
            &self.nth,
            &self.every,
            &self.probability,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        self.min_size.store(0, Ordering::Relaxed);
        self.predicate.store(0, Ordering::Relaxed);
    }

    /// Whether the request of `size` bytes fails.
    #[inline]
    fn should_fail(&self, size: usize) -> bool {
        if !self.enabled.load(Ordering::Relaxed) {
            return false;
        }
        self.decide(size)
    }

    #[cold]
    fn decide(&self, size: usize) -> bool {
        if size < self.min_size.load(Ordering::Relaxed) {
            return false;
        }
        let pred = self.predicate.load(Ordering::Relaxed);
        if pred != 0 {
            // SAFETY: the only non-zero values stored are `FaultPredicate`s cast to usize.
            let f: FaultPredicate = unsafe { core::mem::transmute::<usize, FaultPredicate>(pred) };
            if !f(size) {
                return false;
            }
        }
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let start = self.range_start.load(Ordering::Relaxed);
        let stop = self.range_stop.load(Ordering::Relaxed);
        let nth = self.nth.load(Ordering::Relaxed);
        let every = self.every.load(Ordering::Relaxed);
        let p = self.probability.load(Ordering::Relaxed);
        let fail = (start < stop && (start..stop).contains(&n))
            || (nth != 0 && n + 1 == nth)
            || (every != 0 && (n + 1).is_multiple_of(every))
            || (p != 0 && (self.next_random() >> 32) < p);
        if fail {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        fail
    }

    fn next_random(&self) -> u64 {
        // splitmix64 over an atomic state: reproducible for one thread, still random for many.
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl<A> fmt::Debug for FaultInjecting<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultInjecting")
            .field("enabled", &self.is_enabled())
            .field("requests", &self.requests())
            .field("failures", &self.failures())
            .finish()
    }
}

// SAFETY: every block comes from `inner` unchanged; failing a request returns `None` without
// touching anything (a failed realloc leaves the block to the caller, as the contract says).
unsafe impl<A: DomainAllocator> DomainAllocator for FaultInjecting<A> {
    #[inline]
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        if self.should_fail(size) {
            return None;
        }
        self.inner.malloc(size)
    }
    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        if self.should_fail(nelem.saturating_mul(elsize)) {
            return None;
        }
        self.inner.calloc(nelem, elsize)
    }
    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        if self.should_fail(new_size) {
            return None;
        }
        // SAFETY: the caller's guarantee, forwarded.
        unsafe { self.inner.realloc(ptr, new_size) }
    }
    #[inline]
    unsafe fn free(&self, ptr: *mut u8) {
        // SAFETY: the caller's guarantee, forwarded.
        unsafe { self.inner.free(ptr) }
    }
    #[inline]
    unsafe fn free_sized(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: the caller's guarantee, forwarded.
        unsafe { self.inner.free_sized(ptr, size) }
    }
    fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        if self.should_fail(layout.size()) {
            return None;
        }
        self.inner.malloc_aligned(layout)
    }
    fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        if self.should_fail(layout.size()) {
            return None;
        }
        self.inner.calloc_aligned(layout)
    }
    unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's guarantee, forwarded.
        unsafe { self.inner.free_aligned(ptr, layout) }
    }
    unsafe fn realloc_aligned(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        if self.should_fail(new_size) {
            return None;
        }
        // SAFETY: the caller's guarantee, forwarded.
        unsafe { self.inner.realloc_aligned(ptr, layout, new_size) }
    }
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        // SAFETY: the caller's guarantee, forwarded.
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
        "fault-injecting"
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
        self.inner.prepare_fork();
    }
    unsafe fn after_fork_parent(&self) {
        // SAFETY: the caller's guarantee, forwarded unchanged.
        unsafe { self.inner.after_fork_parent() }
    }
    unsafe fn after_fork_child(&self) {
        // SAFETY: the caller's guarantee, forwarded unchanged.
        unsafe { self.inner.after_fork_child() }
    }
}
