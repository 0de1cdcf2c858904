//! The allocator of the `embedded` example, and what it runs (also the global allocator of
//! `tests/embedded_global.rs`): a `#[global_allocator]` static that needs no OS and no C
//! library: a pool behind a lock (`LockedHeap`) over arenas carved from a static buffer
//! (`RegionArenas` over a `RegionBuffer`), whose large blocks are `Spans` of the same region.
//! Builds with `alloc` alone, so for `thumbv7em-none-eabihf` as for the host.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use alloc_arena::{Heap, LockedHeap, RegionArenas, RegionBuffer, Spans};
use alloc_core::AsGlobalAlloc;

/// The region: 2 MiB on a bare-metal target (one arena of pools, one for a large block); more on
/// a host, where the standard library's own buffers above 512 bytes take a mebibyte span each.
#[cfg(target_os = "none")]
pub const REGION_BYTES: usize = 2 << 20;
/// The region: 2 MiB on a bare-metal target (one arena of pools, one for a large block); more on
/// a host, where the standard library's own buffers above 512 bytes take a mebibyte span each.
#[cfg(not(target_os = "none"))]
pub const REGION_BYTES: usize = 32 << 20;

/// Zeroed, aligned to 1 MiB by its type: no space in the program's image, arenas found by
/// masking.
static BUFFER: RegionBuffer<REGION_BYTES> = RegionBuffer::new();

/// The arenas, shared by the pools and the spans.
// SAFETY: `BUFFER` is private to this module and handed to this provider alone.
pub static ARENAS: RegionArenas = unsafe { RegionArenas::from_buffer(&BUFFER) };

/// The pool with its large blocks from the same region (the defaults of `LockedHeap` on a
/// target with no OS).
pub type Pool = LockedHeap<&'static RegionArenas, Spans<&'static RegionArenas>>;

/// The program's allocator: everything `alloc` makes comes from `BUFFER`.
#[global_allocator]
pub static GLOBAL: AsGlobalAlloc<Pool> = AsGlobalAlloc::new(LockedHeap::new(Heap::with_parts(
    &ARENAS,
    Spans::with_provider(&ARENAS),
)));

/// What [`run`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Every small block (vectors, strings, map nodes) lay in the region.
    pub small_in_region: bool,
    /// The large block (above the pool's 512 bytes) lay in the region too, in a span.
    pub large_in_region: bool,
    /// Blocks the pool held while the data was alive, and after it was dropped.
    pub blocks_during: usize,
    /// Blocks the pool held after everything was dropped, relative to before.
    pub blocks_after: usize,
    /// A checksum of the data (so that the work is not optimised away).
    pub checksum: u64,
}

/// Builds and drops some collections through the global allocator.
pub fn run() -> Outcome {
    let pool = GLOBAL.inner();
    let before = pool.stats().blocks_in_use();
    let rows: Vec<Vec<u32>> = (0..64).map(|i| (0..i).collect()).collect();
    let names: BTreeMap<u32, String> = (0..100).map(|i| (i, i.to_string())).collect();
    let large: Box<[u8]> = (0..4096).map(|i| i as u8).collect();
    let small_in_region = rows
        .iter()
        .filter(|r| !r.is_empty())
        .all(|r| ARENAS.contains(r.as_ptr().cast()))
        && names.values().all(|s| ARENAS.contains(s.as_ptr()));
    let large_in_region = ARENAS.contains(large.as_ptr());
    let blocks_during = pool.stats().blocks_in_use() - before;
    let checksum = rows.iter().flatten().map(|&x| u64::from(x)).sum::<u64>()
        + names.values().map(|s| s.len() as u64).sum::<u64>()
        + large.iter().map(|&b| u64::from(b)).sum::<u64>();
    drop((rows, names, large));
    let blocks_after = pool.stats().blocks_in_use().saturating_sub(before);
    Outcome {
        small_in_region,
        large_in_region,
        blocks_during,
        blocks_after,
        checksum,
    }
}
