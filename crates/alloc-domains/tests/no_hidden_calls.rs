//! Installing an allocator calls none of its functions: a fault injector armed before it is
//! installed (its first request fails) sees exactly the program's requests, whether it is `set`
//! over a domain that has allocated, or installed by `hook` or `hook_forwarding`. The allocator
//! under it is a pool over the C library, which cannot tell about a pointer it never made
//! (`owns` answers `Unknown` outside its arenas): the table decides from its declaration
//! (`declares_ownership`), not from a probe block.

use alloc_arena::PoolAllocator;
use alloc_core::{DomainAllocator, Ownership, System};
use alloc_debug::FaultInjecting;
use alloc_domains::{Domain, DomainError, DynAllocator, add_domain, hook, hook_forwarding, set};

static FIRST: PoolAllocator = PoolAllocator::new();
static SECOND: PoolAllocator = PoolAllocator::new();
static UNDER_SET: FaultInjecting<&PoolAllocator> = FaultInjecting::new(&SECOND);
static OVER_C: FaultInjecting<System> = FaultInjecting::new(System);

/// Armed: enabled, its first request fails.
fn arm<A>(f: &FaultInjecting<A>) {
    f.fail_nth(1);
    f.enable();
}

/// A domain over `FIRST` that has allocated (and keeps a live block).
fn used_domain(name: &'static str) -> (Domain, core::ptr::NonNull<u8>) {
    let d = Domain::new(add_domain(name, &FIRST).unwrap()).unwrap();
    (d, d.malloc(32).unwrap())
}

/// The program's first request through `d` fails (the injector's first), its second succeeds.
fn first_request_fails(d: Domain, f: &FaultInjecting<impl DomainAllocator>) {
    assert!(
        d.malloc(48).is_none(),
        "the program's first request is the injector's first"
    );
    assert_eq!((f.requests(), f.failures()), (1, 1));
    let p = d.malloc(48).unwrap();
    // SAFETY: a live block of the domain, freed once.
    unsafe { d.free(p.as_ptr()) };
    assert_eq!((f.requests(), f.failures()), (2, 1));
}

#[test]
fn the_pool_over_the_c_library_cannot_tell_about_foreign_pointers() {
    // What makes this test the probe's case: `Unknown` outside its arenas.
    static X: u8 = 0;
    assert_eq!(UNDER_SET.owns(&X), Ownership::Unknown);
    assert!(UNDER_SET.declares_ownership());
    assert!(!OVER_C.declares_ownership());
}

#[test]
fn set_calls_nothing() {
    let (d, early) = used_domain("hidden-set");
    arm(&UNDER_SET);
    set(d.id(), &UNDER_SET).unwrap();
    assert_eq!((UNDER_SET.requests(), UNDER_SET.failures()), (0, 0));
    first_request_fails(d, &UNDER_SET);
    // SAFETY: the block made before the set, freed once (to `FIRST`, which made it).
    unsafe { d.free(early.as_ptr()) };
}

#[test]
fn a_refused_set_calls_nothing_either() {
    let (d, early) = used_domain("hidden-refused");
    arm(&OVER_C);
    assert!(matches!(
        set(d.id(), &OVER_C),
        Err(DomainError::AmbiguousOwnership { .. })
    ));
    assert_eq!(OVER_C.requests(), 0);
    // SAFETY: a live block of the domain, freed once.
    unsafe { d.free(early.as_ptr()) };
}

#[test]
fn hook_calls_nothing() {
    let (d, early) = used_domain("hidden-hook");
    let mut armed: Option<&'static FaultInjecting<&'static DynAllocator>> = None;
    hook(d.id(), |prev| {
        let f: &'static FaultInjecting<&'static DynAllocator> =
            Box::leak(Box::new(FaultInjecting::new(prev)));
        arm(f);
        armed = Some(f);
        f
    })
    .unwrap();
    let f = armed.unwrap();
    assert_eq!((f.requests(), f.failures()), (0, 0));
    first_request_fails(d, f);
    // SAFETY: a live block of the domain, freed once.
    unsafe { d.free(early.as_ptr()) };
}

#[test]
fn hook_forwarding_calls_nothing() {
    let (d, early) = used_domain("hidden-forwarding");
    let mut armed: Option<&'static FaultInjecting<&'static DynAllocator>> = None;
    hook_forwarding(d.id(), |prev| {
        let f: &'static FaultInjecting<&'static DynAllocator> =
            Box::leak(Box::new(FaultInjecting::new(prev)));
        arm(f);
        armed = Some(f);
        f
    })
    .unwrap();
    let f = armed.unwrap();
    assert_eq!((f.requests(), f.failures()), (0, 0));
    first_request_fails(d, f);
    // SAFETY: a live block of the domain, freed once (through the hook).
    unsafe { d.free(early.as_ptr()) };
}
