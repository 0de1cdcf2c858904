//! Sampled tracing from the environment, for programs run under `LD_PRELOAD`:
//!
//! ```text
//! DOMALLOC_TRACE_SAMPLE=BYTES   at load: domalloc_tracing_start_sampled(1, BYTES)
//! DOMALLOC_TRACE_OUT=PATH       at exit: the profile written to PATH
//!                               (default: domalloc-trace.<pid>.txt in the working directory)
//! ```
//!
//! `BYTES` is a positive number, with an optional `k`, `m` or `g` (binary multiples: `512k` is
//! the default interval). A value that is not one is reported on one line of standard error, and
//! nothing is traced. The profile is written by an `atexit` handler that the library's constructor
//! registers (so it runs after the program's own), by [`write_profile`]. A child made by `fork`
//! inherits the handler: it writes its own file under the default name (its own pid), and nothing
//! where `DOMALLOC_TRACE_OUT` names one file, which stays the parent's.

use core::ffi::{CStr, c_int};
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::io::Write;
use std::string::String;

use alloc_debug::{KeyType, Snapshot};

use crate::api::{DOMALLOC_OK, tracer, tracing_start};

/// The process that started tracing from the environment (0: none).
static STARTED_BY: AtomicI32 = AtomicI32::new(0);
/// The interval it started with.
static INTERVAL: AtomicUsize = AtomicUsize::new(0);

/// Sites the profile lists by line before summing the rest.
const TOP_SITES: usize = 100;

/// Reads an environment variable without allocating.
fn env(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: a NUL-terminated name; the value, if any, is a NUL-terminated string the C library
    // keeps (nothing changes the environment while the library's constructor runs).
    let value = unsafe { libc::getenv(name.as_ptr()) };
    // SAFETY: as above.
    (!value.is_null()).then(|| unsafe { CStr::from_ptr(value) }.to_bytes())
}

/// A size in bytes: digits, then an optional `k`, `m` or `g` (either case); `None` for anything
/// else, 0 included.
fn parse_bytes(text: &[u8]) -> Option<usize> {
    let (digits, shift) = match text.last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 10),
        b'm' | b'M' => (&text[..text.len() - 1], 20),
        b'g' | b'G' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().try_fold(0usize, |n, &d| {
        n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    })?;
    let n = n.checked_mul(1 << shift)?;
    (n > 0).then_some(n)
}

/// Writes one line to standard error without allocating (a fixed buffer, cut at its end).
fn complain(parts: &[&[u8]]) {
    let mut buf = [0u8; 256];
    let mut n = 0;
    for part in parts.iter().chain([&b"\n"[..]].iter()) {
        let take = part.len().min(buf.len() - n);
        buf[n..n + take].copy_from_slice(&part[..take]);
        n += take;
    }
    // SAFETY: `buf[..n]` is initialised; writing to fd 2 has no other effect.
    unsafe { libc::write(2, buf.as_ptr().cast(), n) };
}

/// Called by the library's constructor: starts sampled tracing if `DOMALLOC_TRACE_SAMPLE` asks.
pub(crate) fn start_from_env() {
    let Some(value) = env(c"DOMALLOC_TRACE_SAMPLE") else {
        return;
    };
    let Some(interval) = parse_bytes(value) else {
        let shown = &value[..value.len().min(64)];
        return complain(&[
            b"domalloc: DOMALLOC_TRACE_SAMPLE=",
            shown,
            b" is not a size in bytes (e.g. 524288 or 512k); not tracing",
        ]);
    };
    let code = tracing_start(1, Some(interval));
    if code != DOMALLOC_OK {
        return complain(&[
            b"domalloc: DOMALLOC_TRACE_SAMPLE: sampled tracing could not start (interval out of \
              range, or no memory); not tracing",
        ]);
    }
    INTERVAL.store(interval, Ordering::Relaxed);
    // SAFETY: getpid has no preconditions.
    STARTED_BY.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    // SAFETY: a plain function, run once at exit.
    unsafe { libc::atexit(at_exit) };
}

extern "C" fn at_exit() {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let explicit = env(c"DOMALLOC_TRACE_OUT").filter(|p| !p.is_empty());
    let path = match explicit {
        Some(p) if pid == STARTED_BY.load(Ordering::Relaxed) => {
            String::from_utf8_lossy(p).into_owned()
        }
        // A forked child leaves the named file to its parent.
        Some(_) => return,
        None => format!("domalloc-trace.{pid}.txt"),
    };
    let Some(t) = tracer() else {
        return;
    };
    let snapshot = t.take_snapshot();
    let (current, peak) = t.traced_memory();
    if let Err(e) = write_profile(&path, &snapshot, pid, current, peak) {
        let message = format!("domalloc: could not write the trace profile to {path}: {e}");
        complain(&[message.as_bytes()]);
    }
}

/// Writes the profile of `snapshot` to `path`, in the format its name asks for (the one place a
/// profile's format is chosen): pprof's gzipped `profile.proto` for a name ending in `.pb.gz` or
/// `.pb` (`go tool pprof`, speedscope), DHAT's JSON for `.json` (DHAT's `dh_view.html`), and
/// otherwise text: a header (process, interval, estimated traced memory and peak), then the
/// statistics by line, largest first. Every format carries the estimates of the sampled data.
fn write_profile(
    path: &str,
    snapshot: &Snapshot,
    pid: c_int,
    current: usize,
    peak: usize,
) -> std::io::Result<()> {
    let mut out = std::fs::File::create(path)?;
    let written = if path.ends_with(".pb.gz") || path.ends_with(".pb") {
        Some(snapshot.write_pprof(&mut out))
    } else if path.ends_with(".json") {
        Some(snapshot.write_dhat(&mut out))
    } else {
        None
    };
    if let Some(result) = written {
        return result.map_err(std::io::Error::other);
    }
    writeln!(
        out,
        "domalloc sampled trace of process {pid}: one sample every {} bytes on average",
        snapshot
            .sample_interval()
            .unwrap_or(INTERVAL.load(Ordering::Relaxed))
    )?;
    writeln!(
        out,
        "estimated: {current} bytes traced at exit, {peak} at the peak, {} live blocks, from {} samples",
        snapshot.total_blocks(),
        snapshot.traces().len()
    )?;
    out.write_all(snapshot.format_top(KeyType::Lineno, TOP_SITES).as_bytes())?;
    out.flush()
}
