//! `cargo xtask bench`: builds the runner once, runs every (workload, allocator) pair in its own
//! process, prints a table with ratios against mimalloc and against the best allocator of the run,
//! and writes `target/bench/report.json`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{Result, cargo, root};

/// The quick suite's workloads (the sweep is long; `--full` or `--only sweep` runs it).
const QUICK_WORKLOADS: &[&str] = &[
    "pairs",
    "churn",
    "pyobjects",
    "btree",
    "json",
    "prodcons",
    "larson",
    "python",
    "capi",
];
/// A workload run by xtask itself rather than the runner: `python3` under each allocator that can
/// replace the C `malloc` (see `python_bench`).
const PYTHON: &str = "python";
/// The C programs under each preloaded allocator (see `capi_bench`), also run by xtask.
const CAPI: &str = "capi";

/// Whether xtask runs workload `w` itself (not the runner).
fn by_xtask(w: &str) -> bool {
    w == PYTHON || w == CAPI
}
/// The quick suite's allocators: the peers, the pool, and the pool through a domain.
const QUICK_ALLOCATORS: &[&str] = &["system", "mimalloc", "jemalloc", "pool", "domain"];

/// What the runner offers, as its `--list` says (xtask links no domalloc crate).
struct Catalog {
    workloads: Vec<String>,
    global_workloads: Vec<String>,
    allocators: Vec<String>,
    direct_only: Vec<String>,
}

fn catalog(exe: &std::path::Path) -> Result<Catalog> {
    let out = Command::new(exe)
        .arg("--list")
        .output()
        .map_err(|e| format!("could not start {}: {e}", exe.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let list = |key: &str| -> Vec<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|rest| rest.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };
    let c = Catalog {
        workloads: list("workloads:"),
        global_workloads: list("global-workloads:"),
        allocators: list("allocators:"),
        direct_only: list("direct-only:"),
    };
    if c.workloads.is_empty() || c.allocators.is_empty() {
        return Err(format!(
            "{} --list gave no workloads or allocators",
            exe.display()
        ));
    }
    Ok(c)
}

/// The workloads the runner and xtask offer (checked again against the runner's `--list` once it
/// is built).
const WORKLOADS: &[&str] = &[
    "pairs",
    "churn",
    "sweep",
    "pyobjects",
    "btree",
    "json",
    "prodcons",
    "larson",
    "python",
    "capi",
];
/// The allocators the runner offers (likewise checked against its `--list`).
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
    "tracing",
    "sampling",
    "core-system",
];

/// `cargo xtask bench`'s options.
#[derive(clap::Args)]
pub(crate) struct Request {
    /// The quick suite (the default): 9 workloads on system, mimalloc, jemalloc, pool and domain,
    /// 5 samples, 1 and 2 threads.
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// The long suite: every workload and allocator, 11 samples, full scale, up to every core.
    #[arg(long)]
    full: bool,
    /// Only these workloads (comma-separated).
    #[arg(long, visible_alias = "only", value_name = "LIST", value_delimiter = ',',
          value_parser = clap::builder::PossibleValuesParser::new(WORKLOADS))]
    workloads: Option<Vec<String>>,
    /// Only these allocators (comma-separated).
    #[arg(long, value_name = "LIST", value_delimiter = ',',
          value_parser = clap::builder::PossibleValuesParser::new(ALLOCATORS))]
    allocators: Option<Vec<String>>,
    /// Thread counts of the threaded workloads (comma-separated, e.g. 1,2,8).
    #[arg(long, value_name = "LIST")]
    threads: Option<String>,
    /// Samples per (workload, allocator) pair; the median is reported.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    samples: Option<u32>,
}

struct Options {
    workloads: Vec<String>,
    allocators: Vec<String>,
    threads: String,
    samples: usize,
    scale: f64,
    sizes: &'static str,
    suite: &'static str,
}

fn parse(r: Request, catalog: &Catalog) -> Result<Options> {
    let _ = r.quick;
    let mut o = Options {
        workloads: QUICK_WORKLOADS.iter().map(|s| s.to_string()).collect(),
        allocators: QUICK_ALLOCATORS.iter().map(|s| s.to_string()).collect(),
        threads: "1,2".to_string(),
        samples: 5,
        scale: 0.25,
        sizes: "16,64,256,512",
        suite: "quick",
    };
    if r.full {
        o.workloads = catalog.workloads.clone();
        o.workloads.push(PYTHON.to_string());
        o.workloads.push(CAPI.to_string());
        o.allocators = catalog.allocators.clone();
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        o.threads = if n > 2 {
            format!("1,2,{n}")
        } else {
            "1,2".to_string()
        };
        o.samples = 11;
        o.scale = 1.0;
        o.sizes = "16,32,64,128,256,512,4096,65536,1048576";
        o.suite = "full";
    }
    if let Some(w) = r.workloads {
        o.workloads = w;
    }
    if let Some(a) = r.allocators {
        o.allocators = a;
    }
    if let Some(t) = r.threads {
        o.threads = t;
    }
    if let Some(n) = r.samples {
        o.samples = n as usize;
    }
    for w in &o.workloads {
        if !catalog.workloads.contains(w) && !by_xtask(w) {
            return Err(format!(
                "unknown workload {w:?}; known: {}",
                catalog.workloads.join(", ")
            ));
        }
    }
    for a in &o.allocators {
        if !catalog.allocators.contains(a) {
            return Err(format!(
                "unknown allocator {a:?}; known: {}",
                catalog.allocators.join(", ")
            ));
        }
    }
    Ok(o)
}

/// One parsed record of the runner's output (the fields the table needs; the whole record is kept
/// for the JSON report).
struct Row {
    workload: String,
    allocator: String,
    threads: usize,
    size: Option<usize>,
    median_ns: f64,
    spread: f64,
    peak_rss_kib: Option<u64>,
    rss_after_free_kib: Option<u64>,
    raw: serde_json::Value,
}

fn parse_row(line: &str) -> Option<Row> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(Row {
        workload: v["workload"].as_str()?.to_string(),
        allocator: v["allocator"].as_str()?.to_string(),
        threads: usize::try_from(v["threads"].as_u64()?).ok()?,
        size: v["size"].as_u64().and_then(|s| usize::try_from(s).ok()),
        median_ns: v["median_ns"].as_f64()?,
        spread: v["spread"].as_f64()?,
        peak_rss_kib: v["peak_rss_kib"].as_u64(),
        rss_after_free_kib: v["rss_after_free_kib"].as_u64(),
        raw: v,
    })
}

/// One record of a workload xtask runs itself (`capi`, `python`), in the runner's format.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_line(
    workload: &str,
    allocator: &str,
    threads: usize,
    median_ns: f64,
    spread: f64,
    samples_ns: &[f64],
    peak_rss_kib: u64,
    instructions_per_op: Option<f64>,
) -> String {
    let mut v = serde_json::json!({
        "workload": workload,
        "allocator": allocator,
        "threads": threads,
        "size": null,
        "median_ns": median_ns,
        "spread": spread,
        "samples_ns": samples_ns,
        "peak_rss_kib": peak_rss_kib,
        "rss_after_free_kib": null,
    });
    if let Some(i) = instructions_per_op {
        v["instructions_per_op"] = serde_json::json!(i);
    }
    v.to_string()
}

/// The first line a command prints, if it runs.
fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
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

pub(crate) fn run(request: Request) -> Result {
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "domalloc-benches",
        "--bin",
        "domalloc-bench",
    ]);
    crate::run("building the benchmark runner (release)", build)?;
    let exe = root().join("target/release/domalloc-bench");
    let catalog = catalog(&exe)?;
    let o = parse(request, &catalog)?;

    let total = o.workloads.iter().filter(|w| !by_xtask(w)).count() * o.allocators.len();
    let mut rows = Vec::new();
    let start = Instant::now();
    let by_xtask_now: Vec<&str> = o
        .workloads
        .iter()
        .filter(|w| by_xtask(w))
        .map(String::as_str)
        .collect();
    eprintln!(
        "\n==> {} suite: {} runs ({} workloads of the runner x {} allocators), {} samples each, \
         each in its own process{}",
        o.suite,
        total,
        o.workloads.len() - by_xtask_now.len(),
        o.allocators.len(),
        o.samples,
        if by_xtask_now.is_empty() {
            String::new()
        } else {
            format!("; then {}", by_xtask_now.join(" and "))
        }
    );
    let mut done = 0;
    for w in o.workloads.iter().filter(|w| !by_xtask(w)) {
        for a in &o.allocators {
            done += 1;
            if catalog.global_workloads.contains(w) && catalog.direct_only.contains(a) {
                eprintln!(
                    "\r    [{done}/{total}] {w} on {a}: skipped ({a} cannot be the process's allocator)"
                );
                continue;
            }
            eprint!("\r    [{done}/{total}] {w} on {a}...{:20}", "");
            let _ = std::io::stderr().flush();
            let out = Command::new(&exe)
                .args(["--workload", w, "--allocator", a])
                .args(["--samples", &o.samples.to_string()])
                .args(["--scale", &o.scale.to_string()])
                .args(["--sizes", o.sizes])
                .args(["--threads", &o.threads])
                .env("DOMALLOC_BENCH_ALLOCATOR", a)
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
    #[cfg(unix)]
    if o.workloads.iter().any(|w| w == PYTHON) {
        let lines = crate::python_bench::run(o.samples, &o.allocators)?;
        rows.extend(lines.iter().filter_map(|l| parse_row(l)));
    }
    #[cfg(unix)]
    if o.workloads.iter().any(|w| w == CAPI) {
        let lines = crate::capi_bench::run(o.samples, &o.allocators)?;
        rows.extend(lines.iter().filter_map(|l| parse_row(l)));
    }
    if rows.is_empty() {
        return Err("no benchmark produced a result".into());
    }
    // The C programs' rows (`capi-pairs`, ...) sort where `capi` stands.
    let rank = |list: &[String], name: &str| {
        let name = if name.starts_with("capi-") {
            CAPI
        } else {
            name
        };
        list.iter().position(|x| x == name)
    };
    rows.sort_by_key(|r| {
        (
            rank(&o.workloads, &r.workload),
            r.workload.clone(),
            r.threads,
            r.size,
            rank(&o.allocators, &r.allocator),
        )
    });
    print_table(&rows, &o);
    print_instructions(&rows);
    write_report(&rows, &o)
}

fn print_table(rows: &[Row], o: &Options) {
    let (mimalloc, best) = metric_baselines(rows);
    println!();
    println!(
        "domalloc bench ({} suite) on {}; ns per operation, median of {} samples",
        o.suite,
        machine(),
        o.samples
    );
    println!(
        "{:<10} {:>3} {:>7} {:<12} {:>10} {:<6} {:>8} {:>10} {:>8} {:>12} {:>12}",
        "workload",
        "thr",
        "size",
        "allocator",
        "median",
        "unit",
        "spread",
        "vs mimal.",
        "vs best",
        "peak RSS KiB",
        "after free"
    );
    println!("{}", "-".repeat(109));
    let mut noisy = 0;
    let mut last = None;
    for r in rows {
        let key = (r.workload.clone(), r.threads, r.size, "ns_per_op");
        if last.as_ref().is_some_and(|l| *l != key) {
            println!();
        }
        let vs_mi = mimalloc
            .get(&key)
            .map_or("-".to_string(), |m| format!("{:.2}x", r.median_ns / m));
        let vs_best = format!("{:.2}x", r.median_ns / best[&key]);
        // A whole interpreter run is timed in milliseconds; everything else per operation.
        let (median, unit) = if r.workload == PYTHON {
            (r.median_ns / 1e6, "ms/run")
        } else {
            (r.median_ns, "ns/op")
        };
        let flag = if r.spread > NOISY_SPREAD {
            noisy += 1;
            '!'
        } else {
            ' '
        };
        println!(
            "{:<10} {:>3} {:>7} {:<12} {:>10.2} {:<6} {:>6.1}%{flag} {:>10} {:>8} {:>12} {:>12}",
            r.workload,
            r.threads,
            r.size.map_or("-".to_string(), |s| s.to_string()),
            r.allocator,
            median,
            unit,
            r.spread * 100.0,
            vs_mi,
            vs_best,
            r.peak_rss_kib.map_or("-".to_string(), |v| v.to_string()),
            r.rss_after_free_kib
                .map_or("-".to_string(), |v| v.to_string())
        );
        last = Some(key);
    }
    if noisy > 0 {
        println!(
            "\n! {noisy} rows have samples spread over {:.0}% of their median (max - min): the machine \
             was busy while they ran. Read them only against the peers of the same run, or run \
             again with more --samples.",
            NOISY_SPREAD * 100.0
        );
    }
    println!(
        "size: the block size in bytes for pairs and sweep's live blocks; '-' where a workload \
         has none."
    );
}

/// A row whose samples spread over this share of its median is flagged as noisy.
const NOISY_SPREAD: f64 = 0.20;

/// The instruction counts of the rows that have them (the C programs, under callgrind).
fn print_instructions(rows: &[Row]) {
    let counted: Vec<(&Row, f64)> = rows
        .iter()
        .filter_map(|r| r.raw["instructions_per_op"].as_f64().map(|v| (r, v)))
        .collect();
    if counted.is_empty() {
        return;
    }
    println!(
        "
instructions per operation (callgrind; exact, where times are not)"
    );
    for (r, v) in counted {
        println!(
            "{:<12} {:>3} {:<12} {:>10.1}",
            r.workload, r.threads, r.allocator, v
        );
    }
}

/// The metrics of one row: (name, value, lower is better).
fn metrics(r: &Row) -> Vec<(&'static str, f64, bool)> {
    let mut m = vec![
        ("ns_per_op", r.median_ns, true),
        ("ops_per_sec", 1e9 / r.median_ns, false),
    ];
    if let Some(k) = r.peak_rss_kib {
        m.push(("peak_rss_bytes", k as f64 * 1024.0, true));
    }
    if let Some(k) = r.rss_after_free_kib {
        m.push(("rss_after_free_bytes", k as f64 * 1024.0, true));
    }
    m
}

type MetricKey = (String, usize, Option<usize>, &'static str);

/// For each (workload, threads, size, metric): mimalloc's value and the best value of the run.
fn metric_baselines(rows: &[Row]) -> (BTreeMap<MetricKey, f64>, BTreeMap<MetricKey, f64>) {
    let mut mimalloc = BTreeMap::new();
    let mut best: BTreeMap<MetricKey, f64> = BTreeMap::new();
    for r in rows {
        for (name, v, lower) in metrics(r) {
            let key = (r.workload.clone(), r.threads, r.size, name);
            if r.allocator == "mimalloc" {
                mimalloc.insert(key.clone(), v);
            }
            let b = best.entry(key).or_insert(v);
            *b = if lower { b.min(v) } else { b.max(v) };
        }
    }
    (mimalloc, best)
}

fn write_report(rows: &[Row], o: &Options) -> Result {
    let (mimalloc, best) = metric_baselines(rows);
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
    let mut records = Vec::new();
    for r in rows {
        for (name, v, lower) in metrics(r) {
            let key = (r.workload.clone(), r.threads, r.size, name);
            // Ratios are "how many times worse than": above 1 is worse, for every metric.
            let ratio = |base: f64| if lower { v / base } else { base / v };
            records.push(serde_json::json!({
                "workload": r.workload,
                "allocator": r.allocator,
                "threads": r.threads,
                "size": r.size,
                "metric": name,
                "value": finite(Some(v)),
                "ratio_vs_mimalloc": finite(mimalloc.get(&key).map(|&m| ratio(m))),
                "ratio_vs_best": finite(best.get(&key).map(|&b| ratio(b))),
            }));
        }
    }
    let report = serde_json::json!({
        "suite": o.suite,
        "command": format!("cargo xtask bench {}", std::env::args().skip(2).collect::<Vec<_>>().join(" ")),
        "commit": output_of("git", &["rev-parse", "HEAD"]),
        "date": output_of("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "rustc": output_of("rustc", &["--version"]),
        "machine": machine(),
        "records": records,
        "runs": rows.iter().map(|r| r.raw.clone()).collect::<Vec<_>>(),
    });
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n";
    let path = dir.join("report.json");
    std::fs::write(&path, json).map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("\nreport: {}", path.display());
    for metric in ["ns_per_op", "peak_rss_bytes", "rss_after_free_bytes"] {
        let svg = chart(rows, o, metric, &mimalloc);
        let path = dir.join(format!("{metric}.svg"));
        std::fs::write(&path, svg).map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("chart:  {}", path.display());
    }
    Ok(())
}

/// A bar chart of one metric as a ratio against mimalloc (1.0 = mimalloc; lower is better), one
/// group of bars per (workload, threads, size), one bar per allocator.
fn chart(
    rows: &[Row],
    o: &Options,
    metric: &'static str,
    mimalloc: &BTreeMap<MetricKey, f64>,
) -> String {
    let colors = [
        "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
        "#9c755f",
    ];
    let mut groups: Vec<(String, Vec<(usize, f64)>)> = Vec::new();
    for r in rows {
        let Some((_, v, _)) = metrics(r).into_iter().find(|m| m.0 == metric) else {
            continue;
        };
        let key = (r.workload.clone(), r.threads, r.size, metric);
        let Some(&m) = mimalloc.get(&key) else {
            continue;
        };
        let label = match (r.size, r.threads) {
            (Some(s), 1) => format!("{} {s}", r.workload),
            (Some(s), t) => format!("{} {s} x{t}", r.workload),
            (None, 1) => r.workload.clone(),
            (None, t) => format!("{} x{t}", r.workload),
        };
        let a = o
            .allocators
            .iter()
            .position(|x| *x == r.allocator)
            .unwrap_or(0);
        match groups.last_mut() {
            Some((l, bars)) if *l == label => bars.push((a, v / m)),
            _ => groups.push((label, vec![(a, v / m)])),
        }
    }
    let (bar, gap, top, height, left) = (9.0, 14.0, 40.0, 260.0, 50.0);
    let max_ratio = 4.0f64;
    let width = left
        + groups
            .iter()
            .map(|(_, b)| b.len() as f64 * bar + gap)
            .sum::<f64>()
        + 160.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{}\" \
         font-family=\"sans-serif\" font-size=\"10\">\n\
         <text x=\"{left}\" y=\"16\" font-size=\"13\">{metric}: ratio against mimalloc \
         (lower is better; bars cut at {max_ratio}x)</text>\n",
        top + height + 90.0
    );
    let y = |r: f64| top + height - (r.min(max_ratio) / max_ratio) * height;
    for tick in [0.5, 1.0, 2.0, 3.0, 4.0] {
        svg.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{:.0}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{color}\"/>\
             <text x=\"4\" y=\"{ty:.1}\">{tick}x</text>\n",
            width - 150.0,
            y = y(tick),
            color = if tick == 1.0 { "#000" } else { "#ddd" },
            ty = y(tick) + 3.0
        ));
    }
    let mut x = left;
    for (label, bars) in &groups {
        let x0 = x;
        for &(a, ratio) in bars {
            svg.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar}\" height=\"{:.1}\" fill=\"{}\">\
                 <title>{} {label}: {ratio:.2}x</title></rect>\n",
                y(ratio),
                top + height - y(ratio),
                colors[a % colors.len()],
                o.allocators[a]
            ));
            x += bar;
        }
        svg.push_str(&format!(
            "<text transform=\"translate({:.1},{:.1}) rotate(60)\">{label}</text>\n",
            x0 + 2.0,
            top + height + 6.0
        ));
        x += gap;
    }
    for (i, a) in o.allocators.iter().enumerate() {
        let ly = top + 14.0 * i as f64;
        svg.push_str(&format!(
            "<rect x=\"{:.0}\" y=\"{ly:.0}\" width=\"10\" height=\"10\" fill=\"{}\"/>\
             <text x=\"{:.0}\" y=\"{:.0}\">{a}</text>\n",
            width - 140.0,
            colors[i % colors.len()],
            width - 125.0,
            ly + 9.0
        ));
    }
    svg.push_str("</svg>\n");
    svg
}
