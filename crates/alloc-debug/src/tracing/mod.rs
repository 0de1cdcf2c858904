//! `Tracing<A>`: tracemalloc for any allocator.
//!
//! Every live block made through a `Tracing` is recorded with its size, its domain and where it
//! was allocated: a call stack of [`depth`](Tracing::depth) frames (1 by default, as tracemalloc's,
//! up to [`MAX_DEPTH`]) captured as return addresses and resolved to file and line only when a
//! report is made, or a [`Tag`] the program gives ([`with_tag`], [`Tracing::malloc_tagged`]) where
//! it knows its call sites and would rather not pay for a stack walk.
//!
//! From the records come: the traced memory now and at its peak ([`Tracing::traced_memory`],
//! [`Tracing::reset_peak`]); [`Snapshot`]s, with statistics by file, by line or by whole
//! traceback ([`Snapshot::statistics`]), comparisons ([`Snapshot::compare_to`]) and filters
//! ([`Snapshot::filter_traces`]); a [`LeakReport`] of what is still live; and
//! [`Tracing::assert_no_growth`], which fails a test whose closure left memory behind. With the
//! `export` feature (on by default), a snapshot is also written as a heap profile that DHAT's
//! viewer or pprof opens (`Snapshot::write_dhat`, `Snapshot::write_pprof`), and dumped to a file
//! and loaded back (`Snapshot::dump`, `Snapshot::load`).
//!
//! ```text
//!  malloc ─► inner.malloc ─► capture stack (or take the tag) ─► intern traceback ─► record block
//!  free   ─► forget block (if recorded) ─► inner.free
//! ```
//!
//! The fast path takes no lock and makes no atomic read-modify-write (once warm):
//!
//! * **capture** (`stack`): the frame-pointer chain where calibration trusts it, else the unwind
//!   tables read once per return address (`cfi`, x86-64 Linux) where calibration trusts those,
//!   else the unwinder; the leading frames of the allocation machinery (each return address classified
//!   once per process, by resolving it) are passed over, and the walk stops at `depth` frames;
//! * **intern** (`recent`): a hit in the thread's cache of recent tracebacks; a miss interns in
//!   the sharded tables (`table`, behind spin locks) and fills the cache;
//! * **record** (`records`): a word per 16 bytes of addresses in a radix tree, written by the
//!   thread that holds the block; memory tracked in other domains, unaligned addresses and
//!   blocks of 4 GiB or more go to the sharded hash tables instead;
//! * **traced bytes**: per-thread balances (`crate::tally`), summed when read.
//!
//! The decorator does not change the blocks: pointers, sizes, `owns` and `usable_size` are the
//! inner allocator's. Its tables live in the C library's memory (see `table`), so it can be the
//! `#[global_allocator]` without recursing; the allocations Tracing makes for its own reports run
//! with a per-thread flag set and go untraced. A fork handler takes every table's lock with
//! [`Tracing::lock_tables`] and releases them with [`Tracing::unlock_tables`] (the records take no
//! lock).
//!
//! What is interned is the captured traceback: `depth` return addresses from the first that is
//! not the allocation machinery's, so one site reached by several call paths may be interned
//! several times; statistics group by the resolved frames and count it once.
//!
//! Sampling ([`Tracing::with_sampling`], [`Tracing::set_sampling`]; `sampler`): only a sample of
//! the blocks is recorded, a block of `s` bytes with probability `1 - exp(-s / interval)` (bytes
//! sampled as a Poisson process, by a per-thread countdown taken before the inner allocation),
//! and every figure estimates all the blocks from the samples. A free looks at one counter of a
//! filter of live samples first, and goes straight to the inner allocator where it is 0.
//!
//! Domains: every block made through a `Tracing` is recorded in its domain
//! ([`Tracing::with_domain`], 0 by default, tracemalloc's `domain`); memory another allocator
//! manages (a C library's pool, a device's memory) is recorded with [`Tracing::track`] and
//! [`Tracing::untrack`] under a domain of the program's choosing, as `PyTraceMalloc_Track`.

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod cfi;
#[cfg(feature = "export")]
mod export;
mod frames;
mod leak;
mod recent;
mod records;
mod sampler;
mod snapshot;
mod stack;
mod table;

use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::vec::Vec;

use alloc_core::{DomainAllocator, Ownership};

#[cfg(feature = "export")]
pub use export::{
    DHAT_FILE_VERSION, DHAT_MODE, DhatProfile, DhatProgramPoint, SNAPSHOT_FILE_FORMAT,
    SNAPSHOT_FILE_VERSION, SnapshotFileError, pprof,
};
pub use frames::{Frame, MAX_DEPTH, PLUMBING_FRAMES, Tag, Traceback};
pub use leak::{Growth, LeakReport};
pub use sampler::{DEFAULT_SAMPLE_INTERVAL, MAX_SAMPLE_INTERVAL, seed_sampling};
pub use snapshot::{
    DomainFilter, Filter, KeyType, Snapshot, Statistic, StatisticDiff, Trace, TraceFilter,
    format_size,
};
pub use stack::{CALIBRATION, CaptureMethod, capture_method, set_capture_method};

use alloc_core::lock::Lock as ShardLock;
use frames::{Busy, CAPTURE_WORDS, Resolver};
use table::{Blocks, Kind, Record, SHARDS, TraceId, Tracebacks, new_blocks, shard_of};
use table::{TableVec, table_alloc, table_copy};

use crate::instance::InstanceId;
use crate::tally::{Balance, Tallies};
use records::Records;
use sampler::{FilterCell, PENDING_BASE, Weights};

/// Captures up to `buf.len()` return addresses of the calling code into `buf`, the frames of the
/// allocation machinery passed over (as a traceback's), by the process's capture method; returns
/// how many. For the other decorators' one-off captures (`GuardPages`).
#[inline(always)]
pub(crate) fn capture_frames(buf: &mut [usize]) -> usize {
    let depth = buf.len();
    stack::capture(buf, depth)
}

/// What a [`Tracing`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TracingError {
    /// A traceback depth outside `1..=MAX_DEPTH`.
    #[error("a traceback depth must be between 1 and {max} frames, not {depth}")]
    Depth {
        /// The depth asked for.
        depth: usize,
        /// [`MAX_DEPTH`].
        max: usize,
    },
    /// Cumulative statistics need a key of one frame (file or line), not whole tracebacks.
    #[error(
        "cumulative statistics group by file or by line; use KeyType::Filename or KeyType::Lineno"
    )]
    CumulativeTraceback,
    /// Tracing is stopped: nothing can be tracked.
    #[error("tracing is stopped; call start() before tracking memory")]
    NotTracing,
    /// The C library refused memory for the tables.
    #[error("no memory for the tracing tables")]
    NoMemory,
    /// A sampling interval outside `1..=MAX_SAMPLE_INTERVAL`.
    #[error("a sampling interval must be between 1 and {max} bytes, not {interval}")]
    SampleInterval {
        /// The interval asked for.
        interval: usize,
        /// [`MAX_SAMPLE_INTERVAL`].
        max: usize,
    },
}

/// Runs `f` with every allocation this thread makes through any [`Tracing`] recorded at `tag`
/// instead of a captured stack: cheap sites for code that knows where it is. Nests; the previous
/// tag (or none) is restored afterwards, also on unwinding.
///
/// ```
/// use alloc_core::{DomainAllocator, System};
/// use alloc_debug::{KeyType, Tag, Tracing, with_tag};
///
/// let t = Tracing::new(System);
/// let p = with_tag(Tag::new("request-buffers", 1), || t.malloc(256).unwrap());
/// let stats = t.take_snapshot().statistics(KeyType::Lineno, false).unwrap();
/// assert_eq!(stats[0].traceback.site().filename.as_ref(), "request-buffers");
/// // SAFETY: a live block of `t`, freed once.
/// unsafe { t.free(p.as_ptr()) };
/// ```
pub fn with_tag<R>(tag: Tag, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Tag>);
    impl Drop for Restore {
        fn drop(&mut self) {
            frames::swap_tag(self.0);
        }
    }
    let _restore = Restore(frames::swap_tag(Some(tag)));
    f()
}

/// Depths up to this capture into a buffer of their own size.
const SMALL_DEPTH: usize = 8;

/// tracemalloc as a decorator: records every live block with its size and allocation site.
///
/// ```
/// use alloc_core::{DomainAllocator, System};
/// use alloc_debug::{KeyType, Tracing};
///
/// let t = Tracing::new(System);
/// let p = t.malloc(1000).unwrap();
/// assert_eq!(t.traced_memory(), (1000, 1000));
///
/// let snapshot = t.take_snapshot();
/// let top = snapshot.statistics(KeyType::Lineno, false).unwrap();
/// assert_eq!((top[0].size, top[0].count), (1000, 1));
/// // The site is this file and line where debug information is built; "<unknown>" otherwise.
/// println!("{}", top[0]);
///
/// // SAFETY: a live block of `t`, freed once.
/// unsafe { t.free(p.as_ptr()) };
/// assert_eq!(t.traced_memory(), (0, 1000));
/// ```
pub struct Tracing<A> {
    inner: A,
    domain: u32,
    /// Whether new blocks are traced (bit 0) and the frames they get (the rest: `depth << 1`),
    /// in one word: an allocation reads both in one load, and the default (tracing, one frame)
    /// is one compare, [`ONE_FRAME`].
    state: AtomicUsize,
    /// Per-thread balances of traced bytes (counter 0, its ceiling counter 1), summed with
    /// `traced` when read.
    balances: Tallies<2>,
    /// Traced bytes and their peak.
    traced: Balance,
    /// The live blocks of this decorator's domain (`records`: no lock).
    records: Records,
    /// Whether a block of this decorator's domain was ever kept in `blocks` (an unaligned
    /// address, or 4 GiB or more): lookups of this domain look there too only then.
    hashed: AtomicBool,
    /// Memory tracked in other domains, and what `records` cannot hold.
    blocks: [ShardLock<Option<Blocks>>; SHARDS],
    tracebacks: [ShardLock<Option<Tracebacks>>; SHARDS],
    /// Names this decorator in the threads' caches of recent tracebacks (`recent`).
    id: InstanceId,
    /// Bumped by `clear_traces`: tracebacks cached before are stale.
    generation: AtomicU64,
    /// `id` and `generation` in one word for the caches (`recent::base`); 0 until first asked,
    /// [`NOT_CACHED`] past the numbers it holds.
    cache_base: AtomicU64,
    /// 0 while every block is traced; while sampling, the threads' countdown base for this
    /// decorator and interval (`sampler`), or [`PENDING_BASE`] until the first sample is drawn.
    sample_base: AtomicU64,
    /// The mean bytes between samples; 0 while every block is traced.
    sample_interval: AtomicUsize,
    /// Counts of the live sampled blocks by bucket of address, for frees (`sampler::Filter`).
    filter: FilterCell,
}

/// The cache base of a decorator whose tracebacks are not cached.
const NOT_CACHED: u64 = u64::MAX;

/// Where [`Tracing::traced`]'s common allocation stopped, and what it had found.
enum Slow {
    /// Not tracing one frame by the cached tables, busy, or with a tag in scope.
    Plain,
    /// The step from the entry's place needs checking.
    Walk(stack::Place),
    /// The one-frame traceback is known; the rest did not apply.
    Found(usize),
}

/// [`Tracing::state`]'s bit for "tracing".
const ON: usize = 1;
/// [`Tracing::state`] while tracing one frame per traceback.
const ONE_FRAME: usize = 1 << 1 | ON;

impl<A> Tracing<A> {
    /// Traces `inner` in domain 0, one frame per traceback, started.
    pub const fn new(inner: A) -> Self {
        Self::with_domain(inner, 0)
    }

    /// Traces `inner` with its blocks recorded in `domain` (tracemalloc's domain: filters select
    /// by it), one frame per traceback, started.
    pub const fn with_domain(inner: A, domain: u32) -> Self {
        Tracing {
            inner,
            domain,
            state: AtomicUsize::new(ONE_FRAME),
            balances: Tallies::new(),
            traced: Balance::new(),
            records: Records::new(),
            hashed: AtomicBool::new(false),
            blocks: [const { ShardLock::new(None) }; SHARDS],
            tracebacks: [const { ShardLock::new(None) }; SHARDS],
            id: InstanceId::new(),
            generation: AtomicU64::new(0),
            cache_base: AtomicU64::new(0),
            sample_base: AtomicU64::new(0),
            sample_interval: AtomicUsize::new(0),
            filter: FilterCell::new(),
        }
    }

    /// Records only a sample of the blocks: a block of `s` bytes with probability
    /// `1 - exp(-s / interval)` (bytes sampled as a Poisson process with a mean distance of
    /// `interval` bytes, as jemalloc's and tcmalloc's heap profilers do; see
    /// [`set_sampling`](Self::set_sampling)).
    ///
    /// # Panics
    ///
    /// If `interval` is not in `1..=MAX_SAMPLE_INTERVAL` (at compile time in a `static`).
    pub const fn with_sampling(mut self, interval: usize) -> Self {
        assert!(
            interval >= 1 && interval <= MAX_SAMPLE_INTERVAL,
            "sampling interval out of 1..=MAX_SAMPLE_INTERVAL"
        );
        self.sample_base = AtomicU64::new(PENDING_BASE);
        self.sample_interval = AtomicUsize::new(interval);
        self
    }

    /// Records `depth` frames per traceback.
    ///
    /// # Panics
    ///
    /// If `depth` is not in `1..=MAX_DEPTH` (at compile time in a `static`); use
    /// [`set_depth`](Self::set_depth) for a depth only known at run time.
    pub const fn with_depth(mut self, depth: usize) -> Self {
        assert!(
            depth >= 1 && depth <= MAX_DEPTH,
            "depth out of 1..=MAX_DEPTH"
        );
        self.state = AtomicUsize::new(depth << 1 | ON);
        self
    }

    /// The wrapped allocator.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    /// The domain this decorator records its blocks in.
    pub fn domain(&self) -> u32 {
        self.domain
    }

    /// Frames recorded per traceback (tracemalloc's `get_traceback_limit`).
    pub fn depth(&self) -> usize {
        self.state.load(Ordering::Relaxed) >> 1
    }

    /// Changes the frames recorded for new blocks; blocks already traced keep theirs.
    pub fn set_depth(&self, depth: usize) -> Result<(), TracingError> {
        if !(1..=MAX_DEPTH).contains(&depth) {
            return Err(TracingError::Depth {
                depth,
                max: MAX_DEPTH,
            });
        }
        // Relaxed: one word of its own; "tracing" is kept as it is.
        let _ = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some(depth << 1 | (s & ON))
            });
        Ok(())
    }

    /// The mean bytes between samples while sampling; `None` while every block is traced.
    pub fn sample_interval(&self) -> Option<usize> {
        match self.sample_interval.load(Ordering::Relaxed) {
            0 => None,
            i => Some(i),
        }
    }

    /// Traces a sample of the new blocks (`Some(interval)`) or every one (`None`).
    ///
    /// Sampled, a block of `s` bytes is recorded with probability `1 - exp(-s / interval)`: each
    /// thread counts down the bytes it allocates to its next sampled byte, drawn from an
    /// exponential distribution of mean `interval` (a Poisson process over the bytes, as in
    /// jemalloc's `prof` and tcmalloc). The allocations that are not sampled cost a subtraction
    /// and a compare, and their frees a look at one counter. Every figure drawn from the records
    /// is then an unbiased estimate: a recorded block of `s` bytes stands for
    /// `s / (1 - exp(-s / interval))` bytes and `1 / (1 - exp(-s / interval))` blocks in
    /// [`traced_memory`](Self::traced_memory) and in snapshots' statistics, totals and comparisons.
    /// [`track`](Self::track)ed memory is sampled alike. [`DEFAULT_SAMPLE_INTERVAL`] (512 KiB) is
    /// a common choice; [`seed_sampling`] makes a thread's samples repeatable.
    ///
    /// Records made under one mode cannot be weighed under another, so a change of mode or of
    /// interval forgets every trace (as [`clear_traces`](Self::clear_traces); a block allocated
    /// by another thread while the mode changes may keep a record it should not, as a snapshot
    /// taken meanwhile may show). Setting the mode already in force does nothing.
    pub fn set_sampling(&self, interval: Option<usize>) -> Result<(), TracingError> {
        let interval = match interval {
            None => 0,
            Some(i) if (1..=MAX_SAMPLE_INTERVAL).contains(&i) => i,
            Some(i) => {
                return Err(TracingError::SampleInterval {
                    interval: i,
                    max: MAX_SAMPLE_INTERVAL,
                });
            }
        };
        let old = self.sample_interval.load(Ordering::Relaxed);
        if interval == old {
            return Ok(());
        }
        if interval == 0 {
            self.filter.activate(false);
            self.sample_interval.store(0, Ordering::Relaxed);
            self.sample_base.store(0, Ordering::Release);
        } else {
            self.filter.get_or_make().ok_or(TracingError::NoMemory)?;
            self.filter.activate(true);
            self.sample_interval.store(interval, Ordering::Relaxed);
            // Release: an allocation that sees the base (acquire, on its slow path) sees the
            // interval and the filter.
            self.sample_base
                .store(sampler::fresh_base(), Ordering::Release);
        }
        // The records were weighed under the old mode.
        self.clear_weighed(old);
        Ok(())
    }

    /// [`start_with_depth`](Self::start_with_depth), sampling every `interval` bytes on average
    /// ([`set_sampling`](Self::set_sampling)).
    pub fn start_sampled(&self, depth: usize, interval: usize) -> Result<(), TracingError> {
        self.set_depth(depth)?;
        self.set_sampling(Some(interval))?;
        self.start();
        Ok(())
    }

    /// What a record of `size` bytes adds to the traced memory: its size, or while sampling the
    /// bytes it stands for.
    #[inline]
    fn weigh(&self, size: usize) -> u64 {
        match self.sample_interval.load(Ordering::Relaxed) {
            0 => size as u64,
            i => Weights::new(i).whole_bytes(size),
        }
    }

    /// The filter of sampled blocks, while sampling and for blocks of this decorator's domain.
    #[inline]
    fn filter_for(&self, domain: u32) -> Option<&sampler::Filter> {
        if domain == self.domain {
            self.filter.active()
        } else {
            None
        }
    }

    /// Whether new blocks are being traced.
    pub fn is_tracing(&self) -> bool {
        self.state.load(Ordering::Relaxed) & ON != 0
    }

    /// Starts tracing new blocks (blocks made while stopped stay untraced).
    pub fn start(&self) {
        self.state.fetch_or(ON, Ordering::Relaxed);
    }

    /// [`start`](Self::start) with a new depth (tracemalloc's `start(nframe)`).
    pub fn start_with_depth(&self, depth: usize) -> Result<(), TracingError> {
        self.set_depth(depth)?;
        self.start();
        Ok(())
    }

    /// Stops tracing and forgets every trace, as tracemalloc's `stop`.
    pub fn stop(&self) {
        self.state.fetch_and(!ON, Ordering::Relaxed);
        self.clear_traces();
    }

    /// Forgets every trace and traceback; the traced memory and its peak go back to 0.
    pub fn clear_traces(&self) {
        self.clear_weighed(self.sample_interval.load(Ordering::Relaxed));
    }

    /// [`clear_traces`](Self::clear_traces) of records weighed at `interval` (0: not sampled).
    fn clear_weighed(&self, interval: usize) {
        let weigh = |size: usize| match interval {
            0 => size as u64,
            i => Weights::new(i).whole_bytes(size),
        };
        self.traced.shrink_shared(self.records.clear(weigh));
        for shard in &self.blocks {
            let mut s = shard.lock();
            if let Some(b) = s.as_mut() {
                let bytes: u64 = b.values().map(|r| weigh(r.size)).sum();
                b.clear();
                self.traced.shrink_shared(bytes);
            }
        }
        if let Some(f) = self.filter.made() {
            f.clear();
        }
        for shard in &self.tracebacks {
            if let Some(t) = shard.lock().as_mut() {
                t.clear();
            }
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        // A plain store: it wins over a first `cache_base` racing it (that one only installs
        // over 0), so no thread keeps caching under the old generation once this returns.
        self.cache_base.store(
            recent::base(self.id.get(), generation).unwrap_or(NOT_CACHED),
            Ordering::Relaxed,
        );
        self.reset_peak();
    }

    /// Bytes of traced blocks now and at most since the start or the last reset (tracemalloc's
    /// `get_traced_memory`).
    ///
    /// Each thread keeps its own balance and adds it to the total past 32 KiB
    /// ([`PEAK_SLACK`](crate::PEAK_SLACK)), so the peak is exact while one thread allocates and
    /// frees, and off by at most that much per other thread with several (low by what the others
    /// allocated and have not published, high by what they freed and have not).
    pub fn traced_memory(&self) -> (usize, usize) {
        let current = self.traced.live(&self.balances, 0);
        (current as usize, self.traced.peak(current) as usize)
    }

    /// Sets the peak to the traced memory now (tracemalloc's `reset_peak`).
    pub fn reset_peak(&self) {
        self.traced.reset_peak(&self.balances, 0);
    }

    /// Bytes the tracing tables hold in the C library's memory (tracemalloc's
    /// `get_tracemalloc_memory`).
    pub fn tables_memory(&self) -> usize {
        let blocks: usize = self
            .blocks
            .iter()
            .map(|s| {
                s.lock().as_ref().map_or(0, |b| {
                    b.capacity() * (size_of::<((u32, usize), Record)>() + 1)
                })
            })
            .sum();
        let tracebacks: usize = self
            .tracebacks
            .iter()
            .map(|s| s.lock().as_ref().map_or(0, Tracebacks::footprint))
            .sum();
        self.records.footprint() + blocks + tracebacks + self.filter.footprint()
    }

    /// Records memory this decorator did not allocate: `size` bytes at `ptr` in `domain`, with
    /// the caller's stack (or tag) as its traceback (tracemalloc's `PyTraceMalloc_Track`). A block
    /// already recorded at that address in that domain is replaced.
    #[inline(never)]
    pub fn track(&self, domain: u32, ptr: *const u8, size: usize) -> Result<(), TracingError> {
        if !self.is_tracing() {
            return Err(TracingError::NotTracing);
        }
        if Busy::active() {
            return Ok(());
        }
        if let Some(sampled) = self.sample_now(size)
            && !sampled
        {
            return Ok(());
        }
        let state = self.state.load(Ordering::Relaxed);
        let trace = self.site(None, state).ok_or(TracingError::NoMemory)?;
        if self.insert(domain, ptr as usize, size, trace) {
            Ok(())
        } else {
            Err(TracingError::NoMemory)
        }
    }

    /// Forgets memory recorded with [`track`](Self::track) (`PyTraceMalloc_Untrack`); returns
    /// whether it was recorded. Untracking what is not tracked is harmless.
    pub fn untrack(&self, domain: u32, ptr: *const u8) -> Result<bool, TracingError> {
        if !self.is_tracing() {
            return Err(TracingError::NotTracing);
        }
        Ok(self.remove(domain, ptr as usize))
    }

    /// Takes every shard's lock, in order, so that no trace changes until
    /// [`unlock_tables`](Self::unlock_tables): for a fork handler, which must not fork while
    /// another thread holds one of them. Allocations through this decorator wait meanwhile (on
    /// this thread too: allocate nothing through it until the tables are unlocked).
    pub fn lock_tables(&self) {
        for s in &self.blocks {
            s.acquire_for_fork();
        }
        for s in &self.tracebacks {
            s.acquire_for_fork();
        }
    }

    /// Releases the locks [`lock_tables`](Self::lock_tables) took (in the parent after a fork,
    /// and in the child, where the calling thread is the only one).
    ///
    /// # Safety
    ///
    /// `lock_tables` was called before, by this thread (or by the thread a fork copied into this
    /// process), and `unlock_tables` not since.
    pub unsafe fn unlock_tables(&self) {
        for s in self.tracebacks.iter().rev() {
            // SAFETY: taken by `lock_tables` (the caller's guarantee), and no guard exists: every
            // guard lives within one method of this type, none of which runs while locked.
            unsafe { s.release_after_fork() };
        }
        for s in self.blocks.iter().rev() {
            // SAFETY: as above.
            unsafe { s.release_after_fork() };
        }
    }

    /// The traceback of the live block at `ptr` in this decorator's domain, if it is traced
    /// (tracemalloc's `get_object_traceback`).
    pub fn traceback_of(&self, ptr: *const u8) -> Option<Traceback> {
        self.traceback_in(self.domain, ptr)
    }

    /// The traceback of the block at `ptr` recorded in `domain` (by [`track`](Self::track), or
    /// by this decorator when `domain` is its own).
    pub fn traceback_in(&self, domain: u32, ptr: *const u8) -> Option<Traceback> {
        let (kind, words, depth) = self.lookup(domain, ptr as usize)?;
        let _busy = Busy::enter();
        Some(match kind {
            // SAFETY: tag words come from `Tag::words`.
            Kind::Tag => frames::tag_traceback(unsafe { Tag::from_words(&words[..3]) }),
            Kind::Stack => Resolver::new().stack(&words, depth),
        })
    }

    /// A copy of every trace: its domain, size and traceback, resolved to files and lines
    /// (tracemalloc's `take_snapshot`). The tables are locked one shard at a time while copied;
    /// frames are resolved after every lock is released.
    pub fn take_snapshot(&self) -> Snapshot {
        let _busy = Busy::enter();
        let depth = self.depth();
        // Copied in the tables' allocator: whatever the global allocator is, nothing under a
        // shard's lock can come back into this decorator (a free would take that lock).
        let mut raw: TableVec<(u32, usize, TraceId)> = TableVec::new_in(table_alloc());
        self.records.for_each(|_, size, trace| {
            if raw.try_reserve(1).is_ok() {
                raw.push((self.domain, size, trace));
            }
        });
        for shard in &self.blocks {
            let s = shard.lock();
            if let Some(b) = s.as_ref() {
                if raw.try_reserve(b.len()).is_err() {
                    continue;
                }
                raw.extend(b.iter().map(|(&(d, _), r)| (d, r.size, r.trace)));
            }
        }
        // Each traceback once: its words copied under its shard's lock, resolved outside it.
        let mut ids: Vec<TraceId> = raw.iter().map(|r| r.2).collect();
        ids.sort_unstable_by_key(|id| (id.shard(), *id));
        ids.dedup();
        let mut copied: Vec<(TraceId, Kind, TableVec<usize>)> = Vec::with_capacity(ids.len());
        for group in ids.chunk_by(|a, b| a.shard() == b.shard()) {
            let s = self.tracebacks[group[0].shard()].lock();
            for &id in group {
                if let Some((kind, words)) = s.as_ref().and_then(|t| t.get(id))
                    && let Some(w) = table_copy(words)
                {
                    copied.push((id, kind, w));
                }
            }
        }
        let mut resolver = Resolver::new();
        let resolved: hashbrown::HashMap<TraceId, Traceback> = copied
            .into_iter()
            .map(|(id, kind, words)| {
                let tb = match kind {
                    // SAFETY: tag words come from `Tag::words`.
                    Kind::Tag => frames::tag_traceback(unsafe { Tag::from_words(&words) }),
                    Kind::Stack => resolver.stack(&words, depth),
                };
                (id, tb)
            })
            .collect();
        let unknown = Traceback::new(std::vec![Frame::unknown()]);
        let traces = raw
            .into_iter()
            .map(|(domain, size, id)| Trace {
                domain,
                size,
                traceback: resolved
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| unknown.clone()),
            })
            .collect();
        match self.sample_interval() {
            Some(interval) => Snapshot::sampled(traces, depth, interval),
            None => Snapshot::new(traces, depth),
        }
    }

    /// What is live now, grouped by site (file and line), largest first: the report to print at
    /// the end of a test or a program.
    pub fn leak_report(&self) -> LeakReport {
        LeakReport::from_snapshot(&self.take_snapshot())
    }

    /// Runs `f` and returns its result if the traced memory (bytes and blocks, in every domain)
    /// did not grow across it; otherwise a [`Growth`] that lists the sites that grew. Like dhat's
    /// testing mode; other threads allocating meanwhile count too.
    pub fn check_no_growth<R>(&self, f: impl FnOnce() -> R) -> Result<R, Growth> {
        let before = self.take_snapshot();
        let r = f();
        let after = self.take_snapshot();
        Growth::between(&before, &after).map_or(Ok(r), Err)
    }

    /// [`check_no_growth`](Self::check_no_growth) that panics with the growth report.
    ///
    /// ```
    /// use alloc_core::{DomainAllocator, System};
    /// use alloc_debug::Tracing;
    ///
    /// let t = Tracing::new(System);
    /// t.assert_no_growth(|| {
    ///     let p = t.malloc(64).unwrap();
    ///     // SAFETY: a live block of `t`, freed once.
    ///     unsafe { t.free(p.as_ptr()) };
    /// });
    /// ```
    #[track_caller]
    pub fn assert_no_growth<R>(&self, f: impl FnOnce() -> R) -> R {
        match self.check_no_growth(f) {
            Ok(r) => r,
            Err(g) => panic!("{g}"),
        }
    }

    /// The traceback of the current allocation: the thread's tag, or a captured stack. Inlined
    /// into [`traced`](Self::traced) and [`track`](Self::track), so that the walk starts from
    /// their frame (a frame of its own would be one more step to pass over).
    /// `state` is [`state`](Self::state) as the caller read it.
    #[inline(always)]
    fn site(&self, tag: Option<Tag>, state: usize) -> Option<TraceId> {
        if let Some(tag) = tag.or_else(frames::current_tag) {
            return self.intern(Kind::Tag, &tag.words());
        }
        if state == ONE_FRAME {
            return self.capture_into::<1>(1);
        }
        let depth = (state >> 1).min(MAX_DEPTH);
        // The common depths capture into a small buffer (less to clear on every allocation).
        match depth {
            0 | 1 => self.capture_into::<1>(depth),
            ..=SMALL_DEPTH => self.capture_into::<SMALL_DEPTH>(depth),
            _ => self.capture_into::<MAX_DEPTH>(depth),
        }
    }

    #[inline(always)]
    fn capture_into<const N: usize>(&self, depth: usize) -> Option<TraceId> {
        let mut buf = [0usize; N];
        let n = stack::capture(&mut buf[..depth.min(N)], depth);
        self.intern(Kind::Stack, &buf[..n])
    }

    /// The id of `(kind, words)`: from this thread's cache of recent tracebacks, or interned in
    /// the tables (and cached).
    #[inline(always)]
    fn intern(&self, kind: Kind, words: &[usize]) -> Option<TraceId> {
        let base = self.cache_base();
        if base != NOT_CACHED
            && let Some(id) = recent::find(base, kind, words)
        {
            return Some(id);
        }
        let id = self.intern_in_tables(kind, words)?;
        if base != NOT_CACHED {
            recent::remember(base, kind, words, id);
        }
        Some(id)
    }

    /// This decorator's base in the threads' caches of recent tracebacks.
    #[inline]
    fn cache_base(&self) -> u64 {
        match self.cache_base.load(Ordering::Relaxed) {
            0 => self.first_cache_base(),
            base => base,
        }
    }

    #[cold]
    fn first_cache_base(&self) -> u64 {
        let generation = self.generation.load(Ordering::Relaxed);
        let base = recent::base(self.id.get(), generation).unwrap_or(NOT_CACHED);
        // Installed only over 0: a `clear_traces` that stored a newer base keeps it.
        match self
            .cache_base
            .compare_exchange(0, base, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => base,
            Err(newer) => newer,
        }
    }

    fn intern_in_tables(&self, kind: Kind, words: &[usize]) -> Option<TraceId> {
        let hash = Tracebacks::hash(kind, words);
        let shard = (hash >> 60) as usize & (SHARDS - 1);
        let mut s = self.tracebacks[shard].lock();
        s.get_or_insert_with(|| Tracebacks::new(0))
            .intern(shard, hash, kind, words)
    }

    /// Records `size` bytes at `addr` in `domain`: in the records (this decorator's domain, the
    /// common case, without a lock) or in the hash tables; false if no memory could be had.
    #[inline(always)]
    fn insert(&self, domain: u32, addr: usize, size: usize, trace: TraceId) -> bool {
        // Counted in the filter before the record is written (`sampler::Filter`).
        let filter = self.filter_for(domain);
        if let Some(f) = filter {
            f.add(addr);
        }
        let old = if domain == self.domain && records::fits(addr, size) {
            self.records
                .insert(addr, size, trace)
                .map(|old| old.map(|(size, _)| size))
        } else {
            self.insert_hashed(domain, addr, Record { size, trace })
        };
        let old = match (old, filter) {
            (Ok(old), None) => old,
            (Ok(old), Some(f)) => {
                if old.is_some() {
                    f.remove(addr);
                }
                old
            }
            (Err(()), f) => {
                if let Some(f) = f {
                    f.remove(addr);
                }
                return false;
            }
        };
        match (old, self.balances.mine()) {
            (None, Some(m)) => self.traced.grow_mine(m, 0, self.weigh(size)),
            _ => self.rebalance(old, size),
        }
        true
    }

    /// [`insert`](Self::insert) into the hash tables: out of line, as
    /// [`take_elsewhere`](Self::take_elsewhere). Returns the size of the record it replaced.
    #[cold]
    #[inline(never)]
    fn insert_hashed(&self, domain: u32, addr: usize, record: Record) -> Result<Option<usize>, ()> {
        if domain == self.domain {
            self.hashed.store(true, Ordering::Relaxed);
        }
        let mut s = self.blocks[shard_of(addr)].lock();
        let b = s.get_or_insert_with(new_blocks);
        b.try_reserve(1).map_err(|_| ())?;
        Ok(b.insert((domain, addr), record).map(|r| r.size))
    }

    /// [`insert`](Self::insert)'s balance where the record replaced another, or on a thread that
    /// counts past its home shard.
    #[cold]
    #[inline(never)]
    fn rebalance(&self, old: Option<usize>, size: usize) {
        let slot = self.balances.slot();
        if let Some(old) = old {
            self.traced.shrink(slot, 0, self.weigh(old));
        }
        self.traced.grow(slot, 0, self.weigh(size));
    }

    /// The record of the block at `addr` in `domain`, wherever it is kept.
    fn record(&self, domain: u32, addr: usize) -> Option<Record> {
        if domain == self.domain {
            if let Some((size, trace)) = self.records.get(addr) {
                return Some(Record { size, trace });
            }
            if !self.hashed.load(Ordering::Relaxed) {
                return None;
            }
        }
        self.blocks[shard_of(addr)]
            .lock()
            .as_ref()?
            .get(&(domain, addr))
            .copied()
    }

    /// Forgets the block at `addr` in `domain`; returns its record if it had one.
    #[inline(always)]
    fn take(&self, domain: u32, addr: usize) -> Option<Record> {
        if domain == self.domain
            && let Some((size, trace)) = self.records.remove(addr)
        {
            self.shrunk(domain, addr, size);
            return Some(Record { size, trace });
        }
        self.take_elsewhere(domain, addr)
    }

    /// Forgets the block at `addr` that a realloc is about to move: while sampling, only where
    /// the filter says a sampled block may be there.
    #[inline]
    fn take_moving(&self, addr: usize) -> Option<Record> {
        if self.filter.holds_none(addr) {
            return None;
        }
        self.take(self.domain, addr)
    }

    /// Counts the record of `size` bytes at `addr` in `domain` forgotten.
    #[inline(always)]
    fn shrunk(&self, domain: u32, addr: usize, size: usize) {
        if let Some(f) = self.filter_for(domain) {
            f.remove(addr);
        }
        let bytes = self.weigh(size);
        match self.balances.mine() {
            Some(m) => self.traced.shrink_mine(m, 0, bytes),
            None => self.traced.shrink(self.balances.slot(), 0, bytes),
        }
    }

    /// [`take`](Self::take) of a block the records do not hold: from the hash tables (memory
    /// tracked in other domains, and what the records cannot hold) where it may be there, with
    /// its bytes counted. Out of line, so that the common free keeps few registers.
    #[cold]
    #[inline(never)]
    fn take_elsewhere(&self, domain: u32, addr: usize) -> Option<Record> {
        if domain == self.domain && !self.hashed.load(Ordering::Relaxed) {
            return None;
        }
        let old = self.blocks[shard_of(addr)]
            .lock()
            .as_mut()
            .and_then(|b| b.remove(&(domain, addr)));
        if let Some(r) = old {
            self.shrunk(domain, addr, r.size);
        }
        old
    }

    /// The common free, of a block the records hold on a thread with its own shard of balances
    /// and room in it: forgotten and counted with no call (so the free that follows is a tail
    /// call, and the entry keeps no register). False where anything else is to be done, with
    /// nothing done: [`remove`](Self::remove) then, out of line.
    ///
    /// While sampling, a block that cannot have been sampled (its bucket of the filter holds no
    /// sampled block) counts as forgotten: nothing was recorded for it. The filter comes first in
    /// either mode (while every block is recorded, it holds a sampled block everywhere), so that
    /// the sampling free tests no mode.
    #[inline(always)]
    fn forget_fast(&self, addr: usize) -> bool {
        if self.filter.holds_none(addr) {
            return true;
        }
        if self.filter.samples() {
            return false;
        }
        let Some(m) = self.balances.mine() else {
            return false;
        };
        self.records
            .remove_if(addr, |size| self.traced.try_shrink_mine(m, 0, size as u64))
    }

    /// A free where [`forget_fast`](Self::forget_fast) did not apply, out of line: the
    /// block forgotten by [`remove`](Self::remove), then `free` (the inner free) called, so
    /// that the entry reaches either end by a tail call.
    #[cold]
    #[inline(never)]
    fn forget_slow(&self, addr: usize, free: impl FnOnce()) {
        self.remove(self.domain, addr);
        free();
    }

    #[inline(always)]
    fn remove(&self, domain: u32, addr: usize) -> bool {
        self.take(domain, addr).is_some()
    }

    /// A block's traceback words and the depth to show, copied out of the tables.
    fn lookup(&self, domain: u32, addr: usize) -> Option<(Kind, TableVec<usize>, usize)> {
        let id = self.record(domain, addr)?.trace;
        let s = self.tracebacks[id.shard()].lock();
        let (kind, words) = s.as_ref()?.get(id)?;
        let words = table_copy(words)?;
        drop(s);
        Some((kind, words, self.depth()))
    }

    /// Records a block just made, in this decorator's domain; false if it could not be.
    ///
    /// Never inlined (nor is [`track`](Self::track)), though the capture is inlined into it: the
    /// walk starts from its caller's frame and never records the frame it starts in, which must
    /// therefore be the decorator's own, not a program function the allocation was inlined into.
    /// A tagged block goes through [`traced_tagged`](Self::traced_tagged), so that this one has no
    /// tag to look at.
    ///
    /// The common allocation (tracing one frame, by the cached tables, from a place and to a
    /// caller this thread met before, whose traceback it interned last, into a vacant record,
    /// with room under its balance's ceiling) is made without a call; anything else goes out of
    /// line whole, with what was found on the way.
    #[inline(never)]
    fn traced(&self, p: NonNull<u8>, size: usize) -> bool {
        match self.trace_fast(p, size) {
            Ok(()) => true,
            Err(slow) => self.trace_slow(p, size, slow),
        }
    }

    /// [`traced`](Self::traced)'s common allocation; `Err` with nothing done where it does not
    /// apply.
    #[inline(always)]
    fn trace_fast(&self, p: NonNull<u8>, size: usize) -> Result<(), Slow> {
        if self.state.load(Ordering::Relaxed) != ONE_FRAME
            || Busy::active()
            || frames::current_tag().is_some()
        {
            return Err(Slow::Plain);
        }
        let ip = match stack::here_fast() {
            Ok(ip) => ip,
            Err(Some(place)) => return Err(Slow::Walk(place)),
            Err(None) => return Err(Slow::Plain),
        };
        // Read as kept: a base not given yet (0) finds nothing (`recent::find_last`).
        let base = self.cache_base.load(Ordering::Relaxed);
        let (Some(trace), Some(word), Some(m)) = (
            recent::find_last(base, Kind::Stack, ip),
            self.records.vacant(p.as_ptr() as usize, size),
            self.balances.mine(),
        ) else {
            return Err(Slow::Found(ip));
        };
        if !self.traced.try_grow_mine(m, 0, size as u64) {
            return Err(Slow::Found(ip));
        }
        Records::fill(word, size, trace);
        Ok(())
    }

    /// [`traced`](Self::traced) where its common allocation did not apply, from what it found.
    #[cold]
    #[inline(never)]
    fn trace_slow(&self, p: NonNull<u8>, size: usize, slow: Slow) -> bool {
        let ip = match slow {
            Slow::Plain => return self.traced_at(p, size, None),
            // SAFETY: the place is the frame of `traced`, which called this function.
            Slow::Walk(place) => match unsafe { stack::here_checked(place) } {
                Some(ip) => ip,
                None => return self.traced_at(p, size, None),
            },
            Slow::Found(ip) => ip,
        };
        match self.intern(Kind::Stack, &[ip]) {
            Some(trace) => self.insert(self.domain, p.as_ptr() as usize, size, trace),
            None => false,
        }
    }

    /// Records a block just made, sampled or not as the mode says; false if it could not be.
    #[inline(always)]
    fn traced_any(&self, p: NonNull<u8>, size: usize, tag: Option<Tag>) -> bool {
        let base = self.sample_base.load(Ordering::Relaxed);
        if base != 0 {
            return sampler::unsampled(base, size) || self.traced_if_sampled(p, size, tag);
        }
        match tag {
            None => self.traced(p, size),
            Some(tag) => self.traced_tagged(p, size, tag),
        }
    }

    /// While sampling: whether the allocation of `size` bytes being made is sampled (its bytes
    /// counted down); `None` while every block is traced.
    #[inline(always)]
    fn sample_now(&self, size: usize) -> Option<bool> {
        let base = self.sample_base.load(Ordering::Relaxed);
        if base == 0 {
            return None;
        }
        Some(!sampler::unsampled(base, size) && self.sample_slowly(size))
    }

    /// Where the countdown ran out (or belongs to another decorator): whether this allocation is
    /// sampled. A decorator made sampling by [`with_sampling`](Self::with_sampling) gets its
    /// filter and its base here, at its first allocation.
    #[cold]
    #[inline(never)]
    fn sample_slowly(&self, size: usize) -> bool {
        // Acquire: pairs with `set_sampling`'s release (the interval and the filter).
        let mut base = self.sample_base.load(Ordering::Acquire);
        if base == PENDING_BASE {
            base = self.first_sample_base();
        }
        let interval = self.sample_interval.load(Ordering::Relaxed);
        match (base, interval) {
            // The mode changed to tracing every block meanwhile: trace this one.
            (0, _) | (_, 0) => true,
            // No memory for the filter: nothing can be sampled.
            (PENDING_BASE, _) => false,
            (base, interval) => sampler::sample_slow(base, interval, size),
        }
    }

    /// The base of a decorator made sampling by a `const` constructor, given now with its filter
    /// ([`PENDING_BASE`] if no memory could be had for the filter).
    #[cold]
    fn first_sample_base(&self) -> u64 {
        if self.filter.get_or_make().is_none() {
            return PENDING_BASE;
        }
        self.filter.activate(true);
        let fresh = sampler::fresh_base();
        // Installed only over the pending base: a `set_sampling` meanwhile keeps its own.
        match self.sample_base.compare_exchange(
            PENDING_BASE,
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(newer) => newer,
        }
    }

    /// [`traced_any`](Self::traced_any) where the countdown ran out: the block recorded if it is
    /// sampled (true if not). Never inlined, as [`traced`](Self::traced): the walk starts here.
    #[inline(never)]
    fn traced_if_sampled(&self, p: NonNull<u8>, size: usize, tag: Option<Tag>) -> bool {
        if !self.sample_slowly(size) {
            return true;
        }
        self.traced_at(p, size, tag)
    }

    /// [`traced`](Self::traced) for a block with a caller-given tag (never inlined either).
    #[inline(never)]
    fn traced_tagged(&self, p: NonNull<u8>, size: usize, tag: Tag) -> bool {
        self.traced_at(p, size, Some(tag))
    }

    /// What [`traced`](Self::traced) and [`traced_tagged`](Self::traced_tagged) do, inlined into
    /// each (the walk starts from their frame).
    #[inline(always)]
    fn traced_at(&self, p: NonNull<u8>, size: usize, tag: Option<Tag>) -> bool {
        // One load for "tracing?" and the depth.
        let state = self.state.load(Ordering::Relaxed);
        if state & ON == 0 || Busy::active() {
            return true;
        }
        match self.site(tag, state) {
            Some(trace) => self.insert(self.domain, p.as_ptr() as usize, size, trace),
            None => false,
        }
    }
}

impl<A: DomainAllocator> Tracing<A> {
    /// [`malloc`](DomainAllocator::malloc) with the block recorded at `tag` instead of a
    /// captured stack.
    pub fn malloc_tagged(&self, size: usize, tag: Tag) -> Option<NonNull<u8>> {
        self.made(
            size,
            Some(tag),
            || self.inner.malloc(size),
            // SAFETY: `p` was just made by `inner.malloc` and is given back once.
            |p| unsafe { self.inner.free(p.as_ptr()) },
        )
    }

    /// The block of `size` bytes `make` makes, recorded (every block, or a sample); a block
    /// that should be recorded and cannot be is given back (`undo`), and the allocation fails,
    /// as tracemalloc fails an allocation it cannot trace.
    ///
    /// While sampling, the countdown is taken before the block is made, so that an allocation
    /// that is not sampled is the inner allocator's alone, reached by a tail call (nothing is
    /// kept across it). A request the inner allocator then refuses has counted its bytes all the
    /// same.
    #[inline(always)]
    fn made(
        &self,
        size: usize,
        tag: Option<Tag>,
        make: impl FnOnce() -> Option<NonNull<u8>>,
        undo: impl FnOnce(NonNull<u8>),
    ) -> Option<NonNull<u8>> {
        let base = self.sample_base.load(Ordering::Relaxed);
        if base != 0 {
            return self.made_counted(base, size, tag, make, undo);
        }
        self.made_exactly(size, tag, make, undo)
    }

    /// [`made`](Self::made) while every block is recorded.
    #[inline(always)]
    fn made_exactly(
        &self,
        size: usize,
        tag: Option<Tag>,
        make: impl FnOnce() -> Option<NonNull<u8>>,
        undo: impl FnOnce(NonNull<u8>),
    ) -> Option<NonNull<u8>> {
        let p = make()?;
        let kept = match tag {
            None => self.traced(p, size),
            Some(tag) => self.traced_tagged(p, size, tag),
        };
        if kept {
            Some(p)
        } else {
            undo(p);
            None
        }
    }

    /// [`made`](Self::made) while sampling, out of line and reached by a tail call: the entry then
    /// saves no register on this path (what the path that records every block needs is saved on
    /// that path alone), and this function keeps nothing across a call either: the countdown,
    /// then the inner allocation or [`made_sampled`](Self::made_sampled), each by a tail call.
    #[inline(never)]
    fn made_counted(
        &self,
        base: u64,
        size: usize,
        tag: Option<Tag>,
        make: impl FnOnce() -> Option<NonNull<u8>>,
        undo: impl FnOnce(NonNull<u8>),
    ) -> Option<NonNull<u8>> {
        if sampler::unsampled(base, size) {
            return make();
        }
        self.made_sampled(size, tag, make, undo)
    }

    /// `malloc` while every block is recorded. Never inlined: its frame is the decorator's own,
    /// the one [`traced`](Self::traced)'s walk steps from.
    #[inline(never)]
    fn malloc_exactly(&self, size: usize) -> Option<NonNull<u8>> {
        self.made_exactly(
            size,
            None,
            || self.inner.malloc(size),
            // SAFETY: `p` was just made by `inner.malloc` and is given back once.
            |p| unsafe { self.inner.free(p.as_ptr()) },
        )
    }

    /// [`malloc_exactly`](Self::malloc_exactly) for `malloc_aligned`.
    #[inline(never)]
    fn malloc_aligned_exactly(&self, layout: Layout) -> Option<NonNull<u8>> {
        self.made_exactly(
            layout.size(),
            None,
            || self.inner.malloc_aligned(layout),
            // SAFETY: `p` was just made by `inner.malloc_aligned(layout)`, given back once.
            |p| unsafe { self.inner.free_aligned(p, layout) },
        )
    }

    /// [`made`](Self::made) where the countdown ran out: the block made, then recorded if it is
    /// sampled. Never inlined, as [`traced`](Self::traced): the walk starts here.
    #[inline(never)]
    fn made_sampled(
        &self,
        size: usize,
        tag: Option<Tag>,
        make: impl FnOnce() -> Option<NonNull<u8>>,
        undo: impl FnOnce(NonNull<u8>),
    ) -> Option<NonNull<u8>> {
        let p = make()?;
        if !self.sample_slowly(size) || self.traced_at(p, size, tag) {
            return Some(p);
        }
        undo(p);
        None
    }

    /// The common entries (`malloc`, and the adapters' `malloc_aligned`): the countdown's test
    /// first, in either mode (it never passes while every block is recorded:
    /// `sampler::unsampled` of base 0), then `make`, the inner allocation, inlined into the
    /// caller (so that the inner allocator's invariants are hoisted out of a program's loop as
    /// they are without a decorator); where the countdown ran out, the sampled path, and where
    /// every block is recorded, `exactly`, each out of line (so that the entry does not pay for
    /// their registers).
    #[inline(always)]
    fn made_at_entry(
        &self,
        size: usize,
        make: impl FnOnce() -> Option<NonNull<u8>>,
        undo: impl FnOnce(NonNull<u8>),
        exactly: impl FnOnce() -> Option<NonNull<u8>>,
    ) -> Option<NonNull<u8>> {
        let base = self.sample_base.load(Ordering::Relaxed);
        if sampler::unsampled(base, size) {
            return make();
        }
        if base != 0 {
            return self.made_sampled(size, None, make, undo);
        }
        exactly()
    }

    /// Records a block moved by realloc (its old record, `old`, forgotten by the caller before
    /// the move); a block that cannot be recorded stays allocated, untraced. A failed realloc
    /// leaves the block at `ptr` as it was: its record goes back.
    fn retraced(
        &self,
        p: Option<NonNull<u8>>,
        size: usize,
        ptr: *mut u8,
        old: Option<Record>,
    ) -> Option<NonNull<u8>> {
        match (p, old) {
            (Some(p), _) => {
                let _ = self.traced_any(p, size, None);
            }
            (None, Some(r)) => {
                let _ = self.insert(self.domain, ptr as usize, r.size, r.trace);
            }
            (None, None) => {}
        }
        p
    }
}

// SAFETY: every block is the inner allocator's, unchanged; the decorator only records them.
unsafe impl<A: DomainAllocator> DomainAllocator for Tracing<A> {
    /// The sampling countdown's test first (in either mode), then the inner `malloc` inlined
    /// into the caller; where a block is to be recorded, the recording path, out of line.
    #[inline(always)]
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        self.made_at_entry(
            size,
            || self.inner.malloc(size),
            // SAFETY: `p` was just made by `inner.malloc` and is given back once.
            |p| unsafe { self.inner.free(p.as_ptr()) },
            || self.malloc_exactly(size),
        )
    }

    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        // An overflowing product fails in the inner allocator; it counts as the most bytes here.
        self.made(
            nelem.saturating_mul(elsize),
            None,
            || self.inner.calloc(nelem, elsize),
            // SAFETY: `p` was just made by `inner.calloc` and is given back once.
            |p| unsafe { self.inner.free(p.as_ptr()) },
        )
    }

    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        if ptr.is_null() {
            return self.malloc(new_size);
        }
        // Forgotten before the inner realloc frees the old block (whose address another thread
        // may then get, and record), put back if the realloc fails.
        let old = self.take_moving(ptr as usize);
        // SAFETY: the caller's guarantee, forwarded.
        let moved = unsafe { self.inner.realloc(ptr, new_size) };
        self.retraced(moved, new_size, ptr, old)
    }

    #[inline]
    unsafe fn free(&self, ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        if self.forget_fast(ptr as usize) {
            // SAFETY: the caller's guarantee, forwarded.
            return unsafe { self.inner.free(ptr) };
        }
        // SAFETY: as above. (The closure is made here, not before the test above: made there,
        // its captures are stored on every free.)
        self.forget_slow(ptr as usize, move || unsafe { self.inner.free(ptr) })
    }

    #[inline]
    unsafe fn free_sized(&self, ptr: NonNull<u8>, size: usize) {
        if self.forget_fast(ptr.as_ptr() as usize) {
            // SAFETY: the caller's guarantee, forwarded.
            return unsafe { self.inner.free_sized(ptr, size) };
        }
        // SAFETY: as above.
        self.forget_slow(ptr.as_ptr() as usize, move || unsafe {
            self.inner.free_sized(ptr, size)
        })
    }

    /// As [`malloc`](DomainAllocator::malloc).
    #[inline(always)]
    fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        self.made_at_entry(
            layout.size(),
            || self.inner.malloc_aligned(layout),
            // SAFETY: `p` was just made by `inner.malloc_aligned(layout)`, given back once.
            |p| unsafe { self.inner.free_aligned(p, layout) },
            || self.malloc_aligned_exactly(layout),
        )
    }

    fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        self.made(
            layout.size(),
            None,
            || self.inner.calloc_aligned(layout),
            // SAFETY: `p` was just made by `inner.calloc_aligned(layout)`, given back once.
            |p| unsafe { self.inner.free_aligned(p, layout) },
        )
    }

    #[inline(always)]
    unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
        if self.forget_fast(ptr.as_ptr() as usize) {
            // SAFETY: the caller's guarantee, forwarded.
            return unsafe { self.inner.free_aligned(ptr, layout) };
        }
        // SAFETY: as above.
        self.forget_slow(ptr.as_ptr() as usize, move || unsafe {
            self.inner.free_aligned(ptr, layout)
        })
    }

    unsafe fn realloc_aligned(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // As in `realloc`.
        let old = self.take_moving(ptr.as_ptr() as usize);
        // SAFETY: the caller's guarantee, forwarded.
        let moved = unsafe { self.inner.realloc_aligned(ptr, layout, new_size) };
        self.retraced(moved, new_size, ptr.as_ptr(), old)
    }

    #[inline]
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        // SAFETY: the caller's guarantee, forwarded.
        unsafe { self.inner.usable_size(ptr) }
    }

    #[inline]
    /// The inner allocator's answer, except that a block traced here is claimed even where the
    /// inner allocator cannot tell (a large block the pool passed to the C library): a domain
    /// then routes its free here, and the trace goes with the block.
    fn owns(&self, ptr: *const u8) -> Ownership {
        match self.inner.owns(ptr) {
            Ownership::Owned => Ownership::Owned,
            other => {
                let traced = self.record(self.domain, ptr as usize).is_some();
                if traced { Ownership::Owned } else { other }
            }
        }
    }

    /// Forwarded: the blocks are the inner allocator's (and those traced here are claimed here).
    fn track_ownership(&self) -> bool {
        self.inner.track_ownership()
    }
    fn declares_ownership(&self) -> bool {
        self.inner.declares_ownership()
    }

    fn name(&self) -> &str {
        "tracing"
    }

    fn prepare_fork(&self) {
        // Taking a shard lock again for the same fork does nothing (the lock's fork mark), so the
        // same decorator reached through two paths is harmless.
        self.lock_tables();
        self.inner.prepare_fork();
    }

    unsafe fn after_fork_parent(&self) {
        // SAFETY: the caller's guarantee: on the thread that ran `prepare_fork`, which locked
        // the tables; releasing again for the same fork does nothing.
        unsafe {
            self.inner.after_fork_parent();
            self.unlock_tables();
        }
    }

    unsafe fn after_fork_child(&self) {
        // SAFETY: the caller's guarantee: in the child, on the thread the fork returned in.
        unsafe {
            self.inner.after_fork_child();
            self.unlock_tables();
        }
    }

    /// Writes the block's traceback (most recent call first) if it is traced here, else asks the
    /// inner allocator. Formats without allocating; resolving the frames may allocate through
    /// the global allocator (untraced), never under one of this decorator's locks.
    fn write_origin(&self, ptr: *const u8, out: &mut dyn fmt::Write) -> bool {
        let Some(id) = self.record(self.domain, ptr as usize).map(|r| r.trace) else {
            return self.inner.write_origin(ptr, out);
        };
        // Copied onto the stack: nothing is allocated and no lock is held while resolving.
        let mut words = [0usize; CAPTURE_WORDS];
        let (kind, n) = {
            let s = self.tracebacks[id.shard()].lock();
            match s.as_ref().and_then(|t| t.get(id)) {
                Some((kind, w)) => {
                    let n = w.len().min(CAPTURE_WORDS);
                    words[..n].copy_from_slice(&w[..n]);
                    (kind, n)
                }
                None => return self.inner.write_origin(ptr, out),
            }
        };
        let _ = out.write_str("Memory block allocated at (most recent call first):");
        let _ = match kind {
            Kind::Tag => {
                // SAFETY: tag words come from `Tag::words`.
                let tag = unsafe { Tag::from_words(&words[..3]) };
                write!(out, "\n      File \"{}\", line {}", tag.file(), tag.line())
            }
            Kind::Stack => frames::write_stack(&words[..n], self.depth(), out),
        };
        true
    }

    /// As [`write_origin`](DomainAllocator::write_origin) (a traced block is found by its
    /// address, whatever its family); an untraced one is asked of the inner allocator with its
    /// layout.
    fn write_origin_aligned(
        &self,
        ptr: *const u8,
        layout: Layout,
        out: &mut dyn fmt::Write,
    ) -> bool {
        if self.record(self.domain, ptr as usize).is_some() {
            return self.write_origin(ptr, out);
        }
        self.inner.write_origin_aligned(ptr, layout, out)
    }
}
