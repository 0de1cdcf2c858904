//! What one guarded block costs: `malloc(64)` + `free` pairs through `GuardPages` sampling every
//! allocation (each pair opens a slot, captures two stacks, closes the slot), against the pool
//! alone.
//!
//! ```sh
//! cargo run --release -p alloc-debug --example guard_pages_cost
//! ```

use std::time::Instant;

use alloc_arena::PoolAllocator;
use alloc_core::DomainAllocator;
use alloc_debug::GuardPages;

fn pairs(a: &impl DomainAllocator, n: u32) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        let p = a.malloc(64).unwrap();
        // SAFETY: a live block, freed once.
        unsafe { a.free(p.as_ptr()) };
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn main() {
    let pool = PoolAllocator::new();
    let g = GuardPages::builder()
        .sample_rate(1)
        .build(PoolAllocator::new())
        .unwrap();
    // Warm-up: the first captures calibrate the capture method and resolve frames.
    pairs(&g, 2000);
    pairs(&pool, 100_000);
    let guarded = pairs(&g, 100_000);
    let plain = pairs(&pool, 1_000_000);
    println!("capture method: {:?}", alloc_debug::capture_method());
    println!("pool:                  {plain:8.1} ns a pair");
    println!("guard pages, rate 1:   {guarded:8.1} ns a pair (every block guarded)");
    println!("stats: {:?}", g.stats());
}
