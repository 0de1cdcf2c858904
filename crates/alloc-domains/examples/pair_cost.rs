//! A `malloc` + `free` pair through a user domain over a pool, `N` times (the first argument),
//! after `C` cycles of PEP 445's hook pattern on the domain (the third argument: a forwarding
//! hook installed, then the wrapped allocator set back): the subject of the instruction counts
//! in `benches/RESULTS.md`. Run it under `valgrind --tool=callgrind` at two values of `N`; the
//! difference of the totals over the difference of `N` is one pair's cost. The size (second
//! argument) is 64 bytes, or 100,000 with `large`.

use alloc_arena::PoolAllocator;
use alloc_core::DomainAllocator;
use alloc_domains::{Domain, DynAllocator, add_domain, get, hook_forwarding, set};

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
    let cycles: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let id = add_domain("pair-cost", &POOL).unwrap();
    let d = Domain::new(id).unwrap();
    let first = d.malloc(size).unwrap();
    for _ in 0..cycles {
        let old = get(id).unwrap();
        hook_forwarding(id, |prev| {
            let f: &'static DynAllocator =
                Box::leak(Box::new(alloc_debug::FaultInjecting::new(prev)));
            f
        })
        .unwrap();
        set(id, old).unwrap();
    }
    for _ in 0..n {
        let p = d.malloc(size).unwrap();
        // SAFETY: a live block of the domain, freed once.
        unsafe { d.free(std::hint::black_box(p).as_ptr()) };
    }
    // SAFETY: a live block of the domain, freed once.
    unsafe { d.free(first.as_ptr()) };
}
