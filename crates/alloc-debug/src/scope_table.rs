//! The slot table behind [`Scope`](crate::Scope): how a scope claims a slot and how its holders
//! (the scope, its handles and the guards entered on threads) keep it, and the counters that
//! entered threads update. Apart from the per-thread stacks of entered scopes (`scope.rs`), so
//! that the loom models (`loom_models.rs`) run this code on a table of their own.
//!
//! A slot is free while its holder count is 0. A scope claims a free slot by moving the count
//! from 0 to 1 (a compare-exchange: two scopes opened at once never share a slot), then zeroes
//! the counters. Each further holder adds one; each holder gone takes one away (Release), so
//! the counts a holder's threads made come before the reset of the next scope to claim the slot
//! (whose claim is an Acquire). Entered threads count with read-modify-writes, so no count is
//! lost however many count at once.

use crate::sync::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// One scope's counters.
pub(crate) struct Slot {
    /// Holders: the scope, its handles and their guards; 0 while the slot is free.
    refs: AtomicUsize,
    allocations: AtomicU64,
    frees: AtomicU64,
    reallocs: AtomicU64,
    failures: AtomicU64,
    bytes_allocated: AtomicU64,
    bytes_freed: AtomicU64,
    current: AtomicI64,
    peak: AtomicI64,
}

/// A slot's counters, read one after another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) allocations: u64,
    pub(crate) frees: u64,
    pub(crate) reallocs: u64,
    pub(crate) failures: u64,
    pub(crate) bytes_allocated: u64,
    pub(crate) bytes_freed: u64,
    /// Bytes allocated minus bytes freed.
    pub(crate) current: i64,
    /// The most `current` was (0 at the claim).
    pub(crate) peak: i64,
}

impl Slot {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Slot {
            refs: AtomicUsize::new(0),
            allocations: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            reallocs: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            bytes_allocated: AtomicU64::new(0),
            bytes_freed: AtomicU64::new(0),
            current: AtomicI64::new(0),
            peak: AtomicI64::new(0),
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Slot {
            refs: AtomicUsize::new(0),
            allocations: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            reallocs: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            bytes_allocated: AtomicU64::new(0),
            bytes_freed: AtomicU64::new(0),
            current: AtomicI64::new(0),
            peak: AtomicI64::new(0),
        }
    }

    /// One more holder of this held slot.
    pub(crate) fn hold(&self) {
        self.refs.fetch_add(1, Ordering::Relaxed);
    }

    /// One holder fewer; the last one frees the slot.
    pub(crate) fn release(&self) {
        // Release: the counts this holder's threads made come before a later claim's reset.
        self.refs.fetch_sub(1, Ordering::Release);
    }

    /// An allocation of `bytes` made (or, for `made == false`, refused) in the scope.
    pub(crate) fn allocated(&self, made: bool, bytes: usize) {
        if made {
            self.allocations.fetch_add(1, Ordering::Relaxed);
            self.bytes_allocated
                .fetch_add(bytes as u64, Ordering::Relaxed);
            self.moved(bytes as i64);
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A free of a block of `bytes` in the scope.
    pub(crate) fn freed(&self, bytes: usize) {
        self.frees.fetch_add(1, Ordering::Relaxed);
        self.bytes_freed.fetch_add(bytes as u64, Ordering::Relaxed);
        self.moved(-(bytes as i64));
    }

    /// A realloc from `old` to `new` bytes (`made == false`: refused) in the scope.
    pub(crate) fn reallocated(&self, made: bool, old: usize, new: usize) {
        if !made {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.reallocs.fetch_add(1, Ordering::Relaxed);
        if new >= old {
            self.bytes_allocated
                .fetch_add((new - old) as u64, Ordering::Relaxed);
        } else {
            self.bytes_freed
                .fetch_add((old - new) as u64, Ordering::Relaxed);
        }
        self.moved(new as i64 - old as i64);
    }

    /// The scope holds `delta` bytes more (or fewer); the peak follows.
    fn moved(&self, delta: i64) {
        let now = self
            .current
            .fetch_add(delta, Ordering::Relaxed)
            .wrapping_add(delta);
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn reset(&self) {
        for c in [
            &self.allocations,
            &self.frees,
            &self.reallocs,
            &self.failures,
            &self.bytes_allocated,
            &self.bytes_freed,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.current.store(0, Ordering::Relaxed);
        self.peak.store(0, Ordering::Relaxed);
    }

    /// The counters now.
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            allocations: self.allocations.load(Ordering::Relaxed),
            frees: self.frees.load(Ordering::Relaxed),
            reallocs: self.reallocs.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            bytes_allocated: self.bytes_allocated.load(Ordering::Relaxed),
            bytes_freed: self.bytes_freed.load(Ordering::Relaxed),
            current: self.current.load(Ordering::Relaxed),
            peak: self.peak.load(Ordering::Relaxed),
        }
    }
}

/// `N` scope slots.
pub(crate) struct Table<const N: usize> {
    slots: [Slot; N],
}

impl<const N: usize> Table<N> {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Table {
            slots: [const { Slot::new() }; N],
        }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Table {
            slots: core::array::from_fn(|_| Slot::new()),
        }
    }

    /// Claims a free slot for a new scope, its one holder, its counters at zero; `None` if every
    /// slot is held.
    pub(crate) fn claim(&self) -> Option<usize> {
        self.slots.iter().position(|s| {
            // Acquire: the last holder's release (its drop) comes before this reset.
            let claimed = s.refs.load(Ordering::Relaxed) == 0
                && s.refs
                    .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok();
            if claimed {
                s.reset();
            }
            claimed
        })
    }

    /// Slot `i`.
    pub(crate) fn slot(&self, i: usize) -> &Slot {
        &self.slots[i]
    }
}
