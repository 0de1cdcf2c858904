//! # alloc-arena: arenas from the OS and the pymalloc-style pool allocator
//!
//! The memory layers below domalloc's object domain, after CPython's `Objects/obmalloc.c`:
//!
//! ```text
//!   malloc(n), n <= 512 ──> PoolAllocator / Heap ──> size class (n-1)/16 ──> a used pool's free list
//!                                  │                                               │ empty?
//!                                  │                                   take a pool from the fullest
//!                                  │                                   usable arena (or map one)
//!   malloc(n), n > 512  ──> L (System: the C library)                              │
//!                                                               ArenaProvider (OsArenas: mmap /
//!                                                               VirtualAlloc, 1 MiB aligned)
//! ```
//!
//! * [`OsArenas`]: an [`ArenaProvider`](alloc_core::ArenaProvider) over `mmap`/`munmap` (unix) and
//!   `VirtualAlloc`/`VirtualFree` (windows); arenas aligned to their size; decommit of ranges;
//!   optional huge-page advice.
//! * [`PoolAllocator`]: pymalloc's design as a [`DomainAllocator`](alloc_core::DomainAllocator):
//!   16-byte size classes up to 512 bytes, 16 KiB pools carved lazily inside 1 MiB arenas, the
//!   `usedpools` shortcut, the usable-arena list ordered fullest first, empty pools decommitted past
//!   a budget, empty arenas returned to the OS with one kept back, O(1) ownership through a radix
//!   registry, requests above the threshold passed to a large-block allocator `L`.
//!   For any number of threads: a heap per thread, no lock on any allocation or free, frees from
//!   other threads through lock-free lists (see `pool` and `remote`, and the README).
//! * [`Heap`]: the same allocator for one owner at a time, with no thread machinery.
//! * [`PoolConfig`]: threshold, class spacing, pool and arena sizes as parameters (pymalloc's values
//!   by default), checked into a typed [`ConfigError`].
//! * [`PoolStats`]: `sys._debugmallocstats()` as a struct and a table.
//!
//! The modules follow the layers: `os` (every OS call: one file per family, the thread key, the
//! native thread-local), `registry` (which arena is whose, over alloc-core's `ChunkMap`),
//! `size_class`, `arena` (layout and the life of a pool), `pool_core` (the single-owner engine:
//! the lists and the moves of pools between states), `routing` (the routing of the
//! `DomainAllocator` calls both fronts share), `heap` (the one-owner front), `pool` (the threaded
//! front), `threads` (thread caches, heap slots, thread exit), `remote` (every cross-thread
//! protocol, both sides, with loom models in `loom_models`), `fast` (the fast paths for callers
//! that know their allocator), `check` (the hardened checks), `span`, `region`, `swap`, `stats`,
//! `sync` (atomics and the lock, swapped for loom's).
//!
//! ```
//! use alloc_arena::PoolAllocator;
//! use alloc_core::DomainAllocator;
//!
//! let pool = PoolAllocator::new();
//! let blocks: Vec<_> = (0..1000).map(|i| pool.malloc(i % 512).unwrap()).collect();
//! assert_eq!(pool.stats().blocks_in_use(), 1000);
//! for b in blocks {
//!     // SAFETY: each block is live and freed once.
//!     unsafe { pool.free(b.as_ptr()) };
//! }
//! assert_eq!(pool.stats().blocks_in_use(), 0);
//! ```
#![no_std]

#[cfg(any(test, feature = "std"))]
extern crate std;

// Under `cfg(loom)` only the cross-thread protocols and their models are built: the rest of the
// crate needs `const` atomics in statics, which loom's types are not.
#[cfg(not(loom))]
mod arena;
#[cfg(not(loom))]
mod check;
#[cfg(all(not(loom), any(unix, windows)))]
mod fast;
// Before the fronts: its macros are theirs.
#[cfg(not(loom))]
#[macro_use]
mod routing;
#[cfg(not(loom))]
mod heap;
#[cfg(not(loom))]
mod locked;
#[cfg(all(test, loom))]
mod loom_models;
#[cfg(not(loom))]
mod os;
#[cfg(all(not(loom), any(unix, windows)))]
mod pool;
#[cfg(not(loom))]
mod pool_core;
#[cfg(not(loom))]
mod region;
#[cfg(not(loom))]
mod registry;
mod remote;
#[cfg(not(loom))]
mod size_class;
#[cfg(not(loom))]
mod span;
#[cfg(not(loom))]
mod stats;
#[cfg(all(not(loom), any(unix, windows)))]
mod swap;
mod sync;
#[cfg(not(loom))]
mod threads;

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(not(loom))]
pub use check::report_other_allocator;
#[cfg(all(not(loom), any(unix, windows)))]
pub use fast::NO_KEY;
#[cfg(not(loom))]
pub use heap::Heap;
#[cfg(not(loom))]
pub use locked::LockedHeap;
#[cfg(all(not(loom), any(unix, windows)))]
pub use os::OsArenas;
#[cfg(all(not(loom), any(unix, windows)))]
pub use pool::PoolAllocator;
#[cfg(not(loom))]
pub use region::{MAX_REGION_ARENAS, RegionArenas, RegionBuffer, RegionError};
#[cfg(not(loom))]
pub use registry::{arena_owner, in_pool_arena};
#[cfg(not(loom))]
pub use size_class::{ConfigError, MAX_CLASSES, MAX_POOLS_PER_ARENA, PoolConfig};
#[cfg(not(loom))]
pub use span::Spans;
#[cfg(not(loom))]
pub use stats::{ClassStats, PoolStats};
#[cfg(all(not(loom), any(unix, windows)))]
pub use swap::{DynArenaProvider, MAX_PROVIDERS, SwapError, SwappableArenas};

/// The arena provider of [`Heap`], [`LockedHeap`], `PoolAllocator` and [`Spans`] when none is
/// named: [`OsArenas`] where there is an OS (unix, windows).
#[cfg(all(not(loom), any(unix, windows)))]
pub type DefaultArenas = OsArenas;
/// The arena provider of [`Heap`], [`LockedHeap`] and [`Spans`] when none is named: with no OS
/// to map from, a [`RegionArenas`] in a `static`, shared by the pools and their large blocks.
#[cfg(all(not(loom), not(any(unix, windows))))]
pub type DefaultArenas = &'static RegionArenas;

/// The large-block allocator of [`Heap`], [`LockedHeap`] and `PoolAllocator` when none is named:
/// the C library's (`System`) where it is the 64-bit unix or windows one that `alloc_core`
/// wraps; [`Spans`] over the default arenas elsewhere (no OS, or 32-bit), which need no C library.
#[cfg(all(not(loom), any(unix, windows), target_pointer_width = "64"))]
pub type DefaultLarge = alloc_core::System;
/// The large-block allocator of [`Heap`], [`LockedHeap`] and `PoolAllocator` when none is named:
/// the C library's (`System`) where it is the 64-bit unix or windows one that `alloc_core`
/// wraps; [`Spans`] over the default arenas elsewhere (no OS, or 32-bit), which need no C library.
#[cfg(all(not(loom), not(all(any(unix, windows), target_pointer_width = "64"))))]
pub type DefaultLarge = Spans<DefaultArenas>;
