//! `Profiling`: conformance, and the profile it records: exact request sizes, large sizes by power
//! of two, lifetimes in allocations, births kept across realloc, rounding waste per spacing.

use alloc_arena::PoolAllocator;
use alloc_core::{DomainAllocator, System};
use alloc_debug::{EXACT_SIZES, Profiling, log_bucket};

alloc_core::conformance_tests!(profiling_over_pool, Profiling::new(PoolAllocator::new()));
alloc_core::conformance_tests!(profiling_over_system, Profiling::new(System));

#[test]
fn sizes_and_lifetimes_are_recorded_exactly() {
    let p = Profiling::new(PoolAllocator::new());
    // Ten blocks of 24 bytes freed at once (lifetime 0), a long-lived one of 100 bytes.
    let long = p.malloc(100).unwrap();
    for _ in 0..10 {
        let b = p.malloc(24).unwrap();
        // SAFETY: live block, freed once.
        unsafe { p.free(b.as_ptr()) };
    }
    // A large request, counted by power of two.
    let big = p.malloc(10_000).unwrap();
    // SAFETY: live blocks, freed once.
    unsafe {
        p.free(big.as_ptr());
        p.free(long.as_ptr());
    }
    let prof = p.profile();
    assert_eq!(prof.count_of(24), 10);
    assert_eq!(prof.count_of(100), 1);
    assert_eq!(prof.count_of(10_000.min(EXACT_SIZES)), 0);
    assert_eq!(prof.large[log_bucket(10_000)], 1);
    assert_eq!(prof.allocations, 12);
    assert_eq!(prof.frees, 12);
    assert_eq!(prof.live_blocks, 0);
    // The short ones lived 0 allocations; the large one 0; the long one 11.
    assert_eq!(prof.lifetimes[0], 11);
    assert_eq!(prof.lifetimes[log_bucket(11)], 1);
    assert_eq!(prof.median_lifetime(), 0);
    let text = prof.to_string();
    assert!(text.contains("24 bytes"), "{text}");
}

#[test]
fn a_reallocated_block_keeps_its_birth() {
    let p = Profiling::new(System);
    let a = p.malloc(16).unwrap();
    for _ in 0..3 {
        let b = p.malloc(16).unwrap();
        // SAFETY: live block, freed once.
        unsafe { p.free(b.as_ptr()) };
    }
    // SAFETY: a live block, resized once.
    let a = unsafe { p.realloc(a.as_ptr(), 5000) }.unwrap();
    // SAFETY: live block, freed once.
    unsafe { p.free(a.as_ptr()) };
    let prof = p.profile();
    assert_eq!(prof.reallocs, 1);
    assert_eq!(
        prof.large[log_bucket(5000)],
        1,
        "the realloc's size is a request too"
    );
    // Born first, three allocations made while it lived.
    assert_eq!(prof.lifetimes[log_bucket(3)], 1);
}

#[test]
fn rounding_waste_follows_the_spacing() {
    let p = Profiling::new(System);
    let blocks: Vec<_> = [1usize, 17, 24, 100, 600]
        .iter()
        .map(|&s| p.malloc(s).unwrap())
        .collect();
    let prof = p.profile();
    // Spacing 16, threshold 512: 1 -> 16, 17 -> 32, 24 -> 32, 100 -> 112; 600 is above.
    assert_eq!(prof.rounding_waste(16, 512), (15 + 15 + 8 + 12, 142));
    // Spacing 32: 1 -> 32, 17 -> 32, 24 -> 32, 100 -> 128.
    assert_eq!(prof.rounding_waste(32, 512), (31 + 15 + 8 + 28, 142));
    assert_eq!(prof.small_requests(512), (4, 142));
    for b in blocks {
        // SAFETY: live blocks, freed once.
        unsafe { p.free(b.as_ptr()) };
    }
}
