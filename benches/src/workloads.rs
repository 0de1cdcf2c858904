//! The workloads: each allocates through a [`GlobalAlloc`] given by reference and returns what it
//! measured. They use only the allocator under test for their blocks (their bookkeeping arrays are
//! allocated once, before timing starts).

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::time::Instant;

/// A small, seeded generator (splitmix64), so every allocator sees the same sequence.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// `iters` allocate-then-free pairs of `size` bytes, each block touched once.
/// Returns nanoseconds per pair.
pub fn pairs<G: GlobalAlloc>(a: &G, size: usize, iters: u64) -> f64 {
    let layout = Layout::from_size_align(size, 8).expect("valid layout");
    let start = Instant::now();
    for i in 0..iters {
        // SAFETY: the layout has a non-zero size; the block is freed with the same layout.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null(), "out of memory");
            p.write(i as u8);
            black_box(p);
            a.dealloc(p, layout);
        }
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// The live-set sizes of the sweep: churn at each, to show that no operation's cost grows with the
/// number of live blocks (or arenas).
pub const SWEEP_LIVE: &[usize] = &[1_000, 10_000, 100_000, 1_000_000, 4_000_000];

/// Churn: `live` blocks of 16 to 512 bytes (16-byte steps, as a mix of small objects), then
/// `replaces` random replacements (free one slot, allocate a new size into it).
/// Returns nanoseconds per replacement; everything is freed at the end.
pub fn churn<G: GlobalAlloc>(a: &G, live: usize, replaces: u64, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    let mut slots: Vec<(*mut u8, Layout)> = Vec::with_capacity(live);
    let size =
        |rng: &mut Rng| Layout::from_size_align(16 * (1 + rng.below(32)), 8).expect("valid layout");
    for _ in 0..live {
        let l = size(&mut rng);
        // SAFETY: non-zero layout.
        let p = unsafe { a.alloc(l) };
        assert!(!p.is_null(), "out of memory");
        slots.push((p, l));
    }
    let start = Instant::now();
    for _ in 0..replaces {
        let i = rng.below(live);
        let l = size(&mut rng);
        // SAFETY: slot `i` holds a live block with its layout; it is replaced by a fresh one.
        unsafe {
            let (old, ol) = slots[i];
            a.dealloc(old, ol);
            let p = a.alloc(l);
            assert!(!p.is_null(), "out of memory");
            p.write(1);
            slots[i] = (p, l);
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / replaces as f64;
    for (p, l) in slots {
        // SAFETY: every slot holds a live block with its layout, freed once.
        unsafe { a.dealloc(p, l) };
    }
    ns
}
