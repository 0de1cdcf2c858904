//! Allocating then freeing 1 GiB of small blocks returns the process RSS to within 16 MiB of where
//! it started, with no call to `trim` (empty pools decommitted, empty arenas returned to the OS,
//! past the 12 MiB a heap retains for reuse). Linux only: it reads
//! `/proc/self/statm`. Its own test binary, so no other test's memory moves the RSS.

#![cfg(target_os = "linux")]

use alloc_arena::PoolAllocator;
use alloc_core::DomainAllocator;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn freeing_a_gibibyte_of_small_blocks_returns_rss() {
    let pool = PoolAllocator::new();
    // The pointer table is allocated (and touched) before the baseline is taken.
    let target = 1usize << 30;
    let mut blocks: Vec<*mut u8> = Vec::with_capacity(target / 16 / 8);
    // Filled with a nonzero word, and seen: an optimised build would otherwise turn a fill with
    // nulls into a zeroed allocation that touches nothing, or drop it (the vector is cleared
    // unread), and the table's pages would become resident only after the baseline.
    blocks.resize(blocks.capacity(), std::ptr::NonNull::dangling().as_ptr());
    std::hint::black_box(&blocks);
    blocks.clear();
    let before = rss_bytes();

    let mut requested = 0usize;
    let mut size = 16usize;
    while requested < target {
        let p = pool.malloc(size).expect("out of memory");
        // Touch every page of the block so it is resident.
        // SAFETY: a live block of `size` bytes.
        unsafe { p.as_ptr().write_bytes(0x5A, size) };
        blocks.push(p.as_ptr());
        requested += size;
        size = if size >= 512 { 16 } else { size + 16 };
    }
    let peak = rss_bytes();
    assert!(
        peak - before >= target,
        "the blocks should be resident: {} MiB",
        (peak - before) >> 20
    );
    for p in blocks.drain(..) {
        // SAFETY: each block is live and freed once.
        unsafe { pool.free(p) };
    }
    let after = rss_bytes();
    let stats = pool.stats();
    eprintln!(
        "RSS before {} MiB, peak {} MiB, after {} MiB; arenas now {}, highest {}",
        before >> 20,
        peak >> 20,
        after >> 20,
        stats.arenas,
        stats.arenas_highest
    );
    // Within 16 MiB of the start: the heap keeps up to `PoolConfig::retain_bytes` (12 MiB) of
    // empty memory for the next structure, and gives the rest back at once. With the `asan`
    // feature the pools also write ASan's shadow of every arena they poison (an eighth of its
    // bytes), and ASan does not give all of it back when the arena goes: that much more.
    let shadow = if cfg!(feature = "asan") {
        (peak - before) / 8
    } else {
        0
    };
    assert!(
        after <= before + (16 << 20) + shadow,
        "RSS after freeing is {} MiB, started at {} MiB",
        after >> 20,
        before >> 20
    );
}
