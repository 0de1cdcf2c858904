//! Another crate's allocator under domalloc's decorators: mimalloc, made a `DomainAllocator` by
//! `FromGlobalAlloc`, counted by `Counting` and traced by `Tracing`, as the program's global
//! allocator. Prints what was counted and the largest allocation sites.
//!
//! `cargo run --release -p domalloc-benches --example wrap_mimalloc`

use alloc_core::{AsGlobalAlloc, FromGlobalAlloc};
use alloc_debug::{Counting, KeyType, Tracing};

type Stack = Counting<Tracing<FromGlobalAlloc<mimalloc::MiMalloc>>>;

#[global_allocator]
static GLOBAL: AsGlobalAlloc<Stack> = AsGlobalAlloc::new(Counting::new(
    Tracing::new(FromGlobalAlloc::new(mimalloc::MiMalloc)).with_depth(4),
));

fn build(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("item number {i}")).collect()
}

fn main() {
    let tracer = GLOBAL.inner().inner();
    tracer.start();
    // The first capture loads the unwind tables (counted, not traced): out of the way first.
    drop(build(1));
    let before = GLOBAL.inner().stats();
    let kept = build(10_000);
    let after = GLOBAL.inner().stats();
    // (Taking a snapshot resolves frames: it reads debug information, through the same stack.)
    let snapshot = tracer.take_snapshot();
    println!(
        "mimalloc under Counting, while building 10,000 strings: {} allocations, {} frees, {} bytes \
         more live",
        after.allocations - before.allocations,
        after.frees - before.frees,
        after.bytes_live - before.bytes_live
    );
    println!("the largest sites, traced over mimalloc:");
    match snapshot.statistics(KeyType::Lineno, false) {
        Ok(stats) => {
            for stat in stats.iter().take(3) {
                println!("  {stat}");
            }
        }
        Err(e) => println!("  no statistics: {e}"),
    }
    drop(kept);
}
