//! Fork: every lock an allocation can hold is taken before `fork()` and released after it.

use super::*;

// Fork: take every lock an allocation can hold, so that the child does not inherit one held by a
// thread it does not have.

/// Calls `f` on every allocator installed in any domain, current or kept for its blocks, newest
/// first; an allocator installed twice is reached twice (fork handling is idempotent for that).
/// Only while the writer lock is held for the fork (records reachable from the table are freed
/// only after being taken out of it under that lock).
pub(super) fn for_each_installed(mut f: impl FnMut(&'static DynAllocator)) {
    for s in &TABLE {
        // Acquire: pairs with the Release that published the record.
        let p = s.current.load(Ordering::Acquire);
        // SAFETY: the writer lock is held (see above), so the record is not freed meanwhile.
        let mut r = unsafe { p.as_ref() };
        while let Some(rec) = r {
            f(rec.alloc);
            r = rec.previous();
        }
    }
}

/// Fork support for a process whose allocations go through the domains: call it in the parent
/// just before `fork()` (a `pthread_atfork` prepare handler). It takes the table's writer lock,
/// then asks every installed allocator to take its own locks
/// ([`DomainAllocator::prepare_fork`](alloc_core::DomainAllocator::prepare_fork)), so that the
/// child does not inherit a lock held by a thread that does not exist there.
pub fn prepare_fork() {
    WRITER.acquire_for_fork();
    // The records waiting for a grace period (a writer takes it after `WRITER`, or alone).
    PENDING.acquire_for_fork();
    // A domain's first allocation holds it (briefly, alone).
    GATE.acquire_for_fork();
    for_each_installed(|a| a.prepare_fork());
    // Last: the standard pools' arena sources, leaf locks their arena acquisitions hold (the
    // mem pool's reservation after its source: a source calls its provider after its own lock
    // was released, and never holds both).
    ARENAS.prepare_fork();
    POOL_ARENAS.prepare_fork();
    RESERVED.prepare_fork();
}

/// Fork support, in the parent after `fork()`: releases what [`prepare_fork`] took.
///
/// # Safety
/// Only on the thread that called [`prepare_fork`], after it.
pub unsafe fn after_fork_parent() {
    // SAFETY: taken by `prepare_fork` on this thread (the caller's guarantee).
    unsafe {
        RESERVED.after_fork();
        POOL_ARENAS.after_fork_parent();
        ARENAS.after_fork_parent();
    }
    // SAFETY: the caller's guarantee, which is each allocator's.
    for_each_installed(|a| unsafe { a.after_fork_parent() });
    // SAFETY: `prepare_fork` took them on this thread.
    unsafe {
        GATE.release_after_fork();
        PENDING.release_after_fork();
        WRITER.release_after_fork();
    }
}

/// Fork support, in the child after `fork()`: releases what [`prepare_fork`] took in the parent
/// and leaves every domain usable by the child's only thread.
///
/// # Safety
/// Only in the child of a `fork()` whose parent called [`prepare_fork`] just before, on the
/// thread the fork returned in.
pub unsafe fn after_fork_child() {
    // The parent's other threads do not exist here: their announcement slots are given back (one
    // may have been inside a section), and the barrier registration, which a child does not
    // inherit, is made again.
    crate::os::membarrier::init();
    // SAFETY: in the child of a fork, on its only thread (the caller's guarantee).
    unsafe { READERS.after_fork_child() };
    // SAFETY: taken by the parent's `prepare_fork` (the caller's guarantee).
    unsafe {
        RESERVED.after_fork();
        POOL_ARENAS.after_fork_child();
        ARENAS.after_fork_child();
    }
    // SAFETY: the caller's guarantee, which is each allocator's.
    for_each_installed(|a| unsafe { a.after_fork_child() });
    // SAFETY: `prepare_fork` took them in the parent, on the thread that continues here.
    unsafe {
        GATE.release_after_fork();
        PENDING.release_after_fork();
        WRITER.release_after_fork();
    }
}
