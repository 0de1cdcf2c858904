//! Criterion bench of what each layer over the pool costs: alloc+free pairs and churn through the
//! pool allocator, undecorated, through the mem domain, and under `Guarded`, `Counting`, a
//! disabled `FaultInjecting` and `Tracing`, in the same run; then `Tracing` at depths 1, 8 and 32
//! (and with a caller-given tag) against the undecorated pool and against `Guarded`; and the
//! same decorators over the C library's allocator (`System`), pairs and churn, against `System`
//! undecorated: what a decorator costs depends on what it wraps, and the pool is the fastest
//! thing there is to wrap.
//!
//! `cargo bench -p domalloc-benches --bench decorators`
//! (`-- tracing-depth` for the depth groups alone).

use alloc_arena::PoolAllocator;
use alloc_core::{AsGlobalAlloc, System};
use alloc_debug::{Counting, FaultInjecting, Guarded, Tag, Tracing, with_tag};
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

static SYSTEM: AsGlobalAlloc<System> = AsGlobalAlloc::new(System);
static GUARDED_SYSTEM: AsGlobalAlloc<Guarded<System>> = AsGlobalAlloc::new(Guarded::new(System));
static COUNTING_SYSTEM: AsGlobalAlloc<Counting<System>> = AsGlobalAlloc::new(Counting::new(System));
static FAULT_OFF_SYSTEM: AsGlobalAlloc<FaultInjecting<System>> =
    AsGlobalAlloc::new(FaultInjecting::new(System));
static TRACING_SYSTEM: AsGlobalAlloc<Tracing<System>> = AsGlobalAlloc::new(Tracing::new(System));

/// The decorators over `System`, beside it undecorated.
const OVER_SYSTEM: &[(&str, &dyn Workloads)] = &[
    ("system", &SYSTEM),
    ("guarded", &GUARDED_SYSTEM),
    ("counting", &COUNTING_SYSTEM),
    ("fault-off", &FAULT_OFF_SYSTEM),
    ("tracing", &TRACING_SYSTEM),
];

fn pairs(c: &mut Criterion) {
    common::pairs(c, "decorator-pairs", SUBJECTS, &[16, 256]);
}

fn churn(c: &mut Criterion) {
    common::churn(c, "decorator-churn", SUBJECTS, 10_000);
}

/// Pairs of 16 and 256 bytes and churn over 10,000 live blocks, every decorator over `System`.
fn over_system(c: &mut Criterion) {
    let mut g = c.benchmark_group("decorator-pairs-over-system");
    g.throughput(Throughput::Elements(1));
    for size in [16, 256] {
        for &(name, a) in OVER_SYSTEM {
            g.bench_with_input(BenchmarkId::new(name, size), &size, |b, &size| {
                b.iter_custom(|iters| {
                    let ns = a.pairs(size, iters);
                    std::time::Duration::from_nanos((ns * iters as f64) as u64)
                })
            });
        }
    }
    g.finish();
    let mut g = c.benchmark_group("decorator-churn-over-system");
    g.sample_size(10);
    for &(name, a) in OVER_SYSTEM {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let ns = a.churn(10_000, iters.max(1000));
                std::time::Duration::from_nanos((ns * iters as f64) as u64)
            })
        });
    }
    g.finish();
}

/// Alloc+free pairs of 64 bytes through `Tracing` capturing 1, 8 and 32 frames, beside the
/// undecorated pool and `Guarded` over it.
fn tracing_depths(c: &mut Criterion) {
    let mut g = c.benchmark_group("tracing-depth-pairs");
    g.throughput(Throughput::Elements(1));
    let mut subject = |name: &str, a: &'static dyn Workloads| {
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

/// The workloads over any allocator, as a trait object so that one loop names them all.
trait Workloads: Sync {
    fn pairs(&self, size: usize, iters: u64) -> f64;
    fn churn(&self, live: usize, replaces: u64) -> f64;
}

impl<G: std::alloc::GlobalAlloc + Sync> Workloads for G {
    fn pairs(&self, size: usize, iters: u64) -> f64 {
        workloads::pairs(self, size, iters)
    }
    fn churn(&self, live: usize, replaces: u64) -> f64 {
        workloads::churn(self, live, replaces, 42)
    }
}

criterion_group!(benches, pairs, churn, tracing_depths, over_system);
criterion_main!(benches);
