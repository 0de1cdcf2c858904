//! `Guarded` finds each violation and reports its facts (recorded, so they can be inspected here;
//! the aborting default is exercised in `cpython_test_mem.rs`).

use std::collections::HashSet;
use std::ptr::NonNull;

use alloc_arena::PoolAllocator;
use alloc_core::{DomainAllocator, Ownership, System};
use alloc_debug::{
    Action, CLEAN_BYTE, DEAD_BYTE, FORBIDDEN_BYTE, Guarded, RECORDED_VIOLATIONS, ViolationKind,
};

fn recording<A: DomainAllocator>(inner: A, api: u8) -> Guarded<A> {
    Guarded::new(inner)
        .with_api(api)
        .with_action(Action::Record)
}

#[test]
fn new_memory_is_filled_with_cleanbyte_and_guarded_by_forbiddenbyte() {
    let g = recording(System, b'm');
    let p = g.malloc(24).unwrap().as_ptr();
    // SAFETY: the block and its guards are ours to read; freed once.
    unsafe {
        assert!(
            std::slice::from_raw_parts(p, 24)
                .iter()
                .all(|&b| b == CLEAN_BYTE)
        );
        assert!(
            std::slice::from_raw_parts(p.sub(7), 7)
                .iter()
                .all(|&b| b == FORBIDDEN_BYTE)
        );
        assert!(
            std::slice::from_raw_parts(p.add(24), 8)
                .iter()
                .all(|&b| b == FORBIDDEN_BYTE)
        );
        assert_eq!(*p.sub(8), b'm', "the API id byte");
        g.free(p);
    }
    let z = g.calloc(3, 8).unwrap().as_ptr();
    // SAFETY: as above.
    unsafe {
        assert!(std::slice::from_raw_parts(z, 24).iter().all(|&b| b == 0));
        g.free(z);
    }
    assert_eq!(g.violation_count(), 0);
}

#[test]
fn freed_memory_is_filled_with_deadbyte() {
    let g = recording(System, b'm').with_quarantine(4);
    let p = g.malloc(40).unwrap().as_ptr();
    // SAFETY: the quarantine keeps the freed block allocated, so reading it is sound.
    unsafe {
        g.free(p);
        assert!(
            std::slice::from_raw_parts(p.sub(16), 40 + 32)
                .iter()
                .all(|&b| b == DEAD_BYTE)
        );
    }
}

#[test]
fn overflow_is_reported_with_the_damaged_tail_bytes() {
    let g = recording(PoolAllocator::new(), b'm');
    let p = g.malloc(16).unwrap().as_ptr();
    // SAFETY: deliberate one-byte overflow into our own trailer; freed once.
    unsafe {
        *p.add(16) = b'x';
        g.free(p);
    }
    let v = &g.violations()[0];
    assert_eq!(v.kind, ViolationKind::BufferOverflow);
    assert_eq!(v.address, p as usize);
    assert_eq!(v.size, 16);
    assert!(v.serial >= 1);
    let r = v.report();
    assert!(
        r.contains(&format!("Debug memory block at address p={p:p}: API 'm'")),
        "{r}"
    );
    assert!(r.contains("    16 bytes originally requested"), "{r}");
    assert!(
        r.contains("The 7 pad bytes at p-7 are FORBIDDENBYTE, as expected."),
        "{r}"
    );
    assert!(r.contains("are not all FORBIDDENBYTE (0xfd):"), "{r}");
    assert!(
        r.contains("        at tail+0: 0x78 *** OUCH\n        at tail+1: 0xfd\n"),
        "{r}"
    );
    assert!(
        r.contains(&format!(
            "The block was made by call #{} to debug malloc/realloc.",
            v.serial
        )),
        "{r}"
    );
    assert!(
        r.contains("    Data at p: cd cd cd cd cd cd cd cd cd cd cd cd cd cd cd cd\n"),
        "{r}"
    );
    assert!(
        r.contains("Fatal error in debug free: bad trailing pad byte"),
        "{r}"
    );
    assert_eq!(
        g.release_withheld(),
        1,
        "the damaged block was withheld, then released"
    );
}

#[test]
fn underflow_is_reported_with_the_damaged_leading_bytes() {
    let g = recording(System, b'm');
    let p = g.malloc(16).unwrap().as_ptr();
    // SAFETY: deliberate write into our own leading pad; freed once.
    unsafe {
        *p.sub(1) = b'x';
        g.free(p);
    }
    let v = &g.violations()[0];
    assert_eq!(v.kind, ViolationKind::BufferUnderflow);
    let r = v.report();
    assert!(
        r.contains("The 7 pad bytes at p-7 are not all FORBIDDENBYTE (0xfd):"),
        "{r}"
    );
    assert!(r.contains("        at p-7: 0xfd\n"), "{r}");
    assert!(r.contains("        at p-1: 0x78 *** OUCH\n"), "{r}");
    assert!(
        r.contains("Fatal error in debug free: bad leading pad byte"),
        "{r}"
    );
    assert_eq!(
        g.release_withheld(),
        1,
        "the damaged block was withheld, then released"
    );
}

#[test]
fn a_block_freed_through_another_domain_is_api_misuse() {
    let mem = recording(&System, b'm');
    let raw = recording(&System, b'r');
    let p = mem.malloc(16).unwrap().as_ptr();
    // SAFETY: made by `mem`, freed through `raw`: the misuse under test. `raw` records and does
    // not release it; `mem` frees it properly afterwards.
    unsafe {
        raw.free(p);
        let v = &raw.violations()[0];
        assert_eq!(
            v.kind,
            ViolationKind::ApiMismatch {
                allocated: b'm',
                verified: b'r'
            }
        );
        assert!(
            v.report()
                .contains("bad ID: Allocated using API 'm', verified using API 'r'")
        );
        mem.free(p);
    }
    assert_eq!(mem.violation_count(), 0);
}

#[test]
fn a_double_free_is_recognised_while_the_block_is_quarantined() {
    let g = recording(PoolAllocator::new(), b'o').with_quarantine(8);
    let p = g.malloc(64).unwrap().as_ptr();
    // SAFETY: the second free is the error under test; the quarantine keeps the memory readable.
    unsafe {
        g.free(p);
        g.free(p);
    }
    let v = &g.violations()[0];
    assert_eq!(v.kind, ViolationKind::DoubleFree);
    assert!(
        v.report().contains("the block was already freed"),
        "{}",
        v.report()
    );
}

#[test]
fn a_write_after_free_is_found_when_the_block_leaves_the_quarantine() {
    let g = recording(System, b'm').with_quarantine(2);
    let p = g.malloc(32).unwrap().as_ptr();
    // SAFETY: the write after free is the error under test; the block is quarantined (allocated).
    unsafe {
        g.free(p);
        *p.add(5) = 0x42;
    }
    for _ in 0..2 {
        let q = g.malloc(32).unwrap();
        // SAFETY: live, freed once; pushes the damaged block out of the quarantine.
        unsafe { g.free(q.as_ptr()) };
    }
    let v = &g.violations()[0];
    assert_eq!(v.kind, ViolationKind::UseAfterFree);
    assert!(
        v.report().contains("at p+5: 0x42 *** OUCH"),
        "{}",
        v.report()
    );
}

#[test]
fn a_sized_free_with_the_wrong_size_is_reported() {
    let g = recording(System, b'm');
    let p = g.malloc(48).unwrap();
    // SAFETY: the wrong size is the error under test; the block is then freed properly.
    unsafe {
        g.free_sized(p, 40);
        assert_eq!(
            g.violations()[0].kind,
            ViolationKind::WrongSize {
                recorded: 48,
                given: 40
            }
        );
        g.free_sized(p, 48);
    }
    assert_eq!(g.violation_count(), 1);
}

/// An allocator that knows exactly which blocks it made, so foreign pointers are detectable.
struct Exact {
    blocks: std::sync::Mutex<HashSet<usize>>,
}

// SAFETY: blocks come from System; `owns` answers from the exact set of live blocks.
unsafe impl DomainAllocator for Exact {
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        let p = System.malloc(size)?;
        self.blocks.lock().unwrap().insert(p.as_ptr() as usize);
        Some(p)
    }
    unsafe fn realloc(&self, ptr: *mut u8, n: usize) -> Option<NonNull<u8>> {
        // SAFETY: forwarded.
        let p = unsafe { System.realloc(ptr, n) }?;
        let mut b = self.blocks.lock().unwrap();
        b.remove(&(ptr as usize));
        b.insert(p.as_ptr() as usize);
        Some(p)
    }
    unsafe fn free(&self, ptr: *mut u8) {
        self.blocks.lock().unwrap().remove(&(ptr as usize));
        // SAFETY: forwarded.
        unsafe { System.free(ptr) }
    }
    fn owns(&self, ptr: *const u8) -> Ownership {
        if self.blocks.lock().unwrap().contains(&(ptr as usize)) {
            Ownership::Owned
        } else {
            Ownership::NotOwned
        }
    }
    fn write_origin(&self, ptr: *const u8, out: &mut dyn std::fmt::Write) -> bool {
        let _ = ptr;
        out.write_str("Allocated at tests/guarded.rs (the inner allocator knows)")
            .is_ok()
    }
}

#[test]
fn a_pointer_it_never_made_is_reported_and_left_untouched() {
    let g = recording(
        Exact {
            blocks: Default::default(),
        },
        b'm',
    );
    let mut local = [0u8; 64];
    // SAFETY: the foreign pointer is the error under test; Guarded must not touch its memory.
    unsafe { g.free(local.as_mut_ptr().add(32)) };
    let v = &g.violations()[0];
    assert_eq!(v.kind, ViolationKind::ForeignPointer);
    assert!(v.report().contains("not a live block of this allocator"));
    assert!(
        local.iter().all(|&b| b == 0),
        "the foreign memory was not written"
    );
}

#[test]
fn the_report_says_where_the_block_was_made_when_the_inner_allocator_knows() {
    let g = recording(
        Exact {
            blocks: Default::default(),
        },
        b'm',
    );
    let p = g.malloc(8).unwrap().as_ptr();
    // SAFETY: deliberate overflow; freed once.
    unsafe {
        *p.add(8) = 0;
        g.free(p);
    }
    assert!(
        g.violations()[0]
            .report()
            .contains("Allocated at tests/guarded.rs")
    );
    assert_eq!(
        g.release_withheld(),
        1,
        "the damaged block was withheld, then released"
    );
}

#[test]
fn is_freed_tells_live_from_freed_and_damaged_blocks() {
    let g = recording(PoolAllocator::new(), b'm').with_quarantine(16);
    let live = g.malloc(32).unwrap().as_ptr();
    let freed = g.malloc(32).unwrap().as_ptr();
    let damaged = g.malloc(32).unwrap().as_ptr();
    // SAFETY: blocks of ours; the damage is deliberate and in our own guard.
    unsafe {
        g.free(freed);
        *damaged.add(32) = 1;
    }
    assert!(!g.is_freed(live));
    assert!(g.is_freed(freed));
    assert!(g.is_freed(damaged));
    // SAFETY: live blocks freed once (the damaged one is recorded, not released).
    unsafe {
        g.free(live);
        g.free(damaged);
    }
}

#[test]
fn violations_are_recorded_in_a_bounded_ring_and_all_counted() {
    let g = recording(System, b'm');
    for _ in 0..RECORDED_VIOLATIONS + 5 {
        let p = g.malloc(8).unwrap().as_ptr();
        // SAFETY: deliberate overflow; the block is recorded, not released.
        unsafe {
            *p.add(8) = 0;
            g.free(p);
        }
    }
    assert_eq!(g.violation_count(), (RECORDED_VIOLATIONS + 5) as u64);
    let kept = g.violations();
    assert_eq!(kept.len(), RECORDED_VIOLATIONS);
    assert!(
        kept.windows(2).all(|w| w[0].serial < w[1].serial),
        "oldest first"
    );
    assert_eq!(
        g.withheld_released_early(),
        5,
        "the blocks of records pushed out of the ring went back to the inner allocator"
    );
    assert_eq!(g.release_withheld(), RECORDED_VIOLATIONS);
}

#[test]
fn the_panic_action_panics_with_the_report() {
    let g = Guarded::new(System).with_action(Action::Panic);
    let p = g.malloc(4).unwrap().as_ptr();
    // SAFETY: deliberate overflow into our own trailer; the panic is the behaviour under test.
    unsafe { *p.add(4) = 0 };
    let p_addr = p as usize;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: as above.
        unsafe { g.free(p_addr as *mut u8) }
    }));
    let message = caught.unwrap_err();
    let text = message.downcast_ref::<String>().unwrap();
    assert!(text.contains("bad trailing pad byte"), "{text}");
    // SAFETY: the panic left the block with the C library; its raw block starts 16 bytes before.
    unsafe { System.free(p.sub(16)) };
}

#[test]
fn serial_numbers_count_calls_to_malloc_and_realloc() {
    let g = recording(System, b'm');
    let a = g.malloc(8).unwrap().as_ptr();
    // SAFETY: live blocks; the realloc result replaces `a`; the overflow on `b` is deliberate.
    unsafe {
        let b = g.realloc(a, 16).unwrap().as_ptr();
        *b.add(16) = 0;
        g.free(b);
    }
    assert_eq!(
        g.violations()[0].serial,
        2,
        "malloc was call #1, realloc call #2"
    );
    assert_eq!(
        g.release_withheld(),
        1,
        "the damaged block was withheld, then released"
    );
}

#[test]
fn decorators_claim_only_the_blocks_they_made() {
    use alloc_debug::Counting;
    let pool = PoolAllocator::new();
    let g = recording(&pool, b'm');
    let c = Counting::new(&pool);
    assert!(
        g.track_ownership() && c.track_ownership(),
        "asked before any block"
    );
    let direct = pool.malloc(64).unwrap().as_ptr();
    let guarded = g.malloc(64).unwrap().as_ptr();
    let counted = c.malloc(64).unwrap().as_ptr();
    assert_eq!(g.owns(guarded), Ownership::Owned);
    assert_eq!(g.owns(direct), Ownership::NotOwned);
    assert_eq!(g.owns(counted), Ownership::NotOwned);
    assert_eq!(c.owns(counted), Ownership::Owned);
    assert_eq!(c.owns(direct), Ownership::NotOwned);
    assert_eq!(c.owns(guarded), Ownership::NotOwned);
    // SAFETY: each block freed once by its maker.
    unsafe {
        pool.free(direct);
        g.free(guarded);
        c.free(counted);
    }
}

#[test]
fn ownership_is_unknown_until_tracked_and_blocks_made_before_are_not_covered() {
    use alloc_debug::{Counting, Limited};
    let pool = PoolAllocator::new();
    let g = recording(&pool, b'm');
    let c = Counting::new(&pool);
    let l = Limited::new(&pool, 1 << 20);
    let before = [g.malloc(64), c.malloc(64), l.malloc(64)].map(|p| p.unwrap().as_ptr());
    assert_eq!(g.owns(before[0]), Ownership::Unknown, "untracked: no claim");
    assert_eq!(c.owns(before[1]), Ownership::Unknown);
    assert_eq!(l.owns(before[2]), Ownership::Unknown);
    assert!(!g.track_ownership(), "a block was made before tracking");
    assert!(!c.track_ownership());
    assert!(!l.track_ownership());
    let after = g.malloc(64).unwrap().as_ptr();
    assert_eq!(g.owns(after), Ownership::Owned, "tracked from the call on");
    assert_eq!(
        g.owns(before[0]),
        Ownership::NotOwned,
        "made before: not covered"
    );
    let built = Guarded::new(&pool).with_ownership_tracking();
    let p = built.malloc(64).unwrap().as_ptr();
    assert_eq!(built.owns(p), Ownership::Owned);
    assert!(built.track_ownership(), "tracked from the first block");
    // SAFETY: each block freed once by its maker.
    unsafe {
        g.free(before[0]);
        c.free(before[1]);
        l.free(before[2]);
        g.free(after);
        built.free(p);
    }
}

/// A block of the aligned family records its alignment in its header, so the `malloc` family's
/// calls (the C library's `free`, `realloc` and `malloc_usable_size` of a `posix_memalign` block)
/// find its inner block and check its guards.
#[test]
fn an_aligned_block_is_checked_and_freed_by_the_malloc_familys_calls() {
    use std::alloc::Layout;
    let pool = PoolAllocator::new();
    for align in [32, 64, 4096] {
        let g = recording(&pool, b'm');
        let layout = Layout::from_size_align(100, align).unwrap();
        let a = g.malloc_aligned(layout).unwrap();
        assert_eq!(a.as_ptr() as usize % align, 0);
        // SAFETY: a live block of `g`; each is freed once, by a call of either family.
        unsafe {
            assert_eq!(g.usable_size(a), Some(100));
            let b = g.realloc(a.as_ptr(), 200).unwrap();
            g.free(b.as_ptr());
            let c = g.malloc_aligned(layout).unwrap();
            g.free(c.as_ptr());
            // An overflow of an aligned block, found by plain `free`.
            let d = g.malloc_aligned(layout).unwrap();
            *d.as_ptr().add(100) = 0;
            g.free(d.as_ptr());
        }
        let v = g.violations();
        assert_eq!(v.len(), 1, "align {align}");
        assert_eq!(v[0].kind, ViolationKind::BufferOverflow);
        assert_eq!(v[0].size, 100);
        assert_eq!(g.release_withheld(), 1);
    }
}

/// Without ownership tracking, over a decorator that cannot tell either, a pointer of the C
/// library's is still reported as no block of ours (it has neither an API id nor a lead pad),
/// not as another API's block.
#[test]
fn a_foreign_pointer_through_an_untracked_stack_is_reported_as_foreign() {
    use alloc_debug::Counting;
    let pool = PoolAllocator::new();
    let g = recording(Counting::new(&pool), b'm');
    // A pointer 16 bytes into a C library block: what an untracked decorator reads in front of
    // it (where its header would be) is that block's memory, so the misuse stays inside memory
    // the program owns (AddressSanitizer checks it).
    let foreign = System.malloc(80).unwrap();
    // SAFETY: the C library's block, zeroed; a pointer into it given to the decorator: the
    // misuse under test (recorded, not acted on); then the block freed by its maker.
    unsafe {
        foreign.as_ptr().write_bytes(0, 80);
        g.free(foreign.as_ptr().add(16));
        System.free(foreign.as_ptr());
    }
    let v = g.violations();
    assert_eq!(v.len(), 1);
    assert_eq!(
        v[0].kind,
        ViolationKind::ForeignPointer,
        "{}",
        v[0].report()
    );
}

/// `Counting`'s aligned family counts with no call while no block needs remembering (its fast
/// key open); switching tracking on closes that path, on this thread and on another that had
/// it open, so blocks made after the switch are remembered and forgotten when freed.
#[test]
fn tracking_switched_on_closes_countings_fast_path_on_every_thread() {
    use alloc_debug::Counting;
    use std::alloc::Layout;
    let pool = PoolAllocator::new();
    let c = Counting::new(&pool);
    let layout = Layout::from_size_align(64, 8).unwrap();
    let warm = |c: &Counting<&PoolAllocator>| {
        // The first calls open the fast path on the calling thread.
        for _ in 0..4 {
            let p = c.malloc_aligned(layout).unwrap();
            // SAFETY: just made with `layout`, freed once.
            unsafe { c.free_aligned(p, layout) };
        }
    };
    warm(&c);
    std::thread::scope(|s| s.spawn(|| warm(&c)).join().unwrap());
    assert!(!c.track_ownership(), "blocks were made before tracking");
    let here = c.malloc_aligned(layout).unwrap();
    let there = std::thread::scope(|s| {
        s.spawn(|| c.malloc_aligned(layout).unwrap().as_ptr() as usize)
            .join()
            .unwrap()
    }) as *mut u8;
    assert_eq!(
        c.owns(here.as_ptr()),
        Ownership::Owned,
        "made after the switch"
    );
    assert_eq!(
        c.owns(there),
        Ownership::Owned,
        "made on another thread after it"
    );
    // SAFETY: each block freed once, with its layout.
    unsafe {
        c.free_aligned(here, layout);
        c.free_aligned(NonNull::new(there).unwrap(), layout);
    }
    assert_eq!(
        c.owns(here.as_ptr()),
        Ownership::NotOwned,
        "forgotten when freed"
    );
    assert_eq!(c.owns(there), Ownership::NotOwned);
    let s = c.stats();
    assert_eq!((s.allocations, s.frees, s.bytes_live), (10, 10, 0));
}
