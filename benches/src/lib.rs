//! # domalloc-benches: workloads shared by the criterion benches and `cargo xtask bench`
//!
//! Every workload is generic over [`GlobalAlloc`](std::alloc::GlobalAlloc), the one interface that domalloc's compositions
//! (through [`alloc_core::AsGlobalAlloc`]) and the peers (the C library, mimalloc, jemalloc) all
//! have, so that all of them are measured by the same loop in the same process.
//!
//! * [`workloads`]: the loops themselves.
//! * [`peers`]: the allocators by the names scripts rely on, and [`with_allocator!`] to run a generic
//!   workload on one of them chosen at run time.
//! * [`report`]: the records the runner prints and `cargo xtask bench` collects.
//! * [`dispatch`]: the runner's global allocator, chosen by the environment, so that workloads
//!   written with ordinary `std` collections measure the allocator under test.

pub mod dispatch;
pub mod peers;
pub mod report;
pub mod workloads;

/// The workspace README's examples, compiled and run as doctests so that they stay true (this crate
/// depends on every domalloc crate, so all the examples build here).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
