//! Stats rounds: the rolls of every live worker gathered into one report.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::stats::{add_to, Aggregate, StatsReport, WorkerStats};
use crate::wire::StatsRoll;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn roll(span_ms: u64, last: &[(&str, i64)], diff: &[(&str, i64)]) -> StatsRoll {
        let pairs = |p: &[(&str, i64)]| p.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        StatsRoll {
            span_ms,
            last: pairs(last),
            diff: pairs(diff),
            durations: Vec::new(),
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
}
