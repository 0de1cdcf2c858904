//! PEP 445's hook pattern in Rust: read the current allocator, install a wrapper that forwards to
//! it, allocate and free across the switch, set the original back; on raw, mem, object and a user
//! domain, at any time, with no hidden calls into the hook, and with a chain that does not grow.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use alloc_arena::PoolAllocator;
use alloc_core::{DomainAllocator, Ownership, System};
use alloc_debug::FaultInjecting;
use alloc_domains::{
    Domain, DomainError, DomainId, DynAllocator, MEM, OBJECT, RAW, add_domain, get,
    hook_forwarding, set,
};

/// A forwarding hook that counts what it sees (and answers `owns` with the C library's
/// ignorance, as a C wrapper does: it cannot claim blocks).
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
    /// It cannot claim blocks, and says so.
    fn track_ownership(&self) -> bool {
        false
    }
}

fn counter(inner: &'static DynAllocator) -> &'static Counter {
    Box::leak(Box::new(Counter {
        inner,
        calls: AtomicUsize::new(0),
        frees: AtomicUsize::new(0),
    }))
}

fn pool() -> &'static DynAllocator {
    Box::leak(Box::new(PoolAllocator::new()))
}

/// Checks that a block of `d` still holds the pattern written into it, then frees it.
fn check_and_free(d: Domain, (q, m): (NonNull<u8>, usize)) {
    // SAFETY: a live block of `d` of `m` bytes (the callers' list), read, then freed once.
    unsafe {
        assert!(
            std::slice::from_raw_parts(q.as_ptr(), m)
                .iter()
                .all(|&b| b == m as u8)
        );
        d.free(q.as_ptr());
    }
}

/// The pattern on one domain that has allocated already, while `threads` threads allocate and
/// free through it throughout (every block checked before it is freed).
fn wrap_and_restore_under_threads(d: Domain, cycles: usize) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..2usize {
            let stop = &stop;
            s.spawn(move || {
                let mut live: Vec<(NonNull<u8>, usize)> = Vec::new();
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    i = i.wrapping_mul(31).wrapping_add(7);
                    let n = 1 + i % 3000;
                    let p = d.malloc(n).unwrap();
                    // SAFETY: a fresh block of `n` bytes.
                    unsafe { p.as_ptr().write_bytes(n as u8, n) };
                    live.push((p, n));
                    if live.len() > 64 {
                        check_and_free(d, live.swap_remove(i % live.len()));
                    }
                }
                for b in live {
                    check_and_free(d, b);
                }
            });
        }
        let mut seen = 0;
        for _ in 0..cycles {
            let old = get(d.id()).unwrap();
            let mut made = None;
            hook_forwarding(d.id(), |prev| {
                let c = counter(prev);
                made = Some(c);
                c
            })
            .unwrap();
            std::thread::sleep(std::time::Duration::from_micros(200));
            set(d.id(), old).unwrap();
            assert!(
                std::ptr::addr_eq(get(d.id()).unwrap(), old),
                "the original is back"
            );
            seen += made.unwrap().frees.load(Ordering::Relaxed);
        }
        stop.store(true, Ordering::Relaxed);
        assert!(seen > 0, "the hooks saw frees");
    });
}

#[test]
fn the_wrapper_pattern_works_at_any_time_on_every_standard_domain_and_a_user_domain() {
    let user = Domain::new(add_domain("hooks-user", pool()).unwrap()).unwrap();
    for d in [RAW, MEM, OBJECT, user] {
        // The domain has allocated, and keeps a block made before the hooks.
        let early = d.malloc(100).unwrap();
        wrap_and_restore_under_threads(d, 50);
        // SAFETY: made before any hook, freed once, after them all.
        unsafe { d.free(early.as_ptr()) };
    }
}

#[test]
fn installing_calls_none_of_the_hooks_functions() {
    let d = Domain::new(add_domain("hooks-no-probe", pool()).unwrap()).unwrap();
    let early = d.malloc(10).unwrap();
    // A fault injector armed to fail the first allocation it sees, installed after the domain
    // has allocated: the program's first allocation through it is the one that fails.
    let mut injector = None;
    hook_forwarding(d.id(), |prev| {
        let f: &'static FaultInjecting<&'static DynAllocator> =
            Box::leak(Box::new(FaultInjecting::new(prev)));
        f.fail_nth(1);
        f.enable();
        injector = Some(f);
        f
    })
    .unwrap();
    assert!(
        d.malloc(10).is_none(),
        "the first allocation is the one armed to fail"
    );
    let second = d.malloc(10).unwrap();
    // SAFETY: live blocks of the domain, each freed once.
    unsafe {
        d.free(second.as_ptr());
        d.free(early.as_ptr());
    }
    // A counting hook sees exactly the program's calls.
    let mut c = None;
    hook_forwarding(d.id(), |prev| {
        let h = counter(prev);
        c = Some(h);
        h
    })
    .unwrap();
    let c = c.unwrap();
    assert_eq!(c.calls.load(Ordering::Relaxed), 0, "no call at install");
    let p = d.malloc(8).unwrap();
    // SAFETY: a live block, freed once.
    unsafe { d.free(p.as_ptr()) };
    assert_eq!(c.calls.load(Ordering::Relaxed), 2);
    let _ = injector;
}

#[test]
fn raw_is_set_back_after_it_has_allocated_and_unrelated_allocators_are_still_refused() {
    let p = RAW.malloc(32).unwrap();
    let original = get(DomainId::RAW).unwrap();
    // A replacement that claims its blocks is accepted; the C library set back after it too.
    let replacement = pool();
    set(DomainId::RAW, replacement).unwrap();
    let q = RAW.malloc(32).unwrap();
    set(DomainId::RAW, original).unwrap();
    // SAFETY: live blocks, each freed once, each by its maker (routed by the domain).
    unsafe {
        RAW.free(q.as_ptr());
        RAW.free(p.as_ptr());
    }
    // An allocator that cannot claim its blocks and is not in the chain: refused, with why.
    static SYSTEM: System = System;
    static UNRELATED: Counter = Counter {
        inner: &SYSTEM,
        calls: AtomicUsize::new(0),
        frees: AtomicUsize::new(0),
    };
    let unrelated = &UNRELATED;
    assert!(matches!(
        set(DomainId::RAW, unrelated),
        Err(DomainError::AmbiguousOwnership { .. })
    ));
    assert_eq!(unrelated.calls.load(Ordering::Relaxed), 0);
    assert_eq!(unrelated.owns(p.as_ptr()), Ownership::Unknown);
}
