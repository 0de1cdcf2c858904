//! `cargo xtask`: the project's tasks, driving cargo (it links no domalloc crate).
//!
//! ```text
//! cargo xtask bench [--full] [--workloads pairs,churn,python] [--allocators system,mimalloc] [--samples N]
//! cargo xtask ci [--skip-tests]
//! cargo xtask loom [--preemptions N]   # the loom models, unbounded unless N is given
//! cargo xtask tune [--workloads W] [--full]   # profile, then pools with other parameters
//! cargo xtask sanitize        # the unsafe core under AddressSanitizer
//! cargo xtask valgrind [--programs-only]   # memcheck: a C program's bugs under glibc and
//!                                          # domalloc alike, then the unsafe core's tests
//! cargo xtask help [TASK]     # every option and its values, with nothing built
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

mod bench;
#[cfg(unix)]
mod capi_bench;
mod chart;
#[cfg(unix)]
mod memcheck;
#[cfg(unix)]
mod python_bench;
mod tune;

type Result<T = ()> = std::result::Result<T, String>;

/// The project's tasks. Options are read before anything is built, so `--help` and a mistyped
/// option cost nothing.
#[derive(clap::Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(clap::Subcommand)]
enum Task {
    /// Runs the benchmark suite against the peer allocators (the quick suite by default), prints
    /// the table and writes target/bench/report.json and the charts.
    Bench(bench::Request),
    /// What CI runs: fmt, clippy -D warnings, the test suite, the no_std and 32-bit builds,
    /// docs, cargo package, and the windows check.
    Ci {
        /// Everything but the test suite (CI runs the README's test command itself).
        #[arg(long)]
        skip_tests: bool,
    },
    /// The loom models of the cross-thread protocols, each on its own, timed.
    Loom {
        /// Bounds every model's search to N preemptions (unbounded by default).
        #[arg(long, value_name = "N")]
        preemptions: Option<u32>,
    },
    /// Profiles the workloads, then runs them on pools with other parameters.
    Tune(tune::Request),
    /// The unsafe crates' tests under AddressSanitizer.
    Sanitize,
    /// Memcheck reports a C program's bugs (use after free, overflow, uninitialised read, leak)
    /// alike under glibc and under libdomalloc built with `--features valgrind`; then the unsafe
    /// crates' tests under valgrind memcheck.
    Valgrind {
        /// Only the C program's comparison, not the crates' tests.
        #[arg(long)]
        programs_only: bool,
    },
}

fn main() -> ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    let result = match cli.task {
        Task::Bench(r) => bench::run(r),
        Task::Ci { skip_tests } => ci(skip_tests),
        Task::Loom { preemptions } => loom(preemptions),
        Task::Tune(r) => tune::run(r),
        Task::Sanitize => sanitize(),
        Task::Valgrind { programs_only } => valgrind(programs_only),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The loom models of the lock-free protocols (alloc-arena's cross-thread protocols, alloc-debug's
/// tallies, ownership switch, address table, guard-page slot states and scope slot table,
/// alloc-domains' reclamation of domain records), built with
/// `--cfg loom` in their own target directory; loom's
/// full search unless `--preemptions N` bounds it.
fn loom(preemptions: Option<u32>) -> Result {
    let mut times = Vec::new();
    for krate in ["alloc-arena", "alloc-debug", "alloc-domains"] {
        let test = |extra: &[&str]| {
            let mut cmd = cargo();
            cmd.args([
                "test",
                "-p",
                krate,
                "--lib",
                "--release",
                "--target-dir",
                "target/loom",
                "loom_models",
            ])
            .args(extra)
            .env("RUSTFLAGS", "--cfg loom");
            if let Some(n) = preemptions {
                cmd.env("LOOM_MAX_PREEMPTIONS", n.to_string());
            }
            cmd
        };
        // The models' names, then each model on its own, timed.
        let list = test(&["--", "--list", "--format", "terse"])
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("loom models of {krate}: could not start: {e}"))?;
        if !list.status.success() {
            return Err(format!("loom models of {krate}: the build failed"));
        }
        let names: Vec<String> = String::from_utf8_lossy(&list.stdout)
            .lines()
            .filter_map(|l| l.strip_suffix(": test"))
            .map(str::to_string)
            .collect();
        for name in names {
            let start = Instant::now();
            run(
                &format!("loom model {krate}::{name}"),
                test(&["--", "--exact", &name]),
            )?;
            times.push((format!("{krate}::{name}"), start.elapsed().as_secs_f64()));
        }
    }
    eprintln!("\nloom models, each on its own:");
    for (name, secs) in &times {
        eprintln!("  {secs:8.1}s  {name}");
    }
    Ok(())
}

/// The workspace root (xtask lives one level below it).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub(crate) fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs `cmd`, echoing it, and fails with its description if it fails.
pub(crate) fn run(what: &str, mut cmd: Command) -> Result {
    eprintln!("\n==> {what}");
    let _ = std::io::stderr().flush();
    let start = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("{what}: could not start: {e}"))?;
    if !status.success() {
        return Err(format!("{what}: failed ({status})"));
    }
    eprintln!("    ok in {:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Builds with `cmd` (a `cargo build`), cargo's progress and diagnostics on the terminal, and
/// returns the file cargo made for target `name` whose name ends with `suffix` (the executable of
/// a binary: `suffix` ""). Cargo says where it put it, so a `CARGO_TARGET_DIR` or a
/// `build.target-dir` is followed.
pub(crate) fn build(what: &str, mut cmd: Command, name: &str, suffix: &str) -> Result<PathBuf> {
    eprintln!("\n==> {what}");
    let _ = std::io::stderr().flush();
    let start = Instant::now();
    let out = cmd
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{what}: could not start: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what}: failed ({})", out.status));
    }
    let found = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .flat_map(|m| {
            let files = m["filenames"].as_array().cloned().unwrap_or_default();
            m["executable"]
                .as_str()
                .map(str::to_string)
                .into_iter()
                .chain(
                    files
                        .into_iter()
                        .filter_map(|f| f.as_str().map(str::to_string)),
                )
        })
        .find(|f| f.ends_with(suffix))
        .map(PathBuf::from)
        .ok_or_else(|| format!("{what}: cargo named no file of {name} ending in {suffix:?}"))?;
    eprintln!("    ok in {:.1}s", start.elapsed().as_secs_f64());
    Ok(found)
}

/// `Ok` if rustup has `triple` installed, else the error that names the check needing it.
fn need_target(triple: &str, check: &str) -> Result {
    if target_installed(triple) {
        Ok(())
    } else {
        Err(format!(
            "the {check} check needs its target: rustup target add {triple}"
        ))
    }
}

fn target_installed(triple: &str) -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == triple)
        })
        .unwrap_or(false)
}

/// The checks CI runs: the README's test command plus fmt, clippy, the host `no_std` build, the
/// bare-metal build (thumbv7em-none-eabihf), the 32-bit unix build (i686), the frame-pointer
/// capture test, docs and the windows build.
fn ci(skip_tests: bool) -> Result {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run("cargo fmt --check", fmt)?;

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run("cargo clippy -D warnings", clippy)?;

    if !skip_tests {
        let mut test = cargo();
        test.args(["test", "--workspace"]);
        run("cargo test --workspace (the README's test command)", test)?;
    }

    // The pool crates without `std` on the host: an OS but no standard library (the thread key
    // and its cache store instead of the native thread-local). The bare-metal build below has
    // neither, and does not build this configuration.
    let mut no_std = cargo();
    no_std.args([
        "build",
        "-p",
        "alloc-core",
        "-p",
        "alloc-arena",
        "--no-default-features",
        "--target-dir",
        "target/no-std",
    ]);
    run(
        "cargo build -p alloc-core -p alloc-arena --no-default-features",
        no_std,
    )?;

    // A real `no_std` target: a Cortex-M4F with no OS, no C library and no 64-bit atomics. The
    // pool over a region with its large blocks from the region (`LockedHeap`, `Spans`), and the
    // decorators that need no OS; then the example whose `#[global_allocator]` is that pool.
    const EMBEDDED: &str = "thumbv7em-none-eabihf";
    need_target(EMBEDDED, "embedded")?;
    let mut embedded = cargo();
    embedded.args([
        "build",
        "--target",
        EMBEDDED,
        "-p",
        "alloc-core",
        "-p",
        "alloc-arena",
        "-p",
        "alloc-debug",
        "--no-default-features",
        "--target-dir",
        "target/embedded",
    ]);
    run(
        "cargo build --target thumbv7em-none-eabihf -p alloc-core -p alloc-arena -p alloc-debug --no-default-features",
        embedded,
    )?;
    let mut example = cargo();
    example.args([
        "check",
        "--target",
        EMBEDDED,
        "-p",
        "alloc-arena",
        "--no-default-features",
        "--example",
        "embedded",
        "--target-dir",
        "target/embedded",
    ]);
    run(
        "cargo check --target thumbv7em-none-eabihf --example embedded",
        example,
    )?;

    // 32-bit unix: the pools with an OS and 32-bit pointers (their 64-bit constants, such as the
    // reservation's shift, in 64-bit arithmetic). A build, not a check: some lints (an overflowing
    // shift) are only raised while code is generated.
    const I686: &str = "i686-unknown-linux-gnu";
    if cfg!(target_os = "linux") {
        need_target(I686, "32-bit")?;
        let mut i686 = cargo();
        i686.args([
            "build",
            "--target",
            I686,
            "-p",
            "alloc-core",
            "-p",
            "alloc-arena",
            "--target-dir",
            "target/i686",
        ]);
        run(
            "cargo build --target i686-unknown-linux-gnu -p alloc-core -p alloc-arena",
            i686,
        )?;
    }

    // Tracing's frame-pointer capture, in a build that keeps frame pointers: calibration must
    // choose it, and its tracebacks must name the allocating line.
    if cfg!(target_os = "linux") {
        let mut fp = cargo();
        fp.args([
            "test",
            "-p",
            "alloc-debug",
            "--test",
            "capture",
            "--target-dir",
            "target/frame-pointers",
        ])
        .env("RUSTFLAGS", "-C force-frame-pointers=yes")
        .env("DOMALLOC_EXPECT_FRAME_POINTERS", "1");
        run("the capture test built with frame pointers", fp)?;
    }

    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run("cargo doc --no-deps", doc)?;

    // Every library crate packages and builds from its package, in dependency order (cargo
    // resolves the earlier ones from the packages it just made).
    // Cargo takes a registry package as immutable, so it reuses what it built from an earlier
    // package of the same version (its unpacked sources, its build in the target directory):
    // both are forgotten first, and the verification builds in a directory of its own.
    const VERIFY_DIR: &str = "target/package-verify";
    forget_unpacked_packages(&LIBRARY_CRATES);
    forget_builds_of(Path::new(VERIFY_DIR), &LIBRARY_CRATES);
    let mut package = cargo();
    package.args(["package", "--allow-dirty", "--target-dir", VERIFY_DIR]);
    for krate in LIBRARY_CRATES {
        package.args(["-p", krate]);
    }
    run("cargo package (every library crate)", package)?;

    const WINDOWS: &str = "x86_64-pc-windows-gnu";
    need_target(WINDOWS, "windows")?;
    let mut check = cargo();
    check.args([
        "check",
        "--target",
        WINDOWS,
        "-p",
        "alloc-core",
        "-p",
        "alloc-arena",
        "-p",
        "alloc-debug",
        "-p",
        "alloc-domains",
    ]);
    run("cargo check --target x86_64-pc-windows-gnu", check)?;
    Ok(())
}

/// The library crates, in dependency order.
const LIBRARY_CRATES: [&str; 5] = [
    "alloc-core",
    "alloc-arena",
    "alloc-debug",
    "alloc-domains",
    "alloc-capi",
];

/// Removes the sources cargo unpacked from this workspace's own packages by an earlier
/// `cargo package` (under `$CARGO_HOME/registry/src/-<hash>/`, the local registry cargo verifies
/// packages against): cargo unpacks a package only if its directory is absent, so a package of
/// the same version made from older code would be built in place of the new one.
fn forget_unpacked_packages(crates: &[&str]) {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry").join("src")) else {
        return;
    };
    let Ok(registries) = std::fs::read_dir(&src) else {
        return;
    };
    for registry in registries.flatten() {
        // The local registries of packaged workspaces are named `-<hash>`; crates.io's are not.
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        let Ok(unpacked) = std::fs::read_dir(registry.path()) else {
            continue;
        };
        for dir in unpacked.flatten() {
            let name = dir.file_name().to_string_lossy().into_owned();
            if crates.iter().any(|c| {
                name.strip_prefix(c).is_some_and(|v| {
                    v.starts_with('-') && v[1..].starts_with(|d: char| d.is_ascii_digit())
                })
            }) {
                let _ = std::fs::remove_dir_all(dir.path());
            }
        }
    }
}

/// Removes the fingerprints of `crates` in target directory `dir`, so that cargo builds them again
/// (a package verified earlier has the same version, and so the same fingerprint, as the new one).
fn forget_builds_of(dir: &Path, crates: &[&str]) {
    let Ok(entries) = std::fs::read_dir(dir.join("debug").join(".fingerprint")) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if crates.iter().any(|c| {
            name.strip_prefix(c)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|hash| hash.chars().all(|ch| ch.is_ascii_hexdigit()))
        }) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

const HOST: &str = "x86_64-unknown-linux-gnu";

/// The unsafe crates' tests under AddressSanitizer (stable compiler, bootstrap flag), with the
/// pools' `asan` feature on.
fn sanitize() -> Result {
    let mut c = cargo();
    c.args([
        "test",
        "--target",
        HOST,
        "--target-dir",
        "target/asan",
        "-p",
        "alloc-core",
        "-p",
        "alloc-arena",
        "-p",
        "alloc-debug",
        "-p",
        "alloc-domains",
        "--lib",
        "--tests",
        // The pools poison their free blocks and unused memory: ASan sees inside them too (and
        // alloc-arena's `asan` tests check that it reports a use after free and an overflow).
        "--features",
        "alloc-arena/asan",
    ])
    .env("RUSTC_BOOTSTRAP", "1")
    .env("RUSTFLAGS", "-Zsanitizer=address")
    // `handle_segv=0`: `GuardPages`' tests die by the fault they provoke, after its own report,
    // which the sanitizer's handler would turn into an exit. `fast_unwind_on_malloc=0`: whole
    // allocation stacks, so that the suppressions below match frames past the decorators.
    .env(
        "ASAN_OPTIONS",
        "detect_leaks=1:allocator_may_return_null=1:handle_segv=0:fast_unwind_on_malloc=0",
    )
    .env(
        "LSAN_OPTIONS",
        format!(
            "suppressions={}",
            root().join("xtask/data/lsan.supp").display()
        ),
    );
    run("tests under AddressSanitizer", c)
}

/// Memcheck sees inside the pools as inside glibc's heap (`memcheck`), then the unsafe crates'
/// tests under valgrind memcheck (unless `programs_only`).
fn valgrind(programs_only: bool) -> Result {
    #[cfg(unix)]
    memcheck::same_reports_as_glibc()?;
    if programs_only {
        return Ok(());
    }
    let mut c = cargo();
    c.args([
        "test",
        "--release",
        "-p",
        "alloc-core",
        "-p",
        "alloc-arena",
        "-p",
        "alloc-debug",
        "-p",
        "alloc-domains",
        "--lib",
        "--tests",
    ])
    .env(
        format!(
            "CARGO_TARGET_{}_RUNNER",
            HOST.to_uppercase().replace('-', "_")
        ),
        // Fair scheduling: valgrind runs one thread at a time, and without it a thread that
        // spins and yields while it waits for another (the domains' grace periods) may take the
        // lock back at once, so that a test of many threads crawls for tens of minutes.
        "valgrind --fair-sched=yes --error-exitcode=99 --leak-check=no --quiet",
    )
    // Tests whose checks read the RSS skip them (valgrind's quarantine holds freed memory).
    .env("DOMALLOC_UNDER_VALGRIND", "1");
    run("tests under valgrind memcheck", c)
}
