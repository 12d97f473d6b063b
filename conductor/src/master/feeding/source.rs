//! Jobs from the caller's source into the ledger: pulled only as far as the workers'
//! windows need, so memory stays flat however long the source is.

use serde::{de::DeserializeOwned, Serialize};

use crate::jobs::Jobs;
use crate::master::{Master, RUN_QUEUE};

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// How many more jobs to pull from the source now: enough to refill every
    /// worker's window (or the run queue's).
    pub(in crate::master) fn wanted_jobs(&self) -> usize {
        if self.accounts.catching_up {
            return 0;
        }
        let ledger = &self.accounts.ledger;
        let queue_window = self.transport.queue_window();
        if queue_window > 0 {
            // Only what goes on the queue at once: a job pulled from the source is
            // handed out in the same turn, so no result can find it still unpublished.
            let held = ledger.ready() + ledger.in_flight_on(RUN_QUEUE);
            return queue_window.saturating_sub(held);
        }
        let windows: usize = self
            .workers
            .slots
            .values()
            .map(|w| match w.lane {
                Some(_) => w.pacer.window() + w.pacer.staged_target(),
                None => w.pacer.window(),
            })
            .sum();
        let target = windows.max(self.settings.worker_limit) * 2;
        target.saturating_sub(ledger.ready())
    }

    /// Admits pulled jobs to the ledger, passing over those an earlier run finished.
    pub(in crate::master) fn accept_jobs(&mut self, pulled: &mut Vec<J>) {
        for job in pulled.drain(..) {
            let accounts = &mut self.accounts;
            if let Some(journal) = &mut accounts.journal {
                // Done in an earlier run: it never enters this one.
                if !journal.admit(&job, accounts.ledger.next_id()) {
                    if !accounts.settled_before.is_empty() {
                        accounts.settled_before.remove(&accounts.ledger.next_id());
                    }
                    accounts.ledger.pass_over();
                    continue;
                }
            }
            // A resumed distributed run: an earlier master saw this job through.
            let before = match accounts.settled_before.is_empty() {
                true => None,
                false => accounts.settled_before.remove(&accounts.ledger.next_id()),
            };
            match before {
                None => {
                    accounts.ledger.submit(job);
                }
                Some(None) => {
                    accounts.ledger.pass_over();
                    accounts.resumed += 1;
                }
                Some(Some(error)) => {
                    let failure = accounts.ledger.submit_failed(job, error);
                    self.record_failure(failure);
                }
            }
        }
    }
}

/// The next jobs of an async source, up to `max`; pending forever once it has ended.
pub(in crate::master) async fn pull_stream<J>(
    source: &mut Option<Jobs<J>>,
    max: usize,
    into: &mut Vec<J>,
) -> bool {
    match source {
        Some(jobs) => jobs.pull_ready(max.max(1), into).await,
        None => std::future::pending().await,
    }
}
