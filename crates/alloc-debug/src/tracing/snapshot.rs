//! Snapshots of the traces, and what tracemalloc computes from them: statistics grouped by file,
//! line or traceback, the difference between two snapshots, and filters by file and by domain.
//!
//! Everything here is plain data a program can inspect (`Vec`s of structs with public fields) and
//! prints as text a person can read (`Display`): the same lines tracemalloc prints.

use core::cmp::Reverse;
use core::fmt;
use std::string::String;
use std::vec::Vec;

use hashbrown::{HashMap, HashSet};

use super::TracingError;
use super::frames::{Frame, Traceback};
use super::sampler::Weights;

/// One traced block: its domain, its size and where it was allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The domain the block was recorded in.
    pub domain: u32,
    /// The bytes requested.
    pub size: usize,
    /// Where it was allocated.
    pub traceback: Traceback,
}

impl fmt::Display for Trace {
    /// `site: size`, as tracemalloc prints a trace.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            self.traceback,
            format_size(self.size as isize, false)
        )
    }
}

/// How statistics group traces (tracemalloc's `key_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// By the file of the most recent frame.
    Filename,
    /// By file and line of the most recent frame.
    Lineno,
    /// By the whole traceback.
    Traceback,
}

/// The blocks of one group: their total size and count (tracemalloc's `Statistic`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statistic {
    /// The group's key: one frame for file or line grouping (line 0 for files), or the
    /// traceback.
    pub traceback: Traceback,
    /// Bytes in the group.
    pub size: usize,
    /// Blocks in the group.
    pub count: usize,
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: size={}, count={}",
            self.traceback,
            format_size(self.size as isize, false),
            self.count
        )?;
        if let Some(average) = self.size.checked_div(self.count) {
            write!(f, ", average={}", format_size(average as isize, false))?;
        }
        Ok(())
    }
}

/// A group's size and count in a new snapshot and their change since an old one (tracemalloc's
/// `StatisticDiff`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatisticDiff {
    /// The group's key, as in [`Statistic`].
    pub traceback: Traceback,
    /// Bytes in the group in the new snapshot.
    pub size: usize,
    /// Change in bytes since the old snapshot.
    pub size_diff: isize,
    /// Blocks in the group in the new snapshot.
    pub count: usize,
    /// Change in blocks since the old snapshot.
    pub count_diff: isize,
}

impl fmt::Display for StatisticDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: size={} ({}), count={} ({:+})",
            self.traceback,
            format_size(self.size as isize, false),
            format_size(self.size_diff, true),
            self.count,
            self.count_diff
        )?;
        if let Some(average) = self.size.checked_div(self.count) {
            write!(f, ", average={}", format_size(average as isize, false))?;
        }
        Ok(())
    }
}

/// A size as tracemalloc prints it: at most four digits, or three with a decimal, in B, KiB,
/// MiB, GiB or TiB; `signed` adds `+` to sizes that are not negative.
///
/// ```
/// use alloc_debug::format_size;
/// assert_eq!(format_size(512, false), "512 B");
/// assert_eq!(format_size(20 * 1024, true), "+20.0 KiB");
/// assert_eq!(format_size(-3 * 1024 * 1024, true), "-3072 KiB");
/// ```
pub fn format_size(size: isize, signed: bool) -> String {
    let sign = if signed && size >= 0 { "+" } else { "" };
    let mut value = size as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if value.abs() < 100.0 && unit != "B" {
            return format!("{sign}{value:.1} {unit}");
        }
        if value.abs() < 10.0 * 1024.0 || unit == "TiB" {
            return format!("{sign}{value:.0} {unit}");
        }
        value /= 1024.0;
    }
    unreachable!("the loop returns at TiB")
}

/// A filter of traces by file name pattern and line (tracemalloc's `Filter`).
///
/// The pattern is a glob (`*` any run of characters, `?` one character) matched against the whole
/// file name. An inclusive filter keeps only the traces it matches; an exclusive one drops them.
/// By default only the most recent frame is matched; with [`all_frames`](Self::all_frames) any
/// frame of the traceback. With [`domain`](Self::domain) the filter also names a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Keep (true) or drop (false) what matches.
    pub inclusive: bool,
    /// The glob the file name must match.
    pub filename_pattern: String,
    /// The line the frame must be at, if any.
    pub lineno: Option<u32>,
    /// Match any frame, not only the most recent.
    pub all_frames: bool,
    /// The domain the trace must be in, if any.
    pub domain: Option<u32>,
}

impl Filter {
    /// Keeps only the traces allocated in files matching `pattern`.
    pub fn include(pattern: &str) -> Self {
        Filter {
            inclusive: true,
            filename_pattern: pattern.into(),
            lineno: None,
            all_frames: false,
            domain: None,
        }
    }

    /// Drops the traces allocated in files matching `pattern`.
    pub fn exclude(pattern: &str) -> Self {
        Filter {
            inclusive: false,
            ..Filter::include(pattern)
        }
    }

    /// Matches only frames at `lineno`.
    pub fn lineno(mut self, lineno: u32) -> Self {
        self.lineno = Some(lineno);
        self
    }

    /// Matches any frame of the traceback, not only the most recent.
    pub fn all_frames(mut self, all: bool) -> Self {
        self.all_frames = all;
        self
    }

    /// Applies to traces of `domain` only.
    pub fn domain(mut self, domain: u32) -> Self {
        self.domain = Some(domain);
        self
    }

    fn frame_matches(&self, frame: &Frame) -> bool {
        glob(&self.filename_pattern, &frame.filename)
            && self.lineno.is_none_or(|l| l == frame.lineno)
    }

    /// Whether the trace passes this filter (is kept by it).
    pub fn matches(&self, trace: &Trace) -> bool {
        let frames = trace.traceback.frames();
        let hit = if self.all_frames {
            frames.iter().any(|f| self.frame_matches(f))
        } else {
            self.frame_matches(&frames[0])
        };
        let passes = hit == self.inclusive;
        match self.domain {
            None => passes,
            Some(d) if self.inclusive => passes && trace.domain == d,
            Some(d) => passes || trace.domain != d,
        }
    }
}

/// A filter of traces by domain (tracemalloc's `DomainFilter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainFilter {
    /// Keep (true) or drop (false) the domain's traces.
    pub inclusive: bool,
    /// The domain.
    pub domain: u32,
}

impl DomainFilter {
    /// Keeps only the traces of `domain`.
    pub fn include(domain: u32) -> Self {
        DomainFilter {
            inclusive: true,
            domain,
        }
    }

    /// Drops the traces of `domain`.
    pub fn exclude(domain: u32) -> Self {
        DomainFilter {
            inclusive: false,
            domain,
        }
    }

    /// Whether the trace passes this filter.
    pub fn matches(&self, trace: &Trace) -> bool {
        (trace.domain == self.domain) == self.inclusive
    }
}

/// Either filter, for [`Snapshot::filter_traces`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceFilter {
    /// By file (and line, and optionally domain).
    File(Filter),
    /// By domain.
    Domain(DomainFilter),
}

impl TraceFilter {
    fn inclusive(&self) -> bool {
        match self {
            TraceFilter::File(f) => f.inclusive,
            TraceFilter::Domain(d) => d.inclusive,
        }
    }

    fn matches(&self, trace: &Trace) -> bool {
        match self {
            TraceFilter::File(f) => f.matches(trace),
            TraceFilter::Domain(d) => d.matches(trace),
        }
    }
}

impl From<Filter> for TraceFilter {
    fn from(f: Filter) -> Self {
        TraceFilter::File(f)
    }
}

impl From<DomainFilter> for TraceFilter {
    fn from(f: DomainFilter) -> Self {
        TraceFilter::Domain(f)
    }
}

/// `*` and `?` globbing over whole strings (by characters).
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The traces at one moment (tracemalloc's `Snapshot`). Two snapshots are equal when they hold
/// the same traces in the same order, the same traceback limit and the same sample interval.
///
/// A snapshot of a sampling [`Tracing`](super::Tracing) holds the sampled blocks, each with its
/// real size, and the interval they were sampled at; its statistics, comparisons and total then
/// estimate the bytes and blocks of every block, sampled or not (see [`Snapshot::sampled`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    traces: Vec<Trace>,
    traceback_limit: usize,
    sample_interval: Option<usize>,
}

impl Snapshot {
    /// A snapshot of the given traces (for tests and for programs that build their own).
    pub fn new(traces: Vec<Trace>, traceback_limit: usize) -> Self {
        Snapshot {
            traces,
            traceback_limit,
            sample_interval: None,
        }
    }

    /// A snapshot of traces sampled every `interval` bytes on average: a trace of `s` bytes
    /// counts for `s / (1 - exp(-s / interval))` bytes and `1 / (1 - exp(-s / interval))` blocks
    /// in [`statistics`](Self::statistics), [`compare_to`](Self::compare_to),
    /// [`total_size`](Self::total_size) and [`total_blocks`](Self::total_blocks) (each sum rounded
    /// to whole bytes and blocks).
    pub fn sampled(traces: Vec<Trace>, traceback_limit: usize, interval: usize) -> Self {
        Snapshot {
            traces,
            traceback_limit,
            sample_interval: Some(interval.max(1)),
        }
    }

    /// The mean bytes between samples, for a snapshot of sampled traces.
    pub fn sample_interval(&self) -> Option<usize> {
        self.sample_interval
    }

    /// Bytes and blocks a trace of `size` bytes stands for.
    fn weight(&self, size: usize) -> (f64, f64) {
        match self.sample_interval {
            None => (size as f64, 1.0),
            Some(i) => {
                let w = Weights::new(i);
                (w.bytes(size), w.blocks(size))
            }
        }
    }

    /// Every trace, in no particular order.
    pub fn traces(&self) -> &[Trace] {
        &self.traces
    }

    /// The depth tracebacks were recorded with.
    pub fn traceback_limit(&self) -> usize {
        self.traceback_limit
    }

    /// Bytes of all traces (estimated, for sampled traces).
    pub fn total_size(&self) -> usize {
        match self.sample_interval {
            None => self.traces.iter().map(|t| t.size).sum(),
            Some(_) => self
                .traces
                .iter()
                .map(|t| self.weight(t.size).0)
                .sum::<f64>()
                .round() as usize,
        }
    }

    /// Blocks of all traces: their number, or for sampled traces the blocks they stand for.
    pub fn total_blocks(&self) -> usize {
        match self.sample_interval {
            None => self.traces.len(),
            Some(_) => self
                .traces
                .iter()
                .map(|t| self.weight(t.size).1)
                .sum::<f64>()
                .round() as usize,
        }
    }

    /// A snapshot of the traces that pass `filters`: any inclusive filter (if there is one) and
    /// every exclusive one (tracemalloc's `filter_traces`).
    pub fn filter_traces(&self, filters: &[TraceFilter]) -> Snapshot {
        let (include, exclude): (Vec<&TraceFilter>, Vec<&TraceFilter>) =
            filters.iter().partition(|f| f.inclusive());
        let traces = self
            .traces
            .iter()
            .filter(|t| include.is_empty() || include.iter().any(|f| f.matches(t)))
            .filter(|t| exclude.iter().all(|f| f.matches(t)))
            .cloned()
            .collect();
        Snapshot {
            traces,
            traceback_limit: self.traceback_limit,
            sample_interval: self.sample_interval,
        }
    }

    /// The keys a trace counts under: one, or with `cumulative` one per distinct frame.
    fn keys(trace: &Trace, key: KeyType, cumulative: bool) -> Vec<Traceback> {
        let one = |f: &Frame| match key {
            KeyType::Filename => Traceback::new(std::vec![Frame::new(&f.filename, 0, "")]),
            _ => Traceback::new(std::vec![Frame::new(&f.filename, f.lineno, "")]),
        };
        match (key, cumulative) {
            (KeyType::Traceback, _) => std::vec![trace.traceback.clone()],
            (_, false) => std::vec![one(trace.traceback.site())],
            (_, true) => {
                let mut seen = HashSet::new();
                trace
                    .traceback
                    .frames()
                    .iter()
                    .map(one)
                    .filter(|k| seen.insert(k.clone()))
                    .collect()
            }
        }
    }

    fn grouped(
        &self,
        key: KeyType,
        cumulative: bool,
    ) -> Result<HashMap<Traceback, (usize, usize)>, TracingError> {
        if cumulative && key == KeyType::Traceback {
            return Err(TracingError::CumulativeTraceback);
        }
        if self.sample_interval.is_some() {
            let mut groups: HashMap<Traceback, (f64, f64)> = HashMap::new();
            for t in &self.traces {
                let (bytes, blocks) = self.weight(t.size);
                for k in Self::keys(t, key, cumulative) {
                    let g = groups.entry(k).or_default();
                    g.0 += bytes;
                    g.1 += blocks;
                }
            }
            return Ok(groups
                .into_iter()
                .map(|(k, (bytes, blocks))| (k, (bytes.round() as usize, blocks.round() as usize)))
                .collect());
        }
        let mut groups: HashMap<Traceback, (usize, usize)> = HashMap::new();
        for t in &self.traces {
            for k in Self::keys(t, key, cumulative) {
                let g = groups.entry(k).or_default();
                g.0 += t.size;
                g.1 += 1;
            }
        }
        Ok(groups)
    }

    /// Statistics grouped by `key`, largest first (then most blocks); with `cumulative`, a trace
    /// counts for every file or line of its traceback (tracemalloc's `statistics`).
    pub fn statistics(
        &self,
        key: KeyType,
        cumulative: bool,
    ) -> Result<Vec<Statistic>, TracingError> {
        let mut stats: Vec<Statistic> = self
            .grouped(key, cumulative)?
            .into_iter()
            .map(|(traceback, (size, count))| Statistic {
                traceback,
                size,
                count,
            })
            .collect();
        stats.sort_by(|a, b| {
            (Reverse(a.size), Reverse(a.count), &a.traceback).cmp(&(
                Reverse(b.size),
                Reverse(b.count),
                &b.traceback,
            ))
        });
        Ok(stats)
    }

    /// The differences from `old` to this snapshot, grouped by `key`, the largest change in
    /// bytes first (tracemalloc's `compare_to`).
    pub fn compare_to(
        &self,
        old: &Snapshot,
        key: KeyType,
        cumulative: bool,
    ) -> Result<Vec<StatisticDiff>, TracingError> {
        let new = self.grouped(key, cumulative)?;
        let mut old = old.grouped(key, cumulative)?;
        let mut diffs: Vec<StatisticDiff> = new
            .into_iter()
            .map(|(traceback, (size, count))| {
                let (os, oc) = old.remove(&traceback).unwrap_or((0, 0));
                StatisticDiff {
                    traceback,
                    size,
                    size_diff: size as isize - os as isize,
                    count,
                    count_diff: count as isize - oc as isize,
                }
            })
            .collect();
        diffs.extend(old.into_iter().map(|(traceback, (os, oc))| StatisticDiff {
            traceback,
            size: 0,
            size_diff: -(os as isize),
            count: 0,
            count_diff: -(oc as isize),
        }));
        diffs.sort_by(|a, b| {
            let k = |d: &StatisticDiff| {
                (
                    Reverse(d.size_diff.unsigned_abs()),
                    Reverse(d.size),
                    Reverse(d.count_diff.unsigned_abs()),
                    Reverse(d.count),
                )
            };
            (k(a), &a.traceback).cmp(&(k(b), &b.traceback))
        });
        Ok(diffs)
    }

    /// The `limit` largest groups by `key` as text, one line per group, then the rest and the
    /// total, as tracemalloc's documentation prints its "top".
    pub fn format_top(&self, key: KeyType, limit: usize) -> String {
        let stats = self
            .statistics(key, false)
            .expect("non-cumulative statistics always group");
        let mut s = format!("Top {} by {:?}\n", limit.min(stats.len()), key);
        for (i, st) in stats.iter().take(limit).enumerate() {
            s += &format!("#{}: {st}\n", i + 1);
            if key == KeyType::Traceback {
                s += &format!("{:#}", st.traceback);
            }
        }
        let rest = &stats[limit.min(stats.len())..];
        if !rest.is_empty() {
            let size: usize = rest.iter().map(|s| s.size).sum();
            let count: usize = rest.iter().map(|s| s.count).sum();
            s += &format!(
                "{} other: size={}, count={count}\n",
                rest.len(),
                format_size(size as isize, false)
            );
        }
        s += &format!(
            "Total allocated size: {}\n",
            format_size(self.total_size() as isize, false)
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_stars_and_question_marks_over_whole_names() {
        assert!(glob("*.rs", "src/a.rs"));
        assert!(glob("src/?.rs", "src/a.rs"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("*.rs", "src/a.rsx"));
        assert!(!glob("src/?.rs", "src/ab.rs"));
        assert!(!glob("a", "ab"));
    }

    #[test]
    fn sizes_read_as_tracemalloc_prints_them() {
        assert_eq!(format_size(0, true), "+0 B");
        assert_eq!(format_size(10 * 1024 - 1, false), "10239 B");
        assert_eq!(format_size(10 * 1024, false), "10.0 KiB");
        assert_eq!(format_size(5 << 30, false), "5120 MiB");
        assert_eq!(format_size(50 << 30, false), "50.0 GiB");
    }
}
