//! Thread churn: 10,000 threads come and go, each leaving blocks alive that the main thread frees
//! later. Heaps are adopted instead of multiplied, and once everything is freed the arenas are
//! back with the OS and the RSS is back near where it started. Its own test binary, so that no
//! other test's memory moves the RSS.

use std::sync::Arc;

use alloc_arena::PoolAllocator;
use alloc_core::testkit::Rng;

#[path = "support/patterned.rs"]
mod patterned;
use patterned::{Block, check_and_free, make};

/// Threads come and go, each leaving blocks alive for the main thread to free later: heaps are
/// adopted rather than multiplied, and once everything is freed the arenas go back.
#[test]
fn ten_thousand_threads_leave_blocks_that_others_free() {
    const THREADS: usize = 10_000;
    const AT_ONCE: usize = 8;
    let pool = Arc::new(PoolAllocator::new());
    let mut leftovers: Vec<Block> = Vec::with_capacity(4096);
    let mut arenas_highest = 0;
    let rss_before = rss_bytes();
    for round in 0..THREADS / AT_ONCE {
        let handles: Vec<_> = (0..AT_ONCE)
            .map(|t| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    let mut rng = Rng::new((round * AT_ONCE + t) as u64);
                    let mut mine: Vec<Block> =
                        (0..40).map(|_| make(&pool, 1 + rng.below(512))).collect();
                    // Half freed here, half left to outlive the thread.
                    let keep = mine.split_off(20);
                    for b in mine {
                        check_and_free(&pool, b);
                    }
                    keep
                })
            })
            .collect();
        for h in handles {
            leftovers.extend(h.join().unwrap());
        }
        // The main thread frees the blocks of earlier rounds: frees into abandoned heaps.
        if leftovers.len() > 2000 {
            for b in leftovers.drain(..1000) {
                check_and_free(&pool, b);
            }
        }
        arenas_highest = arenas_highest.max(pool.stats().arenas);
    }
    for b in leftovers.drain(..) {
        check_and_free(&pool, b);
    }
    let heaps = pool.heaps();
    eprintln!("{THREADS} threads: {heaps} heaps, at most {arenas_highest} arenas");
    assert!(
        heaps <= 2 * AT_ONCE + 1,
        "{heaps} heaps for {AT_ONCE} threads at a time: abandoned heaps are not adopted"
    );
    pool.trim();
    let s = pool.stats();
    assert_eq!(s.blocks_in_use(), 0, "{s}");
    assert_eq!(s.arenas, 0, "{s}");
    assert!(
        arenas_highest <= 2 * heaps,
        "arenas grew to {arenas_highest}"
    );
    // AddressSanitizer and valgrind keep freed thread stacks and malloc memory in quarantine:
    // the RSS says nothing about the pool there (`cargo xtask valgrind` says when it runs us).
    let sanitized = std::env::var_os("ASAN_OPTIONS").is_some()
        || std::env::var_os("DOMALLOC_UNDER_VALGRIND").is_some();
    if let (Some(before), Some(after), false) = (rss_before, rss_bytes(), sanitized) {
        eprintln!("RSS before {} KiB, after {} KiB", before >> 10, after >> 10);
        assert!(
            after <= before + (8 << 20),
            "RSS grew from {} KiB to {} KiB over the thread churn",
            before >> 10,
            after >> 10
        );
    }
}

/// The resident set of this process (linux), for the churn test.
fn rss_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
