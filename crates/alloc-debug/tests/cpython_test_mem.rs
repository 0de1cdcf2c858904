//! Ported from CPython's Lib/test/test_capi/test_mem.py (`PyMemDebugTests`): each case runs in a
//! child process (this test binary, re-run with `DOMALLOC_TEST_MEM_CASE` set), which must die by
//! `abort()` after printing a report with the same facts CPython's debug hooks print.

use std::process::Command;

use alloc_core::{DomainAllocator, System};
use alloc_debug::Guarded;

const CASE: &str = "DOMALLOC_TEST_MEM_CASE";

/// The child side: runs the case named in the environment (and aborts inside it).
#[test]
fn child_process_entry() {
    let Ok(case) = std::env::var(CASE) else {
        return;
    };
    let mem = Guarded::new(&System).with_api(b'm');
    let raw = Guarded::new(&System).with_api(b'r');
    // SAFETY: each case commits the memory error under test, which the guard detects before
    // anything else happens; the process then aborts.
    unsafe {
        match case.as_str() {
            "buffer_overflow" => {
                let p = mem.malloc(16).unwrap().as_ptr();
                *p.add(16) = b'x';
                mem.free(p);
            }
            "buffer_underflow" => {
                let p = mem.malloc(16).unwrap().as_ptr();
                *p.sub(1) = b'x';
                mem.free(p);
            }
            "api_misuse" => {
                let p = mem.malloc(16).unwrap().as_ptr();
                raw.free(p);
            }
            "double_free" => {
                let q = Guarded::new(&System).with_api(b'm').with_quarantine(4);
                let p = q.malloc(16).unwrap().as_ptr();
                q.free(p);
                q.free(p);
            }
            other => panic!("unknown case {other}"),
        }
    }
    panic!("case {case} did not abort");
}

/// Runs `case` in a child and returns its standard error, asserting it was killed by SIGABRT.
fn run_case(case: &str) -> String {
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
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(6),
            "the child must abort (SIGABRT); status {:?}, stderr:\n{stderr}",
            out.status
        );
    }
    #[cfg(not(unix))]
    assert!(
        !out.status.success(),
        "the child must abort; stderr:\n{stderr}"
    );
    stderr
}

/// Asserts that `lines` appear in `text` in order, each a line or a line prefix.
fn assert_lines_in_order(text: &str, lines: &[&str]) {
    let mut rest = text;
    for want in lines {
        match rest.find(want) {
            Some(i) => rest = &rest[i + want.len()..],
            None => panic!("expected {want:?} (in this order) in:\n{text}"),
        }
    }
}

fn is_hex_address(s: &str) -> bool {
    s.strip_prefix("0x")
        .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
}

#[test]
fn buffer_overflow() {
    let err = run_case("buffer_overflow");
    assert_lines_in_order(
        &err,
        &[
            "Debug memory block at address p=0x",
            ": API 'm'\n",
            "    16 bytes originally requested\n",
            "    The 7 pad bytes at p-7 are FORBIDDENBYTE, as expected.\n",
            "    The 8 pad bytes at tail=0x",
            " are not all FORBIDDENBYTE (0xfd):\n",
            "        at tail+0: 0x78 *** OUCH\n",
            "        at tail+1: 0xfd\n",
            "        at tail+2: 0xfd\n",
            "        at tail+7: 0xfd\n",
            "    The block was made by call #",
            " to debug malloc/realloc.\n",
            "    Data at p: cd cd cd cd cd cd cd cd cd cd cd cd cd cd cd cd\n",
            "Fatal error in debug free: bad trailing pad byte",
        ],
    );
    let addr = err
        .split("address p=")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .unwrap();
    assert!(is_hex_address(addr), "address {addr:?}");
}

#[test]
fn buffer_underflow() {
    let err = run_case("buffer_underflow");
    assert_lines_in_order(
        &err,
        &[
            "Debug memory block at address p=0x",
            ": API 'm'\n",
            "    16 bytes originally requested\n",
            "    The 7 pad bytes at p-7 are not all FORBIDDENBYTE (0xfd):\n",
            "        at p-7: 0xfd\n",
            "        at p-6: 0xfd\n",
            "        at p-2: 0xfd\n",
            "        at p-1: 0x78 *** OUCH\n",
            "    The 8 pad bytes at tail=0x",
            " are FORBIDDENBYTE, as expected.\n",
            "    The block was made by call #",
            "    Data at p: cd cd cd",
            "Fatal error in debug free: bad leading pad byte",
        ],
    );
}

#[test]
fn api_misuse() {
    let err = run_case("api_misuse");
    assert_lines_in_order(
        &err,
        &[
            "Debug memory block at address p=0x",
            ": API 'm'\n",
            "    16 bytes originally requested\n",
            "    The 7 pad bytes at p-7 are FORBIDDENBYTE, as expected.\n",
            " are FORBIDDENBYTE, as expected.\n",
            "    The block was made by call #",
            "    Data at p: cd cd cd",
            "Fatal error in debug free: bad ID: Allocated using API 'm', verified using API 'r'",
        ],
    );
}

#[test]
fn freeing_a_freed_block() {
    let err = run_case("double_free");
    assert_lines_in_order(
        &err,
        &[
            "Debug memory block at address p=0x",
            "the block was already freed",
            "Fatal error in debug free: the block was already freed (double free)",
        ],
    );
}
