//! Criterion bench of what each layer over the pool costs: alloc+free pairs and churn through the
//! pool allocator, undecorated, through the mem domain, and under `Guarded`, `Counting`, a
//! disabled `FaultInjecting` and `Tracing`, in the same run; then `Tracing` at depths 1, 8 and 32
//! (and with a caller-given tag) against the undecorated pool and against `Guarded`.
//!
//! `cargo bench -p domalloc-benches --bench decorators`
//! (`-- tracing-depth` for the depth groups alone).

use alloc_arena::PoolAllocator;
use alloc_core::AsGlobalAlloc;
use alloc_debug::{Tag, Tracing, with_tag};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use domalloc_benches::{peers, workloads};

mod common;

const SUBJECTS: &[&str] = &[
    "pool",
    "domain",
    "guarded",
    "counting",
    "fault-off",
    "tracing",
];

type Traced = AsGlobalAlloc<Tracing<PoolAllocator>>;

static TRACING_8: Traced = AsGlobalAlloc::new(Tracing::new(PoolAllocator::new()).with_depth(8));
static TRACING_32: Traced = AsGlobalAlloc::new(Tracing::new(PoolAllocator::new()).with_depth(32));

fn pairs(c: &mut Criterion) {
    common::pairs(c, "decorator-pairs", SUBJECTS, &[16, 256]);
}

fn churn(c: &mut Criterion) {
    common::churn(c, "decorator-churn", SUBJECTS, 10_000);
}

/// Alloc+free pairs of 64 bytes through `Tracing` capturing 1, 8 and 32 frames, beside the
/// undecorated pool and `Guarded` over it.
fn tracing_depths(c: &mut Criterion) {
    let mut g = c.benchmark_group("tracing-depth-pairs");
    g.throughput(Throughput::Elements(1));
    let mut subject = |name: &str, a: &'static dyn Pairs| {
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let ns = a.pairs(64, iters);
                std::time::Duration::from_nanos((ns * iters as f64) as u64)
            })
        });
    };
    subject("pool", &peers::POOL);
    subject("guarded", &peers::GUARDED);
    subject("tracing-1", &peers::TRACING);
    subject("tracing-8", &TRACING_8);
    subject("tracing-32", &TRACING_32);
    // The same decorator with a caller-given tag instead of a stack walk.
    g.bench_function(BenchmarkId::from_parameter("tracing-tag"), |b| {
        b.iter_custom(|iters| {
            let ns = with_tag(Tag::new("bench", 1), || peers::TRACING.pairs(64, iters));
            std::time::Duration::from_nanos((ns * iters as f64) as u64)
        })
    });
    g.finish();
}

/// The pairs workload over any allocator, as a trait object so that one loop names them all.
trait Pairs: Sync {
    fn pairs(&self, size: usize, iters: u64) -> f64;
}

impl<G: std::alloc::GlobalAlloc + Sync> Pairs for G {
    fn pairs(&self, size: usize, iters: u64) -> f64 {
        workloads::pairs(self, size, iters)
    }
}

criterion_group!(benches, pairs, churn, tracing_depths);
criterion_main!(benches);
