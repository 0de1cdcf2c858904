//! Every atomic and lock of the crate comes from here, so that the cross-thread protocols can be
//! swapped onto loom's types under `cfg(loom)` unchanged.

/// The pool metas' block-start bound (`PoolMeta::start_limit`), kept with 64-bit pointers only.
#[cfg(all(not(loom), target_pointer_width = "64"))]
pub(crate) use core::sync::atomic::AtomicU64;
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering, fence};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicUsize, Ordering, fence};

/// The crate's lock: the workspace's [`Lock`](alloc_core::lock::Lock), whose waiters spin a
/// little, then yield to the OS.
#[cfg(not(loom))]
pub(crate) type SpinLock<T> = alloc_core::lock::Lock<T, SpinThenYield>;

/// How a waiter for a [`SpinLock`] relaxes: 64 CPU pauses, then a yield to the OS each time
/// (a holder may have been preempted; spinning on would only delay it).
#[cfg(not(loom))]
pub(crate) struct SpinThenYield;

#[cfg(not(loom))]
impl alloc_core::lock::Relax for SpinThenYield {
    #[inline]
    fn relax(round: u32) {
        if round < 64 {
            core::hint::spin_loop();
        } else {
            crate::os::yield_now();
        }
    }
}
