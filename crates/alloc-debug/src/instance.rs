//! Numbers for decorator instances, so that per-thread state (a batch of serials, a cache of
//! interned tracebacks) can name the decorator it belongs to: an address would not do, since a
//! dropped decorator's successor can take its place.

use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A decorator's number: given on first use, never 0, never given twice in a process.
pub(crate) struct InstanceId(AtomicU64);

impl InstanceId {
    pub(crate) const fn new() -> Self {
        InstanceId(AtomicU64::new(0))
    }

    /// The number if it was given, else 0.
    #[inline(always)]
    pub(crate) fn peek(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// The number, given now if this is the first call.
    #[inline]
    pub(crate) fn get(&self) -> u64 {
        let id = self.0.load(Ordering::Relaxed);
        if id != 0 {
            return id;
        }
        self.give()
    }

    #[cold]
    fn give(&self) -> u64 {
        let fresh = NEXT.fetch_add(1, Ordering::Relaxed);
        match self
            .0
            .compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => fresh,
            Err(winner) => winner,
        }
    }
}
