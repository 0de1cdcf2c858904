//! The pool allocator from many threads: every block freed by another thread than the one that
//! made it (a producer-consumer ring), random slot replacement in a shared array (larson), thread
//! churn with blocks outliving their threads, and a model test of random operations per thread
//! against a reference, blocks checked by content before every free.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};

use alloc_arena::PoolAllocator;
use alloc_core::DomainAllocator;
use alloc_core::testkit::Rng;

#[path = "support/patterned.rs"]
mod patterned;
use patterned::{Block, check_and_free, make, pattern};

fn size_for(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0 => 513 + rng.below(2000), // large path too
        _ => 1 + rng.below(512),
    }
}

#[test]
fn producer_consumer_ring_frees_every_block_on_another_thread() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 40_000;
    let pool = Arc::new(PoolAllocator::new());
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..THREADS)
        .map(|_| mpsc::sync_channel::<Block>(256))
        .unzip();
    let mut receivers: Vec<Option<mpsc::Receiver<Block>>> =
        receivers.into_iter().map(Some).collect();
    let freed = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = pool.clone();
            let to_next = senders[(t + 1) % THREADS].clone();
            let from_prev = receivers[t].take().unwrap();
            let freed = freed.clone();
            std::thread::spawn(move || {
                let consumer = {
                    let pool = pool.clone();
                    let freed = freed.clone();
                    std::thread::spawn(move || {
                        for b in from_prev {
                            check_and_free(&pool, b);
                            freed.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                };
                let mut rng = Rng::new(t as u64 + 1);
                for _ in 0..PER_THREAD {
                    let b = make(&pool, size_for(&mut rng));
                    to_next.send(b).unwrap();
                }
                drop(to_next);
                consumer
            })
        })
        .collect();
    drop(senders);
    let consumers: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for c in consumers {
        c.join().unwrap();
    }
    assert_eq!(freed.load(Ordering::Relaxed), THREADS * PER_THREAD);
    pool.trim();
    let s = pool.stats();
    assert_eq!(s.blocks_in_use(), 0, "{s}");
    assert_eq!(s.arenas, 0, "every arena back after trim: {s}");
    assert!(pool.heaps() <= 2 * THREADS, "heaps made: {}", pool.heaps());
}

#[test]
fn larson_slot_replacement_across_threads() {
    const THREADS: usize = 4;
    const SLOTS: usize = 4096;
    const ROUNDS: usize = 60_000;
    let pool = Arc::new(PoolAllocator::new());
    let slots: Arc<Vec<AtomicPtr<u8>>> = Arc::new(
        (0..SLOTS)
            .map(|_| AtomicPtr::new(std::ptr::null_mut()))
            .collect(),
    );
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, slots, start) = (pool.clone(), slots.clone(), start.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(100 + t as u64);
                start.wait();
                for _ in 0..ROUNDS {
                    let size = 8 + rng.below(505);
                    let p = pool.malloc(size).unwrap().as_ptr();
                    // The size in the first word, the rest a pattern.
                    // SAFETY: a live block of `size >= 8` bytes.
                    unsafe {
                        p.cast::<usize>().write_unaligned(size);
                        for i in 8..size {
                            p.add(i).write(pattern(p, i));
                        }
                    }
                    let old = slots[rng.below(SLOTS)].swap(p, Ordering::AcqRel);
                    if !old.is_null() {
                        // SAFETY: the block left the array by our swap: ours alone now.
                        unsafe {
                            let size = old.cast::<usize>().read_unaligned();
                            assert!((8..=512).contains(&size));
                            for i in 8..size {
                                assert_eq!(old.add(i).read(), pattern(old, i));
                            }
                            pool.free(old);
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for s in slots.iter() {
        let p = s.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            // SAFETY: the remaining live blocks, freed once.
            unsafe { pool.free(p) };
        }
    }
    pool.trim();
    let s = pool.stats();
    assert_eq!(s.blocks_in_use(), 0, "{s}");
    assert_eq!(s.arenas, 0, "{s}");
}

/// Random malloc / realloc / free per thread against a reference of live blocks, with a share of
/// the blocks handed to the next thread to free or resize.
#[test]
fn model_test_per_thread_with_handoffs() {
    const THREADS: usize = 3;
    const OPS: usize = 30_000;
    let pool = Arc::new(PoolAllocator::new());
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..THREADS).map(|_| mpsc::channel::<Block>()).unzip();
    let mut receivers: Vec<Option<mpsc::Receiver<Block>>> =
        receivers.into_iter().map(Some).collect();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = pool.clone();
            let next = senders[(t + 1) % THREADS].clone();
            let inbox = receivers[t].take().unwrap();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(7 + t as u64);
                let mut live: Vec<Block> = Vec::new();
                for _ in 0..OPS {
                    live.extend(inbox.try_iter());
                    match rng.below(8) {
                        0..=2 => live.push(make(&pool, size_for(&mut rng))),
                        3 if !live.is_empty() => {
                            // realloc: contents kept up to the smaller size, then re-patterned.
                            let i = rng.below(live.len());
                            let b = live.swap_remove(i);
                            let new_size = size_for(&mut rng);
                            for k in 0..b.size {
                                // SAFETY: bytes of a live block.
                                assert_eq!(unsafe { b.ptr.add(k).read() }, pattern(b.ptr, k));
                            }
                            // SAFETY: a live block, resized once.
                            let p = unsafe { pool.realloc(b.ptr, new_size) }.unwrap().as_ptr();
                            for k in 0..b.size.min(new_size) {
                                // SAFETY: kept bytes of the moved block.
                                assert_eq!(unsafe { p.add(k).read() }, pattern(b.ptr, k));
                            }
                            for k in 0..new_size {
                                // SAFETY: bytes of the live block.
                                unsafe { p.add(k).write(pattern(p, k)) };
                            }
                            live.push(Block {
                                ptr: p,
                                size: new_size,
                            });
                        }
                        4 if !live.is_empty() => {
                            let i = rng.below(live.len());
                            next.send(live.swap_remove(i)).unwrap();
                        }
                        _ if !live.is_empty() => {
                            let i = rng.below(live.len());
                            check_and_free(&pool, live.swap_remove(i));
                        }
                        _ => {}
                    }
                }
                barrier.wait();
                drop(next);
                live.extend(inbox.iter());
                for b in live {
                    check_and_free(&pool, b);
                }
            })
        })
        .collect();
    drop(senders);
    for h in handles {
        h.join().unwrap();
    }
    pool.trim();
    let s = pool.stats();
    assert_eq!(s.blocks_in_use(), 0, "{s}");
    assert_eq!(s.arenas, 0, "{s}");
}
