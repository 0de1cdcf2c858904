//! A whole program on the domains: Rust's global allocator goes through the mem domain; at run
//! time the mem and object domains are hooked with counting decorators, and the program prints
//! what each domain did.
//!
//! ```text
//! cargo run --release -p alloc-domains --example domain_counts
//! DOMALLOC=pool_debug cargo run --release -p alloc-domains --example domain_counts
//! ```

use std::collections::{BTreeMap, HashMap};

use alloc_core::DomainAllocator;
use alloc_debug::Counting;
use alloc_domains::{DomainId, DynAllocator, GlobalFront, MEM, OBJECT, domains, hook, preset};

#[global_allocator]
static GLOBAL: GlobalFront = GlobalFront::new(MEM);

fn counting(id: DomainId) -> &'static Counting<&'static DynAllocator> {
    let mut made: Option<&'static Counting<&'static DynAllocator>> = None;
    hook(id, |prev| {
        let c: &'static Counting<&'static DynAllocator> = Box::leak(Box::new(Counting::new(prev)));
        made = Some(c);
        c
    })
    .expect("the domain's allocator claims its blocks, so it can be hooked");
    made.expect("the hook ran")
}

fn main() {
    // Made before the hook: freed later through the same domain, by the allocator that made it.
    let early: Vec<String> = (0..1000).map(|i| format!("early {i}")).collect();

    let mem = counting(DomainId::MEM);
    let object = counting(DomainId::OBJECT);

    // Ordinary Rust work: every allocation goes through the (now counted) mem domain.
    let mut index: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for i in 0..20_000u64 {
        index
            .entry(format!("key-{}", i % 2000))
            .or_default()
            .push(i);
    }
    let words: HashMap<usize, String> = (0..5000).map(|i| (i, i.to_string())).collect();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let vs: Vec<Vec<usize>> = (0..10_000).map(|i| vec![t; i % 64]).collect();
                vs.len()
            })
        })
        .collect();
    let made: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();

    // Explicit object-domain allocations, as an interpreter's objects would be.
    let objects: Vec<_> = (0..1000)
        .map(|i| OBJECT.malloc(16 + i % 200).unwrap())
        .collect();
    for p in objects {
        // SAFETY: each block is live and freed once through its domain.
        unsafe { OBJECT.free(p.as_ptr()) };
    }
    drop(early);
    drop(index);
    drop(words);

    println!("preset: {:?}; threads made {made} vectors", preset());
    for d in domains() {
        println!("domain {:<7} allocator {}", d.name, d.allocator);
    }
    for (name, c) in [("mem", mem), ("object", object)] {
        let s = c.stats();
        println!(
            "{name:<7} allocations {:>8}  frees {:>8}  reallocs {:>6}  live {:>8} bytes  peak {:>9} bytes",
            s.allocations, s.frees, s.reallocs, s.bytes_live, s.peak_bytes
        );
    }
}
