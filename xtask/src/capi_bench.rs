//! The `capi` workload group of `cargo xtask bench`: small C programs (`benches/c/`), built here
//! with the system's C compiler, each run under every allocator that can replace the C `malloc`:
//! glibc itself (`system`), domalloc's C library (`domain`: `LD_PRELOAD=libdomalloc.so`, the mem
//! domain on the pool), and mimalloc and jemalloc when a shared library of theirs is installed
//! (on Debian: the packages `libmimalloc2.0` and `libjemalloc2`; a missing one is named, and its
//! rows left out). This is the path real programs take.
//!
//! * `capi-pairs`: `malloc(64)` + `free` in a loop.
//! * `capi-larson`: a larson-style server at 2 threads: random replacements in a table of blocks
//!   of 16-512 bytes, tables passed between threads (cross-thread frees).
//! * `capi-local`: a multi-threaded local loop at 2 threads: each thread replaces its own blocks
//!   of 16 B to 4 KiB.
//! * `capi-large`: blocks of 64 KiB to 1 MiB replaced at random.
//!
//! Each program times its own loop and prints `ns_per_op`; the row's peak RSS is the process's
//! (`wait4`). Where valgrind is installed, each program also runs twice under callgrind at two
//! small operation counts, and the difference of the totals over the difference of operations is
//! the row's `instructions_per_op` (start-up cancels out): exact and repeatable, where times on a
//! shared machine are not.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::python_bench::{build_libdomalloc, installed_peers, median_and_spread};
use crate::{Result, root};

/// (row name, source, threads, ops for a timed run, ops for the two callgrind runs).
const PROGRAMS: &[(&str, &str, usize, u64, [u64; 2])] = &[
    ("capi-pairs", "pairs.c", 1, 5_000_000, [100_000, 200_000]),
    ("capi-larson", "larson.c", 2, 500_000, [20_000, 40_000]),
    ("capi-local", "local.c", 2, 500_000, [20_000, 40_000]),
    ("capi-large", "large.c", 1, 20_000, [1_000, 2_000]),
];

fn have(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The program's arguments for `ops` operations.
fn args(threads: usize, ops: u64, source: &str) -> Vec<String> {
    match source {
        "pairs.c" => vec![ops.to_string(), "64".to_string()],
        "large.c" => vec![ops.to_string()],
        _ => vec![ops.to_string(), threads.to_string()],
    }
}

fn command(exe: &Path, preload: Option<&PathBuf>, args: &[String]) -> Command {
    let mut c = Command::new(exe);
    c.args(args).env_remove("LD_PRELOAD").stderr(Stdio::null());
    if let Some(lib) = preload {
        c.env("LD_PRELOAD", lib).env("DOMALLOC", "pool");
    }
    c
}

/// One timed run: the program's ns per operation, and the process's peak RSS in KiB.
fn timed(exe: &Path, preload: Option<&PathBuf>, args: &[String]) -> Result<(f64, u64)> {
    let child = command(exe, preload, args)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut out = String::new();
    if let Some(mut pipe) = child.stdout {
        use std::io::Read as _;
        pipe.read_to_string(&mut out)
            .map_err(|e| format!("reading {}: {e}", exe.display()))?;
    }
    // SAFETY: waiting on our own child, with valid out-pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("{} failed (status {status:#x})", exe.display()));
    }
    let ns = out
        .lines()
        .find_map(|l| l.strip_prefix("ns_per_op="))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("{} printed no ns_per_op: {out:?}", exe.display()))?;
    Ok((ns, usage.ru_maxrss.max(0) as u64))
}

/// Instructions of a whole run under callgrind.
fn instructions(exe: &Path, preload: Option<&PathBuf>, args: &[String]) -> Option<u64> {
    let mut c = Command::new("valgrind");
    c.args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(exe)
        .args(args)
        .env_remove("LD_PRELOAD")
        .stdout(Stdio::null());
    if let Some(lib) = preload {
        // valgrind passes the environment on to the program it runs.
        c.env("LD_PRELOAD", lib).env("DOMALLOC", "pool");
    }
    let out = c.output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let refs = text.lines().find_map(|l| l.split("refs:").nth(1))?;
    refs.trim().replace(',', "").parse().ok()
}

/// The records (one JSON line each, in the runner's format, plus `instructions_per_op`).
pub(crate) fn run(samples: usize, allocators: &[String]) -> Result<Vec<String>> {
    if !have("cc", "--version") {
        eprintln!("\n    capi: no C compiler (cc) is installed; the workload is skipped");
        return Ok(Vec::new());
    }
    let lib = build_libdomalloc()?;
    let out_dir = root().join("target/bench/capi");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;

    let mut subjects: Vec<(&str, Option<PathBuf>)> = vec![("system", None), ("domain", Some(lib))];
    for (name, p) in installed_peers("capi") {
        subjects.push((name, Some(p)));
    }
    let wanted = |name: &str| allocators.iter().any(|a| a == name) || name == "domain";
    let valgrind = have("valgrind", "--version");
    if !valgrind {
        eprintln!("    capi: valgrind is not installed; no instruction counts");
    }

    let subjects: Vec<&(&str, Option<PathBuf>)> =
        subjects.iter().filter(|(n, _)| wanted(n)).collect();
    let total = PROGRAMS.len() * subjects.len();
    eprintln!(
        "\n==> capi: {total} runs ({} C programs x {} allocators: {}), {samples} samples each{}",
        PROGRAMS.len(),
        subjects.len(),
        subjects
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", "),
        if valgrind {
            ", and two runs under callgrind"
        } else {
            ""
        }
    );
    let mut done = 0;
    let mut lines = Vec::new();
    for &(workload, source, threads, ops, counted) in PROGRAMS {
        let exe = out_dir.join(source.trim_end_matches(".c"));
        let src = root().join("benches/c").join(source);
        let status = Command::new("cc")
            .args(["-O2", "-pthread", "-o"])
            .arg(&exe)
            .arg(&src)
            .status()
            .map_err(|e| format!("cc: {e}"))?;
        if !status.success() {
            return Err(format!("cc could not compile {}", src.display()));
        }
        for (name, preload) in subjects.iter().copied() {
            done += 1;
            eprint!("\r    [{done}/{total}] {workload} on {name}...{:20}", "");
            let _ = std::io::Write::flush(&mut std::io::stderr());
            let a = args(threads, ops, source);
            timed(&exe, preload.as_ref(), &a)?; // warm-up
            let mut ns = Vec::new();
            let mut peak = 0;
            for _ in 0..samples {
                let (t, rss) = timed(&exe, preload.as_ref(), &a)?;
                ns.push(t);
                peak = peak.max(rss);
            }
            let (median, spread) = median_and_spread(&mut ns);
            let per_op = if valgrind {
                let [small, big] = counted;
                let run = |n| instructions(&exe, preload.as_ref(), &args(threads, n, source));
                match (run(small), run(big)) {
                    (Some(x), Some(y)) if y > x => {
                        let ops = (big - small) * threads as u64;
                        Some(((y - x) as f64 / ops as f64 * 10.0).round() / 10.0)
                    }
                    _ => None,
                }
            } else {
                None
            };
            lines.push(crate::bench::record_line(
                workload, name, threads, median, spread, &ns, peak, per_op,
            ));
        }
    }
    eprintln!();
    Ok(lines)
}
