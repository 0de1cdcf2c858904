//! Which blocks a decorator made, where its inner allocator cannot tell.
//!
//! A decorator that puts a header before its blocks must answer `owns` exactly, or a domain that
//! routes frees by `owns` could hand it a block it did not make (one its inner allocator made
//! before the decorator was stacked on it). Reading a mark in front of a pointer is not an answer:
//! the bytes may belong to another live block (never written, or being written by another thread).
//! So the decorator remembers every live block it made, here: a set of addresses kept in the C
//! library's memory (never in the decorated allocator, so it cannot recurse), behind a lock that
//! never allocates. It costs a hash insert and remove per block, which is the price of an exact
//! `owns` for a decorator that changes the layout.

use alloc_core::lock::Lock;
use alloc_core::{AsAllocator, System};
use hashbrown::{DefaultHashBuilder, HashSet};

type Set = HashSet<usize, DefaultHashBuilder, AsAllocator<System>>;

fn new_set() -> Set {
    HashSet::with_hasher_in(DefaultHashBuilder::default(), AsAllocator::new(System))
}

pub(crate) struct Claims {
    set: Lock<Option<Set>>,
}

impl Claims {
    pub(crate) const fn new() -> Self {
        Claims {
            set: Lock::new(None),
        }
    }

    /// Remembers `data` as a block of ours. Returns false if the memory for it could not be had
    /// (the caller then gives the block back and fails the allocation).
    pub(crate) fn insert(&self, data: usize) -> bool {
        let mut s = self.set.lock();
        let set = s.get_or_insert_with(new_set);
        set.try_reserve(1).is_ok() && set.insert(data)
    }

    /// Makes room for one more block, so that the next `insert` cannot fail for want of memory
    /// (while no other thread inserts meanwhile); false if the memory could not be had.
    pub(crate) fn reserve_one(&self) -> bool {
        let mut s = self.set.lock();
        s.get_or_insert_with(new_set).try_reserve(1).is_ok()
    }

    /// Forgets `data`; returns whether it was remembered.
    pub(crate) fn remove(&self, data: usize) -> bool {
        self.set.lock().as_mut().is_some_and(|s| s.remove(&data))
    }

    pub(crate) fn contains(&self, data: usize) -> bool {
        self.set.lock().as_ref().is_some_and(|s| s.contains(&data))
    }

    /// Takes the set's lock for a fork (see `DomainAllocator::prepare_fork`).
    pub(crate) fn prepare_fork(&self) {
        self.set.acquire_for_fork();
    }

    /// Releases the lock taken by [`prepare_fork`](Self::prepare_fork).
    ///
    /// # Safety
    /// Only by the thread that called `prepare_fork` (in the child: the one the fork returned in).
    pub(crate) unsafe fn after_fork(&self) {
        // SAFETY: the caller's guarantee: `prepare_fork` took the lock and nothing released it.
        unsafe { self.set.release_after_fork() }
    }
}
