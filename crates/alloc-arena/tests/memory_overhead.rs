//! For 10 million live 32-byte blocks, the bytes mapped for arenas are at most 1.05x the bytes
//! requested (the pools' memory target: at most 5% over what the program asked for). Its own test
//! binary.

use alloc_arena::PoolAllocator;
use alloc_core::DomainAllocator;

#[test]
fn ten_million_32_byte_blocks_map_at_most_5_percent_more() {
    let pool = PoolAllocator::new();
    let n = 10_000_000usize;
    let mut blocks = Vec::with_capacity(n);
    for _ in 0..n {
        blocks.push(pool.malloc(32).expect("out of memory"));
    }
    let s = pool.stats();
    let requested = n * 32;
    let ratio = s.bytes_mapped as f64 / requested as f64;
    eprintln!(
        "{} MiB mapped for {} MiB requested: {ratio:.4}x, fragmentation {:.2}%",
        s.bytes_mapped >> 20,
        requested >> 20,
        s.fragmentation() * 100.0
    );
    assert!(ratio <= 1.05, "mapped/requested = {ratio:.4}");
    for b in blocks {
        // SAFETY: each block is live and freed once.
        unsafe { pool.free(b.as_ptr()) };
    }
    assert_eq!(pool.stats().blocks_in_use(), 0);
}
