//! The allocators a benchmark compares, by the names scripts rely on.

use std::alloc::System;

/// The C library's allocator, as Rust's `std` reaches it.
pub static SYSTEM: System = System;
/// mimalloc.
pub static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
/// jemalloc (tikv-jemallocator).
pub static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
/// domalloc's System (`alloc_core::System`) through the `GlobalAlloc` adapter: the adapter's cost.
pub static CORE_SYSTEM: alloc_core::AsGlobalAlloc<alloc_core::System> =
    alloc_core::AsGlobalAlloc::new(alloc_core::System);

/// domalloc's pool allocator, shareable between threads.
pub static POOL: alloc_core::AsGlobalAlloc<alloc_arena::PoolAllocator> =
    alloc_core::AsGlobalAlloc::new(alloc_arena::PoolAllocator::new());

/// The mem domain (the pool by default) through the table: what a domain costs.
pub static DOMAIN: alloc_domains::GlobalFront = alloc_domains::GlobalFront::new(alloc_domains::MEM);

/// The pool under CPython's debug hooks.
pub static GUARDED: alloc_core::AsGlobalAlloc<alloc_debug::Guarded<alloc_arena::PoolAllocator>> =
    alloc_core::AsGlobalAlloc::new(alloc_debug::Guarded::new(alloc_arena::PoolAllocator::new()));
/// The pool under tracemalloc's decorator, one frame per traceback.
pub static TRACING: alloc_core::AsGlobalAlloc<alloc_debug::Tracing<alloc_arena::PoolAllocator>> =
    alloc_core::AsGlobalAlloc::new(alloc_debug::Tracing::new(alloc_arena::PoolAllocator::new()));
/// The pool under tracemalloc's decorator sampling every 512 KiB on average (one frame per
/// sampled block): what heap profiling left on in production costs.
pub static SAMPLING: alloc_core::AsGlobalAlloc<alloc_debug::Tracing<alloc_arena::PoolAllocator>> =
    alloc_core::AsGlobalAlloc::new(
        alloc_debug::Tracing::new(alloc_arena::PoolAllocator::new())
            .with_sampling(alloc_debug::DEFAULT_SAMPLE_INTERVAL),
    );
/// The pool with statistics.
pub static COUNTING: alloc_core::AsGlobalAlloc<alloc_debug::Counting<alloc_arena::PoolAllocator>> =
    alloc_core::AsGlobalAlloc::new(alloc_debug::Counting::new(alloc_arena::PoolAllocator::new()));
/// The pool under the decorator that feeds `alloc_debug::Scope`s (no scope open: what it costs
/// everyone else).
pub static SCOPED: alloc_core::AsGlobalAlloc<alloc_debug::Scoped<alloc_arena::PoolAllocator>> =
    alloc_core::AsGlobalAlloc::new(alloc_debug::Scoped::new(alloc_arena::PoolAllocator::new()));

/// The pool under sampled guard pages at their default rate (one allocation in
/// `alloc_debug::DEFAULT_SAMPLE_RATE`).
pub static GUARD_PAGES: alloc_core::AsGlobalAlloc<
    alloc_debug::GuardPages<alloc_arena::PoolAllocator>,
> = alloc_core::AsGlobalAlloc::new(alloc_debug::GuardPages::new(
    alloc_arena::PoolAllocator::new(),
));
/// The pool under a fault injector that is switched off.
pub static FAULT_OFF: alloc_core::AsGlobalAlloc<
    alloc_debug::FaultInjecting<alloc_arena::PoolAllocator>,
> = alloc_core::AsGlobalAlloc::new(alloc_debug::FaultInjecting::new(
    alloc_arena::PoolAllocator::new(),
));

/// A fresh single-owner pool heap (no lock) for this thread, leaked for the process lifetime.
pub fn pool_heap() -> &'static alloc_core::AsGlobalAlloc<alloc_arena::Heap> {
    #[repr(align(4096))]
    struct Page(alloc_core::AsGlobalAlloc<alloc_arena::Heap>);
    let b: &'static Page = Box::leak(Box::new(Page(alloc_core::AsGlobalAlloc::new(
        alloc_arena::Heap::new(),
    ))));
    &b.0
}

/// Every allocator name the runner knows, in report order:
///
/// * `system`: the C library (glibc here) through `std::alloc::System`;
/// * `mimalloc`, `jemalloc`: the peers;
/// * `pool`: domalloc's `PoolAllocator` called directly (through the `GlobalAlloc` adapter);
/// * `pool-heap`: the same pools as a single-owner `Heap`, with no thread machinery;
/// * `domain`: the mem domain through the domain table (the pool behind one atomic load and an
///   indirect call);
/// * `guarded`, `counting`, `fault-off`: the pool under `Guarded`, `Counting`, and a disabled
///   `FaultInjecting` (what each decorator costs, against `pool`);
/// * `scoped`: the pool under `Scoped` with no scope open (what scoped counts cost the code
///   outside a scope);
/// * `tracing`: the pool under `Tracing` capturing one frame per block (tracemalloc's default);
/// * `guard-pages`: the pool under `GuardPages` at its default sample rate;
/// * `sampling`: the pool under `Tracing` sampling every 512 KiB on average (one frame per sampled
///   block);
/// * `core-system`: `alloc_core::System` through the adapter: what the adapter costs.
pub const ALL: &[&str] = &[
    "system",
    "mimalloc",
    "jemalloc",
    "pool",
    "pool-heap",
    "domain",
    "guarded",
    "counting",
    "fault-off",
    "tracing",
    "scoped",
    "guard-pages",
    "sampling",
    "core-system",
];

/// Allocators that can only be called directly, not installed as a process's global allocator
/// (the single-owner heap, and the adapter alone).
pub const DIRECT_ONLY: &[&str] = &["pool-heap", "core-system"];

/// Runs `$body` with `$a` bound to a `&'static` reference to the allocator called `$name`
/// (one of [`ALL`]); evaluates to `Some(result)`, or `None` for an unknown name.
#[macro_export]
macro_rules! with_allocator {
    ($name:expr, |$a:ident| $body:expr) => {{
        match $name {
            "system" => {
                let $a = &$crate::peers::SYSTEM;
                Some($body)
            }
            "mimalloc" => {
                let $a = &$crate::peers::MIMALLOC;
                Some($body)
            }
            "jemalloc" => {
                let $a = &$crate::peers::JEMALLOC;
                Some($body)
            }
            "pool" => {
                let $a = &$crate::peers::POOL;
                Some($body)
            }
            "pool-heap" => {
                let $a = $crate::peers::pool_heap();
                Some($body)
            }
            "domain" => {
                let $a = &$crate::peers::DOMAIN;
                Some($body)
            }
            "guarded" => {
                let $a = &$crate::peers::GUARDED;
                Some($body)
            }
            "counting" => {
                let $a = &$crate::peers::COUNTING;
                Some($body)
            }
            "fault-off" => {
                let $a = &$crate::peers::FAULT_OFF;
                Some($body)
            }
            "tracing" => {
                let $a = &$crate::peers::TRACING;
                Some($body)
            }
            "scoped" => {
                let $a = &$crate::peers::SCOPED;
                Some($body)
            }
            "guard-pages" => {
                let $a = &$crate::peers::GUARD_PAGES;
                Some($body)
            }
            "sampling" => {
                let $a = &$crate::peers::SAMPLING;
                Some($body)
            }
            "core-system" => {
                let $a = &$crate::peers::CORE_SYSTEM;
                Some($body)
            }
            _ => None,
        }
    }};
}
