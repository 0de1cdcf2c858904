//! The atomics of the record-reclamation protocol (`reclaim`, `record`) come from here: core's
//! normally, loom's under `cfg(loom)`, so that the loom models (`cargo xtask loom`) check the
//! crate's own code.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence,
};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence,
};

/// A wait loop's pause: the processor's spin hint, then the OS's yield; under loom, a yield, so
/// that the model schedules the thread the loop waits for.
#[inline]
pub(crate) fn spin(round: u32) {
    #[cfg(not(loom))]
    if round < 64 {
        core::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
    #[cfg(loom)]
    {
        let _ = round;
        loom::thread::yield_now();
    }
}
