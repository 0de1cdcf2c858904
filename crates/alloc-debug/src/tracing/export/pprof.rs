//! pprof's profile format (`perftools.profiles.Profile`, from `profile.proto`), as prost
//! messages, and a snapshot written in it.
//!
//! The messages carry the field numbers of `profile.proto`; fields this crate does not know
//! (later additions to the format) are skipped when a profile is decoded. On disk a profile is
//! gzipped ([`Snapshot::write_pprof`]).
//!
//! A snapshot becomes a heap profile with Go's four sample types, in this order:
//! `alloc_objects`/`count`, `alloc_space`/`bytes`, `inuse_objects`/`count`,
//! `inuse_space`/`bytes` (the default, `default_sample_type`). One sample per domain and
//! distinct traceback, with the blocks and bytes the snapshot reports for it and a numeric label
//! `domain`; its locations are the traceback's frames, the allocation site first, each with one
//! line (its function, file and line). The snapshot holds the blocks live at one moment, so
//! `alloc_*` count the allocations that are still live (the same as `inuse_*`): the allocations
//! freed before the snapshot are not known to it, and are not in the profile. `period` is 1
//! (every block counted) with `period_type` `space`/`bytes`; there are no mappings or addresses
//! (the frames are resolved), and no time.

use std::string::String;
use std::vec::Vec;

use hashbrown::HashMap;

use super::super::frames::{Busy, Frame};
use super::super::snapshot::{DomainFilter, Snapshot};
use super::{SnapshotFileError, by_traceback, value};

/// A profile: samples, their locations and functions, and the strings they name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    /// What each value of a sample is (`sample_type`, 1).
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// The samples (`sample`, 2).
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// The binaries mapped into the process (`mapping`, 3).
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    /// The locations samples refer to (`location`, 4).
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// The functions locations refer to (`function`, 5).
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// Every string the profile names; entry 0 is `""` (`string_table`, 6).
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    /// A regular expression (string index) of function names dropped with their callees
    /// (`drop_frames`, 7).
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    /// A regular expression (string index) of function names kept even if dropped
    /// (`keep_frames`, 8).
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    /// When collection started, in nanoseconds since the epoch (`time_nanos`, 9).
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// How long collection took (`duration_nanos`, 10).
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// The kind of events between samples (`period_type`, 11).
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// The events between samples (`period`, 12).
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// Free-form comments, as string indices (`comment`, 13).
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    /// The sample type shown by default, a string index (`default_sample_type`, 14).
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

/// A type and a unit, as string indices.
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct ValueType {
    /// The type, e.g. `inuse_space` (`type`, 1).
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// The unit, e.g. `bytes` (`unit`, 2).
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// Values measured at one stack.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The stack: location ids, the leaf first (`location_id`, 1).
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One value per sample type (`value`, 2).
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    /// Labels (`label`, 3).
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

/// A sample's label: a key with a string or a number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct Label {
    /// The key, a string index (`key`, 1).
    #[prost(int64, tag = "1")]
    pub key: i64,
    /// A string value, a string index (`str`, 2).
    #[prost(int64, tag = "2")]
    pub str: i64,
    /// A numeric value (`num`, 3).
    #[prost(int64, tag = "3")]
    pub num: i64,
    /// The unit of `num`, a string index (`num_unit`, 4).
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

/// A binary mapped into the process.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Mapping {
    /// A nonzero id (`id`, 1).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Where it starts (`memory_start`, 2).
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    /// Where it ends (`memory_limit`, 3).
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    /// The file offset of its start (`file_offset`, 4).
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    /// The file, a string index (`filename`, 5).
    #[prost(int64, tag = "5")]
    pub filename: i64,
    /// The build id, a string index (`build_id`, 6).
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    /// Whether its locations have functions (`has_functions`, 7).
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    /// Whether they have files (`has_filenames`, 8).
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    /// Whether they have lines (`has_line_numbers`, 9).
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    /// Whether inlined frames are expanded (`has_inline_frames`, 10).
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

/// A place in the program.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    /// A nonzero id (`id`, 1).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Its mapping's id, or 0 (`mapping_id`, 2).
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    /// Its instruction address, or 0 (`address`, 3).
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Its lines, innermost first: more than one where functions were inlined (`line`, 4).
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    /// Whether several symbols share the address (`is_folded`, 5).
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

/// A line of a function.
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct Line {
    /// The function's id (`function_id`, 1).
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    /// The line (`line`, 2).
    #[prost(int64, tag = "2")]
    pub line: i64,
}

/// A function.
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct Function {
    /// A nonzero id (`id`, 1).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Its readable name, a string index (`name`, 2).
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// Its name as the system knows it, a string index (`system_name`, 3).
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    /// Its source file, a string index (`filename`, 4).
    #[prost(int64, tag = "4")]
    pub filename: i64,
    /// The line it starts at (`start_line`, 5).
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

/// The sample types of a snapshot's profile, in order, as (type, unit).
pub const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

/// A profile under construction: each string, function and location once.
#[derive(Default)]
struct Builder {
    profile: Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(i64, i64), u64>,
    locations: HashMap<Frame, u64>,
}

impl Builder {
    fn new() -> Self {
        let mut b = Builder::default();
        b.string("");
        b
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.into());
        self.strings.insert(s.into(), i);
        i
    }

    fn value_type(&mut self, (ty, unit): (&str, &str)) -> ValueType {
        ValueType {
            r#type: self.string(ty),
            unit: self.string(unit),
        }
    }

    /// The location of a frame. A frame with no function (a tag, or a site without debug
    /// information) is given its file as the function's name, which is what pprof shows.
    fn location(&mut self, frame: &Frame) -> u64 {
        if let Some(&id) = self.locations.get(frame) {
            return id;
        }
        let name = if frame.function.is_empty() {
            &frame.filename
        } else {
            &frame.function
        };
        let (name, filename) = (self.string(name), self.string(&frame.filename));
        let next_function = self.profile.function.len() as u64 + 1;
        let function_id = *self
            .functions
            .entry((name, filename))
            .or_insert(next_function);
        if function_id == next_function {
            self.profile.function.push(Function {
                id: function_id,
                name,
                system_name: name,
                filename,
                start_line: 0,
            });
        }
        let id = self.profile.location.len() as u64 + 1;
        self.profile.location.push(Location {
            id,
            mapping_id: 0,
            address: 0,
            line: std::vec![Line {
                function_id,
                line: i64::from(frame.lineno),
            }],
            is_folded: false,
        });
        self.locations.insert(frame.clone(), id);
        id
    }
}

impl Snapshot {
    /// The snapshot as a pprof heap profile (see the [`pprof`](crate::tracing::pprof) module for what it holds).
    ///
    /// ```
    /// use alloc_debug::{Frame, Snapshot, Trace, Traceback};
    ///
    /// let site = Traceback::new(vec![Frame::new("src/parse.rs", 12, "app::parse")]);
    /// let snapshot = Snapshot::new(vec![Trace { domain: 0, size: 100, traceback: site }], 1);
    /// let profile = snapshot.to_pprof();
    /// let sample = &profile.sample[0];
    /// assert_eq!(sample.value, [1, 100, 1, 100]);
    /// let line = profile.location[0].line[0];
    /// let function = &profile.function[line.function_id as usize - 1];
    /// assert_eq!(profile.string_table[function.name as usize], "app::parse");
    /// assert_eq!((profile.string_table[function.filename as usize].as_str(), line.line),
    ///            ("src/parse.rs", 12));
    /// ```
    pub fn to_pprof(&self) -> Profile {
        let _busy = Busy::enter();
        let mut b = Builder::new();
        b.profile.sample_type = SAMPLE_TYPES.iter().map(|&t| b.value_type(t)).collect();
        b.profile.default_sample_type = b.string(SAMPLE_TYPES[3].0);
        b.profile.period_type = Some(b.value_type(("space", "bytes")));
        b.profile.period = 1;
        let comment = format!(
            "domalloc tracing snapshot: {} blocks live, traceback limit {}",
            self.traces().len(),
            self.traceback_limit()
        );
        b.profile.comment = std::vec![b.string(&comment)];
        let domain_key = b.string("domain");
        let mut domains: Vec<u32> = self.traces().iter().map(|t| t.domain).collect();
        domains.sort_unstable();
        domains.dedup();
        for domain in domains {
            let traces = self.filter_traces(&[DomainFilter::include(domain).into()]);
            for stat in by_traceback(&traces) {
                let location_id = stat
                    .traceback
                    .frames()
                    .iter()
                    .map(|f| b.location(f))
                    .collect();
                let (count, size) = (value(stat.count), value(stat.size));
                b.profile.sample.push(Sample {
                    location_id,
                    value: std::vec![count, size, count, size],
                    label: std::vec![Label {
                        key: domain_key,
                        str: 0,
                        num: i64::from(domain),
                        num_unit: 0,
                    }],
                });
            }
        }
        b.profile
    }

    /// Writes [`to_pprof`](Self::to_pprof)'s profile encoded and gzipped: the file `pprof`
    /// reads.
    pub fn write_pprof(&self, out: impl std::io::Write) -> Result<(), SnapshotFileError> {
        let profile = self.to_pprof();
        let _busy = Busy::enter();
        let bytes = prost::Message::encode_to_vec(&profile);
        let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &bytes)?;
        std::io::Write::flush(&mut gz.finish()?)?;
        Ok(())
    }
}
