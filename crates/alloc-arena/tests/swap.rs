//! PEP 445's arena allocator API: the provider behind a pool is swapped while blocks are live in
//! arenas of the old one, from several threads; once everything is freed, each provider has got
//! back exactly the arenas it gave, and no other.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use alloc_arena::{MAX_PROVIDERS, OsArenas, PoolAllocator, SwapError, SwappableArenas};
use alloc_core::lock::Lock;
use alloc_core::{ArenaError, ArenaProvider, DomainAllocator, System};

/// OS arenas, with the set of arenas this provider has out.
struct Tracked {
    os: OsArenas,
    live: Lock<Vec<usize>>,
    made: AtomicUsize,
    returned: AtomicUsize,
    foreign: AtomicBool,
}

impl Tracked {
    const fn new() -> Self {
        Tracked {
            os: OsArenas::new(),
            live: Lock::new(Vec::new()),
            made: AtomicUsize::new(0),
            returned: AtomicUsize::new(0),
            foreign: AtomicBool::new(false),
        }
    }
}

// SAFETY: forwards to `OsArenas`, only recording addresses.
unsafe impl ArenaProvider for Tracked {
    fn alloc(&self, layout: std::alloc::Layout) -> Result<std::ptr::NonNull<u8>, ArenaError> {
        let p = self.os.alloc(layout)?;
        self.live.lock().push(p.as_ptr() as usize);
        self.made.fetch_add(1, Ordering::Relaxed);
        Ok(p)
    }
    unsafe fn free(&self, ptr: std::ptr::NonNull<u8>, layout: std::alloc::Layout) {
        {
            let mut live = self.live.lock();
            match live.iter().position(|&a| a == ptr.as_ptr() as usize) {
                Some(i) => {
                    live.swap_remove(i);
                }
                None => self.foreign.store(true, Ordering::Relaxed),
            }
        }
        self.returned.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's guarantee (and if the arena was foreign, the test fails anyway;
        // it is still a live arena of the OS).
        unsafe { self.os.free(ptr, layout) }
    }
    unsafe fn decommit(&self, ptr: std::ptr::NonNull<u8>, len: usize) -> bool {
        // SAFETY: forwarded.
        unsafe { self.os.decommit(ptr, len) }
    }
    unsafe fn commit(&self, ptr: std::ptr::NonNull<u8>, len: usize) -> Result<(), ArenaError> {
        // SAFETY: forwarded.
        unsafe { self.os.commit(ptr, len) }
    }
}

static A: Tracked = Tracked::new();
static B: Tracked = Tracked::new();
static C: Tracked = Tracked::new();
static ARENAS: SwappableArenas = SwappableArenas::new(&A);

struct Block(*mut u8);
// SAFETY: plain memory handed between threads.
unsafe impl Send for Block {}

#[test]
fn each_provider_gets_back_exactly_the_arenas_it_gave() {
    const THREADS: usize = 4;
    const PER_ROUND: usize = 20_000;
    let pool = Arc::new(PoolAllocator::with_parts(&ARENAS, System));
    let phases = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, phases) = (pool.clone(), phases.clone());
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for round in 0..3 {
                    for i in 0..PER_ROUND {
                        let size = 16 + (i * 7 + t * 13 + round * 31) % 497;
                        mine.push(Block(pool.malloc(size).unwrap().as_ptr()));
                    }
                    // The main thread swaps the provider between rounds.
                    phases.wait();
                    phases.wait();
                }
                mine
            })
        })
        .collect();
    for next in [&B, &C] {
        phases.wait();
        ARENAS.set(next).unwrap();
        phases.wait();
    }
    phases.wait();
    phases.wait();
    let mut blocks: Vec<Vec<Block>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(A.made.load(Ordering::Relaxed) > 0);
    assert!(
        B.made.load(Ordering::Relaxed) > 0,
        "arenas made after the first swap"
    );
    assert!(
        C.made.load(Ordering::Relaxed) > 0,
        "arenas made after the second swap"
    );
    // Everything freed from other threads than the makers', then the pool dropped.
    let frees: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = pool.clone();
            let theirs = std::mem::take(&mut blocks[(t + 1) % THREADS]);
            std::thread::spawn(move || {
                for b in theirs {
                    // SAFETY: each block is live and freed once.
                    unsafe { pool.free(b.0) };
                }
            })
        })
        .collect();
    for f in frees {
        f.join().unwrap();
    }
    drop(Arc::try_unwrap(pool).ok().expect("the only reference"));
    for (name, p) in [("A", &A), ("B", &B), ("C", &C)] {
        assert!(
            !p.foreign.load(Ordering::Relaxed),
            "{name} was given an arena it did not make"
        );
        assert_eq!(
            p.made.load(Ordering::Relaxed),
            p.returned.load(Ordering::Relaxed),
            "{name}: every arena it made came back"
        );
        assert!(p.live.lock().is_empty(), "{name} still has arenas out");
    }
    assert!(std::ptr::addr_eq(
        ARENAS.get(),
        &C as &(dyn ArenaProvider + Sync)
    ));
}

#[test]
fn installing_too_many_providers_is_a_typed_error() {
    static LOCAL: SwappableArenas = SwappableArenas::new(&OsArenas::new());
    static PROVIDERS: [OsArenas; MAX_PROVIDERS] = [const { OsArenas::new() }; MAX_PROVIDERS];
    let providers: Vec<&'static OsArenas> = PROVIDERS.iter().collect();
    for p in &providers[..MAX_PROVIDERS - 1] {
        LOCAL.set(*p).unwrap();
    }
    // Reinstalling a known provider reuses its slot.
    LOCAL.set(providers[0]).unwrap();
    let e = LOCAL.set(providers[MAX_PROVIDERS - 1]).unwrap_err();
    assert_eq!(e, SwapError::TooManyProviders { max: MAX_PROVIDERS });
    assert!(e.to_string().contains("at most 16"));
}
