//! With the `asan` feature, AddressSanitizer sees inside the pools: a program's use after free of
//! a pool block, and its overflow into the next block when that one is free, are ASan's own
//! reports. Built only with the feature, which needs `-Zsanitizer=address`
//! (`cargo xtask sanitize` runs these).
//!
//! Each test runs itself again in a child process, where the bug happens and ASan ends the
//! process with its report; the parent asserts on the report. ASan calls memory poisoned through
//! its manual interface (what the pools use) `use-after-poison`.
#![cfg(feature = "asan")]

use std::process::{Command, Output};

use alloc_arena::{Heap, OsArenas, PoolAllocator, PoolConfig};
use alloc_core::DomainAllocator;
use alloc_core::System;

/// Set in the child to the name of the test whose bug it runs.
const CHILD: &str = "DOMALLOC_ASAN_CHILD";

/// Whether this process is the child that runs test `name`'s bug.
fn is_child(name: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|v| v == name)
}

/// Runs test `name` of this binary again, alone, in a child process that makes the bug.
fn run_child(name: &str) -> Output {
    let exe = std::env::current_exe().expect("the test binary's path");
    Command::new(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .expect("the test binary runs again")
}

/// The child's stderr, after checking that ASan ended it.
fn asan_report(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the child survived its bug:\n{err}");
    assert!(
        err.contains("ERROR: AddressSanitizer: use-after-poison"),
        "no ASan report of poisoned memory:\n{err}"
    );
    err
}

#[test]
fn a_use_after_free_of_a_pool_block_is_reported_by_asan() {
    const NAME: &str = "a_use_after_free_of_a_pool_block_is_reported_by_asan";
    if is_child(NAME) {
        // The C library's way: the fast paths of the per-thread heaps, the block into the bin.
        let pool = PoolAllocator::with_valid_config(PoolConfig::WIDE, OsArenas::new(), System);
        let key = pool.fast_key();
        let p = pool.malloc(48).unwrap().as_ptr();
        // SAFETY: a live block of `pool`, written, then freed once.
        unsafe {
            p.write_bytes(7, 48);
            if !pool.free_fast(p, key) {
                pool.free(p);
            }
        }
        eprintln!("freed block at {:#x}", p as usize);
        // The bug: a read of the freed block.
        // SAFETY: none: this is the use after free ASan must stop.
        let v = unsafe { p.add(8).read_volatile() };
        std::process::exit(i32::from(v));
    }
    let out = run_child(NAME);
    let err = asan_report(&out);
    let freed = err
        .lines()
        .find_map(|l| l.strip_prefix("freed block at "))
        .unwrap_or_else(|| panic!("the child did not get to its bug:\n{err}"));
    let addr = usize::from_str_radix(freed.trim_start_matches("0x"), 16).unwrap();
    assert!(
        err.contains(&format!("READ of size 1 at {:#x}", addr + 8)),
        "the report names another access:\n{err}"
    );
}

#[test]
fn an_overflow_into_the_next_free_block_is_reported_by_asan() {
    const NAME: &str = "an_overflow_into_the_next_free_block_is_reported_by_asan";
    if is_child(NAME) {
        let heap = Heap::new();
        // A fresh heap carves its first pool in order: `b` follows `a`.
        let a = heap.malloc(64).unwrap().as_ptr();
        let b = heap.malloc(64).unwrap().as_ptr();
        assert_eq!(b as usize, a as usize + 64, "blocks carved in order");
        // SAFETY: live blocks of `heap`, written within their 64 bytes; `b` freed once.
        unsafe {
            a.write_bytes(1, 64);
            b.write_bytes(2, 64);
            heap.free(b);
        }
        eprintln!("next block at {:#x}", b as usize);
        // The bug: one byte past `a`, the first byte of the free block `b`.
        // SAFETY: none: this is the overflow ASan must stop.
        unsafe { a.add(64).write_volatile(3) };
        std::process::exit(0);
    }
    let out = run_child(NAME);
    let err = asan_report(&out);
    let next = err
        .lines()
        .find_map(|l| l.strip_prefix("next block at "))
        .unwrap_or_else(|| panic!("the child did not get to its bug:\n{err}"));
    let addr = usize::from_str_radix(next.trim_start_matches("0x"), 16).unwrap();
    assert!(
        err.contains(&format!("WRITE of size 1 at {addr:#x}")),
        "the report names another access:\n{err}"
    );
}

/// The same accesses within live blocks raise nothing: a block handed out again after its free
/// is accessible whole, and so is a block carved next to a freed one.
#[test]
fn blocks_handed_out_again_are_accessible() {
    let heap = Heap::new();
    let a = heap.malloc(64).unwrap().as_ptr();
    let b = heap.malloc(64).unwrap().as_ptr();
    // SAFETY: live blocks of `heap` within their 64 bytes; each freed once.
    unsafe {
        heap.free(b);
        let again = heap.malloc(64).unwrap().as_ptr();
        assert_eq!(again, b, "the bin gives the block back");
        again.write_bytes(5, 64);
        a.write_bytes(6, 64);
        assert_eq!(again.add(63).read_volatile(), 5);
        heap.free(a);
        heap.free(again);
    }
}
