//! The mem and object domains call their standard pools directly once they have served
//! allocations on them (`FAST_MEM`, `FAST_OBJECT`): a hook installed after that must still see
//! every call, and a hook removed must stop seeing them. Its own process: no other test swaps
//! these domains meanwhile.

use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloc_core::DomainAllocator;
use alloc_domains::{Domain, DynAllocator, MEM, OBJECT, get, hook_forwarding, set};

/// A forwarding hook that counts the calls it sees.
struct Counter {
    inner: &'static DynAllocator,
    calls: AtomicUsize,
    frees: AtomicUsize,
}

// SAFETY: every call is forwarded unchanged to `inner`, which upholds the contract.
unsafe impl DomainAllocator for Counter {
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.malloc(size)
    }
    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.calloc(nelem, elsize)
    }
    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { self.inner.realloc(ptr, new_size) }
    }
    unsafe fn free(&self, ptr: *mut u8) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.frees.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { self.inner.free(ptr) }
    }
    fn track_ownership(&self) -> bool {
        false
    }
}

/// The hooks this test made, kept reachable after their removal (the table takes `&'static`
/// allocators, so each is a leaked box, which a leak checker would report once nothing points to
/// it).
static KEPT: Mutex<Vec<&'static Counter>> = Mutex::new(Vec::new());

/// malloc, calloc, realloc and two frees through `d`.
fn five_calls(d: Domain) {
    let p = d.malloc(40).unwrap();
    let q = d.calloc(2, 20).unwrap();
    // SAFETY: live blocks of `d`, each resized or freed once.
    unsafe {
        let q = d.realloc(q.as_ptr(), 60).unwrap();
        d.free(p.as_ptr());
        d.free(q.as_ptr());
    }
}

#[test]
fn a_hook_sees_every_call_of_a_domain_that_took_its_pools_fast_path() {
    for d in [MEM, OBJECT] {
        // Served on the standard pools first: the fast paths are on.
        for _ in 0..4 {
            five_calls(d);
        }
        let old = get(d.id()).unwrap();
        let mut made = None;
        hook_forwarding(d.id(), |prev| {
            let c: &'static Counter = Box::leak(Box::new(Counter {
                inner: prev,
                calls: AtomicUsize::new(0),
                frees: AtomicUsize::new(0),
            }));
            made = Some(c);
            c
        })
        .unwrap();
        let c = made.unwrap();
        KEPT.lock().unwrap().push(c);
        five_calls(d);
        assert_eq!(c.calls.load(Ordering::Relaxed), 5, "{:?}", d.id());
        assert_eq!(c.frees.load(Ordering::Relaxed), 2, "{:?}", d.id());
        set(d.id(), old).unwrap();
        five_calls(d);
        assert_eq!(c.calls.load(Ordering::Relaxed), 5, "{:?}: removed", d.id());
    }
}
