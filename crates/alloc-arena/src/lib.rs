//! # alloc-arena: arenas from the OS and the pymalloc-style pool allocator
//!
//! This crate will hold the memory layers below domalloc's object domain:
//!
//! * `OsArenas`, an [`ArenaProvider`](alloc_core::ArenaProvider) over `mmap`/`munmap` on unix and
//!   `VirtualAlloc`/`VirtualFree` on windows, with arenas aligned to their size, decommit of empty
//!   pools and release of empty arenas;
//! * `PoolAllocator`, pymalloc's design (16-byte size classes up to 512 bytes, 16 KiB pools carved
//!   lazily inside 1 MiB arenas, the fullest arenas used first), made thread-safe without a global lock.
//!
//! Nothing is exported yet: the provider and the pool arrive with their tests and benchmarks.
#![no_std]
