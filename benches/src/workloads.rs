//! The workloads: each allocates through a [`GlobalAlloc`] given by reference and returns what it
//! measured. They use only the allocator under test for their blocks (their bookkeeping arrays are
//! allocated once, before timing starts).

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::time::Instant;

/// The seeded generator of the conformance suite: every allocator sees the same sequence.
pub use alloc_core::testkit::Rng;

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

// ---------------------------------------------------------------------------------------------
// Workloads on the process's global allocator (in the runner, `Dispatch`): ordinary Rust code.

/// A Python-like object churn: waves of small objects of a few sizes (as an interpreter's ints,
/// tuples, small dicts and strings), most dropped before the next wave, some kept for a while.
/// Returns nanoseconds per object created.
pub fn pyobjects(waves: usize, per_wave: usize, seed: u64) -> f64 {
    #[allow(dead_code)]
    enum Obj {
        Int(Box<[u64; 3]>),
        Tuple(Box<[u64; 6]>),
        Str(String),
        Dict(Vec<(u64, u64)>),
    }
    let mut rng = Rng::new(seed);
    let mut survivors: Vec<Obj> = Vec::with_capacity(per_wave);
    let start = Instant::now();
    for _ in 0..waves {
        let mut wave: Vec<Obj> = Vec::with_capacity(per_wave);
        for i in 0..per_wave {
            let v = rng.next_u64();
            wave.push(match rng.below(10) {
                0..=3 => Obj::Int(Box::new([v, 1, 2])),
                4..=6 => Obj::Tuple(Box::new([v; 6])),
                7..=8 => Obj::Str(format!("name_{}", v % 100_000)),
                _ => Obj::Dict((0..(1 + i % 6) as u64).map(|k| (k, v)).collect()),
            });
        }
        // A tenth survives into the next wave (replacing older survivors), the rest dies.
        for (i, o) in wave.into_iter().enumerate() {
            if i % 10 == 0 {
                if survivors.len() < per_wave / 10 {
                    survivors.push(o);
                } else {
                    let at = rng.below(survivors.len());
                    survivors[at] = o;
                }
            }
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / (waves * per_wave) as f64;
    black_box(&survivors);
    ns
}

/// Builds a `BTreeMap<String, Vec<u64>>` of `keys` keys (values growing by push) and a
/// `HashMap<u64, String>` beside it, queries every key of both, and drops them. Returns
/// nanoseconds per key.
pub fn btree(keys: usize, seed: u64) -> f64 {
    use std::collections::{BTreeMap, HashMap};
    let mut rng = Rng::new(seed);
    let start = Instant::now();
    let mut map: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut index: HashMap<u64, String> = HashMap::new();
    for _ in 0..keys * 4 {
        let k = rng.below(keys);
        map.entry(format!("key-{k:08}")).or_default().push(k as u64);
        index
            .entry(k as u64)
            .or_insert_with(|| format!("value of {k}"));
    }
    let mut hits = 0usize;
    for k in 0..keys {
        hits += map.get(&format!("key-{k:08}")).map_or(0, Vec::len);
        hits += index.get(&(k as u64)).map_or(0, String::len);
    }
    black_box(hits);
    drop(map);
    drop(index);
    start.elapsed().as_nanos() as f64 / keys as f64
}

/// A JSON-like document tree.
#[derive(Debug)]
pub enum Json {
    /// `null`.
    Null,
    /// A number.
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object.
    Obj(Vec<(String, Json)>),
}

/// A document of about `records` records as JSON text (generated once, outside the timing).
pub fn json_text(records: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut s = String::from("[");
    for i in 0..records {
        if i > 0 {
            s.push(',');
        }
        let v = rng.next_u64();
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"user{}\",\"tags\":[\"a{}\",\"b\",\"c{}\"],\"score\":{}.5,\"extra\":null}}",
            v % 1000,
            v % 7,
            v % 13,
            v % 100
        ));
    }
    s.push(']');
    s
}

/// Parses JSON text into a [`Json`] tree (a small recursive-descent parser: enough for the
/// generated documents, which it requires to be well formed).
pub fn parse_json(text: &str) -> Json {
    fn ws(b: &[u8], i: &mut usize) {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    }
    fn string(b: &[u8], i: &mut usize) -> String {
        *i += 1; // opening quote
        let start = *i;
        while b[*i] != b'"' {
            *i += 1;
        }
        let s = String::from_utf8_lossy(&b[start..*i]).into_owned();
        *i += 1;
        s
    }
    fn value(b: &[u8], i: &mut usize) -> Json {
        ws(b, i);
        match b[*i] {
            b'n' => {
                *i += 4;
                Json::Null
            }
            b'"' => Json::Str(string(b, i)),
            b'[' => {
                *i += 1;
                let mut items = Vec::new();
                loop {
                    ws(b, i);
                    if b[*i] == b']' {
                        *i += 1;
                        break Json::Arr(items);
                    }
                    items.push(value(b, i));
                    ws(b, i);
                    if b[*i] == b',' {
                        *i += 1;
                    }
                }
            }
            b'{' => {
                *i += 1;
                let mut fields = Vec::new();
                loop {
                    ws(b, i);
                    if b[*i] == b'}' {
                        *i += 1;
                        break Json::Obj(fields);
                    }
                    let k = string(b, i);
                    ws(b, i);
                    *i += 1; // colon
                    fields.push((k, value(b, i)));
                    ws(b, i);
                    if b[*i] == b',' {
                        *i += 1;
                    }
                }
            }
            _ => {
                let start = *i;
                while *i < b.len() && (b[*i].is_ascii_digit() || b[*i] == b'.' || b[*i] == b'-') {
                    *i += 1;
                }
                Json::Num(
                    std::str::from_utf8(&b[start..*i])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0.0),
                )
            }
        }
    }
    let mut i = 0;
    value(text.as_bytes(), &mut i)
}

/// Parses `text` into a tree and drops it. Returns nanoseconds per record (top-level element).
pub fn json(text: &str, records: usize) -> f64 {
    let start = Instant::now();
    let tree = parse_json(text);
    black_box(&tree);
    drop(tree);
    start.elapsed().as_nanos() as f64 / records as f64
}

/// Producer-consumer pairs: `pairs` producers each send `messages` heap blocks (16 to 512 bytes,
/// a pattern written in each) to a consumer thread, which checks and frees them: every block is
/// freed by a thread other than the one that made it. Returns nanoseconds per message, over all
/// threads (wall time / messages).
pub fn prodcons(pairs: usize, messages: usize) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for p in 0..pairs {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(1024);
            s.spawn(move || {
                let mut rng = Rng::new(p as u64 + 1);
                for _ in 0..messages {
                    let n = 16 + rng.below(497);
                    tx.send(vec![(n % 251) as u8; n]).expect("consumer alive");
                }
            });
            s.spawn(move || {
                for m in rx {
                    assert!(
                        m.iter().all(|&b| b == (m.len() % 251) as u8),
                        "block damaged"
                    );
                }
            });
        }
    });
    start.elapsed().as_nanos() as f64 / (pairs * messages) as f64
}

/// Larson-style: `threads` threads repeatedly replace random slots of one shared array of blocks
/// (16 to 512 bytes), so blocks are freed by whichever thread replaces them. Returns nanoseconds
/// per replacement, over all threads (wall time / replacements).
pub fn larson(threads: usize, slots: usize, replaces: usize) -> f64 {
    use std::sync::atomic::{AtomicPtr, Ordering};
    let layout = |n: usize| Layout::from_size_align(n, 8).expect("valid layout");
    let table: Vec<AtomicPtr<u8>> = (0..slots)
        .map(|_| AtomicPtr::new(std::ptr::null_mut()))
        .collect();
    let size_of_block = |p: *mut u8| -> usize {
        // SAFETY: every non-null slot holds a live block whose first 8 bytes hold its size.
        unsafe { p.cast::<usize>().read() }
    };
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let table = &table;
            s.spawn(move || {
                let mut rng = Rng::new(t as u64 * 7 + 3);
                for _ in 0..replaces {
                    let n = 16 + rng.below(497);
                    // SAFETY: a non-zero layout; the block's first word records its size.
                    let p = unsafe { std::alloc::alloc(layout(n)) };
                    assert!(!p.is_null(), "out of memory");
                    // SAFETY: `p` is a fresh block of at least 16 bytes.
                    unsafe { p.cast::<usize>().write(n) };
                    let old = table[rng.below(slots)].swap(p, Ordering::AcqRel);
                    if !old.is_null() {
                        // SAFETY: the swap made this thread the block's only holder.
                        unsafe { std::alloc::dealloc(old, layout(size_of_block(old))) };
                    }
                }
            });
        }
    });
    let ns = start.elapsed().as_nanos() as f64 / (threads * replaces) as f64;
    for slot in &table {
        let p = slot.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: the threads are done; each remaining block is freed once.
            unsafe { std::alloc::dealloc(p, layout(size_of_block(p))) };
        }
    }
    ns
}
