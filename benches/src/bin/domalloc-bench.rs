//! The benchmark runner: runs one workload on one allocator in this process and prints one JSON
//! record per line on stdout. `cargo xtask bench` starts it once per (workload, allocator) so that
//! every measurement has a clean process (and a clean RSS).
//!
//! ```text
//! domalloc-bench --allocator mimalloc --workload pairs --sizes 16,64,512 --samples 7 --scale 1.0
//! domalloc-bench --allocator pool --workload sweep      # churn at 1k..4M live blocks; size = live
//! domalloc-bench --list
//! ```

use std::process::ExitCode;

use domalloc_benches::report::{Record, peak_rss_kib};
use domalloc_benches::{peers, with_allocator, workloads};

const WORKLOADS: &[&str] = &["pairs", "churn", "sweep"];

struct Args {
    allocator: String,
    workload: String,
    sizes: Vec<usize>,
    samples: usize,
    scale: f64,
}

fn parse() -> Result<Option<Args>, String> {
    let mut args = Args {
        allocator: String::new(),
        workload: String::new(),
        sizes: vec![16, 64, 256, 512],
        samples: 5,
        scale: 1.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--list" => {
                println!("workloads: {}", WORKLOADS.join(" "));
                println!("allocators: {}", peers::ALL.join(" "));
                return Ok(None);
            }
            "--allocator" => args.allocator = value()?,
            "--workload" => args.workload = value()?,
            "--sizes" => {
                args.sizes = value()?
                    .split(',')
                    .map(|s| s.parse().map_err(|e| format!("bad size {s:?}: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--samples" => {
                args.samples = value()?
                    .parse()
                    .map_err(|e| format!("bad --samples: {e}"))?
            }
            "--scale" => args.scale = value()?.parse().map_err(|e| format!("bad --scale: {e}"))?,
            other => return Err(format!("unknown argument {other:?} (try --list)")),
        }
    }
    if !peers::ALL.contains(&args.allocator.as_str()) {
        return Err(format!(
            "unknown allocator {:?}; known: {}",
            args.allocator,
            peers::ALL.join(", ")
        ));
    }
    if !WORKLOADS.contains(&args.workload.as_str()) {
        return Err(format!(
            "unknown workload {:?}; known: {}",
            args.workload,
            WORKLOADS.join(", ")
        ));
    }
    if args.samples == 0 || args.scale <= 0.0 {
        return Err("--samples and --scale must be positive".into());
    }
    Ok(Some(args))
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
    let records: Vec<Record> = with_allocator!(args.allocator.as_str(), |a| {
        let record = |size: Option<usize>, mut sample: Box<dyn FnMut() -> f64>| {
            sample(); // warm-up, not recorded
            let samples_ns = (0..args.samples).map(|_| sample()).collect();
            Record {
                workload: args.workload.clone(),
                allocator: args.allocator.clone(),
                threads: 1,
                size,
                samples_ns,
                peak_rss_kib: peak_rss_kib(),
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
                        Some(size),
                        Box::new(move || workloads::pairs(a, size, iters)),
                    )
                })
                .collect(),
            "churn" => {
                let replaces = scaled(1_000_000.0);
                vec![record(
                    None,
                    Box::new(move || workloads::churn(a, 100_000, replaces, 42)),
                )]
            }
            "sweep" => workloads::SWEEP_LIVE
                .iter()
                .map(|&live| {
                    let replaces = scaled(1_000_000.0);
                    record(
                        Some(live),
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
