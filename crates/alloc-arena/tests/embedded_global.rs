//! The `embedded` example's allocator as the global allocator of a whole (host) program: a pool
//! behind a lock over a static buffer, large blocks in spans of the same buffer, no OS memory and
//! no C library. Without the test harness, so that the program's allocations are its own.

extern crate alloc;

#[path = "../examples/support/embedded_heap.rs"]
mod embedded_heap;

use alloc_core::{DomainAllocator, Ownership};

fn main() {
    let pool = embedded_heap::GLOBAL.inner();
    // A first run takes what the standard library allocates once and keeps (its buffers, which
    // differ between builds: a sanitizer's runtime keeps more); the arenas are counted after it.
    embedded_heap::run();
    pool.with(|h| h.large().trim());
    pool.trim();
    let free_before = embedded_heap::ARENAS.arenas_free();
    let outcome = embedded_heap::run();
    assert!(outcome.small_in_region, "{outcome:?}");
    assert!(outcome.large_in_region, "{outcome:?}");
    // 63 vectors, 100 strings and their map's nodes, one large block (not a pool block).
    assert!(outcome.blocks_during >= 63 + 100, "{outcome:?}");
    assert_eq!(outcome.blocks_after, 0, "{outcome:?}");
    let expected: u64 = (0..64u64).map(|i| i * (i.max(1) - 1) / 2).sum::<u64>()
        + (0..100u32).map(|i| i.to_string().len() as u64).sum::<u64>()
        + (0..4096u64).map(|i| i % 256).sum::<u64>();
    assert_eq!(outcome.checksum, expected);

    // A large block is a span of the region, owned by the pool's large allocator.
    let big = vec![7u8; 100_000];
    assert!(embedded_heap::ARENAS.contains(big.as_ptr()));
    assert_eq!(pool.owns(big.as_ptr()), Ownership::Owned);
    drop(big);
    // Once the spans' cache gives its spans back, the region has its arenas again.
    pool.with(|h| h.large().trim());
    pool.trim();
    assert!(
        embedded_heap::ARENAS.arenas_free() >= free_before,
        "{} arenas free, {free_before} before",
        embedded_heap::ARENAS.arenas_free()
    );
    println!("embedded_global: ok ({outcome:?})");
}
