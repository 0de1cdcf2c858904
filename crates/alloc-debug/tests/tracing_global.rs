//! `Tracing` as the process's `#[global_allocator]`: every allocation of the test binary goes
//! through it, its tables never do (no recursion), resolution and snapshots allocate untraced, and
//! a planted leak is found at its line.

use std::sync::Mutex;

use alloc_core::{AsGlobalAlloc, System};
use alloc_debug::{Filter, KeyType, Tracing};

#[global_allocator]
static GLOBAL: AsGlobalAlloc<Tracing<System>> = AsGlobalAlloc::new(Tracing::new(System));

fn tracer() -> &'static Tracing<System> {
    GLOBAL.inner()
}

/// The tests of this file run one at a time: each reads the whole process's traces.
static SERIAL: Mutex<()> = Mutex::new(());

/// Only what this file allocated (the harness allocates too, on other threads).
fn here() -> Filter {
    Filter::include("*tests/tracing_global.rs")
}

#[inline(never)]
fn plant_a_leak() -> usize {
    let leaked: &'static mut [u8] = Box::leak(vec![7u8; 4096].into_boxed_slice());
    core::hint::black_box(leaked).len()
}

#[test]
fn a_planted_leak_is_found_at_its_line() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let leak_line = line!() - 7;
    let kept: Vec<String> = (0..10).map(|i| format!("kept string {i}")).collect();
    let kept_line = line!() - 1;
    assert_eq!(plant_a_leak(), 4096);
    let snapshot = tracer().take_snapshot().filter_traces(&[here().into()]);
    let stats = snapshot.statistics(KeyType::Lineno, false).unwrap();
    let leak = stats
        .iter()
        .find(|s| s.traceback.site().lineno == leak_line)
        .unwrap_or_else(|| panic!("no trace at line {leak_line}:\n{stats:#?}"));
    assert_eq!((leak.size, leak.count), (4096, 1));
    let strings = stats
        .iter()
        .find(|s| s.traceback.site().lineno == kept_line)
        .unwrap_or_else(|| panic!("no trace at line {kept_line}:\n{stats:#?}"));
    assert_eq!(
        strings.count, 11,
        "one block per string, and the vector: {strings}"
    );
    assert!(
        strings.size >= 10 * "kept string 0".len() + 10 * size_of::<String>(),
        "{strings}"
    );
    drop(kept);
}

#[test]
fn growth_across_a_closure_is_caught_and_balanced_code_passes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut keep = Vec::new();
    let result = tracer().check_no_growth(|| {
        for i in 0..100 {
            keep.push(vec![i as u8; 1000]);
        }
    });
    let growth = result.unwrap_err();
    assert!(growth.bytes >= 100_000, "{growth}");
    let text = growth.to_string();
    assert!(text.contains("tests/tracing_global.rs"), "{text}");
    drop(keep);
    // A snapshot's own memory is untraced, so taking one leaves nothing behind (what a program
    // then makes of it, a filtered copy here, is traced as any memory); threads of the harness
    // may allocate meanwhile, hence the filter on this file's sites.
    let before = tracer()
        .take_snapshot()
        .filter_traces(&[here().into()])
        .total_size();
    let v: Vec<u64> = (0..1000).collect();
    drop(v);
    let after = tracer()
        .take_snapshot()
        .filter_traces(&[here().into()])
        .total_size();
    assert_eq!(after, before);
}

#[test]
fn a_traceback_of_a_global_block_resolves_without_deadlock() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tracer().set_depth(8).unwrap();
    let b = Box::new([0u64; 32]);
    let line = line!() - 1;
    let tb = tracer()
        .traceback_of(b.as_ptr().cast())
        .expect("a Box is traced");
    tracer().set_depth(1).unwrap();
    assert_eq!(tb.site().lineno, line, "{tb:#}");
    assert!(tb.frames().len() > 1, "deeper stacks resolve too: {tb:#}");
}
