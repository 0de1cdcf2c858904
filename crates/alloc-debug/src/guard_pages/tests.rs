use super::*;
use alloc_core::System;

use crate::os::faults::Access;

fn every_block(slots: u32, quarantine: u32) -> GuardPages<System> {
    GuardPages::builder()
        .sample_rate(1)
        .slots(slots)
        .slot_pages(1)
        .quarantine(quarantine)
        .build(System)
        .unwrap()
}

/// Runs `f` on a fresh thread: a fresh sampling countdown.
fn on_new_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

fn describe_text(g: &GuardPages<System>, addr: usize) -> String {
    let mut out = slots::Report::new();
    slots::describe(g.slots().unwrap(), addr, Access::Write, &mut out);
    String::from_utf8(out.text().to_vec()).unwrap()
}

#[test]
fn blocks_end_at_their_guard_page_rounded_to_their_alignment() {
    on_new_thread(|| {
        let g = every_block(64, 0);
        let page = pages::page_size();
        for size in [1usize, 13, 16, 100, 4000, page] {
            let p = g.malloc(size).unwrap().as_ptr();
            assert!(g.is_guarded(p), "{size}");
            assert_eq!(p as usize % MIN_ALIGN, 0);
            // The block ends where the guard page starts, but for the rounding to 16.
            let end = p as usize + size.next_multiple_of(MIN_ALIGN);
            assert_eq!(end % page, 0, "{size}");
            // SAFETY: the whole block is writable.
            unsafe { p.write_bytes(0xAB, size) };
            // SAFETY: a live block, freed once.
            unsafe { g.free(p) };
            assert!(!g.is_guarded(p));
        }
        for align in [32usize, 64, 256, 4096] {
            let layout = Layout::from_size_align(40, align).unwrap();
            let p = g.malloc_aligned(layout).unwrap().as_ptr();
            assert!(
                g.is_guarded(p) && (p as usize).is_multiple_of(align),
                "{align}"
            );
            assert!(page - (p as usize % page) - 40 < align, "{align}");
            // SAFETY: a live block of this layout, freed once.
            unsafe { g.free_aligned(NonNull::new(p).unwrap(), layout) };
        }
        // Larger than a slot, or aligned past a page: the inner allocator's.
        let big = g.malloc(page + 1).unwrap().as_ptr();
        assert!(!g.is_guarded(big));
        // SAFETY: a live block, freed once.
        unsafe { g.free(big) };
    });
}

#[test]
fn underflow_mode_starts_blocks_at_their_slot() {
    on_new_thread(|| {
        let g = GuardPages::builder()
            .sample_rate(1)
            .slots(8)
            .quarantine(4)
            .underflow(true)
            .build(System)
            .unwrap();
        let p = g.malloc(24).unwrap().as_ptr();
        assert!(g.is_guarded(p));
        assert_eq!(p as usize % pages::page_size(), 0);
        let text = describe_text(&g, p as usize - 1);
        assert!(text.contains("buffer underflow: a write at"), "{text}");
        assert!(
            text.contains("offset -1, 1 byte(s) before its start"),
            "{text}"
        );
        assert!(text.contains(&format!("block: {p:p}, 24 bytes")), "{text}");
        // SAFETY: a live block, freed once.
        unsafe { g.free(p) };
    });
}

#[test]
fn a_fault_past_a_block_is_described_as_an_overflow_and_after_free_as_a_use_after_free() {
    on_new_thread(|| {
        let g = every_block(8, 4);
        let p = g.malloc(32).unwrap().as_ptr();
        let text = describe_text(&g, p as usize + 32);
        assert!(text.contains("buffer overflow: a write at"), "{text}");
        assert!(text.contains("offset 32, 1 byte(s) past its end"), "{text}");
        assert!(
            text.contains(&format!("block: {p:p}, 32 bytes\n")),
            "{text}"
        );
        assert!(text.contains("allocated at: 0x"), "{text}");
        // SAFETY: a live block, freed once.
        unsafe { g.free(p) };
        let text = describe_text(&g, p as usize + 8);
        assert!(text.contains("use after free: a write at"), "{text}");
        assert!(text.contains("offset 8 in a freed block"), "{text}");
        assert!(text.contains("32 bytes (freed)"), "{text}");
        assert!(text.contains("freed at: 0x"), "{text}");
        // An address outside every pool is no guard page's.
        let mut out = slots::Report::new();
        slots::describe(g.slots().unwrap(), 16, Access::Read, &mut out);
        assert!(!String::from_utf8_lossy(out.text()).contains("overflow"));
        assert!(!report_fault(16, Access::Read));
    });
}

#[test]
fn a_full_pool_sends_requests_to_the_inner_allocator() {
    on_new_thread(|| {
        let g = every_block(4, 0);
        let blocks: Vec<*mut u8> = (0..6).map(|_| g.malloc(64).unwrap().as_ptr()).collect();
        let guarded = blocks.iter().filter(|&&p| g.is_guarded(p)).count();
        assert_eq!(guarded, 4);
        let s = g.stats();
        assert_eq!((s.guarded, s.missed, s.live), (4, 2, 4));
        for p in blocks {
            // SAFETY: live blocks, freed once.
            unsafe { g.free(p) };
        }
        assert_eq!(g.stats().live, 0);
        assert!(g.is_guarded(g.malloc(8).unwrap().as_ptr()));
    });
}

#[test]
fn freed_slots_wait_in_a_fifo_quarantine() {
    on_new_thread(|| {
        let g = every_block(4, 2);
        let a = g.malloc(64).unwrap().as_ptr();
        let b = g.malloc(64).unwrap().as_ptr();
        // SAFETY: live blocks, freed once each.
        unsafe {
            g.free(a);
            g.free(b);
        }
        assert_eq!(g.stats().quarantined, 2);
        // Two slots were never used; then none is free while a and b are quarantined.
        let c = g.malloc(64).unwrap().as_ptr();
        let d = g.malloc(64).unwrap().as_ptr();
        assert!(g.is_guarded(c) && g.is_guarded(d));
        let e = g.malloc(64).unwrap().as_ptr();
        assert!(
            !g.is_guarded(e),
            "no slot is free: the inner allocator's block"
        );
        // SAFETY: a live block (of the inner allocator), freed once.
        unsafe { g.free(e) };
        // Freeing c pushes a, the oldest, out of the quarantine: its slot is the next one.
        // SAFETY: a live block, freed once.
        unsafe { g.free(c) };
        assert_eq!(g.malloc(64).unwrap().as_ptr(), a);
    });
}

#[test]
fn one_allocation_in_n_is_sampled() {
    let guarded = on_new_thread(|| {
        let g = GuardPages::builder()
            .sample_rate(20)
            .slots(16)
            .slot_pages(1)
            .quarantine(0)
            .build(System)
            .unwrap();
        for _ in 0..100_000 {
            let p = g.malloc(32).unwrap();
            // SAFETY: a live block, freed once.
            unsafe { g.free(p.as_ptr()) };
        }
        g.stats().guarded
    });
    assert!((4_000..=6_000).contains(&guarded), "{guarded}");
    let none = on_new_thread(|| {
        let g = GuardPages::builder().sample_rate(0).build(System).unwrap();
        for _ in 0..10_000 {
            // SAFETY: a live block, freed once.
            unsafe { g.free(g.malloc(32).unwrap().as_ptr()) };
        }
        g.stats().guarded
    });
    assert_eq!(none, 0);
}

#[test]
fn realloc_calloc_and_usable_size_of_guarded_blocks() {
    on_new_thread(|| {
        let g = every_block(8, 0);
        let p = g.malloc(10).unwrap().as_ptr();
        // SAFETY: a live guarded block of 10 bytes.
        unsafe {
            assert_eq!(g.usable_size(NonNull::new(p).unwrap()), Some(10));
            p.copy_from(b"0123456789".as_ptr(), 10);
            let q = g.realloc(p, 100).unwrap().as_ptr();
            assert!(g.is_guarded(q) && !g.is_guarded(p));
            assert_eq!(core::slice::from_raw_parts(q, 10), b"0123456789");
            q.write_bytes(0xEE, 100);
            g.free(q);
            // With no quarantine the slot comes back at once: calloc zeroes its old contents.
            let z = g.calloc(10, 10).unwrap().as_ptr();
            assert_eq!(z, q);
            assert!(core::slice::from_raw_parts(z, 100).iter().all(|&b| b == 0));
            assert_eq!(g.owns(z), Ownership::Owned);
            assert_eq!(g.starts_block(z), Ownership::Owned);
            assert_eq!(g.starts_block(z.add(1)), Ownership::NotOwned);
            g.free(z);
        }
    });
}

#[test]
fn parameters_are_checked() {
    let b = GuardPages::builder();
    assert_eq!(
        b.slots(0).build(System).unwrap_err(),
        GuardPagesError::Slots {
            slots: 0,
            max: MAX_SLOTS
        }
    );
    assert!(matches!(
        b.slot_pages(MAX_SLOT_PAGES + 1).build(System),
        Err(GuardPagesError::SlotPages { .. })
    ));
    let e = b.slots(8).quarantine(9).build(System).unwrap_err();
    assert_eq!(
        e.to_string(),
        "a quarantine of 9 slots does not fit in a pool of 8"
    );
    assert_eq!(
        GuardPagesConfig::default().check(),
        Ok(GuardPagesConfig::DEFAULT)
    );
}

#[test]
fn threads_share_the_pool() {
    let g = every_block(64, 8);
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let g = &g;
            s.spawn(move || {
                for i in 0..2000usize {
                    let n = 1 + (i * 7 + t as usize) % 200;
                    let p = g.malloc(n).unwrap().as_ptr();
                    // SAFETY: a live block of `n` bytes, written, checked and freed once.
                    unsafe {
                        p.write_bytes(t, n);
                        assert!(core::slice::from_raw_parts(p, n).iter().all(|&b| b == t));
                        g.free(p);
                    }
                }
            });
        }
    });
    let s = g.stats();
    assert_eq!(s.live, 0);
    assert!(s.guarded > 0 && s.quarantined == 8, "{s:?}");
}
