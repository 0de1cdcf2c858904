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
//!
//! **The fast key.** A decorator's fast path must know two things before it counts a block with
//! no call: that no block needs remembering (`UNTRACKED`), and that the thread's own counters
//! are at hand (a per-thread note naming the decorator). The tracker keeps a key, a copy of the
//! decorator's number that is nonzero only while the state is `UNTRACKED`, so that one compare
//! of the thread's note against the key answers both. [`open_fast`](Tracker::open_fast) sets it
//! and then looks at the state again with a read-modify-write (releasing the key), and
//! [`track`](Tracker::track) changes the state with its own (acquiring) and then clears the key:
//! whichever comes last, a tracker that tracks ends with the key at 0
//! (`loom_models::track_races_the_fast_key`). A fast path that read the key
//! just before `track` made a block that is not remembered, as one that read `UNTRACKED` would:
//! `track` answers false for it (`LATE`).

use crate::sync::{AtomicU8, AtomicU64, Ordering};

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
    /// The fast key: the decorator's number while `UNTRACKED` and opened, else 0 (module
    /// documentation).
    key: AtomicU64,
}

impl Tracker {
    /// Off until [`track`](Self::track).
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Tracker {
            state: AtomicU8::new(FRESH),
            key: AtomicU64::new(0),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Tracker {
            state: AtomicU8::new(FRESH),
            key: AtomicU64::new(0),
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
            // made after see TRACKING or LATE; so is an `open_fast` whose second look came
            // before (its key stored before this clears it).
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.key.store(0, Ordering::Relaxed);
                    return next == TRACKING;
                }
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

    /// The fast key: nonzero (the number given to [`open_fast`](Self::open_fast)) only while no
    /// block needs remembering, 0 otherwise. One load, for a fast path that compares it with the
    /// thread's note.
    #[inline(always)]
    pub(crate) fn fast_key(&self) -> u64 {
        self.key.load(Ordering::Relaxed)
    }

    /// Opens the fast path under `key` (a decorator's number, never 0) if blocks are made without
    /// being remembered now; a [`track`](Self::track) racing it leaves the key at 0.
    pub(crate) fn open_fast(&self, key: u64) {
        debug_assert_ne!(key, 0);
        if self.state.load(Ordering::Acquire) != UNTRACKED
            || self.key.load(Ordering::Relaxed) == key
        {
            return;
        }
        self.key.store(key, Ordering::Relaxed);
        // The state looked at again by a read-modify-write, which reads the latest state and
        // releases the store above: a `track` whose exchange comes after it acquires it, so its
        // clearing of the key comes after the store; one whose exchange came before makes this
        // one fail, and the key is cleared here.
        if self
            .state
            .compare_exchange(UNTRACKED, UNTRACKED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            self.key.store(0, Ordering::Relaxed);
        }
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
