//! The tuner's runner: one workload on one pool configuration, or under the profiler, in this
//! process; one JSON line on stdout. `cargo xtask tune` starts it once per (workload,
//! configuration), so every measurement has a clean process.
//!
//! ```text
//! DOMALLOC_TUNE=profile            domalloc-tune --workload churn
//! DOMALLOC_TUNE=16,16384,512       domalloc-tune --workload churn --samples 5
//! ```
//!
//! `DOMALLOC_TUNE` is read at the process's first allocation, without allocating: `profile` puts
//! the default pool under the profiler; `SPACING,POOL_SIZE,THRESHOLD` makes the global allocator a
//! pool with those parameters.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};

use alloc_arena::{OsArenas, PoolAllocator, PoolConfig};
use alloc_core::{AsGlobalAlloc, DomainAllocator, System};
use alloc_debug::{Profile, Profiling};
use domalloc_benches::workloads;

const UNSET: u8 = 0;
const BUSY: u8 = 1;
const PROFILE: u8 = 2;
const TUNED: u8 = 3;

/// The global allocator: the profiled default pool, or a pool built from `DOMALLOC_TUNE`.
struct Tuned {
    state: AtomicU8,
    pool: UnsafeCell<MaybeUninit<AsGlobalAlloc<PoolAllocator>>>,
}

// SAFETY: `pool` is written once, by the thread that moves `state` from UNSET to BUSY, before it
// publishes TUNED with Release; it is only read after an Acquire load of TUNED.
unsafe impl Sync for Tuned {}

static PROFILED: AsGlobalAlloc<Profiling<PoolAllocator>> =
    AsGlobalAlloc::new(Profiling::new(PoolAllocator::new()));

#[global_allocator]
static GLOBAL: Tuned = Tuned {
    state: AtomicU8::new(UNSET),
    pool: UnsafeCell::new(MaybeUninit::uninit()),
};

/// The configuration in `DOMALLOC_TUNE`: `None` for `profile`.
fn read_env() -> Option<PoolConfig> {
    // SAFETY: a NUL-terminated name; the value is a NUL-terminated string nothing modifies while
    // the process starts.
    let value = unsafe { libc::getenv(c"DOMALLOC_TUNE".as_ptr()) };
    if value.is_null() {
        return Some(PoolConfig::DEFAULT);
    }
    // SAFETY: as above.
    let bytes = unsafe { std::ffi::CStr::from_ptr(value) }.to_bytes();
    if bytes == b"profile" {
        return None;
    }
    let mut fields = [0usize; 3];
    let mut n = 0;
    for part in bytes.split(|&b| b == b',') {
        let mut v = 0usize;
        for &d in part {
            if !d.is_ascii_digit() || n >= 3 {
                die(b"domalloc-tune: DOMALLOC_TUNE must be `profile` or SPACING,POOL_SIZE,THRESHOLD\n");
            }
            v = v * 10 + usize::from(d - b'0');
        }
        fields[n] = v;
        n += 1;
    }
    if n != 3 {
        die(b"domalloc-tune: DOMALLOC_TUNE must be `profile` or SPACING,POOL_SIZE,THRESHOLD\n");
    }
    Some(PoolConfig {
        spacing: fields[0],
        pool_size: fields[1],
        threshold: fields[2],
        ..PoolConfig::DEFAULT
    })
}

fn die(msg: &[u8]) -> ! {
    // SAFETY: writes a static message to standard error, then ends the process.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(2)
    }
}

impl Tuned {
    #[inline]
    fn state(&self) -> u8 {
        let s = self.state.load(Ordering::Acquire);
        if s >= PROFILE {
            return s;
        }
        self.init()
    }

    #[cold]
    fn init(&self) -> u8 {
        if self
            .state
            .compare_exchange(UNSET, BUSY, Ordering::Acquire, Ordering::Acquire)
            .is_ok()
        {
            let s = match read_env() {
                None => PROFILE,
                Some(config) => {
                    let Ok(pool) = PoolAllocator::with_config(config, OsArenas::new(), System)
                    else {
                        die(b"domalloc-tune: that pool configuration is refused\n");
                    };
                    // SAFETY: only this thread writes, before publishing TUNED.
                    unsafe { (*self.pool.get()).write(AsGlobalAlloc::new(pool)) };
                    TUNED
                }
            };
            self.state.store(s, Ordering::Release);
            return s;
        }
        loop {
            let s = self.state.load(Ordering::Acquire);
            if s >= PROFILE {
                return s;
            }
            std::hint::spin_loop();
        }
    }

    /// The tuned pool (state TUNED).
    fn pool(&self) -> &AsGlobalAlloc<PoolAllocator> {
        // SAFETY: written before TUNED was published (Release), read after its Acquire load.
        unsafe { (*self.pool.get()).assume_init_ref() }
    }
}

macro_rules! forward {
    ($self:ident, |$a:ident| $body:expr) => {
        if $self.state() == PROFILE {
            let $a = &PROFILED;
            $body
        } else {
            let $a = $self.pool();
            $body
        }
    };
}

// SAFETY: every call goes to one allocator for the whole process (chosen at the first call from
// an environment that does not change), which upholds `GlobalAlloc`'s contract.
unsafe impl GlobalAlloc for Tuned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        forward!(self, |a| unsafe { a.alloc(layout) })
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        forward!(self, |a| unsafe { a.alloc_zeroed(layout) })
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded; the block came from the same allocator.
        forward!(self, |a| unsafe { a.dealloc(ptr, layout) })
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded; the block came from the same allocator.
        forward!(self, |a| unsafe { a.realloc(ptr, layout, new_size) })
    }
}

/// The workloads the tuner runs (those that make a realistic mix of sizes).
const WORKLOADS: &[&str] = &["churn", "pyobjects", "btree", "json"];
/// The spacings and thresholds whose rounding waste a profile reports.
const SPACINGS: &[usize] = &[8, 16, 32];
const THRESHOLDS: &[usize] = &[256, 512, 1024];

fn run(workload: &str, scale: f64) -> f64 {
    let n = |base: f64| ((base * scale) as usize).max(1);
    match workload {
        "churn" => workloads::churn(&GLOBAL, 100_000, n(1_000_000.0) as u64, 42),
        "pyobjects" => workloads::pyobjects(10, n(200_000.0), 5),
        "btree" => workloads::btree(n(200_000.0), 9),
        "json" => {
            let records = n(100_000.0);
            let text = workloads::json_text(records, 3);
            workloads::json(&text, records)
        }
        other => unreachable!("{other} is checked in main"),
    }
}

fn profile_json(workload: &str, p: &Profile) -> String {
    let mut waste = Vec::new();
    for &s in SPACINGS {
        for &t in THRESHOLDS {
            let (w, r) = p.rounding_waste(s, t);
            waste.push(serde_json::json!({
                "spacing": s,
                "threshold": t,
                "wasted_bytes": w,
                "requested_bytes": r,
            }));
        }
    }
    let (small, small_bytes) = p.small_requests(512);
    serde_json::json!({
        "workload": workload,
        "mode": "profile",
        "allocations": p.allocations,
        "frees": p.frees,
        "reallocs": p.reallocs,
        "small_requests": small,
        "small_bytes": small_bytes,
        "median_lifetime": p.median_lifetime(),
        "lifetimes": p.lifetimes.to_vec(),
        "exact": p.exact.iter().map(|(s, c)| [*s as u64, *c]).collect::<Vec<_>>(),
        "waste": waste,
    })
    .to_string()
}

/// The tuning runner: one workload under the profiling pool (`DOMALLOC_TUNE=profile`) or a pool
/// with other parameters; one JSON record on standard output (`cargo xtask tune` runs it).
#[derive(clap::Parser)]
#[command(
    name = "domalloc-tune",
    after_help = "DOMALLOC_TUNE chooses the global allocator, read at the first allocation: \
                  `profile` (the default pool under the profiler: prints the profile), or \
                  SPACING,POOL_SIZE,THRESHOLD in bytes (a pool with those parameters, e.g. \
                  16,16384,512: prints the timing); unset, the default pool."
)]
struct Args {
    /// The workload.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(WORKLOADS))]
    workload: String,
    /// Samples (after a warm-up run).
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    samples: u32,
    /// The share of the workload's full size to run.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    scale: f64,
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    let (workload, samples, scale) = (args.workload, args.samples as usize, args.scale);
    if scale <= 0.0 {
        eprintln!("domalloc-tune: --scale must be positive");
        return ExitCode::from(2);
    }
    if GLOBAL.state() == PROFILE {
        run(&workload, scale);
        println!("{}", profile_json(&workload, &PROFILED.inner().profile()));
        return ExitCode::SUCCESS;
    }
    run(&workload, scale); // warm-up
    let mut ns: Vec<f64> = (0..samples).map(|_| run(&workload, scale)).collect();
    ns.sort_by(f64::total_cmp);
    let median = ns[ns.len() / 2];
    let pool = GLOBAL.pool().inner();
    let stats = pool.stats();
    let peak_mapped = stats.arenas_highest * stats.arena_size;
    println!(
        "{}",
        serde_json::json!({
            "workload": workload,
            "mode": "run",
            "median_ns": median,
            "samples_ns": ns,
            "peak_mapped_bytes": peak_mapped,
            "large_name": pool.large().name(),
        })
    );
    ExitCode::SUCCESS
}
