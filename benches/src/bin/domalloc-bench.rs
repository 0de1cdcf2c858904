//! The benchmark runner: runs one workload on one allocator in this process and prints one JSON
//! record per line on stdout. `cargo xtask bench` starts it once per (workload, allocator) so that
//! every measurement has a clean process (and a clean RSS).
//!
//! ```text
//! domalloc-bench --allocator mimalloc --workload pairs --sizes 16,64,512 --samples 7 --scale 1.0
//! domalloc-bench --allocator pool --workload sweep      # churn at 1k..4M live blocks (live_blocks)
//! DOMALLOC_BENCH_ALLOCATOR=jemalloc domalloc-bench --allocator jemalloc --workload larson --threads 1,2,16
//! domalloc-bench --list
//! ```

use std::process::ExitCode;

use domalloc_benches::dispatch::{self, Dispatch};
use domalloc_benches::report::{Record, peak_rss_kib, rss_kib};
use domalloc_benches::{peers, with_allocator, workloads};

/// Every allocation of this process goes to the allocator named by `DOMALLOC_BENCH_ALLOCATOR`
/// (`cargo xtask bench` sets it to the allocator under test), so that the workloads written with
/// ordinary `std` collections measure it too.
#[global_allocator]
static GLOBAL: Dispatch = Dispatch::new();

/// Workloads that call the allocator under test directly (through `GlobalAlloc`).
const DIRECT: &[&str] = &["pairs", "churn", "sweep"];
/// Workloads written with `std` types, on the process's global allocator.
const GLOBAL_WORKLOADS: &[&str] = &["pyobjects", "btree", "json", "prodcons", "larson"];
const WORKLOADS: &[&str] = &[
    "pairs",
    "churn",
    "sweep",
    "pyobjects",
    "btree",
    "json",
    "prodcons",
    "larson",
];

/// The benchmark runner: one workload on one allocator, one JSON record a line on standard output
/// (`cargo xtask bench` runs it once per pair, each in its own process).
#[derive(clap::Parser)]
#[command(
    name = "domalloc-bench",
    after_help = "The workloads written with std types (pyobjects, btree, json, prodcons, larson) \
                  run on the process's global allocator: set DOMALLOC_BENCH_ALLOCATOR to the \
                  --allocator's name (cargo xtask bench does). Each record is one JSON line: \
                  workload, allocator, threads, block_bytes (pairs), live_blocks (sweep), \
                  median_ns, spread, samples_ns, peak_rss_kib, rss_after_free_kib."
)]
struct Args {
    /// Prints the workloads and allocators, one list a line (`cargo xtask bench` reads it), and
    /// exits.
    #[arg(long, exclusive = true)]
    list: bool,
    /// The allocator under test.
    #[arg(long, required_unless_present = "list",
          value_parser = clap::builder::PossibleValuesParser::new(peers::ALL))]
    allocator: Option<String>,
    /// The workload.
    #[arg(long, required_unless_present = "list",
          value_parser = clap::builder::PossibleValuesParser::new(WORKLOADS))]
    workload: Option<String>,
    /// Block sizes of `pairs` (bytes, comma-separated); each is a record with its `block_bytes`.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "16,64,256,512"
    )]
    sizes: Vec<usize>,
    /// Thread counts of the threaded workloads (comma-separated).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "1,2"
    )]
    threads: Vec<usize>,
    /// Samples (the first run, a warm-up, is not one of them).
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    samples: u32,
    /// The share of each workload's full size to run.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    scale: f64,
}

/// What one run does, from the checked arguments.
struct Run {
    allocator: String,
    workload: String,
    sizes: Vec<usize>,
    threads: Vec<usize>,
    samples: usize,
    scale: f64,
}

fn parse() -> Result<Option<Run>, String> {
    let args = <Args as clap::Parser>::parse();
    if args.list {
        // Read by `cargo xtask bench`, which links no domalloc crate: one list a line.
        println!("workloads: {}", WORKLOADS.join(" "));
        println!("global-workloads: {}", GLOBAL_WORKLOADS.join(" "));
        println!("allocators: {}", peers::ALL.join(" "));
        println!("direct-only: {}", peers::DIRECT_ONLY.join(" "));
        return Ok(None);
    }
    let run = Run {
        allocator: args.allocator.unwrap_or_default(),
        workload: args.workload.unwrap_or_default(),
        sizes: args.sizes,
        threads: args.threads,
        samples: args.samples as usize,
        scale: args.scale,
    };
    if run.scale <= 0.0 {
        return Err("--scale must be positive".into());
    }
    if GLOBAL_WORKLOADS.contains(&run.workload.as_str()) && GLOBAL.chosen() != run.allocator {
        return Err(format!(
            "workload {} runs on the process's allocator: set {}={} (cargo xtask bench does)",
            run.workload,
            dispatch::ENV,
            run.allocator
        ));
    }
    Ok(Some(run))
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("domalloc-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let scaled = |n: f64| ((n * args.scale) as u64).max(1);
    if GLOBAL_WORKLOADS.contains(&args.workload.as_str()) {
        for r in run_global(&args) {
            println!("{}", r.to_json());
        }
        return ExitCode::SUCCESS;
    }
    debug_assert!(DIRECT.contains(&args.workload.as_str()));
    let records: Vec<Record> = with_allocator!(args.allocator.as_str(), |a| {
        // (block_bytes, live_blocks): what the record's case is, where the workload has one.
        let record = |case: (Option<usize>, Option<usize>), mut sample: Box<dyn FnMut() -> f64>| {
            sample(); // warm-up, not recorded
            let samples_ns = (0..args.samples).map(|_| sample()).collect();
            Record {
                workload: args.workload.clone(),
                allocator: args.allocator.clone(),
                threads: 1,
                block_bytes: case.0,
                live_blocks: case.1,
                samples_ns,
                peak_rss_kib: peak_rss_kib(),
                rss_after_free_kib: rss_kib(),
            }
        };
        match args.workload.as_str() {
            "pairs" => args
                .sizes
                .iter()
                .map(|&size| {
                    // Large sizes cost far more per pair (page faults, mmap): fewer iterations.
                    let iters = scaled(2_000_000.0 / (1 + size / 4096) as f64);
                    record(
                        (Some(size), None),
                        Box::new(move || workloads::pairs(a, size, iters)),
                    )
                })
                .collect(),
            "churn" => {
                let replaces = scaled(1_000_000.0);
                vec![record(
                    (None, None),
                    Box::new(move || workloads::churn(a, 100_000, replaces, 42)),
                )]
            }
            "sweep" => workloads::SWEEP_LIVE
                .iter()
                .map(|&live| {
                    let replaces = scaled(1_000_000.0);
                    record(
                        (None, Some(live)),
                        Box::new(move || workloads::churn(a, live, replaces, 7)),
                    )
                })
                .collect(),
            _ => unreachable!("workload names are checked in parse()"),
        }
    })
    .expect("allocator names are checked in parse()");
    for r in records {
        println!("{}", r.to_json());
    }
    ExitCode::SUCCESS
}

/// Runs a workload written with `std` types: every sample builds and drops its data, so the RSS
/// read after the last one is the RSS after everything was freed.
fn run_global(args: &Run) -> Vec<Record> {
    let scale = args.scale;
    let n = |base: f64| ((base * scale) as usize).max(1);
    let measure = |threads: usize, sample: &mut dyn FnMut() -> f64| {
        sample(); // warm-up
        let samples_ns = (0..args.samples).map(|_| sample()).collect();
        Record {
            workload: args.workload.clone(),
            allocator: args.allocator.clone(),
            threads,
            block_bytes: None,
            live_blocks: None,
            samples_ns,
            peak_rss_kib: peak_rss_kib(),
            rss_after_free_kib: rss_kib(),
        }
    };
    match args.workload.as_str() {
        "pyobjects" => {
            let per_wave = n(200_000.0);
            vec![measure(1, &mut || workloads::pyobjects(10, per_wave, 5))]
        }
        "btree" => {
            let keys = n(200_000.0);
            vec![measure(1, &mut || workloads::btree(keys, 9))]
        }
        "json" => {
            let records = n(100_000.0);
            let text = workloads::json_text(records, 3);
            vec![measure(1, &mut || workloads::json(&text, records))]
        }
        "prodcons" => args
            .threads
            .iter()
            .map(|&t| {
                // `t` producer-consumer pairs: 2t threads.
                let pairs = t.max(1);
                let messages = n(400_000.0) / pairs;
                measure(2 * pairs, &mut || workloads::prodcons(pairs, messages))
            })
            .collect(),
        "larson" => args
            .threads
            .iter()
            .map(|&t| {
                let replaces = n(2_000_000.0) / t.max(1);
                measure(t, &mut || workloads::larson(t, 10_000, replaces))
            })
            .collect(),
        other => unreachable!("{other} is not a global workload"),
    }
}
