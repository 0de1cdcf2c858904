//! Sampled `Tracing` against exact `Tracing`: the same allocations (the shapes of the benchmark
//! workloads `pairs`, `churn`, `pyobjects`, `btree` and `json`, with a tag per allocation site)
//! go through both, and the sampled decorator's estimated bytes per site must be within 10% of the
//! exact ones for every site holding over 1% of the bytes. The threads' generators are seeded, so
//! each run samples the same blocks.
//!
//! The spread of an estimate shrinks with the number of samples (about `1/sqrt(bytes/interval)`
//! for small blocks), not with the interval itself; the workloads here hold tens of megabytes, so
//! they sample at 256 bytes to have a few thousand samples per site, as a program holding
//! gigabytes would at the default 512 KiB.

use std::collections::HashMap;
use std::ptr::NonNull;

use alloc_core::{DomainAllocator, System};
use alloc_debug::{KeyType, Snapshot, Tag, Tracing, TracingError, seed_sampling, with_tag};

const INTERVAL: usize = 256;

/// The two decorators, fed the same calls.
struct Both {
    exact: Tracing<System>,
    sampled: Tracing<System>,
}

/// One block, in both.
#[derive(Clone, Copy)]
struct Block {
    exact: NonNull<u8>,
    sampled: NonNull<u8>,
    size: usize,
}

impl Both {
    fn new(seed: u64) -> Self {
        seed_sampling(seed);
        Both {
            exact: Tracing::new(System),
            sampled: Tracing::new(System).with_sampling(INTERVAL),
        }
    }

    fn alloc(&self, site: Tag, size: usize) -> Block {
        Block {
            exact: self.exact.malloc_tagged(size, site).unwrap(),
            sampled: self.sampled.malloc_tagged(size, site).unwrap(),
            size,
        }
    }

    fn realloc(&self, site: Tag, b: Block, size: usize) -> Block {
        with_tag(site, || {
            // SAFETY: live blocks of each decorator; the old pointers are not used again.
            unsafe {
                Block {
                    exact: self.exact.realloc(b.exact.as_ptr(), size).unwrap(),
                    sampled: self.sampled.realloc(b.sampled.as_ptr(), size).unwrap(),
                    size,
                }
            }
        })
    }

    fn free(&self, b: Block) {
        // SAFETY: live blocks of each decorator, freed once.
        unsafe {
            self.exact.free(b.exact.as_ptr());
            self.sampled.free(b.sampled.as_ptr());
        }
    }

    /// Checks every site over 1% of the exact bytes; returns the largest relative error seen.
    fn check(&self, shape: &str) -> f64 {
        let exact = self.exact.take_snapshot();
        let sampled = self.sampled.take_snapshot();
        assert_eq!(sampled.sample_interval(), Some(INTERVAL));
        assert!(
            sampled.traces().len() < exact.traces().len(),
            "{shape}: sampling kept {} of {} blocks",
            sampled.traces().len(),
            exact.traces().len()
        );
        within(shape, &exact, &sampled, 0.10)
    }

    /// Frees `blocks` and checks that nothing is left traced in either decorator.
    fn free_all_and_check_empty(&self, shape: &str, blocks: impl IntoIterator<Item = Block>) {
        for b in blocks {
            self.free(b);
        }
        for (name, t) in [("exact", &self.exact), ("sampled", &self.sampled)] {
            assert_eq!(t.traced_memory().0, 0, "{shape}: {name} traced memory left");
            assert!(
                t.take_snapshot().traces().is_empty(),
                "{shape}: {name} traces left"
            );
        }
    }
}

/// Bytes per site (file and line) by each snapshot's statistics, compared for every site over 1%
/// of the exact total; panics past `tolerance`, returns the largest relative error.
fn within(shape: &str, exact: &Snapshot, sampled: &Snapshot, tolerance: f64) -> f64 {
    let by_site = |s: &Snapshot| -> HashMap<String, usize> {
        s.statistics(KeyType::Lineno, false)
            .unwrap()
            .into_iter()
            .map(|st| (st.traceback.site().to_string(), st.size))
            .collect()
    };
    let (e, s) = (by_site(exact), by_site(sampled));
    let total = exact.total_size() as f64;
    let mut worst = 0.0f64;
    let mut checked = 0;
    for (site, &bytes) in &e {
        if (bytes as f64) < total * 0.01 {
            continue;
        }
        checked += 1;
        let estimate = s.get(site).copied().unwrap_or(0) as f64;
        let error = (estimate - bytes as f64).abs() / bytes as f64;
        worst = worst.max(error);
        assert!(
            error <= tolerance,
            "{shape}: site {site} holds {bytes} bytes, estimated {estimate} ({:.1}% off)",
            error * 100.0
        );
    }
    assert!(checked > 0, "{shape}: no site checked");
    let total_error = (sampled.total_size() as f64 - total).abs() / total;
    assert!(
        total_error <= tolerance,
        "{shape}: total {total}, estimated {}",
        sampled.total_size()
    );
    println!(
        "{shape}: {checked} sites, worst {:.2}% off, total {:.2}% off",
        worst * 100.0,
        total_error * 100.0
    );
    worst
}

/// The seeded generator of the workloads (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PAIRS: [Tag; 4] = [
    Tag::new("pairs-16", 1),
    Tag::new("pairs-64", 2),
    Tag::new("pairs-256", 3),
    Tag::new("pairs-512", 4),
];

/// `pairs`: allocate-then-free pairs of 16, 64, 256 and 512 bytes. Nothing stays live, so the
/// estimate checked is of the bytes allocated: the same stream with every block kept; then every
/// block is freed, and nothing may be left traced.
#[test]
fn pairs_shape() {
    let both = Both::new(1);
    // Pairs proper: every sampled block is forgotten at its free.
    for i in 0..200_000 {
        let b = both.alloc(PAIRS[i % 4], [16, 64, 256, 512][i % 4]);
        both.free(b);
    }
    both.free_all_and_check_empty("pairs", []);
    let kept: Vec<Block> = (0..200_000)
        .map(|i| both.alloc(PAIRS[i % 4], [16, 64, 256, 512][i % 4]))
        .collect();
    let worst = both.check("pairs (kept)");
    assert!(worst < 0.10);
    both.free_all_and_check_empty("pairs", kept);
}

/// `churn`: 100,000 live blocks of 16 to 512 bytes replaced at random, the sites by size range.
#[test]
fn churn_shape() {
    const SITES: [Tag; 4] = [
        Tag::new("churn-small", 1),
        Tag::new("churn-medium", 2),
        Tag::new("churn-large", 3),
        Tag::new("churn-huge", 4),
    ];
    let both = Both::new(2);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let make = |rng: &mut Rng| {
        let size = 16 * (1 + rng.below(32));
        both.alloc(SITES[(size - 1) / 128], size)
    };
    let mut slots: Vec<Block> = (0..100_000).map(|_| make(&mut rng)).collect();
    for _ in 0..300_000 {
        let i = rng.below(slots.len());
        both.free(slots[i]);
        slots[i] = make(&mut rng);
    }
    both.check("churn");
    both.free_all_and_check_empty("churn", slots);
}

/// `pyobjects`: waves of ints (24 B), tuples (48 B), strings (10 B) and small dicts (16 to 96 B)
/// in a wave vector, a tenth surviving into a list of survivors.
#[test]
fn pyobjects_shape() {
    const INT: Tag = Tag::new("py-int", 1);
    const TUPLE: Tag = Tag::new("py-tuple", 2);
    const STR: Tag = Tag::new("py-str", 3);
    const DICT: Tag = Tag::new("py-dict", 4);
    const WAVE: Tag = Tag::new("py-wave", 5);
    const SURVIVORS: Tag = Tag::new("py-survivors", 6);
    let both = Both::new(3);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let per_wave = 100_000;
    let survivors_list = both.alloc(SURVIVORS, per_wave / 10 * 32);
    let mut survivors: Vec<Block> = Vec::new();
    let object = |rng: &mut Rng, i: usize| match rng.below(10) {
        0..=3 => both.alloc(INT, 24),
        4..=6 => both.alloc(TUPLE, 48),
        7..=8 => both.alloc(STR, 10),
        _ => both.alloc(DICT, 16 * (1 + i % 6)),
    };
    let mut last_wave = Vec::new();
    let mut last_list = None;
    for wave in 0..6 {
        let list = both.alloc(WAVE, per_wave * 32);
        let objects: Vec<Block> = (0..per_wave).map(|i| object(&mut rng, i)).collect();
        if wave == 5 {
            // The checkpoint: the last wave live, with the survivors.
            last_wave = objects;
            last_list = Some(list);
            break;
        }
        for (i, o) in objects.into_iter().enumerate() {
            if i % 10 == 0 {
                if survivors.len() < per_wave / 10 {
                    survivors.push(o);
                } else {
                    let at = rng.below(survivors.len());
                    both.free(std::mem::replace(&mut survivors[at], o));
                }
            } else {
                both.free(o);
            }
        }
        both.free(list);
    }
    both.check("pyobjects");
    let rest = last_wave
        .into_iter()
        .chain(survivors)
        .chain(last_list)
        .chain([survivors_list]);
    both.free_all_and_check_empty("pyobjects", rest);
}

/// `btree`: a `BTreeMap<String, Vec<u64>>` (key strings of 12 bytes, vectors growing by
/// reallocation, a node of 536 bytes every 8 keys) and a `HashMap<u64, String>` beside it (a
/// table growing by doubling, value strings of 14 to 16 bytes).
#[test]
fn btree_shape() {
    const KEY: Tag = Tag::new("btree-key", 1);
    const VALUES: Tag = Tag::new("btree-values", 2);
    const NODE: Tag = Tag::new("btree-node", 3);
    const TABLE: Tag = Tag::new("hash-table", 4);
    const VALUE: Tag = Tag::new("hash-value", 5);
    let both = Both::new(4);
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let keys = 60_000;
    let mut map: HashMap<usize, (Block, Block, usize)> = HashMap::new();
    let mut nodes = Vec::new();
    let mut strings = Vec::new();
    let mut table = both.alloc(TABLE, 64 * 16);
    let mut table_cap = 64;
    for _ in 0..keys * 4 {
        let k = rng.below(keys);
        match map.get_mut(&k) {
            Some((_, values, len)) => {
                *len += 1;
                if len.is_power_of_two() && *len >= 4 {
                    *values = both.realloc(VALUES, *values, *len * 2 * 8);
                }
            }
            None => {
                let key = both.alloc(KEY, 12);
                let values = both.alloc(VALUES, 4 * 8);
                map.insert(k, (key, values, 1));
                if map.len().is_multiple_of(8) {
                    nodes.push(both.alloc(NODE, 536));
                }
                strings.push(both.alloc(VALUE, 14 + k % 3));
                if map.len() * 8 > table_cap * 7 {
                    table_cap *= 2;
                    table = both.realloc(TABLE, table, table_cap * 16);
                }
            }
        }
    }
    assert_eq!(table.size, table_cap * 16);
    both.check("btree");
    let rest = map
        .into_values()
        .flat_map(|(k, v, _)| [k, v])
        .chain(nodes)
        .chain(strings)
        .chain([table]);
    both.free_all_and_check_empty("btree", rest);
}

/// `json`: a parsed array of records `{"id", "name", "tags": [3 strings], "score", "extra"}`: the
/// top-level vector growing by doubling, each object's field vector (4, then 8 fields of 56
/// bytes), key strings of 2 to 5 bytes, name strings, a tag vector of 4 values and its strings.
#[test]
fn json_shape() {
    const ARRAY: Tag = Tag::new("json-array", 1);
    const FIELDS: Tag = Tag::new("json-fields", 2);
    const KEY: Tag = Tag::new("json-key", 3);
    const NAME: Tag = Tag::new("json-name", 4);
    const TAGS: Tag = Tag::new("json-tags", 5);
    const TAG: Tag = Tag::new("json-tag", 6);
    let both = Both::new(5);
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let records = 40_000;
    let mut array = both.alloc(ARRAY, 4 * 32);
    let mut cap = 4;
    let mut blocks = Vec::new();
    for i in 0..records {
        let mut fields = both.alloc(FIELDS, 4 * 56);
        for (n, key) in ["id", "name", "tags", "score", "extra"].iter().enumerate() {
            if n == 4 {
                fields = both.realloc(FIELDS, fields, 8 * 56);
            }
            blocks.push(both.alloc(KEY, key.len()));
        }
        let v = rng.next();
        blocks.push(both.alloc(NAME, 4 + (v % 1000).to_string().len()));
        blocks.push(both.alloc(TAGS, 4 * 32));
        blocks.push(both.alloc(TAG, 1 + (v % 7).to_string().len()));
        blocks.push(both.alloc(TAG, 1));
        blocks.push(both.alloc(TAG, 1 + (v % 13).to_string().len()));
        blocks.push(fields);
        if i == cap {
            cap *= 2;
            array = both.realloc(ARRAY, array, cap * 32);
        }
    }
    both.check("json");
    both.free_all_and_check_empty("json", blocks.into_iter().chain([array]));
}

/// The sampled statistics feed the rest of the API: a comparison of two sampled snapshots shows
/// the estimated growth of a site, the leak report and the traced memory estimate the live bytes.
#[test]
fn comparisons_and_reports_work_on_sampled_snapshots() {
    const GROWING: Tag = Tag::new("growing", 1);
    let t = Tracing::new(System).with_sampling(1024);
    seed_sampling(6);
    let before = t.take_snapshot();
    let blocks: Vec<NonNull<u8>> = (0..100_000)
        .map(|_| t.malloc_tagged(100, GROWING).unwrap())
        .collect();
    let after = t.take_snapshot();
    let diff = after.compare_to(&before, KeyType::Lineno, false).unwrap();
    let grown = diff[0].size_diff as f64;
    assert!(
        (grown - 10_000_000.0).abs() < 500_000.0,
        "growth estimated at {grown} bytes"
    );
    let blocks_grown = diff[0].count_diff as f64;
    assert!(
        (blocks_grown - 100_000.0).abs() < 5_000.0,
        "{blocks_grown} blocks"
    );
    let (current, peak) = t.traced_memory();
    assert!(
        (current as f64 - 10_000_000.0).abs() < 500_000.0,
        "traced memory estimated at {current}"
    );
    assert_eq!(peak, current);
    let report = t.leak_report();
    assert_eq!(report.bytes, after.total_size());
    assert_eq!(report.blocks, after.total_blocks());
    assert!(report.to_string().contains("growing"));
    assert!(
        t.check_no_growth(|| ()).is_ok(),
        "nothing allocated: no growth"
    );
    for p in blocks {
        // SAFETY: live blocks of `t`, freed once.
        unsafe { t.free(p.as_ptr()) };
    }
    assert_eq!(t.traced_memory(), (0, peak));
    assert!(t.take_snapshot().traces().is_empty());
}

/// Changing the mode or the interval forgets the traces, a bad interval is refused, and a block
/// larger than many intervals is always sampled, standing for itself.
#[test]
fn the_mode_changes_and_large_blocks_are_always_sampled() {
    let t = Tracing::new(System);
    assert_eq!(t.sample_interval(), None);
    assert_eq!(
        t.set_sampling(Some(0)),
        Err(TracingError::SampleInterval {
            interval: 0,
            max: alloc_debug::MAX_SAMPLE_INTERVAL
        })
    );
    let exact = t.malloc(100).unwrap();
    assert_eq!(t.traced_memory().0, 100);
    t.start_sampled(1, 4096).unwrap();
    assert_eq!(t.sample_interval(), Some(4096));
    assert_eq!(t.traced_memory().0, 0, "the exact trace was forgotten");
    // SAFETY: a live block of `t` (its record forgotten), freed once.
    unsafe { t.free(exact.as_ptr()) };
    let big = t.malloc(1 << 20).unwrap();
    let snap = t.take_snapshot();
    assert_eq!(
        snap.traces().len(),
        1,
        "a block of 256 intervals is sampled"
    );
    assert_eq!(snap.total_size(), 1 << 20);
    assert_eq!(snap.total_blocks(), 1);
    assert_eq!(t.traced_memory().0, 1 << 20);
    t.set_sampling(Some(4096)).unwrap();
    assert_eq!(
        t.traced_memory().0,
        1 << 20,
        "the same mode: nothing forgotten"
    );
    t.set_sampling(None).unwrap();
    assert_eq!(t.traced_memory().0, 0);
    // SAFETY: as above.
    unsafe { t.free(big.as_ptr()) };
    let p = t.malloc(10).unwrap();
    assert_eq!(t.traced_memory().0, 10, "every block traced again");
    // SAFETY: as above.
    unsafe { t.free(p.as_ptr()) };
}

/// Blocks of a sampling decorator that moves them with realloc keep at most one record, and
/// `track` samples as allocations do.
#[test]
fn realloc_and_track_under_sampling() {
    let t = Tracing::new(System);
    t.start_sampled(1, 64).unwrap();
    seed_sampling(8);
    let mut p = t.malloc(16).unwrap();
    for size in (32..=65_536).step_by(32) {
        // SAFETY: the live block of `t`, replaced by the result.
        p = unsafe { t.realloc(p.as_ptr(), size) }.unwrap();
        assert!(t.take_snapshot().traces().len() <= 1);
    }
    assert_eq!(
        t.take_snapshot().traces().len(),
        1,
        "64 KiB at 64 bytes is sampled"
    );
    // SAFETY: as above.
    unsafe { t.free(p.as_ptr()) };
    assert!(t.take_snapshot().traces().is_empty());
    let mut tracked = 0;
    for i in 0..10_000usize {
        t.track(7, (0x1000 + i * 16) as *const u8, 16).unwrap();
    }
    for s in t.take_snapshot().traces() {
        assert_eq!(s.domain, 7);
        tracked += 1;
    }
    // 10,000 blocks of 16 bytes at 64: about 2,212 sampled.
    assert!((1_900..2_500).contains(&tracked), "{tracked} tracked");
}
