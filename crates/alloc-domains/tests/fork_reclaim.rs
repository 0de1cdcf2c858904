//! A fork while another thread is inside a section (parked in an allocator's `owns`, mid-way
//! through routing a free): the child has no such thread, and its writers must still have grace
//! periods (the fork handlers give the parent's other threads' announcement slots back), so
//! hooking and unhooking in the child frees the records at once instead of waiting forever.
#![cfg(unix)]

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alloc_core::{DomainAllocator, Ownership, System};
use alloc_debug::Counting;
use alloc_domains::{
    Domain, DynAllocator, add_domain, get, hook, hook_forwarding, set, table_records,
};

/// The block whose `owns` question parks the asking thread.
static PARK_AT: AtomicUsize = AtomicUsize::new(0);
static PARKED: AtomicBool = AtomicBool::new(false);
static RELEASE: AtomicBool = AtomicBool::new(false);

/// The C library, claiming the one block `PARK_AT` names, and parking whoever asks about it
/// until `RELEASE`.
struct Parking;

// SAFETY: every block is the C library's.
unsafe impl DomainAllocator for Parking {
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        System.malloc(size)
    }
    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, new_size) }
    }
    unsafe fn free(&self, ptr: *mut u8) {
        // SAFETY: forwarded.
        unsafe { System.free(ptr) }
    }
    fn owns(&self, ptr: *const u8) -> Ownership {
        if ptr as usize != PARK_AT.load(Ordering::Relaxed) {
            return Ownership::Unknown;
        }
        PARKED.store(true, Ordering::Release);
        while !RELEASE.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        Ownership::Owned
    }
    fn declares_ownership(&self) -> bool {
        true
    }
}

static PARKING: Parking = Parking;

extern "C" fn prepare() {
    alloc_domains::prepare_fork();
}
extern "C" fn parent() {
    // SAFETY: pthread_atfork runs this after `prepare`, on the forking thread.
    unsafe { alloc_domains::after_fork_parent() }
}
extern "C" fn child() {
    // SAFETY: pthread_atfork runs this in the child, on the thread the fork returned in, after
    // `prepare` ran in the parent.
    unsafe { alloc_domains::after_fork_child() }
}

#[test]
fn a_child_forked_while_a_thread_is_mid_route_reclaims_records() {
    let parked = Domain::new(add_domain("fork-parked", &PARKING).unwrap()).unwrap();
    let block = parked.malloc(40).unwrap();
    PARK_AT.store(block.as_ptr() as usize, Ordering::Relaxed);
    // A hook with blocks of its own over it: a free of `block` now walks the chain, asking
    // `Parking` (inside the section) whether the block is its.
    hook(parked.id(), |prev| {
        let c: &'static DynAllocator = Box::leak(Box::new(Counting::new(prev)));
        c
    })
    .unwrap();
    let other = add_domain("fork-other", &System).unwrap();

    // SAFETY: registering plain functions that only call the domains' fork handlers.
    let registered = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    assert_eq!(registered, 0);
    let addr = block.as_ptr() as usize;
    let worker = std::thread::spawn(move || {
        // SAFETY: a live block of the domain, freed once (the free parks in `owns` first).
        unsafe { parked.free(addr as *mut u8) };
    });
    while !PARKED.load(Ordering::Acquire) {
        std::thread::yield_now();
    }

    // SAFETY: fork in a test process; the child only uses the table and then `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let before = table_records();
        let old = get(other).unwrap();
        hook_forwarding(other, |prev| prev).unwrap();
        set(other, old).unwrap();
        let ok = table_records() == before;
        // SAFETY: ending the child without running the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 2 }) };
    }
    assert!(pid > 0);
    let start = Instant::now();
    let status = loop {
        let mut status = 0;
        // SAFETY: waiting on our own child, with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break Some(status);
        }
        if start.elapsed() > Duration::from_secs(20) {
            // SAFETY: our own child, still running.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            break None;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    RELEASE.store(true, Ordering::Release);
    worker.join().unwrap();
    let status = status.expect("the child's grace period waited for a thread it does not have");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{status:#x}"
    );

    // In the parent, the parked thread's section has ended: records are freed here too.
    let before = table_records();
    let old = get(other).unwrap();
    hook_forwarding(other, |prev| prev).unwrap();
    set(other, old).unwrap();
    assert_eq!(table_records(), before);
}
