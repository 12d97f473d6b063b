//! Worker counters, their periodic rolls, and the master's aggregated reports.
//!
//! Each worker keeps named counters (`jobsDone` and `jobsFailed` are automatic, job
//! code adds its own) and rolls them every stats interval: the roll carries the
//! counters (`last`), their change since the previous roll (`diff`) and the time the
//! roll covers. The master emits one [`StatsReport`] per round, once every live
//! worker has rolled.
//!
//! This module holds what callers read; the worker's counters live in the worker
//! (`worker/counters.rs`), the rounds in the master (`master/stats_round.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

/// Named counters, as the seed's `{ jobsDone: 0, ... }` objects.
pub type Counters = BTreeMap<String, i64>;

/// The automatic counter of finished jobs (the seed's name).
pub const JOBS_DONE: &str = "jobsDone";
/// The automatic counter of jobs that returned an error or panicked.
pub const JOBS_FAILED: &str = "jobsFailed";

/// One worker's part of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerStats {
    /// How long this worker's roll covers.
    pub span: Duration,
    /// Change of each counter during `span`.
    pub diff: Counters,
    /// Counter values at the end of `span`.
    pub last: Counters,
}

/// Sums over all workers of one round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregate {
    /// Sum of every worker's counters.
    pub last: Counters,
    /// Sum of every worker's change during the round.
    pub diff: Counters,
}

/// One aggregated statistics report: the seed's `stats` event.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsReport {
    /// Each reporting worker's roll, by worker id.
    pub raw: BTreeMap<u64, WorkerStats>,
    /// Sums over all reporting workers.
    pub agg: Aggregate,
    /// Mean time span of the rolls, for per-second rates: `agg.diff[k] / avg_span`.
    pub avg_span: Duration,
}

impl StatsReport {
    /// How many workers contributed to this report.
    pub fn worker_count(&self) -> usize {
        self.raw.len()
    }

    /// Rate of a counter per second over the round, or 0 for an unknown counter.
    pub fn rate(&self, counter: &str) -> f64 {
        let secs = self.avg_span.as_secs_f64();
        match self.agg.diff.get(counter) {
            Some(&diff) if secs > 0.0 => diff as f64 / secs,
            _ => 0.0,
        }
    }
}

/// Counters come from job code and other processes: they saturate, never panic.
pub(crate) fn add_to(total: &mut i64, value: i64) {
    *total = total.saturating_add(value);
}
