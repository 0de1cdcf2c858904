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

/// Groups of C function names (see [`register_c_names`]).
static C_GROUPS: [AtomicPtr<Prefixes>; MAX_GROUPS] =
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
    add(&GROUPS, group)
}

/// Registers `group`, a static holding C function names that allocate on a program's behalf (a
/// C library's exported `malloc` family, its C API): each matches a name with no `::` path,
/// exactly, or, ending in `*`, as a prefix (`"domalloc_*"`), so that a program's
/// `malloc_wrapper` or a Rust crate named `domalloc_x` stays the program's. Registering the same
/// static again does nothing; returns `false` if the table is full.
///
/// ```
/// static EXPORTS: alloc_core::plumbing::Prefixes = &["my_malloc", "my_api_*"];
/// assert!(alloc_core::plumbing::register_c_names(&EXPORTS));
/// assert!(alloc_core::plumbing::is_plumbing("my_malloc"));
/// assert!(alloc_core::plumbing::is_plumbing("my_api_trace"));
/// assert!(!alloc_core::plumbing::is_plumbing("my_malloc_wrapper"));
/// assert!(!alloc_core::plumbing::is_plumbing("my_api_x::run"));
/// ```
pub fn register_c_names(group: &'static Prefixes) -> bool {
    add(&C_GROUPS, group)
}

fn add(table: &[AtomicPtr<Prefixes>; MAX_GROUPS], group: &'static Prefixes) -> bool {
    let want = ptr::from_ref(group).cast_mut();
    for slot in table {
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
/// implementation's name is passed over), or is a registered C name.
pub fn is_plumbing(name: &str) -> bool {
    let path = name.trim_start_matches('<');
    if any_in(&GROUPS, |p| path.starts_with(p)) {
        return true;
    }
    !name.contains("::")
        && any_in(&C_GROUPS, |c| match c.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == c,
        })
}

/// Whether an entry of a group registered in `table` satisfies `hit`.
fn any_in(table: &[AtomicPtr<Prefixes>; MAX_GROUPS], hit: impl Fn(&str) -> bool) -> bool {
    table.iter().any(|slot| {
        let g = slot.load(Ordering::Acquire);
        // SAFETY: a non-null slot holds a pointer made from a `&'static Prefixes` by `add`.
        !g.is_null() && unsafe { *g }.iter().any(|p| hit(p))
    })
}
