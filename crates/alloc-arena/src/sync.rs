//! Every atomic and lock of the crate comes from here, so that the cross-thread protocols can be
//! swapped onto loom's types under `cfg(loom)` unchanged.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering, fence,
};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicUsize, Ordering, fence};

#[cfg(not(loom))]
pub(crate) use spin::SpinLock;

#[cfg(not(loom))]
mod spin {
    use super::{AtomicBool, Ordering};
    use core::cell::UnsafeCell;

    /// A test-and-test-and-set spin lock that never allocates (usable inside a global allocator, from
    /// the first allocation of a process). After a short spin it yields the CPU to the OS.
    pub(crate) struct SpinLock<T> {
        locked: AtomicBool,
        /// Set while held for a fork (see `acquire_for_fork`).
        fork_held: AtomicBool,
        value: UnsafeCell<T>,
    }

    // SAFETY: the lock gives `&mut T` to one thread at a time, so sharing the lock shares `T` only by
    // moving access between threads: `T: Send` is what is needed.
    unsafe impl<T: Send> Sync for SpinLock<T> {}

    impl<T> SpinLock<T> {
        pub(crate) const fn new(value: T) -> Self {
            SpinLock {
                locked: AtomicBool::new(false),
                fork_held: AtomicBool::new(false),
                value: UnsafeCell::new(value),
            }
        }

        /// Runs `f` with exclusive access to the value.
        #[inline]
        pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            self.lock();
            struct Unlock<'a>(&'a AtomicBool);
            impl Drop for Unlock<'_> {
                #[inline]
                fn drop(&mut self) {
                    // Release: publishes every write made under the lock; paired with the Acquire of
                    // the next `lock`.
                    self.0.store(false, Ordering::Release);
                }
            }
            let _unlock = Unlock(&self.locked);
            // SAFETY: the lock is held until `_unlock` drops, so this is the only reference.
            f(unsafe { &mut *self.value.get() })
        }

        /// Takes the lock for a fork handler and keeps it until `release_after_fork`; a second call
        /// for the same fork does nothing (only the forking thread sets the mark).
        pub(crate) fn acquire_for_fork(&self) {
            if self.fork_held.load(Ordering::Relaxed) {
                return;
            }
            self.lock();
            self.fork_held.store(true, Ordering::Relaxed);
        }

        /// Releases a lock taken by `acquire_for_fork`; a second call does nothing.
        ///
        /// # Safety
        /// On the thread that called `acquire_for_fork` (in the child: the one the fork returned in),
        /// not inside `with` on this lock.
        pub(crate) unsafe fn release_after_fork(&self) {
            if !self.fork_held.load(Ordering::Relaxed) {
                return;
            }
            self.fork_held.store(false, Ordering::Relaxed);
            // Release: publishes the holder's writes, as `Unlock` does.
            self.locked.store(false, Ordering::Release);
        }

        #[inline]
        fn lock(&self) {
            // Acquire: sees every write of the previous holder (its Release in `Unlock`).
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
            self.lock_contended();
        }

        #[cold]
        fn lock_contended(&self) {
            let mut spins = 0u32;
            loop {
                while self.locked.load(Ordering::Relaxed) {
                    if spins < 64 {
                        core::hint::spin_loop();
                        spins += 1;
                    } else {
                        crate::os::yield_now();
                    }
                }
                if self
                    .locked
                    .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
            }
        }
    }
}
