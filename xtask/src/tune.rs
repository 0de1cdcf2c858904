//! `cargo xtask tune`: Marangozov's method for pymalloc's parameters. Profile each workload (exact
//! request sizes, block lifetimes), then run it on pools with other parameters, one changed at a
//! time, and print time per operation, peak mapped bytes and the bytes lost to rounding for each,
//! naming the best, or saying that the defaults should stand when no change gains more than the
//! noise.

use std::fmt::Write as _;
use std::process::Command;

use crate::bench::field;
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

struct Options {
    workloads: Vec<String>,
    samples: usize,
    scale: f64,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        workloads: WORKLOADS.iter().map(|s| s.to_string()).collect(),
        samples: 5,
        scale: 0.5,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--workload" | "--workloads" => {
                let v = value()?;
                o.workloads = v.split(',').map(str::to_string).collect();
                if let Some(bad) = o
                    .workloads
                    .iter()
                    .find(|w| !WORKLOADS.contains(&w.as_str()))
                {
                    return Err(format!(
                        "unknown workload {bad:?} for tune; known: {}",
                        WORKLOADS.join(", ")
                    ));
                }
            }
            "--samples" => {
                o.samples = value()?
                    .parse()
                    .map_err(|e| format!("bad --samples: {e}"))?
            }
            "--scale" => o.scale = value()?.parse().map_err(|e| format!("bad --scale: {e}"))?,
            "--full" => o.scale = 1.0,
            other => return Err(format!("tune: unknown argument {other:?}")),
        }
    }
    if o.samples == 0 || o.scale <= 0.0 {
        return Err("--samples and --scale must be positive".into());
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

/// The rounding waste a profile line reports for (spacing, threshold): (wasted, requested).
fn waste(profile: &str, spacing: usize, threshold: usize) -> Option<(f64, f64)> {
    let key = format!("{{\"spacing\":{spacing},\"threshold\":{threshold},");
    let at = profile.find(&key)?;
    let entry = &profile[at..];
    let end = entry.find('}')? + 1;
    let entry = &entry[..end];
    Some((
        field(entry, "wasted_bytes")?.parse().ok()?,
        field(entry, "requested_bytes")?.parse().ok()?,
    ))
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
        "domalloc-tune",
    ]);
    crate::run("building the tuner's runner (release)", build)?;
    let exe = root().join("target/release/domalloc-tune");
    let mut report = String::from("[\n");
    let mut verdicts = Vec::new();
    for workload in &o.workloads {
        eprint!("\n{workload}: profiling");
        let profile = runner(&exe, "profile", workload, &o)?;
        let num = |k: &str| {
            field(&profile, k)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
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
            let line = runner(&exe, &env, workload, &o)?;
            let ns: f64 = field(&line, "median_ns")
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            let mapped: f64 = field(&line, "peak_mapped_bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            let (w, r) = waste(&profile, c.spacing, c.threshold).unwrap_or((f64::NAN, f64::NAN));
            rows.push((c, ns, mapped, w / r.max(1.0)));
            let _ = writeln!(
                report,
                "  {{\"workload\":\"{workload}\",\"config\":\"{}\",\"spacing\":{},\"pool_size\":{},\
                 \"threshold\":{},\"ns_per_op\":{ns:.3},\"peak_mapped_bytes\":{mapped},\
                 \"rounding_waste\":{:.5}}},",
                c.name,
                c.spacing,
                c.pool_size,
                c.threshold,
                w / r.max(1.0)
            );
        }
        // The default again, last: how far the same configuration moves within one run is the
        // noise a change has to beat.
        let again = runner(&exe, "16,16384,512", workload, &o)?;
        let again: f64 = field(&again, "median_ns")
            .and_then(|v| v.parse().ok())
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
    if report.ends_with(",\n") {
        report.truncate(report.len() - 2);
        report.push('\n');
    }
    report.push_str("]\n");
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("tune.json");
    std::fs::write(&path, report).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("\n{}", verdicts.join("\n"));
    println!("report: {}", path.display());
    Ok(())
}
