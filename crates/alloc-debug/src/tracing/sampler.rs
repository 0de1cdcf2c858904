//! Sampled tracing: which allocations a sampling [`Tracing`](super::Tracing) records, and what
//! each recorded block stands for.
//!
//! **Which.** Bytes are sampled as a Poisson process along each thread's stream of allocated bytes,
//! as jemalloc's `prof` and tcmalloc's sampler do: the distance from one sampled byte to the next
//! is drawn from an exponential distribution whose mean is the interval, and a block is recorded
//! when a sampled byte falls inside it. A block of `s` bytes is therefore recorded with probability
//! `1 - exp(-s / interval)`: large blocks nearly always, a 16-byte block once in about
//! `interval / 16`.
//!
//! Each thread keeps the bytes left to its next sample in one `const` thread-local word (no
//! allocation, no destructor, as the crate's other per-thread state), together with the decorator
//! it counts for:
//!
//! ```text
//!   COUNTDOWN = tag << 40 | bytes left        tag: the decorator and its interval (1..2^23)
//!   fast path:  v = COUNTDOWN - size;  v - base < 2^39 ?  COUNTDOWN = v : slow path
//! ```
//!
//! where `base` is the decorator's `tag << 40`. The one unsigned compare fails both when the bytes
//! left run out (the subtraction wraps) and when the word belongs to another decorator or to an
//! older interval of this one (another tag); the slow path then draws a fresh distance from the
//! thread's generator (xorshift, seeded per thread, or by [`seed_sampling`]). Starting afresh at
//! any allocation is exact for a Poisson process (it has no memory), so threads that alternate
//! between two sampling decorators are sampled correctly, only more slowly.
//!
//! **What it stands for.** The standard unbiasing: a recorded block of `s` bytes stands for
//! `s / (1 - exp(-s / interval))` bytes and `1 / (1 - exp(-s / interval))` blocks ([`Weights`]),
//! whose expectations over the sampling are exactly `s` and 1. The traced memory, snapshots'
//! statistics, comparisons and totals all use these estimates.
//!
//! **Frees.** A free must find out cheaply that its block was not sampled, which is nearly every
//! free. The records (a radix tree of words) would answer, but their leaf for a block is in cold
//! memory. The [`Filter`] answers first: a counter per bucket of addresses (hashed) of the live
//! sampled blocks, in one array; a free whose bucket holds 0 has no record to forget. Counters are
//! changed only for sampled blocks (an atomic add each, rare by design).

use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

#[cfg(not(unix))]
use alloc_core::{DomainAllocator, System};

/// The default mean distance between samples: 512 KiB, as tcmalloc's and jemalloc's defaults.
pub const DEFAULT_SAMPLE_INTERVAL: usize = 512 << 10;

/// The largest interval accepted (4 GiB): the longest distance drawn (about 37 times the mean,
/// from 53 random bits) stays under 2^38 bytes, what the countdown word holds.
pub const MAX_SAMPLE_INTERVAL: usize = 1 << 32;

/// Bits of the countdown word under the tag.
const LEFT_BITS: u32 = 40;
/// The low bits of the countdown word.
const LEFT_LIMIT: u64 = 1 << LEFT_BITS;
/// Bytes left are always below this.
const DRAW_LIMIT: u64 = 1 << 38;
/// The fast path accepts a difference below this, and counts sizes at most this less one (a
/// larger block is always sampled all the same: it is larger than any distance drawn). A word of
/// another tag then always gives a difference at or above it: a higher tag at least
/// `2^40 - size`, a lower one (or bytes left short of the size) a difference that wrapped.
const FAST_LIMIT: u64 = 1 << 39;
/// Tags are taken from `1..=TAG_MASK` (wrapping, skipping 0). Every base is then at most 2^63, so
/// the fast path's subtraction cannot wrap into the range of bytes left for a word of another
/// tag (that would take a size over 2^62, which no allocation has).
const TAG_MASK: u64 = (1 << (63 - LEFT_BITS)) - 1;

/// A thread's countdown before its first sample: no tag's (its tag bits are all set, above every
/// base), and far from 0, so that a word of base 0 never passes the fast path's test.
const NO_COUNTDOWN: u64 = u64::MAX;

std::thread_local! {
    /// This thread's countdown: `tag << 40 | bytes left` ([`NO_COUNTDOWN`]: none yet).
    static COUNTDOWN: Cell<u64> = const { Cell::new(NO_COUNTDOWN) };
    /// This thread's generator state (0: not seeded yet).
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// Tags handed out so far.
static NEXT_TAG: AtomicU64 = AtomicU64::new(1);
/// Threads seeded so far (mixed into their seeds).
static SEEDED: AtomicU64 = AtomicU64::new(0);

/// The base of a decorator made sampling by a `const` constructor, before its first sample: no
/// countdown carries its tag (never handed out), so its first allocation takes the slow path, which
/// gives it a tag of its own.
pub(crate) const PENDING_BASE: u64 = (TAG_MASK + 1) << LEFT_BITS;

/// A fresh tag, as a countdown base (`tag << 40`, never 0). Tags wrap after 2^23 changes of
/// interval in a process; a thread whose countdown was left under a reused tag then finishes that
/// countdown before drawing a fresh one.
pub(crate) fn fresh_base() -> u64 {
    loop {
        let tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed) & TAG_MASK;
        if tag != 0 {
            return tag << LEFT_BITS;
        }
    }
}

/// Whether an allocation of `size` bytes on this thread goes unsampled under the decorator whose
/// countdown base is `base`, counting its bytes: the common case, two subtractions and a compare.
/// `false` means "ask [`sample_slow`]", with nothing counted. Always false for `base` 0 (a
/// decorator that records every block): no countdown is within reach of 0 (a thread's word is
/// [`NO_COUNTDOWN`] or carries a tag, at least 2^40), so such a decorator's entry can take the
/// same test and fall through to its own path.
#[inline(always)]
pub(crate) fn unsampled(base: u64, size: usize) -> bool {
    let size = (size as u64).min(FAST_LIMIT - 1);
    COUNTDOWN.with(|c| {
        let v = c.get().wrapping_sub(size);
        if v.wrapping_sub(base) < FAST_LIMIT {
            c.set(v);
            true
        } else {
            false
        }
    })
}

/// Where [`unsampled`] failed: whether this allocation of `size` bytes is sampled, with the
/// countdown drawn afresh (from the end of this allocation if it is sampled, from its start if the
/// countdown was another decorator's or another interval's).
#[cold]
#[inline(never)]
pub(crate) fn sample_slow(base: u64, interval: usize, size: usize) -> bool {
    let size = size as u64;
    let v = COUNTDOWN.with(Cell::get);
    let mine = v & !(LEFT_LIMIT - 1) == base;
    let left = if mine {
        v & (LEFT_LIMIT - 1)
    } else {
        draw(interval)
    };
    let (sampled, left) = if left < size {
        (true, draw(interval))
    } else {
        (false, left - size)
    };
    COUNTDOWN.with(|c| c.set(base | left));
    sampled
}

/// Seeds the calling thread's sampling generator and drops its countdown, so that the same
/// allocations on this thread, through sampling [`Tracing`](super::Tracing)s, are sampled the
/// same way again (a test's fixed seed). Threads are otherwise seeded from their own address and
/// the number of threads seeded before them.
pub fn seed_sampling(seed: u64) {
    RNG.with(|r| r.set(mix(seed) | 1));
    COUNTDOWN.with(|c| c.set(NO_COUNTDOWN));
}

/// A 64-bit finaliser (splitmix64's): every input bit moves every output bit.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The next 64 random bits of this thread's generator (xorshift64*).
fn next_u64() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        if x == 0 {
            let here = ptr::from_ref(r) as u64;
            x = mix(here ^ mix(SEEDED.fetch_add(1, Ordering::Relaxed))) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A distance to the next sampled byte: exponential with mean `interval`, rounded down, below
/// [`DRAW_LIMIT`].
fn draw(interval: usize) -> u64 {
    // Uniform in (0, 1]: 53 random bits, never 0, so the logarithm is finite.
    let u = ((next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
    let d = -u.ln() * interval as f64;
    (d as u64).min(DRAW_LIMIT - 1)
}

/// What a sampled block stands for, at one interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Weights {
    interval: f64,
}

impl Weights {
    pub(crate) fn new(interval: usize) -> Self {
        Weights {
            interval: interval as f64,
        }
    }

    /// The probability that a block of `size` bytes is sampled.
    fn probability(self, size: usize) -> f64 {
        -(-(size as f64) / self.interval).exp_m1()
    }

    /// Blocks a sampled block of `size` bytes stands for (0 for a block of no bytes, which is
    /// never sampled).
    pub(crate) fn blocks(self, size: usize) -> f64 {
        if size == 0 {
            0.0
        } else {
            1.0 / self.probability(size)
        }
    }

    /// Bytes a sampled block of `size` bytes stands for.
    pub(crate) fn bytes(self, size: usize) -> f64 {
        size as f64 * self.blocks(size)
    }

    /// [`bytes`](Self::bytes) rounded, for the traced-memory balances (the same for the same size,
    /// so a block's free takes back exactly what its record added).
    pub(crate) fn whole_bytes(self, size: usize) -> u64 {
        self.bytes(size).round() as u64
    }
}

/// Buckets of the [`Filter`]: with `n` live sampled blocks, a free of an unsampled block looks
/// further (at the records) about `n / BUCKETS` of the time.
const BUCKETS: usize = 1 << 15;

/// Counts of live sampled blocks by bucket of address: a free of a block whose bucket holds 0 has
/// no record. Never gives a false "no" for a block whose record was made before the free (its
/// count was added before its record was written, by the thread that made it, and the free
/// follows that thread's allocation).
///
/// A count is a byte, so that the table (32 KiB) is read by every free with few cache misses (it
/// was 128 KiB of 32-bit counts: a program freeing blocks at random addresses missed the first
/// level cache on most frees). A count that reaches [`STUCK`] stays there: its bucket answers
/// "maybe" for good, which costs frees of that bucket a look at the records, never an answer.
///
/// A block's bucket is its address in 16-byte units, taken modulo the number of buckets (the
/// `mask` kept in front of the counts): neighbouring blocks share cache lines of the table, and
/// the test of a free is a shift, a mask, a load and a compare. Blocks 512 KiB apart share a
/// bucket, so a sampled block sends the frees of the blocks at its offset in other
/// 512 KiB-aligned windows the long way (to the records, which answer no); a bucket shared by
/// 255 live sampled blocks sticks.
///
/// The frees' view of the filter ([`FilterCell`]) is never null: while the decorator does not
/// sample it is [`NOT_SAMPLING`], a filter of one stuck bucket and mask 0, which answers "maybe"
/// for every block (the records then decide). `repr(C)`, so that both place the mask first and
/// the counts at the same offset.
#[repr(C)]
pub(crate) struct Filter {
    /// The bucket of an address is `(addr >> 4) & mask`: `BUCKETS - 1`.
    mask: usize,
    counts: [AtomicU8; BUCKETS],
}

/// A bucket's count that no longer changes (255 live sampled blocks in one bucket).
const STUCK: u8 = u8::MAX;

/// The frees' filter while a decorator does not sample: one bucket, stuck.
#[repr(C)]
struct NotSampling {
    mask: usize,
    counts: [AtomicU8; 1],
}

/// See [`NotSampling`]. Never written: its one count is [`STUCK`], which `add` and `remove`
/// leave as it is.
static NOT_SAMPLING: NotSampling = NotSampling {
    mask: 0,
    counts: [AtomicU8::new(STUCK)],
};

/// Where the counts start, in both layouts.
const COUNTS_AT: usize = core::mem::offset_of!(Filter, counts);
const _: () = assert!(COUNTS_AT == core::mem::offset_of!(NotSampling, counts));

impl Filter {
    /// A zeroed filter from the OS (on unix) or the C library; null if no memory could be had.
    pub(crate) fn make() -> *mut Filter {
        let size = size_of::<Filter>();
        #[cfg(unix)]
        {
            // SAFETY: an anonymous private mapping of `size` bytes; no existing memory is touched.
            let p = unsafe {
                libc::mmap(
                    ptr::null_mut(),
                    size,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return ptr::null_mut();
            }
            let p = p.cast::<Filter>();
            // SAFETY: a fresh private mapping of a whole `Filter`, seen by no one else yet.
            unsafe { (*p).mask = BUCKETS - 1 };
            p
        }
        #[cfg(not(unix))]
        {
            let Some(p) = System.calloc(1, size) else {
                return ptr::null_mut();
            };
            let p = p.as_ptr().cast::<Filter>();
            // SAFETY: a fresh zeroed block of a whole `Filter` (the C library aligns it to 16),
            // seen by no one else yet.
            unsafe { (*p).mask = BUCKETS - 1 };
            p
        }
    }

    /// Gives back a filter [`make`](Self::make) made.
    ///
    /// # Safety
    ///
    /// `p` came from `make`, is not null, and nothing refers to it any more.
    pub(crate) unsafe fn release(p: *mut Filter) {
        #[cfg(unix)]
        // SAFETY: the caller's guarantee: a mapping `make` made of exactly this size.
        unsafe {
            libc::munmap(p.cast(), size_of::<Filter>());
        }
        #[cfg(not(unix))]
        // SAFETY: the caller's guarantee: a block of the C library, freed once.
        unsafe {
            System.free(p.cast());
        }
    }

    #[inline(always)]
    fn bucket(addr: usize) -> usize {
        (addr >> 4) & (BUCKETS - 1)
    }

    /// Counts a sampled block at `addr`, before its record is written.
    pub(crate) fn add(&self, addr: usize) {
        // A stuck count stays as it is.
        let _ = self.counts[Self::bucket(addr)].fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |c| (c != STUCK).then(|| c + 1),
        );
    }

    /// Whether a sampled block may live at `addr` (false: certainly none).
    #[cfg(test)]
    fn may_hold(&self, addr: usize) -> bool {
        self.counts[Self::bucket(addr)].load(Ordering::Relaxed) != 0
    }

    /// Takes back the count of a sampled block whose record was forgotten.
    pub(crate) fn remove(&self, addr: usize) {
        // Never below 0: a record forgotten here was counted (or, made in a race with a change of
        // mode, is let go of without a count, and the bucket stays as it is).
        // A stuck count stays as it is: how many blocks it stands for is no longer known.
        let _ = self.counts[Self::bucket(addr)].fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |c| (c != STUCK).then(|| c.checked_sub(1)).flatten(),
        );
    }

    /// Zeroes every count (the records were all forgotten).
    pub(crate) fn clear(&self) {
        for c in &self.counts {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// A decorator's filter: made at most once (on its first sampled configuration), kept until the
/// decorator is dropped, and `active` (read by every free) only while the decorator samples;
/// otherwise the frees read [`NOT_SAMPLING`].
pub(crate) struct FilterCell {
    made: core::sync::atomic::AtomicPtr<Filter>,
    /// The made filter or `NOT_SAMPLING`, never null.
    active: core::sync::atomic::AtomicPtr<Filter>,
}

/// [`NOT_SAMPLING`], as the cell keeps it (a pointer to a filter's layout, read only through
/// [`FilterCell::holds_none`] and compared).
const fn not_sampling() -> *mut Filter {
    ptr::from_ref(&NOT_SAMPLING).cast::<Filter>().cast_mut()
}

impl FilterCell {
    pub(crate) const fn new() -> Self {
        FilterCell {
            made: core::sync::atomic::AtomicPtr::new(ptr::null_mut()),
            active: core::sync::atomic::AtomicPtr::new(not_sampling()),
        }
    }

    /// The filter, made now if need be; `None` if no memory could be had.
    pub(crate) fn get_or_make(&self) -> Option<&Filter> {
        let mut p = self.made.load(Ordering::Acquire);
        if p.is_null() {
            let fresh = Filter::make();
            if fresh.is_null() {
                return None;
            }
            p = match self.made.compare_exchange(
                ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => fresh,
                Err(winner) => {
                    // SAFETY: made just now and never published.
                    unsafe { Filter::release(fresh) };
                    winner
                }
            };
        }
        // SAFETY: published filters are zeroed (valid counters) and live until the cell is dropped.
        Some(unsafe { &*p })
    }

    /// The filter made so far, if any.
    pub(crate) fn made(&self) -> Option<&Filter> {
        // SAFETY: as in `get_or_make`.
        unsafe { self.made.load(Ordering::Acquire).as_ref() }
    }

    /// Makes the filter the one frees look at (`on`), or none.
    pub(crate) fn activate(&self, on: bool) {
        let made = self.made.load(Ordering::Acquire);
        let p = if on && !made.is_null() {
            made
        } else {
            not_sampling()
        };
        self.active.store(p, Ordering::Release);
    }

    /// The filter frees look at: `None` unless the decorator samples.
    #[inline(always)]
    pub(crate) fn active(&self) -> Option<&Filter> {
        // Acquire: as in `holds_none`.
        let p = self.active.load(Ordering::Acquire);
        if p == not_sampling() {
            return None;
        }
        // SAFETY: not `NOT_SAMPLING`, so the made filter (as in `get_or_make`).
        Some(unsafe { &*p })
    }

    /// Whether no sampled block can be at `addr` while the decorator samples: one load of the
    /// filter's place, then its mask and the address's count (a shift, a mask and a compare),
    /// with no test of the mode. Always false while the decorator does not sample
    /// ([`NOT_SAMPLING`]'s one bucket is stuck); [`samples`](Self::samples) then tells a "maybe"
    /// from that.
    #[inline(always)]
    pub(crate) fn holds_none(&self, addr: usize) -> bool {
        // A free sees the mode its block's allocation saw (the block reached the freeing thread
        // after that); one that sees no filter takes the exact path, which also finds whether the
        // block has a record. Acquire (a plain load on x86-64): pairs with `activate`'s Release,
        // so the mask written before the filter was published is read here, not the mapping's 0.
        let p = self.active.load(Ordering::Acquire);
        // SAFETY: `p` is the made filter (live until the cell is dropped, its mask written before
        // it was published) or `NOT_SAMPLING`; both start with the mask and hold counts from
        // `COUNTS_AT` to beyond `mask` (a `BUCKETS` of them, or one for mask 0), so the bucket
        // `(addr >> 4) & mask` is one of them.
        unsafe {
            let mask = *p.cast::<usize>();
            let c = &*p
                .cast::<u8>()
                .add(COUNTS_AT + ((addr >> 4) & mask))
                .cast::<AtomicU8>();
            c.load(Ordering::Relaxed) == 0
        }
    }

    /// Whether the decorator samples (its frees look at a filter of their own).
    #[inline(always)]
    pub(crate) fn samples(&self) -> bool {
        self.active.load(Ordering::Relaxed) != not_sampling()
    }

    /// Bytes the filter takes.
    pub(crate) fn footprint(&self) -> usize {
        if self.made().is_some() {
            size_of::<Filter>()
        } else {
            0
        }
    }
}

impl Drop for FilterCell {
    fn drop(&mut self) {
        let p = *self.made.get_mut();
        if !p.is_null() {
            // SAFETY: `&mut self`: nothing refers to the filter any more; made by `make`.
            unsafe { Filter::release(p) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_unbiased_and_tend_to_the_size_for_large_blocks() {
        let w = Weights::new(1024);
        // A block as large as many intervals is nearly always sampled, and stands for itself.
        assert!((w.bytes(1 << 20) - (1 << 20) as f64).abs() < 1.0);
        assert!((w.blocks(1 << 20) - 1.0).abs() < 1e-9);
        // A tiny block stands for about interval / size blocks.
        assert!((w.blocks(1) - 1024.5).abs() < 0.01, "{}", w.blocks(1));
        assert_eq!(w.blocks(0), 0.0);
        // Expectation: p(s) * weight(s) == s.
        for s in [1usize, 16, 100, 1024, 5000] {
            assert!((w.probability(s) * w.bytes(s) - s as f64).abs() < 1e-6);
        }
        assert_eq!(w.whole_bytes(16), w.bytes(16).round() as u64);
    }

    #[test]
    fn the_countdown_samples_at_the_interval_and_restarts_for_another_decorator() {
        let (a, b) = (fresh_base(), fresh_base());
        assert_ne!(a, b);
        seed_sampling(7);
        let interval = 4096;
        let mut sampled = 0u64;
        let n = 400_000u64;
        for _ in 0..n {
            if !unsampled(a, 64) && sample_slow(a, interval, 64) {
                sampled += 1;
            }
        }
        // Expected n * (1 - exp(-64/4096)) = 6200; the spread is about 80.
        let expected = n as f64 * -(-64.0f64 / 4096.0).exp_m1();
        assert!(
            (sampled as f64 - expected).abs() < 5.0 * expected.sqrt(),
            "{sampled} samples, {expected} expected"
        );
        // Another decorator's word: the fast path refuses, the slow path draws afresh.
        assert!(!unsampled(b, 1));
        let _ = sample_slow(b, interval, 1);
        assert_eq!(COUNTDOWN.with(Cell::get) & !(LEFT_LIMIT - 1), b);
        // The same seed samples the same allocations again.
        let run = || {
            seed_sampling(99);
            (0..10_000)
                .filter(|_| !unsampled(a, 100) && sample_slow(a, interval, 100))
                .count()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn the_filter_counts_blocks_by_bucket() {
        let p = Filter::make();
        assert!(!p.is_null());
        // SAFETY: made just now, zeroed, released below once.
        let f = unsafe { &*p };
        let a = 0x7f12_3456_7890usize;
        assert!(!f.may_hold(a));
        f.add(a);
        f.add(a);
        assert!(f.may_hold(a));
        f.remove(a);
        assert!(f.may_hold(a));
        f.remove(a);
        assert!(!f.may_hold(a));
        f.remove(a);
        assert!(!f.may_hold(a), "never below zero");
        f.add(a);
        f.clear();
        assert!(!f.may_hold(a));
        // A count that reaches the top of its byte sticks there: the bucket answers "maybe" for
        // good, however many of its blocks are freed (how many it stands for is no longer known).
        for n in 1..=300 {
            f.add(a);
            assert!(f.may_hold(a), "after {n} adds");
        }
        for _ in 0..300 {
            f.remove(a);
        }
        assert!(f.may_hold(a), "a stuck bucket never says no");
        f.clear();
        assert!(!f.may_hold(a));
        // SAFETY: made by `make`, no longer referred to.
        unsafe { Filter::release(p) };
    }

    /// The frees' view: no address holds none while the decorator does not sample; while it
    /// samples, a sampled block's bucket (its address in 16-byte units, modulo the buckets) may
    /// hold one, its neighbours none, and the block 512 KiB away shares its bucket.
    #[test]
    fn the_frees_filter_tells_the_modes_and_the_buckets_apart() {
        let cell = FilterCell::new();
        let a = 0x7f12_3456_7890usize;
        for addr in [0, 16, a, a + 16, usize::MAX & !15] {
            assert!(!cell.holds_none(addr));
        }
        assert!(!cell.samples());
        assert!(cell.active().is_none());
        let f = cell.get_or_make().unwrap();
        assert!(!cell.holds_none(a), "made, not yet active");
        cell.activate(true);
        assert!(cell.samples());
        assert!(cell.active().is_some());
        assert!(cell.holds_none(a));
        f.add(a);
        assert!(!cell.holds_none(a));
        assert!(cell.holds_none(a + 16));
        assert!(cell.holds_none(a - 16));
        assert!(!cell.holds_none(a + (BUCKETS << 4)), "512 KiB away");
        cell.activate(false);
        assert!(!cell.holds_none(a + 16));
        assert!(!cell.samples());
        cell.activate(true);
        f.remove(a);
        assert!(cell.holds_none(a));
    }
}
