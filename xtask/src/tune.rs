//! `cargo xtask tune`: Marangozov's method for pymalloc's parameters. Profile each workload (exact
//! request sizes, block lifetimes), then run it on pools with other parameters, one changed at a
//! time, and print time per operation, peak mapped bytes and the bytes lost to rounding for each,
//! naming the best, or saying that the defaults should stand when no change gains more than the
//! noise.

use std::process::Command;

use serde_json::Value;

use crate::{Result, cargo, root};

const WORKLOADS: &[&str] = &["churn", "pyobjects", "btree", "json"];

/// A configuration: name, spacing, pool size, threshold.
struct Config {
    name: &'static str,
    spacing: usize,
    pool_size: usize,
    threshold: usize,
}

const CONFIGS: &[Config] = &[
    Config {
        name: "default (16 B, 16 KiB, 512 B)",
        spacing: 16,
        pool_size: 16 << 10,
        threshold: 512,
    },
    Config {
        name: "spacing 32 B",
        spacing: 32,
        pool_size: 16 << 10,
        threshold: 512,
    },
    Config {
        name: "pool 4 KiB",
        spacing: 16,
        pool_size: 4 << 10,
        threshold: 512,
    },
    Config {
        name: "pool 64 KiB",
        spacing: 16,
        pool_size: 64 << 10,
        threshold: 512,
    },
    Config {
        name: "threshold 256 B",
        spacing: 16,
        pool_size: 16 << 10,
        threshold: 256,
    },
    Config {
        name: "threshold 1024 B",
        spacing: 16,
        pool_size: 16 << 10,
        threshold: 1024,
    },
];

/// A change must beat the default by more than this share to be called better: the same
/// configuration's median moves by several percent between runs on a shared machine.
const NOISE: f64 = 0.05;

/// `cargo xtask tune`'s options.
#[derive(clap::Args)]
pub(crate) struct Request {
    /// Only these workloads (comma-separated).
    #[arg(long, visible_alias = "workload", value_name = "LIST", value_delimiter = ',',
          value_parser = clap::builder::PossibleValuesParser::new(WORKLOADS))]
    workloads: Option<Vec<String>>,
    /// Samples per configuration; the median is compared.
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    samples: u32,
    /// The share of each workload's full size to run (0 < scale <= 1).
    #[arg(long, value_name = "X", default_value_t = 0.5)]
    scale: f64,
    /// Full size (scale 1).
    #[arg(long)]
    full: bool,
}

struct Options {
    workloads: Vec<String>,
    samples: usize,
    scale: f64,
}

fn parse(r: Request) -> Result<Options> {
    let o = Options {
        workloads: r
            .workloads
            .unwrap_or_else(|| WORKLOADS.iter().map(|s| s.to_string()).collect()),
        samples: r.samples as usize,
        scale: if r.full { 1.0 } else { r.scale },
    };
    if !(o.scale > 0.0 && o.scale <= 1.0) {
        return Err("--scale must be above 0 and at most 1".into());
    }
    Ok(o)
}

fn runner(exe: &std::path::Path, env: &str, workload: &str, o: &Options) -> Result<String> {
    let out = Command::new(exe)
        .env("DOMALLOC_TUNE", env)
        .args([
            "--workload",
            workload,
            "--samples",
            &o.samples.to_string(),
            "--scale",
            &o.scale.to_string(),
        ])
        .output()
        .map_err(|e| format!("could not start the tuner's runner: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{workload} with DOMALLOC_TUNE={env} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The rounding waste a profile reports for (spacing, threshold): (wasted, requested).
fn waste(profile: &Value, spacing: usize, threshold: usize) -> Option<(f64, f64)> {
    let entry = profile["waste"].as_array()?.iter().find(|e| {
        e["spacing"].as_u64() == Some(spacing as u64)
            && e["threshold"].as_u64() == Some(threshold as u64)
    })?;
    Some((
        entry["wasted_bytes"].as_f64()?,
        entry["requested_bytes"].as_f64()?,
    ))
}

/// A runner's line as JSON.
fn json(line: &str) -> Result<Value> {
    serde_json::from_str(line).map_err(|e| format!("the runner printed {line:?}: {e}"))
}

pub(crate) fn run(request: Request) -> Result {
    let o = parse(request)?;
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "domalloc-benches",
        "--bin",
        "domalloc-tune",
    ]);
    let exe = crate::build(
        "building the tuner's runner (release)",
        build,
        "domalloc-tune",
        "",
    )?;
    let mut report = Vec::new();
    let mut verdicts = Vec::new();
    for workload in &o.workloads {
        eprint!("\n{workload}: profiling");
        let profile = json(&runner(&exe, "profile", workload, &o)?)?;
        let num = |k: &str| profile[k].as_f64().unwrap_or(0.0);
        let requests = num("allocations") + num("reallocs");
        println!(
            "\n## {workload}: {} allocations and {} reallocs, {:.1}% of the requests at most 512 \
             bytes, median lifetime {} allocations",
            num("allocations"),
            num("reallocs"),
            100.0 * num("small_requests") / requests.max(1.0),
            num("median_lifetime")
        );
        let mut rows = Vec::new();
        for c in CONFIGS {
            eprint!(", {}", c.name);
            let env = format!("{},{},{}", c.spacing, c.pool_size, c.threshold);
            let line = json(&runner(&exe, &env, workload, &o)?)?;
            let ns = line["median_ns"].as_f64().unwrap_or(f64::NAN);
            let mapped = line["peak_mapped_bytes"].as_f64().unwrap_or(f64::NAN);
            let (w, r) = waste(&profile, c.spacing, c.threshold).unwrap_or((f64::NAN, f64::NAN));
            rows.push((c, ns, mapped, w / r.max(1.0)));
            report.push(serde_json::json!({
                "workload": workload,
                "config": c.name,
                "spacing": c.spacing,
                "pool_size": c.pool_size,
                "threshold": c.threshold,
                "ns_per_op": ns,
                "peak_mapped_bytes": mapped,
                "rounding_waste": w / r.max(1.0),
                "samples_ns": line["samples_ns"],
            }));
        }
        // The default again, last: how far the same configuration moves within one run is the
        // noise a change has to beat.
        let again = json(&runner(&exe, "16,16384,512", workload, &o)?)?["median_ns"]
            .as_f64()
            .unwrap_or(f64::NAN);
        eprintln!();
        let base = rows[0].1;
        let noise = NOISE.max((again / base - 1.0).abs());
        println!(
            "{:<32} {:>10} {:>8} {:>14} {:>15}",
            "configuration", "ns/op", "vs def", "peak mapped", "rounding waste"
        );
        for (c, ns, mapped, frag) in &rows {
            println!(
                "{:<32} {:>10.2} {:>7.2}x {:>10.1} MiB {:>14.2}%",
                c.name,
                ns,
                ns / base,
                mapped / f64::from(1 << 20),
                frag * 100.0
            );
        }
        if let Some((w, r)) = waste(&profile, 8, 512) {
            println!(
                "{:<32} {:>10} {:>8} {:>14} {:>14.2}%   (not run: 8-byte classes would break the \
                 16-byte alignment every block is promised)",
                "spacing 8 B",
                "-",
                "-",
                "-",
                100.0 * w / r.max(1.0)
            );
        }
        let (best, best_ns) = rows
            .iter()
            .map(|(c, ns, _, _)| (c.name, *ns))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((CONFIGS[0].name, base));
        println!(
            "{:<32} {:>10.2} {:>7.2}x   (the default run again: the noise to beat is {:.0}%)",
            "default, again",
            again,
            again / base,
            noise * 100.0
        );
        let verdict = if best_ns < base * (1.0 - noise) {
            format!(
                "{workload}: best is {best} ({:.2}x the default's time, beyond the {:.0}% noise)",
                best_ns / base,
                noise * 100.0
            )
        } else {
            format!(
                "{workload}: fastest is {best} ({:.2}x), within the {:.0}% noise: keep the defaults",
                best_ns / base,
                noise * 100.0
            )
        };
        println!("{verdict}");
        verdicts.push(verdict);
    }
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("tune.json");
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    println!("\n{}", verdicts.join("\n"));
    println!("report: {}", path.display());
    Ok(())
}
