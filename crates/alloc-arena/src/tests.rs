//! White-box tests of the pool core: carving, pool reuse, arena ordering and release.

use std::vec::Vec;

use alloc_core::{DomainAllocator, Ownership, System};

use crate::{Heap, OsArenas, PoolAllocator, PoolConfig, PoolStats};

alloc_core::conformance_tests!(pool_allocator_conforms, PoolAllocator::new());
alloc_core::conformance_tests!(heap_conforms, Heap::new());
alloc_core::conformance_tests!(
    pool_with_other_parameters_conforms,
    PoolAllocator::with_config(
        PoolConfig {
            spacing: 32,
            threshold: 1024,
            pool_size: 64 << 10,
            arena_size: 4 << 20,
            keep_empty_arenas: 0,
            keep_empty_pools: 0,
            purge_delay_ms: 0,
            retain_bytes: 0,
            learn_bytes: 0,
            secure: false,
        },
        OsArenas::new(),
        System
    )
    .unwrap()
);
alloc_core::global_alloc_conformance_tests!(
    pool_as_global_alloc,
    alloc_core::AsGlobalAlloc::new(PoolAllocator::new())
);
alloc_core::allocator_conformance_tests!(
    pool_as_allocator,
    alloc_core::AsAllocator::new(PoolAllocator::new())
);

#[test]
fn blocks_of_a_fresh_pool_are_carved_in_address_order() {
    let heap = Heap::new();
    let blocks: Vec<_> = (0..10).map(|_| heap.malloc(32).unwrap()).collect();
    for w in blocks.windows(2) {
        assert_eq!(w[1].as_ptr() as usize - w[0].as_ptr() as usize, 32);
    }
    let s = heap.stats();
    assert_eq!(s.classes()[1].pools, 1);
    assert_eq!(s.classes()[1].blocks_in_use, 10);
    assert_eq!(s.classes()[1].blocks_free, 16384 / 32 - 10);
    for b in blocks {
        // SAFETY: live, freed once.
        unsafe { heap.free(b.as_ptr()) };
    }
    heap.check_invariants();
}

/// The slow path of a `PoolAllocator` allocation takes blocks from the head pool's free list
/// by its quick pop (`PoolCore::pop_pool_list`) while the list holds two or more, and by the
/// pools' whole path for the last one: through several pools' worth of such blocks, each is
/// handed out once, and the pools count every one of them as in use (the quick pop keeps each
/// pool's `used`), then none once all are freed again.
#[test]
fn blocks_from_a_pools_free_list_are_handed_out_once_and_counted() {
    let pool = PoolAllocator::new();
    let (size, class) = (64, 3);
    let n = 3 * 256 + 5;
    let fill = |round: u8| -> Vec<(usize, u8)> {
        (0..n)
            .map(|i| {
                let p = pool.malloc(size).unwrap();
                let tag = (i as u8) ^ round;
                // SAFETY: a fresh block of `size` bytes.
                unsafe { p.as_ptr().write_bytes(tag, size) };
                (p.as_ptr() as usize, tag)
            })
            .collect()
    };
    let check_and_free = |blocks: &[(usize, u8)]| {
        for &(p, tag) in blocks {
            // SAFETY: a live block of `size` bytes, written when it was handed out.
            let bytes = unsafe { core::slice::from_raw_parts(p as *const u8, size) };
            assert!(
                bytes.iter().all(|&b| b == tag),
                "a block was handed out twice"
            );
        }
        // In the order they were made: the bin overflows and its older blocks go to their
        // pools' free lists, where the next round finds them.
        for &(p, _) in blocks {
            // SAFETY: live, freed once.
            unsafe { pool.free(p as *mut u8) };
        }
    };
    let first = fill(0);
    check_and_free(&first);
    let second = fill(1);
    let mut addresses: Vec<usize> = second.iter().map(|&(p, _)| p).collect();
    addresses.sort_unstable();
    addresses.dedup();
    assert_eq!(addresses.len(), n, "a block was handed out twice");
    assert_eq!(pool.stats().classes()[class].blocks_in_use, n);
    check_and_free(&second);
    assert_eq!(pool.stats().classes()[class].blocks_in_use, 0);
    pool.check_invariants();
}

#[test]
fn an_empty_bin_is_refilled_in_one_batch_in_address_order() {
    let heap = Heap::new();
    let class = 1; // 32-byte blocks
    let first = heap.malloc(32).unwrap();
    let (held, limit) = heap.bin_fill(class);
    assert_eq!(
        held,
        limit / 4,
        "the first allocation fills a quarter of the bin"
    );
    // The batch, then the next: one run of consecutive blocks, the pool's path taken once more.
    let mut blocks = std::vec![first];
    blocks.extend((0..held + 1).map(|_| heap.malloc(32).unwrap()));
    for w in blocks.windows(2) {
        assert_eq!(w[1].as_ptr() as usize - w[0].as_ptr() as usize, 32);
    }
    assert_eq!(heap.bin_fill(class).0, limit / 4);
    // The pool counts the bin's blocks as taken, the statistics as free.
    let s = heap.stats();
    assert_eq!(s.classes()[class].blocks_in_use, blocks.len());
    heap.check_invariants();
    for b in blocks {
        // SAFETY: live, freed once.
        unsafe { heap.free(b.as_ptr()) };
    }
    heap.check_invariants();
    assert_eq!(heap.stats().classes()[class].blocks_in_use, 0);
}

#[test]
fn a_threads_bins_are_armed_by_the_first_use_of_their_class() {
    // A heap made for a thread leaves its bins unarmed (limit 0: their pages untouched) until a
    // slow path of their class arms them; blocks then come and go through the bin as ever.
    let pool = PoolAllocator::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(pool.my_bin_fill(1), (0, 0), "a fresh heap's bin is unarmed");
            let p = pool.malloc(32).unwrap();
            let (held, limit) = pool.my_bin_fill(1);
            assert!(
                limit > 0 && held == limit / 4,
                "armed and refilled: {held} of {limit}"
            );
            assert_eq!(
                pool.my_bin_fill(10),
                (0, 0),
                "a class never used stays unarmed"
            );
            // SAFETY: live, freed once; the same block comes back from the bin.
            unsafe { pool.free(p.as_ptr()) };
            assert_eq!(pool.malloc(32), Some(p));
            // SAFETY: live, freed once.
            unsafe { pool.free(p.as_ptr()) };
            // Another class: armed by its first allocation, then used as the first one.
            let q = pool.malloc(200).unwrap();
            let class = (200 - 1) >> 4;
            assert!(pool.my_bin_fill(class).1 > 0);
            // SAFETY: live, freed once.
            unsafe { pool.free(q.as_ptr()) };
            assert_eq!(pool.malloc(200), Some(q));
            // SAFETY: live, freed once.
            unsafe { pool.free(q.as_ptr()) };
        });
    });
    pool.check_invariants();
}

#[test]
fn a_block_another_thread_frees_is_reused_by_that_thread_and_goes_home_later() {
    // A free puts the block in the freeing thread's bin, whichever heap it comes from: that
    // thread's next allocation of the class takes it (still in its cache). A flush of the bin
    // (here the thread's trim) sends it home, where the owner's trim takes it back.
    let pool = PoolAllocator::new();
    let p = pool.malloc(48).unwrap().as_ptr() as usize;
    std::thread::scope(|s| {
        s.spawn(|| {
            let q = pool.malloc(48).unwrap();
            // SAFETY: `p` is live (made by the main thread), freed once here.
            unsafe { pool.free(p as *mut u8) };
            assert_eq!(pool.malloc(48).unwrap().as_ptr() as usize, p);
            // SAFETY: both live, each freed once.
            unsafe {
                pool.free(p as *mut u8);
                pool.free(q.as_ptr());
            }
            // This thread's trim flushes its bins: `p` goes home to the main thread's heap.
            pool.trim();
        });
    });
    pool.trim();
    let s = pool.stats();
    assert_eq!(s.blocks_in_use(), 0, "{s}");
    pool.check_invariants();
}

#[test]
fn a_thread_that_only_frees_takes_a_heap_once_it_frees_many() {
    // A consumer: the main thread makes blocks, a thread that never allocates frees them. Its
    // first frees go straight home (no heap for a thread that frees a few); from the 64th on,
    // it has a heap of its own, whose bins take its frees, and whose flushes send them home.
    let pool = PoolAllocator::new();
    let blocks: Vec<usize> = (0..1000)
        .map(|_| pool.malloc(32).unwrap().as_ptr() as usize)
        .collect();
    assert_eq!(pool.heaps(), 1);
    std::thread::scope(|s| {
        s.spawn(|| {
            for &b in &blocks[..63] {
                // SAFETY: live blocks of the main thread's heap, each freed once.
                unsafe { pool.free(b as *mut u8) };
            }
            assert_eq!(pool.heaps(), 1, "63 frees take no heap");
            assert_eq!(pool.my_bin_fill(1).0, 0);
            for &b in &blocks[63..100] {
                // SAFETY: as above.
                unsafe { pool.free(b as *mut u8) };
            }
            assert_eq!(pool.heaps(), 2, "the 64th free took a heap");
            assert_eq!(
                pool.my_bin_fill(1).0,
                37,
                "the frees from the 64th on wait in the thread's bin"
            );
            for &b in &blocks[100..] {
                // SAFETY: as above.
                unsafe { pool.free(b as *mut u8) };
            }
            // This thread's trim flushes its bins: the blocks go home.
            pool.trim();
        });
    });
    pool.trim();
    let s = pool.stats();
    assert_eq!(s.blocks_in_use(), 0, "{s}");
    pool.check_invariants();
}

#[test]
fn blocks_sent_home_to_an_ended_threads_heap_are_collected_at_once() {
    // A thread makes blocks and ends (its heap abandoned); this thread, whose heap was made
    // first (so it does not adopt that one), frees them all. They fill its bin, whose flushes
    // send them home to a heap nobody owns: the flushing thread collects that heap at once, as
    // it would a free straight into it.
    let pool = PoolAllocator::new();
    let mine = pool.malloc(32).unwrap();
    let blocks: Vec<usize> = std::thread::scope(|s| {
        s.spawn(|| {
            (0..2000)
                .map(|_| pool.malloc(32).unwrap().as_ptr() as usize)
                .collect()
        })
        .join()
        .unwrap()
    });
    assert_eq!(pool.heaps(), 2);
    // The thread's heap is abandoned by its exit key's destructor, which has run when `join`
    // returns (`pthread_join` waits for it); the wait below only guards against a platform where
    // it would not.
    let start = std::time::Instant::now();
    while pool.unowned_heaps(false) == 0 {
        assert!(
            start.elapsed().as_secs() < 10,
            "the ended thread's heap is still owned"
        );
        std::thread::yield_now();
    }
    for &b in &blocks {
        // SAFETY: live blocks of the ended thread's heap, each freed once.
        unsafe { pool.free(b as *mut u8) };
    }
    assert_eq!(pool.unowned_heaps(true), 0, "a notification stranded");
    let (held, limit) = pool.my_bin_fill(1);
    assert!(
        held > 0 && held <= limit,
        "the last blocks wait in this bin: {held} of {limit}"
    );
    // Statistics send them home first: in use is this thread's block alone.
    let s = pool.stats();
    assert_eq!(s.blocks_in_use(), 1, "{s}");
    assert_eq!(
        pool.my_bin_fill(1).0,
        0,
        "the bin held none of this heap's blocks"
    );
    assert_eq!(pool.unowned_heaps(true), 0, "a notification stranded");
    // SAFETY: live, freed once.
    unsafe { pool.free(mine.as_ptr()) };
    pool.trim();
    let s = pool.stats();
    assert_eq!((s.blocks_in_use(), s.arenas), (0, 0), "{s}");
    pool.check_invariants();
}

#[test]
fn a_freed_block_is_the_next_one_allocated_in_its_class() {
    let heap = Heap::new();
    let a = heap.malloc(100).unwrap();
    let b = heap.malloc(100).unwrap();
    // SAFETY: `a` is live, freed once.
    unsafe { heap.free(a.as_ptr()) };
    let c = heap.malloc(97).unwrap(); // same class (97..=112)
    assert_eq!(c, a);
    // SAFETY: live, freed once.
    unsafe {
        heap.free(b.as_ptr());
        heap.free(c.as_ptr());
    }
}

#[test]
fn an_emptied_pool_is_reused_by_another_class() {
    let heap = Heap::new();
    let anchor = heap.malloc(48).unwrap(); // keeps the arena from being returned by `trim`
    let n = 16384 / 16;
    let blocks: Vec<_> = (0..n).map(|_| heap.malloc(16).unwrap()).collect();
    let pool_base = blocks[0].as_ptr() as usize & !(16384 - 1);
    assert!(
        blocks
            .iter()
            .all(|b| b.as_ptr() as usize & !(16384 - 1) == pool_base)
    );
    for b in blocks {
        // SAFETY: live, freed once.
        unsafe { heap.free(b.as_ptr()) };
    }
    assert_eq!(
        heap.stats().classes()[0].pools,
        1,
        "the class keeps its only pool"
    );
    heap.trim();
    assert_eq!(heap.stats().pools_empty, 1);
    let big = heap.malloc(512).unwrap();
    assert_eq!(
        big.as_ptr() as usize,
        pool_base,
        "the empty pool is taken first"
    );
    // SAFETY: live, freed once.
    unsafe {
        heap.free(big.as_ptr());
        heap.free(anchor.as_ptr());
    }
    heap.check_invariants();
}

#[test]
fn a_full_pool_returns_to_the_front_of_its_class_when_a_block_is_freed() {
    let heap = Heap::new();
    let per_pool = 16384 / 256;
    let first: Vec<_> = (0..per_pool).map(|_| heap.malloc(256).unwrap()).collect();
    let second = heap.malloc(256).unwrap(); // the first pool is full: a second pool
    assert_ne!(
        second.as_ptr() as usize & !(16384 - 1),
        first[0].as_ptr() as usize & !(16384 - 1)
    );
    // SAFETY: live, freed once.
    unsafe { heap.free(first[5].as_ptr()) };
    let again = heap.malloc(256).unwrap();
    assert_eq!(again, first[5], "the pool with a free block is used next");
    heap.check_invariants();
    for b in first.into_iter().chain([second]) {
        // SAFETY: each block is live and freed once (`first[5]` was reallocated as `again`).
        unsafe { heap.free(b.as_ptr()) };
    }
}

#[test]
fn pools_are_taken_from_the_fullest_arena() {
    let heap = Heap::new();
    // Fill three arenas with 512-byte blocks (32 per pool, 63 pools per arena).
    let per_arena = 63 * 32;
    let mut blocks: Vec<_> = (0..3 * per_arena)
        .map(|_| heap.malloc(512).unwrap())
        .collect();
    let arena_of = |p: *mut u8| p as usize & !((1 << 20) - 1);
    let arenas: Vec<usize> = {
        let mut v: Vec<usize> = blocks.iter().map(|b| arena_of(b.as_ptr())).collect();
        v.dedup();
        v
    };
    assert_eq!(arenas.len(), 3);
    // Empty 10 pools of arena 0 and 3 pools of arena 1.
    let mut freed = Vec::new();
    blocks.retain(|b| {
        let a = arena_of(b.as_ptr());
        let pool = (b.as_ptr() as usize >> 14) & 63;
        let free = (a == arenas[0] && pool <= 10) || (a == arenas[1] && pool <= 3);
        if free {
            freed.push(*b);
        }
        !free
    });
    for b in freed {
        // SAFETY: live, freed once.
        unsafe { heap.free(b.as_ptr()) };
    }
    heap.trim(); // the bins give their blocks back, so the pools are really empty
    heap.check_invariants();
    // A new class needs a pool: it must come from arena 1 (fewest free pools).
    let p = heap.malloc(16).unwrap();
    assert_eq!(arena_of(p.as_ptr()), arenas[1]);
    heap.check_invariants();
    blocks.push(p);
    for b in blocks {
        // SAFETY: live, freed once.
        unsafe { heap.free(b.as_ptr()) };
    }
    heap.check_invariants();
}

/// A heap that retains nothing past `keep_empty_arenas` (see `retain_bytes`).
fn heap_retaining_nothing() -> Heap {
    let config = PoolConfig {
        retain_bytes: 0,
        ..PoolConfig::DEFAULT
    };
    Heap::with_config(config, OsArenas::new(), System).unwrap()
}

#[test]
fn a_freed_structure_within_the_retained_bytes_is_rebuilt_without_new_arenas() {
    let heap = Heap::new();
    let build = || -> Vec<_> { (0..100_000).map(|_| heap.malloc(64).unwrap()).collect() };
    let blocks = build();
    let mapped = heap.stats().arenas_allocated;
    for b in blocks {
        // SAFETY: live, freed once.
        unsafe { heap.free(b.as_ptr()) };
    }
    let s = heap.stats();
    assert_eq!(s.arenas_released, 0, "6.4 MB is within the 12 MiB retained");
    assert_eq!(s.pools_decommitted, 0);
    let again = build();
    assert_eq!(heap.stats().arenas_allocated, mapped, "no new mapping");
    for b in again {
        // SAFETY: live, freed once.
        unsafe { heap.free(b.as_ptr()) };
    }
    heap.check_invariants();
}

#[test]
fn past_the_retained_bytes_a_large_free_goes_back_at_once() {
    let heap = Heap::new();
    let blocks: Vec<_> = (0..1_000_000).map(|_| heap.malloc(64).unwrap()).collect();
    assert!(heap.stats().arenas >= 60);
    for b in blocks {
        // SAFETY: live, freed once.
        unsafe { heap.free(b.as_ptr()) };
    }
    let s = heap.stats();
    let committed_empty = (s.arenas * 63).saturating_sub(s.pools_decommitted) << 14;
    assert!(
        committed_empty <= PoolConfig::DEFAULT.retain_bytes + (1 << 20),
        "{} MiB of empty pools still committed in {} arenas",
        committed_empty >> 20,
        s.arenas
    );
    heap.check_invariants();
}

/// Builds `n` blocks of 64 bytes on `a` and frees them all.
fn build_and_free(a: &impl DomainAllocator, n: usize) {
    let blocks: Vec<_> = (0..n).map(|_| a.malloc(64).unwrap()).collect();
    for b in blocks {
        // SAFETY: live, freed once.
        unsafe { a.free(b.as_ptr()) };
    }
}

/// Committed empty pools (resident memory the heap holds with no block in it).
fn committed_empty(s: &PoolStats) -> usize {
    s.pools_empty - s.pools_decommitted
}

/// Blocks of 64 bytes in a round of the learning tests: 25.6 MB, twice what a heap retains.
const ROUND: usize = 400_000;

#[test]
fn a_structure_rebuilt_soon_after_a_large_free_keeps_its_memory_from_then_on() {
    // A delay no loaded machine crosses between two rounds.
    let config = PoolConfig {
        purge_delay_ms: 10_000,
        ..PoolConfig::DEFAULT
    };
    let heap = Heap::with_config(config, OsArenas::new(), System).unwrap();
    let pin = heap.malloc(64).unwrap();
    build_and_free(&heap, ROUND);
    let first = heap.stats();
    let retained = PoolConfig::DEFAULT.retain_bytes / first.pool_size;
    // The first large free gives back at once what is past the retained bytes (here by
    // decommitting pools; arenas stay mapped).
    assert!(
        first.pools_decommitted_total > 600,
        "{} pools decommitted",
        first.pools_decommitted_total
    );
    assert!(committed_empty(&first) <= retained);
    assert_eq!(first.pools_learned, 0);
    // The next round commits again what was just given back: the heap learns it ...
    build_and_free(&heap, ROUND);
    let second = heap.stats();
    assert!(
        second.pools_learned > 600,
        "{} pools learned",
        second.pools_learned
    );
    // ... and keeps it: this free gave nothing back, and the next rounds map nothing and
    // decommit nothing.
    assert_eq!(
        second.pools_decommitted_total,
        first.pools_decommitted_total
    );
    assert_eq!(second.arenas_released, 0);
    assert!(committed_empty(&second) > retained + 600);
    for _ in 0..3 {
        build_and_free(&heap, ROUND);
    }
    let later = heap.stats();
    assert_eq!(
        later.arenas_allocated, second.arenas_allocated,
        "no new mapping"
    );
    assert_eq!(later.arenas_released, 0);
    assert_eq!(
        later.pools_decommitted_total,
        second.pools_decommitted_total
    );
    // `trim` gives it all back and forgets it, for good: what it gave back is nothing to learn
    // from when the heap grows again.
    heap.trim();
    let trimmed = heap.stats();
    assert_eq!(trimmed.pools_learned, 0);
    assert_eq!(committed_empty(&trimmed), 0);
    let blocks: Vec<_> = (0..10_000).map(|_| heap.malloc(64).unwrap()).collect();
    assert_eq!(heap.stats().pools_learned, 0);
    for b in blocks {
        // SAFETY: live, freed once.
        unsafe { heap.free(b.as_ptr()) };
    }
    // SAFETY: live, freed once.
    unsafe { heap.free(pin.as_ptr()) };
    heap.check_invariants();
}

#[test]
fn learned_memory_goes_back_once_it_stays_empty_for_the_purge_delay() {
    // Long enough that a loaded machine learns between two rounds (about 50 ms each unloaded, in
    // a debug build).
    const DELAY: u64 = 1000;
    let config = PoolConfig {
        purge_delay_ms: DELAY,
        ..PoolConfig::DEFAULT
    };
    let heap = Heap::with_config(config, OsArenas::new(), System).unwrap();
    let pin = heap.malloc(64).unwrap();
    build_and_free(&heap, ROUND);
    build_and_free(&heap, ROUND);
    let learned = heap.stats();
    assert!(learned.pools_learned > 600);
    assert!(committed_empty(&learned) > learned.pools_learned);
    // The delay passes with the heap idle.
    std::thread::sleep(std::time::Duration::from_millis(DELAY + 100));
    // Its next pool return purges what stayed empty, learned or not.
    build_and_free(&heap, 10_000);
    let after = heap.stats();
    assert!(
        committed_empty(&after) <= 64 + 2,
        "{} empty pools still committed",
        committed_empty(&after)
    );
    assert!(
        after.pools_learned < learned.pools_learned / 2,
        "unlearned as it is purged: {} of {}",
        after.pools_learned,
        learned.pools_learned
    );
    // SAFETY: live, freed once.
    unsafe { heap.free(pin.as_ptr()) };
    heap.check_invariants();
}

#[test]
fn a_heap_adopted_by_another_thread_forgets_what_its_owner_learned() {
    let config = PoolConfig {
        purge_delay_ms: 10_000,
        ..PoolConfig::DEFAULT
    };
    let pool = PoolAllocator::with_config(config, OsArenas::new(), System).unwrap();
    let learned = std::thread::scope(|s| {
        s.spawn(|| {
            build_and_free(&pool, ROUND);
            build_and_free(&pool, ROUND);
            pool.stats()
        })
        .join()
        .unwrap()
    });
    assert!(
        learned.pools_learned > 600,
        "{} learned",
        learned.pools_learned
    );
    let retained = PoolConfig::DEFAULT.retain_bytes / learned.pool_size;
    assert!(committed_empty(&learned) > retained + 600);
    // The next thread takes over the abandoned heap (the only one), or collects it on its way
    // (a heap nobody owns is collected when frees reach it): either way the heap keeps what any
    // heap keeps, and what was kept for the old owner past that goes back.
    std::thread::scope(|s| {
        s.spawn(|| {
            let p = pool.malloc(64).unwrap();
            // SAFETY: live, freed once.
            unsafe { pool.free(p.as_ptr()) };
        });
    });
    let adopted = pool.stats();
    assert_eq!(adopted.pools_learned, 0);
    assert!(
        committed_empty(&adopted) <= retained,
        "{} empty pools committed",
        committed_empty(&adopted)
    );
}

#[test]
fn a_few_allocations_during_a_large_free_learn_nothing() {
    let config = PoolConfig {
        purge_delay_ms: 10_000,
        ..PoolConfig::DEFAULT
    };
    let heap = Heap::with_config(config, OsArenas::new(), System).unwrap();
    let blocks: Vec<_> = (0..4 * ROUND).map(|_| heap.malloc(64).unwrap()).collect();
    // The program allocates now and then while it frees 100 MB: each of those may commit a pool
    // the free gave back a moment ago, which is no rebuild.
    let mut kept = Vec::new();
    for (i, b) in blocks.into_iter().enumerate() {
        if i % 2000 == 0 {
            kept.push(heap.malloc(256).unwrap());
        }
        // SAFETY: live, freed once.
        unsafe { heap.free(b.as_ptr()) };
    }
    let s = heap.stats();
    assert_eq!(s.pools_learned, 0);
    // What any heap keeps after a large free: about `retain_bytes` (here 859 pools, 13 MiB; a
    // heap that learned from those allocations kept 6,000, 94 MiB).
    let retained = PoolConfig::DEFAULT.retain_bytes / s.pool_size;
    assert!(
        committed_empty(&s) <= 2 * retained,
        "{} empty pools committed",
        committed_empty(&s)
    );
    for p in kept {
        // SAFETY: live, freed once.
        unsafe { heap.free(p.as_ptr()) };
    }
    heap.check_invariants();
}

#[test]
fn a_running_thread_takes_back_what_an_ended_thread_learned_to_keep() {
    let config = PoolConfig {
        purge_delay_ms: 10_000,
        ..PoolConfig::DEFAULT
    };
    let pool = PoolAllocator::with_config(config, OsArenas::new(), System).unwrap();
    // This thread has a heap of its own, so that it adopts none later.
    let pin = pool.malloc(64).unwrap();
    let learned = std::thread::scope(|s| {
        s.spawn(|| {
            build_and_free(&pool, ROUND);
            build_and_free(&pool, ROUND);
            pool.stats().pools_learned
        })
        .join()
        .unwrap()
    });
    assert!(learned > 600, "{learned} learned");
    // The ended thread's heap keeps its working set until someone takes it: this thread does
    // when its own heap next maps an arena (here, for 2 MB of blocks).
    assert_eq!(pool.stats().pools_learned, learned);
    let blocks: Vec<_> = (0..32_000).map(|_| pool.malloc(64).unwrap()).collect();
    let s = pool.stats();
    assert_eq!(s.pools_learned, 0);
    let retained = PoolConfig::DEFAULT.retain_bytes / s.pool_size;
    assert!(
        committed_empty(&s) <= retained,
        "{} empty pools committed",
        committed_empty(&s)
    );
    for b in blocks {
        // SAFETY: live, freed once.
        unsafe { pool.free(b.as_ptr()) };
    }
    // SAFETY: live, freed once.
    unsafe { pool.free(pin.as_ptr()) };
}

#[test]
fn learning_stops_at_learn_bytes_and_learn_bytes_0_learns_nothing() {
    for (learn_bytes, expected) in [(1 << 20, 64), (0, 0)] {
        let config = PoolConfig {
            purge_delay_ms: 10_000,
            learn_bytes,
            ..PoolConfig::DEFAULT
        };
        let heap = Heap::with_config(config, OsArenas::new(), System).unwrap();
        build_and_free(&heap, ROUND);
        build_and_free(&heap, ROUND);
        let s = heap.stats();
        assert_eq!(s.pools_learned, expected, "learn_bytes {learn_bytes}");
        // What is past it went back at once, as without learning.
        let retained = PoolConfig::DEFAULT.retain_bytes / s.pool_size;
        assert!(committed_empty(&s) <= retained + expected + 64);
        heap.check_invariants();
    }
}

#[test]
fn a_heap_that_retains_nothing_learns_nothing() {
    let heap = heap_retaining_nothing();
    build_and_free(&heap, 200_000);
    build_and_free(&heap, 200_000);
    let s = heap.stats();
    assert_eq!(s.pools_learned, 0);
    assert!(s.arenas <= 2, "{} arenas kept", s.arenas);
}

#[test]
fn empty_arenas_are_returned_to_the_os_but_one_is_kept() {
    let heap = heap_retaining_nothing();
    let blocks: Vec<_> = (0..100_000).map(|_| heap.malloc(64).unwrap()).collect();
    let s = heap.stats();
    assert!(
        s.arenas >= 6,
        "100,000 blocks of 64 bytes need several arenas"
    );
    for b in blocks {
        // SAFETY: live, freed once.
        unsafe { heap.free(b.as_ptr()) };
    }
    let s = heap.stats();
    // One empty arena is kept mapped, and the class keeps its last (empty) pool, which may hold a
    // second arena.
    assert!(
        s.arenas <= 2,
        "all but the kept arenas are returned: {} left",
        s.arenas
    );
    assert_eq!(s.arenas_released, s.arenas_allocated - s.arenas);
    heap.check_invariants();
    // The kept arena is used again: no new mapping.
    let p = heap.malloc(64).unwrap();
    let q = heap.malloc(300).unwrap();
    assert_eq!(heap.stats().arenas_allocated, s.arenas_allocated);
    // SAFETY: live, freed once.
    unsafe {
        heap.free(p.as_ptr());
        heap.free(q.as_ptr());
    }
    heap.trim();
    heap.check_invariants();
    let s = heap.stats();
    assert_eq!(s.arenas, 0, "trim returns every empty arena");
    assert_eq!(s.bytes_mapped, 0);
}

#[test]
fn the_last_pool_of_a_class_is_kept_when_it_empties() {
    let heap = Heap::new();
    let p = heap.malloc(64).unwrap();
    let pool = p.as_ptr() as usize & !(16384 - 1);
    // SAFETY: live, freed once.
    unsafe { heap.free(p.as_ptr()) };
    assert_eq!(heap.stats().classes()[3].pools, 1, "kept by its class");
    let q = heap.malloc(64).unwrap();
    assert_eq!(q.as_ptr() as usize & !(16384 - 1), pool);
    // SAFETY: live, freed once.
    unsafe { heap.free(q.as_ptr()) };
    heap.trim();
    assert_eq!(heap.stats().classes()[3].pools, 0, "trim gives it back");
}

/// The configuration of a pool of blocks of 128 bytes to 8 KiB in 64 KiB pools (as the mem
/// domain's medium pool).
pub(crate) fn medium_blocks_config() -> PoolConfig {
    PoolConfig {
        spacing: 128,
        threshold: 8 << 10,
        pool_size: 64 << 10,
        arena_size: 4 << 20,
        ..PoolConfig::DEFAULT
    }
}

/// The configuration of a pool of blocks of 1-64 KiB in 256 KiB pools (as the mem domain's
/// large pool).
pub(crate) fn large_blocks_config() -> PoolConfig {
    PoolConfig {
        spacing: 1 << 10,
        threshold: 64 << 10,
        pool_size: 256 << 10,
        arena_size: 16 << 20,
        ..PoolConfig::DEFAULT
    }
}

#[test]
fn blocks_freed_in_many_classes_do_not_make_the_heap_grow() {
    // One block in each of 40 classes, written and freed (CPython's start-up does this with its
    // buffers): each waits in its class's bin, and each class's pool stays with it. Without
    // taking those back before growing, the heap would touch a pool per class.
    let pool = PoolAllocator::with_config(large_blocks_config(), OsArenas::new(), System).unwrap();
    for k in 0..40 {
        let size = (9 + k) << 10;
        let p = pool.malloc(size).unwrap();
        // SAFETY: a live block of `size` bytes, written, then freed once.
        unsafe {
            p.as_ptr().write_bytes(1, size);
            pool.free(p.as_ptr());
        }
    }
    let s = pool.stats();
    assert_eq!(s.arenas, 1);
    let carved = 64 - s.pools_unused;
    assert!(
        carved <= 10,
        "{carved} pools touched for 40 classes of one block each, freed"
    );
}

#[test]
fn oscillating_around_an_arena_boundary_does_not_remap() {
    let heap = Heap::new();
    let per_arena = 63 * (16384 / 256);
    let base: Vec<_> = (0..per_arena).map(|_| heap.malloc(256).unwrap()).collect();
    let before = heap.stats().arenas_allocated;
    for _ in 0..50 {
        let extra: Vec<_> = (0..10).map(|_| heap.malloc(256).unwrap()).collect();
        for b in extra {
            // SAFETY: live, freed once.
            unsafe { heap.free(b.as_ptr()) };
        }
    }
    assert_eq!(
        heap.stats().arenas_allocated,
        before + 1,
        "one extra arena, kept"
    );
    for b in base {
        // SAFETY: live, freed once.
        unsafe { heap.free(b.as_ptr()) };
    }
}

#[test]
fn realloc_stays_in_place_within_a_class_and_moves_across_the_threshold() {
    let pool = PoolAllocator::new();
    let p = pool.malloc(40).unwrap();
    // SAFETY: `p` is live; each realloc result replaces it.
    unsafe {
        p.as_ptr().write_bytes(7, 40);
        assert_eq!(
            pool.realloc(p.as_ptr(), 48),
            Some(p),
            "same class: in place"
        );
        assert_eq!(
            pool.realloc(p.as_ptr(), 33),
            Some(p),
            "same class: in place"
        );
        let q = pool.realloc(p.as_ptr(), 37).unwrap();
        assert_eq!(q, p, "still the same class");
        let big = pool.realloc(p.as_ptr(), 4000).unwrap();
        assert_eq!(
            pool.owns(big.as_ptr()),
            Ownership::Unknown,
            "moved to the C library"
        );
        assert_eq!(*big.as_ptr().add(36), 7);
        let back = pool.realloc(big.as_ptr(), 100).unwrap();
        assert_eq!(
            pool.owns(back.as_ptr()),
            Ownership::Owned,
            "moved back to the pools"
        );
        assert_eq!(*back.as_ptr().add(36), 7);
        pool.free(back.as_ptr());
    }
    pool.check_invariants();
}

#[test]
fn the_fast_realloc_check_tells_a_block_that_stays_from_one_that_moves_and_a_bad_one() {
    use crate::fast::{FastRealloc, NO_KEY};
    let pool = PoolAllocator::with_valid_config(PoolConfig::WIDE, OsArenas::new(), System);
    let key = pool.fast_key();
    assert_ne!(
        key, NO_KEY,
        "a new pool of the fast paths' geometry has a fast key"
    );
    assert_eq!(
        PoolAllocator::new().fast_key(),
        NO_KEY,
        "and one of pymalloc's (512 bytes) has none"
    );
    let p = pool.malloc(40).unwrap().as_ptr();
    // SAFETY: `p` is live until moved (its last use is the check after the move, which refuses
    // it: it is the top of its bin); `q` is live and freed once.
    unsafe {
        assert_eq!(pool.realloc_fast_check(p, 48, key), FastRealloc::Stays);
        assert_eq!(pool.realloc_fast_check(p, 33, key), FastRealloc::Stays);
        assert_eq!(
            pool.realloc_fast_check(p, 0, key),
            FastRealloc::Refused,
            "a size of 0 is C's free, for the long way"
        );
        assert_eq!(
            pool.realloc_fast_check(p.add(16), 48, key),
            FastRealloc::Refused,
            "inside a block"
        );
        assert_eq!(
            pool.realloc_fast_check(core::ptr::null_mut(), 48, key),
            FastRealloc::Refused
        );
        assert_eq!(pool.realloc_fast_check(p, 48, NO_KEY), FastRealloc::Refused);
        p.write_bytes(7, 40);
        let FastRealloc::Moves { bin, block } = pool.realloc_fast_check(p, 200, key) else {
            panic!("another class: a move")
        };
        assert_eq!(block, 48);
        let q = pool.realloc_move_fast(p, 200, key, bin, block).unwrap();
        assert_ne!(q.as_ptr(), p);
        assert_eq!(*q.as_ptr().add(39), 7, "the bytes moved");
        assert_eq!(
            pool.realloc_fast_check(p, 48, key),
            FastRealloc::Refused,
            "the old block was freed into its bin: a realloc of it now is a bad one"
        );
        pool.free(q.as_ptr());
    }
    pool.check_invariants();
}

#[test]
fn the_routed_fast_free_frees_its_own_and_names_the_owner_of_the_rest() {
    use crate::fast::{FastFree, NO_KEY};
    let small = PoolAllocator::with_valid_config(PoolConfig::WIDE, OsArenas::new(), System);
    let other = PoolAllocator::new();
    let key = small.fast_key();
    assert_ne!(key, NO_KEY);
    let p = small.malloc(64).unwrap().as_ptr();
    let q = other.malloc(64).unwrap().as_ptr();
    let r = small.malloc(64).unwrap().as_ptr();
    let mut outside = 0u64;
    // SAFETY: `p` is live and freed once (by the fast path); `q` is refused and freed by its
    // maker; `r` is live; the other pointers are refused or looked at only.
    unsafe {
        assert_eq!(
            small.free_fast_routed(q, key),
            FastFree::Owner(other.registry_id()),
            "another allocator's block: its owner, nothing done"
        );
        let local = (&raw mut outside).cast::<u8>();
        assert_eq!(
            small.free_fast_routed(local, key),
            FastFree::Owner(0),
            "no arena"
        );
        assert_eq!(
            small.free_fast_routed(r.add(16), key),
            FastFree::Refused,
            "inside a block of its own: for the checked free"
        );
        assert_eq!(small.free_fast_routed(p, key), FastFree::Done);
        assert_eq!(
            small.free_fast_routed(p, key),
            FastFree::Refused,
            "freed a moment ago (the bin's top): for the checked free, which reports it"
        );
        other.free(q);
        small.free(r);
    }
    small.check_invariants();
}

#[test]
fn the_bin_fast_allocation_takes_only_what_the_bin_holds() {
    let pool = PoolAllocator::new();
    assert_eq!(pool.malloc_bin_fast(64), None, "no heap on this thread yet");
    let p = pool.malloc(64).unwrap();
    // SAFETY: live, freed once: into the thread's bin.
    unsafe { pool.free(p.as_ptr()) };
    assert_eq!(
        pool.malloc_bin_fast(64),
        Some(p),
        "the bin's top, of its class"
    );
    assert_eq!(pool.malloc_bin_fast(0), None);
    assert_eq!(pool.malloc_bin_fast(513), None, "above the threshold");
    // SAFETY: live, freed once.
    unsafe { pool.free(p.as_ptr()) };
    pool.check_invariants();
}

#[test]
fn aligned_requests_are_served_from_pools_when_they_fit() {
    let pool = PoolAllocator::new();
    for align in [32usize, 64, 128, 256, 512] {
        let layout = core::alloc::Layout::from_size_align(align / 2 + 1, align).unwrap();
        let p = pool.malloc_aligned(layout).unwrap();
        assert_eq!(p.as_ptr() as usize % align, 0);
        assert_eq!(pool.owns(p.as_ptr()), Ownership::Owned);
        // SAFETY: live, freed once with its layout.
        unsafe { pool.free_aligned(p, layout) };
    }
}

#[test]
fn another_pool_allocator_does_not_own_my_blocks() {
    let a = PoolAllocator::new();
    let b = PoolAllocator::new();
    let pa = a.malloc(64).unwrap();
    let pb = b.malloc(64).unwrap();
    assert_eq!(a.owns(pa.as_ptr()), Ownership::Owned);
    assert_eq!(b.owns(pa.as_ptr()), Ownership::Unknown);
    assert_eq!(a.owns(pb.as_ptr()), Ownership::Unknown);
    // SAFETY: live, each freed once by its maker.
    unsafe {
        a.free(pa.as_ptr());
        b.free(pb.as_ptr());
    }
}

#[test]
fn stats_table_names_classes_and_arenas() {
    let pool = PoolAllocator::new();
    let blocks: Vec<_> = (0..100).map(|_| pool.malloc(200).unwrap()).collect();
    let table = std::format!("{}", pool.stats());
    assert!(table.contains("class   size   num pools   blocks in use  avail blocks"));
    assert!(
        table.contains("   12    208           2             100"),
        "{table}"
    );
    assert!(table.contains("# arenas allocated current"));
    for b in blocks {
        // SAFETY: live, freed once.
        unsafe { pool.free(b.as_ptr()) };
    }
}

#[test]
fn random_operations_keep_the_heap_invariants() {
    let heap = Heap::new();
    let mut rng = alloc_core::testkit::Rng::new(99);
    let mut live: Vec<core::ptr::NonNull<u8>> = Vec::new();
    for i in 0..200_000 {
        if live.is_empty() || rng.below(100) < 52 {
            live.push(heap.malloc(rng.below(513)).unwrap());
        } else {
            let b = live.swap_remove(rng.below(live.len()));
            // SAFETY: live, freed once.
            unsafe { heap.free(b.as_ptr()) };
        }
        if i % 20_000 == 0 {
            heap.check_invariants();
        }
    }
    for b in live {
        // SAFETY: live, freed once.
        unsafe { heap.free(b.as_ptr()) };
    }
    heap.check_invariants();
    assert_eq!(heap.stats().blocks_in_use(), 0);
}

#[test]
fn freed_blocks_wait_in_their_class_bin_until_it_is_full() {
    let heap = Heap::new();
    let blocks: Vec<_> = (0..200).map(|_| heap.malloc(512).unwrap()).collect();
    let pool_used = |h: &Heap| {
        let c = h.stats().classes()[31];
        c.blocks_in_use
    };
    assert_eq!(pool_used(&heap), 200);
    for b in &blocks[..64] {
        // SAFETY: live, freed once.
        unsafe { heap.free(b.as_ptr()) };
    }
    // Free to the program at once, whether in the bin or in the pool.
    assert_eq!(pool_used(&heap), 136);
    // The bin of 512-byte blocks holds 64 (32 KiB): the 65th free finds it full: its older half goes back to the pool's free list.
    // SAFETY: live, freed once.
    unsafe { heap.free(blocks[64].as_ptr()) };
    assert_eq!(pool_used(&heap), 135);
    heap.check_invariants();
    // The bin is LIFO: the last block freed is the first one reused.
    assert_eq!(heap.malloc(512).unwrap(), blocks[64]);
    for b in &blocks[65..] {
        // SAFETY: live, freed once.
        unsafe { heap.free(b.as_ptr()) };
    }
    // SAFETY: `blocks[64]` was allocated again above; freed once.
    unsafe { heap.free(blocks[64].as_ptr()) };
    assert_eq!(pool_used(&heap), 0);
    heap.trim();
    assert_eq!(heap.stats().arenas, 0);
}

#[test]
fn empty_pools_of_pinned_arenas_are_decommitted_in_runs() {
    let config = PoolConfig {
        purge_delay_ms: 0,
        ..PoolConfig::DEFAULT
    };
    let heap = Heap::with_config(config, OsArenas::new(), System).unwrap();
    let per_arena = 63 * (16384 / 64);
    let blocks: Vec<_> = (0..20 * per_arena)
        .map(|_| heap.malloc(64).unwrap())
        .collect();
    assert_eq!(heap.stats().arenas, 20);
    // Keep the first block of each arena: every arena is pinned, all its other pools empty.
    let (kept, freed): (Vec<_>, Vec<_>) = blocks
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % per_arena == 0);
    for (_, b) in freed {
        // SAFETY: live, freed once.
        unsafe { heap.free(b.as_ptr()) };
    }
    heap.check_invariants();
    let s = heap.stats();
    assert_eq!(s.arenas, 20, "pinned arenas stay");
    let empty = 20 * 62;
    assert!(s.pools_empty >= empty - 64, "{} empty pools", s.pools_empty);
    // Past the budget (64, or an eighth of the pools mapped), with no delay, empty pools are
    // decommitted at each purge.
    let budget = 20 * 63 / 8; // more than 64
    assert!(
        s.pools_empty - s.pools_decommitted <= budget + 1,
        "{} of {} empty pools still committed",
        s.pools_empty - s.pools_decommitted,
        s.pools_empty
    );
    // Reuse recommits transparently.
    let again: Vec<_> = (0..per_arena).map(|_| heap.malloc(64).unwrap()).collect();
    for b in again.into_iter().chain(kept.into_iter().map(|(_, b)| b)) {
        // SAFETY: live, freed once.
        unsafe {
            b.as_ptr().write_bytes(1, 64);
            heap.free(b.as_ptr());
        }
    }
    heap.trim();
    assert_eq!(heap.stats().arenas, 0);
}

#[test]
fn empty_pools_are_decommitted_only_after_the_purge_delay() {
    // A delay long enough that a loaded machine does not cross it between two frees.
    let config = PoolConfig {
        purge_delay_ms: 1000,
        ..PoolConfig::DEFAULT
    };
    let heap = Heap::with_config(config, OsArenas::new(), System).unwrap();
    let per_arena = 63 * (16384 / 64);
    let pin = heap.malloc(64).unwrap();
    let blocks: Vec<_> = (0..4 * per_arena)
        .map(|_| heap.malloc(64).unwrap())
        .collect();
    let free_all = |blocks: Vec<core::ptr::NonNull<u8>>| {
        for b in blocks {
            // SAFETY: live, freed once.
            unsafe { heap.free(b.as_ptr()) };
        }
    };
    // Free every other pool's blocks: no arena empties, many pools do.
    let (odd, even): (Vec<_>, Vec<_>) = blocks
        .into_iter()
        .partition(|b| (b.as_ptr() as usize >> 14) % 2 == 1);
    free_all(odd);
    assert_eq!(heap.stats().pools_decommitted, 0, "too soon to decommit");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The next pool return after the delay purges.
    free_all(even);
    assert!(
        heap.stats().pools_decommitted_total > 0,
        "decommitted after the delay"
    );
    // SAFETY: live, freed once.
    unsafe { heap.free(pin.as_ptr()) };
}

/// `PoolConfig::secure`, with pymalloc's other values.
const SECURE: PoolConfig = PoolConfig {
    secure: true,
    ..PoolConfig::DEFAULT
};

alloc_core::conformance_tests!(
    secure_pool_conforms,
    PoolAllocator::with_config(SECURE, OsArenas::new(), System).unwrap()
);

#[test]
fn a_secure_heap_hands_out_a_new_pool_in_random_order() {
    let heap = Heap::with_config(SECURE, OsArenas::new(), System).unwrap();
    let blocks: Vec<_> = (0..64).map(|_| heap.malloc(64).unwrap()).collect();
    let ascending = blocks.windows(2).filter(|w| w[1] > w[0]).count();
    assert!(
        (10..54).contains(&ascending),
        "{ascending} of 63 steps go up: not a random order"
    );
    for b in blocks {
        // SAFETY: live, freed once.
        unsafe { heap.free(b.as_ptr()) };
    }
    heap.check_invariants();
}

/// The child side of the secure heap's abort tests: commits the misuse named by the variable.
#[test]
fn secure_child_entry() {
    let Ok(case) = std::env::var("ALLOC_ARENA_SECURE_CHILD") else {
        return;
    };
    let heap = Heap::with_config(SECURE, OsArenas::new(), System).unwrap();
    let keep: Vec<_> = (0..8).map(|_| heap.malloc(48).unwrap()).collect();
    let p = heap.malloc(48).unwrap();
    // SAFETY: the misuses under test, which the secure heap detects and aborts on.
    unsafe {
        heap.free(p.as_ptr());
        match case.as_str() {
            "double_free" => {
                heap.free(keep[3].as_ptr());
                heap.free(p.as_ptr());
            }
            "write_after_free" => {
                p.as_ptr().cast::<usize>().write(0x4141_4141_4141);
                // Until the pool's free list runs dry and the freed block's link is read.
                for _ in 0..400 {
                    let _ = heap.malloc(48);
                }
            }
            other => panic!("unknown case {other}"),
        }
    }
    std::println!("NOT CAUGHT");
}

/// The child side of the default pools' double-free tests: a block freed twice through the
/// unsized free (`DomainAllocator::free`) of a `PoolAllocator` or a `Heap`, with other frees of
/// its class between, named by the variable (`pool:in_bin`, `heap:on_pool_list`, ...).
#[test]
fn double_free_child_entry() {
    let Ok(case) = std::env::var("ALLOC_ARENA_DOUBLE_FREE_CHILD") else {
        return;
    };
    let (front, case) = case.split_once(':').unwrap();
    let pool;
    let heap;
    let a: &dyn DomainAllocator = if front == "pool" {
        pool = PoolAllocator::with_config(PoolConfig::WIDE, OsArenas::new(), System).unwrap();
        &pool
    } else {
        heap = Heap::with_config(PoolConfig::DEFAULT, OsArenas::new(), System).unwrap();
        &heap
    };
    // SAFETY: the misuses under test, which the marks detect and abort on.
    unsafe {
        match case {
            // Still in the bin, under two later frees.
            "in_bin" => {
                let blocks: Vec<_> = (0..3).map(|_| a.malloc(48).unwrap()).collect();
                for b in &blocks {
                    a.free(b.as_ptr());
                }
                a.free(blocks[0].as_ptr());
            }
            // Back on its pool's free list: hundreds of frees overflowed the bin first (one
            // block in 50 kept, so that no pool empties, which would be reported otherwise).
            "on_pool_list" => {
                let blocks: Vec<_> = (0..1000).map(|_| a.malloc(48).unwrap()).collect();
                for (i, b) in blocks.iter().enumerate() {
                    if i % 50 != 49 {
                        a.free(b.as_ptr());
                    }
                }
                a.free(blocks[0].as_ptr());
            }
            // `realloc` and `usable_size` of a block freed (and under a later free).
            "realloc" | "usable_size" => {
                let p = a.malloc(48).unwrap();
                let q = a.malloc(48).unwrap();
                a.free(p.as_ptr());
                a.free(q.as_ptr());
                if case == "realloc" {
                    let _ = a.realloc(p.as_ptr(), 40);
                } else {
                    let _ = a.usable_size(p);
                }
            }
            // A block that was freed, handed out again and freed once more is no double free:
            // the mark is cleared when the block is handed out.
            "reused" => {
                for _ in 0..3 {
                    let blocks: Vec<_> = (0..1000).map(|_| a.malloc(48).unwrap()).collect();
                    for b in &blocks {
                        a.free(b.as_ptr());
                    }
                }
            }
            other => panic!("unknown case {other}"),
        }
    }
    std::println!("NOT CAUGHT");
}

#[cfg(unix)]
#[test]
fn the_default_pools_report_a_block_freed_twice_in_the_bin_or_on_its_pool_list() {
    use std::os::unix::process::ExitStatusExt;
    for front in ["pool", "heap"] {
        for case in ["in_bin", "on_pool_list", "realloc", "usable_size", "reused"] {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "tests::double_free_child_entry", "--nocapture"])
                .env(
                    "ALLOC_ARENA_DOUBLE_FREE_CHILD",
                    std::format!("{front}:{case}"),
                )
                .output()
                .unwrap();
            let stderr = std::string::String::from_utf8_lossy(&out.stderr);
            let stdout = std::string::String::from_utf8_lossy(&out.stdout);
            let what = std::format!("{front}:{case}: {:?}\n{stdout}\n{stderr}", out.status);
            if case == "reused" || !crate::check::MARKS {
                // No misuse, or (with the sanitizers' features) no marks: not reported here.
                if case == "reused" {
                    assert!(out.status.success(), "{what}");
                }
                continue;
            }
            let op = match case {
                "realloc" => "realloc",
                "usable_size" => "malloc_usable_size",
                _ => "free",
            };
            assert_eq!(out.status.signal(), Some(6), "{what}");
            assert!(
                stderr.contains(&std::format!(
                    "domalloc: {op}(): double free (the block is already free)"
                )),
                "{what}"
            );
        }
    }
}

#[test]
fn a_block_handed_out_again_holds_no_freed_mark() {
    // The mark an unsized free writes into the block's second word is cleared by every
    // allocation: from the bin (the block freed last comes back first), and from a pool's list
    // (a thousand frees send most blocks back to their pools).
    if !crate::check::MARKS {
        return;
    }
    let second = |p: core::ptr::NonNull<u8>| {
        // SAFETY: a live block of at least 16 bytes.
        unsafe { p.as_ptr().cast::<usize>().add(1).read() }
    };
    for a in [
        &PoolAllocator::with_config(PoolConfig::WIDE, OsArenas::new(), System).unwrap()
            as &dyn DomainAllocator,
        &Heap::with_config(PoolConfig::DEFAULT, OsArenas::new(), System).unwrap(),
    ] {
        let p = a.malloc(48).unwrap();
        // SAFETY: live, freed once.
        unsafe { a.free(p.as_ptr()) };
        // SAFETY: the freed block's memory stays mapped (its pool holds it).
        let marked = unsafe { p.as_ptr().cast::<usize>().add(1).read() };
        assert_eq!(marked, crate::check::FREED_MARK);
        let again = a.malloc(48).unwrap();
        assert_eq!(again, p, "the bin hands the block freed last out first");
        assert_ne!(second(again), crate::check::FREED_MARK);
        let blocks: Vec<_> = (0..1000).map(|_| a.malloc(48).unwrap()).collect();
        for b in &blocks {
            // SAFETY: live, freed once.
            unsafe { a.free(b.as_ptr()) };
        }
        let back: Vec<_> = (0..1000).map(|_| a.malloc(48).unwrap()).collect();
        assert!(back.iter().all(|&b| second(b) != crate::check::FREED_MARK));
        for b in back.into_iter().chain([again]) {
            // SAFETY: live, freed once.
            unsafe { a.free(b.as_ptr()) };
        }
    }
}

fn secure_child(case: &str) -> std::process::Output {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "tests::secure_child_entry", "--nocapture"])
        .env("ALLOC_ARENA_SECURE_CHILD", case)
        .output()
        .unwrap()
}

#[cfg(unix)]
#[test]
fn a_secure_heap_reports_a_double_free_on_the_free_list() {
    use std::os::unix::process::ExitStatusExt;
    let out = secure_child("double_free");
    let stderr = std::string::String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(6), "{stderr}");
    assert!(stderr.contains("domalloc: free(): double free"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn a_secure_heap_does_not_trust_a_freed_block_that_was_written() {
    use std::os::unix::process::ExitStatusExt;
    let out = secure_child("write_after_free");
    let stderr = std::string::String::from_utf8_lossy(&out.stderr);
    if cfg!(feature = "asan") {
        // The freed block is poisoned: AddressSanitizer stops the write itself.
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains("AddressSanitizer: use-after-poison"),
            "{stderr}"
        );
        return;
    }
    assert_eq!(out.status.signal(), Some(6), "{stderr}");
    assert!(
        stderr.contains("domalloc: malloc(): heap corruption"),
        "{stderr}"
    );
}

/// Every state change of pools (empty to used, used to full, full to used, used to empty, the
/// last pool of a class kept) and of arenas (mapped, usable to full, full to usable, free and
/// kept, free and released, decommitted) on a heap with nothing corrupted, in a plain heap and a
/// secure one: under `debug_assertions` each runs the transition checks of `pool_core` (and
/// every 256th the whole-heap check), which must all hold.
#[test]
fn every_pool_and_arena_transition_passes_the_debug_checks() {
    for secure in [false, true] {
        let config = PoolConfig {
            keep_empty_arenas: 0,
            keep_empty_pools: 0,
            purge_delay_ms: 0,
            retain_bytes: 0,
            secure,
            ..PoolConfig::DEFAULT
        };
        let heap = Heap::with_config(config, OsArenas::new(), System).unwrap();
        // Three arenas of 512-byte blocks (32 a pool, 63 pools an arena): pools fill and are
        // retired, arenas fill and leave the usable list.
        let mut blocks: Vec<_> = (0..3 * 63 * 32)
            .map(|_| heap.malloc(512).unwrap())
            .collect();
        assert_eq!(heap.stats().arenas, 3);
        // One block of every pool back: each full pool returns to its class's list.
        for i in (0..blocks.len()).step_by(32).rev() {
            // SAFETY: live, freed once.
            unsafe { heap.free(blocks.swap_remove(i).as_ptr()) };
        }
        heap.trim();
        heap.check_invariants();
        // Other classes meanwhile, so that emptied pools are taken by another class.
        let small: Vec<_> = (0..5000)
            .map(|i| heap.malloc(16 + i % 200).unwrap())
            .collect();
        // Everything back: pools empty, arenas empty and released (nothing is retained).
        for b in blocks.into_iter().chain(small) {
            // SAFETY: live, freed once.
            unsafe { heap.free(b.as_ptr()) };
        }
        heap.trim();
        heap.check_invariants();
        let s = heap.stats();
        assert_eq!((s.arenas, s.blocks_in_use()), (0, 0), "secure: {secure}");
        assert!(s.arenas_released >= 3);
        #[cfg(debug_assertions)]
        assert!(
            heap.transitions_checked() > 3 * 63 * 2,
            "{} transitions checked",
            heap.transitions_checked()
        );
    }
}

#[test]
fn statistics_of_pools_of_512_bytes_and_of_1_kib_add_up_in_the_wider_classes() {
    let narrow = PoolAllocator::new();
    let wide = PoolAllocator::with_valid_config(PoolConfig::WIDE, OsArenas::new(), System);
    let a = narrow.malloc(100).unwrap();
    let b = wide.malloc(100).unwrap();
    let c = wide.malloc(1000).unwrap();
    // Either way round: the sum has the 64 classes of the wide pool, the blocks of both.
    for (first, second) in [
        (narrow.stats(), wide.stats()),
        (wide.stats(), narrow.stats()),
    ] {
        let mut s = first;
        s.add(&second);
        assert_eq!(s.classes().len(), 64);
        assert_eq!(s.classes()[63].block_size, 1024);
        assert_eq!(
            s.classes()[6].blocks_in_use,
            2,
            "a block of 112 bytes in each"
        );
        assert_eq!(s.classes()[62].blocks_in_use, 1, "the 1008-byte block");
        assert_eq!(s.blocks_in_use(), 3);
    }
    // SAFETY: live blocks of their pools, each freed once.
    unsafe {
        narrow.free(a.as_ptr());
        wide.free(b.as_ptr());
        wide.free(c.as_ptr());
    }
}
