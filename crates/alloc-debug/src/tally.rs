//! Per-thread tallies: counters that a thread adds to without an atomic read-modify-write.
//!
//! A shared counter bumped with `fetch_add` costs a locked instruction per update, several times
//! the cost of a pool allocator's whole malloc/free pair; [`Counting`](crate::Counting) makes five
//! such updates per pair. Here each thread counts in a shard of its own instead, and whoever reads
//! sums the shards:
//!
//! ```text
//!   thread ─► home shard (hash of its key) ─► owner == key? ─► load + store (no lock prefix)
//!                                   │ no (first use, or a collision)
//!                                   └─► probe the shards: its own, or a free one to claim
//!                                            │ all claimed by other threads
//!                                            └─► the shared shard: fetch_add (exact, slower)
//! ```
//!
//! * **A thread's key** is the address of a thread-local byte: distinct among live threads, and
//!   free to compute (no allocation, no destructor, no lazy initialisation), so it can be asked
//!   from inside a global allocator at any time, thread exit included.
//! * **One writer per shard.** A shard is claimed by a compare-exchange of its owner word from 0
//!   to the key, and never released; only its owner writes its counters, with a relaxed load and a
//!   relaxed store, so no update is lost and no lock prefix is needed. Readers load each counter
//!   (relaxed): every count is exact once the counting threads are joined, and about right while
//!   they run.
//! * **Exited threads.** A thread that exits leaves its shard and its counts where they are (they
//!   still add up). A later thread whose thread-local block lands where the dead one's was has the
//!   same key and carries on in the same shard; its creation follows the dead thread's end (the C
//!   library hands a stack to a new thread only after the old one released it), so it sees the
//!   counts its predecessor stored. When every shard is claimed, a thread counts in the shared
//!   shard with atomic read-modify-writes: exact, at the old cost.

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// Private shards per set: up to this many threads count without atomic read-modify-writes.
pub(crate) const SHARDS: usize = 32;

#[cfg(not(loom))]
std::thread_local! {
    /// Its address names the thread (see the module documentation); its value is never read.
    static KEY: u8 = const { 0 };
}

/// This thread's key: nonzero, and distinct from every other live thread's.
#[cfg(not(loom))]
#[inline]
fn thread_key() -> usize {
    KEY.with(|k| core::ptr::from_ref(k) as usize)
}

// Under loom (whose threads share one OS thread, and whose executions must repeat exactly):
// keys numbered per execution.
#[cfg(loom)]
loom::lazy_static! {
    static ref NEXT_KEY: AtomicUsize = AtomicUsize::new(1);
}

#[cfg(loom)]
loom::thread_local! {
    static KEY: usize = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
}

#[cfg(loom)]
fn thread_key() -> usize {
    KEY.with(|k| *k)
}

/// The shard a key tries first.
#[inline]
fn home(key: usize) -> usize {
    ((key >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) >> (usize::BITS - 5))
        & (SHARDS - 1)
}

/// A set of `N` counters, kept per thread.
pub(crate) struct Tallies<const N: usize> {
    shards: [Shard<N>; SHARDS],
    shared: Shard<N>,
}

/// One thread's counters (or everyone's, for the shared shard), on cache lines of its own.
#[repr(align(64))]
struct Shard<const N: usize> {
    /// The key of the thread that counts here; 0 while unclaimed. Unused in the shared shard.
    owner: AtomicUsize,
    counters: [AtomicU64; N],
}

impl<const N: usize> Shard<N> {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Shard {
            owner: AtomicUsize::new(0),
            counters: [const { AtomicU64::new(0) }; N],
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Shard {
            owner: AtomicUsize::new(0),
            counters: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Where the calling thread counts.
#[derive(Clone, Copy)]
pub(crate) struct Slot<'a, const N: usize> {
    shard: &'a Shard<N>,
    /// Whether this thread is the shard's only writer (else the shared shard).
    exclusive: bool,
}

impl<const N: usize> Slot<'_, N> {
    /// Adds `by` (wrapping: a two's-complement difference subtracts) to counter `i`; returns the
    /// new value.
    #[inline]
    pub(crate) fn add(self, i: usize, by: u64) -> u64 {
        let c = &self.shard.counters[i];
        if self.exclusive {
            // Relaxed load and store: this thread is the counter's only writer (module
            // documentation), so nothing can come between them.
            let v = c.load(Ordering::Relaxed).wrapping_add(by);
            c.store(v, Ordering::Relaxed);
            v
        } else {
            c.fetch_add(by, Ordering::Relaxed).wrapping_add(by)
        }
    }
}

impl<const N: usize> Tallies<N> {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Tallies {
            shards: [const { Shard::new() }; SHARDS],
            shared: Shard::new(),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Tallies {
            shards: core::array::from_fn(|_| Shard::new()),
            shared: Shard::new(),
        }
    }

    /// Where the calling thread counts: its home shard in the common case (one load and a
    /// compare).
    #[inline]
    pub(crate) fn slot(&self) -> Slot<'_, N> {
        let key = thread_key();
        let start = home(key);
        let shard = &self.shards[start];
        // Relaxed: only this thread ever stores its key (and the key of a thread that ended
        // before this one began, whose stores this thread sees: module documentation).
        if shard.owner.load(Ordering::Relaxed) == key {
            return Slot {
                shard,
                exclusive: true,
            };
        }
        self.find(key, start)
    }

    /// The shard this thread claimed past its home, a free one claimed now, or the shared one.
    /// Owners are never cleared, so the probe meets this thread's shard before any free one.
    #[cold]
    fn find(&self, key: usize, start: usize) -> Slot<'_, N> {
        for k in 0..SHARDS {
            let shard = &self.shards[(start + k) % SHARDS];
            let owner = shard.owner.load(Ordering::Relaxed);
            let mine = owner == key
                || (owner == 0
                    && shard
                        .owner
                        .compare_exchange(0, key, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok());
            if mine {
                return Slot {
                    shard,
                    exclusive: true,
                };
            }
        }
        Slot {
            shard: &self.shared,
            exclusive: false,
        }
    }

    /// Claims every private shard but the last for a thread that does not exist, so that two
    /// threads race for one (a loom model's setup).
    #[cfg(loom)]
    pub(crate) fn hold_all_but_one(&self) {
        for s in &self.shards[..SHARDS - 1] {
            s.owner.store(usize::MAX, Ordering::Relaxed);
        }
    }

    /// Counter `i` summed over every shard (wrapping, so differences add up).
    pub(crate) fn sum(&self, i: usize) -> u64 {
        self.shards
            .iter()
            .chain(core::iter::once(&self.shared))
            .fold(0u64, |acc, s| {
                acc.wrapping_add(s.counters[i].load(Ordering::Relaxed))
            })
    }
}

/// How far a thread's unpublished balance of bytes may go before it adds it to the shared total.
pub const PEAK_SLACK: u64 = 32 << 10;

/// Bytes live and their peak over per-thread balances: each thread keeps its balance (bytes it
/// allocated minus bytes it freed) in counter `i` of its shard and adds it to the shared total
/// only once it passes ±[`PEAK_SLACK`], so the common update is a plain load and store. Bytes
/// live (the total plus every balance) are exact once the threads are joined; the peak, checked
/// against the total plus the calling thread's balance, is exact while one thread allocates and
/// low by at most the slack per other thread.
pub(crate) struct Balance {
    /// What the threads have published (two's complement: frees of blocks another thread made
    /// can take it below zero for a while).
    published: AtomicU64,
    peak: AtomicU64,
}

// Under loom only what the models use is called.
#[cfg_attr(loom, allow(dead_code))]
impl Balance {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Balance {
            published: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Balance {
            published: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        }
    }

    /// Adds `delta` bytes (two's complement) to the thread's balance in counter `i`, publishing
    /// it past the slack; returns what is left unpublished.
    #[inline]
    fn settle<const N: usize>(&self, slot: Slot<'_, N>, i: usize, delta: u64) -> i64 {
        let pending = slot.add(i, delta) as i64;
        if pending.unsigned_abs() > PEAK_SLACK {
            self.publish(slot, i, pending);
            return 0;
        }
        pending
    }

    #[cold]
    fn publish<const N: usize>(&self, slot: Slot<'_, N>, i: usize, pending: i64) {
        // Taken from the balance before it reaches the total: a reader in between sees too few
        // bytes, never too many (the peak stays a peak that happened).
        slot.add(i, (pending as u64).wrapping_neg());
        self.published.fetch_add(pending as u64, Ordering::Relaxed);
    }

    /// `bytes` more are live; the peak follows.
    #[inline]
    pub(crate) fn grow<const N: usize>(&self, slot: Slot<'_, N>, i: usize, bytes: u64) {
        let pending = self.settle(slot, i, bytes);
        let live = (self.published.load(Ordering::Relaxed) as i64).wrapping_add(pending);
        if live > self.peak.load(Ordering::Relaxed) as i64 {
            self.peak.fetch_max(live as u64, Ordering::Relaxed);
        }
    }

    /// `bytes` fewer are live.
    #[inline]
    pub(crate) fn shrink<const N: usize>(&self, slot: Slot<'_, N>, i: usize, bytes: u64) {
        self.settle(slot, i, bytes.wrapping_neg());
    }

    /// `bytes` fewer are live, taken from the shared total (for a bulk change, off the fast path).
    pub(crate) fn shrink_shared(&self, bytes: u64) {
        self.published
            .fetch_add(bytes.wrapping_neg(), Ordering::Relaxed);
    }

    /// Bytes live: the published total plus every thread's balance (counter `i` of `t`).
    pub(crate) fn live<const N: usize>(&self, t: &Tallies<N>, i: usize) -> u64 {
        let live = self
            .published
            .load(Ordering::Relaxed)
            .wrapping_add(t.sum(i));
        // Read while threads count, the sum can lag a free behind its allocation.
        (live as i64).max(0) as u64
    }

    /// The peak, given the bytes live now.
    pub(crate) fn peak(&self, live: u64) -> u64 {
        self.peak.load(Ordering::Relaxed).max(live)
    }

    /// Sets the peak back to `live`.
    pub(crate) fn reset_peak(&self, live: u64) {
        self.peak.store(live, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn counts_of_many_threads_add_up_exactly() {
        let t: Box<Tallies<2>> = Box::new(Tallies::new());
        std::thread::scope(|s| {
            for _ in 0..SHARDS + 8 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        t.slot().add(0, 1);
                        t.slot().add(1, 3u64.wrapping_neg());
                    }
                });
            }
        });
        assert_eq!(t.sum(0), (SHARDS as u64 + 8) * 1000);
        assert_eq!(t.sum(1) as i64, -3 * (SHARDS as i64 + 8) * 1000);
    }

    #[test]
    fn a_thread_keeps_its_shard() {
        let t: Tallies<1> = Tallies::new();
        let a = t.slot();
        let b = t.slot();
        assert!(a.exclusive && core::ptr::eq(a.shard, b.shard));
        assert_eq!(a.add(0, 5), 5);
        assert_eq!(b.add(0, 2), 7);
        let other = std::thread::scope(|s| s.spawn(|| t.slot().shard as *const _ as usize).join());
        assert_ne!(other.unwrap(), a.shard as *const _ as usize);
    }

    #[test]
    fn past_the_private_shards_threads_count_in_the_shared_one() {
        let t: Tallies<1> = Tallies::new();
        for s in &t.shards {
            s.owner.store(usize::MAX, Ordering::Relaxed); // every shard held by another thread
        }
        let slot = t.slot();
        assert!(!slot.exclusive);
        slot.add(0, 4);
        assert_eq!(t.sum(0), 4);
    }
}
