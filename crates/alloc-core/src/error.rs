//! Typed errors: what failed, and what a caller can do about it.

use thiserror::Error;

/// Why an allocation failed, for callers who report or recover (the `try_*` methods of
/// [`DomainAllocator`](crate::DomainAllocator)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum AllocError {
    /// The allocator could not provide the memory. Free memory or ask for less.
    #[error("out of memory: {size} bytes aligned to {align} could not be allocated")]
    OutOfMemory {
        /// The requested size in bytes.
        size: usize,
        /// The requested alignment in bytes.
        align: usize,
    },
    /// `nelem * elsize` overflows, or exceeds `isize::MAX`: the request cannot be satisfied by any
    /// allocator. Check the element count.
    #[error("size overflow: {nelem} elements of {elsize} bytes exceed isize::MAX bytes")]
    SizeOverflow {
        /// The number of elements asked for.
        nelem: usize,
        /// The size of one element.
        elsize: usize,
    },
}

/// Why an [`ArenaProvider`](crate::ArenaProvider) could not provide or change an arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum ArenaError {
    /// The operating system refused the request (its error code is kept). Usually the address
    /// space or the commit limit is exhausted.
    #[error("the OS refused to {operation} {size} bytes (OS error {code})")]
    Os {
        /// What was asked of the OS: "map", "commit", "decommit", "unmap".
        operation: &'static str,
        /// The size of the request in bytes.
        size: usize,
        /// `errno` on unix, `GetLastError()` on windows.
        code: i32,
    },
    /// The provider cannot serve this size and alignment (for example an alignment that is not a
    /// power of two, or a size that is not a multiple of the page size).
    #[error("arena layout not supported: {size} bytes aligned to {align}: {reason}")]
    Unsupported {
        /// The requested size in bytes.
        size: usize,
        /// The requested alignment in bytes.
        align: usize,
        /// What the provider needs instead.
        reason: &'static str,
    },
    /// A provider with a fixed amount of memory (a region handed over by the caller) has no room
    /// left for an arena of this size.
    #[error("arena memory exhausted: {size} bytes asked, {available} bytes left")]
    Exhausted {
        /// The requested size in bytes.
        size: usize,
        /// What the provider still has.
        available: usize,
    },
}
