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
//! * [`FaultInjecting`]: fail chosen allocations (a range as CPython's `set_nomemory`, the Nth, every
//!   Nth, a seeded probability, above a size, by predicate) to test out-of-memory handling.
//! * [`Counting`]: allocations, frees, reallocs, failures, bytes live and peak, a size histogram.
//! * [`Limited`]: a budget of live bytes past which allocations fail.
//! * [`Profiling`]: the exact request-size histogram and block lifetimes of a workload, the
//!   evidence pymalloc's parameters should be tuned by (`cargo xtask tune`).
//! * [`Tracing`]: tracemalloc: every live block with its size and allocation site (a captured
//!   stack resolved lazily, or a [`Tag`]); traced memory and its peak; [`Snapshot`]s with
//!   statistics by file, line or traceback, comparisons and filters; a [`LeakReport`] and
//!   [`Tracing::assert_no_growth`] for tests. Stacked under [`Guarded`], its violation reports say
//!   where the block was allocated.
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

// Under `cfg(loom)` the crate builds only the lock-free protocols and their loom models
// (`cargo xtask loom`): loom's atomics cannot be made in `const` contexts, which the decorators'
// `const` constructors need.
#[cfg_attr(all(loom, not(test)), allow(dead_code))]
mod addresses;
#[cfg(not(loom))]
mod claims;
#[cfg(not(loom))]
mod counting;
#[cfg(not(loom))]
mod fault;
#[cfg(not(loom))]
mod guard;
#[cfg(not(loom))]
mod instance;
#[cfg(all(loom, test))]
mod loom_models;
#[cfg(not(loom))]
mod os;
#[cfg(not(loom))]
mod profile;
#[cfg(not(loom))]
mod radix;
// Under loom the protocols are used by the models alone (built for tests).
#[cfg_attr(all(loom, not(test)), allow(dead_code))]
mod sync;
#[cfg_attr(all(loom, not(test)), allow(dead_code))]
mod tally;
#[cfg(not(loom))]
pub mod tracing;
#[cfg_attr(all(loom, not(test)), allow(dead_code))]
mod tracking;

#[cfg(not(loom))]
pub use counting::{Counting, CountingStats, HISTOGRAM_BUCKETS, Limited, bucket_of};
#[cfg(not(loom))]
pub use fault::{FaultInjecting, FaultPredicate};
#[cfg(not(loom))]
pub use guard::{
    Action, CLEAN_BYTE, DEAD_BYTE, FORBIDDEN_BYTE, Guarded, MAX_QUARANTINE, RECORDED_VIOLATIONS,
    SERIAL_BATCH, Violation, ViolationKind,
};
#[cfg(not(loom))]
pub use profile::{EXACT_SIZES, LOG_BUCKETS, Profile, Profiling, log_bucket};
pub use tally::PEAK_SLACK;
#[cfg(not(loom))]
pub use tracing::{
    CALIBRATION, CaptureMethod, DEFAULT_SAMPLE_INTERVAL, DomainFilter, Filter, Frame, Growth,
    KeyType, LeakReport, MAX_DEPTH, MAX_SAMPLE_INTERVAL, PLUMBING_FRAMES, Snapshot, Statistic,
    StatisticDiff, Tag, Trace, TraceFilter, Traceback, Tracing, TracingError, capture_method,
    format_size, seed_sampling, set_capture_method, with_tag,
};
