//! DHAT's JSON format (`dhatFileVersion` 2), as Valgrind's DHAT writes it and its viewer
//! `dh_view.html` reads it.
//!
//! A file has a header (the mode, which per-block quantities it records, time units, the
//! command, the process, times), a list of *program points* (`pps`: the bytes and blocks of one
//! allocation stack, and its frames as indices into the frame table) and the frame table
//! (`ftbl`, whose entry 0 is `"[root]"`). The viewer builds a tree from the frame lists, so no
//! two program points may have the same list (it refuses "a repeated location").
//!
//! DHAT's heap mode records block lifetimes (`bklt`: each point's total lifetime, its own
//! maximum, its bytes at the global maximum and at the end) and accesses (`bkacc`: reads and
//! writes). A snapshot knows neither: it holds the blocks live at one moment, with their sizes
//! and sites. So [`Snapshot::to_dhat`] writes `bklt` and `bkacc` false, which the format defines
//! as "these fields are absent", and the viewer then shows each point's bytes and blocks
//! ("Total") and its frames. Those totals are the snapshot's live blocks: exact, but not the
//! blocks the program allocated and freed before the snapshot, which DHAT's own totals include.

use std::string::{String, ToString};
use std::vec::Vec;

use hashbrown::HashMap;
use hashbrown::hash_map::Entry;
use serde::{Deserialize, Serialize};

use super::super::frames::{Busy, Frame};
use super::super::snapshot::Snapshot;
use super::{SnapshotFileError, by_traceback};

/// The version of DHAT's format this crate writes and [`DhatProfile`] describes.
pub const DHAT_FILE_VERSION: u32 = 2;

/// The `mode` [`Snapshot::to_dhat`] writes (a free-form string in the format; DHAT's own are
/// `"heap"`, `"copy"` and `"ad-hoc"`).
pub const DHAT_MODE: &str = "heap-snapshot";

/// A DHAT profile: the whole file, field for field (the JSON key of each field is in its
/// documentation). It reads DHAT's own files too.
///
/// Fields marked "with `bklt`" are present exactly when [`block_lifetimes`](Self::block_lifetimes)
/// is true, those marked "with `bkacc`" when [`block_accesses`](Self::block_accesses) is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhatProfile {
    /// `dhatFileVersion`: [`DHAT_FILE_VERSION`].
    #[serde(rename = "dhatFileVersion")]
    pub file_version: u32,
    /// `mode`: free-form ([`DHAT_MODE`] for a snapshot).
    pub mode: String,
    /// `verb`: the word before the frames of a point, as in "Allocated at {".
    pub verb: String,
    /// `bklt`: whether block lifetimes are recorded.
    #[serde(rename = "bklt")]
    pub block_lifetimes: bool,
    /// `bkacc`: whether block accesses are recorded.
    #[serde(rename = "bkacc")]
    pub block_accesses: bool,
    /// `bu`: the unit of one byte (`"byte"` when absent).
    #[serde(rename = "bu", default, skip_serializing_if = "Option::is_none")]
    pub byte_unit: Option<String>,
    /// `bsu`: the unit of several bytes (`"bytes"` when absent).
    #[serde(rename = "bsu", default, skip_serializing_if = "Option::is_none")]
    pub bytes_unit: Option<String>,
    /// `bksu`: the unit of blocks (`"blocks"` when absent).
    #[serde(rename = "bksu", default, skip_serializing_if = "Option::is_none")]
    pub blocks_unit: Option<String>,
    /// `tu`: the time unit.
    #[serde(rename = "tu")]
    pub time_unit: String,
    /// `Mtu`: a million time units.
    #[serde(rename = "Mtu")]
    pub mega_time_unit: String,
    /// `tuth`: the lifetime under which a block is short-lived, in time units (with `bklt`).
    #[serde(rename = "tuth", default, skip_serializing_if = "Option::is_none")]
    pub short_lived_threshold: Option<u64>,
    /// `cmd`: the command that ran.
    pub cmd: String,
    /// `pid`: the process.
    pub pid: u32,
    /// `te`: the time at the end, in time units.
    #[serde(rename = "te")]
    pub time_end: u64,
    /// `tg`: the time of the global maximum (with `bklt`).
    #[serde(rename = "tg", default, skip_serializing_if = "Option::is_none")]
    pub time_global_max: Option<u64>,
    /// `pps`: the program points.
    #[serde(rename = "pps")]
    pub program_points: Vec<DhatProgramPoint>,
    /// `ftbl`: the frame table; entry 0 is `"[root]"`.
    #[serde(rename = "ftbl")]
    pub frame_table: Vec<String>,
}

/// One program point of a [`DhatProfile`]: an allocation stack and what was allocated there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhatProgramPoint {
    /// `tb`: total bytes.
    #[serde(rename = "tb")]
    pub total_bytes: u64,
    /// `tbk`: total blocks.
    #[serde(rename = "tbk")]
    pub total_blocks: u64,
    /// `tl`: the lifetimes of all its blocks, added up, in time units (with `bklt`).
    #[serde(rename = "tl", default, skip_serializing_if = "Option::is_none")]
    pub total_lifetimes: Option<u64>,
    /// `mb`: its bytes at its own maximum (with `bklt`).
    #[serde(rename = "mb", default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// `mbk`: its blocks at its own maximum (with `bklt`).
    #[serde(rename = "mbk", default, skip_serializing_if = "Option::is_none")]
    pub max_blocks: Option<u64>,
    /// `gb`: its bytes at the global maximum (with `bklt`).
    #[serde(rename = "gb", default, skip_serializing_if = "Option::is_none")]
    pub bytes_at_global_max: Option<u64>,
    /// `gbk`: its blocks at the global maximum (with `bklt`).
    #[serde(rename = "gbk", default, skip_serializing_if = "Option::is_none")]
    pub blocks_at_global_max: Option<u64>,
    /// `eb`: its bytes at the end (with `bklt`).
    #[serde(rename = "eb", default, skip_serializing_if = "Option::is_none")]
    pub bytes_at_end: Option<u64>,
    /// `ebk`: its blocks at the end (with `bklt`).
    #[serde(rename = "ebk", default, skip_serializing_if = "Option::is_none")]
    pub blocks_at_end: Option<u64>,
    /// `rb`: bytes read from its blocks (with `bkacc`).
    #[serde(rename = "rb", default, skip_serializing_if = "Option::is_none")]
    pub reads_bytes: Option<u64>,
    /// `wb`: bytes written to its blocks (with `bkacc`).
    #[serde(rename = "wb", default, skip_serializing_if = "Option::is_none")]
    pub writes_bytes: Option<u64>,
    /// `acc`: accesses per byte offset, run-length encoded (a negative entry repeats the next
    /// that many times); only where every block has one small size (with `bkacc`, optional).
    #[serde(rename = "acc", default, skip_serializing_if = "Option::is_none")]
    pub accesses: Option<Vec<i64>>,
    /// `fs`: its frames, the allocation site first, as indices into the frame table.
    #[serde(rename = "fs")]
    pub frames: Vec<usize>,
}

/// How a frame reads in the frame table: `function (file:line)`, or `file:line` for a frame with
/// no function (a tag, or a site without debug information).
fn frame_entry(frame: &Frame) -> String {
    if frame.function.is_empty() {
        format!("{}:{}", frame.filename, frame.lineno)
    } else {
        format!("{} ({}:{})", frame.function, frame.filename, frame.lineno)
    }
}

impl Snapshot {
    /// The snapshot as a DHAT profile: one program point per distinct traceback (tracebacks
    /// whose frames read the same are one point), each with the bytes and blocks the snapshot
    /// reports for it, largest first.
    ///
    /// `bklt` and `bkacc` are false and the fields they govern absent: a snapshot records
    /// neither lifetimes nor accesses, so the viewer shows each point's live bytes and blocks as
    /// its "Total" (not counting blocks freed before the snapshot). `cmd` and `pid`
    /// are this process's; `te` is 0 (a snapshot is one moment, so the viewer's rates per time
    /// read as infinite): set [`time_end`](DhatProfile::time_end) (in `tu`, microseconds) to
    /// the time the program ran, where it is known, before writing the profile.
    ///
    /// ```
    /// use alloc_debug::{Frame, Snapshot, Trace, Traceback};
    ///
    /// let site = Traceback::new(vec![Frame::new("src/parse.rs", 12, "app::parse")]);
    /// let snapshot = Snapshot::new(
    ///     vec![Trace { domain: 0, size: 100, traceback: site.clone() },
    ///          Trace { domain: 0, size: 28, traceback: site }],
    ///     1,
    /// );
    /// let dhat = snapshot.to_dhat();
    /// assert_eq!(dhat.frame_table, ["[root]", "app::parse (src/parse.rs:12)"]);
    /// let point = &dhat.program_points[0];
    /// assert_eq!((point.total_bytes, point.total_blocks, &point.frames[..]), (128, 2, &[1][..]));
    /// ```
    pub fn to_dhat(&self) -> DhatProfile {
        let _busy = Busy::enter();
        let mut frame_table: Vec<String> = std::vec!["[root]".to_string()];
        let mut frame_index: HashMap<String, usize> = HashMap::new();
        frame_index.insert("[root]".to_string(), 0);
        let mut program_points: Vec<DhatProgramPoint> = Vec::new();
        let mut point_index: HashMap<Vec<usize>, usize> = HashMap::new();
        for stat in by_traceback(self) {
            let frames: Vec<usize> = stat
                .traceback
                .frames()
                .iter()
                .map(|frame| {
                    let entry = frame_entry(frame);
                    *frame_index.entry(entry).or_insert_with_key(|entry| {
                        frame_table.push(entry.clone());
                        frame_table.len() - 1
                    })
                })
                .collect();
            let (bytes, blocks) = (stat.size as u64, stat.count as u64);
            match point_index.entry(frames) {
                Entry::Occupied(point) => {
                    let point = &mut program_points[*point.get()];
                    point.total_bytes += bytes;
                    point.total_blocks += blocks;
                }
                Entry::Vacant(slot) => {
                    let frames = slot.key().clone();
                    slot.insert(program_points.len());
                    program_points.push(DhatProgramPoint {
                        total_bytes: bytes,
                        total_blocks: blocks,
                        total_lifetimes: None,
                        max_bytes: None,
                        max_blocks: None,
                        bytes_at_global_max: None,
                        blocks_at_global_max: None,
                        bytes_at_end: None,
                        blocks_at_end: None,
                        reads_bytes: None,
                        writes_bytes: None,
                        accesses: None,
                        frames,
                    });
                }
            }
        }
        let cmd: Vec<String> = std::env::args().collect();
        DhatProfile {
            file_version: DHAT_FILE_VERSION,
            mode: DHAT_MODE.into(),
            verb: "Allocated".into(),
            block_lifetimes: false,
            block_accesses: false,
            byte_unit: None,
            bytes_unit: None,
            blocks_unit: None,
            time_unit: "µs".into(),
            mega_time_unit: "s".into(),
            short_lived_threshold: None,
            cmd: cmd.join(" "),
            pid: std::process::id(),
            time_end: 0,
            time_global_max: None,
            program_points,
            frame_table,
        }
    }

    /// Writes [`to_dhat`](Self::to_dhat)'s profile as JSON, the file `dh_view.html` loads.
    pub fn write_dhat(&self, mut out: impl std::io::Write) -> Result<(), SnapshotFileError> {
        let profile = self.to_dhat();
        let _busy = Busy::enter();
        serde_json::to_writer(&mut out, &profile)?;
        out.flush()?;
        Ok(())
    }
}
