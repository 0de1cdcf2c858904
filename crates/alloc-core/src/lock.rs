//! The workspace's lock: never allocates, works from the first allocation of a process, and needs
//! nothing but `core` (a flag taken by compare-exchange; a waiter spins).
//!
//! For short critical sections off the fast paths (a table of domains, a list of reports, a cache
//! of spans): a waiter does not sleep on a kernel object, because an allocator may be running where
//! nothing else is available yet. What a waiter does between two looks at the flag is the lock's
//! [`Relax`] strategy: [`Spin`] (a CPU pause, the default) here, where there is no OS; a crate
//! that has one may pass a strategy that yields to it after a short spin.
//!
//! Both ways in take the flag the same way: one compare-exchange inline, the wait out of line.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// What a waiter for a [`Lock`] does each time it finds the lock held.
pub trait Relax {
    /// Waits a little; `round` counts the calls made so far during this wait (from 0, saturating).
    fn relax(round: u32);
}

/// The default [`Relax`]: a CPU pause (`core::hint::spin_loop`) every time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spin;

impl Relax for Spin {
    #[inline]
    fn relax(_round: u32) {
        core::hint::spin_loop();
    }
}

/// A spin lock around a `T`, whose waiters relax with `R`.
///
/// ```
/// use alloc_core::lock::Lock;
///
/// static COUNT: Lock<u32> = Lock::new(0);
/// *COUNT.lock() += 1;
/// assert_eq!(COUNT.with(|c| *c), 1);
/// ```
pub struct Lock<T, R: Relax = Spin> {
    held: AtomicBool,
    /// Set while held by [`Lock::acquire_for_fork`]: makes taking and releasing for a fork
    /// idempotent, so a fork handler may reach the same lock through two paths (one allocator
    /// wrapped by two decorators) without deadlocking on itself.
    fork_held: AtomicBool,
    value: UnsafeCell<T>,
    /// The strategy is a type, never a value: `fn() -> R` keeps the lock `Send` / `Sync`
    /// whatever `R` is.
    relax: PhantomData<fn() -> R>,
}

// SAFETY: the value is reached only through a `Held` guard, by one thread at a time, so sharing
// the lock only moves access to `T` between threads: `T: Send` is what is needed.
unsafe impl<T: Send, R: Relax> Sync for Lock<T, R> {}

/// Exclusive access to the value of a [`Lock`]; released on drop.
pub struct Held<'a, T, R: Relax = Spin>(&'a Lock<T, R>);

impl<T, R: Relax> Lock<T, R> {
    /// A lock around `value`.
    pub const fn new(value: T) -> Self {
        Lock {
            held: AtomicBool::new(false),
            fork_held: AtomicBool::new(false),
            value: UnsafeCell::new(value),
            relax: PhantomData,
        }
    }

    /// Waits for the lock and returns exclusive access.
    #[inline]
    pub fn lock(&self) -> Held<'_, T, R> {
        // Acquire: sees what the previous holder wrote before its Release in `Held::drop`.
        if self
            .held
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
        Held(self)
    }

    /// `lock` when the flag was not free at once: relaxes with `R` while the lock is held, then
    /// tries again.
    #[cold]
    #[inline(never)]
    fn lock_slow(&self) {
        let mut round = 0u32;
        loop {
            while self.held.load(Ordering::Relaxed) {
                R::relax(round);
                round = round.saturating_add(1);
            }
            // Acquire: as in `lock`.
            if self
                .held
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Runs `f` with exclusive access to the value.
    #[inline]
    pub fn with<U>(&self, f: impl FnOnce(&mut T) -> U) -> U {
        f(&mut self.lock())
    }

    /// Takes the lock if it is free now; `None` (at once) if another holder has it.
    pub fn try_lock(&self) -> Option<Held<'_, T, R>> {
        // Acquire: as in `lock`.
        self.held
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            .then_some(Held(self))
    }

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
    /// returned in), while no guard of this lock is alive on that thread (nor a call of `with`).
    pub unsafe fn release_after_fork(&self) {
        if !self.fork_held.load(Ordering::Relaxed) {
            return;
        }
        self.fork_held.store(false, Ordering::Relaxed);
        // Release: publishes what the holder wrote, as `Held::drop` does.
        self.held.store(false, Ordering::Release);
    }
}

impl<T, R: Relax> Deref for Held<'_, T, R> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.0.value.get() }
    }
}

impl<T, R: Relax> DerefMut for Held<'_, T, R> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, and `&mut self` makes this the only reference.
        unsafe { &mut *self.0.value.get() }
    }
}

impl<T, R: Relax> Drop for Held<'_, T, R> {
    #[inline]
    fn drop(&mut self) {
        // Release: publishes what the holder wrote; paired with the next `lock`'s Acquire.
        self.0.held.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::sync::atomic::AtomicU32;

    /// Counts the rounds a waiter relaxed, so the test can see the strategy is the one called.
    static ROUNDS: AtomicU32 = AtomicU32::new(0);

    struct Counted;

    impl Relax for Counted {
        fn relax(round: u32) {
            ROUNDS.fetch_max(round + 1, Ordering::Relaxed);
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_waiter_relaxes_with_the_lock_s_strategy_and_gets_the_value_after_the_holder() {
        let lock: Lock<u32, Counted> = Lock::new(0);
        let held = lock.lock();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| lock.with(|v| *v));
            while ROUNDS.load(Ordering::Relaxed) < 3 {
                std::thread::yield_now();
            }
            drop({
                let mut held = held;
                *held = 7;
                held
            });
            assert_eq!(waiter.join().unwrap(), 7);
        });
        assert!(ROUNDS.load(Ordering::Relaxed) >= 3);
    }

    #[test]
    fn taking_for_a_fork_twice_holds_once_and_releasing_twice_releases_once() {
        let lock: Lock<u8> = Lock::new(1);
        lock.acquire_for_fork();
        lock.acquire_for_fork();
        assert!(lock.try_lock().is_none());
        // SAFETY: this thread took it for the fork and holds no guard.
        unsafe {
            lock.release_after_fork();
            lock.release_after_fork();
        }
        assert_eq!(lock.try_lock().map(|v| *v), Some(1));
        assert_eq!(lock.with(|v| *v), 1);
    }
}
