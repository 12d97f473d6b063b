//! Results coming back: each answer settles its job in the ledger once, becomes an
//! output or a failure for the caller and a line in the journal, and teaches the
//! worker's pacer how long its jobs take.

use std::time::Instant;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use super::ledger::{Blame, Failure, Settled};
use super::{Master, RUN_QUEUE};
use crate::event::Event;
use crate::report::{FailureKind, JobOutput};
use crate::transport::Feed;
use crate::wire::{value, FailedAs, ResultsReader};

/// How many of a run queue's last settled jobs keep their attempt.
const SETTLED_ATTEMPTS_KEPT: usize = 4096;

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    pub(super) fn on_results(&mut self, worker_id: u64, body: Bytes) {
        let started = self.oldest_start(worker_id);
        let now = Instant::now();
        let count = self.settle_results(worker_id, body, now);
        if self.holder(worker_id) == RUN_QUEUE {
            self.feeding.run_queue.observe(worker_id, count, now);
        }
        self.after_answers(worker_id, count, started, now);
    }

    /// Who holds a worker's jobs in the ledger: the worker itself when it is fed its
    /// own jobs; the run queue when it pulls from one, or when the worker is no longer
    /// known (only a run queue outlives its workers).
    pub(super) fn holder(&self, worker_id: u64) -> u64 {
        match self.workers.slots.get(&worker_id).map(|w| w.feed) {
            Some(Feed::Own) => worker_id,
            Some(Feed::RunQueue) | None => RUN_QUEUE,
        }
    }

    /// When the oldest job the worker holds started, as far as the master can tell.
    pub(super) fn oldest_start(&self, worker_id: u64) -> Option<Instant> {
        self.accounts
            .ledger
            .oldest_running(self.holder(worker_id))
            .map(|(_, at)| at)
    }

    /// Settles the answers of one results frame; returns how many jobs it settled.
    pub(super) fn settle_results(&mut self, worker_id: u64, body: Bytes, now: Instant) -> usize {
        let holder = self.holder(worker_id);
        let mut count = 0;
        for entry in ResultsReader::new(&body) {
            let entry = match entry {
                Ok(entry) => entry,
                // Anyone may have put it in the run queue: it is dropped, not its sender.
                Err(e) if holder == RUN_QUEUE => {
                    log!(
                        self,
                        warn,
                        worker_id,
                        "a broken results message was dropped: {e}"
                    );
                    break;
                }
                Err(e) => {
                    let reason = format!("sent a broken results frame: {e}");
                    self.kill_worker(worker_id, reason, Blame::Unknown);
                    return count;
                }
            };
            // Every output is decoded, even for a caller who does not read them, so
            // that `run()` and `collect()` count the same run the same way.
            let mut output = None;
            let encoded = entry.outcome.as_ref().ok().copied();
            let outcome = match entry.outcome {
                Ok(bytes) => match value::from_slice::<O>(bytes) {
                    Ok(decoded) => {
                        output = Some(decoded);
                        Ok(())
                    }
                    Err(e) => Err((FailureKind::Protocol, format!("the output {e}"))),
                },
                Err((failed, error)) => Err((
                    failure_kind(failed),
                    String::from_utf8_lossy(error).into_owned(),
                )),
            };
            if holder == RUN_QUEUE && entry.id >= self.accounts.ledger.next_id() {
                // Finished before this master took the job from its source: a run
                // resumed after its master stopped. Kept until the source gets there.
                let before = match outcome {
                    Ok(()) => Ok(body.slice_ref(encoded.unwrap_or_default())),
                    Err((_, error)) => Err(error),
                };
                self.accounts.settled_before.insert(entry.id, before);
                continue;
            }
            if holder == RUN_QUEUE {
                self.remember_attempt(entry.id);
            }
            let Some(settled) = self.accounts.ledger.settle(holder, entry.id, outcome, now) else {
                continue;
            };
            if !self.accounts.running_alone.is_empty() {
                self.accounts.running_alone.remove(&entry.id);
            }
            count += 1;
            match settled {
                Settled::Completed { id, job } => {
                    if let Some(journal) = &mut self.accounts.journal {
                        journal.record_completed(id, encoded.unwrap_or_default());
                    }
                    if let Some(output) = output.filter(|_| self.events.listening()) {
                        self.events.push(Event::Output(JobOutput {
                            id,
                            worker_id,
                            job,
                            output,
                        }));
                    }
                }
                Settled::Failed(failure) => self.record_failure(failure),
                Settled::Retrying => {}
            }
        }
        count
    }

    /// Keeps the attempt of a run queue's job about to be settled, for its worker's log
    /// records that come after its results.
    fn remember_attempt(&mut self, id: u64) {
        let Some(attempt) = self.accounts.ledger.attempt_of(RUN_QUEUE, id) else {
            return;
        };
        let recent = &mut self.accounts.settled_attempts;
        if recent.len() == SETTLED_ATTEMPTS_KEPT {
            recent.pop_front();
        }
        recent.push_back((id, attempt));
    }

    /// Learns from `count` answers that came `now`, the oldest of their jobs having
    /// started at `started`.
    pub(super) fn after_answers(
        &mut self,
        worker_id: u64,
        count: usize,
        started: Option<Instant>,
        now: Instant,
    ) {
        if count == 0 {
            return;
        }
        self.workers.progressed();
        if let Some(slot) = self.workers.slots.get_mut(&worker_id) {
            slot.answers += count as u64;
            if let Some(started) = started {
                slot.pacer
                    .observe(count, now.saturating_duration_since(started));
            }
        }
        self.maybe_recycle(worker_id);
    }

    /// A job failed for good: the journal, the caller and the report hear of it.
    pub(super) fn record_failure(&mut self, failure: Failure<J>) {
        // A job settled for good is progress, even when its worker died of it.
        self.workers.progressed();
        let (id, attempts) = (failure.id, failure.attempts);
        log!(
            self,
            warn,
            job_id = id,
            attempts,
            "job failed: {}",
            failure.error
        );
        if let Some(journal) = &mut self.accounts.journal {
            journal.record_failed(id, &failure.error);
        }
        if self.events.listening() {
            self.events.push(Event::Failed(failure.clone()));
        }
        self.accounts.failures.push(failure);
    }
}

/// How a worker said a job failed, as the caller sees it.
fn failure_kind(failed: FailedAs) -> FailureKind {
    match failed {
        FailedAs::Returned => FailureKind::Returned,
        FailedAs::Panicked => FailureKind::Panicked,
        FailedAs::Protocol => FailureKind::Protocol,
        FailedAs::Crashed => FailureKind::Crashed,
        FailedAs::Permanent => FailureKind::Permanent,
        FailedAs::TimedOut => FailureKind::TimedOut,
    }
}
