//! One measurement, as the runner prints it (a JSON object per line) and `cargo xtask bench`
//! collects it into `target/bench/report.json`.

/// One workload on one allocator: repeated samples of the time per operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Workload name (`pairs`, `churn`, ...).
    pub workload: String,
    /// Allocator name (see [`crate::peers::ALL`]).
    pub allocator: String,
    /// Threads that ran the workload.
    pub threads: usize,
    /// The size of each block in bytes, for a workload that allocates blocks of one size
    /// (`pairs`); `None` elsewhere.
    pub block_bytes: Option<usize>,
    /// How many blocks the workload keeps live, for a workload run at several such counts
    /// (`sweep`); `None` elsewhere.
    pub live_blocks: Option<usize>,
    /// Nanoseconds per operation, one per sample.
    pub samples_ns: Vec<f64>,
    /// Peak resident set size of the process in KiB, where the platform tells.
    pub peak_rss_kib: Option<u64>,
    /// Resident set size in KiB after the workload freed everything, where the platform tells.
    pub rss_after_free_kib: Option<u64>,
}

impl Record {
    /// The median sample.
    pub fn median(&self) -> f64 {
        let mut s = self.samples_ns.clone();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        if n == 0 {
            return f64::NAN;
        }
        if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        }
    }

    /// The spread of the samples: (max - min) / median.
    pub fn spread(&self) -> f64 {
        let min = self
            .samples_ns
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let max = self
            .samples_ns
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        (max - min) / self.median()
    }

    /// The record as one line of JSON (with its median and spread), as `cargo xtask bench`
    /// reads it.
    pub fn to_json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            workload: &'a str,
            allocator: &'a str,
            threads: usize,
            block_bytes: Option<usize>,
            live_blocks: Option<usize>,
            median_ns: f64,
            spread: f64,
            samples_ns: &'a [f64],
            peak_rss_kib: Option<u64>,
            rss_after_free_kib: Option<u64>,
        }
        serde_json::to_string(&Line {
            workload: &self.workload,
            allocator: &self.allocator,
            threads: self.threads,
            block_bytes: self.block_bytes,
            live_blocks: self.live_blocks,
            median_ns: self.median(),
            spread: self.spread(),
            samples_ns: &self.samples_ns,
            peak_rss_kib: self.peak_rss_kib,
            rss_after_free_kib: self.rss_after_free_kib,
        })
        .expect("a record serializes")
    }
}

/// The process's peak resident set size in KiB (`VmHWM` on linux), or `None` elsewhere.
pub fn peak_rss_kib() -> Option<u64> {
    status_kib("VmHWM:")
}

/// The process's resident set size now, in KiB (`VmRSS` on linux), or `None` elsewhere.
pub fn rss_kib() -> Option<u64> {
    status_kib("VmRSS:")
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_json_are_exact() {
        let r = Record {
            workload: "pairs".into(),
            allocator: "system".into(),
            threads: 1,
            block_bytes: Some(64),
            live_blocks: None,
            samples_ns: vec![3.0, 1.0, 2.0],
            peak_rss_kib: None,
            rss_after_free_kib: Some(5),
        };
        assert_eq!(r.median(), 2.0);
        assert_eq!(r.spread(), 1.0);
        assert_eq!(
            r.to_json(),
            "{\"workload\":\"pairs\",\"allocator\":\"system\",\"threads\":1,\"block_bytes\":64,\
             \"live_blocks\":null,\
             \"median_ns\":2.0,\"spread\":1.0,\"samples_ns\":[3.0,1.0,2.0],\
             \"peak_rss_kib\":null,\"rss_after_free_kib\":5}"
        );
        // Names are escaped, never written raw.
        let odd = Record {
            workload: "a\"b".into(),
            ..r
        };
        let back: serde_json::Value = serde_json::from_str(&odd.to_json()).unwrap();
        assert_eq!(back["workload"], "a\"b");
    }
}
