//! The table: user domains, get / set / hook, the replacement rule from several threads, change
//! callbacks. Each test works on domains of its own (the table is shared by the whole binary).

use std::sync::atomic::{AtomicUsize, Ordering};

use alloc_arena::PoolAllocator;
use alloc_core::{DomainAllocator, Ownership, System};
use alloc_debug::{Counting, FaultInjecting, Guarded};
use alloc_domains::{
    Domain, DomainError, DomainId, DynAllocator, add_domain, domains, find, get, hook, on_change,
    remove_callback, set,
};

fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

fn pool() -> &'static PoolAllocator {
    leak(PoolAllocator::new())
}

#[test]
fn user_domains_have_unique_non_empty_names() {
    let id = add_domain("table-sqlite", &System).unwrap();
    assert!(id.index() >= 3);
    assert_eq!(find("table-sqlite"), Some(id));
    assert_eq!(alloc_domains::name(id).unwrap(), "table-sqlite");
    assert!(
        domains()
            .iter()
            .any(|d| d.id == id && d.allocator == "system")
    );
    assert_eq!(add_domain("", &System), Err(DomainError::EmptyName));
    assert_eq!(
        add_domain("table-sqlite", &System),
        Err(DomainError::DuplicateName("table-sqlite"))
    );
    assert_eq!(
        add_domain("raw", &System),
        Err(DomainError::DuplicateName("raw"))
    );
    assert_eq!(
        Domain::new(DomainId::from_index(200)),
        Err(DomainError::UnknownDomain(200))
    );
    assert_eq!(
        get(DomainId::from_index(200)).err(),
        Some(DomainError::UnknownDomain(200))
    );
}

#[test]
fn set_replaces_and_hook_wraps_with_the_previous_allocator_inside() {
    let id = add_domain("table-set-hook", pool()).unwrap();
    let d = Domain::new(id).unwrap();
    assert_eq!(get(id).unwrap().name(), "pool");
    let counting: &'static Counting<&'static DynAllocator> = leak(Counting::new(get(id).unwrap()));
    set(id, counting).unwrap();
    assert_eq!(get(id).unwrap().name(), "counting");
    // `set` made one probe block (allocated and freed) to see whether Counting claims its blocks.
    let base = counting.stats();
    let p = d.malloc(32).unwrap();
    assert_eq!(counting.stats().allocations, base.allocations + 1);
    hook(id, |prev| leak(FaultInjecting::new(prev))).unwrap();
    assert_eq!(get(id).unwrap().name(), "fault-injecting");
    let before = counting.stats().allocations;
    let q = d.malloc(32).unwrap();
    assert_eq!(
        counting.stats().allocations,
        before + 1,
        "the hook forwards to what it replaced"
    );
    // SAFETY: live blocks of the domain, freed once.
    unsafe {
        d.free(p.as_ptr());
        d.free(q.as_ptr());
    }
    assert_eq!(counting.stats().blocks_live(), 0);
}

#[test]
fn blocks_made_before_a_replacement_are_freed_by_their_maker_from_many_threads() {
    let first = pool();
    let id = add_domain("table-replace-threads", first).unwrap();
    let d = Domain::new(id).unwrap();
    let sent: Vec<usize> = (0..20_000)
        .map(|i| {
            let p = d.malloc(1 + i % 400).unwrap();
            // SAFETY: a live block of at least one byte.
            unsafe { p.as_ptr().write(i as u8) };
            p.as_ptr() as usize
        })
        .collect();
    // Replace twice while the blocks live: a second pool, then the debug hooks over it.
    let second = pool();
    set(id, second).unwrap();
    hook(id, |prev| leak(Guarded::new(prev).with_api(b'T'))).unwrap();
    let made_after: Vec<usize> = (0..20_000)
        .map(|i| d.malloc(1 + i % 400).unwrap().as_ptr() as usize)
        .collect();
    assert!(
        made_after
            .iter()
            .all(|&p| second.owns((p - 16) as *const u8) == Ownership::Owned)
    );
    // Each thread is joined: a joined thread has ended, and the blocks that its frees left in
    // its bins went back with its heap. (A scope's end waits for the threads' closures, not for
    // their exit: a thread still running holds what its bins hold.)
    std::thread::scope(|s| {
        let freeing: Vec<_> = sent
            .chunks(5000)
            .chain(made_after.chunks(5000))
            .map(|chunk| {
                s.spawn(move || {
                    for &p in chunk {
                        // SAFETY: each block freed once; the domain routes it to its maker.
                        unsafe { d.free(p as *mut u8) };
                    }
                })
            })
            .collect();
        for t in freeing {
            t.join().unwrap();
        }
    });
    assert_eq!(
        first.stats().blocks_in_use(),
        0,
        "the first pool got back all of its blocks"
    );
    assert_eq!(
        second.stats().blocks_in_use(),
        0,
        "and the second all of its"
    );
}

#[test]
fn an_allocator_that_cannot_claim_its_blocks_is_refused_once_the_domain_has_allocated() {
    let id = add_domain("table-refuse", pool()).unwrap();
    // Before the first allocation anything goes.
    set(id, leak(PoolAllocator::new())).unwrap();
    let d = Domain::new(id).unwrap();
    let p = d.malloc(8).unwrap();
    let err = set(id, &System).unwrap_err();
    assert!(matches!(
        err,
        DomainError::AmbiguousOwnership {
            domain: "table-refuse",
            ..
        }
    ));
    assert!(err.to_string().contains("cannot tell its blocks"));
    assert_eq!(get(id).unwrap().name(), "pool", "nothing changed");
    // A transparent wrapper over the C library cannot claim its blocks either; decorators that
    // mark (or remember) their blocks can, over anything.
    static TRANSPARENT: FaultInjecting<System> = FaultInjecting::new(System);
    assert!(hook(id, |_| &TRANSPARENT).is_err());
    hook(id, |_| leak(Counting::new(System))).unwrap();
    let q = d.malloc(100_000).unwrap();
    // SAFETY: live blocks, freed once through the domain: `p` (made by the pool before the hook)
    // goes back to the pool, `q` to Counting.
    unsafe {
        d.free(p.as_ptr());
        d.free(q.as_ptr());
    }
}

#[test]
fn a_decorator_used_before_it_was_installed_cannot_claim_its_blocks_and_is_refused() {
    let id = add_domain("table-used-decorator", pool()).unwrap();
    let d = Domain::new(id).unwrap();
    let p = d.malloc(8).unwrap();
    // Used directly first: its blocks went unremembered, so it cannot claim them later.
    static USED: Guarded<System> = Guarded::new(System);
    let used: &'static Guarded<System> = &USED;
    let early = used.malloc(16).unwrap();
    assert!(matches!(
        set(id, used),
        Err(DomainError::AmbiguousOwnership { .. })
    ));
    // A fresh one is asked to track before its first block, and claims everything it makes.
    let fresh: &'static Guarded<System> = leak(Guarded::new(System));
    set(id, fresh).unwrap();
    let q = d.malloc(24).unwrap();
    assert_eq!(fresh.owns(q.as_ptr()), Ownership::Owned);
    // SAFETY: live blocks, each freed once: `p` through the domain (back to the pool that made
    // it), `q` through the domain (to `fresh`), `early` by the decorator that made it.
    unsafe {
        d.free(p.as_ptr());
        d.free(q.as_ptr());
        used.free(early.as_ptr());
    }
}

static CALLS: AtomicUsize = AtomicUsize::new(0);
static LAST: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

#[test]
fn change_callbacks_run_at_once_and_after_every_change_until_removed() {
    let id = add_domain("table-callbacks", pool()).unwrap();
    let cb = on_change(
        id,
        leak(|d: DomainId, a: &'static DynAllocator| {
            CALLS.fetch_add(1, Ordering::SeqCst);
            // The callback runs outside the table's lock: it may read the table.
            assert_eq!(get(d).unwrap().name(), a.name());
            *LAST.lock().unwrap() = a.name().to_string();
        }),
    )
    .unwrap();
    assert_eq!(CALLS.load(Ordering::SeqCst), 1, "called at registration");
    assert_eq!(*LAST.lock().unwrap(), "pool");
    hook(id, |prev| leak(Counting::new(prev))).unwrap();
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    assert_eq!(*LAST.lock().unwrap(), "counting");
    assert!(remove_callback(cb));
    assert!(!remove_callback(cb), "only once");
    hook(id, |prev| leak(FaultInjecting::new(prev))).unwrap();
    assert_eq!(CALLS.load(Ordering::SeqCst), 2, "not called after removal");
}

#[test]
fn a_callback_may_change_the_table_without_deadlock() {
    let id = add_domain("table-callback-writes", pool()).unwrap();
    let other = add_domain("table-callback-target", pool()).unwrap();
    on_change(
        id,
        leak(move |_: DomainId, a: &'static DynAllocator| {
            if a.name() == "counting" {
                hook(other, |prev| leak(FaultInjecting::new(prev))).unwrap();
            }
        }),
    )
    .unwrap();
    hook(id, |prev| leak(Counting::new(prev))).unwrap();
    assert_eq!(get(other).unwrap().name(), "fault-injecting");
}
