//! The run's figures through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`), so any exporter the program installs (Prometheus, OpenTelemetry, statsd)
//! gets them unchanged.
//!
//! Every series carries the label `conductor`: the worker type, so that several
//! conductors in one program stay apart.
//!
//! | name | kind | what |
//! |---|---|---|
//! | `conductor_jobs_submitted_total` | counter | jobs taken from the source |
//! | `conductor_jobs_completed_total` | counter | jobs that gave an output |
//! | `conductor_jobs_failed_total` | counter | jobs that failed for good |
//! | `conductor_jobs_retried_total` | counter | runs that returned an error and were retried |
//! | `conductor_jobs_skipped_total` | counter | jobs done by an earlier run (journal, resume) |
//! | `conductor_jobs_in_flight` | gauge | jobs sent to workers and not answered |
//! | `conductor_jobs_queued` | gauge | jobs taken from the source, waiting for a worker |
//! | `conductor_workers` | gauge | live workers |
//! | `conductor_worker_jobs_completed_total{run,worker}` | counter | a worker's completed jobs |
//! | `conductor_worker_jobs_failed_total{run,worker}` | counter | a worker's failed runs |
//! | `conductor_job_duration_seconds` | histogram | how long job code ran, measured in the worker |
//! | `conductor_stat{name}` | gauge | a counter of job code ([`Worker::count`](crate::Worker::count)), summed over workers |
//! | `conductor_worker_stat{run,worker,name}` | gauge | the same, per worker |
//!
//! Per-worker series carry the run's id (`run`: the conductor's id) because worker
//! ids start again at 1 in each run; each worker a run starts (recycled ones too)
//! adds its own series, so a very long run with `max_jobs_per_worker` adds many.
//!
//! Counts of the run are published on every turn of the run loop; per-worker counts,
//! job code's counters and durations with each worker's stats roll (every
//! `stats_interval`, and when the worker leaves).
//!
//! Without the feature, [`RunMetrics`] does nothing and workers do not time jobs.

#[cfg(feature = "metrics")]
pub(crate) use on::RunMetrics;

#[cfg(not(feature = "metrics"))]
pub(crate) use off::RunMetrics;

/// The counts of a run at one moment, as the ledger keeps them.
#[derive(Default, Clone, Copy)]
#[cfg_attr(not(any(feature = "metrics", feature = "nats")), allow(dead_code))]
pub(crate) struct RunCounts {
    pub submitted: u64,
    pub completed: u64,
    pub failed: u64,
    pub retried: u64,
    pub skipped: u64,
    pub in_flight: u64,
    pub queued: u64,
    pub workers: u64,
}

/// The middle of a duration bucket (`wire::duration_bucket`), in seconds; `None` for a
/// bucket no duration falls in.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn bucket_seconds(bucket: u16) -> Option<f64> {
    use crate::wire::{DURATION_BUCKETS, EXACT_NANOS};
    let bucket = bucket as u64;
    if bucket as usize >= DURATION_BUCKETS {
        return None;
    }
    if bucket < EXACT_NANOS {
        return Some(bucket as f64 / 1e9);
    }
    let (power, eighth) = (bucket / 8 + 2, bucket % 8);
    let width = 1u64 << (power - 3);
    let low = (8 + eighth) << (power - 3);
    Some((low as f64 + width as f64 / 2.0) / 1e9)
}

/// Whether workers should time their jobs: only when the figures go somewhere.
pub(crate) fn wanted() -> bool {
    cfg!(feature = "metrics")
}

#[cfg(feature = "metrics")]
mod on {
    use metrics::{counter, gauge, histogram, Unit};

    use super::bucket_seconds;
    use super::RunCounts;
    use crate::stats::{StatsReport, JOBS_DONE, JOBS_FAILED};
    use crate::wire::StatsRoll;

    const COUNTERS: [&str; 5] = [
        "conductor_jobs_submitted_total",
        "conductor_jobs_completed_total",
        "conductor_jobs_failed_total",
        "conductor_jobs_retried_total",
        "conductor_jobs_skipped_total",
    ];

    /// What the run has published so far: counters move by the difference.
    pub(crate) struct RunMetrics {
        conductor: String,
        /// The conductor's id, for per-worker series.
        run: String,
        published: RunCounts,
    }

    impl RunMetrics {
        pub fn new(worker_type: &str, run: &str) -> Self {
            describe();
            let label = [("conductor", worker_type.to_string())];
            // Counters show from the start, at zero, as scrapers expect.
            for name in COUNTERS {
                counter!(name, &label).increment(0);
            }
            RunMetrics {
                conductor: worker_type.to_string(),
                run: run.to_string(),
                published: RunCounts::default(),
            }
        }

        /// Publishes the run's counts, moving each counter by what changed.
        pub fn publish(&mut self, now: RunCounts) {
            let label = [("conductor", self.conductor.clone())];
            let was = self.published;
            let moved = |name: &'static str, now: u64, was: u64| {
                if now > was {
                    counter!(name, &label).increment(now - was);
                }
            };
            moved(
                "conductor_jobs_submitted_total",
                now.submitted,
                was.submitted,
            );
            moved(
                "conductor_jobs_completed_total",
                now.completed,
                was.completed,
            );
            moved("conductor_jobs_failed_total", now.failed, was.failed);
            moved("conductor_jobs_retried_total", now.retried, was.retried);
            moved("conductor_jobs_skipped_total", now.skipped, was.skipped);
            if (now.in_flight, now.queued, now.workers) != (was.in_flight, was.queued, was.workers)
            {
                gauge!("conductor_jobs_in_flight", &label).set(now.in_flight as f64);
                gauge!("conductor_jobs_queued", &label).set(now.queued as f64);
                gauge!("conductor_workers", &label).set(now.workers as f64);
            }
            self.published = now;
        }

        /// A worker's stats roll: its counts, job code's counters, and durations.
        pub fn worker_roll(&mut self, worker: u64, roll: &StatsRoll) {
            let worker = worker.to_string();
            // Worker ids start at 1 in each run: the run's id keeps two runs apart.
            let labels = [
                ("conductor", self.conductor.clone()),
                ("run", self.run.clone()),
                ("worker", worker.clone()),
            ];
            for (name, last) in &roll.last {
                let value = (*last).max(0) as u64;
                match name.as_str() {
                    JOBS_DONE => {
                        counter!("conductor_worker_jobs_completed_total", &labels).absolute(value)
                    }
                    JOBS_FAILED => {
                        counter!("conductor_worker_jobs_failed_total", &labels).absolute(value)
                    }
                    _ => gauge!(
                        "conductor_worker_stat",
                        "conductor" => self.conductor.clone(),
                        "run" => self.run.clone(),
                        "worker" => worker.clone(),
                        "name" => name.clone()
                    )
                    .set(*last as f64),
                }
            }
            let durations = histogram!(
                "conductor_job_duration_seconds",
                "conductor" => self.conductor.clone()
            );
            // No more timed jobs than the roll counts (done and failed alike).
            let jobs: i64 = roll
                .diff
                .iter()
                .filter(|(name, _)| name == JOBS_DONE || name == JOBS_FAILED)
                .map(|(_, n)| *n)
                .sum();
            let mut left = jobs.max(0) as u64;
            for (bucket, count) in &roll.durations {
                let (Some(seconds), count) = (bucket_seconds(*bucket), (*count).min(left)) else {
                    continue;
                };
                left -= count;
                durations.record_many(seconds, count as usize);
            }
        }

        /// A stats report: job code's counters, summed over the workers.
        pub fn report(&mut self, report: &StatsReport) {
            for (name, value) in &report.agg.last {
                if name != JOBS_DONE && name != JOBS_FAILED {
                    gauge!("conductor_stat", "conductor" => self.conductor.clone(), "name" => name.clone())
                        .set(*value as f64);
                }
            }
        }
    }

    /// Says what each series is, for exporters that show it.
    fn describe() {
        use metrics::{describe_counter, describe_gauge, describe_histogram};
        describe_counter!(
            "conductor_jobs_submitted_total",
            "Jobs taken from the source."
        );
        describe_counter!(
            "conductor_jobs_completed_total",
            "Jobs that gave an output."
        );
        describe_counter!("conductor_jobs_failed_total", "Jobs that failed for good.");
        describe_counter!(
            "conductor_jobs_retried_total",
            "Runs that returned an error and were retried."
        );
        describe_counter!(
            "conductor_jobs_skipped_total",
            "Jobs an earlier run had done (journal, resumed run)."
        );
        describe_gauge!(
            "conductor_jobs_in_flight",
            "Jobs sent to workers, not answered yet."
        );
        describe_gauge!(
            "conductor_jobs_queued",
            "Jobs taken from the source, waiting for a worker."
        );
        describe_gauge!("conductor_workers", "Live workers.");
        describe_counter!(
            "conductor_worker_jobs_completed_total",
            "Jobs a worker completed."
        );
        describe_counter!(
            "conductor_worker_jobs_failed_total",
            "Job runs that failed on a worker."
        );
        describe_histogram!(
            "conductor_job_duration_seconds",
            Unit::Seconds,
            "How long job code ran, measured in the worker."
        );
        describe_gauge!(
            "conductor_stat",
            "A counter of job code, summed over the workers."
        );
        describe_gauge!(
            "conductor_worker_stat",
            "A counter of job code, per worker."
        );
    }
}

#[cfg(not(feature = "metrics"))]
mod off {
    use super::RunCounts;
    use crate::stats::StatsReport;
    use crate::wire::StatsRoll;

    /// Without the feature: nothing to publish.
    pub(crate) struct RunMetrics;

    impl RunMetrics {
        pub fn new(_worker_type: &str, _run: &str) -> Self {
            RunMetrics
        }
        pub fn publish(&mut self, _now: RunCounts) {}
        pub fn worker_roll(&mut self, _worker: u64, _roll: &StatsRoll) {}
        pub fn report(&mut self, _report: &StatsReport) {}
    }
}

#[cfg(test)]
mod tests {
    use super::bucket_seconds;
    use crate::wire::{duration_bucket, DURATION_BUCKETS};
    use std::time::Duration;

    #[test]
    fn a_duration_buckets_middle_is_close_to_every_duration_in_it() {
        for nanos in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            1000,
            123_456,
            999_999_999,
            3_600_000_000_000,
            u64::MAX,
        ] {
            let bucket = duration_bucket(Duration::from_nanos(nanos));
            assert!((bucket as usize) < DURATION_BUCKETS, "{nanos}: {bucket}");
            let middle = bucket_seconds(bucket).unwrap() * 1e9;
            let error = (middle - nanos as f64).abs() / (nanos as f64).max(1.0);
            assert!(
                error <= 1.0 / 16.0 + 1e-9,
                "{nanos} ns: bucket {bucket}, middle {middle}"
            );
        }
        assert_eq!(bucket_seconds(DURATION_BUCKETS as u16), None);
        assert_eq!(
            bucket_seconds(u16::MAX),
            None,
            "a forged bucket is no duration"
        );
    }
}
