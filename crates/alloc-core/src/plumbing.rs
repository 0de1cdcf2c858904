//! The frames that allocate on a program's behalf, registered by the crates that own them.
//!
//! A tracing decorator skips the allocator's own frames when it records where a block was made
//! (tracemalloc shows the program's line, not the allocator's). Which functions those are is
//! known to the crate that defines them, not to the tracer: each crate above the tracer (the
//! pools, the domain table, a benchmark harness) registers its function-name prefixes here, once,
//! before its first block is made, and the tracer asks [`is_plumbing`]. The tracer itself knows
//! only the crates below it (this one, the standard library's allocation paths).
//!
//! Registering never allocates (a fixed table of [`MAX_GROUPS`] slots) and is safe from any
//! thread at any time; a tracer that classified a frame before its crate registered keeps that
//! answer, which is why crates register before their first block.

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

/// A crate's prefixes, as registered: a static slice of function-name prefixes
/// (`"alloc_arena::"`).
pub type Prefixes = &'static [&'static str];

/// The most groups of prefixes that can be registered.
pub const MAX_GROUPS: usize = 16;

static GROUPS: [AtomicPtr<Prefixes>; MAX_GROUPS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_GROUPS];

/// Registers `group`, a static holding a crate's function-name prefixes; registering the same
/// static again does nothing. Returns `false` if the table is full.
///
/// ```
/// static MINE: alloc_core::plumbing::Prefixes = &["my_allocator::"];
/// assert!(alloc_core::plumbing::register(&MINE));
/// assert!(alloc_core::plumbing::is_plumbing("my_allocator::Pool::malloc"));
/// ```
pub fn register(group: &'static Prefixes) -> bool {
    let want = ptr::from_ref(group).cast_mut();
    for slot in &GROUPS {
        // Acquire: a group read here was published whole (it is a static; the store publishes it).
        let cur = slot.load(Ordering::Acquire);
        if cur == want {
            return true;
        }
        if cur.is_null() {
            match slot.compare_exchange(cur, want, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) if now == want => return true,
                Err(_) => continue,
            }
        }
    }
    false
}

/// Whether function `name` starts with a registered prefix (a leading `<` of a trait
/// implementation's name is passed over).
pub fn is_plumbing(name: &str) -> bool {
    let name = name.trim_start_matches('<');
    GROUPS.iter().any(|slot| {
        let g = slot.load(Ordering::Acquire);
        // SAFETY: a non-null slot holds a pointer made from a `&'static Prefixes` by `register`.
        !g.is_null() && unsafe { *g }.iter().any(|p| name.starts_with(p))
    })
}
