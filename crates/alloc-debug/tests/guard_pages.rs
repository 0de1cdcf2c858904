//! `GuardPages` catching the bug at the bad access: each case runs in a child process (this test
//! binary, re-run with `DOMALLOC_GUARD_CASE` set) that commits the error on a sampled block and
//! must die by SIGSEGV after writing the report (or, for a double free, abort after its report).
#![cfg(unix)]

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use alloc_arena::PoolAllocator;
use alloc_core::DomainAllocator;
use alloc_debug::GuardPages;

const CASE: &str = "DOMALLOC_GUARD_CASE";

/// The child side: runs the case named in the environment (and dies inside it).
#[test]
fn child_process_entry() {
    let Ok(case) = std::env::var(CASE) else {
        return;
    };
    let underflow = case == "underflow";
    let g = GuardPages::builder()
        .sample_rate(1)
        .slots(16)
        .quarantine(8)
        .underflow(underflow)
        .build(PoolAllocator::new())
        .unwrap();
    let p = g.malloc(32).unwrap().as_ptr();
    assert!(g.is_guarded(p));
    // The parent looks for this address in the report.
    println!("block {p:p}");
    // SAFETY: none: each case commits the memory error under test, which faults (or is
    // reported) at once; the process dies there.
    unsafe {
        match case.as_str() {
            "overflow" => p.add(32).write_volatile(1),
            "underflow" => p.sub(1).write_volatile(1),
            "use_after_free" => {
                g.free(p);
                let _ = p.add(5).read_volatile();
            }
            "double_free" => {
                g.free(p);
                g.free(p);
            }
            other => panic!("unknown case {other}"),
        }
    }
    panic!("case {case} did not stop the process");
}

/// Runs `case` in a child; returns the block's address it printed and its standard error,
/// asserting that it died by `signal`.
fn run_case(case: &str, signal: i32) -> (String, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CASE, case)
        .output()
        .expect("start the child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.signal(),
        Some(signal),
        "{case}: the child must die by signal {signal}; status {:?}, stderr:\n{stderr}",
        out.status
    );
    let block = stdout
        .lines()
        .find_map(|l| {
            l.split_once("block 0x")
                .map(|(_, b)| format!("0x{}", b.trim()))
        })
        .unwrap_or_else(|| panic!("{case}: no block printed:\n{stdout}"));
    (block, stderr)
}

#[test]
fn a_one_byte_overflow_faults_and_is_reported() {
    let (block, err) = run_case("overflow", libc::SIGSEGV);
    assert!(
        err.contains("domalloc: guard pages: buffer overflow: a write at"),
        "{err}"
    );
    assert!(err.contains("offset 32, 1 byte(s) past its end"), "{err}");
    assert!(
        err.contains(&format!("block: {block}, 32 bytes\n")),
        "{err}"
    );
    assert!(err.contains("allocated at: 0x"), "{err}");
}

#[test]
fn an_underflow_faults_in_underflow_mode_and_is_reported() {
    let (block, err) = run_case("underflow", libc::SIGSEGV);
    assert!(
        err.contains("domalloc: guard pages: buffer underflow: a write at"),
        "{err}"
    );
    assert!(
        err.contains("offset -1, 1 byte(s) before its start"),
        "{err}"
    );
    assert!(
        err.contains(&format!("block: {block}, 32 bytes\n")),
        "{err}"
    );
}

#[test]
fn a_use_after_free_faults_and_is_reported_with_both_sites() {
    let (block, err) = run_case("use_after_free", libc::SIGSEGV);
    assert!(
        err.contains("domalloc: guard pages: use after free: a read at"),
        "{err}"
    );
    assert!(err.contains("offset 5 in a freed block"), "{err}");
    assert!(
        err.contains(&format!("block: {block}, 32 bytes (freed)")),
        "{err}"
    );
    assert!(err.contains("allocated at: 0x"), "{err}");
    assert!(err.contains("freed at: 0x"), "{err}");
}

#[test]
fn a_double_free_of_a_guarded_block_is_reported_and_aborts() {
    let (block, err) = run_case("double_free", libc::SIGABRT);
    assert!(
        err.contains(&format!(
            "domalloc: guard pages: free() of {block}: the block was already freed (double free)"
        )),
        "{err}"
    );
}
