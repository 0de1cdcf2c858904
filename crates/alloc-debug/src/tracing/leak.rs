//! What is still live, and whether a piece of code left memory behind.

use core::fmt;
use std::vec::Vec;

use super::snapshot::{KeyType, Snapshot, Statistic, StatisticDiff, format_size};

/// The live traced blocks at one moment, grouped by site (file and line), largest first.
#[derive(Debug, Clone)]
pub struct LeakReport {
    /// Live blocks.
    pub blocks: usize,
    /// Bytes they hold.
    pub bytes: usize,
    /// One entry per site.
    pub sites: Vec<Statistic>,
}

impl LeakReport {
    /// The report of a snapshot's traces.
    pub fn from_snapshot(snapshot: &Snapshot) -> Self {
        let sites = snapshot
            .statistics(KeyType::Lineno, false)
            .expect("non-cumulative statistics always group");
        LeakReport {
            blocks: snapshot.total_blocks(),
            bytes: snapshot.total_size(),
            sites,
        }
    }

    /// Whether nothing traced is live.
    pub fn is_empty(&self) -> bool {
        self.blocks == 0
    }
}

impl fmt::Display for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} live blocks, {} in {} sites",
            self.blocks,
            format_size(self.bytes as isize, false),
            self.sites.len()
        )?;
        for s in &self.sites {
            writeln!(f, "  {s}")?;
        }
        Ok(())
    }
}

/// Memory a closure left behind: what [`Tracing::check_no_growth`](super::Tracing::check_no_growth)
/// returns when the traced bytes or blocks grew.
#[derive(Debug, Clone)]
pub struct Growth {
    /// Change in traced bytes.
    pub bytes: isize,
    /// Change in live blocks.
    pub blocks: isize,
    /// The sites whose bytes or blocks grew, by whole traceback, largest growth first.
    pub sites: Vec<StatisticDiff>,
}

impl Growth {
    /// The growth from `before` to `after`, or `None` if neither bytes nor blocks grew.
    pub fn between(before: &Snapshot, after: &Snapshot) -> Option<Growth> {
        let bytes = after.total_size() as isize - before.total_size() as isize;
        let blocks = after.total_blocks() as isize - before.total_blocks() as isize;
        if bytes <= 0 && blocks <= 0 {
            return None;
        }
        let sites = after
            .compare_to(before, KeyType::Traceback, false)
            .expect("non-cumulative statistics always group")
            .into_iter()
            .filter(|d| d.size_diff > 0 || d.count_diff > 0)
            .collect();
        Some(Growth {
            bytes,
            blocks,
            sites,
        })
    }
}

impl fmt::Display for Growth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "memory grew across the closure: {} in {:+} blocks still live",
            format_size(self.bytes, true),
            self.blocks
        )?;
        for d in &self.sites {
            writeln!(f, "  {d}")?;
            write!(f, "{:#}", d.traceback)?;
        }
        Ok(())
    }
}

impl std::error::Error for Growth {}
