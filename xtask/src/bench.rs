//! `cargo xtask bench`: builds the runner once, runs every (workload, allocator) pair in its own
//! process, prints a table with ratios against mimalloc and against the best allocator of the run,
//! and writes `target/bench/report.json`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{Result, cargo, root};

const ALLOCATORS: &[&str] = &[
    "system",
    "mimalloc",
    "jemalloc",
    "pool",
    "pool-heap",
    "domain",
    "guarded",
    "counting",
    "fault-off",
    "core-system",
];
const WORKLOADS: &[&str] = &["pairs", "churn", "sweep"];
/// The quick suite leaves the sweep out (it is long); `--full` or `--workloads sweep` runs it.
const QUICK_WORKLOADS: &[&str] = &["pairs", "churn"];

struct Options {
    workloads: Vec<String>,
    allocators: Vec<String>,
    samples: usize,
    scale: f64,
    sizes: &'static str,
    suite: &'static str,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        workloads: QUICK_WORKLOADS.iter().map(|s| s.to_string()).collect(),
        allocators: ALLOCATORS.iter().map(|s| s.to_string()).collect(),
        samples: 5,
        scale: 0.25,
        sizes: "16,64,256,512",
        suite: "quick",
    };
    let list = |v: &str| v.split(',').map(str::to_string).collect::<Vec<_>>();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--quick" => {}
            "--full" => {
                o.workloads = WORKLOADS.iter().map(|s| s.to_string()).collect();
                o.samples = 11;
                o.scale = 1.0;
                o.sizes = "16,32,64,128,256,512,4096,65536,1048576";
                o.suite = "full";
            }
            "--workloads" => o.workloads = list(&value()?),
            "--allocators" => o.allocators = list(&value()?),
            "--samples" => {
                o.samples = value()?
                    .parse()
                    .map_err(|e| format!("bad --samples: {e}"))?
            }
            other => return Err(format!("unknown bench option {other:?}")),
        }
    }
    for w in &o.workloads {
        if !WORKLOADS.contains(&w.as_str()) {
            return Err(format!(
                "unknown workload {w:?}; known: {}",
                WORKLOADS.join(", ")
            ));
        }
    }
    for a in &o.allocators {
        if !ALLOCATORS.contains(&a.as_str()) {
            return Err(format!(
                "unknown allocator {a:?}; known: {}",
                ALLOCATORS.join(", ")
            ));
        }
    }
    Ok(o)
}

/// One parsed record of the runner's output (only the fields the table needs; the raw line is kept
/// for the JSON report).
struct Row {
    workload: String,
    allocator: String,
    size: Option<usize>,
    median_ns: f64,
    spread: f64,
    peak_rss_kib: Option<u64>,
    raw: String,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"'))
}

fn parse_row(line: &str) -> Option<Row> {
    Some(Row {
        workload: field(line, "workload")?.to_string(),
        allocator: field(line, "allocator")?.to_string(),
        size: field(line, "size")?.parse().ok(),
        median_ns: field(line, "median_ns")?.parse().ok()?,
        spread: field(line, "spread")?.parse().ok()?,
        peak_rss_kib: field(line, "peak_rss_kib")?.parse().ok(),
        raw: line.to_string(),
    })
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores, {}", std::env::consts::OS)
}

pub(crate) fn run(args: &[String]) -> Result {
    let o = parse(args)?;
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "domalloc-benches",
        "--bin",
        "domalloc-bench",
    ]);
    crate::run("building the benchmark runner (release)", build)?;
    let exe = root().join("target/release/domalloc-bench");

    let total = o.workloads.len() * o.allocators.len();
    let mut rows = Vec::new();
    let start = Instant::now();
    eprintln!(
        "\n==> {} suite: {} workloads x {} allocators, {} samples each, each in its own process",
        o.suite,
        o.workloads.len(),
        o.allocators.len(),
        o.samples
    );
    let mut done = 0;
    for w in &o.workloads {
        for a in &o.allocators {
            done += 1;
            eprint!("\r    [{done}/{total}] {w} on {a}...{:20}", "");
            let _ = std::io::stderr().flush();
            let out = Command::new(&exe)
                .args(["--workload", w, "--allocator", a])
                .args(["--samples", &o.samples.to_string()])
                .args(["--scale", &o.scale.to_string()])
                .args(["--sizes", o.sizes])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("could not start {}: {e}", exe.display()))?;
            if !out.status.success() {
                eprintln!(
                    "\n    {w} on {a} failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                continue;
            }
            rows.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(parse_row),
            );
        }
    }
    eprintln!(
        "\r    {total} runs in {:.1}s{:30}",
        start.elapsed().as_secs_f64(),
        ""
    );
    if rows.is_empty() {
        return Err("no benchmark produced a result".into());
    }
    let rank = |list: &[String], name: &str| list.iter().position(|x| x == name);
    rows.sort_by_key(|r| {
        (
            rank(&o.workloads, &r.workload),
            r.size,
            rank(&o.allocators, &r.allocator),
        )
    });
    print_table(&rows, &o);
    write_report(&rows, &o)
}

type Key = (String, Option<usize>);

fn baselines(rows: &[Row]) -> (BTreeMap<Key, f64>, BTreeMap<Key, f64>) {
    let mut mimalloc = BTreeMap::new();
    let mut best = BTreeMap::new();
    for r in rows {
        let key = (r.workload.clone(), r.size);
        if r.allocator == "mimalloc" {
            mimalloc.insert(key.clone(), r.median_ns);
        }
        let b = best.entry(key).or_insert(f64::INFINITY);
        *b = f64::min(*b, r.median_ns);
    }
    (mimalloc, best)
}

fn print_table(rows: &[Row], o: &Options) {
    let (mimalloc, best) = baselines(rows);
    println!();
    println!(
        "domalloc bench ({} suite) on {}; ns per operation, median of {} samples",
        o.suite,
        machine(),
        o.samples
    );
    println!(
        "{:<10} {:>6} {:<12} {:>10} {:>8} {:>10} {:>8} {:>12}",
        "workload", "size", "allocator", "ns/op", "spread", "vs mimal.", "vs best", "peak RSS KiB"
    );
    println!("{}", "-".repeat(84));
    let mut last = None;
    for r in rows {
        let key = (r.workload.clone(), r.size);
        if last.as_ref().is_some_and(|l| *l != key) {
            println!();
        }
        let vs_mi = mimalloc
            .get(&key)
            .map_or("-".to_string(), |m| format!("{:.2}x", r.median_ns / m));
        let vs_best = format!("{:.2}x", r.median_ns / best[&key]);
        println!(
            "{:<10} {:>6} {:<12} {:>10.2} {:>7.1}% {:>10} {:>8} {:>12}",
            r.workload,
            r.size.map_or("-".to_string(), |s| s.to_string()),
            r.allocator,
            r.median_ns,
            r.spread * 100.0,
            vs_mi,
            vs_best,
            r.peak_rss_kib.map_or("-".to_string(), |v| v.to_string())
        );
        last = Some(key);
    }
}

fn write_report(rows: &[Row], o: &Options) -> Result {
    let (mimalloc, best) = baselines(rows);
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut json = String::new();
    json.push_str(&format!(
        "{{\"suite\":\"{}\",\"machine\":\"{}\",\"command\":\"cargo xtask bench {}\",\"records\":[\n",
        o.suite,
        machine().replace('"', "'"),
        std::env::args().skip(2).collect::<Vec<_>>().join(" ")
    ));
    for (i, r) in rows.iter().enumerate() {
        let key = (r.workload.clone(), r.size);
        let vs_mi = mimalloc
            .get(&key)
            .map_or("null".to_string(), |m| format!("{:.4}", r.median_ns / m));
        let line = r.raw.trim_end_matches('}');
        json.push_str(&format!(
            "{line},\"vs_mimalloc\":{vs_mi},\"vs_best\":{:.4}}}{}\n",
            r.median_ns / best[&key],
            if i + 1 < rows.len() { "," } else { "" }
        ));
    }
    json.push_str("]}\n");
    let path = dir.join("report.json");
    std::fs::write(&path, json).map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("\nreport: {}", path.display());
    Ok(())
}
