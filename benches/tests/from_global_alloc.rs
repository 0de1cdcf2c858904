//! The allocators of other crates as `DomainAllocator`s (`FromGlobalAlloc`), under the
//! conformance suite every allocator of the workspace runs, and under the decorators.

use alloc_core::{DomainAllocator, FromGlobalAlloc};

alloc_core::conformance_tests!(over_mimalloc, FromGlobalAlloc::new(mimalloc::MiMalloc));
alloc_core::conformance_tests!(
    over_jemalloc,
    FromGlobalAlloc::new(tikv_jemallocator::Jemalloc)
);
alloc_core::conformance_tests!(
    counting_over_mimalloc,
    alloc_debug::Counting::new(FromGlobalAlloc::new(mimalloc::MiMalloc))
);
alloc_core::conformance_tests!(
    guarded_over_jemalloc,
    alloc_debug::Guarded::new(FromGlobalAlloc::new(tikv_jemallocator::Jemalloc))
);

#[test]
fn counting_over_mimalloc_counts_what_it_sees() {
    let c = alloc_debug::Counting::new(FromGlobalAlloc::new(mimalloc::MiMalloc));
    let blocks: Vec<_> = (1..=10).map(|i| c.malloc(i * 100).unwrap()).collect();
    let s = c.stats();
    assert_eq!((s.allocations, s.frees, s.bytes_live), (10, 0, 5500));
    for b in blocks {
        // SAFETY: live blocks of `c`, each freed once.
        unsafe { c.free(b.as_ptr()) };
    }
    assert_eq!(c.stats().blocks_live(), 0);
}
