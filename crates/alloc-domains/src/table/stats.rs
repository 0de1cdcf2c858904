//! Per-domain statistics: allocations, frees, live blocks, live bytes and their peak, counted by
//! the table itself (no hook), for domains that have them on.
//!
//! # Opt-in, from the domain's first allocation
//!
//! Counting is off by default: the mem domain's fast path (its standard pool reached with no
//! indirect call, and the C library's `malloc` and `free` that start there) has no size for an
//! unsized free and no room for a counter update at no cost. A domain counts when
//! `DOMALLOC_STATS=1` was set at start-up (every domain: raw, mem and object from the first
//! call, user domains from [`add_domain`]), or when [`Domain::enable_stats`] was called before the
//! domain's first allocation. Later is refused ([`StatsError::AlreadyAllocated`]): the figures are
//! exact, and a block made before counting started would make them wrong when it is freed. While
//! the mem domain counts, its fast path stays off (`FAST_MEM` holds no key): while its standard
//! pool is its only allocator, `COUNTED_MEM` holds the key instead, and the handle's counting
//! path calls the pool directly and counts (the C library's `free` through
//! [`free_standard_counted`]); otherwise every call goes through the table and counts there.
//!
//! # What is counted
//!
//! Every call through the domain's handle ([`Domain`], and so the C library's exports and
//! [`GlobalFront`](crate::GlobalFront)): an allocation that succeeds counts one allocation, a free
//! of a non-null block one free, a `realloc` neither (its block stays one live block; its bytes
//! change). Live bytes are, for each live block,
//!
//! * **the usable size** (`DomainAllocator::usable_size`, `malloc_usable_size`) for blocks of the
//!   malloc family (`malloc`, `calloc`, `realloc`, `free`, `free_sized`): a C `free` carries no
//!   size, so the size counted is the one the allocator answers for the block at both ends (0 for
//!   an allocator that cannot tell);
//! * **the requested size** (`Layout::size`) for blocks of the aligned family (`malloc_aligned`,
//!   `calloc_aligned`, `realloc_aligned`, `free_aligned`: Rust's `GlobalAlloc`), whose frees
//!   carry their layout.
//!
//! A block freed directly by an allocator, not through the domain, stays counted live.
//!
//! # Exact across threads
//!
//! Each domain's counters are atomics on their own cache line: an allocation is two atomic adds
//! (allocations, live bytes) and, when the new live total exceeds the peak, a `fetch_max`, so the
//! peak is the exact maximum of the live-byte total over the order of the adds; a free is two
//! atomic adds. No lock, no allocation. A free made on another thread than the allocation is
//! counted like any other. [`Domain::stats`] reads the frees before the allocations (the frees
//! are Release, the read Acquire), so the live blocks it reports are never negative while other
//! threads run; with no thread running, every field is exact.

use super::*;

/// Per-domain statistics, as [`Domain::stats`] reads them: counted from the domain's first
/// allocation (what is counted is described there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DomainStats {
    /// Allocations that succeeded through the domain (the malloc and the aligned families).
    pub allocations: u64,
    /// Frees of non-null blocks through the domain.
    pub frees: u64,
    /// Blocks made and not freed yet (`allocations - frees`).
    pub live_blocks: u64,
    /// Bytes of the live blocks: usable sizes for the malloc family, requested sizes for the
    /// aligned family.
    pub live_bytes: u64,
    /// The most live bytes at any moment since counting started.
    pub peak_live_bytes: u64,
}

/// Why a domain's statistics cannot be read or turned on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StatsError {
    /// The domain does not count (the default).
    #[error(
        "statistics are off for domain {0:?}: start the process with DOMALLOC_STATS=1, or call \
         Domain::enable_stats before the domain's first allocation"
    )]
    NotEnabled(&'static str),
    /// Counting can only start before the domain's first allocation.
    #[error(
        "domain {0:?} has allocated already: its statistics can only be turned on before its \
         first allocation (or with DOMALLOC_STATS=1 at start-up)"
    )]
    AlreadyAllocated(&'static str),
    /// The domain does not exist (any more).
    #[error(transparent)]
    Domain(#[from] DomainError),
}

/// The name of the environment variable that turns statistics on for every domain at start-up
/// (`1`; `0` or unset: off).
pub const STATS_VAR: &str = "DOMALLOC_STATS";

/// One domain's counters, on a cache line of their own.
#[repr(align(128))]
pub(super) struct Counters {
    on: AtomicBool,
    allocations: AtomicU64,
    frees: AtomicU64,
    live_bytes: AtomicU64,
    peak: AtomicU64,
}

impl Counters {
    const fn new() -> Counters {
        Counters {
            on: AtomicBool::new(false),
            allocations: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            live_bytes: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        }
    }

    /// Whether the domain counts. Relaxed: it is set before the domain's first allocation, which
    /// every later call follows (see [`mark_used`]).
    #[inline(always)]
    pub(super) fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// A block of `bytes` made.
    pub(super) fn made(&self, bytes: usize) {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        self.grow(bytes as u64);
    }

    /// A block of `bytes` freed. Release: a reader that sees this free sees the allocation that
    /// happened before it.
    pub(super) fn freed(&self, bytes: usize) {
        self.live_bytes.fetch_sub(bytes as u64, Ordering::Relaxed);
        self.frees.fetch_add(1, Ordering::Release);
    }

    /// A live block resized from `old` to `new` bytes.
    pub(super) fn resized(&self, old: usize, new: usize) {
        if new >= old {
            self.grow((new - old) as u64);
        } else {
            self.live_bytes
                .fetch_sub((old - new) as u64, Ordering::Relaxed);
        }
    }

    fn grow(&self, bytes: u64) {
        let now = self
            .live_bytes
            .fetch_add(bytes, Ordering::Relaxed)
            .wrapping_add(bytes);
        if now > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
    }

    fn read(&self) -> DomainStats {
        // Frees first (Acquire, pairing with their Release): every allocation a free seen here
        // followed is seen below.
        let frees = self.frees.load(Ordering::Acquire);
        let allocations = self.allocations.load(Ordering::Acquire);
        DomainStats {
            allocations,
            frees,
            live_blocks: allocations.saturating_sub(frees),
            live_bytes: self.live_bytes.load(Ordering::Relaxed),
            peak_live_bytes: self.peak.load(Ordering::Relaxed),
        }
    }

    /// Back to zero, counting or not (a new domain in the slot, under the gate).
    fn reset(&self, on: bool) {
        self.allocations.store(0, Ordering::Relaxed);
        self.frees.store(0, Ordering::Relaxed);
        self.live_bytes.store(0, Ordering::Relaxed);
        self.peak.store(0, Ordering::Relaxed);
        self.on.store(on, Ordering::Release);
    }
}

/// Each domain's counters, by index.
pub(super) static STATS: [Counters; MAX_DOMAINS] = [const { Counters::new() }; MAX_DOMAINS];

/// Whether `DOMALLOC_STATS=1` was set at start-up: user domains count from [`add_domain`].
static STATS_DEFAULT: AtomicBool = AtomicBool::new(false);

/// Orders a domain's first allocation (its `used` flag set) against [`Domain::enable_stats`]:
/// either counting is on before the first allocation reads it, or the enabling sees the domain
/// used and refuses. Held for a few instructions, never while allocating; taken in
/// `prepare_fork`.
pub(super) static GATE: alloc_core::lock::Lock<()> = alloc_core::lock::Lock::new(());

/// Records that domain `id` has served an allocation (the replacement rule and the statistics
/// read it). Acquire: a thread that sees the flag set sees the counting switch as the first
/// allocation did.
#[inline]
pub(super) fn mark_used(id: DomainId) {
    let s = &TABLE[id.index()];
    if !s.used.load(Ordering::Acquire) {
        mark_used_slow(s);
    }
}

#[cold]
#[inline(never)]
fn mark_used_slow(s: &Slot) {
    let _g = GATE.lock();
    s.used.store(true, Ordering::Release);
}

/// At start-up, before the standard domains' records are published: `DOMALLOC_STATS=1` turns
/// counting on for every domain. Allocates nothing.
pub(super) fn stats_from_env() {
    let Some(value) = read_env(c"DOMALLOC_STATS") else {
        return;
    };
    match value.bytes() {
        b"1" if !value.cut => {
            STATS_DEFAULT.store(true, Ordering::Relaxed);
            for c in &STATS[..STANDARD_DOMAINS] {
                c.on.store(true, Ordering::Release);
            }
        }
        b"0" | b"" => {}
        _ => {
            let strict = read_env(c"DOMALLOC_STRICT").is_some_and(|s| s.bytes() == b"1");
            report_bad_value(
                b"DOMALLOC_STATS",
                &value,
                b"1 (on), 0 (off)",
                b"off",
                strict,
            );
        }
    }
}

/// For [`add_domain`], under the writer lock: the slot's counters start from zero, on if
/// `DOMALLOC_STATS=1`.
pub(super) fn reset_stats(index: usize) {
    let _g = GATE.lock();
    STATS[index].reset(STATS_DEFAULT.load(Ordering::Relaxed));
}

/// Whether `rec` is one of the bootstrap records (whose calls are counted by the handle call
/// they forward to, not twice). The records are compared, not their allocators: an allocator of
/// zero size (`System`) may share its address with another static.
#[inline]
pub(super) fn is_bootstrap(rec: &Installed) -> bool {
    ptr::eq(rec, &REC_BOOT_RAW) || ptr::eq(rec, &REC_BOOT_MEM) || ptr::eq(rec, &REC_BOOT_OBJECT)
}

impl Domain {
    /// The domain's counters if it counts.
    #[inline(always)]
    pub(super) fn counters(self) -> Option<&'static Counters> {
        let c = &STATS[self.0.index()];
        if c.on() { Some(c) } else { None }
    }

    /// Turns statistics on for this domain, which must not have allocated yet (a user domain
    /// just added, or a standard one before any call): from then on [`stats`](Self::stats)
    /// answers. Turning them on again is a no-op. While the mem domain counts, its fast path
    /// (the standard pool with no indirect call, the C library's `malloc` and `free`) is off.
    ///
    /// ```
    /// use alloc_core::DomainAllocator;
    /// use alloc_domains::{Domain, StatsError, add_domain};
    ///
    /// let d = Domain::new(add_domain("doc-stats", &alloc_core::System).unwrap()).unwrap();
    /// assert!(matches!(d.stats(), Err(StatsError::NotEnabled(_))));
    /// d.enable_stats().unwrap();
    /// let p = d.malloc(100).unwrap();
    /// let s = d.stats().unwrap();
    /// assert_eq!((s.allocations, s.live_blocks), (1, 1));
    /// assert!(s.live_bytes >= 100); // the C library's usable size
    /// // SAFETY: a live block of the domain, freed once.
    /// unsafe { d.free(p.as_ptr()) };
    /// assert_eq!(d.stats().unwrap().live_bytes, 0);
    /// ```
    pub fn enable_stats(self) -> Result<(), StatsError> {
        start();
        let s = slot(self.0)?;
        let _g = GATE.lock();
        let c = &STATS[self.0.index()];
        if c.on() {
            return Ok(());
        }
        if s.used.load(Ordering::Acquire) {
            return Err(StatsError::AlreadyAllocated(s.name()));
        }
        c.reset(true);
        Ok(())
    }

    /// The domain's statistics now (see [`DomainStats`]); [`StatsError::NotEnabled`] if it does
    /// not count.
    ///
    /// Every call through the domain's handle is counted ([`Domain`],
    /// [`GlobalFront`](crate::GlobalFront), the C library's exports): a successful allocation is
    /// one allocation, a free of a non-null block one free, a `realloc` neither (only its bytes
    /// change), a failed call nothing; a block freed directly by an allocator, not through the
    /// domain, stays counted live. Live bytes are the allocator's usable size
    /// (`DomainAllocator::usable_size`, 0 where it cannot tell) for blocks of the malloc family
    /// (`malloc`, `calloc`, `realloc`, `free`, `free_sized`: a C `free` carries no size), and the
    /// requested size (`Layout::size`) for the aligned family (Rust's `GlobalAlloc`, whose frees
    /// carry the layout). The counters are atomics: exact across threads (frees on another
    /// thread included) with no lock or allocation, the peak the exact maximum of the live
    /// bytes; read while other threads run, each field is exact at the moment it is read
    /// (frees before allocations, so `live_blocks` is never negative).
    pub fn stats(self) -> Result<DomainStats, StatsError> {
        start();
        let s = slot(self.0)?;
        match self.counters() {
            Some(c) => Ok(c.read()),
            None => Err(StatsError::NotEnabled(s.name())),
        }
    }

    /// Whether the domain counts ([`enable_stats`](Self::enable_stats), `DOMALLOC_STATS=1`).
    pub fn stats_enabled(self) -> bool {
        start();
        slot(self.0).is_ok() && self.counters().is_some()
    }
}
