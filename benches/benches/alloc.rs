//! Criterion benches of the shared workloads, every allocator in the same run.
//!
//! `cargo bench -p domalloc-benches --bench alloc`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use domalloc_benches::{peers, with_allocator, workloads};

fn pairs(c: &mut Criterion) {
    let mut group = c.benchmark_group("pairs");
    for &size in &[16usize, 64, 256, 512] {
        group.throughput(Throughput::Elements(1));
        for &name in peers::ALL {
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
    let mut group = c.benchmark_group("churn");
    group.sample_size(10);
    for &name in peers::ALL {
        with_allocator!(name, |a| {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let ns = workloads::churn(a, 100_000, iters.max(1000), 42);
                    std::time::Duration::from_nanos((ns * iters as f64) as u64)
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, pairs, churn);
criterion_main!(benches);
