//! A lock for allocator crates: never allocates, works from the first allocation of a process, and
//! needs nothing but `core` (a flag taken by compare-exchange; a waiter spins).
//!
//! For short critical sections off the fast paths (a table of domains, a list of reports): a
//! waiter spins rather than sleeping, because an allocator may be running where nothing else is
//! available yet.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// A spin lock around a `T`.
///
/// ```
/// use alloc_core::lock::Lock;
///
/// static COUNT: Lock<u32> = Lock::new(0);
/// *COUNT.lock() += 1;
/// assert_eq!(*COUNT.lock(), 1);
/// ```
pub struct Lock<T> {
    held: AtomicBool,
    /// Set while held by [`Lock::acquire_for_fork`]: makes taking and releasing for a fork
    /// idempotent, so a fork handler may reach the same lock through two paths (one allocator
    /// wrapped by two decorators) without deadlocking on itself.
    fork_held: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a `Held` guard, by one thread at a time.
unsafe impl<T: Send> Sync for Lock<T> {}

/// Exclusive access to the value of a [`Lock`]; released on drop.
pub struct Held<'a, T>(&'a Lock<T>);

impl<T> Lock<T> {
    /// A lock around `value`.
    pub const fn new(value: T) -> Self {
        Lock {
            held: AtomicBool::new(false),
            fork_held: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Waits for the lock (spinning) and returns exclusive access.
    pub fn lock(&self) -> Held<'_, T> {
        // Acquire: sees what the previous holder wrote before its Release in `Held::drop`.
        while self
            .held
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.held.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
        Held(self)
    }

    /// Takes the lock if it is free now; `None` (at once) if another holder has it.
    pub fn try_lock(&self) -> Option<Held<'_, T>> {
        // Acquire: as in `lock`.
        self.held
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            .then_some(Held(self))
    }
}

impl<T> Lock<T> {
    /// Takes the lock with no guard, for a fork handler: it stays held until
    /// [`release_after_fork`](Self::release_after_fork). Taking it again for the same fork does
    /// nothing (the fork handler runs on one thread, which is the only one that sets the mark).
    pub fn acquire_for_fork(&self) {
        if self.fork_held.load(Ordering::Relaxed) {
            return;
        }
        core::mem::forget(self.lock());
        self.fork_held.store(true, Ordering::Relaxed);
    }

    /// Releases a lock taken by [`acquire_for_fork`](Self::acquire_for_fork), in the parent or in
    /// the child of the fork; releasing it again does nothing.
    ///
    /// # Safety
    /// Called by the thread that called `acquire_for_fork` (in the child: the thread the fork
    /// returned in), while no guard of this lock is alive on that thread.
    pub unsafe fn release_after_fork(&self) {
        if !self.fork_held.load(Ordering::Relaxed) {
            return;
        }
        self.fork_held.store(false, Ordering::Relaxed);
        // Release: publishes what the holder wrote, as `Held::drop` does.
        self.held.store(false, Ordering::Release);
    }
}

impl<T> Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.0.value.get() }
    }
}

impl<T> DerefMut for Held<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, and `&mut self` makes this the only reference.
        unsafe { &mut *self.0.value.get() }
    }
}

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        // Release: publishes what the holder wrote; paired with the next `lock`'s Acquire.
        self.0.held.store(false, Ordering::Release);
    }
}
