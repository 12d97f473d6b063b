//! Worker counters, their periodic rolls, and the master's aggregated reports.
//!
//! Each worker keeps named counters (`jobsDone` and `jobsFailed` are automatic, job
//! code adds its own) and rolls them every stats interval: the roll carries the
//! counters (`last`), their change since the previous roll (`diff`) and the time the
//! roll covers. The master emits one [`StatsReport`] per round, once every live
//! worker has rolled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::wire::StatsRoll;

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

/// The master's side: collects rolls until every live worker has sent one.
#[derive(Default)]
pub(crate) struct Aggregator {
    round: BTreeMap<u64, WorkerStats>,
}

impl Aggregator {
    /// Adds a roll; returns a report when it completes the round for `live` workers.
    pub fn add(
        &mut self,
        worker_id: u64,
        roll: StatsRoll,
        live: &BTreeSet<u64>,
    ) -> Option<StatsReport> {
        let stats = WorkerStats {
            span: Duration::from_millis(roll.span_ms),
            diff: roll.diff.into_iter().collect(),
            last: roll.last.into_iter().collect(),
        };
        // A worker that rolls twice in one round (a final roll on exit right after a
        // periodic one) contributes its latest roll with both diffs added up.
        match self.round.get_mut(&worker_id) {
            Some(previous) => {
                previous.span = previous.span.saturating_add(stats.span);
                for (k, v) in stats.diff {
                    add_to(previous.diff.entry(k).or_default(), v);
                }
                previous.last = stats.last;
            }
            None => {
                self.round.insert(worker_id, stats);
            }
        }
        self.complete(live)
    }

    /// Re-checks the round after a worker left the live set.
    pub fn complete(&mut self, live: &BTreeSet<u64>) -> Option<StatsReport> {
        if self.round.is_empty() || !live.iter().all(|id| self.round.contains_key(id)) {
            return None;
        }
        self.take()
    }

    /// Emits whatever the round holds, for the end of a run.
    pub fn take(&mut self) -> Option<StatsReport> {
        if self.round.is_empty() {
            return None;
        }
        let raw = std::mem::take(&mut self.round);
        let mut agg = Aggregate::default();
        let mut total_span = Duration::ZERO;
        for stats in raw.values() {
            total_span = total_span.saturating_add(stats.span);
            for (k, v) in &stats.last {
                add_to(agg.last.entry(k.clone()).or_default(), *v);
            }
            for (k, v) in &stats.diff {
                add_to(agg.diff.entry(k.clone()).or_default(), *v);
            }
        }
        let avg_span = total_span / raw.len() as u32;
        Some(StatsReport { raw, agg, avg_span })
    }
}

/// Counters come from job code and other processes: they saturate, never panic.
fn add_to(total: &mut i64, value: i64) {
    *total = total.saturating_add(value);
}

/// The worker's side: counters and what they were at the previous roll. The two
/// automatic counters are atomics, so finishing a job takes no lock.
pub(crate) struct StatsBook {
    done: AtomicI64,
    failed: AtomicI64,
    inner: Mutex<BookState>,
}

struct BookState {
    counters: Counters,
    last_rolled: Counters,
    rolled_at: Instant,
}

impl StatsBook {
    pub fn new() -> Self {
        let counters: Counters = [(JOBS_DONE.to_string(), 0), (JOBS_FAILED.to_string(), 0)].into();
        StatsBook {
            done: AtomicI64::new(0),
            failed: AtomicI64::new(0),
            inner: Mutex::new(BookState {
                last_rolled: counters.clone(),
                counters,
                rolled_at: Instant::now(),
            }),
        }
    }

    /// Counts one finished job.
    pub fn job_finished(&self, ok: bool) {
        let counter = if ok { &self.done } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn automatic(&self, name: &str) -> Option<&AtomicI64> {
        match name {
            JOBS_DONE => Some(&self.done),
            JOBS_FAILED => Some(&self.failed),
            _ => None,
        }
    }

    pub fn add(&self, name: &str, delta: i64) {
        if let Some(counter) = self.automatic(name) {
            counter.fetch_add(delta, Ordering::Relaxed);
            return;
        }
        let mut state = self.lock();
        match state.counters.get_mut(name) {
            Some(value) => add_to(value, delta),
            None => {
                state.counters.insert(name.to_string(), delta);
            }
        }
    }

    pub fn set(&self, name: &str, value: i64) {
        match self.automatic(name) {
            Some(counter) => counter.store(value, Ordering::Relaxed),
            None => {
                self.lock().counters.insert(name.to_string(), value);
            }
        }
    }

    pub fn snapshot(&self) -> Counters {
        let mut state = self.lock();
        self.merge_automatic(&mut state);
        state.counters.clone()
    }

    fn merge_automatic(&self, state: &mut BookState) {
        state
            .counters
            .insert(JOBS_DONE.to_string(), self.done.load(Ordering::Relaxed));
        state
            .counters
            .insert(JOBS_FAILED.to_string(), self.failed.load(Ordering::Relaxed));
    }

    pub fn last_rolled(&self) -> Counters {
        self.lock().last_rolled.clone()
    }

    /// Closes the current interval: returns the roll to send and starts a new one.
    pub fn roll(&self) -> StatsRoll {
        let mut state = self.lock();
        self.merge_automatic(&mut state);
        let now = Instant::now();
        let span = now - state.rolled_at;
        let diff = state
            .counters
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.saturating_sub(state.last_rolled.get(k).copied().unwrap_or(0)),
                )
            })
            .collect();
        let last: Vec<(String, i64)> = state
            .counters
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        state.last_rolled = state.counters.clone();
        state.rolled_at = now;
        StatsRoll {
            span_ms: span.as_millis() as u64,
            last,
            diff,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BookState> {
        // Counters stay usable even if job code panicked while holding the lock.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roll(span_ms: u64, last: &[(&str, i64)], diff: &[(&str, i64)]) -> StatsRoll {
        let pairs = |p: &[(&str, i64)]| p.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        StatsRoll {
            span_ms,
            last: pairs(last),
            diff: pairs(diff),
        }
    }

    #[test]
    fn a_report_waits_for_every_live_worker() {
        let live: BTreeSet<u64> = [1, 2].into();
        let mut agg = Aggregator::default();
        assert!(agg
            .add(1, roll(1000, &[("jobsDone", 5)], &[("jobsDone", 5)]), &live)
            .is_none());
        let report = agg
            .add(2, roll(3000, &[("jobsDone", 7)], &[("jobsDone", 2)]), &live)
            .unwrap();
        assert_eq!(report.agg.last["jobsDone"], 12);
        assert_eq!(report.agg.diff["jobsDone"], 7);
        assert_eq!(report.avg_span, Duration::from_millis(2000));
        assert_eq!(report.worker_count(), 2);
        assert!((report.rate("jobsDone") - 3.5).abs() < 1e-9);
    }

    #[test]
    fn a_worker_leaving_completes_the_round() {
        let mut live: BTreeSet<u64> = [1, 2].into();
        let mut agg = Aggregator::default();
        assert!(agg
            .add(1, roll(10, &[("x", 1)], &[("x", 1)]), &live)
            .is_none());
        live.remove(&2);
        assert_eq!(agg.complete(&live).unwrap().raw.len(), 1);
        assert!(agg.take().is_none());
    }

    #[test]
    fn the_book_rolls_differences() {
        let book = StatsBook::new();
        book.add(JOBS_DONE, 2);
        book.job_finished(true);
        book.job_finished(false);
        book.add("rows", 10);
        let first = book.roll();
        assert!(first.diff.contains(&("rows".to_string(), 10)));
        book.add("rows", 5);
        let second = book.roll();
        assert!(second.diff.contains(&("rows".to_string(), 5)));
        assert!(second.last.contains(&("rows".to_string(), 15)));
        assert_eq!(book.last_rolled()["jobsDone"], 3);
        assert_eq!(book.snapshot()["jobsFailed"], 1);
    }
}
