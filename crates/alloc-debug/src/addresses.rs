//! A table of what is known about code addresses, filled in by any thread and never cleared: the
//! lock-free protocol under Tracing's capture (`tracing/stack.rs` keeps one static table of return
//! addresses, their class and their unwind rule).
//!
//! Open addressing, two words a slot: the address (0: empty), claimed with a compare-exchange and
//! never changed after, and what is known of it, bits set with `fetch_or` as they are learned.
//! Every bit is a function of the address alone, so threads learning the same fact at once set the
//! same bits, and a slot's word never holds bits learned for another address. A probe goes the
//! same way from the address's home for every thread, so an address is in one slot at most: the
//! first empty slot two threads meet for it, one of them claims, and the other sees it there.
//! Past [`PROBES`] slots taken by others, there is no slot for the address (the caller knows it
//! without a table, as it would the first time).

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// Slots a lookup tries from an address's home before giving up.
pub(crate) const PROBES: usize = 16;

/// One address and what is known of it.
pub(crate) struct Slot {
    addr: AtomicUsize,
    known: AtomicU64,
}

impl Slot {
    /// What is known of the slot's address (0: nothing yet).
    #[inline]
    pub(crate) fn known(&self) -> u64 {
        // Relaxed: a word complete in itself, of facts about the address alone.
        self.known.load(Ordering::Relaxed)
    }

    /// Adds `bits`, facts about the slot's address, to what is known of it.
    pub(crate) fn learn(&self, bits: u64) {
        self.known.fetch_or(bits, Ordering::Relaxed);
    }
}

/// `SLOTS` slots (a power of two).
pub(crate) struct Addresses<const SLOTS: usize> {
    slots: [Slot; SLOTS],
}

impl<const SLOTS: usize> Addresses<SLOTS> {
    /// An empty table (for a `static`).
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        assert!(SLOTS.is_power_of_two());
        Addresses {
            slots: [const {
                Slot {
                    addr: AtomicUsize::new(0),
                    known: AtomicU64::new(0),
                }
            }; SLOTS],
        }
    }

    /// An empty table (loom's atomics are not built in `const` context).
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        assert!(SLOTS.is_power_of_two());
        Addresses {
            slots: core::array::from_fn(|_| Slot {
                addr: AtomicUsize::new(0),
                known: AtomicU64::new(0),
            }),
        }
    }

    /// Where the probe for `addr` begins.
    #[inline]
    pub(crate) fn home(addr: usize) -> usize {
        ((addr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize & (SLOTS - 1)
    }

    /// The slot of `addr` (nonzero), claimed for it if it had none; `None` past the probes.
    #[inline]
    pub(crate) fn slot(&self, addr: usize) -> Option<&Slot> {
        let start = Self::home(addr);
        let first = &self.slots[start];
        // Relaxed: the address is one word, complete when seen (and what the slot knows is
        // another, read on its own).
        if first.addr.load(Ordering::Relaxed) == addr && addr != 0 {
            return Some(first);
        }
        self.probe(addr, start)
    }

    /// [`slot`](Self::slot) past the home slot.
    #[inline(never)]
    fn probe(&self, addr: usize, start: usize) -> Option<&Slot> {
        if addr == 0 {
            return None;
        }
        for k in 0..PROBES.min(SLOTS) {
            let slot = &self.slots[(start + k) & (SLOTS - 1)];
            let seen = slot.addr.load(Ordering::Relaxed);
            if seen == addr {
                return Some(slot);
            }
            if seen == 0 {
                match slot
                    .addr
                    .compare_exchange(0, addr, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => return Some(slot),
                    Err(e) if e == addr => return Some(slot),
                    Err(_) => {}
                }
            }
        }
        None
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn an_address_keeps_its_slot_and_its_facts() {
        let t = Addresses::<4>::new();
        let a = t.slot(0x1000).expect("room");
        a.learn(0b01);
        a.learn(0b10);
        let b = t.slot(0x2000).expect("room");
        assert!(!core::ptr::eq(a, b));
        assert_eq!(b.known(), 0);
        assert!(core::ptr::eq(t.slot(0x1000).unwrap(), a));
        assert_eq!(a.known(), 0b11);
        assert!(t.slot(0).is_none(), "0 marks an empty slot");
        t.slot(0x3000).unwrap();
        t.slot(0x4000).unwrap();
        assert!(
            t.slot(0x5000).is_none(),
            "a full table has no slot for a new address"
        );
        assert!(core::ptr::eq(t.slot(0x2000).unwrap(), b));
    }
}
