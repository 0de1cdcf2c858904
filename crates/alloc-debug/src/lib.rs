//! # alloc-debug: debug decorators for any allocator
//!
//! Each decorator is a [`DomainAllocator`](alloc_core::DomainAllocator) wrapping another, holding it
//! as a type parameter and adding exactly one behaviour, so they stack in any order and compose by
//! type (`Guarded<FaultInjecting<PoolAllocator>>`); this crate never names a particular allocator.
//!
//! * [`Guarded`]: CPython's debug hooks (`PyMem_SetupDebugHooks`): guard bytes, 0xCD / 0xDD fill
//!   patterns, serial numbers and API ids, checked on every free and realloc for buffer overflow
//!   and underflow, API misuse between domains, double free and foreign pointers, with a report that
//!   names the block, its serial and its domain, then abort, panic or record; an optional quarantine
//!   catches writes after free; [`Guarded::is_freed`] is CPython's `_PyObject_IsFreed`.
//! * [`GuardPages`]: sampled guard pages (as GWP-ASan): one allocation in N placed against an
//!   inaccessible page, and kept inaccessible for a while once freed, so that an overflow, an
//!   underflow or a use after free of it faults at once, with a report; cheap enough to leave on.
//! * [`FaultInjecting`]: fail chosen allocations (a range as CPython's `set_nomemory`, the Nth, every
//!   Nth, a seeded probability, above a size, by predicate) to test out-of-memory handling.
//! * [`Counting`]: allocations, frees, reallocs, failures, bytes live and peak, a size histogram.
//! * [`Scoped`] and [`Scope`]: exact counts of what one piece of code allocates on its thread
//!   (and on threads it hands the scope to), while other threads allocate too: parallel tests.
//! * [`Limited`]: a budget of live bytes past which allocations fail.
//! * [`Profiling`]: the exact request-size histogram and block lifetimes of a workload, the
//!   evidence pymalloc's parameters should be tuned by (`cargo xtask tune`).
//! * [`Tracing`]: tracemalloc: every live block with its size and allocation site (a captured
//!   stack resolved lazily, or a [`Tag`]); traced memory and its peak; [`Snapshot`]s with
//!   statistics by file, line or traceback, comparisons and filters; a [`LeakReport`] and
//!   [`Tracing::assert_no_growth`] for tests. Stacked under [`Guarded`], its violation reports say
//!   where the block was allocated. With the `export` feature (default), a snapshot is written as
//!   a DHAT or pprof heap profile and dumped to a file and loaded back (`tracing::pprof`,
//!   `DhatProfile`, `Snapshot::dump`).
//!
//! ```
//! use alloc_core::{DomainAllocator, System};
//! use alloc_debug::{Counting, FaultInjecting, Guarded};
//!
//! // Debug hooks over statistics over fault injection over the C library, by type.
//! let a = Guarded::new(Counting::new(FaultInjecting::new(System)));
//! let p = a.malloc(24).unwrap();
//! // SAFETY: a live block, freed once.
//! unsafe { a.free(p.as_ptr()) };
//! assert_eq!(a.inner().stats().allocations, 1);
//! ```
//!
//! Reports are formatted into a fixed buffer and written straight to standard error: reporting
//! never allocates, so the decorators can sit under `#[global_allocator]` (with [`Action::Abort`] or
//! [`Action::Record`]; a global allocator must not unwind, so not with [`Action::Panic`]).

// Without `std` (an embedded target) only what needs no OS is built: `FaultInjecting`. The other
// decorators need thread-locals, OS-mapped tables or stack capture.
#![cfg_attr(not(feature = "std"), no_std)]

// Under `cfg(loom)` the crate builds only the lock-free protocols and their loom models
// (`cargo xtask loom`): loom's atomics cannot be made in `const` contexts, which the decorators'
// `const` constructors need.
#[cfg(feature = "std")]
#[cfg_attr(all(loom, not(test)), allow(dead_code))]
mod addresses;
#[cfg(all(not(loom), feature = "std"))]
mod claims;
#[cfg(all(not(loom), feature = "std"))]
mod counting;
#[cfg(not(loom))]
mod fault;
#[cfg(all(not(loom), feature = "std"))]
mod guard;
#[cfg(all(not(loom), feature = "std"))]
mod guard_pages;
#[cfg(feature = "std")]
#[cfg_attr(all(loom, not(test)), allow(dead_code))]
mod guard_slots;
#[cfg(all(not(loom), feature = "std"))]
mod instance;
#[cfg(all(loom, test))]
mod loom_models;
#[cfg(all(not(loom), feature = "std"))]
mod os;
#[cfg(all(not(loom), feature = "std"))]
mod profile;
#[cfg(all(not(loom), feature = "std"))]
mod radix;
#[cfg(all(not(loom), feature = "std"))]
mod scope;
#[cfg(feature = "std")]
#[cfg_attr(all(loom, not(test)), allow(dead_code))]
mod scope_table;
// Under loom the protocols are used by the models alone (built for tests).
#[cfg(feature = "std")]
#[cfg_attr(all(loom, not(test)), allow(dead_code))]
mod sync;
#[cfg(feature = "std")]
#[cfg_attr(all(loom, not(test)), allow(dead_code))]
mod tally;
#[cfg(all(not(loom), feature = "std"))]
pub mod tracing;
#[cfg(feature = "std")]
#[cfg_attr(all(loom, not(test)), allow(dead_code))]
mod tracking;

#[cfg(all(not(loom), feature = "std"))]
pub use counting::{Counting, CountingStats, HISTOGRAM_BUCKETS, Limited, bucket_of};
#[cfg(not(loom))]
pub use fault::{FaultInjecting, FaultPredicate};
#[cfg(all(not(loom), feature = "std"))]
pub use guard::{
    Action, CLEAN_BYTE, DEAD_BYTE, FORBIDDEN_BYTE, Guarded, MAX_QUARANTINE, RECORDED_VIOLATIONS,
    SERIAL_BATCH, Violation, ViolationKind,
};
#[cfg(all(not(loom), feature = "std"))]
pub use guard_pages::{
    DEFAULT_QUARANTINE, DEFAULT_SAMPLE_RATE, DEFAULT_SLOT_PAGES, DEFAULT_SLOTS, GUARD_FRAMES,
    GuardPages, GuardPagesBuilder, GuardPagesConfig, GuardPagesError, GuardPagesStats,
    MAX_SLOT_PAGES, MAX_SLOTS, REGISTERED,
};
#[cfg(all(not(loom), feature = "std"))]
pub use profile::{EXACT_SIZES, LOG_BUCKETS, Profile, Profiling, log_bucket};
#[cfg(all(not(loom), feature = "std"))]
pub use scope::{
    MAX_SCOPE_DEPTH, MAX_SCOPES, Scope, ScopeError, ScopeGuard, ScopeHandle, ScopeStats, Scoped,
};
#[cfg(feature = "std")]
pub use tally::PEAK_SLACK;
#[cfg(all(not(loom), feature = "std"))]
pub use tracing::{
    CALIBRATION, CaptureMethod, DEFAULT_SAMPLE_INTERVAL, DomainFilter, Filter, Frame, Growth,
    KeyType, LeakReport, MAX_DEPTH, MAX_SAMPLE_INTERVAL, PLUMBING_FRAMES, Snapshot, Statistic,
    StatisticDiff, Tag, Trace, TraceFilter, Traceback, Tracing, TracingError, capture_method,
    format_size, seed_sampling, set_capture_method, with_tag,
};
#[cfg(all(not(loom), feature = "export"))]
pub use tracing::{
    DHAT_FILE_VERSION, DHAT_MODE, DhatProfile, DhatProgramPoint, SNAPSHOT_FILE_FORMAT,
    SNAPSHOT_FILE_VERSION, SnapshotFileError, pprof,
};
