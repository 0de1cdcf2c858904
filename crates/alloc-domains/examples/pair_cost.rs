//! A `malloc` + `free` pair through a user domain over a pool, `N` times (the first argument):
//! the subject of the instruction counts in `benches/RESULTS.md` (run it under
//! `valgrind --tool=callgrind` at two values of `N`; the difference of the totals over the
//! difference of `N` is one pair's cost). Sizes alternate between 64 and 100,000 bytes when the
//! second argument is `large`.

use alloc_arena::PoolAllocator;
use alloc_core::DomainAllocator;
use alloc_domains::{Domain, add_domain};

static POOL: PoolAllocator = PoolAllocator::new();

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let size = if args.next().as_deref() == Some("large") {
        100_000
    } else {
        64
    };
    let d = Domain::new(add_domain("pair-cost", &POOL).unwrap()).unwrap();
    for _ in 0..n {
        let p = d.malloc(size).unwrap();
        // SAFETY: a live block of the domain, freed once.
        unsafe { d.free(std::hint::black_box(p).as_ptr()) };
    }
}
