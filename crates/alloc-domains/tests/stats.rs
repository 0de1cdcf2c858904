//! Per-domain statistics (`Domain::stats`): off until enabled, refused once the domain has
//! allocated, exact counts, bytes and peak from one thread and from threads that free each
//! other's blocks, and the standard domains under `DOMALLOC_STATS=1` (in child processes, which
//! read it at start-up), the mem domain's fast path staying off while it counts.

use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;
use std::sync::{Arc, Barrier, mpsc};

use alloc_arena::{NO_KEY, PoolAllocator};
use alloc_core::{DomainAllocator, System};
use alloc_domains::{
    Domain, DomainError, DomainStats, GlobalFront, MEM, OBJECT, RAW, StatsError, add_domain,
    mem_counts_on_pool, mem_fast_path, remove_domain,
};

const CHILD: &str = "DOMALLOC_STATS_TEST_CHILD";

fn usable(d: &dyn DomainAllocator, p: std::ptr::NonNull<u8>) -> u64 {
    // SAFETY: a live block of the malloc family of `d`.
    unsafe { d.usable_size(p) }.unwrap() as u64
}

fn counted(name: &'static str, alloc: &'static (dyn DomainAllocator + Send + Sync)) -> Domain {
    let d = Domain::new(add_domain(name, alloc).unwrap()).unwrap();
    d.enable_stats().unwrap();
    d
}

#[test]
fn off_until_enabled_and_refused_once_the_domain_has_allocated() {
    let d = Domain::new(add_domain("stats-off", &System).unwrap()).unwrap();
    assert!(!d.stats_enabled());
    assert_eq!(d.stats(), Err(StatsError::NotEnabled("stats-off")));
    let p = d.malloc(8).unwrap();
    assert_eq!(
        d.enable_stats(),
        Err(StatsError::AlreadyAllocated("stats-off"))
    );
    assert_eq!(d.stats(), Err(StatsError::NotEnabled("stats-off")));
    // SAFETY: a live block of the domain, freed once.
    unsafe { d.free(p.as_ptr()) };
    let message = StatsError::NotEnabled("x").to_string();
    assert!(message.contains("DOMALLOC_STATS=1"), "{message}");
}

#[test]
fn malloc_family_counts_usable_sizes_exactly() {
    let d = counted("stats-malloc", &System);
    assert_eq!(d.stats().unwrap(), DomainStats::default());
    let a = d.malloc(100).unwrap();
    let b = d.calloc(3, 50).unwrap();
    let (ua, ub) = (usable(&System, a), usable(&System, b));
    let s = d.stats().unwrap();
    assert_eq!((s.allocations, s.frees, s.live_blocks), (2, 0, 2));
    assert_eq!(s.live_bytes, ua + ub);
    assert_eq!(s.peak_live_bytes, ua + ub);

    // SAFETY: a live block of the domain.
    let a = unsafe { d.realloc(a.as_ptr(), 5000) }.unwrap();
    let ua2 = usable(&System, a);
    let s = d.stats().unwrap();
    assert_eq!((s.allocations, s.frees, s.live_blocks), (2, 0, 2));
    assert_eq!(s.live_bytes, ua2 + ub);
    // SAFETY: a live block of the domain, shrunk.
    let a = unsafe { d.realloc(a.as_ptr(), 10) }.unwrap();
    let ua3 = usable(&System, a);
    let s = d.stats().unwrap();
    assert_eq!(s.live_bytes, ua3 + ub);
    assert_eq!(s.peak_live_bytes, ua2 + ub);

    // SAFETY: live blocks of the domain, freed once; null is a no-op and counts nothing.
    unsafe {
        d.free(a.as_ptr());
        d.free_sized(b, 150);
        d.free(std::ptr::null_mut());
    }
    let s = d.stats().unwrap();
    assert_eq!((s.allocations, s.frees, s.live_blocks), (2, 2, 0));
    assert_eq!(s.live_bytes, 0);
    assert_eq!(s.peak_live_bytes, ua2 + ub);
    // realloc(null, n) is an allocation.
    // SAFETY: null.
    let c = unsafe { d.realloc(std::ptr::null_mut(), 40) }.unwrap();
    assert_eq!(d.stats().unwrap().allocations, 3);
    // SAFETY: a live block of the domain, freed once.
    unsafe { d.free(c.as_ptr()) };
    assert_eq!(d.stats().unwrap().live_bytes, 0);
}

#[test]
fn aligned_family_counts_requested_sizes() {
    let d = counted("stats-aligned", &System);
    let l1 = Layout::from_size_align(100, 64).unwrap();
    let l2 = Layout::from_size_align(30, 8).unwrap();
    let a = d.malloc_aligned(l1).unwrap();
    let b = d.calloc_aligned(l2).unwrap();
    let s = d.stats().unwrap();
    assert_eq!((s.allocations, s.live_blocks, s.live_bytes), (2, 2, 130));
    // SAFETY: a live block of the domain with layout `l1`.
    let a = unsafe { d.realloc_aligned(a, l1, 1000) }.unwrap();
    assert_eq!(d.stats().unwrap().live_bytes, 1030);
    // SAFETY: live blocks with these layouts, freed once.
    unsafe {
        d.free_aligned(a, Layout::from_size_align(1000, 64).unwrap());
        d.free_aligned(b, l2);
    }
    let s = d.stats().unwrap();
    assert_eq!((s.frees, s.live_blocks, s.live_bytes), (2, 0, 0));
    assert_eq!(s.peak_live_bytes, 1030);
}

#[test]
fn a_failed_allocation_counts_nothing() {
    let d = counted("stats-fail", &System);
    assert!(d.malloc(usize::MAX - 4096).is_none());
    assert!(d.calloc(usize::MAX, 2).is_none());
    assert_eq!(d.stats().unwrap(), DomainStats::default());
}

#[test]
fn threads_that_free_each_others_blocks_add_up_exactly() {
    const THREADS: usize = 4;
    const BLOCKS: usize = 5_000;
    let pool: &'static PoolAllocator = Box::leak(Box::new(PoolAllocator::new()));
    let d = counted("stats-threads", pool);
    let size = |t: usize, i: usize| 1 + (t * 131 + i * 7) % 700;
    // Every thread allocates its blocks; nothing is freed until all are made, so the peak is
    // exactly the total.
    let made: Vec<Vec<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    (0..BLOCKS)
                        .map(|i| d.malloc(size(t, i)).unwrap().as_ptr() as usize)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total: u64 = made
        .iter()
        .flatten()
        .map(|&p| usable(pool, std::ptr::NonNull::new(p as *mut u8).unwrap()))
        .sum();
    let s = d.stats().unwrap();
    let n = (THREADS * BLOCKS) as u64;
    assert_eq!((s.allocations, s.frees, s.live_blocks), (n, 0, n));
    assert_eq!(s.live_bytes, total);
    assert_eq!(s.peak_live_bytes, total);

    // Each thread frees the blocks of the next one while it allocates and frees blocks of its
    // own; every block it makes for another thread is freed there.
    let barrier = Arc::new(Barrier::new(THREADS));
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..THREADS).map(|_| mpsc::channel::<usize>()).unzip();
    std::thread::scope(|s| {
        for (t, rx) in receivers.into_iter().enumerate() {
            let theirs = made[(t + 1) % THREADS].clone();
            let next = senders[(t + 1) % THREADS].clone();
            let barrier = barrier.clone();
            s.spawn(move || {
                barrier.wait();
                for (i, p) in theirs.into_iter().enumerate() {
                    // SAFETY: a live block of the domain, made on another thread, freed once.
                    unsafe { d.free(p as *mut u8) };
                    let q = d.malloc(size(t, i)).unwrap();
                    next.send(q.as_ptr() as usize).unwrap();
                }
                drop(next);
                for p in rx {
                    // SAFETY: a live block of the domain, made on another thread, freed once.
                    unsafe { d.free(p as *mut u8) };
                }
            });
        }
        drop(senders);
    });
    let s = d.stats().unwrap();
    assert_eq!((s.allocations, s.frees, s.live_blocks), (2 * n, 2 * n, 0));
    assert_eq!(s.live_bytes, 0);
    assert!(s.peak_live_bytes >= total, "{s:?}");
}

#[test]
fn a_removed_domain_has_no_stats() {
    let id = add_domain("stats-removed", &System).unwrap();
    let d = Domain::new(id).unwrap();
    d.enable_stats().unwrap();
    // SAFETY: a live block of the domain, freed once.
    unsafe { d.free(d.malloc(64).unwrap().as_ptr()) };
    assert_eq!(d.stats().unwrap().allocations, 1);
    remove_domain(id).unwrap();
    assert!(matches!(
        d.stats(),
        Err(StatsError::Domain(DomainError::Removed { .. }))
    ));
    assert!(matches!(
        d.enable_stats(),
        Err(StatsError::Domain(DomainError::Removed { .. }))
    ));
    assert!(!d.stats_enabled());
}

/// The child side: the standard domains under `DOMALLOC_STATS=1`.
#[test]
fn child_process_entry() {
    let Ok(case) = std::env::var(CHILD) else {
        return;
    };
    match case.as_str() {
        "on" => {
            for d in [RAW, MEM, OBJECT] {
                assert!(d.stats_enabled(), "{d:?}");
            }
            let user = Domain::new(add_domain("stats-env", &System).unwrap()).unwrap();
            assert_eq!(user.stats().unwrap(), DomainStats::default());
            // Rust's global allocator through the mem domain: every layout counted.
            let front = GlobalFront::new(MEM);
            let before = MEM.stats().unwrap();
            let layouts: Vec<Layout> = (1..200)
                .map(|i| Layout::from_size_align(i * 24, 8).unwrap())
                .collect();
            // SAFETY: non-zero layouts; each block freed once with its layout.
            let blocks: Vec<*mut u8> = layouts.iter().map(|&l| unsafe { front.alloc(l) }).collect();
            let bytes: u64 = layouts.iter().map(|l| l.size() as u64).sum();
            let mid = MEM.stats().unwrap();
            assert_eq!(mid.allocations - before.allocations, 199);
            assert_eq!(mid.live_bytes - before.live_bytes, bytes);
            assert!(mid.peak_live_bytes >= mid.live_bytes);
            // The mem domain's fast path (which counts nothing) stays off while it counts.
            assert_eq!(mem_fast_path().1, NO_KEY);
            for (p, l) in blocks.into_iter().zip(&layouts) {
                // SAFETY: made above with this layout.
                unsafe { front.dealloc(p, *l) };
            }
            let after = MEM.stats().unwrap();
            assert_eq!(after.frees - before.frees, 199);
            assert_eq!(after.live_bytes, before.live_bytes);
            // The counting path into the standard pool, malloc family, from threads that free
            // each other's blocks: usable sizes, exact.
            assert!(mem_counts_on_pool());
            let made: Vec<Vec<usize>> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..4)
                    .map(|t| {
                        s.spawn(move || {
                            (0..3000)
                                .map(|i| {
                                    let n = 1 + (t * 97 + i * 13) % 20_000;
                                    let p = if i % 3 == 0 {
                                        MEM.calloc(1, n)
                                    } else {
                                        MEM.malloc(n)
                                    };
                                    p.unwrap().as_ptr() as usize
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let bytes: u64 = made
                .iter()
                .flatten()
                .map(|&p| usable(&MEM, std::ptr::NonNull::new(p as *mut u8).unwrap()))
                .sum();
            let mid = MEM.stats().unwrap();
            assert_eq!(mid.allocations - after.allocations, 12_000);
            assert_eq!(mid.live_bytes - after.live_bytes, bytes);
            assert!(mid.peak_live_bytes >= mid.live_bytes);
            std::thread::scope(|s| {
                for (t, blocks) in made.iter().enumerate() {
                    s.spawn(move || {
                        for (i, &p) in blocks.iter().enumerate() {
                            // SAFETY: live blocks of the mem domain made on another thread, each
                            // freed once (every other one grown first).
                            unsafe {
                                let p = if (t + i) % 2 == 0 {
                                    MEM.realloc(p as *mut u8, 700).unwrap().as_ptr()
                                } else {
                                    p as *mut u8
                                };
                                MEM.free(p);
                            }
                        }
                    });
                }
            });
            let end = MEM.stats().unwrap();
            assert_eq!(end.frees - after.frees, 12_000);
            assert_eq!(end.allocations - after.allocations, 12_000);
            assert_eq!(end.live_bytes, after.live_bytes);
            assert_eq!(end.live_blocks, after.live_blocks);
            println!("child: ok");
        }
        "malloc" => {
            // The mem domain on the C library (`System`, of zero size): counted like any other.
            let before = MEM.stats().unwrap();
            let p = MEM.malloc(10).unwrap();
            let mid = MEM.stats().unwrap();
            assert_eq!(mid.allocations - before.allocations, 1);
            assert_eq!(mid.live_bytes - before.live_bytes, usable(&System, p));
            // SAFETY: a live block of the mem domain, freed once.
            unsafe { MEM.free(p.as_ptr()) };
            let after = MEM.stats().unwrap();
            assert_eq!(after.frees - before.frees, 1);
            assert_eq!(after.live_bytes, before.live_bytes);
            println!("child: ok");
        }
        "bad" => {
            assert!(!MEM.stats_enabled());
            assert!(MEM.stats().is_err());
            println!("child: ok");
        }
        other => panic!("unknown case {other}"),
    }
}

fn child(case: &str, value: &str) -> std::process::Output {
    child_under(case, value, "pool")
}

fn child_under(case: &str, value: &str, preset: &str) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, case)
        .env("DOMALLOC_STATS", value)
        .env("DOMALLOC", preset)
        .env_remove("DOMALLOC_STRICT")
        .env_remove("DOMALLOC_GUARD_SAMPLE")
        .output()
        .expect("start the child")
}

#[test]
fn domalloc_stats_turns_every_domain_on_at_start_up() {
    let out = child("on", "1");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("child: ok"),
        "{out:?}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_mem_domain_on_the_c_library_counts_too() {
    let out = child_under("malloc", "1", "malloc");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("child: ok"),
        "{out:?}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bad_domalloc_stats_value_is_reported_and_leaves_them_off() {
    let out = child("bad", "yes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("child: ok"),
        "{out:?}"
    );
    assert!(
        stderr.contains("unknown DOMALLOC_STATS value \"yes\""),
        "{stderr}"
    );
}
