//! A pool over a 4 MiB static buffer, as the allocator of allocator-api2 collections: the embedded
//! use case (no arena comes from the OS). Requests above the pool's threshold (512 bytes) go to
//! the large allocator, here the C library; a program with no C heap would give the pool a larger
//! threshold instead.
//!
//! ```sh
//! cargo run -p alloc-arena --example region_pool
//! ```

use alloc_arena::{Heap, RegionArenas};
use alloc_core::allocator_api2::vec::Vec;
use alloc_core::{AsAllocator, DomainAllocator, System};

const REGION_BYTES: usize = 4 << 20;

/// The buffer, aligned to the arena size (1 MiB) so arenas can be found by masking.
#[repr(C, align(1048576))]
struct Region([u8; REGION_BYTES]);

static mut REGION: Region = Region([0; REGION_BYTES]);

fn main() {
    // SAFETY: the static is handed over here, once, and touched by nothing else.
    let region: &'static mut [u8] = unsafe { &mut (*core::ptr::addr_of_mut!(REGION)).0 };
    let arenas = RegionArenas::new(region).expect("4 MiB aligned to 1 MiB holds four arenas");
    let heap = Heap::with_parts(arenas, System);
    let alloc = AsAllocator::new(&heap);

    // Many small vectors: every element buffer up to 512 bytes lives in the region.
    let mut rows: Vec<Vec<u32, &AsAllocator<&Heap<RegionArenas>>>, _> = Vec::new_in(&alloc);
    for i in 0..10_000u32 {
        let mut row = Vec::with_capacity_in(8, &alloc);
        row.extend((0..8).map(|k| i * 8 + k));
        rows.push(row);
    }
    let sum: u64 = rows.iter().flatten().map(|&x| u64::from(x)).sum();
    let in_region = rows
        .iter()
        .filter(|r| heap.with_provider(|a| a.contains(r.as_ptr().cast())))
        .count();
    println!("10,000 rows, sum {sum}; {in_region} row buffers in the region");
    println!(
        "region: {} of {} arenas in use",
        heap.with_provider(|a| a.arenas_total() - a.arenas_free()),
        heap.with_provider(RegionArenas::arenas_total)
    );
    assert_eq!(in_region, 10_000);

    // Exhaustion is an ordinary failure, not a panic.
    let mut n = 0usize;
    let mut blocks = std::vec::Vec::new();
    while let Some(p) = heap.malloc(256) {
        blocks.push(p);
        n += 1;
    }
    println!("the region then held {n} more blocks of 256 bytes before malloc returned null");
    for p in blocks {
        // SAFETY: live blocks of the heap, freed once.
        unsafe { heap.free(p.as_ptr()) };
    }
    drop(rows);
    heap.trim();
    println!(
        "after freeing: {} arenas free",
        heap.with_provider(RegionArenas::arenas_free)
    );
}
