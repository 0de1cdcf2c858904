//! tracemalloc's `Snapshot.dump` and `Snapshot.load`: a snapshot in a file, loaded back equal.
//!
//! The file is JSON: a header (`format`, `version`), the traceback limit, then each distinct
//! frame once, each distinct traceback once (as frame indices, the most recent first) and each
//! trace as `[domain, size, traceback index]`, in the snapshot's order. A snapshot of many
//! blocks from few sites therefore takes about a dozen bytes a block.
//!
//! Loading checks the header before anything else, then every index, so a file that is not a
//! snapshot, of another version, or damaged is refused with a [`SnapshotFileError`] that says
//! which.

use std::path::Path;
use std::string::String;
use std::sync::Arc;
use std::vec::Vec;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use super::super::frames::{Busy, Frame, Traceback};
use super::super::snapshot::{Snapshot, Trace};
use super::SnapshotFileError;

/// The `format` a snapshot file names.
pub const SNAPSHOT_FILE_FORMAT: &str = "domalloc-tracemalloc-snapshot";

/// The version of the snapshot file this build writes and reads.
pub const SNAPSHOT_FILE_VERSION: u32 = 1;

/// What is read first: which file this is.
#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    format: String,
    #[serde(default)]
    version: u32,
}

#[derive(Serialize, Deserialize)]
struct FileFrame {
    filename: String,
    lineno: u32,
    function: String,
}

/// `[domain, size, traceback index]`.
#[derive(Serialize, Deserialize)]
struct FileTrace(u32, usize, usize);

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    format: String,
    version: u32,
    traceback_limit: usize,
    /// The mean bytes between samples of a sampled snapshot (absent: exact traces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sample_interval: Option<usize>,
    frames: Vec<FileFrame>,
    tracebacks: Vec<Vec<usize>>,
    traces: Vec<FileTrace>,
}

impl SnapshotFile {
    fn of(snapshot: &Snapshot) -> Self {
        let mut frames: Vec<FileFrame> = Vec::new();
        let mut frame_index: HashMap<&Frame, usize> = HashMap::new();
        let mut tracebacks: Vec<Vec<usize>> = Vec::new();
        let mut traceback_index: HashMap<&Traceback, usize> = HashMap::new();
        let traces = snapshot
            .traces()
            .iter()
            .map(|t| {
                let tb = *traceback_index.entry(&t.traceback).or_insert_with(|| {
                    let ids = t
                        .traceback
                        .frames()
                        .iter()
                        .map(|f| {
                            *frame_index.entry(f).or_insert_with(|| {
                                frames.push(FileFrame {
                                    filename: f.filename.to_string(),
                                    lineno: f.lineno,
                                    function: f.function.to_string(),
                                });
                                frames.len() - 1
                            })
                        })
                        .collect();
                    tracebacks.push(ids);
                    tracebacks.len() - 1
                });
                FileTrace(t.domain, t.size, tb)
            })
            .collect();
        SnapshotFile {
            format: SNAPSHOT_FILE_FORMAT.into(),
            version: SNAPSHOT_FILE_VERSION,
            traceback_limit: snapshot.traceback_limit(),
            sample_interval: snapshot.sample_interval(),
            frames,
            tracebacks,
            traces,
        }
    }

    fn into_snapshot(self) -> Result<Snapshot, SnapshotFileError> {
        let frames: Vec<Frame> = self
            .frames
            .into_iter()
            .map(|f| Frame {
                filename: Arc::from(f.filename),
                lineno: f.lineno,
                function: Arc::from(f.function),
            })
            .collect();
        let tracebacks = self
            .tracebacks
            .into_iter()
            .enumerate()
            .map(|(index, ids)| {
                if ids.is_empty() {
                    return Err(SnapshotFileError::EmptyTraceback { index });
                }
                let frames = ids
                    .into_iter()
                    .map(|i| {
                        frames.get(i).cloned().ok_or(SnapshotFileError::Dangling {
                            table: "frames",
                            index: i,
                            len: frames.len(),
                        })
                    })
                    .collect::<Result<Vec<Frame>, _>>()?;
                Ok(Traceback::new(frames))
            })
            .collect::<Result<Vec<Traceback>, _>>()?;
        let traces = self
            .traces
            .into_iter()
            .map(|FileTrace(domain, size, tb)| {
                let traceback = tracebacks
                    .get(tb)
                    .cloned()
                    .ok_or(SnapshotFileError::Dangling {
                        table: "tracebacks",
                        index: tb,
                        len: tracebacks.len(),
                    })?;
                Ok(Trace {
                    domain,
                    size,
                    traceback,
                })
            })
            .collect::<Result<Vec<Trace>, SnapshotFileError>>()?;
        Ok(match self.sample_interval {
            Some(interval) => Snapshot::sampled(traces, self.traceback_limit, interval),
            None => Snapshot::new(traces, self.traceback_limit),
        })
    }
}

impl Snapshot {
    /// Writes the snapshot to the file at `path`, replacing it (tracemalloc's `Snapshot.dump`);
    /// [`load`](Self::load) reads it back.
    ///
    /// ```
    /// use alloc_debug::{Frame, Snapshot, Trace, Traceback};
    ///
    /// let site = Traceback::new(vec![Frame::new("src/parse.rs", 12, "app::parse")]);
    /// let snapshot = Snapshot::new(vec![Trace { domain: 3, size: 100, traceback: site }], 1);
    /// let path = std::env::temp_dir().join(format!("snapshot-doc-{}.json", std::process::id()));
    /// snapshot.dump(&path).unwrap();
    /// assert_eq!(Snapshot::load(&path).unwrap(), snapshot);
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn dump(&self, path: impl AsRef<Path>) -> Result<(), SnapshotFileError> {
        let file = std::fs::File::create(path)?;
        self.dump_to(std::io::BufWriter::new(file))
    }

    /// Writes the snapshot to `out`, in [`dump`](Self::dump)'s format.
    pub fn dump_to(&self, mut out: impl std::io::Write) -> Result<(), SnapshotFileError> {
        let _busy = Busy::enter();
        serde_json::to_writer(&mut out, &SnapshotFile::of(self))?;
        out.flush()?;
        Ok(())
    }

    /// Reads a snapshot written by [`dump`](Self::dump) (tracemalloc's `Snapshot.load`): it
    /// compares equal to the one dumped.
    ///
    /// # Errors
    ///
    /// [`SnapshotFileError::Io`] if the file cannot be read, [`Json`](SnapshotFileError::Json)
    /// if it is not JSON of a snapshot's shape, [`Format`](SnapshotFileError::Format) if it is
    /// JSON of something else, [`Version`](SnapshotFileError::Version) if it is of another
    /// version, [`Dangling`](SnapshotFileError::Dangling) or
    /// [`EmptyTraceback`](SnapshotFileError::EmptyTraceback) if it is damaged.
    pub fn load(path: impl AsRef<Path>) -> Result<Snapshot, SnapshotFileError> {
        let file = std::fs::File::open(path)?;
        Snapshot::load_from(std::io::BufReader::new(file))
    }

    /// Reads a snapshot in [`dump`](Self::dump)'s format from `input`, with
    /// [`load`](Self::load)'s checks.
    pub fn load_from(mut input: impl std::io::Read) -> Result<Snapshot, SnapshotFileError> {
        let _busy = Busy::enter();
        let mut bytes = Vec::new();
        input.read_to_end(&mut bytes)?;
        let header: Header = serde_json::from_slice(&bytes)?;
        if header.format != SNAPSHOT_FILE_FORMAT {
            return Err(SnapshotFileError::Format {
                found: header.format,
            });
        }
        if header.version != SNAPSHOT_FILE_VERSION {
            return Err(SnapshotFileError::Version {
                found: header.version,
            });
        }
        let file: SnapshotFile = serde_json::from_slice(&bytes)?;
        file.into_snapshot()
    }
}
