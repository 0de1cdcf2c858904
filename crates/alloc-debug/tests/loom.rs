//! The loom models of the lock-free protocols (`src/loom_models.rs`), run with a bounded search
//! (at most two preemptions per execution) as part of the default test run. They need the crate
//! built with `--cfg loom`, so this test builds it that way in its own target directory (shared
//! with alloc-arena's models). `cargo xtask loom` runs them with loom's default search.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn loom_models_with_bounded_preemptions() {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(env!("CARGO"))
        .current_dir(&workspace)
        .args([
            "test",
            "-p",
            "alloc-debug",
            "--lib",
            "--release",
            "--target-dir",
            "target/loom",
            "loom_models",
        ])
        .env("RUSTFLAGS", "--cfg loom")
        .env("LOOM_MAX_PREEMPTIONS", "2")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "loom models failed:\n{stdout}\n{stderr}"
    );
    let passed = stdout
        .lines()
        .filter(|l| l.starts_with("test loom_models::") && l.ends_with("ok"))
        .count();
    assert!(passed >= 3, "expected the three models to run:\n{stdout}");
}
