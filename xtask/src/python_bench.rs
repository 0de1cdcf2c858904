//! The `python` workload of `cargo xtask bench`: `python3` running a fixed object-churn script
//! (`crates/alloc-capi/tests/py/churn.py`) with `PYTHONMALLOC=malloc`, so that every allocation of
//! the interpreter goes to the C `malloc`, under each allocator that can replace it: glibc itself
//! (`system`), domalloc's C library through its mem domain (`domain`, `LD_PRELOAD`), and jemalloc
//! and mimalloc when a shared library of theirs is installed (skipped with a note otherwise), and
//! CPython's own pymalloc (`pymalloc`: no preload, the default `PYTHONMALLOC`), the allocator
//! domalloc's pool follows. Time per run (wall clock) and the process's peak RSS (`wait4`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{Result, cargo, root};

/// Where distributions put the peers' shared libraries.
const PEER_LIBS: &[(&str, &[&str])] = &[
    (
        "jemalloc",
        &[
            "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
            "/usr/lib64/libjemalloc.so.2",
            "/usr/lib/libjemalloc.so.2",
            "/usr/local/lib/libjemalloc.so.2",
        ],
    ),
    (
        "mimalloc",
        &[
            "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2",
            "/usr/lib/x86_64-linux-gnu/libmimalloc.so",
            "/usr/lib64/libmimalloc.so",
            "/usr/local/lib/libmimalloc.so",
        ],
    ),
];

/// The peers whose shared library is installed, by name; each missing one is named on stderr for
/// `workload`, with the Debian package that has it.
pub(crate) fn installed_peers(workload: &str) -> Vec<(&'static str, PathBuf)> {
    let mut found = Vec::new();
    for &(name, paths) in PEER_LIBS {
        match paths.iter().map(PathBuf::from).find(|p| p.exists()) {
            Some(p) => found.push((name, p)),
            None => eprintln!(
                "    {workload}: {name} is missing: no shared library of it in {} (on Debian: \
                 apt-get install {}); its rows are left out",
                paths.join(", "),
                if name == "mimalloc" {
                    "libmimalloc2.0"
                } else {
                    "libjemalloc2"
                }
            ),
        }
    }
    found
}

/// Builds `libdomalloc.so` (release) and returns its path.
pub(crate) fn build_libdomalloc() -> Result<PathBuf> {
    let mut build = cargo();
    build.args(["build", "--release", "-p", "alloc-capi"]);
    crate::build("building libdomalloc (release)", build, "domalloc", ".so")
}

/// The median of the samples (sorted in place) and their spread, (max - min) / median.
pub(crate) fn median_and_spread(ns: &mut [f64]) -> (f64, f64) {
    ns.sort_by(f64::total_cmp);
    let median = ns[ns.len() / 2];
    (median, (ns[ns.len() - 1] - ns[0]) / median)
}

/// One run: wall nanoseconds and peak RSS in KiB.
/// How python3 gets its memory in one row.
enum Subject {
    /// `PYTHONMALLOC=malloc`, with this library preloaded (or glibc).
    Malloc(Option<PathBuf>),
    /// CPython's own pymalloc (the default `PYTHONMALLOC`), nothing preloaded.
    Pymalloc,
}

fn run_once(subject: &Subject, script: &PathBuf, scale: &str) -> Result<(f64, u64)> {
    let mut c = Command::new("python3");
    c.arg(script)
        .arg(scale)
        .env_remove("PYTHONMALLOC")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Subject::Malloc(_) = subject {
        c.env("PYTHONMALLOC", "malloc");
    }
    if let Subject::Malloc(Some(lib)) = subject {
        c.env("LD_PRELOAD", lib).env("DOMALLOC", "pool");
    }
    let start = Instant::now();
    let child = c.spawn().map_err(|e| format!("python3: {e}"))?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting on our own child, with valid out-pointers.
    let r = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let ns = start.elapsed().as_nanos() as f64;
    if r < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("python3 churn.py failed (status {status:#x})"));
    }
    Ok((ns, usage.ru_maxrss.max(0) as u64))
}

/// The records (one JSON line each, in the runner's format) for the `python` workload.
pub(crate) fn run(samples: usize, allocators: &[String]) -> Result<Vec<String>> {
    let have_python = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_python {
        eprintln!("\n    python: python3 is not installed; the workload is skipped");
        return Ok(Vec::new());
    }
    let lib = build_libdomalloc()?;
    let script = root().join("crates/alloc-capi/tests/py/churn.py");
    let mut subjects: Vec<(&str, Subject)> = vec![
        ("system", Subject::Malloc(None)),
        ("domain", Subject::Malloc(Some(lib))),
        ("pymalloc", Subject::Pymalloc),
    ];
    for (name, p) in installed_peers("python") {
        subjects.push((name, Subject::Malloc(Some(p))));
    }
    let wanted =
        |name: &str| allocators.iter().any(|a| a == name) || name == "domain" || name == "pymalloc";
    let subjects: Vec<(&str, Subject)> = subjects.into_iter().filter(|(n, _)| wanted(n)).collect();
    let total = subjects.len();
    eprintln!(
        "\n==> python: {total} runs (churn.py under {}), {samples} samples each",
        subjects
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut lines = Vec::new();
    for (done, (name, subject)) in subjects.into_iter().enumerate() {
        eprint!("\r    [{}/{total}] python on {name}...{:20}", done + 1, "");
        let _ = std::io::Write::flush(&mut std::io::stderr());
        run_once(&subject, &script, "1")?; // warm-up (page cache, .pyc files)
        let mut ns = Vec::new();
        let mut peak = 0;
        for _ in 0..samples {
            let (t, rss) = run_once(&subject, &script, "1")?;
            ns.push(t);
            peak = peak.max(rss);
        }
        let (median, spread) = median_and_spread(&mut ns);
        lines.push(crate::bench::record_line(
            "python", name, 1, median, spread, &ns, peak, None,
        ));
    }
    eprintln!();
    Ok(lines)
}
