//! # alloc-domains: PEP 445 allocator domains
//!
//! Allocations go through named **domains**, as in CPython since PEP 445: `raw` (any thread, any
//! time; the C library by default), `mem` and `object` (the pool allocator by default), and domains
//! a program adds. Each domain's allocator can be read ([`get`]), replaced ([`set`]), wrapped
//! ([`hook_forwarding`] for PEP 445's hook pattern, [`hook`] for a wrapper with blocks of its own),
//! watched ([`on_change`]) and put under the debug hooks ([`setup_debug_hooks`]); the standard
//! domains start from `DOMALLOC=` ([`Preset`], `PYTHONMALLOC`'s vocabulary).
//!
//! * Allocation through a domain costs one atomic load, one indirect call, and a relaxed read of
//!   the domain's "has allocated" flag (which the replacement rule needs); a free, one atomic load
//!   and one indirect call while every record of the domain's chain forwards to its first. While
//!   the mem domain has its standard pool and nothing else, its calls go to the pool directly,
//!   with no indirect call.
//! * Replacing an allocator while its blocks are live is safe: frees go to the allocator that made
//!   the block (the rule is in [`table`'s documentation](crate#replacement-rule), and a replacement
//!   that could not keep it is refused with a typed error).
//! * [`GlobalFront`] routes Rust's `#[global_allocator]` through a domain, so swapping or hooking
//!   that domain changes the whole program.
//!
//! ```
//! use alloc_core::DomainAllocator;
//! use alloc_debug::Counting;
//! use alloc_domains::{DomainId, get, hook, MEM};
//!
//! let p = MEM.malloc(100).unwrap();                     // PyMem_Malloc
//! // Count what the mem domain does from now on (a hook forwards to the allocator it wraps).
//! hook(DomainId::MEM, |prev| Box::leak(Box::new(Counting::new(prev)))).unwrap();
//! let q = MEM.malloc(100).unwrap();
//! // SAFETY: live blocks of the mem domain, freed once; `p` predates the hook and still goes to
//! // the allocator that made it.
//! unsafe {
//!     MEM.free(p.as_ptr());
//!     MEM.free(q.as_ptr());
//! }
//! assert_eq!(get(DomainId::MEM).unwrap().name(), "counting");
//! ```
//!
//! # Replacement rule
//!
//! Each domain keeps the chain of allocators it has used. A free goes to the newest allocator that
//! claims the block (`owns == Owned`, and one of its blocks starts there); a block nobody claims
//! goes to the newest allocator that cannot tell its blocks apart, or else to a debug hook, or else
//! to the first one (the full rule, with debug hooks and forwarding hooks, is in the `table`
//! module's documentation). So an allocator that cannot claim its own blocks (the C library
//! answers "unknown") may only become current before the domain's first allocation, or when it is
//! in the chain already; [`set`] and [`hook`] refuse it otherwise
//! ([`DomainError::AmbiguousOwnership`]). The pool allocator, and the debug decorators over it,
//! claim their blocks; forwarding hooks make none and are accepted at any time.

#[cfg(not(loom))]
mod config;
#[cfg(all(test, loom))]
mod loom_models;
#[cfg(not(loom))]
mod os;
// Under loom only the record reclamation protocol and its models are built: the table needs
// `const` atomics in statics, which loom's are not, and the crates it builds on are reduced too.
#[cfg_attr(all(loom, not(test)), allow(dead_code))]
mod reclaim;
#[cfg_attr(loom, allow(dead_code))]
mod record;
mod sync;
#[cfg(not(loom))]
mod table;

#[cfg(not(loom))]
pub use config::{ENV_VAR, GUARD_SAMPLE_VAR, PRESET_NAMES, Preset, UnknownPreset};
#[cfg(not(loom))]
pub use table::{
    CallbackId, ChangeCallback, Domain, DomainError, DomainId, DomainInfo, DomainStats,
    DynAllocator, LARGE_POOL, LargePool, MAX_CALLBACKS, MAX_DOMAINS, MEDIUM_POOL, MEM, MediumPool,
    MemPool, MemSpans, OBJECT, RAW, SMALL_POOL, STANDARD_DOMAINS, STATS_VAR, StatsError,
    add_domain, after_fork_child, after_fork_parent, arena_allocator, check_standard_live, domains,
    enable_mem_fast_path, find, free_medium_owned, free_standard_checked, free_standard_counted,
    free_standard_owned, get, guards_every_block, hook, hook_forwarding, in_mem_reservation,
    in_reserved_arenas, malloc_medium_fast, malloc_standard_large, mem_counts_on_pool,
    mem_fast_free, mem_fast_path, name, on_change, pool_stats, prepare_fork, preset,
    realloc_medium_fast, remove_callback, remove_domain, set, set_arena_allocator,
    setup_debug_hooks, table_records, trim_pools,
};

/// Routes Rust's global allocations through a domain (usually `MEM`):
///
/// ```
/// use alloc_domains::{GlobalFront, MEM};
///
/// #[global_allocator]
/// static GLOBAL: GlobalFront = GlobalFront::new(MEM);
///
/// fn main() {
///     let v: Vec<u32> = (0..100).collect(); // through the mem domain's allocator
///     assert_eq!(v.len(), 100);
/// }
/// ```
#[cfg(not(loom))]
pub type GlobalFront = alloc_core::AsGlobalAlloc<Domain>;
