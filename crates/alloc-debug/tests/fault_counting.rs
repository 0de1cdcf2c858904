//! `FaultInjecting`, `Counting` and `Limited`: each rule and each count, exactly.

use core::alloc::Layout;
use std::ptr::NonNull;

use alloc_arena::PoolAllocator;
use alloc_core::{DomainAllocator, System};
use alloc_debug::{Counting, FaultInjecting, Limited, bucket_of};

/// Makes `n` requests of `size` bytes; returns which succeeded (each block freed at once).
fn outcomes<A: DomainAllocator>(a: &A, n: usize, size: usize) -> Vec<bool> {
    (0..n)
        .map(|_| match a.malloc(size) {
            Some(p) => {
                // SAFETY: a live block, freed once.
                unsafe { a.free(p.as_ptr()) };
                true
            }
            None => false,
        })
        .collect()
}

#[test]
fn nothing_fails_until_enabled() {
    let a = FaultInjecting::new(System);
    a.fail_every(1);
    assert!(outcomes(&a, 10, 32).iter().all(|&ok| ok));
    a.enable();
    assert!(outcomes(&a, 10, 32).iter().all(|&ok| !ok));
    a.disable();
    assert!(outcomes(&a, 10, 32).iter().all(|&ok| ok));
    assert_eq!(a.failures(), 10);
}

#[test]
fn a_range_of_requests_fails_like_set_nomemory() {
    let a = FaultInjecting::new(System);
    a.fail_range(3, 6);
    a.enable();
    let got = outcomes(&a, 9, 8);
    assert_eq!(
        got,
        [true, true, true, false, false, false, true, true, true]
    );
}

#[test]
fn the_nth_request_fails_once_and_every_nth_repeatedly() {
    let a = FaultInjecting::new(System);
    a.fail_nth(4);
    a.enable();
    assert_eq!(outcomes(&a, 6, 8), [true, true, true, false, true, true]);
    a.reset();
    a.fail_every(3);
    a.enable();
    assert_eq!(
        outcomes(&a, 7, 8),
        [true, true, false, true, true, false, true]
    );
}

#[test]
fn random_failures_repeat_with_the_seed_and_match_the_probability() {
    let run = |seed| {
        let a = FaultInjecting::new(System);
        a.fail_with_probability(0.25, seed);
        a.enable();
        outcomes(&a, 4000, 16)
    };
    let first = run(11);
    assert_eq!(first, run(11), "same seed, same failures");
    assert_ne!(first, run(12), "another seed, other failures");
    let failed = first.iter().filter(|&&ok| !ok).count();
    assert!(
        (800..1200).contains(&failed),
        "{failed} of 4000 failed at p = 0.25"
    );
}

#[test]
fn size_floor_and_predicate_choose_which_requests_can_fail() {
    let a = FaultInjecting::new(System);
    a.fail_every(1);
    a.only_at_least(1024);
    a.enable();
    assert!(outcomes(&a, 5, 1023).iter().all(|&ok| ok));
    assert!(outcomes(&a, 5, 1024).iter().all(|&ok| !ok));
    a.only_at_least(0);
    a.only_when(Some(|size| size % 2 == 1));
    assert!(outcomes(&a, 5, 64).iter().all(|&ok| ok));
    assert!(outcomes(&a, 5, 65).iter().all(|&ok| !ok));
    assert_eq!(
        a.requests(),
        10,
        "only requests the floor and predicate let through count"
    );
}

#[test]
fn a_failed_realloc_leaves_the_block_intact() {
    let a = FaultInjecting::new(PoolAllocator::new());
    let p = a.malloc(40).unwrap();
    // SAFETY: a live block of 40 bytes; a failed realloc leaves it live; freed once.
    unsafe {
        p.as_ptr().write_bytes(7, 40);
        a.fail_every(1);
        a.enable();
        assert!(a.realloc(p.as_ptr(), 4000).is_none());
        a.disable();
        assert!(
            std::slice::from_raw_parts(p.as_ptr(), 40)
                .iter()
                .all(|&b| b == 7)
        );
        a.free(p.as_ptr());
    }
}

#[test]
fn counting_counts_each_kind_of_call_and_bytes() {
    let a = Counting::new(PoolAllocator::new());
    let p = a.malloc(100).unwrap();
    let q = a.calloc(10, 10).unwrap();
    // SAFETY: live blocks; realloc replaces `p`; each freed once.
    let p = unsafe { a.realloc(p.as_ptr(), 300) }.unwrap();
    let s = a.stats();
    assert_eq!((s.allocations, s.frees, s.reallocs), (2, 0, 1));
    assert_eq!((s.bytes_live, s.peak_bytes), (400, 400));
    // SAFETY: live blocks, each freed once.
    unsafe {
        a.free(p.as_ptr());
        a.free_sized(q, 100);
    }
    let s = a.stats();
    assert_eq!(
        (s.frees, s.bytes_live, s.peak_bytes, s.blocks_live()),
        (2, 0, 400, 0)
    );
    a.reset_peak();
    assert_eq!(a.stats().peak_bytes, 0);
    assert_eq!(s.histogram[bucket_of(100).0], 2);
}

#[test]
fn histogram_buckets_follow_the_size_classes_then_powers_of_two() {
    assert_eq!(bucket_of(0), (0, 16));
    assert_eq!(bucket_of(16), (0, 16));
    assert_eq!(bucket_of(17), (1, 32));
    assert_eq!(bucket_of(512), (31, 512));
    assert_eq!(bucket_of(513), (32, 1024));
    assert_eq!(bucket_of(4096), (34, 4096));
    assert_eq!(bucket_of(1 << 20), (42, 1 << 20));
    assert_eq!(bucket_of((1 << 20) + 1).1, usize::MAX);
    let a = Counting::new(System);
    for size in [8, 8, 700, 100_000] {
        // SAFETY: live, freed once.
        unsafe { a.free(a.malloc(size).unwrap().as_ptr()) };
    }
    let table = a.stats().to_string();
    assert!(table.contains("          16   2\n"), "{table}");
    assert!(table.contains("        1024   1\n"), "{table}");
}

#[test]
fn counts_stay_exact_under_threads_freeing_each_others_blocks() {
    let a = Counting::new(PoolAllocator::new());
    let (tx, rx) = std::sync::mpsc::channel::<usize>();
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..20_000 {
                let p = a.malloc(1 + i % 700).unwrap();
                tx.send(p.as_ptr() as usize).unwrap();
            }
            drop(tx);
        });
        s.spawn(|| {
            for p in rx {
                // SAFETY: each block sent once, freed once, by the other thread.
                unsafe { a.free(p as *mut u8) };
            }
        });
    });
    let s = a.stats();
    assert_eq!((s.allocations, s.frees, s.bytes_live), (20_000, 20_000, 0));
}

#[test]
fn limited_refuses_past_the_budget_and_counts_it() {
    let a = Limited::new(System, 1000);
    let p = a.malloc(400).unwrap();
    let q = a.malloc(600).unwrap();
    assert!(a.malloc(1).is_none());
    assert_eq!(a.live_bytes(), 1000);
    // SAFETY: live blocks; growing `p` past the budget fails and leaves it live.
    unsafe {
        assert!(a.realloc(p.as_ptr(), 401).is_none());
        let p: NonNull<u8> = a.realloc(p.as_ptr(), 100).unwrap();
        assert_eq!(a.live_bytes(), 700);
        a.set_limit(2000);
        let r = a.malloc(1300).unwrap();
        assert_eq!(a.refused(), 2);
        for b in [p, q, r] {
            a.free(b.as_ptr());
        }
    }
    assert_eq!(a.live_bytes(), 0);
}

/// The C library, recording the last layout and pointer its aligned family was asked for, and
/// counting its `malloc` family's calls.
#[derive(Default)]
struct Recording {
    last: std::sync::Mutex<Option<(usize, Layout)>>,
    plain: std::sync::atomic::AtomicUsize,
}

impl Recording {
    fn last(&self) -> Option<(usize, Layout)> {
        *self.last.lock().unwrap()
    }
    fn note(&self, p: Option<NonNull<u8>>, l: Layout) -> Option<NonNull<u8>> {
        if let Some(p) = p {
            *self.last.lock().unwrap() = Some((p.as_ptr() as usize, l));
        }
        p
    }
}

// SAFETY: forwards to the C library, which upholds the contract; the records only observe.
unsafe impl DomainAllocator for Recording {
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        self.plain
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        System.malloc(size)
    }
    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        self.plain
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, new_size) }
    }
    unsafe fn free(&self, ptr: *mut u8) {
        // SAFETY: forwarded.
        unsafe { System.free(ptr) }
    }
    fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        self.note(System.malloc_aligned(layout), layout)
    }
    fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        self.note(System.calloc_aligned(layout), layout)
    }
    unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
        *self.last.lock().unwrap() = Some((ptr.as_ptr() as usize, layout));
        // SAFETY: forwarded.
        unsafe { System.free_aligned(ptr, layout) }
    }
    unsafe fn realloc_aligned(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: forwarded.
        let p = unsafe { System.realloc_aligned(ptr, layout, new_size) };
        self.note(
            p,
            Layout::from_size_align(new_size, layout.align()).unwrap(),
        )
    }
}

#[test]
fn counting_keeps_no_header_on_the_aligned_family() {
    let a = Counting::new(Recording::default());
    for align in [1, 8, 16, 64, 4096] {
        let l = Layout::from_size_align(24, align).unwrap();
        let p = a.malloc_aligned(l).unwrap();
        assert_eq!(
            a.inner().last(),
            Some((p.as_ptr() as usize, l)),
            "the inner block itself"
        );
        assert_eq!(a.stats().bytes_live, 24);
        // SAFETY: a live aligned block of `a` made with `l`; resized, then freed with its layout.
        unsafe {
            let p = a.realloc_aligned(p, l, 100).unwrap();
            let grown = Layout::from_size_align(100, align).unwrap();
            assert_eq!(a.inner().last(), Some((p.as_ptr() as usize, grown)));
            assert_eq!(a.stats().bytes_live, 100);
            a.free_aligned(p, grown);
            assert_eq!(a.inner().last(), Some((p.as_ptr() as usize, grown)));
        }
        let z = a.calloc_aligned(l).unwrap();
        // SAFETY: a fresh zeroed block of 24 bytes, then freed with its layout.
        unsafe {
            assert!(
                core::slice::from_raw_parts(z.as_ptr(), 24)
                    .iter()
                    .all(|&b| b == 0)
            );
            a.free_aligned(z, l);
        }
    }
    let s = a.stats();
    assert_eq!(
        (s.allocations, s.reallocs, s.frees, s.bytes_live),
        (10, 5, 10, 0)
    );
    assert_eq!(
        a.inner().plain.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no malloc call"
    );
    // A `malloc` block still has its header: 16 bytes more of the inner `malloc`.
    let p = a.malloc(24).unwrap();
    assert_eq!(
        a.inner().plain.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // SAFETY: a live block of `a`, freed once.
    unsafe { a.free(p.as_ptr()) };
}

#[test]
fn limited_budgets_the_aligned_family_by_its_layouts() {
    let a = Limited::new(Recording::default(), 1000);
    let l = Layout::from_size_align(600, 64).unwrap();
    let p = a.malloc_aligned(l).unwrap();
    assert_eq!(a.inner().last(), Some((p.as_ptr() as usize, l)));
    assert!(a.calloc_aligned(l).is_none(), "600 + 600 > 1000");
    // SAFETY: a live aligned block of `a` made with `l`; resized within and past the budget.
    unsafe {
        assert!(a.realloc_aligned(p, l, 1001).is_none(), "past the budget");
        let p = a.realloc_aligned(p, l, 900).unwrap();
        assert_eq!(a.live_bytes(), 900);
        a.free_aligned(p, Layout::from_size_align(900, 64).unwrap());
    }
    assert_eq!((a.live_bytes(), a.refused()), (0, 2));
}

/// The aligned family's paths past its common case: a refused request is a failure, not an
/// allocation; with ownership tracked every block is noted and forgotten; the first block of a
/// fresh decorator (before tracking is decided) is counted like any other.
#[test]
fn counting_the_aligned_family_past_its_fast_path() {
    let l = Layout::from_size_align(48, 8).unwrap();
    let refusing = Counting::new(FaultInjecting::new(System));
    refusing.inner().fail_every(1);
    refusing.inner().enable();
    assert!(refusing.malloc_aligned(l).is_none());
    assert!(refusing.calloc_aligned(l).is_none());
    let s = refusing.stats();
    assert_eq!((s.allocations, s.failures, s.bytes_live), (0, 2, 0));

    let tracked = Counting::new(System).with_ownership_tracking();
    let p = tracked.malloc_aligned(l).unwrap();
    let z = tracked.calloc_aligned(l).unwrap();
    assert_eq!(tracked.owns(p.as_ptr()), alloc_core::Ownership::Owned);
    assert_eq!(tracked.owns(z.as_ptr()), alloc_core::Ownership::Owned);
    // SAFETY: live aligned blocks of `tracked` made with `l`, freed once each.
    unsafe {
        tracked.free_aligned(p, l);
        tracked.free_aligned(z, l);
    }
    assert_eq!(tracked.owns(p.as_ptr()), alloc_core::Ownership::NotOwned);
    let s = tracked.stats();
    assert_eq!(
        (s.allocations, s.frees, s.bytes_live, s.peak_bytes),
        (2, 2, 0, 96)
    );

    let fresh = Counting::new(System);
    let p = fresh.malloc_aligned(l).unwrap();
    assert_eq!(fresh.stats().allocations, 1, "the first block, counted");
    assert_eq!(fresh.owns(p.as_ptr()), alloc_core::Ownership::Unknown);
    // SAFETY: a live aligned block of `fresh` made with `l`, freed once.
    unsafe { fresh.free_aligned(p, l) };
}
