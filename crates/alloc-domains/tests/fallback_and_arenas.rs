//! PEP 445's two other pieces: requests above the pool threshold made through the object domain
//! go to whatever allocator the mem domain has now (a hook on mem sees them, and realloc moves
//! blocks across the threshold correctly), and the standard pools' arena allocator can be replaced
//! at run time (here by a region of the test's own memory), with arenas going back to their maker.

use alloc_arena::RegionArenas;
use alloc_core::DomainAllocator;
use alloc_debug::Counting;
use alloc_domains::{
    DomainId, DynAllocator, MEM, OBJECT, arena_allocator, hook, in_reserved_arenas,
    set_arena_allocator, trim_pools,
};

fn fill(p: *mut u8, n: usize, seed: u8) {
    for i in 0..n {
        // SAFETY: `n` bytes of a live block.
        unsafe { p.add(i).write(seed.wrapping_add(i as u8)) };
    }
}

fn check(p: *mut u8, n: usize, seed: u8) {
    for i in 0..n {
        // SAFETY: `n` bytes of a live block.
        let got = unsafe { p.add(i).read() };
        assert_eq!(got, seed.wrapping_add(i as u8), "byte {i}");
    }
}

#[test]
fn object_falls_back_on_mem_and_arenas_can_be_swapped() {
    // --- the fallback chain, seen by a counting hook on mem ---
    let mut counter: Option<&'static Counting<&'static DynAllocator>> = None;
    hook(DomainId::MEM, |prev| {
        let c = Box::leak(Box::new(Counting::new(prev)));
        counter = Some(c);
        c
    })
    .unwrap();
    let c = counter.unwrap();
    let base = c.stats();

    let small = OBJECT.malloc(100).unwrap().as_ptr();
    assert_eq!(
        c.stats().allocations,
        base.allocations,
        "small requests stay in the pool"
    );
    let large = OBJECT.malloc(4000).unwrap().as_ptr();
    assert_eq!(
        c.stats().allocations,
        base.allocations + 1,
        "a large one goes to mem"
    );
    fill(large, 4000, 3);
    // SAFETY: a live block of the object domain, freed once.
    unsafe { OBJECT.free(large) };
    assert_eq!(
        c.stats().frees,
        base.frees + 1,
        "and comes back through mem"
    );

    // realloc across the threshold, both ways, keeping the contents.
    fill(small, 100, 7);
    // SAFETY: live block, resized once.
    let grown = unsafe { OBJECT.realloc(small, 3000) }.unwrap().as_ptr();
    assert_eq!(
        c.stats().allocations,
        base.allocations + 2,
        "grown past the threshold: mem"
    );
    check(grown, 100, 7);
    fill(grown, 3000, 9);
    // SAFETY: live block, resized once.
    let shrunk = unsafe { OBJECT.realloc(grown, 200) }.unwrap().as_ptr();
    assert_eq!(
        c.stats().frees,
        base.frees + 2,
        "shrunk below it: back into the pool"
    );
    check(shrunk, 200, 9);
    // SAFETY: live block, freed once.
    unsafe { OBJECT.free(shrunk) };
    assert_eq!(c.stats().allocations, base.allocations + 2);

    // --- the arena allocator, swapped for a region while blocks are live ---
    let before: Vec<*mut u8> = (0..1000)
        .map(|_| MEM.malloc(64).unwrap().as_ptr())
        .collect();
    // The mem domain's small blocks come from its pool's reservation (where the OS granted one).
    let reserved = in_reserved_arenas(before[0]);
    let old = arena_allocator();
    let layout = std::alloc::Layout::from_size_align(8 << 20, 1 << 20).unwrap();
    // SAFETY: a non-zero layout; the memory is leaked, so `'static` and the region's alone.
    let region: &'static mut [u8] = unsafe {
        let p = std::alloc::alloc_zeroed(layout);
        assert!(!p.is_null());
        std::slice::from_raw_parts_mut(p, 8 << 20)
    };
    let region: &'static RegionArenas = Box::leak(Box::new(RegionArenas::new(region).unwrap()));
    set_arena_allocator(region).unwrap();
    assert!(std::ptr::addr_eq(arena_allocator(), region));
    // A thread of its own: a fresh heap, whose arenas come from the region.
    let handle = std::thread::spawn(move || {
        let blocks: Vec<usize> = (0..30_000)
            .map(|i| OBJECT.malloc(16 + i % 400).unwrap().as_ptr() as usize)
            .collect();
        let in_region = blocks
            .iter()
            .filter(|&&b| region.contains(b as *const u8))
            .count();
        assert!(
            region.arenas_free() < region.arenas_total(),
            "the region serves new arenas"
        );
        for &b in &blocks {
            // SAFETY: live blocks, freed once.
            unsafe { OBJECT.free(b as *mut u8) };
        }
        trim_pools();
        in_region
    });
    let in_region = handle.join().unwrap();
    assert!(
        in_region > 20_000,
        "{in_region} of 30,000 blocks in the region"
    );
    // Everything the region gave came back to it; blocks from before the swap still free into
    // their old arenas.
    trim_pools();
    assert_eq!(region.arenas_free(), region.arenas_total());
    for p in before {
        // SAFETY: live blocks of the mem domain, freed once.
        unsafe { MEM.free(p) };
    }
    set_arena_allocator(old).unwrap();
    // Set back, the standard provider stands for the reservation again: a fresh heap's small
    // blocks lie in it.
    let back = std::thread::spawn(|| {
        let blocks: Vec<usize> = (0..30_000)
            .map(|i| MEM.malloc(16 + i % 400).unwrap().as_ptr() as usize)
            .collect();
        let inside = blocks
            .iter()
            .filter(|&&b| in_reserved_arenas(b as *const u8))
            .count();
        for &b in &blocks {
            // SAFETY: live blocks, freed once.
            unsafe { MEM.free(b as *mut u8) };
        }
        inside
    })
    .join()
    .unwrap();
    if reserved {
        assert_eq!(back, 30_000, "blocks in the reservation after the set back");
    }
}
