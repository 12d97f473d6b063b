//! Jobs from the caller's source into the ledger: pulled only as far as the workers'
//! windows need, so memory stays flat however long the source is.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use crate::event::Event;
use crate::jobs::Jobs;
use crate::master::{Master, RUN_QUEUE};
use crate::report::JobOutput;
use crate::wire::value;

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
        if self.transport.queue_window() > 0 {
            let queue_window = self.run_queue_window();
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

    /// Admits pulled jobs to the ledger, passing over those an earlier run finished:
    /// their outputs reach the caller as if they had just finished.
    pub(in crate::master) fn accept_jobs(&mut self, pulled: &mut Vec<J>) {
        for job in pulled.drain(..) {
            let id = self.accounts.ledger.next_id();
            // A resumed distributed run: an earlier master saw this job through.
            let before = match self.accounts.settled_before.is_empty() {
                true => None,
                false => self.accounts.settled_before.remove(&id),
            };
            // Done in an earlier run, says the journal: it never enters this one.
            let journaled = match &mut self.accounts.journal {
                Some(journal) => journal.admit(&job, id),
                None => None,
            };
            if let Some(kept) = journaled {
                if self.pass_over_done(&job, kept) {
                    continue;
                }
                if let Some(journal) = &mut self.accounts.journal {
                    journal.readmit(&job, id);
                }
            }
            match before {
                Some(Ok(output)) if self.pass_over_done(&job, Some(output.clone())) => {
                    self.accounts.resumed += 1;
                    if let Some(journal) = &mut self.accounts.journal {
                        journal.record_completed(id, &output);
                    }
                }
                Some(Err(error)) => {
                    let failure = self.accounts.ledger.submit_failed(job, error);
                    self.record_failure(failure);
                }
                Some(Ok(_)) | None => {
                    self.accounts.ledger.submit(job);
                }
            }
        }
    }

    /// Passes over the next job, done by an earlier run with `output` (encoded, when
    /// it was kept), and hands that output to the caller. False when the output no
    /// longer reads as `O` (the program changed since): the job must run again.
    fn pass_over_done(&mut self, job: &J, output: Option<Bytes>) -> bool {
        let id = self.accounts.ledger.next_id();
        if let Some(bytes) = output {
            match value::from_slice::<O>(&bytes) {
                Ok(output) if self.events.listening() => {
                    self.events.push(Event::Output(JobOutput {
                        id,
                        worker_id: 0,
                        job: job.clone(),
                        output,
                    }));
                }
                Ok(_) => {}
                Err(e) => {
                    log!(
                        self,
                        warn,
                        job_id = id,
                        "an earlier run's output cannot be read, so the job runs again: the output {e}"
                    );
                    return false;
                }
            }
        }
        self.accounts.ledger.pass_over();
        true
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
