//! Every protocol by which threads touch each other's memory, in one place, written against the
//! `sync` shim so that the loom models (`cfg(loom)`, see `loom_models`) check exactly this code.
//!
//! * **Remote free** ([`RemoteList`], [`NotifyStack`]): a thread frees a block of a pool owned by
//!   another thread's heap by pushing it onto the pool's remote list (compare-exchange). The first
//!   push after the owner last emptied the list also tags the list `QUEUED` and pushes the pool
//!   onto its heap's notification stack; the owner takes the whole stack (swap), then each pool's
//!   whole list (swap, which clears the tag). A pool is thus on the stack at most once, and a push
//!   that races with the owner's swap either lands in the list the owner took or starts a new one
//!   and queues the pool again. No block is ever lost: the owner reads a list only after the swap
//!   that detached it, and a pusher links its block before publishing it (Release / Acquire).
//!   Both sides are here whole: [`push_remote`] (the freer) and [`take_remote`] (the owner), over
//!   any pool type that gives its fields through [`RemotePool`] (the pool allocator's `PoolMeta`,
//!   the models' pool).
//! * **Ownership of a heap** ([`Owner`]): a heap is owned by one thread (a non-zero token) or by
//!   none (0). A thread takes an unowned heap by compare-exchange 0 → token (adopting an abandoned
//!   heap, or collecting one for a moment); an exiting thread abandons its heap by storing 0. An
//!   abandoned heap's notifications are taken by whoever frees into it next: the freer pushes its
//!   notification, then reads the owner; the exiting owner stores 0, then reads the notification
//!   stack. A `SeqCst` fence sits between the write and the read on both sides, so at least one
//!   of them sees the other (the store-buffering pattern, in its fence form, which loom models):
//!   a notification that arrives while the owner leaves is never stranded. [`run_unowned`] is a
//!   visit of an unowned heap (claim, work, abandon, check for notifications).
//! * **Push-only lists** ([`PushList`]): the heaps of a pool allocator, published once each and
//!   never unlinked while the allocator lives; readers walk them with Acquire loads.

// Under `cfg(loom)` the library itself uses none of it: only the models do; without an OS
// (no `PoolAllocator`), only the owner's side is built into the pools.
#![cfg_attr(any(loom, not(any(unix, windows))), allow(dead_code))]

use core::ptr;

use crate::sync::{AtomicPtr, AtomicUsize, Ordering, fence};

/// The tag on a remote list whose pool waits on its heap's notification stack (blocks are at
/// least 16-byte aligned, so the low bit of a block address is free).
pub(crate) const QUEUED: usize = 1;

/// Where the list's length is kept in its head word, above the address: the owner learns how many
/// blocks it takes without walking them (each would be a cache miss: another core wrote them).
/// Pool blocks lie below 2^48 (the registry covers no more), and a pool holds fewer than 2^16.
#[cfg(target_pointer_width = "64")]
const COUNT_SHIFT: u32 = 48;
#[cfg(target_pointer_width = "64")]
const ADDRESS_MASK: usize = (1 << COUNT_SHIFT) - 1;

/// A pool's list of blocks freed by other threads.
pub(crate) struct RemoteList(AtomicUsize);

impl RemoteList {
    pub(crate) fn new() -> Self {
        RemoteList(AtomicUsize::new(0))
    }

    /// Pushes a chain of `n` blocks from `first` to `last` (already linked to each other, `last`
    /// being `first` for one block), first linking `last` to the current head with
    /// `link(last, next)`. Returns true if this push tagged the list: the caller must then queue
    /// the pool on its heap's notification stack (exactly one pusher does, until the owner takes
    /// the list). A tagging push is always onto an empty list, so its `last` is the list's last:
    /// the caller records it (the pool's `remote_tail`) before queueing the pool, and the owner
    /// splices the list whole.
    ///
    /// # Safety
    /// The chain's blocks are free blocks (nobody else reads or writes them) of at least one word,
    /// at least 2-byte aligned, belonging to the pool of this list, whose owner has not taken
    /// them back; `n` is their number, at least 1.
    #[inline]
    pub(crate) unsafe fn push(
        &self,
        first: *mut u8,
        last: *mut u8,
        n: usize,
        link: impl Fn(*mut u8, *mut u8),
    ) -> bool {
        debug_assert_eq!(first as usize & QUEUED, 0);
        debug_assert!(n >= 1);
        let mut head = self.0.load(Ordering::Relaxed);
        loop {
            link(last, address(head));
            let new = with_count(first as usize | QUEUED, count(head) + n);
            // Release: publishes the link written above to the owner's swap in `take`. Acquire:
            // a push that reads the owner's swap comes after the owner's last reads of the pool's
            // notification link, which the tagging pusher then rewrites.
            match self
                .0
                .compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return head & QUEUED == 0,
                Err(h) => head = h,
            }
        }
    }

    /// Takes the whole list: its first block (null if empty) and its length; clears the tag, so
    /// the next push queues the pool again. Only the pool's owner calls it, after taking the pool
    /// off the notification stack.
    #[inline]
    pub(crate) fn take(&self) -> (*mut u8, usize) {
        // Acquire: sees the links written by every push it takes (their Release). Release: orders
        // the owner's earlier reads of the pool before the next tagging push (its Acquire).
        let head = self.0.swap(0, Ordering::AcqRel);
        (address(head), count(head))
    }

    /// Whether `block` is the list's first block: then it is free, waiting for its owner (a
    /// live block is on no list), and a free of it is a double free. A read alone, for the
    /// hardened checks; it orders nothing.
    #[cfg_attr(loom, allow(dead_code))]
    #[inline]
    pub(crate) fn starts_with(&self, block: *mut u8) -> bool {
        address(self.0.load(Ordering::Relaxed)) == block
    }

    /// Whether the list is empty and untagged (for checks at rest).
    #[cfg_attr(not(loom), allow(dead_code))] // used by the loom models
    pub(crate) fn is_idle(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }
}

#[cfg(target_pointer_width = "64")]
#[inline]
fn address(head: usize) -> *mut u8 {
    (head & ADDRESS_MASK & !QUEUED) as *mut u8
}

#[cfg(target_pointer_width = "64")]
#[inline]
fn count(head: usize) -> usize {
    head >> COUNT_SHIFT
}

#[cfg(target_pointer_width = "64")]
#[inline]
fn with_count(word: usize, n: usize) -> usize {
    debug_assert!(word <= ADDRESS_MASK && n < 1 << (usize::BITS - COUNT_SHIFT));
    word | n << COUNT_SHIFT
}

// Without room above the address, the length is not kept: `take` answers 0 and the owner counts.
#[cfg(not(target_pointer_width = "64"))]
#[inline]
fn address(head: usize) -> *mut u8 {
    (head & !QUEUED) as *mut u8
}

#[cfg(not(target_pointer_width = "64"))]
#[inline]
fn count(_head: usize) -> usize {
    0
}

#[cfg(not(target_pointer_width = "64"))]
#[inline]
fn with_count(word: usize, _n: usize) -> usize {
    word
}

/// A heap's stack of pools that have remote frees waiting (a Treiber stack that is only ever
/// pushed one node at a time and emptied whole, so it has no ABA problem).
pub(crate) struct NotifyStack<T>(AtomicPtr<T>);

impl<T> NotifyStack<T> {
    #[cfg_attr(not(loom), allow(dead_code))] // used by the loom models; slots start zeroed
    pub(crate) fn new() -> Self {
        NotifyStack(AtomicPtr::new(ptr::null_mut()))
    }

    /// Pushes `node`, linking it first with `link(node, next)`.
    ///
    /// # Safety
    /// `node` is on no stack and stays valid until the owner takes it; only the thread that
    /// tagged the node's remote list pushes it.
    #[inline]
    pub(crate) unsafe fn push(&self, node: *mut T, link: impl Fn(*mut T, *mut T)) {
        let mut head = self.0.load(Ordering::Relaxed);
        loop {
            link(node, head);
            // Release: publishes the link to `take_all`'s Acquire.
            match self
                .0
                .compare_exchange_weak(head, node, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    // The freer's half of the store-buffering pattern with `Owner::abandon`:
                    // the push is ordered before the caller's `Owner::is_unowned`.
                    fence(Ordering::SeqCst);
                    return;
                }
                Err(h) => head = h,
            }
        }
    }

    /// Takes every node (null if none).
    #[inline]
    pub(crate) fn take_all(&self) -> *mut T {
        // Acquire: sees each node's link, written before its push's Release.
        self.0.swap(ptr::null_mut(), Ordering::Acquire)
    }

    /// Whether nodes are waiting (after `Owner::abandon`, whose fence orders this read after the
    /// abandoning store).
    #[inline]
    pub(crate) fn is_pending(&self) -> bool {
        !self.0.load(Ordering::Relaxed).is_null()
    }
}

/// What the remote-free protocol needs of a pool: its remote list, its link on the notification
/// stack, and the last block of its list (recorded by the pusher that queued it).
///
/// The two fields are plain memory: the queueing pusher writes them before its `NotifyStack::push`
/// (Release), the owner reads them after `NotifyStack::take_all` (Acquire) and before
/// `RemoteList::take`, after which the pool may be queued again.
pub(crate) trait RemotePool {
    /// The pool's list of blocks freed by other threads.
    ///
    /// # Safety
    /// `pool` is a live pool.
    unsafe fn remote<'a>(pool: *mut Self) -> &'a RemoteList;
    /// Writes the pool's link on the notification stack.
    ///
    /// # Safety
    /// `pool` is live and the caller queues it (it tagged its list), or owns its heap.
    unsafe fn set_notify_next(pool: *mut Self, next: *mut Self);
    /// Reads the pool's link on the notification stack.
    ///
    /// # Safety
    /// `pool` is live and was taken off the notification stack by its heap's owner.
    unsafe fn notify_next(pool: *mut Self) -> *mut Self;
    /// Records the last block of the pool's remote list.
    ///
    /// # Safety
    /// As for `set_notify_next`.
    unsafe fn set_remote_tail(pool: *mut Self, tail: *mut u8);
    /// The last block of the pool's remote list.
    ///
    /// # Safety
    /// As for `notify_next`.
    unsafe fn remote_tail(pool: *mut Self) -> *mut u8;
}

/// The freeing side of a remote free: pushes the chain of `n` blocks `first` .. `last` onto
/// `pool`'s remote list (linking `last` with `link(last, next)`); the first push after the owner
/// took the list records `last` as the list's last and queues the pool on its heap's notification
/// stack `notify`. Returns true if the heap had no owner after the pool was queued: the caller
/// must then collect the heap (`run_unowned`), since no owner will.
///
/// # Safety
/// `pool` is a live pool of the heap whose notification stack is `notify` and whose owner is
/// `owner`; the chain is `n` free blocks of that pool, as `RemoteList::push` requires.
#[inline]
pub(crate) unsafe fn push_remote<P: RemotePool>(
    notify: &NotifyStack<P>,
    owner: &Owner,
    pool: *mut P,
    (first, last, n): (*mut u8, *mut u8, usize),
    link: impl Fn(*mut u8, *mut u8),
) -> bool {
    // SAFETY: the caller's guarantee.
    let remote = unsafe { P::remote(pool) };
    // SAFETY: the caller's guarantee.
    if !unsafe { remote.push(first, last, n, link) } {
        return false;
    }
    // SAFETY: our push tagged the list, so we alone queue the pool until the owner takes it; the
    // tagging push went onto an empty list, so its `last` is the list's last.
    unsafe {
        P::set_remote_tail(pool, last);
        notify.push(pool, |p, next| P::set_notify_next(p, next));
    }
    owner.is_unowned()
}

/// The owner's side of the remote frees: takes the whole notification stack, then each queued
/// pool's whole list, and calls `f(pool, first block, length, last block)` for each (the length
/// is 0 where the head word cannot keep it). Returns whether any pool was waiting.
///
/// # Safety
/// Called by the owner of the heap whose notification stack is `notify`, whose queued pools are
/// live.
#[inline]
pub(crate) unsafe fn take_remote<P: RemotePool>(
    notify: &NotifyStack<P>,
    mut f: impl FnMut(*mut P, *mut u8, usize, *mut u8),
) -> bool {
    let mut pool = notify.take_all();
    if pool.is_null() {
        return false;
    }
    while !pool.is_null() {
        // SAFETY: the caller's guarantee; the link and the tail are read before the list is
        // taken, after which the pool may be queued again by a new remote free.
        unsafe {
            let next = P::notify_next(pool);
            let tail = P::remote_tail(pool);
            let (head, count) = P::remote(pool).take();
            f(pool, head, count, tail);
            pool = next;
        }
    }
    true
}

/// Runs `f` with the heap claimed for `token` if nobody owns it, then abandons it again. `None`
/// if another thread owns it (that one will see the notifications); otherwise whether
/// notifications arrived meanwhile, which the caller must then take care of (claiming again:
/// `while let Some(true) = run_unowned(..) {}`), since a freer that saw the heap owned did not.
#[inline]
pub(crate) fn run_unowned<P>(
    owner: &Owner,
    notify: &NotifyStack<P>,
    token: usize,
    f: impl FnOnce(),
) -> Option<bool> {
    if !owner.try_claim(token) {
        return None;
    }
    f();
    owner.abandon();
    Some(notify.is_pending())
}

/// Who owns a heap: a thread token, or 0.
pub(crate) struct Owner(AtomicUsize);

/// The owner of a heap whose pool allocator is gone (never 0, never a thread token: tokens are
/// addresses, and addresses are never `usize::MAX`).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const DEAD: usize = usize::MAX;

impl Owner {
    #[cfg_attr(not(loom), allow(dead_code))] // used by the loom models
    pub(crate) fn new(token: usize) -> Self {
        Owner(AtomicUsize::new(token))
    }

    /// Takes the heap if nobody owns it.
    #[inline]
    pub(crate) fn try_claim(&self, token: usize) -> bool {
        // Acquire: sees everything the previous owner did before releasing it; the release side
        // is `abandon`'s SeqCst store.
        self.0
            .compare_exchange(0, token, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Gives the heap up. The caller then checks the notification stack (`is_pending`) and
    /// takes care of what arrived, since a freer that saw it owned did not.
    #[inline]
    pub(crate) fn abandon(&self) {
        // Release: everything done while owning the heap, for the next owner's Acquire claim.
        self.0.store(0, Ordering::Release);
        // The owner's half of the store-buffering pattern with `NotifyStack::push`: the store is
        // ordered before the caller's `NotifyStack::is_pending`.
        fence(Ordering::SeqCst);
    }

    /// Gives the heap up if `token` owns it; returns whether it did.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn abandon_if(&self, token: usize) -> bool {
        let done = self
            .0
            .compare_exchange(token, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok();
        fence(Ordering::SeqCst);
        done
    }

    /// Marks the heap dead for good, whoever owned it (the allocator is being dropped).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn kill(&self) {
        self.0.store(DEAD, Ordering::SeqCst);
    }

    /// Whether nobody owns the heap (after `NotifyStack::push`, whose fence orders this read
    /// after the push).
    #[inline]
    pub(crate) fn is_unowned(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }

    /// The current owner (for checks; may be stale).
    #[inline]
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Makes `token` the owner of a heap nobody else can reach yet (a fresh or recycled slot).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn set_fresh(&self, token: usize) {
        self.0.store(token, Ordering::Relaxed);
    }
}

/// A list that is only ever pushed onto (the heaps of one pool allocator): nodes are published
/// with Release and never unlinked while readers may walk it.
pub(crate) struct PushList<T>(AtomicPtr<T>);

impl<T> PushList<T> {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        PushList(AtomicPtr::new(ptr::null_mut()))
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        PushList(AtomicPtr::new(ptr::null_mut()))
    }

    /// Pushes `node`, linking it first with `link(node, next)`.
    ///
    /// # Safety
    /// `node` is on no list and outlives every reader of this list.
    pub(crate) unsafe fn push(&self, node: *mut T, link: impl Fn(*mut T, *mut T)) {
        let mut head = self.0.load(Ordering::Relaxed);
        loop {
            link(node, head);
            // Release: publishes the node (and its link) to readers' Acquire `head`.
            match self
                .0
                .compare_exchange_weak(head, node, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// The first node (null if none); follow the nodes' own links (read with Acquire) after it.
    pub(crate) fn head(&self) -> *mut T {
        // Acquire: pairs with `push`'s Release.
        self.0.load(Ordering::Acquire)
    }

    /// Takes the whole list, for the owner's drop (no other reader may remain).
    pub(crate) fn take_all(&mut self) -> *mut T {
        self.0.swap(ptr::null_mut(), Ordering::Acquire)
    }
}
