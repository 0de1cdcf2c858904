//! Criterion benches of the shared workloads, every allocator in the same run.
//!
//! `cargo bench -p domalloc-benches --bench alloc`

use criterion::{Criterion, criterion_group, criterion_main};
use domalloc_benches::peers;

mod common;

fn pairs(c: &mut Criterion) {
    common::pairs(c, "pairs", peers::ALL, &[16, 64, 256, 512]);
}

fn churn(c: &mut Criterion) {
    common::churn(c, "churn", peers::ALL, 100_000);
}

/// The standard pool takes its arenas from a swappable provider (PEP 445's arena allocator API);
/// its allocations and frees must not pay for that: the same pool over a fixed provider, in the
/// same run.
fn arena_provider(c: &mut Criterion) {
    use alloc_arena::{OsArenas, PoolAllocator, SwappableArenas};
    use alloc_core::{AsGlobalAlloc, System};
    use criterion::BenchmarkId;

    static OS: OsArenas = OsArenas::new();
    static SWAP: SwappableArenas = SwappableArenas::new(&OS);
    static FIXED: AsGlobalAlloc<PoolAllocator> = AsGlobalAlloc::new(PoolAllocator::new());
    static SWAPPABLE: AsGlobalAlloc<PoolAllocator<&SwappableArenas>> =
        AsGlobalAlloc::new(PoolAllocator::with_parts(&SWAP, System));

    let mut g = c.benchmark_group("arena_provider");
    for size in [16usize, 64, 256] {
        g.bench_with_input(BenchmarkId::new("fixed", size), &size, |b, &size| {
            b.iter_custom(|iters| {
                let ns = domalloc_benches::workloads::pairs(&FIXED, size, iters);
                std::time::Duration::from_nanos((ns * iters as f64) as u64)
            })
        });
        g.bench_with_input(BenchmarkId::new("swappable", size), &size, |b, &size| {
            b.iter_custom(|iters| {
                let ns = domalloc_benches::workloads::pairs(&SWAPPABLE, size, iters);
                std::time::Duration::from_nanos((ns * iters as f64) as u64)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, pairs, churn, arena_provider);
criterion_main!(benches);
