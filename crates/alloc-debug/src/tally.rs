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
//!   to the key, and never released; only its owner adds to its counters, with a load and a store
//!   (a release store, a plain one on x86-64: see `Balance`), so no update is lost and no lock
//!   prefix is needed. (The one exception is a balance's ceiling, which a reset of the peak
//!   overwrites; its owner only ever stores it, never adds to it.) Readers load each counter
//!   (acquire): every count is exact once the counting threads are joined, and about right while
//!   they run.
//! * **Exited threads.** A thread that exits leaves its shard and its counts where they are (they
//!   still add up). A later thread whose thread-local block lands where the dead one's was has the
//!   same key and carries on in the same shard; its creation follows the dead thread's end (the C
//!   library hands a stack to a new thread only after the old one released it), so it sees the
//!   counts its predecessor stored. When every shard is claimed, a thread counts in the shared
//!   shard with atomic read-modify-writes: exact, at the old cost.

use crate::sync::{AtomicU64, AtomicUsize, Ordering, fence};

/// Private shards per set: up to this many threads count without atomic read-modify-writes.
#[cfg(not(loom))]
pub(crate) const SHARDS: usize = 32;
/// Under loom, fewer (every load of a sum is a branch of the model; two threads need two).
#[cfg(loom)]
pub(crate) const SHARDS: usize = 4;

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
    // The product's top bits depend on every bit of the key (the low ones, alike in every
    // thread's key, do not spoil them).
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) >> (usize::BITS - 5)) & (SHARDS - 1)
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

impl<'a, const N: usize> Slot<'a, N> {
    /// Adds `by` (wrapping: a two's-complement difference subtracts) to counter `i`; returns the
    /// new value.
    #[inline]
    pub(crate) fn add(self, i: usize, by: u64) -> u64 {
        if self.exclusive {
            Mine(self.shard).add(i, by)
        } else {
            self.shard.counters[i]
                .fetch_add(by, Ordering::Relaxed)
                .wrapping_add(by)
        }
    }

    /// The thread's own shard, if it has one.
    #[inline]
    fn mine(self) -> Option<Mine<'a, N>> {
        self.exclusive.then_some(Mine(self.shard))
    }
}

/// A shard the calling thread owns: its counters are added to with a plain load and store.
#[derive(Clone, Copy)]
pub(crate) struct Mine<'a, const N: usize>(&'a Shard<N>);

impl<const N: usize> Mine<'_, N> {
    /// Adds `by` (wrapping) to counter `i`; returns the new value.
    #[inline]
    pub(crate) fn add(self, i: usize, by: u64) -> u64 {
        let c = &self.0.counters[i];
        // A load and a store: this thread is the counter's only writer (module documentation),
        // so nothing can come between them. The store releases (a plain store on x86-64, as a
        // relaxed one): a reader that sees it sees the publishes before it (`Balance::live`).
        let v = c.load(Ordering::Relaxed).wrapping_add(by);
        c.store(v, Ordering::Release);
        v
    }

    #[inline]
    fn get(self, i: usize) -> u64 {
        self.0.counters[i].load(Ordering::Relaxed)
    }

    fn set(self, i: usize, v: u64) {
        self.0.counters[i].store(v, Ordering::Relaxed);
    }

    /// Sets counter `i`, releasing what this thread wrote before (a publish, `Balance`).
    fn set_release(self, i: usize, v: u64) {
        self.0.counters[i].store(v, Ordering::Release);
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

    /// The calling thread's home shard, if the thread owns it: the common case (one load and a
    /// compare), the one a decorator's fast path takes.
    #[inline]
    pub(crate) fn mine(&self) -> Option<Mine<'_, N>> {
        let key = thread_key();
        let shard = &self.shards[home(key)];
        // Relaxed: only this thread ever stores its key (and the key of a thread that ended
        // before this one began, whose stores this thread sees: module documentation).
        if shard.owner.load(Ordering::Relaxed) == key {
            Some(Mine(shard))
        } else {
            None
        }
    }

    /// Where the calling thread counts: its home shard, another it claimed, or the shared one.
    #[inline]
    pub(crate) fn slot(&self) -> Slot<'_, N> {
        match self.mine() {
            Some(Mine(shard)) => Slot {
                shard,
                exclusive: true,
            },
            None => {
                let key = thread_key();
                self.find(key, home(key))
            }
        }
    }

    /// Where the calling thread's own shard is (its home, another it claimed, or one it claims
    /// now), as a byte offset from the set, for a per-thread note of it (`Counting`'s); `None`
    /// when every shard is held by other threads.
    #[cfg(not(loom))]
    pub(crate) fn own_offset(&self) -> Option<usize> {
        let slot = self.slot();
        slot.exclusive
            .then(|| core::ptr::from_ref(slot.shard) as usize - core::ptr::from_ref(self) as usize)
    }

    /// The shard at `offset`, which the calling thread owns.
    ///
    /// # Safety
    /// `offset` was returned by [`own_offset`](Self::own_offset) on the calling thread, for this
    /// set (which may have moved since: the offset is from wherever it is, and its shards, owners
    /// included, moved with it).
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) unsafe fn mine_at(&self, offset: usize) -> Mine<'_, N> {
        // SAFETY: the caller's guarantee: a shard of this set lies at `offset` from its start.
        Mine(unsafe {
            &*core::ptr::from_ref(self)
                .cast::<u8>()
                .add(offset)
                .cast::<Shard<N>>()
        })
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
                // Acquire: pairs with a balance's release when it is published (`Balance`).
                acc.wrapping_add(s.counters[i].load(Ordering::Acquire))
            })
    }
}

/// How far a thread's unpublished balance of bytes may go before it adds it to the shared total.
pub const PEAK_SLACK: u64 = 32 << 10;

/// Bytes live and their peak over per-thread balances. Each thread keeps two counters of its
/// shard: its balance (bytes it allocated minus bytes it freed, counter `i`) and its ceiling
/// (counter `i + 1`), the balance up to which it cannot make a new peak:
///
/// ```text
///   grow:   balance += bytes; balance > ceiling?  ─► publish past the slack, raise the peak,
///   shrink: balance -= bytes; balance < -slack?   ─►   ceiling = min(peak - published, slack)
/// ```
///
/// So the common update is a plain load and store and one compare. A balance is added to the
/// shared total only once it passes ±[`PEAK_SLACK`] (the ceiling is never above the slack).
///
/// * **Bytes live** (the total plus every balance) are exact once the threads are joined; read
///   while at most one thread counts, they are a value that was live (see [`live`](Self::live)).
/// * **The peak** is exact while one thread counts: then only it moves the total, and its ceiling
///   is the room to the peak as it is. With several, a thread checks the peak against the total
///   and its own balance, not the others': the peak is off by at most the slack per other thread,
///   low by what they allocated and have not published, or high by what they freed and have not
///   published (a thread freeing blocks another made).
/// * **A reset** ([`reset_peak`](Self::reset_peak)) drops every thread's ceiling, so that each
///   checks its next allocation against the new peak; a thread settling at that very moment may
///   put back a ceiling of the old peak, and miss up to the slack of a peak after the reset.
pub(crate) struct Balance {
    /// What the threads have published (two's complement: frees of blocks another thread made
    /// can take it below zero for a while).
    published: AtomicU64,
    /// Publishes begun and done: a reader that finds them equal before its read, and the first
    /// unchanged after it, met no publish in flight (see [`live`](Self::live)).
    begun: AtomicU64,
    done: AtomicU64,
    peak: AtomicU64,
}

/// The slack as a signed balance.
const SLACK: i64 = PEAK_SLACK as i64;

/// Reads [`Balance::live`] takes at most while publishes keep meeting it.
const READS: usize = 64;

// Under loom only what the models use is called.
#[cfg_attr(loom, allow(dead_code))]
impl Balance {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Balance {
            published: AtomicU64::new(0),
            begun: AtomicU64::new(0),
            done: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Balance {
            published: AtomicU64::new(0),
            begun: AtomicU64::new(0),
            done: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        }
    }

    /// `bytes` more are live, counted in the calling thread's own shard.
    #[inline]
    pub(crate) fn grow_mine<const N: usize>(&self, m: Mine<'_, N>, i: usize, bytes: u64) {
        let balance = m.add(i, bytes) as i64;
        if balance > m.get(i + 1) as i64 {
            self.settle(m, i, balance);
        }
    }

    /// [`grow_mine`](Self::grow_mine) where it needs no settling: `bytes` more are live, unless
    /// that would take the balance past its ceiling; then nothing is changed, and false (the
    /// caller grows the ordinary way). No call, as [`try_shrink_mine`](Self::try_shrink_mine).
    #[inline]
    pub(crate) fn try_grow_mine<const N: usize>(
        &self,
        m: Mine<'_, N>,
        i: usize,
        bytes: u64,
    ) -> bool {
        let balance = m.get(i).wrapping_add(bytes);
        if balance as i64 > m.get(i + 1) as i64 {
            return false;
        }
        // Released, as `Mine::add` stores it.
        m.set_release(i, balance);
        true
    }

    /// `bytes` fewer are live, counted in the calling thread's own shard.
    #[inline]
    pub(crate) fn shrink_mine<const N: usize>(&self, m: Mine<'_, N>, i: usize, bytes: u64) {
        let balance = m.add(i, bytes.wrapping_neg()) as i64;
        if balance < -SLACK {
            self.settle(m, i, balance);
        }
    }

    /// [`shrink_mine`](Self::shrink_mine) where it needs no settling: `bytes` fewer are live,
    /// unless that would take the balance past the slack below; then nothing is changed, and
    /// false (the caller shrinks the ordinary way). It makes no call, so a fast path built on it
    /// keeps no register across one.
    #[inline]
    pub(crate) fn try_shrink_mine<const N: usize>(
        &self,
        m: Mine<'_, N>,
        i: usize,
        bytes: u64,
    ) -> bool {
        let balance = m.get(i).wrapping_sub(bytes);
        if (balance as i64) < -SLACK {
            return false;
        }
        // Released, as `Mine::add` stores it.
        m.set_release(i, balance);
        true
    }

    /// The thread's balance passed its ceiling or the slack below: publish it if it is past the
    /// slack, raise the peak if this is one, and set the ceiling to the room left to the peak.
    #[cold]
    fn settle<const N: usize>(&self, m: Mine<'_, N>, i: usize, balance: i64) {
        let mut balance = balance;
        if balance.unsigned_abs() > PEAK_SLACK {
            // Counted as begun, moved (both writes releasing it), counted as done: see `live`.
            self.begun.fetch_add(1, Ordering::Relaxed);
            m.set_release(i, 0);
            self.published.fetch_add(balance as u64, Ordering::Release);
            self.done.fetch_add(1, Ordering::Release);
            balance = 0;
        }
        // Acquire: a ceiling dropped by a reset (a release store, read by the caller) brings the
        // reset's peak with it.
        fence(Ordering::Acquire);
        let published = self.published.load(Ordering::Relaxed) as i64;
        let live = published.wrapping_add(balance);
        let mut peak = self.peak.load(Ordering::Relaxed) as i64;
        if live > peak {
            self.peak.fetch_max(live as u64, Ordering::Relaxed);
            peak = live;
        }
        m.set(i + 1, peak.wrapping_sub(published).min(SLACK) as u64);
    }

    /// `bytes` more are live; the peak follows.
    #[inline]
    pub(crate) fn grow<const N: usize>(&self, slot: Slot<'_, N>, i: usize, bytes: u64) {
        match slot.mine() {
            Some(m) => self.grow_mine(m, i, bytes),
            None => self.grow_shared(slot, i, bytes),
        }
    }

    /// `bytes` fewer are live.
    #[inline]
    pub(crate) fn shrink<const N: usize>(&self, slot: Slot<'_, N>, i: usize, bytes: u64) {
        match slot.mine() {
            Some(m) => self.shrink_mine(m, i, bytes),
            None => self.shrink_shared_slot(slot, i, bytes),
        }
    }

    /// [`grow`](Self::grow) in the shared shard (every shard claimed): its balance is everyone's,
    /// so the peak is checked on every update.
    #[cold]
    fn grow_shared<const N: usize>(&self, slot: Slot<'_, N>, i: usize, bytes: u64) {
        let pending = self.settle_shared(slot, i, bytes);
        let live = (self.published.load(Ordering::Relaxed) as i64).wrapping_add(pending);
        if live > self.peak.load(Ordering::Relaxed) as i64 {
            self.peak.fetch_max(live as u64, Ordering::Relaxed);
        }
    }

    #[cold]
    fn shrink_shared_slot<const N: usize>(&self, slot: Slot<'_, N>, i: usize, bytes: u64) {
        self.settle_shared(slot, i, bytes.wrapping_neg());
    }

    /// Adds `delta` to the shared shard's balance, publishing it past the slack; returns what is
    /// left unpublished.
    fn settle_shared<const N: usize>(&self, slot: Slot<'_, N>, i: usize, delta: u64) -> i64 {
        let pending = slot.add(i, delta) as i64;
        if pending.unsigned_abs() > PEAK_SLACK {
            // Threads add to this balance concurrently, so it moves by a read-modify-write, and
            // by several threads at once (a reader may then see the bytes in both places for a
            // moment: the shared shard is used only once every private one is claimed).
            self.begun.fetch_add(1, Ordering::Relaxed);
            slot.add(i, (pending as u64).wrapping_neg());
            self.published.fetch_add(pending as u64, Ordering::Release);
            self.done.fetch_add(1, Ordering::Release);
            return 0;
        }
        pending
    }

    /// `bytes` fewer are live, taken from the shared total (for a bulk change, off the fast path;
    /// it only adds room under every thread's ceiling).
    pub(crate) fn shrink_shared(&self, bytes: u64) {
        self.published
            .fetch_add(bytes.wrapping_neg(), Ordering::Relaxed);
    }

    /// Bytes live: the published total plus every thread's balance (counter `i` of `t`).
    ///
    /// A publish moves bytes between a balance and the total in two writes, both releasing, and
    /// counts itself in `begun` before them and in `done` after (releasing). A read takes the
    /// counts (acquire), the total and the balances (acquire), and `begun` again; it is taken
    /// again when a publish was in flight at its start (`begun` ahead of `done`) or began during
    /// it. A publish the read saw any write of is one whose `begun` it sees at the end, so no
    /// publish is half seen: a read made while at most one thread counts is a value that was live.
    /// (With more, the shards are read one after another, and the sum can be one no single moment
    /// had.) After [`READS`] reads that each met a publish, the last is given as it is.
    pub(crate) fn live<const N: usize>(&self, t: &Tallies<N>, i: usize) -> u64 {
        let mut live = 0;
        for _ in 0..READS {
            let done = self.done.load(Ordering::Acquire);
            let begun = self.begun.load(Ordering::Acquire);
            live = self
                .published
                .load(Ordering::Acquire)
                .wrapping_add(t.sum(i));
            if begun == done && self.begun.load(Ordering::Acquire) == begun {
                break;
            }
            crate::sync::spin();
        }
        // Read while threads count, the sum can lag a free behind its allocation.
        (live as i64).max(0) as u64
    }

    /// The peak, given the bytes live now.
    pub(crate) fn peak(&self, live: u64) -> u64 {
        self.peak.load(Ordering::Relaxed).max(live)
    }

    /// Sets the peak back to the bytes live now (balances in counter `i` of `t`), and drops every
    /// thread's ceiling (counter `i + 1`) so that each checks its next allocation against the new
    /// peak. The ceiling is the one counter another thread stores to: a plain store, as its
    /// owner's (who never adds to it); an owner settling at the same moment may put back a
    /// ceiling of the old peak, which is never above the slack.
    pub(crate) fn reset_peak<const N: usize>(&self, t: &Tallies<N>, i: usize) {
        self.peak.store(self.live(t, i), Ordering::Relaxed);
        for s in &t.shards {
            // Release: the thread that sees it settles with the new peak (`settle`'s fence).
            s.counters[i + 1].store(i64::MIN as u64, Ordering::Release);
        }
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

    /// One thread's random grows and shrinks against a reference: bytes live and the peak are
    /// exact at every step, across resets of the peak and past the slack both ways.
    #[test]
    fn one_thread_sees_the_exact_peak() {
        let t: Box<Tallies<2>> = Box::new(Tallies::new());
        let b = Balance::new();
        let (mut live, mut peak) = (0u64, 0u64);
        let mut sizes: Vec<u64> = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for step in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if step % 5000 == 4999 {
                b.reset_peak(&t, 0);
                peak = live;
            } else if sizes.is_empty() || !x.is_multiple_of(3) {
                let size = 1 + x % (PEAK_SLACK / 4);
                b.grow(t.slot(), 0, size);
                sizes.push(size);
                live += size;
            } else {
                let size = sizes.swap_remove((x as usize / 3) % sizes.len());
                b.shrink(t.slot(), 0, size);
                live -= size;
            }
            peak = peak.max(live);
            let seen = b.live(&t, 0);
            assert_eq!((seen, b.peak(seen)), (live, peak), "step {step}");
        }
    }

    /// A thread that made a peak and came back from it has room under its ceiling; a reset of
    /// the peak made by another thread takes that room away, so its next allocation is a peak.
    #[test]
    fn a_reset_by_another_thread_drops_the_ceiling() {
        let t: Box<Tallies<2>> = Box::new(Tallies::new());
        let b = Balance::new();
        let (t, b) = (&*t, &b);
        let (to_worker, from_main) = std::sync::mpsc::channel::<()>();
        let (to_main, from_worker) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            s.spawn(move || {
                b.grow(t.slot(), 0, 1000);
                b.shrink(t.slot(), 0, 1000);
                to_main.send(()).unwrap();
                from_main.recv().unwrap();
                b.grow(t.slot(), 0, 500);
            });
            from_worker.recv().unwrap();
            assert_eq!(b.peak(b.live(t, 0)), 1000);
            b.reset_peak(t, 0);
            assert_eq!(b.peak(b.live(t, 0)), 0);
            to_worker.send(()).unwrap();
        });
        assert_eq!(b.live(t, 0), 500);
        assert_eq!(b.peak(500), 500);
        assert_eq!(
            b.peak.load(Ordering::Relaxed),
            500,
            "the worker's 500 was seen as a peak"
        );
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
