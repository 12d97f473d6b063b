//! A worker leaves: after its goodbye, killed by the master, or dead unexpectedly.
//! An unexpected death is a crash: its jobs go back to the ledger (the one it was
//! running charged an attempt), and deaths without progress end the run as a crash
//! loop.

use std::os::unix::process::ExitStatusExt;

use serde::{de::DeserializeOwned, Serialize};

use super::SlotState;
use crate::error::{Error, Kind};
use crate::event::{Event, WorkerCrash, WorkerExit};
use crate::master::ending::Phase;
use crate::master::ledger::Blame;
use crate::master::Master;
use crate::transport::Feed;
use crate::wire::{control_frame, ToWorker};

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// The worker broke the protocol: it is stopped, its jobs taken back.
    pub(in crate::master) fn on_broken(&mut self, worker_id: u64, reason: String) {
        log!(
            self,
            error,
            worker_id,
            "worker broke the protocol: {reason}"
        );
        self.kill_worker(
            worker_id,
            format!("broke the protocol: {reason}"),
            Blame::Unknown,
        );
    }

    /// Stops a worker that misbehaved and takes its jobs back at once.
    pub(in crate::master) fn kill_worker(&mut self, worker_id: u64, reason: String, blame: Blame) {
        let Some(slot) = self.workers.slots.get_mut(&worker_id) else {
            return;
        };
        if slot.state == SlotState::Killed {
            return;
        }
        if slot.remote {
            // Not ours to kill: told to stop and let go; the queue takes its jobs back.
            let _ = slot.link.send(control_frame(&ToWorker::Abort));
            self.on_exit(worker_id, Err(std::io::Error::other(reason)));
            return;
        }
        slot.state = SlotState::Killed;
        slot.kill.notify_one();
        slot.kill_reason = Some(reason.clone());
        self.shared.forget_worker(worker_id);
        self.close_lane(worker_id);
        self.take_back_jobs(worker_id, blame, &reason);
    }

    /// Takes a lost worker's jobs back into the ledger: the one to blame is charged an
    /// attempt, and fails if it has none left.
    fn take_back_jobs(&mut self, worker_id: u64, blame: Blame, reason: &str) {
        let reason = format!("worker {worker_id} {reason}");
        for failure in self.accounts.ledger.worker_lost(worker_id, blame, &reason) {
            self.record_failure(failure);
        }
    }

    /// The worker is gone: its slot goes, and an unexpected exit is a crash.
    pub(in crate::master) fn on_exit(
        &mut self,
        worker_id: u64,
        status: std::io::Result<std::process::ExitStatus>,
    ) {
        self.close_lane(worker_id);
        let Some(slot) = self.workers.slots.remove(&worker_id) else {
            return;
        };
        slot.link.close();
        self.shared.forget_worker(worker_id);
        self.worker_logs.forget(worker_id);
        self.feeding.run_queue.forget(worker_id);
        let (code, signal) = match &status {
            Ok(status) => (status.code(), status.signal()),
            Err(_) => (None, None),
        };
        // A bye with jobs still in flight is a broken promise, handled as a crash.
        let said_bye = slot.said_bye && self.accounts.ledger.in_flight_on(worker_id) == 0;
        // A worker fed from a run queue holds no job of the ledger's: its clean exit
        // is its bye (which travels apart from its exit), and one told to stop (its
        // join refused as the run ends, say) leaves however it exits.
        let from_queue = slot.feed == Feed::RunQueue;
        let clean_exit = from_queue && code == Some(0);
        let told_to_stop = from_queue && slot.state == SlotState::Stopping;
        let expected = said_bye
            || clean_exit
            || told_to_stop
            || matches!(self.ending.phase, Phase::Aborting(_) | Phase::Failed(_));
        if !expected {
            self.workers.crashes += 1;
            let reason = match (&slot.kill_reason, &slot.crash, &status) {
                (Some(reason), _, _) => format!("killed by the master: it {reason}"),
                (None, Some((reason, _)), _) => format!("crashed: {reason}"),
                (None, None, Ok(status)) => format!("exited unexpectedly ({status})"),
                (None, None, Err(e)) => format!("could not be waited for: {e}"),
            };
            log!(self, warn, worker_id, ?code, ?signal, "worker {reason}");
            if slot.state != SlotState::Killed {
                let blame = match &slot.crash {
                    Some((_, Some(job))) => Blame::Job(*job),
                    Some((_, None)) => Blame::Nobody,
                    None => Blame::Unknown,
                };
                self.take_back_jobs(worker_id, blame, &reason);
            }
            if slot.answers == 0 && self.ending.phase == Phase::Running {
                self.workers.deaths_without_progress += 1;
                self.workers.last_death = format!("worker {worker_id} {reason}");
            }
            self.events.push(Event::WorkerCrashed(WorkerCrash {
                worker_id,
                code,
                signal,
                reason,
            }));
        } else {
            log!(self, debug, worker_id, ?code, ?signal, "worker exited");
        }
        self.events.push(Event::WorkerExited(WorkerExit {
            worker_id,
            code,
            signal,
        }));
        let live = self.workers.live();
        if let Some(report) = self.stats.complete(&live) {
            self.publish_stats(report);
        }
        self.check_crash_loop();
    }

    /// Ends the run when workers keep dying before they finish anything.
    fn check_crash_loop(&mut self) {
        let limit = self.settings.crash_loop_limit.unwrap_or_else(|| {
            (2 * self.settings.worker_limit as u32).max(4) + self.settings.max_attempts
        });
        let deaths = self.workers.deaths_without_progress;
        if deaths < limit || self.ending.phase != Phase::Running {
            return;
        }
        log!(
            self,
            error,
            "crash loop: {deaths} workers died before finishing a job"
        );
        let error = Error::new(Kind::CrashLoop {
            deaths,
            last: self.workers.last_death.clone(),
            completed: self.accounts.ledger.completed(),
            failed: self.accounts.ledger.failed(),
        });
        self.fail(error);
    }
}
