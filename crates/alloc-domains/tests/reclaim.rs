//! Records taken out of the table are freed after a grace period: hooking and unhooking a domain
//! many times, while other threads free through it, leaves the table's records where they were,
//! and no thread reads a freed record (test builds check every record read for the poison mark
//! written when one is reclaimed). One test in this binary: `table_records` is process-wide.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use alloc_arena::PoolAllocator;
use alloc_core::DomainAllocator;
use alloc_debug::FaultInjecting;
use alloc_domains::{
    Domain, DynAllocator, add_domain, get, hook_forwarding, remove_domain, set, table_records,
};

static POOL: PoolAllocator = PoolAllocator::new();

#[test]
fn hook_cycles_free_their_records_while_other_threads_free_through_them() {
    // Under valgrind (`cargo xtask valgrind`), which runs one thread at a time, so that every hook
    // change waits out whole time slices of the spinning workers: fewer cycles and short-lived
    // threads (the same paths, a few hundred times).
    let valgrind = std::env::var_os("DOMALLOC_UNDER_VALGRIND").is_some();
    let (cycles, short_lives) = if valgrind { (200, 20) } else { (20_000, 300) };
    let id = add_domain("reclaim-cycles", &POOL).unwrap();
    let d = Domain::new(id).unwrap();
    // The domain has allocated, and keeps a live block made before every hook.
    let early = d.malloc(100).unwrap();
    let before = table_records();

    let stop = Arc::new(AtomicBool::new(false));
    let pairs = Arc::new(AtomicUsize::new(0));
    // More threads than cores, and some that end and start again (their slots are given back).
    let workers: Vec<_> = (0..6)
        .map(|t| {
            let (stop, pairs) = (stop.clone(), pairs.clone());
            std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let size = if (i + t).is_multiple_of(7) {
                        100_000
                    } else {
                        8 + i % 500
                    };
                    let p = d.malloc(size).unwrap();
                    // SAFETY: a live block of the domain, written within its size.
                    unsafe { p.as_ptr().write(1) };
                    // SAFETY: a live block of the domain, freed once.
                    unsafe { d.free(p.as_ptr()) };
                    pairs.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    let short_lived = std::thread::spawn(move || {
        for _ in 0..short_lives {
            std::thread::spawn(move || {
                let p = d.malloc(24).unwrap();
                // SAFETY: a live block of the domain, freed once.
                unsafe { d.free(p.as_ptr()) };
            })
            .join()
            .unwrap();
        }
    });

    let mut injectors = Vec::new();
    for _ in 0..cycles {
        let old = get(id).unwrap();
        hook_forwarding(id, |prev| {
            let f: &'static FaultInjecting<&'static DynAllocator> =
                Box::leak(Box::new(FaultInjecting::new(prev)));
            // Enabled with no rule: it counts the requests it sees, and fails none.
            f.enable();
            injectors.push(f);
            f
        })
        .unwrap();
        assert!(
            table_records() <= before + 2,
            "records are freed as they go"
        );
        set(id, old).unwrap();
    }
    short_lived.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(pairs.load(Ordering::Relaxed) > 0);
    assert_eq!(table_records(), before);
    // A hook taken out is reached no more (its record is gone, and so is the route through it).
    let last = injectors.last().unwrap();
    let seen = last.requests();
    let p = d.malloc(64).unwrap();
    // SAFETY: a live block of the domain, freed once.
    unsafe { d.free(p.as_ptr()) };
    assert_eq!(last.requests(), seen);

    // SAFETY: the block made before every hook, freed once.
    unsafe { d.free(early.as_ptr()) };
    remove_domain(id).unwrap();
    assert_eq!(
        table_records(),
        before - 1,
        "the removed domain's record is freed"
    );
}
