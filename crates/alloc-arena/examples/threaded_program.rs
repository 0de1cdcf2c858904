//! A whole multi-threaded program on the pool allocator: `PoolAllocator` is the global allocator,
//! and ordinary std code (collections, strings, channels, thread spawns, cross-thread drops) runs
//! on it to completion, then the pool's statistics are printed.
//!
//! ```sh
//! cargo run --release -p alloc-arena --example threaded_program
//! ```

use alloc_arena::PoolAllocator;
use alloc_core::AsGlobalAlloc;

#[global_allocator]
static GLOBAL: AsGlobalAlloc<PoolAllocator> = AsGlobalAlloc::new(PoolAllocator::new());

#[path = "support/threaded_workload.rs"]
mod workload;

fn main() {
    let summary = workload::run(8, 20_000);
    println!("{summary}");
    GLOBAL.inner().trim();
    println!("pool heaps made: {}", GLOBAL.inner().heaps());
    println!("{}", GLOBAL.inner().stats());
}
