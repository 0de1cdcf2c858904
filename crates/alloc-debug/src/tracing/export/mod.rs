//! Snapshots as files: heap profiles that viewers open, and tracemalloc's dump and load (the
//! `export` feature, on by default).
//!
//! * [`Snapshot::to_dhat`] / [`Snapshot::write_dhat`]: DHAT's JSON ([`DhatProfile`], format
//!   version 2), which DHAT's viewer `dh_view.html` loads;
//! * [`Snapshot::to_pprof`] / [`Snapshot::write_pprof`]: pprof's `profile.proto`
//!   ([`pprof::Profile`]), gzipped, as `pprof` and the tools that read Go's heap profiles take it;
//! * [`Snapshot::dump`] / [`Snapshot::load`] (and [`dump_to`](Snapshot::dump_to) /
//!   [`load_from`](Snapshot::load_from) over any writer and reader): tracemalloc's
//!   `Snapshot.dump` and `Snapshot.load`, a versioned JSON file that loads back into an equal
//!   snapshot.
//!
//! Both profiles are built from what the snapshot reports: [`Snapshot::statistics`] by whole
//! traceback (in pprof, per domain), so their sizes and counts are the snapshot's own. A
//! snapshot holds the blocks live at one moment, and nothing else: the profiles say what that
//! knows exactly, and leave out what it does not know (lifetimes, peaks, the blocks freed before
//! it); each writer's documentation says how.
//!
//! The writers, like [`Tracing::take_snapshot`](super::Tracing::take_snapshot), run with the
//! thread's busy flag set: what they allocate through a [`Tracing`](super::Tracing) is not
//! traced.

mod dhat;
mod file;
pub mod pprof;

pub use dhat::{DHAT_FILE_VERSION, DHAT_MODE, DhatProfile, DhatProgramPoint};
pub use file::{SNAPSHOT_FILE_FORMAT, SNAPSHOT_FILE_VERSION};

/// Why a profile or a snapshot file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotFileError {
    /// The file or stream failed.
    #[error("snapshot file: {0}")]
    Io(#[from] std::io::Error),
    /// The JSON could not be written, or what was read is not JSON of the expected shape.
    #[error("snapshot file is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// The file is JSON, but not a snapshot dumped by [`Snapshot::dump`](super::Snapshot::dump).
    #[error("not a snapshot file: its format is {found:?}, not {SNAPSHOT_FILE_FORMAT:?}")]
    Format {
        /// The format the file names (empty if it names none).
        found: String,
    },
    /// A snapshot file of a version this build does not read.
    #[error(
        "snapshot file version {found} is not supported (this build reads version {SNAPSHOT_FILE_VERSION})"
    )]
    Version {
        /// The version the file gives.
        found: u32,
    },
    /// An index in the file points past the table it refers to.
    #[error("snapshot file refers to {table} entry {index}, but that table has {len} entries")]
    Dangling {
        /// The table: `"frames"` or `"tracebacks"`.
        table: &'static str,
        /// The index the file gives.
        index: usize,
        /// The table's length.
        len: usize,
    },
    /// A traceback with no frames (a snapshot's tracebacks always have one).
    #[error("snapshot file has an empty traceback, number {index}")]
    EmptyTraceback {
        /// The traceback's index in the file.
        index: usize,
    },
}

/// The sizes and counts as the snapshot reports them, one group per distinct traceback, largest
/// first (ties in a fixed order).
fn by_traceback(snapshot: &super::Snapshot) -> std::vec::Vec<super::Statistic> {
    snapshot
        .statistics(super::KeyType::Traceback, false)
        .expect("non-cumulative statistics always group")
}

/// A count or size as a profile's signed 64-bit value.
fn value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
