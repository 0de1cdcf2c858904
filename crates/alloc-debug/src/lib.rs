//! # alloc-debug: debug decorators for any allocator
//!
//! This crate will hold decorators, each a `DomainAllocator` wrapping another
//! ([`alloc_core::DomainAllocator`]) so that they stack in any order:
//!
//! * `Guarded<A>`, CPython's debug hooks: guard bytes, fill patterns, serial numbers, API ids, and a
//!   report naming the block, its serial and its domain on any violation;
//! * `FaultInjecting<A>`, to simulate running out of memory;
//! * `Counting<A>` and `Limited<A>`, statistics and budgets;
//! * `Tracing<A>`, tracemalloc: live blocks with their call sites, snapshots and leak reports.
//!
//! Nothing is exported yet: each decorator arrives with its tests.
#![no_std]
