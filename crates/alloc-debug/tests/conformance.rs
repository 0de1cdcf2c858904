//! Every decorator, alone and stacked, passes the conformance suite of `alloc-core`.

use alloc_arena::PoolAllocator;
use alloc_core::System;
use alloc_debug::{Action, Counting, FaultInjecting, Guarded, Limited, Tracing};

alloc_core::conformance_tests!(guarded_over_system, Guarded::new(System));
alloc_core::conformance_tests!(guarded_over_pool, Guarded::new(PoolAllocator::new()));
alloc_core::conformance_tests!(
    guarded_with_quarantine,
    Guarded::new(PoolAllocator::new())
        .with_quarantine(64)
        .with_action(Action::Record)
);
alloc_core::conformance_tests!(
    fault_injecting_disabled,
    FaultInjecting::new(PoolAllocator::new())
);
alloc_core::conformance_tests!(counting_over_system, Counting::new(System));
alloc_core::conformance_tests!(counting_over_pool, Counting::new(PoolAllocator::new()));
alloc_core::conformance_tests!(
    limited_with_room,
    Limited::new(PoolAllocator::new(), isize::MAX as usize)
);
alloc_core::conformance_tests!(
    stacked_guarded_fault_pool,
    Guarded::new(FaultInjecting::new(PoolAllocator::new()))
);
alloc_core::conformance_tests!(
    stacked_counting_guarded_system,
    Counting::new(Guarded::new(System))
);
alloc_core::global_alloc_conformance_tests!(
    guarded_as_global_alloc,
    alloc_core::AsGlobalAlloc::new(Guarded::new(PoolAllocator::new()))
);
alloc_core::allocator_conformance_tests!(
    counting_as_allocator,
    alloc_core::AsAllocator::new(Counting::new(PoolAllocator::new()))
);
alloc_core::conformance_tests!(tracing_over_system, Tracing::new(System));
alloc_core::conformance_tests!(
    tracing_over_pool_deep,
    Tracing::new(PoolAllocator::new()).with_depth(16)
);
alloc_core::conformance_tests!(
    stacked_guarded_tracing_pool,
    Guarded::new(Tracing::new(PoolAllocator::new()))
);
alloc_core::global_alloc_conformance_tests!(
    tracing_as_global_alloc,
    alloc_core::AsGlobalAlloc::new(Tracing::new(PoolAllocator::new()))
);
alloc_core::allocator_conformance_tests!(
    tracing_as_allocator,
    alloc_core::AsAllocator::new(Tracing::new(PoolAllocator::new()))
);
alloc_core::conformance_tests!(
    guard_pages_every_block,
    alloc_debug::GuardPages::builder()
        .sample_rate(1)
        .slots(64)
        .quarantine(16)
        .build(PoolAllocator::new())
        .unwrap()
);
alloc_core::conformance_tests!(
    guard_pages_one_in_three_underflow,
    alloc_debug::GuardPages::builder()
        .sample_rate(3)
        .slots(16)
        .quarantine(4)
        .underflow(true)
        .build(System)
        .unwrap()
);
alloc_core::conformance_tests!(
    stacked_guarded_guard_pages_pool,
    Guarded::new(
        alloc_debug::GuardPages::builder()
            .sample_rate(2)
            .slots(32)
            .quarantine(8)
            .build(PoolAllocator::new())
            .unwrap()
    )
);
alloc_core::global_alloc_conformance_tests!(
    guard_pages_as_global_alloc,
    alloc_core::AsGlobalAlloc::new(
        alloc_debug::GuardPages::builder()
            .sample_rate(1)
            .slots(64)
            .quarantine(16)
            .build(PoolAllocator::new())
            .unwrap()
    )
);
