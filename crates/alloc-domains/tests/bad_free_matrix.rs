//! Every bad free through the Rust API, by each of the three ways into the debug hooks: the
//! `DOMALLOC=pool_debug` preset, a run-time `setup_debug_hooks()` (before the domains' first
//! allocation, and after they have served some), and a hand-composed `Guarded` over a pool
//! allocator. Each misuse runs in a child process (the hooks abort); each must end with the
//! hooks' report naming what was violated, the same under every way, and never with a crash,
//! another checker's report or a block handed out twice.

use std::alloc::Layout;
use std::process::Command;
use std::ptr::NonNull;

use alloc_arena::{PoolAllocator, Spans};
use alloc_core::DomainAllocator;
use alloc_debug::Guarded;
use alloc_domains::{MEM, OBJECT, RAW, setup_debug_hooks};

const CHILD: &str = "DOMALLOC_BAD_FREE_MATRIX";

type Composed = Guarded<&'static PoolAllocator<alloc_arena::OsArenas, Spans>>;

/// The allocators a way gives for the mem, object and raw APIs.
fn apis(way: &str) -> [&'static dyn DomainAllocator; 3] {
    match way {
        // No hooks: the standard pools' hardened default (the mem domain's free takes the C
        // library's fast path first).
        "default" | "preset" => [&MEM, &OBJECT, &RAW],
        "setup_first" => {
            assert!(setup_debug_hooks().is_empty());
            [&MEM, &OBJECT, &RAW]
        }
        "setup_after_use" => {
            // The domains have served blocks before the hooks: some freed, some still live.
            let live: Vec<_> = [&MEM, &OBJECT]
                .iter()
                .flat_map(|d| [d.malloc(24).unwrap(), d.malloc(3000).unwrap()])
                .collect();
            for d in [&MEM, &OBJECT] {
                let p = d.malloc(40).unwrap();
                // SAFETY: a live block of `d`, freed once.
                unsafe { d.free(p.as_ptr()) };
            }
            assert!(setup_debug_hooks().is_empty());
            std::mem::forget(live);
            [&MEM, &OBJECT, &RAW]
        }
        "composed" => {
            let pool: &'static PoolAllocator<alloc_arena::OsArenas, Spans> = Box::leak(Box::new(
                PoolAllocator::with_parts(alloc_arena::OsArenas::new(), Spans::new()),
            ));
            let m: &'static Composed = Box::leak(Box::new(Guarded::new(pool).with_api(b'm')));
            let o: &'static Composed = Box::leak(Box::new(Guarded::new(pool).with_api(b'o')));
            let r: &'static Composed = Box::leak(Box::new(Guarded::new(pool).with_api(b'r')));
            [m, o, r]
        }
        other => panic!("unknown way {other}"),
    }
}

/// Commits the misuse `case` through the APIs of `way`; returns only if it was not caught.
fn misuse(way: &str, case: &str) {
    let [mem, object, raw] = apis(way);
    let keep = mem.malloc(64).unwrap();
    // SAFETY: each case is a deliberate misuse the hooks must catch before any harm; the valid
    // steps around it use live blocks as the contract asks.
    unsafe {
        keep.as_ptr().write_bytes(1, 64);
        let p = keep.as_ptr();
        match case {
            "double_free_small" | "double_free_medium" | "double_free_large" => {
                let size = match case {
                    "double_free_small" => 10,
                    "double_free_medium" => 2000,
                    _ => 1 << 20,
                };
                let a = mem.malloc(size).unwrap().as_ptr();
                mem.free(a);
                mem.free(a);
            }
            "interior" => mem.free(p.add(16)),
            "misaligned" => mem.free(p.add(1)),
            "realloc_freed" => {
                mem.free(p);
                mem.realloc(p, 100);
            }
            "usable_size_freed" => {
                mem.free(p);
                mem.usable_size(keep);
            }
            "mem_freed_as_object" => object.free(p),
            "large_mem_freed_as_object" => object.free(mem.malloc(3000).unwrap().as_ptr()),
            "object_freed_as_mem" => mem.free(object.malloc(32).unwrap().as_ptr()),
            "mem_freed_as_raw" => raw.free(p),
            // 8 GiB into the 16 GiB the mem domain's small pool reserves for its arenas, beside
            // `p`, where no arena is.
            "reserved_no_arena" => {
                if !alloc_domains::in_reserved_arenas(p) {
                    // The OS refused the reservation (an address-space limit).
                    println!("{case} skipped: no reservation here");
                    return;
                }
                let base = p as usize & !((1usize << alloc_arena::RESERVED_SHIFT) - 1);
                mem.free((base + (8 << 30) + 64) as *mut u8);
            }
            // A pointer into a C library block (16 bytes in, so that what the hook reads in front
            // of it is that block's memory: AddressSanitizer and memcheck check the tests).
            "foreign" => {
                let c = libc::malloc(80).cast::<u8>();
                c.write_bytes(0, 80);
                mem.free(c.add(16));
            }
            "aligned_overflow" | "aligned_underflow" => {
                let layout = Layout::from_size_align(100, 64).unwrap();
                let a = mem.malloc_aligned(layout).unwrap();
                assert_eq!(a.as_ptr() as usize % 64, 0);
                if case == "aligned_overflow" {
                    *a.as_ptr().add(100) = 0;
                } else {
                    *a.as_ptr().sub(1) = 0;
                }
                mem.free_aligned(a, layout);
            }
            other => panic!("unknown case {other}"),
        }
    }
    let x = mem.malloc(64).map(NonNull::as_ptr);
    let y = mem.malloc(64).map(NonNull::as_ptr);
    println!(
        "{case} not caught: {}",
        if x == y {
            "a block handed out twice"
        } else {
            "distinct blocks"
        }
    );
}

#[test]
fn child_process_entry() {
    let Ok(v) = std::env::var(CHILD) else {
        return;
    };
    let (way, case) = v.split_once(':').unwrap();
    misuse(way, case);
}

fn run(way: &str, case: &str) -> (Option<i32>, String) {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, format!("{way}:{case}"))
    .env_remove("DOMALLOC_STRICT");
    if way == "preset" {
        c.env("DOMALLOC", "pool_debug");
    } else {
        c.env_remove("DOMALLOC");
    }
    let out = c.output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.signal(), text)
}

/// (case, what the report's last line must say)
const CASES: &[(&str, &str)] = &[
    ("double_free_small", "Fatal error in debug free: "),
    ("double_free_medium", "Fatal error in debug free: "),
    ("double_free_large", "Fatal error in debug free: "),
    ("interior", "Fatal error in debug free: "),
    ("misaligned", "Fatal error in debug free: "),
    ("realloc_freed", "Fatal error in debug realloc: "),
    (
        "usable_size_freed",
        "Fatal error in debug malloc_usable_size: ",
    ),
    (
        "mem_freed_as_object",
        "bad ID: Allocated using API 'm', verified using API 'o'",
    ),
    (
        "large_mem_freed_as_object",
        "bad ID: Allocated using API 'm', verified using API 'o'",
    ),
    (
        "object_freed_as_mem",
        "bad ID: Allocated using API 'o', verified using API 'm'",
    ),
    (
        "mem_freed_as_raw",
        "bad ID: Allocated using API 'm', verified using API 'r'",
    ),
    ("foreign", "Fatal error in debug free: "),
    ("aligned_overflow", "bad trailing pad byte"),
    ("aligned_underflow", "bad leading pad byte"),
];

#[test]
fn every_bad_free_gets_the_hooks_report_by_every_way_into_them() {
    let mut failures = Vec::new();
    for &(case, says) in CASES {
        let mut lines = Vec::new();
        for way in ["preset", "setup_first", "setup_after_use", "composed"] {
            // Hooks installed after the domains have served blocks leave the blocks made before
            // them to the allocators that made them (`setup_debug_hooks`' documentation): the
            // object domain's blocks above 512 bytes are the mem domain's, so a mem block freed
            // through object may be one of those, and is freed, not reported.
            if way == "setup_after_use" && case.ends_with("mem_freed_as_object") {
                continue;
            }
            let (signal, text) = run(way, case);
            // Under `cargo xtask sanitize` the pools poison the blocks they free (alloc-arena's
            // `asan` feature): ASan then stops the hooks' own read of a freed block's fill
            // pattern, and reports the bad free itself.
            if std::env::var_os("ASAN_OPTIONS").is_some()
                && text.contains("ERROR: AddressSanitizer: use-after-poison")
            {
                continue;
            }
            let last = text
                .lines()
                .rfind(|l| l.starts_with("Fatal error in debug"))
                .unwrap_or("")
                .to_string();
            if signal != Some(6) || !text.contains(says) || text.contains("domalloc: ") {
                failures.push(format!(
                    "{case} by {way}: signal {signal:?}, wanted {says:?}\n{text}"
                ));
            }
            lines.push((way, last));
        }
        let Some((_, first)) = lines.first() else {
            continue;
        };
        if lines.iter().any(|(_, l)| l != first) {
            failures.push(format!("{case}: the ways disagree: {lines:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n----\n"));
}

/// Without hooks, the mem domain's own `free` (which tries the C library's fast path first: the
/// pool's reservation and the thread's way, no registry) still catches what the hardened
/// default promises: a block freed twice while it waits in a bin, a pointer inside a block, a
/// misaligned one; and, as the C library's `free` does, a pointer in the pool's reservation
/// where no arena is and a block of the object domain. Each ends in the one-line report and an
/// abort, never in a block handed out twice nor in glibc.
#[test]
fn the_hardened_default_catches_bad_frees_through_the_mem_domain() {
    let cases = [
        ("double_free_small", "free(): double free"),
        ("interior", "free(): invalid pointer"),
        ("misaligned", "free(): invalid pointer"),
        (
            "reserved_no_arena",
            "free(): invalid pointer (in domalloc's reserved memory, but in no arena)",
        ),
        (
            "object_freed_as_mem",
            "free(): invalid pointer (a block of another allocator or domain)",
        ),
    ];
    for (case, says) in cases {
        let (signal, text) = run("default", case);
        if text.contains(&format!("{case} skipped")) {
            continue;
        }
        assert_eq!(signal, Some(libc::SIGABRT), "{case}: {text}");
        assert!(
            text.contains("domalloc: ") && text.contains(says),
            "{case}: {text}"
        );
        assert!(!text.contains("not caught"), "{case}: {text}");
    }
}
