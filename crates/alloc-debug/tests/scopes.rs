//! Scopes under `#[global_allocator]`: each test counts its own work exactly while the harness
//! runs the others in parallel and noise threads allocate all the time.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex, Once};

use alloc_arena::PoolAllocator;
use alloc_core::{AsGlobalAlloc, DomainAllocator};
use alloc_debug::{MAX_SCOPE_DEPTH, Scope, ScopeError, ScopeHandle, ScopeStats, Scoped};

#[global_allocator]
static GLOBAL: AsGlobalAlloc<Scoped<PoolAllocator>> =
    AsGlobalAlloc::new(Scoped::new(PoolAllocator::new()));

/// Allocations the noise threads made, so a test can see that they ran during its scope.
static NOISE: AtomicU64 = AtomicU64::new(0);
static NOISE_ON: AtomicBool = AtomicBool::new(false);

/// Starts (once per process) two threads that allocate and free for as long as the tests run.
fn noise() {
    static START: Once = Once::new();
    START.call_once(|| {
        NOISE_ON.store(true, Ordering::Relaxed);
        for t in 0..2u64 {
            std::thread::spawn(move || {
                let mut keep: Vec<Vec<u8>> = Vec::new();
                let mut i = 0u64;
                loop {
                    i += 1;
                    keep.push(vec![t as u8; 16 + (i % 200) as usize]);
                    if keep.len() > 64 {
                        keep.clear();
                    }
                    NOISE.fetch_add(1, Ordering::Relaxed);
                    std::thread::yield_now();
                }
            });
        }
    });
}

/// Opens a scope, makes `k` vectors of `cap` `T`s, checks every count while they live and after
/// they are dropped; repeated so that the scopes overlap the other tests'.
fn k_vecs<T: Default + Clone>(k: usize, cap: usize) {
    noise();
    let bytes = (k * cap * size_of::<T>()) as u64;
    let mut outer = Vec::with_capacity(k); // made before the scope: not counted
    for _round in 0..50 {
        let scope = Scope::open();
        for _ in 0..k {
            outer.push(black_box(Vec::<T>::with_capacity(cap)));
        }
        let live = scope.stats();
        outer.clear();
        let after = scope.stats();
        drop(scope);
        assert_eq!(
            live,
            ScopeStats {
                allocations: k as u64,
                bytes_allocated: bytes,
                current_bytes: bytes as i64,
                peak_bytes: bytes,
                ..ScopeStats::default()
            }
        );
        after.assert_allocations(k as u64);
        after.assert_frees(k as u64);
        after.assert_bytes_allocated(bytes);
        after.assert_no_leaks();
        assert_eq!((after.bytes_freed, after.peak_bytes), (bytes, bytes));
    }
}

#[test]
fn ten_vectors_of_100_bytes() {
    k_vecs::<u8>(10, 100);
}

#[test]
fn seven_vectors_of_33_words() {
    k_vecs::<u64>(7, 33);
}

#[test]
fn a_thousand_vectors_of_16_bytes() {
    k_vecs::<u16>(1000, 8);
}

#[test]
fn three_large_vectors() {
    k_vecs::<u32>(3, 100_000);
}

#[test]
fn boxes_and_strings() {
    noise();
    for _ in 0..50 {
        let (kept, stats) = Scope::measure(|| {
            let b: Vec<Box<[u8; 48]>> = (0..5).map(|_| Box::new([7u8; 48])).collect();
            let s = String::with_capacity(300);
            (b, s)
        });
        // The five boxes, the vector holding them (capacity 5: the iterator's exact size), the
        // string.
        stats.assert_allocations(7);
        stats.assert_frees(0);
        assert_eq!(stats.current_bytes, 5 * 48 + 5 * 8 + 300);
        drop(kept);
    }
}

#[test]
fn a_realloc_counts_its_growth_and_shrinkage() {
    noise();
    let scope = Scope::open();
    let mut v: Vec<u64> = Vec::with_capacity(10);
    v.reserve_exact(100);
    assert_eq!(v.capacity(), 100);
    let grown = scope.stats();
    v.push(1);
    v.shrink_to_fit();
    let shrunk = scope.stats();
    drop(v);
    let end = scope.stats();
    drop(scope);
    assert_eq!(
        (
            grown.allocations,
            grown.reallocs,
            grown.bytes_allocated,
            grown.current_bytes
        ),
        (1, 1, 800, 800)
    );
    assert_eq!(
        (
            shrunk.reallocs,
            shrunk.bytes_freed,
            shrunk.current_bytes,
            shrunk.peak_bytes
        ),
        (2, 792, 8, 800)
    );
    end.assert_no_leaks();
    assert_eq!((end.frees, end.bytes_freed), (1, 800));
}

#[test]
fn arithmetic_allocates_nothing() {
    noise();
    let seen = NOISE.load(Ordering::Relaxed);
    let scope = Scope::open();
    let mut x = 0u64;
    for i in 0..1_000_000u64 {
        x = black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    // Long enough for the noise threads to allocate meanwhile (they run unless the machine is
    // starved; the scope must not see them either way).
    while NOISE_ON.load(Ordering::Relaxed) && NOISE.load(Ordering::Relaxed) < seen + 100 {
        std::thread::yield_now();
    }
    let stats = scope.stats();
    stats.assert_no_allocations();
    assert_eq!(stats, ScopeStats::default());
    black_box(x);
}

#[test]
fn nested_scopes_both_count() {
    noise();
    let outer = Scope::open();
    let a = black_box(vec![0u8; 64]);
    let inner = Scope::open();
    let b = black_box(vec![0u8; 128]);
    drop(a);
    let i = inner.stats();
    drop(inner);
    drop(b);
    let o = outer.stats();
    assert_eq!(
        (i.allocations, i.frees, i.current_bytes, i.peak_bytes),
        (1, 1, 128 - 64, 128)
    );
    assert_eq!(
        (o.allocations, o.frees, o.current_bytes, o.peak_bytes),
        (2, 2, 0, 192)
    );
}

#[test]
fn a_handle_counts_another_threads_work() {
    noise();
    let slot: Mutex<Option<ScopeHandle>> = Mutex::new(None);
    let start = Barrier::new(2);
    let done = Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            start.wait();
            let handle = slot.lock().unwrap().take().expect("a handle");
            let guard = handle.enter_on_this_thread();
            let v: Vec<Vec<u32>> = (0..9).map(|_| Vec::with_capacity(25)).collect();
            drop(guard);
            drop(handle);
            done.wait();
            drop(v); // outside the scope: not counted
        });
        let scope = Scope::open();
        *slot.lock().unwrap() = Some(scope.handle());
        start.wait();
        done.wait();
        let stats = scope.stats();
        // The nine vectors and the one holding them, all on the other thread.
        stats.assert_allocations(10);
        stats.assert_frees(0);
        assert_eq!(stats.current_bytes, 9 * 100 + 9 * 24);
    });
}

#[test]
fn two_threads_in_one_scope_make_an_exact_peak() {
    noise();
    // A scope entered on no thread but the workers (the main thread's spawns are not counted).
    let handle = Scope::open().handle();
    let both = Barrier::new(3);
    let freed = Barrier::new(3);
    let layout = |n| Layout::from_size_align(n, 8).unwrap();
    std::thread::scope(|s| {
        for n in [1000usize, 500] {
            let (handle, both, freed) = (handle.clone(), &both, &freed);
            s.spawn(move || {
                let _in = handle.enter_on_this_thread();
                // SAFETY: a non-zero layout; freed below with it.
                let p = unsafe { GLOBAL.alloc(layout(n)) };
                assert!(!p.is_null());
                both.wait();
                both.wait();
                // SAFETY: as above, once.
                unsafe { GLOBAL.dealloc(p, layout(n)) };
                freed.wait();
            });
        }
        both.wait();
        let held = handle.stats();
        both.wait();
        freed.wait();
        assert_eq!((held.allocations, held.current_bytes), (2, 1500));
    });
    let end = handle.stats();
    assert_eq!((end.allocations, end.frees, end.peak_bytes), (2, 2, 1500));
    end.assert_no_leaks();
}

#[test]
fn freeing_older_memory_goes_below_zero() {
    noise();
    let old = black_box(vec![1u8; 256]);
    let scope = Scope::open();
    drop(old);
    let stats = scope.stats();
    assert_eq!(
        (
            stats.frees,
            stats.bytes_freed,
            stats.current_bytes,
            stats.peak_bytes
        ),
        (1, 256, -256, 0)
    );
    assert_eq!(stats.blocks_live(), -1);
}

#[test]
fn a_refused_request_is_a_failure() {
    noise();
    let scope = Scope::open();
    let huge = Layout::from_size_align(1 << 62, 16).unwrap();
    // SAFETY: a non-zero layout; a block, if one came, is freed with it.
    let p = unsafe { GLOBAL.alloc(huge) };
    if !p.is_null() {
        // SAFETY: as above.
        unsafe { GLOBAL.dealloc(p, huge) };
        panic!("4 EiB were given");
    }
    let stats = scope.stats();
    assert_eq!((stats.failures, stats.allocations), (1, 0));
}

#[test]
fn zeroed_and_malloc_family_blocks_balance() {
    noise();
    let a = GLOBAL.inner();
    let (_, stats) = Scope::measure(|| {
        let z = black_box(vec![0u64; 40]); // alloc_zeroed
        let p = a.malloc(100).unwrap();
        let q = a.calloc(3, 50).unwrap();
        // SAFETY: live blocks of this allocator's malloc family, freed once.
        unsafe {
            let p = a.realloc(p.as_ptr(), 1000).unwrap();
            a.free(p.as_ptr());
            a.free_sized(q, 150);
        }
        drop(z);
    });
    assert_eq!((stats.allocations, stats.frees, stats.reallocs), (3, 3, 1));
    stats.assert_no_leaks();
    assert!(stats.peak_bytes >= 320 + 1000 + 150);
}

#[test]
fn entering_twice_counts_once_and_guards_may_drop_out_of_order() {
    noise();
    let scope = Scope::open();
    let again = scope.enter_on_this_thread();
    let other = Scope::open();
    drop(again); // out of order: `other` stays entered
    let v = black_box(vec![0u8; 32]);
    let (s, o) = (scope.stats(), other.stats());
    drop(other);
    drop(v);
    assert_eq!((s.allocations, s.current_bytes), (1, 32));
    assert_eq!((o.allocations, o.current_bytes), (1, 32));
    let end = scope.stats();
    assert_eq!((end.allocations, end.frees), (1, 1));
}

#[test]
fn the_depth_is_bounded() {
    noise();
    let scopes: Vec<Scope> = (0..MAX_SCOPE_DEPTH).map(|_| Scope::open()).collect();
    assert_eq!(Scope::try_open().unwrap_err(), ScopeError::TooDeep);
    drop(scopes);
    let s = Scope::try_open().expect("room again");
    s.stats().assert_no_allocations();
}

#[test]
fn many_threads_each_count_their_own() {
    noise();
    std::thread::scope(|s| {
        for t in 1..=8usize {
            s.spawn(move || {
                for _ in 0..20 {
                    let scope = Scope::open();
                    let v: Vec<Vec<u8>> =
                        (0..t).map(|i| Vec::with_capacity(16 * (i + 1))).collect();
                    let stats = scope.stats();
                    drop(v);
                    let end = scope.stats();
                    let bytes = (16 * t * (t + 1) / 2 + t * 24) as u64;
                    assert_eq!(
                        (stats.allocations, stats.bytes_allocated, stats.peak_bytes),
                        (t as u64 + 1, bytes, bytes)
                    );
                    end.assert_no_leaks();
                }
            });
        }
    });
}

#[test]
fn a_handle_reads_the_counts_after_the_scope_is_dropped() {
    noise();
    let scope = Scope::open();
    let handle = scope.handle();
    let v = black_box(vec![0u16; 50]);
    drop(scope);
    drop(v); // no scope entered any more
    let stats = handle.stats();
    assert_eq!(
        (stats.allocations, stats.frees, stats.current_bytes),
        (1, 0, 100)
    );
}
