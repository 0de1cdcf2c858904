//! The loom models of the workspace's lock-free protocols (alloc-arena's cross-thread protocols in
//! its `src/loom_models.rs`, alloc-debug's tallies, ownership switch, address table, guard-page
//! slot states and scope slot table in its own), run with a
//! bounded search (at most two preemptions per execution) as part of the default test run. They
//! need the crates built with `--cfg loom`, so this test builds them that way in their own target
//! directory. `cargo xtask loom` runs them with loom's default, unbounded search. (It lives here,
//! in the crate that depends on every other, so that no library's tests name another.)

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Runs the loom models of `krate`; returns how many passed.
fn models_of(krate: &str) -> usize {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // Said on the terminal itself (the harness captures `eprintln!`, not a write to stderr), and
    // cargo's progress passes through: the build with `--cfg loom` takes minutes the first time.
    let _ = writeln!(
        std::io::stderr(),
        "building and running the loom models of {krate}: cargo test -p {krate} --lib --release \
         --target-dir target/loom (RUSTFLAGS=--cfg loom; minutes the first time)"
    );
    let out = Command::new(env!("CARGO"))
        .current_dir(&workspace)
        .args([
            "test",
            "-p",
            krate,
            "--lib",
            "--release",
            "--target-dir",
            "target/loom",
            "loom_models",
        ])
        .env("RUSTFLAGS", "--cfg loom")
        .env("LOOM_MAX_PREEMPTIONS", "2")
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loom models of {krate} failed ({}; cargo's errors are above):\n{stdout}",
        out.status
    );
    stdout
        .lines()
        .filter(|l| l.starts_with("test loom_models::") && l.ends_with("ok"))
        .count()
}

#[test]
fn alloc_arena_loom_models_with_bounded_preemptions() {
    let passed = models_of("alloc-arena");
    assert!(
        passed >= 6,
        "expected alloc-arena's six models to run, {passed} did"
    );
}

#[test]
fn alloc_debug_loom_models_with_bounded_preemptions() {
    let passed = models_of("alloc-debug");
    assert!(
        passed >= 12,
        "expected alloc-debug's twelve models to run, {passed} did"
    );
}
