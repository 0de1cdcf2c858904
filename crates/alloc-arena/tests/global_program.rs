//! The pool allocator as the global allocator of a test program running the `threaded_program`
//! example's workload: std collections, strings, channels and thread spawns, with drops on other
//! threads, to completion; afterwards the pool has every block back.

use alloc_arena::PoolAllocator;
use alloc_core::AsGlobalAlloc;

#[global_allocator]
static GLOBAL: AsGlobalAlloc<PoolAllocator> = AsGlobalAlloc::new(PoolAllocator::new());

#[path = "../examples/support/threaded_workload.rs"]
mod workload;

#[test]
fn a_threaded_std_workload_runs_on_the_pool() {
    let before = GLOBAL.inner().stats().blocks_in_use();
    let summary = workload::run(6, 10_000);
    assert!(summary.contains("60000 strings"), "{summary}");
    // Every thread of the workload has ended; their heaps are abandoned, and trim takes back
    // what they held and what other threads freed into them.
    GLOBAL.inner().trim();
    let after = GLOBAL.inner().stats();
    assert!(
        after.blocks_in_use() <= before + 64,
        "blocks in use {} before, {} after:\n{after}",
        before,
        after.blocks_in_use()
    );
    assert!(
        GLOBAL.inner().heaps() <= 16,
        "heaps: {}",
        GLOBAL.inner().heaps()
    );
}
