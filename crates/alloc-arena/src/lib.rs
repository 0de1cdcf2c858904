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
//!   For any number of threads: a heap per thread, no lock on any allocation or free; a free
//!   puts any block into the freeing thread's bin, and a bin's flush sends other heaps' blocks
//!   home through lock-free lists (see `pool` and `remote`, and the README).
//! * [`Heap`]: the same allocator for one owner at a time, with no thread machinery;
//!   [`LockedHeap`]: a `Heap` behind a spin lock, `Sync` with no OS (a bare-metal
//!   `#[global_allocator]`).
//! * [`ReservedArenas`]: 1 MiB arenas from one 16 GiB reservation aligned to its size, so that
//!   one exclusive-or and one shift tell whether a pointer lies in them (the C library's `free`
//!   finds the mem domain's small blocks that way); [`OsArenas`] for the rest.
//! * [`RegionArenas`]: arenas carved from a caller's memory, no OS call; over a
//!   [`RegionBuffer`] it is made in a `const` context, so a pool over a static buffer can be a
//!   `static`. [`Spans`]: large blocks in whole-mebibyte spans of any provider.
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
//! that know their allocator), `check` (the hardened checks), `span`, `region`, `reserved`,
//! `swap`, `stats`, `sync` (atomics and the lock, swapped for loom's), `locked` (`LockedHeap`).
//!
//! # Targets
//!
//! With an OS (unix, windows) everything is built; `std` (default) adds a native thread-local for
//! the thread cache. Without an OS (`target_os = "none"`, checked on `thumbv7em-none-eabihf`:
//! 32-bit, no 64-bit atomics) there is no `OsArenas`, `PoolAllocator` (its per-thread heaps need
//! an OS thread key) or `SwappableArenas`: [`Heap`] and [`LockedHeap`] run over
//! [`RegionArenas`], with [`Spans`] of the same region as their large-block allocator (the
//! defaults [`DefaultArenas`] and [`DefaultLarge`] there). A bad free panics (the program's panic
//! handler decides) instead of printing and aborting; there is no clock, so purges by age and the
//! spans' cache are off. See `examples/embedded.rs`.
//!
//! # Conventions
//!
//! A path split for speed is a pair named after snmalloc's `SNMALLOC_FAST_PATH` / `_slow`:
//! `X_fast`, inlined (`#[inline]` or `#[inline(always)]`), handles the common case and ends by
//! calling `X_slow`, `#[cold]` and `#[inline(never)]`, which does the rest
//! (`PoolCore::pool_alloc_fast` / `pool_alloc_slow`, `pool_free_fast` / `pool_free_slow`,
//! `PoolAllocator::alloc_from_pools_fast` / `alloc_from_pools_slow`, `settle_fast` /
//! `settle_slow`, `free_local_fast` / `free_local_slow`, the fronts' `alloc_class_fast` /
//! `free_block_fast`). A function named `_slow` is always cold and
//! never inlined, and one with a `_slow` continuation is always `_fast`. Public entry points keep
//! the names their callers use (`malloc_fast`, `free_fast`, `free_fast_in_arenas`, `fast_key`,
//! and the `DomainAllocator` methods). Two other kinds are not pairs: cold operations with a
//! meaning of their own, called from several slow paths (`new_arena`, `flush_bin`, `bad_free`),
//! are `#[cold]` and named for what they do; out-of-line paths that are not rare (large and
//! over-aligned requests: `malloc_large`, `free_overaligned`) are `#[inline(never)]` without
//! `#[cold]` and named for their case. Under `debug_assertions`, every move of a pool or an
//! arena between states checks its invariants (`PoolCore::check_transition`).
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
mod instrument;
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
#[cfg(all(not(loom), any(unix, windows)))]
mod reserved;
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
pub use check::{report_no_arena, report_other_allocator};
#[cfg(all(not(loom), any(unix, windows)))]
pub use fast::{FastFree, FastRealloc, NO_KEY, WordFree};
#[cfg(not(loom))]
pub use heap::Heap;
#[cfg(not(loom))]
pub use locked::LockedHeap;
#[cfg(all(not(loom), any(unix, windows)))]
pub use os::OsArenas;
#[cfg(not(loom))]
pub use os::{ExitKey, ThreadExit};
#[cfg(all(not(loom), any(unix, windows)))]
pub use pool::PoolAllocator;
#[cfg(not(loom))]
pub use region::{MAX_REGION_ARENAS, RegionArenas, RegionBuffer, RegionError};
#[cfg(not(loom))]
pub use registry::{arena_owner, in_pool_arena};
#[cfg(all(not(loom), any(unix, windows)))]
pub use reserved::{
    FREE_TAG_SHIFT, FREE_WORD_OFF, RESERVED_SHIFT, ReservedArenas, free_word, free_word_covers,
    free_word_key, in_reservation,
};
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
