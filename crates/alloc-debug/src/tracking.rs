//! Whether a header decorator remembers its blocks: a byte with four states, switched on by
//! `DomainAllocator::track_ownership` (see `claims` for why it is off until asked).
//!
//! ```text
//!   FRESH ──first block made──► UNTRACKED ──track()──► LATE     (track() answers false)
//!     └────────────track()───────────────────────────►  TRACKING (track() answers true)
//! ```
//!
//! `track` answers whether every live block is remembered: true only from `FRESH` (no block was
//! made before). `LATE` remembers every block from then on, like `TRACKING`, and also that blocks
//! made before were not: a block it does not hold may still be one of those. The first block
//! moves `FRESH` to `UNTRACKED` with a compare-exchange, so a block
//! made while `track` runs is either remembered (the exchange failed: `track` came first) or makes
//! `track` answer false. The loom model `loom_models::track_races_the_first_block` checks it.

use crate::sync::{AtomicU8, Ordering};

/// No block made yet, none remembered.
const FRESH: u8 = 0;
/// Blocks were made without being remembered.
const UNTRACKED: u8 = 1;
/// Every block is remembered.
const TRACKING: u8 = 2;
/// Every block made from now on is remembered, but blocks were made before without being.
const LATE: u8 = 3;

pub(crate) struct Tracker {
    state: AtomicU8,
}

impl Tracker {
    /// Off until [`track`](Self::track).
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Tracker {
            state: AtomicU8::new(FRESH),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Tracker {
            state: AtomicU8::new(FRESH),
        }
    }

    /// Makes a new tracker remember every block from the start (for a `const` builder).
    #[cfg(not(loom))]
    pub(crate) const fn track_from_start(&mut self) {
        self.state = AtomicU8::new(TRACKING);
    }

    /// Switches remembering on; returns whether every live block is remembered (no block was made
    /// before while it was off).
    pub(crate) fn track(&self) -> bool {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let next = match cur {
                FRESH | TRACKING => TRACKING,
                _ => LATE,
            };
            // AcqRel: a block made before (its compare-exchange to UNTRACKED) is seen, and blocks
            // made after see TRACKING or LATE.
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return next == TRACKING,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Whether blocks are being remembered.
    #[inline]
    pub(crate) fn is_tracking(&self) -> bool {
        matches!(self.state.load(Ordering::Relaxed), TRACKING | LATE)
    }

    /// Whether every live block is remembered (tracking since before the first block).
    #[inline]
    pub(crate) fn is_complete(&self) -> bool {
        self.state.load(Ordering::Relaxed) == TRACKING
    }

    /// Whether blocks are made without being remembered, and the first was made already: then a
    /// block made now needs nothing from the set (a decorator's fast path).
    #[inline]
    #[cfg_attr(loom, allow(dead_code))] // the decorators are not built under loom
    pub(crate) fn is_untracked(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UNTRACKED
    }

    /// A block is being made: whether it must be remembered.
    #[inline]
    pub(crate) fn made(&self) -> bool {
        match self.state.load(Ordering::Relaxed) {
            TRACKING | LATE => true,
            UNTRACKED => false,
            _ => self.first_made(),
        }
    }

    #[cold]
    fn first_made(&self) -> bool {
        // AcqRel: orders this block against a concurrent `track` (module documentation).
        match self
            .state
            .compare_exchange(FRESH, UNTRACKED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) | Err(UNTRACKED) => false,
            // `track` won: the block is made under tracking.
            Err(_) => true,
        }
    }
}
