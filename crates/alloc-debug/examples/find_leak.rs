//! A whole program under `Tracing`: a small request server with a leak planted in it, found by
//! comparing two snapshots, then shown in a leak report.
//!
//! `cargo run -p alloc-debug --example find_leak`
//!
//! Every allocation of the process goes through `Tracing<PoolAllocator>` (the global allocator),
//! with four frames per traceback.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Mutex;

use alloc_arena::PoolAllocator;
use alloc_core::AsGlobalAlloc;
use alloc_debug::{Filter, KeyType, Tracing};

#[global_allocator]
static GLOBAL: AsGlobalAlloc<Tracing<PoolAllocator>> =
    AsGlobalAlloc::new(Tracing::new(PoolAllocator::new()).with_depth(4));

/// Requests seen, by path: meant to keep one counter per path...
static SEEN: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn parse(request: &str) -> HashMap<String, String> {
    request
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn remember(request: &str) {
    // ...but keeps a copy of every request body: the leak.
    SEEN.lock().unwrap().push(request.as_bytes().to_vec());
}

fn handle(n: usize) -> usize {
    let request = format!(
        "path=/items/{}&user=u{}&body={}",
        n % 7,
        n % 13,
        "x".repeat(200)
    );
    let fields = parse(&request);
    remember(&request);
    fields.len()
}

fn main() -> ExitCode {
    let tracer = GLOBAL.inner();
    // Warm up, so that one-time allocations (the standard library's, the first growth of the
    // registry) are not mistaken for growth.
    for n in 0..10 {
        handle(n);
    }
    let before = tracer.take_snapshot();
    for n in 0..1000 {
        handle(n);
    }
    let after = tracer.take_snapshot();

    let this_program = [Filter::include("*find_leak.rs").all_frames(true).into()];
    let growth = after
        .filter_traces(&this_program)
        .compare_to(&before.filter_traces(&this_program), KeyType::Lineno, false)
        .expect("grouping by line");
    println!("Top 3 differences after 1000 requests:");
    for d in growth.iter().take(3) {
        println!("  {d}");
    }
    let top = &growth[0];
    let by_traceback = after
        .compare_to(&before, KeyType::Traceback, false)
        .expect("grouping by traceback");
    println!(
        "\nThe largest growth, with its traceback:\n  {}\n{:#}",
        by_traceback[0], by_traceback[0].traceback
    );
    let report = tracer.leak_report();
    println!(
        "Still live at the end ({} sites, top 3):",
        report.sites.len()
    );
    for s in report.sites.iter().take(3) {
        println!("  {s}");
    }

    let expected = "SEEN.lock().unwrap().push";
    let source = include_str!("find_leak.rs");
    let leak_line = source
        .lines()
        .position(|l| l.trim_start().starts_with(expected))
        .expect("the planted line")
        + 1;
    if top.traceback.site().lineno as usize == leak_line && top.size_diff > 200_000 {
        println!("\nfound the planted leak at line {leak_line}");
        ExitCode::SUCCESS
    } else {
        println!("\nthe planted leak at line {leak_line} was not the top growth");
        ExitCode::FAILURE
    }
}
