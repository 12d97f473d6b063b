//! Deadlines, checked on every tick: a worker that does not start in time, one that
//! holds jobs and says nothing (not even the heartbeat a thread beside its job sends:
//! stopped, frozen, or stuck mid-frame), a job that runs past its timeout, a remote
//! worker gone silent, and the end of a stop's grace.

use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};

use super::SlotState;
use crate::master::ending::Phase;
use crate::master::ledger::Blame;
use crate::master::Master;

/// A gap this long between two checks of the deadlines (checked every 50 ms) means
/// the master was away, not its workers.
const MASTER_AWAY: Duration = Duration::from_secs(1);

/// A worker on another machine that says nothing for this long is taken for gone.
const REMOTE_SILENCE: Duration = Duration::from_secs(4);

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    pub(in crate::master) fn check_deadlines(&mut self) {
        let now = Instant::now();
        self.forgive_the_masters_absence(now);
        self.let_silent_workers_go(now);
        match self.ending.phase {
            Phase::Running | Phase::Draining(_) => {}
            Phase::Finishing(deadline) | Phase::Aborting(deadline) | Phase::Failed(deadline) => {
                if now >= deadline {
                    self.kill_everyone_left();
                }
                return;
            }
        }
        let mut overdue = Vec::new();
        for (&worker_id, slot) in &self.workers.slots {
            match slot.state {
                SlotState::Starting(since) if now - since > self.settings.startup_timeout => {
                    overdue.push((
                        worker_id,
                        format!("did not start within {:?}", self.settings.startup_timeout),
                        Blame::Oldest,
                    ));
                }
                SlotState::Ready | SlotState::Stopping if self.is_silent(slot, worker_id, now) => {
                    let silence = now - slot.last_seen;
                    overdue.push((
                        worker_id,
                        format!(
                            "sent nothing for {:.1} s while holding jobs (stopped, frozen, \
                             or stuck in the middle of a frame)",
                            silence.as_secs_f64()
                        ),
                        Blame::Oldest,
                    ));
                }
                SlotState::Ready => {
                    let Some(timeout) = self.settings.job_timeout else {
                        continue;
                    };
                    if let Some((job_id, started)) = self.accounts.ledger.oldest_running(worker_id)
                    {
                        if now - started > timeout {
                            overdue.push((
                                worker_id,
                                format!("timed out after {timeout:?} on job {job_id}"),
                                Blame::TimedOut,
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        for (worker_id, reason, blame) in overdue {
            log!(self, warn, worker_id, "killing worker: it {reason}");
            self.kill_worker(worker_id, reason, blame);
        }
    }

    /// After a gap in the master's own checks (the master was stopped with Ctrl-Z or
    /// SIGSTOP, the machine suspended, its thread starved), the silence it finds is its
    /// own: what its workers sent meanwhile waits unread. Every worker gets a fresh
    /// bound rather than being taken for dead.
    fn forgive_the_masters_absence(&mut self, now: Instant) {
        let previous = self.workers.deadlines_checked.replace(now);
        if previous.is_some_and(|at| now - at > MASTER_AWAY) {
            for slot in self.workers.slots.values_mut() {
                slot.last_seen = now;
            }
        }
    }

    /// Whether one of our workers holds jobs and has said nothing, not even a heartbeat,
    /// for longer than the liveness bound. Remote workers have their own rule.
    fn is_silent(&self, slot: &super::WorkerSlot, worker_id: u64, now: Instant) -> bool {
        let Some(bound) = self.settings.liveness_timeout else {
            return false;
        };
        !slot.remote
            && now - slot.last_seen > bound
            && self.accounts.ledger.in_flight_on(worker_id) > 0
    }

    /// Remote workers silent for too long are let go. Not a crash (the network, or the
    /// server restarting): they may come back.
    fn let_silent_workers_go(&mut self, now: Instant) {
        let silent: Vec<u64> = self
            .workers
            .slots
            .iter()
            .filter(|(_, w)| w.remote && now - w.last_seen > REMOTE_SILENCE)
            .map(|(id, _)| *id)
            .collect();
        for worker_id in silent {
            let reason = format!("went silent for {REMOTE_SILENCE:?}");
            log!(self, warn, worker_id, "remote worker {reason}");
            if let Some(slot) = self.workers.slots.get_mut(&worker_id) {
                slot.said_bye = true;
            }
            self.workers.silent.insert(worker_id);
            self.on_exit(worker_id, Err(std::io::Error::other(reason)));
        }
    }

    /// The grace of a stop is over: our workers are killed, remote ones let go.
    fn kill_everyone_left(&mut self) {
        let remote: Vec<u64> = self
            .workers
            .slots
            .iter()
            .filter(|(_, w)| w.remote)
            .map(|(id, _)| *id)
            .collect();
        for slot in self.workers.slots.values() {
            slot.kill.notify_one();
        }
        // Not ours to kill: they are let go.
        for worker_id in remote {
            let reason = std::io::Error::other("did not stop in time");
            self.on_exit(worker_id, Err(reason));
        }
    }
}
