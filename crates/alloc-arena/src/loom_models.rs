//! loom models of every protocol in `remote`, and of the registry's leaf publication (alloc-core's
//! `chunk_map::publish_once`), built and run only with `--cfg loom` (`cargo xtask
//! loom` runs them with loom's default bounds, and the default test run a bounded set, see
//! `benches/tests/loom.rs`). Each model runs the crate's own protocol code on loom's atomics; blocks and
//! pools are small structs whose links are loom cells, so a link read without the right
//! happens-before edge is reported as a data race.

use std::boxed::Box;
use std::ptr;
use std::vec::Vec;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::AtomicUsize;
use loom::thread;

use crate::remote::{
    NotifyStack, Owner, PushList, RemoteList, RemotePool, push_remote, run_unowned, take_remote,
};
use crate::sync::{AtomicPtr, Ordering};
use alloc_core::chunk_map::publish_once;

/// A free block: its first word is the link, as in a pool.
#[repr(C, align(16))]
struct Block {
    next: UnsafeCell<*mut u8>,
}

fn block() -> *mut u8 {
    Box::into_raw(Box::new(Block {
        next: UnsafeCell::new(ptr::null_mut()),
    }))
    .cast()
}

/// # Safety
/// `b` is a block from `block()`.
unsafe fn set_next(b: *mut u8, next: *mut u8) {
    // SAFETY: the caller's guarantee; loom checks the write is not racing a read.
    unsafe { (*b.cast::<Block>()).next.with_mut(|p| *p = next) }
}

/// # Safety
/// `b` is a block from `block()`.
unsafe fn next_of(b: *mut u8) -> *mut u8 {
    // SAFETY: the caller's guarantee.
    unsafe { (*b.cast::<Block>()).next.with(|p| *p) }
}

/// A pool: its remote list, its link on the notification stack, and the list's last block.
struct Pool {
    remote: RemoteList,
    notify_next: UnsafeCell<*mut Pool>,
    remote_tail: UnsafeCell<*mut u8>,
}

// The pool allocator's protocol functions (`push_remote`, `take_remote`) run on this pool.
impl RemotePool for Pool {
    unsafe fn remote<'a>(pool: *mut Self) -> &'a RemoteList {
        // SAFETY: the caller's guarantee: a live pool.
        unsafe { &(*pool).remote }
    }
    unsafe fn set_notify_next(pool: *mut Self, next: *mut Self) {
        // SAFETY: the caller's guarantee; loom checks the write races no read.
        unsafe { (*pool).notify_next.with_mut(|n| *n = next) }
    }
    unsafe fn notify_next(pool: *mut Self) -> *mut Self {
        // SAFETY: as above.
        unsafe { (*pool).notify_next.with(|n| *n) }
    }
    unsafe fn set_remote_tail(pool: *mut Self, tail: *mut u8) {
        // SAFETY: as above.
        unsafe { (*pool).remote_tail.with_mut(|t| *t = tail) }
    }
    unsafe fn remote_tail(pool: *mut Self) -> *mut u8 {
        // SAFETY: as above.
        unsafe { (*pool).remote_tail.with(|t| *t) }
    }
}

struct Heap {
    owner: Owner,
    notify: NotifyStack<Pool>,
    pools: [Pool; 2],
}

// SAFETY: the raw pointers inside are only followed under the protocols being modelled.
unsafe impl Send for Heap {}
// SAFETY: as above.
unsafe impl Sync for Heap {}

impl Heap {
    fn new(owner: usize) -> Self {
        let pool = || Pool {
            remote: RemoteList::new(),
            notify_next: UnsafeCell::new(ptr::null_mut()),
            remote_tail: UnsafeCell::new(ptr::null_mut()),
        };
        Heap {
            owner: Owner::new(owner),
            notify: NotifyStack::new(),
            pools: [pool(), pool()],
        }
    }

    /// The remote free of `b` into pool `i` (`PoolAllocator::free_remote`'s protocol call);
    /// returns whether the freer must collect the heap (it was unowned after the notification).
    fn remote_free(&self, i: usize, b: usize) -> bool {
        self.send_home(i, &[b])
    }

    /// Blocks `bs` of pool `i` sent home as one chain, as a bin's flush does
    /// (`PoolCore::send_home`'s protocol call): linked first, then pushed at once.
    fn send_home(&self, i: usize, bs: &[usize]) -> bool {
        let pool = &self.pools[i] as *const Pool as *mut Pool;
        for w in bs.windows(2) {
            // SAFETY: blocks from `block()` handed to this thread, not yet published.
            unsafe { set_next(w[0] as *mut u8, w[1] as *mut u8) };
        }
        let chain = (bs[0] as *mut u8, bs[bs.len() - 1] as *mut u8, bs.len());
        // SAFETY: the blocks are from `block()` handed to this thread, linked above; the pool
        // lives in `self`.
        unsafe {
            push_remote(&self.notify, &self.owner, pool, chain, |blk, next| {
                set_next(blk, next)
            })
        }
    }

    /// The owner's drain (`PoolCore::drain_remote`'s protocol call): every block waiting, freed
    /// (counted and dropped).
    fn drain(&self) -> usize {
        let mut n = 0;
        let free_all = |_, mut b: *mut u8, count, tail| {
            assert!(!b.is_null(), "a queued pool with no block");
            let mut walked = 0;
            let mut last = b;
            while !b.is_null() {
                // SAFETY: blocks on a taken list are ours, their links published by the push.
                let following = unsafe { next_of(b) };
                last = b;
                // SAFETY: made by `block()`, freed once.
                drop(unsafe { Box::from_raw(b.cast::<Block>()) });
                walked += 1;
                b = following;
            }
            // What the pool allocator splices without walking: the length and the last block.
            assert_eq!(walked, count, "the length kept in the head word");
            assert_eq!(last, tail, "the recorded last block");
            n += walked;
        };
        // SAFETY: pools on the stack are pools of `self`, each queued by the pusher that tagged
        // its list, with at least that pusher's block on it; the caller owns the heap.
        unsafe { take_remote(&self.notify, free_all) };
        n
    }

    /// What a freer does when it finds the heap unowned (`PoolAllocator::collect`).
    fn collect(&self, token: usize, collected: &AtomicUsize) {
        let drain = || {
            collected.fetch_add(self.drain(), Ordering::Relaxed);
        };
        while let Some(true) = run_unowned(&self.owner, &self.notify, token, drain) {}
    }
}

/// Two threads free blocks into two pools of a heap while its owner drains, one of them sending
/// a chain of two blocks home at once (a bin's flush): every block comes back exactly once, no
/// link is read before it is written, the length and last block recorded are the list's, and a
/// pool taken off the stack always has blocks.
#[test]
fn remote_free_vs_owner_reclaim() {
    loom::model(|| {
        let heap = Arc::new(Heap::new(1));
        let freers: Vec<_> = (0..2)
            .map(|t| {
                let heap = heap.clone();
                let (b1, b2) = (block() as usize, block() as usize);
                let b3 = if t == 0 { block() as usize } else { 0 };
                thread::spawn(move || {
                    if t == 0 {
                        assert!(!heap.send_home(t, &[b1, b3]));
                    } else {
                        assert!(!heap.remote_free(t, b1));
                    }
                    assert!(!heap.remote_free(1 - t, b2));
                })
            })
            .collect();
        let mut got = heap.drain();
        for f in freers {
            f.join().unwrap();
        }
        got += heap.drain();
        assert_eq!(got, 5);
        assert!(heap.pools.iter().all(|p| p.remote.is_idle()));
    });
}

/// The owner abandons its heap while another thread frees into it: whichever way they interleave,
/// the notification is taken by someone (the store-buffering pattern), never stranded.
#[test]
fn abandon_vs_remote_free() {
    loom::model(|| {
        let heap = Arc::new(Heap::new(1));
        let collected = Arc::new(AtomicUsize::new(0));
        let b = block() as usize;
        let freer = {
            let (heap, collected) = (heap.clone(), collected.clone());
            thread::spawn(move || {
                if heap.remote_free(0, b) {
                    heap.collect(2, &collected);
                }
            })
        };
        // The owner leaves: abandon, then take care of what arrived meanwhile.
        heap.owner.abandon();
        if heap.notify.is_pending() {
            heap.collect(1, &collected);
        }
        freer.join().unwrap();
        assert_eq!(
            collected.load(Ordering::Relaxed),
            1,
            "a notification was stranded"
        );
        assert!(!heap.notify.is_pending());
    });
}

/// Two threads adopt the same abandoned heap: exactly one gets it, and sees what the previous
/// owner wrote before abandoning it.
#[test]
fn abandon_vs_adopt() {
    loom::model(|| {
        let heap = Arc::new(Heap::new(1));
        let data = Arc::new(UnsafeCell::new(0usize));
        let previous = {
            let (heap, data) = (heap.clone(), data.clone());
            thread::spawn(move || {
                // SAFETY: the owner writes its heap's data while it owns it.
                data.with_mut(|d| unsafe { *d = 42 });
                heap.owner.abandon();
            })
        };
        let adopters: Vec<_> = (2..4)
            .map(|token| {
                let (heap, data) = (heap.clone(), data.clone());
                thread::spawn(move || {
                    if heap.owner.try_claim(token) {
                        // SAFETY: owned now; the previous owner's writes happened before.
                        assert_eq!(data.with(|d| unsafe { *d }), 42);
                        true
                    } else {
                        false
                    }
                })
            })
            .collect();
        previous.join().unwrap();
        let wins = adopters
            .into_iter()
            .map(|a| a.join().unwrap() as usize)
            .sum::<usize>();
        assert!(wins <= 1, "two owners");
        assert_eq!(wins == 1, heap.owner.get() >= 2);
    });
}

/// Two threads map a registry leaf at once while a third looks an address up (`ChunkMap`'s
/// publication, `alloc_core::chunk_map::publish_once`, on loom's atomics): both use the same
/// leaf, the loser's copy is discarded, and a reader that sees the leaf sees it initialised.
#[test]
fn registry_lookup_vs_insertion() {
    loom::model(|| {
        let slot: Arc<AtomicPtr<UnsafeCell<u32>>> = Arc::new(AtomicPtr::new(ptr::null_mut()));
        let discarded = Arc::new(AtomicUsize::new(0));
        let installers: Vec<_> = (0..2)
            .map(|_| {
                let (slot, discarded) = (slot.clone(), discarded.clone());
                thread::spawn(move || {
                    let leaf = publish_once(
                        &*slot,
                        || Box::into_raw(Box::new(UnsafeCell::new(7))),
                        |mine| {
                            // SAFETY: never published, ours to free.
                            drop(unsafe { Box::from_raw(mine) });
                            discarded.fetch_add(1, Ordering::Relaxed);
                        },
                    );
                    leaf as usize
                })
            })
            .collect();
        let reader = {
            let slot = slot.clone();
            thread::spawn(move || {
                let leaf = slot.load(Ordering::Acquire);
                if !leaf.is_null() {
                    // SAFETY: a published leaf is initialised and never freed during the model.
                    assert_eq!(unsafe { (*leaf).with(|v| *v) }, 7);
                }
            })
        };
        let leaves: Vec<usize> = installers.into_iter().map(|t| t.join().unwrap()).collect();
        reader.join().unwrap();
        assert_eq!(leaves[0], leaves[1]);
        // The second installer discards its copy, unless it found the first one's leaf already.
        assert!(discarded.load(Ordering::Relaxed) <= 1);
        // SAFETY: the one published leaf, freed at the end of the model.
        drop(unsafe { Box::from_raw(leaves[0] as *mut UnsafeCell<u32>) });
    });
}

/// An arena's registry entry is set after the arena is made and cleared before it is released,
/// while another thread looks up a block of it: a lookup that answers "ours" sees the arena's
/// header initialised (the owner id, then the header are the acquire/release pair).
#[test]
fn arena_acquire_vs_release() {
    loom::model(|| {
        let owner_slot = Arc::new(loom::sync::atomic::AtomicU32::new(0));
        let header = Arc::new(UnsafeCell::new(0usize));
        let released = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let heap_thread = {
            let (owner_slot, header, released) =
                (owner_slot.clone(), header.clone(), released.clone());
            thread::spawn(move || {
                // Acquire: map, write the header, register.
                // SAFETY: the arena is not yet reachable by others.
                header.with_mut(|h| unsafe { *h = 0xA7E4A });
                owner_slot.store(5, Ordering::Release);
                // Release: unregister before unmapping.
                owner_slot.store(0, Ordering::Release);
                released.store(true, Ordering::Release);
            })
        };
        let id = owner_slot.load(Ordering::Acquire);
        assert!(id == 0 || id == 5, "a torn owner id");
        if id == 5 && !released.load(Ordering::Acquire) {
            // The header was written before the entry: an owner of a block could read it.
            // SAFETY: read only; the model keeps the memory alive.
            assert_eq!(header.with(|h| unsafe { *h }), 0xA7E4A);
        }
        heap_thread.join().unwrap();
        assert_eq!(owner_slot.load(Ordering::Acquire), 0);
    });
}

/// Heaps are pushed onto an allocator's list by two threads while a third walks it: the walker
/// sees every node it reaches fully made.
#[test]
fn heap_list_push_vs_walk() {
    struct Node {
        value: UnsafeCell<usize>,
        next: AtomicPtr<Node>,
    }
    loom::model(|| {
        let list = Arc::new(PushList::<Node>::new());
        let pushers: Vec<_> = (1..3)
            .map(|v| {
                let list = list.clone();
                thread::spawn(move || {
                    let n = Box::into_raw(Box::new(Node {
                        value: UnsafeCell::new(0),
                        next: AtomicPtr::new(ptr::null_mut()),
                    }));
                    // SAFETY: the node is ours until pushed; it lives until the model ends.
                    unsafe {
                        (*n).value.with_mut(|x| *x = v);
                        list.push(n, |node, next| (*node).next.store(next, Ordering::Relaxed));
                    }
                })
            })
            .collect();
        let mut seen = 0;
        let mut h = list.head();
        while !h.is_null() {
            // SAFETY: published nodes are complete and alive.
            unsafe {
                let v = (*h).value.with(|x| *x);
                assert!(v == 1 || v == 2);
                seen += 1;
                h = (*h).next.load(Ordering::Acquire);
            }
        }
        assert!(seen <= 2);
        for p in pushers {
            p.join().unwrap();
        }
        // Free the nodes.
        let mut list = Arc::try_unwrap(list).ok().expect("the only reference");
        let mut h = list.take_all();
        let mut n = 0;
        while !h.is_null() {
            // SAFETY: every node was made by `Box::into_raw` above and is freed once.
            unsafe {
                let next = (*h).next.load(Ordering::Acquire);
                drop(Box::from_raw(h));
                h = next;
            }
            n += 1;
        }
        assert_eq!(n, 2);
    });
}
