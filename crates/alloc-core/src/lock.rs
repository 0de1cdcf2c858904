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
