//! `cargo xtask bench`: builds the runner once, runs every (workload, allocator) pair in its own
//! process, prints a table with ratios against mimalloc and against the best allocator of the run,
//! and writes `target/bench/report.json`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{Result, cargo, chart, root};

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
    "scoped",
    "guard-pages",
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
    #[arg(long, value_name = "LIST", value_delimiter = ',',
          value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<Vec<u32>>,
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
        o.threads = t.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
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
    /// The size of each block, for a workload of blocks of one size (`pairs`).
    block_bytes: Option<usize>,
    /// The blocks kept live, for a workload run at several such counts (`sweep`).
    live_blocks: Option<usize>,
    median_ns: f64,
    spread: f64,
    samples_ns: Vec<f64>,
    peak_rss_kib: Option<u64>,
    rss_after_free_kib: Option<u64>,
    raw: serde_json::Value,
}

/// What a row measured: (workload, threads, block bytes, live blocks). Rows of one case are
/// compared with each other.
type Case = (String, usize, Option<usize>, Option<usize>);

impl Row {
    fn case(&self) -> Case {
        (
            self.workload.clone(),
            self.threads,
            self.block_bytes,
            self.live_blocks,
        )
    }

    /// The case in a few words: `pairs 64 B`, `sweep 4096 live`, `larson x2`.
    fn label(&self) -> String {
        let mut l = self.workload.clone();
        if let Some(b) = self.block_bytes {
            l += &format!(" {b} B");
        }
        if let Some(n) = self.live_blocks {
            l += &format!(" {n} live");
        }
        if self.threads != 1 {
            l += &format!(" x{}", self.threads);
        }
        l
    }

    /// The table's `blocks` cell: the block size or the live blocks, with its unit.
    fn blocks_cell(&self) -> String {
        match (self.block_bytes, self.live_blocks) {
            (Some(b), _) => format!("{b} B"),
            (None, Some(n)) => format!("{n} live"),
            (None, None) => "-".to_string(),
        }
    }
}

fn parse_row(line: &str) -> Option<Row> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let count = |key: &str| v[key].as_u64().and_then(|s| usize::try_from(s).ok());
    Some(Row {
        workload: v["workload"].as_str()?.to_string(),
        allocator: v["allocator"].as_str()?.to_string(),
        threads: usize::try_from(v["threads"].as_u64()?).ok()?,
        block_bytes: count("block_bytes"),
        live_blocks: count("live_blocks"),
        median_ns: v["median_ns"].as_f64()?,
        spread: v["spread"].as_f64()?,
        samples_ns: v["samples_ns"]
            .as_array()
            .map(|s| s.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default(),
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
        "block_bytes": null,
        "live_blocks": null,
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
    let exe = crate::build(
        "building the benchmark runner (release)",
        build,
        "domalloc-bench",
        "",
    )?;
    let catalog = catalog(&exe)?;
    let o = parse(request, &catalog)?;
    let provenance = Provenance::here();

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
    let mut skipped = 0;
    for w in o.workloads.iter().filter(|w| !by_xtask(w)) {
        for a in &o.allocators {
            done += 1;
            if catalog.global_workloads.contains(w) && catalog.direct_only.contains(a) {
                skipped += 1;
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
        "\r    {total} runs in {:.1}s{}{:30}",
        start.elapsed().as_secs_f64(),
        if skipped > 0 {
            format!(" ({skipped} skipped)")
        } else {
            String::new()
        },
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
            r.block_bytes,
            r.live_blocks,
            rank(&o.allocators, &r.allocator),
        )
    });
    print_table(&rows, &o, &provenance);
    print_instructions(&rows);
    write_report(&rows, &o, &provenance)
}

fn print_table(rows: &[Row], o: &Options, provenance: &Provenance) {
    let (mimalloc, best) = metric_baselines(rows);
    println!();
    println!(
        "domalloc bench ({} suite) on {}; median of {} samples",
        o.suite, provenance.machine, o.samples
    );
    println!(
        "{:<12} {:>3} {:>10} {:<12} {:>10} {:<6} {:>8} {:>10} {:>8} {:>12} {:>12}",
        "workload",
        "thr",
        "blocks",
        "allocator",
        "median",
        "unit",
        "spread",
        "vs mimal.",
        "vs best",
        "peak RSS KiB",
        "after free"
    );
    println!("{}", "-".repeat(114));
    let mut noisy = 0;
    let mut last = None;
    for r in rows {
        let key = (r.case(), "ns_per_op");
        if last.as_ref().is_some_and(|l| *l != key) {
            println!();
        }
        let vs_mi = mimalloc
            .get(&key)
            .map_or("-".to_string(), |m| format!("{:.2}x", r.median_ns / m));
        let vs_best = format!("{:.2}x", r.median_ns / best[&key]);
        let (median, unit) = unit_of(r);
        let flag = if r.spread > NOISY_SPREAD {
            noisy += 1;
            '!'
        } else {
            ' '
        };
        println!(
            "{:<12} {:>3} {:>10} {:<12} {:>10.2} {:<6} {:>6.1}%{flag} {:>10} {:>8} {:>12} {:>12}",
            r.workload,
            r.threads,
            r.blocks_cell(),
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
    println!("{BLOCKS_NOTE}");
}

/// What the table's `blocks` column holds (the README and report.json say the same).
const BLOCKS_NOTE: &str = "blocks: the size of each block for pairs (B; `block_bytes` in \
                           report.json), the blocks kept live for sweep (live; `live_blocks`); \
                           '-' for the workloads with neither.";

/// The row's median in its unit: a whole interpreter run is timed in milliseconds, everything
/// else per operation.
fn unit_of(r: &Row) -> (f64, &'static str) {
    if r.workload == PYTHON {
        (r.median_ns / 1e6, "ms/run")
    } else {
        (r.median_ns, "ns/op")
    }
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
    println!("\ninstructions per operation (callgrind; exact, where times are not)");
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

type MetricKey = (Case, &'static str);

/// For each (case, metric): mimalloc's value and the best value of the run.
fn metric_baselines(rows: &[Row]) -> (BTreeMap<MetricKey, f64>, BTreeMap<MetricKey, f64>) {
    let mut mimalloc = BTreeMap::new();
    let mut best: BTreeMap<MetricKey, f64> = BTreeMap::new();
    for r in rows {
        for (name, v, lower) in metrics(r) {
            let key = (r.case(), name);
            if r.allocator == "mimalloc" {
                mimalloc.insert(key.clone(), v);
            }
            let b = best.entry(key).or_insert(v);
            *b = if lower { b.min(v) } else { b.max(v) };
        }
    }
    (mimalloc, best)
}

/// Where and when a run was made: report.json records it, and every chart's caption shows it.
struct Provenance {
    commit: Option<String>,
    /// Whether the work tree had changes the commit does not hold.
    uncommitted_changes: Option<bool>,
    date: Option<String>,
    rustc: Option<String>,
    machine: String,
}

impl Provenance {
    fn here() -> Provenance {
        Provenance {
            commit: output_of("git", &["rev-parse", "HEAD"]),
            uncommitted_changes: Command::new("git")
                .args(["status", "--porcelain", "--untracked-files=no"])
                .current_dir(root())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| !o.stdout.is_empty()),
            date: output_of("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
            rustc: output_of("rustc", &["--version"]),
            machine: machine(),
        }
    }

    /// The charts' caption: `commit C · date D · machine M`.
    fn caption(&self) -> String {
        let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
        format!(
            "commit {}{} \u{b7} {} \u{b7} {}",
            or_unknown(&self.commit),
            if self.uncommitted_changes == Some(true) {
                " (with uncommitted changes)"
            } else {
                ""
            },
            or_unknown(&self.date),
            self.machine
        )
    }
}

/// The charts: one metric each, as a ratio against mimalloc.
const CHARTS: &[&str] = &["ns_per_op", "peak_rss_bytes", "rss_after_free_bytes"];

fn write_report(rows: &[Row], o: &Options, provenance: &Provenance) -> Result {
    let (mimalloc, best) = metric_baselines(rows);
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
    let mut records = Vec::new();
    for r in rows {
        for (name, v, lower) in metrics(r) {
            let key = (r.case(), name);
            // Ratios are "how many times worse than": above 1 is worse, for every metric.
            let ratio = |base: f64| if lower { v / base } else { base / v };
            records.push(serde_json::json!({
                "workload": r.workload,
                "allocator": r.allocator,
                "threads": r.threads,
                "block_bytes": r.block_bytes,
                "live_blocks": r.live_blocks,
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
        "commit": provenance.commit,
        "uncommitted_changes": provenance.uncommitted_changes,
        "date": provenance.date,
        "rustc": provenance.rustc,
        "machine": provenance.machine,
        "how_to_read": {
            "ratio_vs_mimalloc": "the metric over mimalloc's in the same case; above 1 is worse, for every metric",
            "ratio_vs_best": "the metric over the best allocator's in the same case; 1 is the best",
            "spread": format!(
                "(max - min) / median of the samples; a row over {:.0}% ran on a busy machine: \
                 read it only against the peers of the same run",
                NOISY_SPREAD * 100.0
            ),
            "block_bytes": "the size of each block, for pairs; null for the other workloads",
            "live_blocks": "the blocks kept live, for sweep; null for the other workloads",
            "samples_ns": "every sample of the row (in `runs`): ns per operation, or per run for python",
        },
        "records": records,
        "runs": rows.iter().map(|r| r.raw.clone()).collect::<Vec<_>>(),
    });
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n";
    let path = dir.join("report.json");
    std::fs::write(&path, json).map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("\nreport: {}", path.display());
    for &metric in CHARTS {
        let svg = chart(rows, &o.allocators, metric, &mimalloc, provenance)?;
        let path = dir.join(format!("{metric}.svg"));
        std::fs::write(&path, svg).map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("chart:  {}", path.display());
    }
    Ok(())
}

/// The bars of one metric: each row's median as a ratio against mimalloc's median in its case,
/// with the lowest and highest sample's ratio where the row has samples of the metric (time; the
/// RSS is read once per run).
fn bars(
    rows: &[Row],
    metric: &'static str,
    mimalloc: &BTreeMap<MetricKey, f64>,
) -> Vec<chart::Bar> {
    let mut out = Vec::new();
    for r in rows {
        let Some((_, v, _)) = metrics(r).into_iter().find(|m| m.0 == metric) else {
            continue;
        };
        let Some(&m) = mimalloc.get(&(r.case(), metric)) else {
            continue;
        };
        let range = (metric == "ns_per_op" && !r.samples_ns.is_empty()).then(|| {
            let low = r.samples_ns.iter().copied().fold(f64::INFINITY, f64::min);
            let high = r.samples_ns.iter().copied().fold(0.0, f64::max);
            (low / m, high / m)
        });
        out.push(chart::Bar {
            case: r.label(),
            allocator: r.allocator.clone(),
            median: v / m,
            range,
        });
    }
    out
}

/// A bar chart of one metric as a ratio against mimalloc (1.0 = mimalloc; lower is better), one
/// group of bars per case, one bar per allocator.
fn chart(
    rows: &[Row],
    allocators: &[String],
    metric: &'static str,
    mimalloc: &BTreeMap<MetricKey, f64>,
    provenance: &Provenance,
) -> Result<String> {
    let bars = bars(rows, metric, mimalloc);
    // The legend: the allocators asked for, then any other a workload of xtask's added
    // (`pymalloc`), each only if it has a bar.
    let mut legend: Vec<String> = allocators
        .iter()
        .filter(|a| bars.iter().any(|b| &b.allocator == *a))
        .cloned()
        .collect();
    for b in &bars {
        if !legend.contains(&b.allocator) {
            legend.push(b.allocator.clone());
        }
    }
    let note = if metric == "ns_per_op" {
        "Bar: the median's ratio; whisker: the lowest and highest sample's. ".to_string()
    } else {
        "The RSS is read once per run: no whiskers. ".to_string()
    } + &format!(
        "A bar past {}x is cut at the top and marked with a triangle and its value; a whisker, \
         with an open triangle.",
        chart::MAX_RATIO
    );
    let mut missing: Vec<String> = rows
        .iter()
        .filter(|r| {
            metrics(r).iter().any(|m| m.0 == metric) && !mimalloc.contains_key(&(r.case(), metric))
        })
        .map(Row::label)
        .collect();
    missing.dedup();
    let note = if missing.is_empty() {
        note
    } else {
        format!(
            "{note} No mimalloc row, so left out: {}.",
            missing.join(", ")
        )
    };
    chart::svg(&chart::Chart {
        title: format!("{metric}: ratio against mimalloc (1 = mimalloc; lower is better)"),
        caption: provenance.caption(),
        note,
        allocators: &legend,
        bars,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(workload: &str, allocator: &str, block: Option<usize>, samples: &[f64]) -> Row {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let line = serde_json::json!({
            "workload": workload,
            "allocator": allocator,
            "threads": 1,
            "block_bytes": block,
            "live_blocks": null,
            "median_ns": median,
            "spread": (sorted[sorted.len() - 1] - sorted[0]) / median,
            "samples_ns": samples,
            "peak_rss_kib": 1000,
            "rss_after_free_kib": 900,
        });
        parse_row(&line.to_string()).expect("a runner's line parses")
    }

    fn provenance() -> Provenance {
        Provenance {
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            uncommitted_changes: Some(false),
            date: Some("2026-12-06T10:00:00Z".into()),
            rustc: Some("rustc 1.91.0".into()),
            machine: "Test CPU @ 1.00GHz, 2 cores, linux".into(),
        }
    }

    #[test]
    fn a_chart_has_its_caption_a_whisker_per_bar_and_marks_a_cut_bar() {
        let rows = vec![
            row("pairs", "mimalloc", Some(64), &[10.0, 9.0, 11.0]),
            row("pairs", "pool", Some(64), &[8.0, 7.0, 9.5]),
            // 60 / 10 = 6x: past the axis.
            row("pairs", "system", Some(64), &[60.0, 55.0, 70.0]),
            row("churn", "mimalloc", None, &[20.0, 19.0, 21.0]),
            row("churn", "pool", None, &[30.0, 29.0, 31.0]),
            // 30 / 20 = 1.5x, a sample at 100 / 20 = 5x: the whisker is cut, not the bar.
            row("churn", "system", None, &[30.0, 29.0, 100.0]),
        ];
        let allocators: Vec<String> = ["system", "mimalloc", "pool"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (mimalloc, _) = metric_baselines(&rows);
        let bars = bars(&rows, "ns_per_op", &mimalloc);
        assert_eq!(bars.len(), 6);
        assert_eq!(bars[1].case, "pairs 64 B");
        assert_eq!(bars[1].median, 0.8);
        assert_eq!(bars[1].range, Some((0.7, 0.95)));

        let svg = chart(&rows, &allocators, "ns_per_op", &mimalloc, &provenance()).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(
            svg.contains(
                "commit 0123456789abcdef0123456789abcdef01234567 \u{b7} 2026-12-06T10:00:00Z \
                 \u{b7} Test CPU @ 1.00GHz, 2 cores, linux"
            ),
            "{svg}"
        );
        // An error bar is drawn as a vertical line with a cap at each end and a dot at the
        // median: the dot is the only circle of the chart, in the whiskers' colour.
        let whisker = "stroke=\"#222222\"";
        let dots = svg
            .lines()
            .filter(|l| l.contains("<circle") && l.contains(whisker))
            .count();
        assert_eq!(dots, 6, "{svg}");
        assert_eq!(
            svg.lines()
                .filter(|l| l.contains("<line") && l.contains(whisker))
                .count(),
            18,
            "{svg}"
        );
        // The cut bar: one triangle in the marks' colour, and its value.
        let marks = svg
            .lines()
            .filter(|l| l.contains("<polygon") && l.contains("fill=\"#C00020\""))
            .count();
        assert_eq!(marks, 1, "{svg}");
        assert!(svg.contains(">\n6.00x\n<"), "{svg}");
        // The cut whisker: an open triangle in the marks' colour.
        let open = svg
            .lines()
            .filter(|l| l.contains("<polyline") && l.contains("stroke=\"#C00020\""))
            .count();
        assert_eq!(open, 1, "{svg}");
        // Both cases are labelled, and the legend names every allocator.
        for text in ["pairs 64 B", "churn", "system", "mimalloc", "pool"] {
            assert!(svg.contains(text), "{text} missing from {svg}");
        }

        // The RSS charts: no whiskers (one reading per run), nothing cut.
        let rss = chart(
            &rows,
            &allocators,
            "peak_rss_bytes",
            &mimalloc,
            &provenance(),
        )
        .unwrap();
        assert!(!rss.contains("<circle"), "{rss}");
        assert!(!rss.contains("<polygon"), "{rss}");
        assert!(rss.contains("no whiskers"), "{rss}");
    }

    /// The quoted names of the `&[&str]` constant `name` in a source file of the workspace.
    fn names_in(path: &str, name: &str) -> Vec<String> {
        let text = std::fs::read_to_string(root().join(path)).unwrap();
        let start = format!("const {name}: &[&str] = &[");
        let from = text
            .find(&start)
            .unwrap_or_else(|| panic!("{path} has no {start}"))
            + start.len();
        let list = &text[from..from + text[from..].find("];").unwrap()];
        list.split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    /// `--help` lists the runner's workloads and allocators without building it, from copies:
    /// they must match what the runner offers (an allocator added to the runner is added here).
    #[test]
    fn the_options_offer_what_the_runner_offers() {
        assert_eq!(ALLOCATORS, names_in("benches/src/peers.rs", "ALL"));
        let mut workloads = names_in("benches/src/bin/domalloc-bench.rs", "WORKLOADS");
        workloads.extend([PYTHON.to_string(), CAPI.to_string()]);
        assert_eq!(WORKLOADS, workloads);
        for w in QUICK_WORKLOADS {
            assert!(WORKLOADS.contains(w), "{w}");
        }
        for a in QUICK_ALLOCATORS {
            assert!(ALLOCATORS.contains(a), "{a}");
        }
    }

    #[test]
    fn the_blocks_column_names_its_unit() {
        let pairs = row("pairs", "pool", Some(64), &[1.0]);
        assert_eq!(pairs.blocks_cell(), "64 B");
        assert_eq!(pairs.label(), "pairs 64 B");
        let mut sweep = row("sweep", "pool", None, &[1.0]);
        sweep.live_blocks = Some(4096);
        assert_eq!(sweep.blocks_cell(), "4096 live");
        let churn = row("churn", "pool", None, &[1.0]);
        assert_eq!(churn.blocks_cell(), "-");
        assert_eq!(churn.label(), "churn");
    }
}
