//! # alloc-core: the allocator contract of domalloc
//!
//! domalloc brings CPython's allocator architecture (PEP 445 allocator domains, the pymalloc pool
//! allocator, the debug hooks, tracemalloc) to Rust. This crate is its foundation and knows nothing
//! above it: no OS code, no domains, no decorators, `#![no_std]`.
//!
//! It holds:
//!
//! * [`DomainAllocator`], PEP 445's `PyMemAllocatorEx` made a Rust trait: `malloc`, `calloc`,
//!   `realloc` and `free` with `&self` as the context, extended with aligned allocation for any
//!   [`Layout`](core::alloc::Layout), a sized free, [`usable_size`](DomainAllocator::usable_size) and
//!   [`owns`](DomainAllocator::owns). The trait documentation states every rule of the contract.
//! * [`System`], the C library's allocator: the default of the raw domain.
//! * Adapters: [`AsGlobalAlloc`] makes any `DomainAllocator` a [`GlobalAlloc`](core::alloc::GlobalAlloc)
//!   for `#[global_allocator]`; [`AsAllocator`] makes it an [`allocator_api2::alloc::Allocator`] so that
//!   `hashbrown::HashMap::new_in` and `allocator_api2::vec::Vec::new_in` can use it.
//! * [`ArenaProvider`], PEP 445's `PyObjectArenaAllocator`: large, aligned chunks for a pool allocator.
//! * [`AllocError`] and [`ArenaError`], the typed errors.
//! * [`forward_to_inner!`], which writes the methods a decorator passes to its inner allocator
//!   unchanged (decorator forwarding, written once).
//! * [`plumbing`], where each allocator crate registers the names of its own frames, for tracers
//!   to skip.
//! * [`chunk_map::ChunkMap`], a value per 1 MiB chunk of the address space in a two-level radix
//!   tree (two dependent loads a lookup), for allocators' ownership maps.
//! * [`lock::Lock`], the workspace's spin lock: never allocates, for allocator crates' slow paths; its
//!   waiting strategy ([`lock::Relax`]) is a type parameter.
//! * With the `testkit` feature, `testkit`: the conformance suite every allocator runs on itself.
//!
//! ```
//! use alloc_core::{DomainAllocator, System};
//!
//! let p = System.malloc(24).expect("out of memory");
//! // SAFETY: `p` was just returned by `System.malloc(24)` and is freed exactly once.
//! unsafe {
//!     p.as_ptr().write_bytes(0xAB, 24);
//!     System.free(p.as_ptr());
//! }
//! ```
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(test, feature = "testkit"))]
extern crate alloc;
#[cfg(test)]
extern crate std;

mod adapters;
mod arena;
pub mod chunk_map;
mod contract;
mod error;
mod forward;
pub mod lock;
pub mod plumbing;
#[cfg(all(any(unix, windows), target_pointer_width = "64"))]
mod system;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use adapters::{AsAllocator, AsGlobalAlloc, FromGlobalAlloc};
pub use arena::ArenaProvider;
pub use contract::{
    DomainAllocator, MIN_ALIGN, Ownership, calloc_aligned_via_calloc, checked_array_size,
};
pub use error::{AllocError, ArenaError};
#[cfg(all(any(unix, windows), target_pointer_width = "64"))]
pub use system::System;

/// Re-export of the allocator-api2 version the adapters implement (the 0.2 line that hashbrown uses).
pub use allocator_api2;

#[cfg(all(test, any(unix, windows), target_pointer_width = "64"))]
mod tests {
    use core::ptr::NonNull;

    use super::*;

    /// Forwards only the four required operations to `System`, so that the provided methods
    /// (calloc, the aligned fallback, sized free) are what the suite exercises.
    struct RequiredOnly;

    // SAFETY: every block comes from `System`; the provided methods are the trait's own.
    unsafe impl DomainAllocator for RequiredOnly {
        fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
            System.malloc(size)
        }
        unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
            // SAFETY: the caller's guarantee, forwarded.
            unsafe { System.realloc(ptr, new_size) }
        }
        unsafe fn free(&self, ptr: *mut u8) {
            // SAFETY: the caller's guarantee, forwarded.
            unsafe { System.free(ptr) }
        }
    }

    crate::conformance_tests!(system, System);
    crate::conformance_tests!(system_by_reference, &System);
    crate::conformance_tests!(provided_methods, RequiredOnly);
    crate::global_alloc_conformance_tests!(global_adapter_over_system, AsGlobalAlloc::new(System));
    crate::global_alloc_conformance_tests!(
        global_adapter_over_provided_methods,
        AsGlobalAlloc::new(RequiredOnly)
    );
    crate::allocator_conformance_tests!(api_adapter_over_system, AsAllocator::new(System));
    crate::allocator_conformance_tests!(
        api_adapter_over_provided_methods,
        AsAllocator::new(RequiredOnly)
    );

    #[test]
    fn hashbrown_map_lives_in_the_api_adapter() {
        let a = AsAllocator::new(RequiredOnly);
        let mut m = hashbrown::HashMap::new_in(&a);
        for i in 0..5000u32 {
            m.insert(i, std::format!("value {i}"));
        }
        assert_eq!(m.len(), 5000);
        assert_eq!(m[&4321], "value 4321");
    }

    #[test]
    fn errors_say_what_happened() {
        let e = AllocError::SizeOverflow {
            nelem: 3,
            elsize: usize::MAX,
        };
        assert!(std::format!("{e}").contains("3 elements"));
        let e = ArenaError::Os {
            operation: "map",
            size: 1 << 20,
            code: 12,
        };
        assert_eq!(
            std::format!("{e}"),
            "the OS refused to map 1048576 bytes (OS error 12)"
        );
    }
}
