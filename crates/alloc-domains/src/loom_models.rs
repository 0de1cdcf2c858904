//! loom models of the record reclamation (built and run only with `--cfg loom`; `cargo xtask
//! loom` runs them with loom's default bounds). Each runs the crate's own code: the reader's
//! section (`Readers::enter`), the routing of a free along a domain's chain
//! (`Installed::owner`), and the writer's retirement and reclamation (`retire`, `reclaim`, with
//! `Readers::synchronize`). A reclaimed record is marked poisoned before it would be freed (under
//! loom it is then kept, not freed): every record a reader reads is checked for the mark
//! (`Installed::check`), so a reader that could reach a reclaimed record fails the model.
//!
//! Both models are unbounded: each thread makes a handful of atomic accesses (three announcement
//! slots, one table slot, two records), and the full search finishes in seconds.

use core::ptr::{self, NonNull};
use std::boxed::Box;
use std::vec::Vec;

use alloc_core::{DomainAllocator, Ownership};
use loom::sync::Arc;
use loom::sync::atomic::AtomicPtr;
use loom::thread;

use crate::reclaim::Readers;
use crate::record::{DynAllocator, Installed, LIVE, reclaim, retire};
use crate::sync::{AtomicU8, Ordering};

/// An allocator the models route to: it makes no block, and claims pointers into `claims`.
struct Marker {
    claims: usize,
}

// SAFETY: it returns no block at all.
unsafe impl DomainAllocator for Marker {
    fn malloc(&self, _size: usize) -> Option<NonNull<u8>> {
        None
    }
    unsafe fn realloc(&self, _ptr: *mut u8, _new_size: usize) -> Option<NonNull<u8>> {
        None
    }
    unsafe fn free(&self, _ptr: *mut u8) {}
    fn owns(&self, ptr: *const u8) -> Ownership {
        if ptr as usize == self.claims {
            Ownership::Owned
        } else {
            Ownership::NotOwned
        }
    }
}

static BASE: Marker = Marker { claims: 0x1000 };
static HOOK: Marker = Marker { claims: 0x2000 };

/// A record made as the table makes them (by `Box`, freed once reclaimed).
fn record(
    alloc: &'static DynAllocator,
    previous: *mut Installed,
    forwards: bool,
    direct: bool,
) -> *mut Installed {
    Box::into_raw(Box::new(Installed {
        alloc,
        previous,
        precise: true,
        debug_hook: false,
        guards_all: false,
        forwards,
        direct,
        heap: true,
        generation: 0,
        mark: AtomicU8::new(LIVE),
    }))
}

/// What a thread freeing `ptr` through the domain does: in a section, load the slot, route the
/// free along the chain (every record read is checked for the poison mark), leave.
fn free_through(readers: &Readers, slot: &AtomicPtr<Installed>, ptr: usize) -> usize {
    let _section = readers.enter();
    // Acquire: pairs with the Release that published the record (as `table::route::current`).
    let p = slot.load(Ordering::Acquire);
    // SAFETY: the slot holds a record; it is not freed before this section ends (the property
    // the model checks: `check` asserts it was not reclaimed).
    let rec = unsafe { &*p };
    rec.check();
    let owner = rec.owner(ptr as *const u8);
    ptr::from_ref(owner).cast::<u8>() as usize
}

fn addr(a: &'static Marker) -> usize {
    ptr::from_ref(a).cast::<u8>() as usize
}

/// PEP 445's hook pattern undone: one thread is mid-free through a forwarding hook's record
/// while another sets the wrapped allocator back (the hook's record leaves the chain), retires
/// the record and reclaims it.
#[test]
fn free_during_set_back_and_reclaim() {
    loom::model(|| {
        let readers = Arc::new(Readers::new());
        let base = record(&BASE, ptr::null_mut(), false, true);
        let hook = record(&HOOK, base, true, true);
        let slot = Arc::new(AtomicPtr::new(hook));

        let reader = {
            let (readers, slot) = (readers.clone(), slot.clone());
            thread::spawn(move || free_through(&readers, &slot, 0x1000))
        };

        // The set-back: publish the record below the hook, retire the hook's, reclaim.
        slot.store(base, Ordering::Release);
        let mut batch = Vec::new();
        // SAFETY: `hook` was just taken out of the slot, once.
        unsafe { retire(hook, base, &mut batch) };
        let kept = reclaim(&readers, batch);
        assert!(
            kept.is_empty(),
            "no section of the writer: the grace period ends"
        );

        let owner = reader.join().unwrap();
        // Through the hook while it was current, to the allocator below once set back.
        assert!(owner == addr(&HOOK) || owner == addr(&BASE));
        // SAFETY: `base` is the table's record, not retired: freed once, here.
        drop(unsafe { Box::from_raw(base) });
    });
}

/// A domain removed while a thread walks its chain (a chain that does not forward to its
/// oldest: the walk reads both records): the writer takes the whole chain out, retires it and
/// reclaims it.
#[test]
fn route_during_remove_and_reclaim() {
    loom::model(|| {
        let readers = Arc::new(Readers::new());
        let base = record(&BASE, ptr::null_mut(), false, true);
        let top = record(&HOOK, base, false, false);
        let slot = Arc::new(AtomicPtr::new(top));
        let vacant = record(&BASE, ptr::null_mut(), false, true);

        let reader = {
            let (readers, slot) = (readers.clone(), slot.clone());
            thread::spawn(move || free_through(&readers, &slot, 0x1000))
        };

        slot.store(vacant, Ordering::Release);
        let mut batch = Vec::new();
        // SAFETY: the whole chain was just taken out of the slot, once.
        unsafe { retire(top, ptr::null_mut(), &mut batch) };
        assert_eq!(batch.len(), 2);
        assert!(reclaim(&readers, batch).is_empty());

        assert_eq!(reader.join().unwrap(), addr(&BASE));
        // SAFETY: the stand-in for the removed domain's static record, freed once.
        drop(unsafe { Box::from_raw(vacant) });
    });
}

/// Nested sections (an allocator's `owns` that reads the table again) and a writer on another
/// thread: the inner section's end must not end the outer one's announcement.
#[test]
fn nested_section_keeps_the_record() {
    loom::model(|| {
        let readers = Arc::new(Readers::new());
        let base = record(&BASE, ptr::null_mut(), false, true);
        let hook = record(&HOOK, base, true, true);
        let slot = Arc::new(AtomicPtr::new(hook));

        let reader = {
            let (readers, slot) = (readers.clone(), slot.clone());
            thread::spawn(move || {
                let _outer = readers.enter();
                let p = slot.load(Ordering::Acquire);
                // SAFETY: read inside the outer section (the property checked).
                let rec = unsafe { &*p };
                drop(readers.enter());
                rec.check();
                let _ = rec.owner(0x2000 as *const u8);
            })
        };

        slot.store(base, Ordering::Release);
        let mut batch = Vec::new();
        // SAFETY: `hook` was just taken out of the slot, once.
        unsafe { retire(hook, base, &mut batch) };
        assert!(reclaim(&readers, batch).is_empty());

        reader.join().unwrap();
        // SAFETY: the table's record, freed once.
        drop(unsafe { Box::from_raw(base) });
    });
}
