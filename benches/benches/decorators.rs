//! Criterion bench of what each layer over the pool costs: alloc+free pairs and churn through the
//! pool allocator, undecorated, through the mem domain, and under `Guarded`, `Counting` and a
//! disabled `FaultInjecting`, in the same run.
//!
//! `cargo bench -p domalloc-benches --bench decorators`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use domalloc_benches::{with_allocator, workloads};

const SUBJECTS: &[&str] = &["pool", "domain", "guarded", "counting", "fault-off"];

fn pairs(c: &mut Criterion) {
    let mut group = c.benchmark_group("decorator-pairs");
    for &size in &[16usize, 256] {
        for &name in SUBJECTS {
            with_allocator!(name, |a| {
                group.bench_with_input(BenchmarkId::new(name, size), &size, |b, &size| {
                    b.iter_custom(|iters| {
                        let ns = workloads::pairs(a, size, iters);
                        std::time::Duration::from_nanos((ns * iters as f64) as u64)
                    })
                });
            });
        }
    }
    group.finish();
}

fn churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("decorator-churn");
    group.sample_size(10);
    for &name in SUBJECTS {
        with_allocator!(name, |a| {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let ns = workloads::churn(a, 10_000, iters.max(1000), 42);
                    std::time::Duration::from_nanos((ns * iters as f64) as u64)
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, pairs, churn);
criterion_main!(benches);
