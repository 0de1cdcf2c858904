//! Criterion bench of what each layer over the pool costs: alloc+free pairs and churn through the
//! pool allocator, undecorated, through the mem domain, and under `Guarded`, `Counting` and a
//! disabled `FaultInjecting`, in the same run.
//!
//! `cargo bench -p domalloc-benches --bench decorators`

use criterion::{Criterion, criterion_group, criterion_main};

mod common;

const SUBJECTS: &[&str] = &["pool", "domain", "guarded", "counting", "fault-off"];

fn pairs(c: &mut Criterion) {
    common::pairs(c, "decorator-pairs", SUBJECTS, &[16, 256]);
}

fn churn(c: &mut Criterion) {
    common::churn(c, "decorator-churn", SUBJECTS, 10_000);
}

criterion_group!(benches, pairs, churn);
criterion_main!(benches);
