//! One allocator installed in a domain (an [`Installed`] record), the chain of records a domain
//! keeps, the routing of a free along it, and the reclamation of records taken out of the table
//! (after a grace period of [`reclaim`](crate::reclaim)). Built under loom too: the models run
//! this code.

use core::ptr::{self, NonNull};
use std::vec::Vec;

use alloc_core::{DomainAllocator, Ownership};

use crate::reclaim::Readers;
use crate::sync::{AtomicU8, Ordering};

/// An allocator a domain can use: any `DomainAllocator` shared between threads for the rest of the
/// program.
pub type DynAllocator = dyn DomainAllocator + Send + Sync;

/// A record's mark while it may be read.
pub(crate) const LIVE: u8 = 0;
/// A record's mark once reclaimed (written just before it is freed): a reader that sees it has
/// read a reclaimed record, which the protocol forbids.
pub(crate) const POISONED: u8 = 0xDE;

/// One allocator installed in a domain.
pub(crate) struct Installed {
    pub(crate) alloc: &'static DynAllocator,
    /// The record this one replaced (null: the first of the chain). Reclaimed no earlier than
    /// this one: a set-back takes records out from the top, a removal takes them all.
    pub(crate) previous: *mut Installed,
    /// Whether the allocator claims the blocks it makes (`owns == Owned`).
    pub(crate) precise: bool,
    /// Whether this is a debug hook put by `setup_debug_hooks`.
    pub(crate) debug_hook: bool,
    /// A debug hook installed before the domain's first allocation: every block of the domain was
    /// made through it, so a block nobody claims is foreign, and goes to it to be reported.
    pub(crate) guards_all: bool,
    /// The allocator forwards every call to the one it replaced and hands out that one's blocks
    /// unchanged (`hook_forwarding`): it makes no block of its own, claims none, and a block of
    /// the allocator below it is freed through it (so the hook sees the free).
    pub(crate) forwards: bool,
    /// Every record of the chain from this one down forwards to the oldest (or this is the
    /// oldest): the current allocator frees every block, with no lookup.
    pub(crate) direct: bool,
    /// Made by `Box` (and so freed once reclaimed); false for the statics.
    pub(crate) heap: bool,
    /// The generation of the domain it was installed in (see `DomainId`).
    pub(crate) generation: u16,
    /// [`LIVE`], or [`POISONED`] once reclaimed.
    pub(crate) mark: AtomicU8,
}

// SAFETY: the raw `previous` pointer is only read (records are immutable once published but for
// `mark`, an atomic); the allocator is `Send + Sync`.
unsafe impl Send for Installed {}
// SAFETY: as above.
unsafe impl Sync for Installed {}

impl Installed {
    /// The record this one replaced.
    #[inline]
    pub(crate) fn previous(&self) -> Option<&Installed> {
        // SAFETY: a record's predecessor is reclaimed no earlier than the record (see the field),
        // so it lives as long as the borrow of `self` (inside a section, or under the writer
        // lock).
        unsafe { self.previous.as_ref() }
    }

    /// Asserts (debug builds and loom) that the record was not reclaimed.
    #[inline(always)]
    pub(crate) fn check(&self) {
        #[cfg(any(debug_assertions, loom))]
        assert_eq!(
            self.mark.load(Ordering::Relaxed),
            LIVE,
            "a reclaimed domain record was read"
        );
    }

    /// The allocator that made `ptr`, by the rule in the `table` module's documentation.
    #[inline]
    pub(crate) fn owner(&self, ptr: *const u8) -> &'static DynAllocator {
        self.check();
        if self.direct {
            self.alloc
        } else {
            self.route(ptr)
        }
    }

    /// The walk of [`owner`](Self::owner) down a chain that does not forward to its oldest.
    #[cold]
    pub(crate) fn route(&self, ptr: *const u8) -> &'static DynAllocator {
        let mut hook: Option<&'static DynAllocator> = None;
        let mut imprecise: Option<&'static DynAllocator> = None;
        let mut oldest = self.alloc;
        // The newest of the forwarding records just above the one being looked at: the allocator
        // a block of that one is freed through.
        let mut through: Option<&'static DynAllocator> = None;
        // The first allocator whose memory holds `ptr` where none of its blocks starts.
        let mut inside: Option<&'static DynAllocator> = None;
        let mut r = Some(self);
        while let Some(rec) = r {
            rec.check();
            r = rec.previous();
            if rec.forwards {
                through = through.or(Some(rec.alloc));
                continue;
            }
            let freer = through.take().unwrap_or(rec.alloc);
            if rec.alloc.owns(ptr) == Ownership::Owned {
                // An allocator's memory may also hold the blocks of a header decorator stacked on
                // it (a debug hook: its blocks start inside the allocator's): a pointer there
                // where none of the allocator's own blocks starts is the decorator's (it claims
                // its live ones, further along), or a bad pointer for a debug hook to report, or
                // for the allocator's own checks.
                if rec.alloc.starts_block(ptr) != Ownership::NotOwned {
                    return freer;
                }
                inside = inside.or(Some(freer));
            }
            if rec.guards_all {
                // Every block of the domain was made through this hook: nothing older made any.
                return freer;
            }
            if rec.debug_hook && hook.is_none() {
                hook = Some(freer);
            }
            if !rec.precise && imprecise.is_none() {
                imprecise = Some(freer);
            }
            oldest = freer;
        }
        match inside {
            // In an allocator's memory, no block of anyone's: never the C library's.
            Some(owner) => hook.unwrap_or(owner),
            None => imprecise.or(hook).unwrap_or(oldest),
        }
    }

    /// `Owned` if an allocator of the chain answers `Owned` to `ask`, else `Unknown` if one
    /// cannot tell, else `NotOwned`.
    pub(crate) fn answer(&self, ask: impl Fn(&DynAllocator) -> Ownership) -> Ownership {
        let mut r = Some(self);
        let mut answer = Ownership::NotOwned;
        while let Some(rec) = r {
            rec.check();
            r = rec.previous();
            if rec.forwards {
                // Its blocks are those of the allocators below.
                continue;
            }
            match ask(rec.alloc) {
                Ownership::Owned => return Ownership::Owned,
                Ownership::Unknown => answer = Ownership::Unknown,
                Ownership::NotOwned => {}
            }
        }
        answer
    }
}

/// A record taken out of the table, waiting for a grace period before it is freed.
pub(crate) struct Retired(NonNull<Installed>);

// SAFETY: a retired record is reachable by no new reader; the pointer only travels to the writer
// that frees it.
unsafe impl Send for Retired {}

/// Adds to `out` the records made by `Box` from `top` down to `to`, not including it (null: to the
/// end of the chain).
///
/// # Safety
/// Under the table's writer lock; `top` is a record no longer reachable from the table (the
/// writer just unpublished it), as is every record down to `to`, and none of them is retired
/// already.
pub(crate) unsafe fn retire(top: *mut Installed, to: *mut Installed, out: &mut Vec<Retired>) {
    let mut r = top;
    while !r.is_null() && !ptr::eq(r, to) {
        // SAFETY: records of a chain are live until retired, and the caller retires these once.
        let rec = unsafe { &*r };
        let next = rec.previous;
        if rec.heap
            && let Some(p) = NonNull::new(r)
        {
            out.push(Retired(p));
        }
        r = next;
    }
}

/// Frees the records of `batch` after a grace period of `readers`; returns them untouched if the
/// grace period could not be had now (see [`Readers::synchronize`]), for a later try.
pub(crate) fn reclaim(readers: &Readers, batch: Vec<Retired>) -> Vec<Retired> {
    if batch.is_empty() || !readers.synchronize() {
        return batch;
    }
    for r in batch {
        // SAFETY: retired (no new section reaches it) and a grace period has passed (no section
        // that reached it is running): nobody reads it any more; each is retired once.
        unsafe { destroy(r) };
    }
    Vec::new()
}

/// Marks a record [`POISONED`] and frees it (under loom, leaks it, so that a model's reader that
/// reads it finds the mark instead of freed memory).
///
/// # Safety
/// Nobody reads the record any more, and it is destroyed once.
unsafe fn destroy(r: Retired) {
    // SAFETY: the caller's guarantee: the record is still allocated.
    unsafe { r.0.as_ref() }
        .mark
        .store(POISONED, Ordering::Relaxed);
    #[cfg(not(loom))]
    // SAFETY: a record with `heap` set was made by `Box::into_raw` (see `table::write::boxed`)
    // and is freed once (the caller's guarantee).
    drop(unsafe { std::boxed::Box::from_raw(r.0.as_ptr()) });
}
