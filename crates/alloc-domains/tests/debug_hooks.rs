//! `setup_debug_hooks` on the standard domains (its own binary: it changes them), and
//! configuration from `DOMALLOC` (in child processes, which read it at start-up).

use std::process::Command;

use alloc_core::DomainAllocator;
use alloc_domains::{DomainId, MEM, OBJECT, Preset, RAW, get, preset, setup_debug_hooks};

const CHILD: &str = "DOMALLOC_DOMAINS_TEST_CHILD";

/// The child side: reports what the table looks like, or commits API misuse.
#[test]
fn child_process_entry() {
    let Ok(case) = std::env::var(CHILD) else {
        return;
    };
    match case.as_str() {
        "report" => {
            let names: Vec<String> = [DomainId::RAW, DomainId::MEM, DomainId::OBJECT]
                .iter()
                .map(|&d| get(d).unwrap().name().to_string())
                .collect();
            println!("preset={:?} allocators={}", preset(), names.join(","));
        }
        "misuse" => {
            assert!(setup_debug_hooks().is_empty());
            let p = MEM.malloc(16).unwrap();
            // SAFETY: made by the mem domain, freed through raw: the misuse under test, which the
            // raw domain's hook detects and aborts on.
            unsafe { RAW.free(p.as_ptr()) };
            panic!("the misuse was not detected");
        }
        other => panic!("unknown case {other}"),
    }
}

fn child_command(case: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, case)
    .env_remove("DOMALLOC")
    .env_remove("DOMALLOC_STRICT")
    .env_remove("DOMALLOC_GUARD_SAMPLE");
    c
}

fn child(case: &str, domalloc: Option<&str>) -> std::process::Output {
    let mut c = child_command(case);
    match domalloc {
        Some(v) => c.env("DOMALLOC", v),
        None => c.env_remove("DOMALLOC"),
    };
    c.output().expect("start the child")
}

#[test]
fn domalloc_selects_the_standard_allocators_at_start_up() {
    for (value, preset, allocators) in [
        (None, "Pool", "system,pool,pool"),
        (Some("malloc"), "Malloc", "system,system,system"),
        (Some("pool"), "Pool", "system,pool,pool"),
        (Some("debug"), "Debug", "guarded,guarded,guarded"),
        (
            Some("malloc_debug"),
            "MallocDebug",
            "guarded,guarded,guarded",
        ),
        (Some("pool_debug"), "PoolDebug", "guarded,guarded,guarded"),
        (Some("pool_secure"), "PoolSecure", "system,pool,pool"),
    ] {
        let out = child("report", value);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{value:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("preset={preset} allocators={allocators}")),
            "{value:?}: {stdout}"
        );
    }
}

#[test]
fn domalloc_guard_sample_puts_guard_pages_over_the_mem_domain_of_every_preset() {
    for (value, sample, preset, allocators) in [
        (None, "1", "Pool", "system,guard-pages,pool"),
        (Some("pool"), "5000", "Pool", "system,guard-pages,pool"),
        (Some("malloc"), "1", "Malloc", "system,guard-pages,system"),
        (
            Some("pool_secure"),
            "7",
            "PoolSecure",
            "system,guard-pages,pool",
        ),
        (
            Some("pool_debug"),
            "1",
            "PoolDebug",
            "guarded,guard-pages,guarded",
        ),
        (
            Some("malloc_debug"),
            "1",
            "MallocDebug",
            "guarded,guard-pages,guarded",
        ),
        (None, "0", "Pool", "system,pool,pool"),
    ] {
        let mut c = child_command("report");
        if let Some(v) = value {
            c.env("DOMALLOC", v);
        }
        let out = c.env("DOMALLOC_GUARD_SAMPLE", sample).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{value:?} {sample}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("preset={preset} allocators={allocators}")),
            "{value:?} {sample}: {stdout}"
        );
    }
    let mut c = child_command("report");
    let out = c.env("DOMALLOC_GUARD_SAMPLE", "often").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    assert!(
        stderr.contains("domalloc: unknown DOMALLOC_GUARD_SAMPLE value \"often\"; accepted values: a number (one allocation in N guarded; 0: off); using off\n"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("preset=Pool allocators=system,pool,pool")
    );
}

#[test]
fn an_unknown_value_is_reported_and_the_default_used() {
    let out = child("report", Some("tcmalloc"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    assert!(
        stderr.contains("domalloc: unknown DOMALLOC value \"tcmalloc\"; accepted values: malloc, pool, debug, malloc_debug, pool_debug, pool_secure; using the default, pool\n"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("domalloc:").count(), 1, "once: {stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("preset=Pool allocators=system,pool,pool")
    );
}

/// The reported part of a bad value, from the child's one line.
fn reported_value(stderr: &str) -> &str {
    let start = stderr.find("value \"").expect("the report") + 7;
    let end = stderr[start..]
        .find("\"; accepted")
        .expect("the report's end")
        + start;
    &stderr[start..end]
}

#[cfg(unix)]
#[test]
fn a_bad_value_is_shown_escaped_and_cut_never_as_question_marks() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let mut c = child_command("report");
    c.env("DOMALLOC", OsStr::from_bytes(b"po\x1b[31mol\xc3\xa9\"\\"));
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        reported_value(&stderr),
        r#"po\x1b[31mol\xc3\xa9\"\\"#,
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");

    // A long value: its first 64 bytes and an ellipsis, even when the start is a preset's name.
    let long = format!("pool{}", "x".repeat(200));
    let out = child("report", Some(&long));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        reported_value(&stderr),
        format!("{}\u{2026}", &long[..64]),
        "{stderr}"
    );
    assert!(!stderr.contains('?'), "{stderr}");
}

#[test]
fn domalloc_strict_turns_a_bad_value_into_a_start_up_failure() {
    let mut c = child_command("report");
    c.env("DOMALLOC", "bogus").env("DOMALLOC_STRICT", "1");
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unknown DOMALLOC value \"bogus\"; accepted values: malloc, pool, debug, malloc_debug, pool_debug, pool_secure (DOMALLOC_STRICT=1: stopping)"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("preset="),
        "nothing ran"
    );

    // A good value is unaffected.
    let mut c = child_command("report");
    c.env("DOMALLOC", "malloc").env("DOMALLOC_STRICT", "1");
    let out = c.output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("preset=Malloc"));
}

#[test]
fn a_block_freed_through_the_wrong_domain_is_caught_by_the_hooks() {
    let out = child("misuse", None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(6),
            "abort expected; stderr:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("bad ID: Allocated using API 'm', verified using API 'r'"),
        "{stderr}"
    );
}

#[test]
fn setup_debug_hooks_wraps_each_domain_once_with_its_api_id() {
    // Blocks made before the hooks are still freed by the pool that made them.
    let before = MEM.malloc(40).unwrap();
    assert!(setup_debug_hooks().is_empty() || get(DomainId::RAW).unwrap().name() == "system");
    for d in [DomainId::MEM, DomainId::OBJECT] {
        assert_eq!(get(d).unwrap().name(), "guarded", "{d:?}");
    }
    let first = get(DomainId::MEM).unwrap() as *const _ as *const u8;
    setup_debug_hooks();
    let second = get(DomainId::MEM).unwrap() as *const _ as *const u8;
    assert_eq!(first, second, "calling it twice does not wrap twice");
    for (domain, id) in [(MEM, b'm'), (OBJECT, b'o')] {
        let p = domain.malloc(8).unwrap();
        // SAFETY: a live block of the domain: the API id byte sits 8 bytes before it.
        unsafe {
            assert_eq!(*p.as_ptr().sub(8), id);
            domain.free(p.as_ptr());
        }
    }
    // SAFETY: made before the hooks, freed once: routed to the pool, not the hooks.
    unsafe { MEM.free(before.as_ptr()) };
    assert_eq!(preset(), Preset::Pool);
}

/// `setup_debug_hooks` after every standard domain has allocated hooks each one (raw's C library
/// included: the hook remembers its own blocks, and leaves every other pointer to the C library), and the
/// blocks made before stay with the allocators that made them.
#[test]
fn debug_hooks_set_up_after_use_hook_every_domain() {
    let before: Vec<_> = [RAW, MEM, OBJECT]
        .iter()
        .map(|d| (*d, d.malloc(48).unwrap()))
        .collect();
    assert!(setup_debug_hooks().is_empty());
    for d in [DomainId::RAW, DomainId::MEM, DomainId::OBJECT] {
        assert_eq!(get(d).unwrap().name(), "guarded", "{d:?}");
    }
    for (d, p) in before {
        // SAFETY: made before the hooks, freed once: by the allocator that made it.
        unsafe { d.free(p.as_ptr()) };
        let q = d.malloc(48).unwrap();
        // SAFETY: a hooked block, freed once through its domain.
        unsafe { d.free(q.as_ptr()) };
    }
}
