//! What the dashboard shows: the run at one moment, as the master sees it.

use serde::Serialize;

/// The run at one moment. Sent to the page as JSON a few times a second.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Snapshot {
    /// The worker type: the conductor's label.
    pub conductor: String,
    pub id: String,
    /// `running`, `stopping` (no new job starts), or `ended`.
    pub state: &'static str,
    /// Seconds since the run started.
    pub elapsed: f64,
    /// Jobs in all, when the source says.
    pub total: Option<u64>,
    pub submitted: u64,
    pub completed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub retried: u64,
    pub in_flight: u64,
    pub queued: u64,
    pub workers: Vec<WorkerView>,
    /// The most recent failures, newest last.
    pub failures: Vec<FailureView>,
    /// Job code's counters, summed over workers (the last stats report).
    pub stats: Vec<(String, i64)>,
}

/// One worker, as the dashboard lists it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WorkerView {
    pub id: u64,
    /// Joined from elsewhere (the distributed mode), not started here.
    pub remote: bool,
    /// `starting`, `busy`, `idle`, `stopping` or `killed`; `joined` for a worker that
    /// takes its jobs from the run's queue (distributed mode), whose job the master
    /// cannot name.
    pub state: &'static str,
    /// The job it runs now and for how many seconds, as far as the master can tell.
    pub job: Option<u64>,
    pub running_for: Option<f64>,
    /// Answers it gave: outputs and failures.
    pub answers: u64,
}

/// A job that failed for good.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FailureView {
    pub job: u64,
    /// `returned`, `permanent`, `panicked`, `timed out`, `crashed`, `protocol`, ...
    pub kind: String,
    pub error: String,
    pub attempts: u32,
    /// How each earlier run ended.
    pub history: Vec<String>,
}
