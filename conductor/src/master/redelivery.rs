//! A run queue's message that came again: its worker before died or lost its lease.
//!
//! A message of the run queue carries several jobs, and the server redelivers it
//! whole. The worker that gets it again asks which of its jobs are still to run: those
//! settled are passed over, and the one that was running alone when its worker stopped
//! is charged an attempt (or fails, its attempts used up). The others only waited
//! behind it, and run again uncharged. The jobs it runs again, it runs one at a time,
//! each announced first (`RunningAlone`): if the message comes once more, the job that
//! was running is known, as the local mode's suspects are.

use serde::{de::DeserializeOwned, Serialize};

use super::{Master, RUN_QUEUE};
use crate::report::FailureKind;
use crate::wire::{control_frame, FailedAs, ToWorker, TIMED_OUT};

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// Answers worker `worker_id`, to which `jobs` came again.
    pub(super) fn on_redelivered(&mut self, worker_id: u64, ask: u64, jobs: Vec<u64>) {
        let mut run = Vec::with_capacity(jobs.len());
        let mut failed = Vec::new();
        for id in jobs {
            let stopped_in = self.accounts.running_alone.remove(&id);
            let ledger = &mut self.accounts.ledger;
            if !ledger.holds(RUN_QUEUE, id) {
                // Settled already; or not yet taken from the source by this master (a
                // resumed run), which then knows nothing against it.
                if id >= ledger.next_id() && !self.accounts.settled_before.contains_key(&id) {
                    run.push(id);
                }
                continue;
            }
            let Some((kind, reason)) = stopped_in else {
                run.push(id);
                continue;
            };
            match ledger.charge_held(RUN_QUEUE, id, kind, &reason) {
                Some(error) => failed.push((id, failed_as(kind), error)),
                None => run.push(id),
            }
        }
        log!(
            self,
            debug,
            worker_id,
            run = run.len(),
            failed = failed.len(),
            "jobs of a message that came again"
        );
        if let Some(slot) = self.workers.slots.get(&worker_id) {
            let reply = ToWorker::Redelivery { ask, run, failed };
            let _ = slot.link.send(control_frame(&reply));
        }
    }

    /// Job `id` runs alone on worker `worker_id`: the one to charge if it comes again.
    pub(super) fn on_running_alone(&mut self, worker_id: u64, id: u64) {
        let reason =
            format!("its worker {worker_id} stopped while it ran (died, or lost its lease)");
        self.blame_on_queue(id, FailureKind::Crashed, reason);
    }

    /// A worker of the run queue crashed in job `id` (or gave up on it, timed out):
    /// the one to charge when its message comes again.
    pub(super) fn on_crashed_in(&mut self, worker_id: u64, id: u64, reason: &str) {
        let kind = match reason.starts_with(TIMED_OUT) {
            true => FailureKind::TimedOut,
            false => FailureKind::Crashed,
        };
        self.blame_on_queue(id, kind, format!("worker {worker_id} {reason}"));
    }

    fn blame_on_queue(&mut self, id: u64, kind: FailureKind, reason: String) {
        if self.accounts.ledger.holds(RUN_QUEUE, id) {
            self.accounts.running_alone.insert(id, (kind, reason));
        }
    }
}

/// How the worker reports a job that used up its attempts.
fn failed_as(kind: FailureKind) -> FailedAs {
    match kind {
        FailureKind::TimedOut => FailedAs::TimedOut,
        _ => FailedAs::Crashed,
    }
}
