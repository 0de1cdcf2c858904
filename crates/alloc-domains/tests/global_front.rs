//! A test program whose global allocator is the mem domain: swapping and hooking the domain at run
//! time changes the whole program, and blocks made before a hook are freed by their maker.

use alloc_debug::Counting;
use alloc_domains::{DomainId, DynAllocator, GlobalFront, MEM, get, hook};

#[global_allocator]
static GLOBAL: GlobalFront = GlobalFront::new(MEM);

#[test]
fn hooking_the_mem_domain_counts_the_programs_allocations() {
    let before: Vec<Vec<u8>> = (0..1000).map(|i| vec![1; i]).collect();
    let mut counter: Option<&'static Counting<&'static DynAllocator>> = None;
    hook(DomainId::MEM, |prev| {
        let c = Box::leak(Box::new(Counting::new(prev)));
        counter = Some(c);
        c
    })
    .unwrap();
    let c = counter.unwrap();
    let base = c.stats();
    let after: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let s = c.stats();
    assert!(s.allocations >= base.allocations + 1000, "{s:?}");
    drop(before); // made before the hook: back to the pool directly
    let live_before_drop = c.stats().bytes_live;
    drop(after);
    assert!(
        c.stats().bytes_live < live_before_drop,
        "frees of counted blocks are counted"
    );
    assert_eq!(get(DomainId::MEM).unwrap().name(), "counting");
    // Threads, channels and collections on top of it.
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        for i in 0..5000 {
            tx.send(format!("message {i}")).unwrap();
        }
    });
    let n = rx.iter().map(|m| m.len()).sum::<usize>();
    t.join().unwrap();
    assert!(n > 0);
}
