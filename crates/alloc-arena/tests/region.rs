//! `RegionArenas`: pools over a memory region handed over by the caller. The conformance suite on
//! a heap and a pool allocator over regions, exhaustion as an ordinary failure, arenas reused after
//! they are freed back, construction errors that say which, and the memory overhead of a million
//! small blocks inside a region.

use alloc_arena::{Heap, MAX_REGION_ARENAS, PoolAllocator, RegionArenas, RegionError};
use alloc_core::{AllocError, DomainAllocator, System};

/// A fresh zeroed region of `mib` MiB aligned to 1 MiB, for the rest of the test process.
fn region(mib: usize) -> &'static mut [u8] {
    let layout = std::alloc::Layout::from_size_align(mib << 20, 1 << 20).unwrap();
    // SAFETY: a non-zero layout; the memory is leaked, so `'static` and ours alone.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout);
        assert!(!p.is_null());
        std::slice::from_raw_parts_mut(p, mib << 20)
    }
}

fn arenas(mib: usize) -> RegionArenas {
    RegionArenas::new(region(mib)).expect("an aligned region")
}

alloc_core::conformance_tests!(
    heap_over_a_region_conforms,
    Heap::with_parts(arenas(16), System)
);
alloc_core::conformance_tests!(
    pool_over_a_region_conforms,
    PoolAllocator::with_parts(arenas(16), System)
);

#[test]
fn exhausting_the_region_is_an_ordinary_failure_and_freed_arenas_are_reused() {
    let heap = Heap::with_parts(arenas(2), System);
    let mut blocks = Vec::new();
    while let Some(p) = heap.malloc(64) {
        blocks.push(p);
        assert!(
            blocks.len() < 1 << 20,
            "a 2 MiB region cannot hold this many blocks"
        );
    }
    // Two arenas, each with one header pool and 63 pools of 256 blocks of 64 bytes.
    assert_eq!(blocks.len(), 2 * 63 * 256);
    assert!(heap.with_provider(|r| r.arenas_free()) == 0);
    assert_eq!(
        heap.try_malloc(64),
        Err(AllocError::OutOfMemory {
            size: 64,
            align: 16
        })
    );
    // Above the threshold the large allocator still serves.
    let big = heap
        .malloc(4096)
        .expect("the large path is not the region's");
    // SAFETY: a live block, freed once.
    unsafe { heap.free(big.as_ptr()) };
    for p in blocks.drain(..) {
        assert!(heap.with_provider(|r| r.contains(p.as_ptr())));
        // SAFETY: live blocks, freed once.
        unsafe { heap.free(p.as_ptr()) };
    }
    heap.trim();
    assert_eq!(heap.with_provider(|r| r.arenas_free()), 2);
    // The arenas come back to serve again.
    let again: Vec<_> = (0..2 * 63 * 256)
        .map(|_| heap.malloc(64).unwrap())
        .collect();
    assert!(heap.malloc(64).is_none());
    for p in again {
        // SAFETY: live blocks, freed once.
        unsafe { heap.free(p.as_ptr()) };
    }
}

#[test]
fn bad_regions_are_refused_with_an_error_that_says_which() {
    let r = region(2);
    let base = r.as_mut_ptr();
    // SAFETY: every call below only checks the region; none keeps a provider alive past `r`,
    // which is leaked anyway.
    unsafe {
        assert_eq!(
            RegionArenas::from_raw(base, 0, 1 << 20).err(),
            Some(RegionError::ZeroSized)
        );
        let e = RegionArenas::from_raw(base.add(4096), 1 << 20, 1 << 20)
            .err()
            .unwrap();
        assert!(matches!(
            e,
            RegionError::Misaligned {
                arena_size: 1048576,
                ..
            }
        ));
        assert!(
            e.to_string().contains("not aligned to the arena size"),
            "{e}"
        );
        let e = RegionArenas::from_raw(base, (1 << 20) - 1, 1 << 20)
            .err()
            .unwrap();
        assert_eq!(
            e,
            RegionError::TooSmall {
                len: (1 << 20) - 1,
                arena_size: 1 << 20
            }
        );
        assert!(e.to_string().contains("too small for one arena"), "{e}");
        assert_eq!(
            RegionArenas::from_raw(base, 2 << 20, 3 << 19).err(),
            Some(RegionError::BadArenaSize {
                arena_size: 3 << 19
            })
        );
    }
    let ok = RegionArenas::with_arena_size(r, 1 << 20).unwrap();
    assert_eq!(ok.arenas_total(), 2);
    assert!(ok.arenas_total() <= MAX_REGION_ARENAS);
}

#[test]
fn a_million_32_byte_blocks_in_a_region_cost_at_most_5_percent() {
    let heap = Heap::with_parts(arenas(40), System);
    let n = 1_000_000;
    let blocks: Vec<_> = (0..n).map(|_| heap.malloc(32).expect("room")).collect();
    let used = heap.with_provider(|r| (r.arenas_total() - r.arenas_free()) * r.arena_size());
    let requested = n * 32;
    let ratio = used as f64 / requested as f64;
    eprintln!(
        "{n} blocks of 32 bytes: {used} bytes of the region for {requested} requested ({ratio:.4}x)"
    );
    assert!(ratio <= 1.05, "{ratio:.4}x");
    for p in blocks {
        // SAFETY: live blocks, freed once.
        unsafe { heap.free(p.as_ptr()) };
    }
}
