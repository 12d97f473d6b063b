//! The run as the dashboard shows it: a snapshot of the books, made a few times a
//! second while a dashboard is served (never otherwise), and once more at the end.

use std::time::Instant;

use serde::{de::DeserializeOwned, Serialize};

use super::ending::Phase;
use super::workers::SlotState;
use super::Master;
use crate::dashboard::snapshot::{FailureView, WorkerView};
use crate::dashboard::Snapshot;
use crate::stats::{JOBS_DONE, JOBS_FAILED};

/// How many of the latest failures the page lists.
const FAILURES_SHOWN: usize = 20;
/// How much of an error the page shows.
const ERROR_SHOWN_BYTES: usize = 2048;

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// Hands the dashboard a snapshot, if one is served and the last is old.
    pub(super) fn show_dashboard(&mut self) {
        // Checked first: the run loop calls this on every turn, dashboard or not.
        if !self.dashboard.is_served() {
            return;
        }
        let now = Instant::now();
        if self.dashboard.due(now) {
            let snapshot = self.snapshot(now, false);
            self.dashboard.publish(snapshot);
        }
    }

    /// The run has ended: the dashboard says so before it goes.
    pub(super) async fn close_dashboard(&mut self) {
        if self.dashboard.is_served() {
            let snapshot = self.snapshot(Instant::now(), true);
            self.dashboard.close(snapshot).await;
        }
    }

    fn snapshot(&self, now: Instant, ended: bool) -> Snapshot {
        let ledger = &self.accounts.ledger;
        let workers = self
            .workers
            .slots
            .iter()
            .map(|(&id, slot)| {
                // Workers that take jobs from a run queue hold none the master can name:
                // they show as joined, with what they answered.
                let queue_fed = self.holder(id) != id;
                let running = ledger
                    .oldest_running(self.holder(id))
                    .filter(|_| !queue_fed);
                let busy = !queue_fed && ledger.in_flight_on(id) > 0;
                WorkerView {
                    id,
                    remote: slot.remote,
                    state: match slot.state {
                        SlotState::Starting(_) => "starting",
                        SlotState::Stopping => "stopping",
                        SlotState::Killed => "killed",
                        SlotState::Ready if queue_fed => "joined",
                        SlotState::Ready if busy => "busy",
                        SlotState::Ready => "idle",
                    },
                    job: running.map(|(job, _)| job),
                    running_for: running.map(|(_, since)| (now - since).as_secs_f64()),
                    answers: slot.answers,
                }
            })
            .collect();
        let failures = self
            .accounts
            .failures
            .iter()
            .rev()
            .take(FAILURES_SHOWN)
            .rev();
        let failures = failures
            .map(|f| FailureView {
                job: f.id,
                kind: f.kind.to_string(),
                error: shortened(&f.error),
                attempts: f.attempts,
                history: f
                    .history
                    .iter()
                    .map(|a| shortened(&format!("{}: {}", a.kind, a.error)))
                    .collect(),
            })
            .collect();
        let stats = self
            .shared
            .last_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|report| {
                let own = report.agg.last.iter().filter(|(k, _)| !is_automatic(k));
                own.map(|(k, v)| (k.clone(), *v)).collect()
            })
            .unwrap_or_default();
        Snapshot {
            conductor: self.settings.worker_type.clone(),
            id: self.shared.id.clone(),
            state: match (ended, self.ending.phase == Phase::Running) {
                (true, _) => "ended",
                (false, true) => "running",
                (false, false) => "stopping",
            },
            elapsed: (now - self.started).as_secs_f64(),
            total: self.total_jobs,
            submitted: ledger.submitted(),
            completed: ledger.completed(),
            failed: ledger.failed(),
            skipped: self.accounts.skipped(),
            retried: ledger.retried(),
            in_flight: ledger.in_flight() as u64,
            queued: ledger.queued() as u64,
            workers,
            failures,
            stats,
        }
    }
}

/// The counters every worker keeps by itself: the page shows their figures already.
fn is_automatic(counter: &str) -> bool {
    counter == JOBS_DONE || counter == JOBS_FAILED
}

/// `error`, cut to [`ERROR_SHOWN_BYTES`] on a character boundary.
fn shortened(error: &str) -> String {
    if error.len() <= ERROR_SHOWN_BYTES {
        return error.to_string();
    }
    let mut cut = ERROR_SHOWN_BYTES;
    while !error.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &error[..cut])
}
