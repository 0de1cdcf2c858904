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

/// PEP 445's hook pattern repeated: a domain hooked (a forwarding fault injector, disabled) and
/// set back 100,000 times must cost what it cost before, small and large pairs alike (setting the
/// wrapped allocator back takes the hook out of the chain, and its record is freed after a grace
/// period: the table holds as many records after as before). The same domain before and after,
/// in the same run.
fn hook_cycles(c: &mut Criterion) {
    use alloc_arena::PoolAllocator;
    use alloc_core::DomainAllocator;
    use alloc_debug::FaultInjecting;
    use alloc_domains::{
        Domain, DynAllocator, add_domain, get, hook_forwarding, set, table_records,
    };
    use criterion::BenchmarkId;

    static POOL: PoolAllocator = PoolAllocator::new();
    let id = add_domain("bench-hook-cycles", &POOL).expect("a free slot");
    let d = Domain::new(id).expect("just added");
    let mut g = c.benchmark_group("hook_cycles");
    let run = |g: &mut criterion::BenchmarkGroup<'_, _>, when: &str| {
        for size in [64usize, 100_000] {
            g.bench_with_input(BenchmarkId::new(when, size), &size, |b, &size| {
                b.iter(|| {
                    let p = d.malloc(size).expect("memory");
                    // SAFETY: a live block of the domain, freed once.
                    unsafe { d.free(std::hint::black_box(p).as_ptr()) };
                })
            });
        }
    };
    run(&mut g, "before");
    let records = table_records();
    for _ in 0..100_000 {
        let old = get(id).expect("the domain");
        hook_forwarding(id, |prev| {
            let f: &'static DynAllocator = Box::leak(Box::new(FaultInjecting::new(prev)));
            f
        })
        .expect("a forwarding hook is always accepted");
        set(id, old).expect("set back");
    }
    assert_eq!(table_records(), records, "every hook's record was freed");
    run(&mut g, "after 100000 hook cycles");
    g.finish();
}

criterion_group!(benches, pairs, churn, arena_provider, hook_cycles);
criterion_main!(benches);
