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

criterion_group!(benches, pairs, churn);
criterion_main!(benches);
