//! Removing user domains: refused while a block made through the domain is live and for the
//! standard domains; afterwards every id and handle of the removed domain is stale (a typed
//! error, or a failed allocation), even once another domain has its index.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloc_core::{DomainAllocator, System};
use alloc_domains::{
    Domain, DomainError, DomainId, add_domain, domains, find, get, hook_forwarding, name,
    on_change, remove_domain, set,
};

#[test]
fn a_domain_with_live_blocks_is_not_removed() {
    let id = add_domain("remove-live", &System).unwrap();
    let d = Domain::new(id).unwrap();
    let a = d.malloc(16).unwrap();
    let b = d.calloc(4, 8).unwrap();
    let c = d
        .malloc_aligned(core::alloc::Layout::from_size_align(64, 64).unwrap())
        .unwrap();
    assert_eq!(
        remove_domain(id),
        Err(DomainError::LiveBlocks {
            domain: "remove-live",
            live: 3
        })
    );
    // A realloc keeps the count; the frees bring it down.
    // SAFETY: live blocks of the domain, each released once, with the family that made it.
    unsafe {
        let a = d.realloc(a.as_ptr(), 4000).unwrap();
        d.free(a.as_ptr());
        d.free(b.as_ptr());
        assert!(matches!(
            remove_domain(id),
            Err(DomainError::LiveBlocks { live: 1, .. })
        ));
        d.free_aligned(c, core::alloc::Layout::from_size_align(64, 64).unwrap());
    }
    remove_domain(id).unwrap();
}

#[test]
fn frees_are_counted_over_the_tables_own_c_library() {
    // The raw domain's allocator is the table's own `System` static (zero-sized, like the
    // removed domains' allocator): a free to it must be counted as any other.
    let id = add_domain("remove-raw-system", get(DomainId::RAW).unwrap()).unwrap();
    let d = Domain::new(id).unwrap();
    let p = d.malloc(64).unwrap();
    // SAFETY: a live block of the domain, freed once.
    unsafe { d.free(p.as_ptr()) };
    remove_domain(id).unwrap();
}

#[test]
fn standard_domains_are_not_removed() {
    for id in [DomainId::RAW, DomainId::MEM, DomainId::OBJECT] {
        assert!(matches!(
            remove_domain(id),
            Err(DomainError::StandardDomain(_))
        ));
        assert!(Domain::new(id).is_ok());
    }
}

#[test]
fn a_removed_domain_is_gone_and_its_ids_are_stale() {
    let calls = Arc::new(AtomicUsize::new(0));
    let id = add_domain("remove-gone", &System).unwrap();
    let stale = Domain::new(id).unwrap();
    let seen = calls.clone();
    let cb: &'static alloc_domains::ChangeCallback = Box::leak(Box::new(move |_, _| {
        seen.fetch_add(1, Ordering::Relaxed);
    }));
    on_change(id, cb).unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    let old = get(id).unwrap();
    hook_forwarding(id, |prev| prev).unwrap();
    set(id, old).unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 3);

    remove_domain(id).unwrap();
    let removed = DomainError::Removed {
        index: id.index() as u8,
        generation: id.generation(),
    };
    assert_eq!(remove_domain(id), Err(removed.clone()));
    assert_eq!(Domain::new(id), Err(removed.clone()));
    assert_eq!(get(id).err(), Some(removed.clone()));
    assert_eq!(name(id), Err(removed.clone()));
    assert_eq!(set(id, &System), Err(removed.clone()));
    assert_eq!(find("remove-gone"), None);
    assert!(
        domains()
            .iter()
            .all(|d| d.id != id && d.name != "remove-gone")
    );
    // A stale handle reaches no allocator.
    assert!(stale.malloc(8).is_none());
    assert!(stale.calloc(1, 8).is_none());
    // SAFETY: freeing null through any handle does nothing.
    unsafe { stale.free(core::ptr::null_mut()) };

    // The name and the index are free again; the old id and handle stay stale.
    let again = add_domain("remove-gone", &System).unwrap();
    assert_ne!(again, id);
    assert_eq!(find("remove-gone"), Some(again));
    assert_eq!(Domain::new(id), Err(removed));
    assert!(
        stale.malloc(8).is_none(),
        "a stale handle never reaches the new domain"
    );
    let fresh = Domain::new(again).unwrap();
    let p = fresh.malloc(8).unwrap();
    // SAFETY: a live block of the new domain, freed once.
    unsafe { fresh.free(p.as_ptr()) };
    // The removed domain's callback was unregistered with it.
    set(again, &System).unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    remove_domain(again).unwrap();
}

#[test]
fn raw_ids_carry_the_generation() {
    let id = add_domain("remove-raw", &System).unwrap();
    assert_eq!(DomainId::from_raw(id.to_raw()), Some(id));
    remove_domain(id).unwrap();
    let again = add_domain("remove-raw-2", &System).unwrap();
    if again.index() == id.index() {
        // Newer: other tests running beside this one may have taken and removed the index in
        // between, each time with a generation more.
        assert!(again.generation() > id.generation());
        assert_ne!(again.to_raw(), id.to_raw());
    }
    assert_eq!(DomainId::from_raw(u32::MAX), None);
    remove_domain(again).unwrap();
}
