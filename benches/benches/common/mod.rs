//! What the criterion benches share: a group of alloc+free pairs and a group of churn, over the
//! allocators named, in the same run.

use criterion::{BenchmarkId, Criterion, Throughput};
use domalloc_benches::{with_allocator, workloads};

/// `group`: alloc+free pairs of each size on each allocator.
pub fn pairs(c: &mut Criterion, group: &str, allocators: &[&str], sizes: &[usize]) {
    let mut g = c.benchmark_group(group);
    for &size in sizes {
        g.throughput(Throughput::Elements(1));
        for &name in allocators {
            with_allocator!(name, |a| {
                g.bench_with_input(BenchmarkId::new(name, size), &size, |b, &size| {
                    b.iter_custom(|iters| {
                        let ns = workloads::pairs(a, size, iters);
                        std::time::Duration::from_nanos((ns * iters as f64) as u64)
                    })
                });
            });
        }
    }
    g.finish();
}

/// `group`: churn over `live` blocks on each allocator.
pub fn churn(c: &mut Criterion, group: &str, allocators: &[&str], live: usize) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    for &name in allocators {
        with_allocator!(name, |a| {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let ns = workloads::churn(a, live, iters.max(1000), 42);
                    std::time::Duration::from_nanos((ns * iters as f64) as u64)
                })
            });
        });
    }
    g.finish();
}
