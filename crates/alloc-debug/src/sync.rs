//! The atomics of the lock-free protocols modelled under loom (`tally`, `tracking`, `addresses`,
//! `guard_slots`, `scope_table`) come from
//! here: std's normally, loom's under `cfg(loom)`, so that `cargo xtask loom` checks the crate's
//! own code.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{
    AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};

/// A retry loop's pause: the processor's spin hint; under loom, a yield, so that the model
/// schedules the thread the loop waits for.
#[inline]
pub(crate) fn spin() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}
