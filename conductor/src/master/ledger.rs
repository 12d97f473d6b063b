//! Job accounting: the one place that knows where every submitted job is.
//!
//! A job is *ready* (waiting to be sent), *in flight* on one worker, or *settled*
//! (completed or failed) exactly once. Jobs of a worker that dies go back to the
//! ready queues; nothing is dropped, and a late result for a job that was already
//! requeued is ignored, so at the end `completed + failed + not run = submitted`.
//!
//! Blame for a crash is charged only where it is certain. When a worker dies with
//! several jobs in flight, nobody knows which one killed it, so they all come back
//! as *suspects* that are then sent one at a time to an otherwise idle worker: a
//! poison job then fails after its attempts run out, and its neighbours never pay.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde::Serialize;

use super::backoff::{jitter, Backoff};
pub(crate) use super::in_flight::PendingJob;
use super::in_flight::{InFlight, InFlightJobs};
use super::RUN_QUEUE;
use crate::report::{Attempt, FailureKind};
use crate::settings::Retry;
use crate::wire::BatchWriter;

/// A job whose fate is sealed, or put off.
pub(crate) enum Settled<J> {
    Completed {
        id: u64,
        job: J,
    },
    Failed(Failure<J>),
    /// It returned an error and will run again after its backoff.
    Retrying,
}

/// A job that failed for good: what the caller gets, made here.
pub(crate) use crate::report::JobFailure as Failure;

/// Who is to blame when a worker stops without answering all its jobs.
pub(crate) enum Blame {
    /// The worker said which job it was running when it crashed.
    Job(u64),
    /// The oldest job in flight ran past the job timeout.
    TimedOut,
    /// The oldest job in flight was running when its worker stopped answering.
    Oldest,
    /// The worker said it was not running any job (it failed to start, say).
    Nobody,
    /// Nobody knows.
    Unknown,
}

struct WorkerQueue<J> {
    jobs: InFlightJobs<J>,
    last_progress: Option<Instant>,
    /// The worker holds a suspect: it gets nothing else until that answers.
    isolating: bool,
}

impl<J> WorkerQueue<J> {
    /// The queue of `holder`: a worker's jobs in the order sent, a run queue's by id.
    fn of(holder: u64) -> Self {
        WorkerQueue {
            jobs: match holder {
                RUN_QUEUE => InFlightJobs::ById(Default::default()),
                _ => InFlightJobs::Ordered(VecDeque::new()),
            },
            last_progress: None,
            isolating: false,
        }
    }
}

pub(crate) struct Ledger<J> {
    fresh: VecDeque<PendingJob<J>>,
    retry: VecDeque<PendingJob<J>>,
    suspects: VecDeque<PendingJob<J>>,
    /// By worker: a few entries, looked up for every answer, so a tree (no hashing).
    workers: BTreeMap<u64, WorkerQueue<J>>,
    in_flight: usize,
    submitted: u64,
    /// The id the next job from the source gets: its position in the source.
    next_id: u64,
    completed: u64,
    failed: u64,
    /// Runs that returned an error and were given another.
    retried: u64,
    max_attempts: u32,
    retry_policy: Retry,
    /// Jobs that returned an error, waiting for their retry.
    backoff: Backoff<PendingJob<J>>,
    /// Retried jobs the last `dispatch` sent, with their runs before: a run queue
    /// must tell them from the first sending.
    resent: Vec<(u64, u32)>,
}

impl<J> Ledger<J> {
    pub fn new(max_attempts: u32, retry: Retry) -> Self {
        Ledger {
            fresh: VecDeque::new(),
            retry: VecDeque::new(),
            suspects: VecDeque::new(),
            workers: BTreeMap::new(),
            in_flight: 0,
            submitted: 0,
            next_id: 0,
            completed: 0,
            failed: 0,
            retried: 0,
            max_attempts: max_attempts.max(1),
            retry_policy: retry,
            backoff: Backoff::default(),
            resent: Vec::new(),
        }
    }

    /// Takes a new job; returns its id (its position in submission order).
    pub fn submit(&mut self, job: J) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.submitted += 1;
        self.fresh.push_back(PendingJob {
            id,
            job,
            attempts: 0,
            returned: 0,
            history: Vec::new(),
        });
        id
    }

    /// The id the next job from the source will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Passes over the next job of the source: an earlier run finished it.
    pub fn pass_over(&mut self) {
        self.next_id += 1;
    }

    /// Takes the next job of the source as failed already (in an earlier run).
    pub fn submit_failed(&mut self, job: J, error: String) -> Failure<J> {
        let id = self.next_id;
        self.next_id += 1;
        self.submitted += 1;
        self.failed += 1;
        Failure {
            id,
            job,
            error,
            attempts: 1,
            kind: FailureKind::Earlier,
            history: Vec::new(),
        }
    }

    pub fn submitted(&self) -> u64 {
        self.submitted
    }

    pub fn completed(&self) -> u64 {
        self.completed
    }

    pub fn retried(&self) -> u64 {
        self.retried
    }

    /// Jobs waiting for a worker: ready now, or after their retry's backoff.
    pub fn queued(&self) -> usize {
        self.ready() + self.backoff.len()
    }

    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// Jobs waiting to be sent.
    pub fn ready(&self) -> usize {
        self.fresh.len() + self.retry.len() + self.suspects.len()
    }

    /// Jobs not yet settled, those waiting for a retry included.
    pub fn outstanding(&self) -> usize {
        self.ready() + self.in_flight + self.backoff.len()
    }

    /// Makes the jobs whose retry is due by `now` ready, first in line; says when the
    /// next retry is due.
    pub fn release_due(&mut self, now: Instant) -> Option<Instant> {
        if self.backoff.len() == 0 {
            return None;
        }
        let (due, next) = self.backoff.take_due(now);
        self.requeue(due);
        next
    }

    /// Jobs sent to workers and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn in_flight_on(&self, worker: u64) -> usize {
        self.workers.get(&worker).map_or(0, |q| q.jobs.len())
    }

    /// Records a worker's answer for job `id`, received at `now`. Returns `None` for an
    /// answer the ledger no longer expects from that worker (the job was requeued).
    pub fn settle(
        &mut self,
        worker: u64,
        id: u64,
        outcome: Result<(), (FailureKind, String)>,
        now: Instant,
    ) -> Option<Settled<J>> {
        let queue = self.workers.get_mut(&worker)?;
        let InFlight { job, .. } = queue.jobs.remove(id)?;
        queue.last_progress = Some(now);
        if queue.jobs.is_empty() {
            queue.isolating = false;
        }
        self.in_flight -= 1;
        Some(match outcome {
            Ok(()) => {
                self.completed += 1;
                Settled::Completed { id, job: job.job }
            }
            Err((FailureKind::Returned, error))
                if job.returned + 1 < self.retry_policy.attempts =>
            {
                let mut job = job;
                job.returned += 1;
                let delay = self
                    .retry_policy
                    .delay(job.returned, jitter(id, job.returned));
                job.history.push(Attempt {
                    kind: FailureKind::Returned,
                    error,
                });
                self.backoff.push(now + delay, id, job);
                self.retried += 1;
                Settled::Retrying
            }
            Err((kind, error)) => {
                self.failed += 1;
                Settled::Failed(Failure {
                    id,
                    attempts: job.attempts + job.returned + 1,
                    job: job.job,
                    error,
                    kind,
                    history: job.history,
                })
            }
        })
    }

    /// Which run of job `id` this is (1 for the first), while `worker` holds it.
    pub fn attempt_of(&self, worker: u64, id: u64) -> Option<u32> {
        let queue = self.workers.get(&worker)?;
        let in_flight = queue.jobs.get(id)?;
        Some(in_flight.job.attempts + in_flight.job.returned + 1)
    }

    /// The oldest job in flight on `worker` and when it started running, as far as
    /// the master can tell: when it was sent or when the job before it answered.
    pub fn oldest_running(&self, worker: u64) -> Option<(u64, Instant)> {
        let queue = self.workers.get(&worker)?;
        let front = queue.jobs.front()?;
        let started = match queue.last_progress {
            Some(progress) if progress > front.sent_at => progress,
            _ => front.sent_at,
        };
        Some((front.job.id, started))
    }

    /// Takes back every job of a worker that stopped. The blamed job counts an
    /// attempt and fails for good once it has used them all; the returned failures
    /// carry `reason`.
    pub fn worker_lost(&mut self, worker: u64, blame: Blame, reason: &str) -> Vec<Failure<J>> {
        let kind = match blame {
            Blame::TimedOut => FailureKind::TimedOut,
            _ => FailureKind::Crashed,
        };
        let Some(mut queue) = self.workers.remove(&worker) else {
            return Vec::new();
        };
        let mut jobs: Vec<PendingJob<J>> = queue.jobs.take_all();
        self.in_flight -= jobs.len();
        // `Some(culprit)` when blame is certain; the culprit may have answered already.
        let blamed = match blame {
            Blame::Job(id) => Some(jobs.iter().position(|j| j.id == id)),
            Blame::Oldest | Blame::TimedOut => Some((!jobs.is_empty()).then_some(0)),
            Blame::Nobody => Some(None),
            Blame::Unknown if jobs.len() == 1 => Some(Some(0)),
            Blame::Unknown => None,
        };
        let Some(culprit) = blamed else {
            self.suspects.extend(jobs);
            return Vec::new();
        };
        let mut failures = Vec::new();
        if let Some(index) = culprit {
            let mut job = jobs.remove(index);
            job.attempts += 1;
            let error = format!(
                "{reason} (attempt {} of {})",
                job.attempts, self.max_attempts
            );
            if job.attempts >= self.max_attempts {
                self.failed += 1;
                failures.push(Failure {
                    id: job.id,
                    attempts: job.attempts + job.returned,
                    job: job.job,
                    error,
                    kind,
                    history: job.history,
                });
            } else {
                job.history.push(Attempt { kind, error });
                self.suspects.push_back(job);
            }
        }
        // The others were only waiting behind the culprit: requeue them first.
        self.requeue(jobs);
        failures
    }

    /// Charges job `id`, which `holder` still holds, one attempt: its worker stopped
    /// while the job was running, and the job is to run again where it is (a run
    /// queue's message that came again). Returns the error to fail it with once it has
    /// used its attempts (its failure is settled when that is reported), or `None` if it
    /// runs again; `None` too when `holder` does not hold it.
    pub fn charge_held(
        &mut self,
        holder: u64,
        id: u64,
        kind: FailureKind,
        reason: &str,
    ) -> Option<String> {
        let queue = self.workers.get_mut(&holder)?;
        let job = &mut queue.jobs.get_mut(id)?.job;
        let error = format!(
            "{reason} (attempt {} of {})",
            job.attempts + 1,
            self.max_attempts
        );
        // The last attempt is counted when its failure settles.
        if job.attempts + 1 >= self.max_attempts {
            return Some(error);
        }
        job.attempts += 1;
        job.history.push(Attempt { kind, error });
        None
    }

    /// Whether `holder` holds job `id`, not yet settled.
    pub fn holds(&self, holder: u64, id: u64) -> bool {
        self.workers
            .get(&holder)
            .is_some_and(|q| q.jobs.get(id).is_some())
    }

    /// Takes back the `count` jobs sent to `worker` last, which it never received
    /// (they waited in its lane): they are ready again, in submission order before any
    /// fresh job, and no attempt is charged.
    pub fn give_back_newest(&mut self, worker: u64, count: usize) {
        let Some(queue) = self.workers.get_mut(&worker) else {
            return;
        };
        let jobs = queue.jobs.take_newest(count);
        self.in_flight -= jobs.len();
        self.requeue(jobs);
    }

    /// Takes back the jobs `ids` that `worker` received and says it will never start:
    /// ready again, uncharged, as [`Ledger::give_back_newest`]. Ids it no longer holds
    /// (answered, or already taken back) are passed over. Returns how many came back.
    pub fn give_back(&mut self, worker: u64, ids: &[u64]) -> usize {
        let Some(queue) = self.workers.get_mut(&worker) else {
            return 0;
        };
        let wanted: std::collections::BTreeSet<u64> = ids.iter().copied().collect();
        let jobs = queue.jobs.take_where(|id| wanted.contains(&id));
        if queue.jobs.is_empty() {
            queue.isolating = false;
        }
        let count = jobs.len();
        self.in_flight -= count;
        self.requeue(jobs);
        count
    }

    /// Puts jobs that were sent and come back uncharged first in line, keeping the
    /// line in submission order: every job that left the fresh queue is older than
    /// those still in it, so the retry queue sorted by id comes first.
    fn requeue(&mut self, mut jobs: Vec<PendingJob<J>>) {
        if jobs.is_empty() {
            return;
        }
        jobs.sort_by_key(|j| j.id);
        let in_order = self
            .retry
            .front()
            .is_none_or(|first| jobs.last().is_some_and(|last| last.id < first.id));
        if in_order {
            for job in jobs.into_iter().rev() {
                self.retry.push_front(job);
            }
            return;
        }
        jobs.extend(self.retry.drain(..));
        jobs.sort_by_key(|j| j.id);
        self.retry = jobs.into();
    }

    /// The retried jobs sent since the last call, with their runs before.
    pub fn take_resent(&mut self) -> Vec<(u64, u32)> {
        std::mem::take(&mut self.resent)
    }

    /// Every job that is not settled, in submission order, leaving the ledger empty.
    pub fn drain_not_run(&mut self) -> Vec<PendingJob<J>> {
        let mut jobs: Vec<PendingJob<J>> = Vec::with_capacity(self.outstanding());
        jobs.extend(self.suspects.drain(..));
        jobs.extend(self.retry.drain(..));
        jobs.extend(self.fresh.drain(..));
        jobs.extend(self.backoff.drain());
        for (_, mut queue) in std::mem::take(&mut self.workers) {
            jobs.extend(queue.jobs.take_all());
        }
        self.in_flight = 0;
        jobs.sort_by_key(|j| j.id);
        jobs
    }
}

impl<J: Serialize> Ledger<J> {
    /// Moves up to `room` ready jobs onto `worker`, encoding them into `batch` until it
    /// holds `max_bytes`. A job too large for a frame of `max_frame` bytes fails at
    /// once into `refused`. Returns how many jobs were sent.
    pub fn dispatch(
        &mut self,
        worker: u64,
        room: usize,
        max_bytes: usize,
        max_frame: usize,
        batch: &mut BatchWriter,
        refused: &mut Vec<Failure<J>>,
    ) -> usize {
        let now = Instant::now();
        self.resent.clear();
        let refused_before = refused.len();
        let sent = self.send_to(worker, room, max_bytes, max_frame, batch, refused, now);
        self.in_flight += sent;
        self.failed += (refused.len() - refused_before) as u64;
        sent
    }

    #[allow(clippy::too_many_arguments)]
    fn send_to(
        &mut self,
        worker: u64,
        room: usize,
        max_bytes: usize,
        max_frame: usize,
        batch: &mut BatchWriter,
        refused: &mut Vec<Failure<J>>,
        now: Instant,
    ) -> usize {
        let queue = self
            .workers
            .entry(worker)
            .or_insert_with(|| WorkerQueue::of(worker));
        if room == 0 || queue.isolating {
            return 0;
        }
        let mut sent = 0;
        if !self.suspects.is_empty() {
            // Suspects go alone to an idle worker; busy workers drain meanwhile.
            if !queue.jobs.is_empty() {
                return 0;
            }
            while let Some(job) = self.suspects.pop_front() {
                match batch.push_job_encoded(job.id, &job.job, max_frame) {
                    Ok(()) => {
                        queue.isolating = true;
                        queue.jobs.push_back(InFlight { job, sent_at: now });
                        return 1;
                    }
                    Err(error) => refused.push(refusal(job, error)),
                }
            }
            return 0;
        }
        while sent < room && (sent == 0 || batch.byte_len() < max_bytes) {
            let next = match self.retry.front() {
                Some(_) => &mut self.retry,
                None => &mut self.fresh,
            };
            let Some(job) = next.pop_front() else { break };
            let before = batch.byte_len();
            match batch.push_job_encoded(job.id, &job.job, max_frame) {
                // A frame never outgrows the limit: the job that would overflow it
                // waits for the next frame.
                Ok(()) if sent > 0 && batch.body_len() > max_frame => {
                    batch.take_back(before);
                    next.push_front(job);
                    break;
                }
                Ok(()) => {
                    if job.returned > 0 {
                        self.resent.push((job.id, job.returned));
                    }
                    queue.jobs.push_back(InFlight { job, sent_at: now });
                    sent += 1;
                }
                Err(error) => refused.push(refusal(job, error)),
            }
        }
        sent
    }
}

fn refusal<J>(job: PendingJob<J>, error: String) -> Failure<J> {
    Failure {
        id: job.id,
        job: job.job,
        error,
        attempts: job.attempts + job.returned,
        kind: FailureKind::Protocol,
        history: job.history,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger_with(jobs: u64, max_attempts: u32) -> Ledger<u64> {
        let mut ledger = Ledger::new(max_attempts, Retry::default());
        for n in 0..jobs {
            ledger.submit(n);
        }
        ledger
    }

    fn send(ledger: &mut Ledger<u64>, worker: u64, room: usize) -> usize {
        let mut refused = Vec::new();
        let sent = ledger.dispatch(
            worker,
            room,
            1 << 20,
            1 << 20,
            &mut BatchWriter::jobs(64),
            &mut refused,
        );
        assert!(refused.is_empty());
        sent
    }

    fn settle(
        ledger: &mut Ledger<u64>,
        worker: u64,
        id: u64,
        outcome: Result<(), String>,
    ) -> Option<Settled<u64>> {
        let outcome = outcome.map_err(|e| (FailureKind::Returned, e));
        ledger.settle(worker, id, outcome, Instant::now())
    }

    #[test]
    fn every_job_settles_once() {
        let mut ledger = ledger_with(4, 3);
        assert_eq!(send(&mut ledger, 1, 3), 3);
        assert!(matches!(
            settle(&mut ledger, 1, 0, Ok(())),
            Some(Settled::Completed { id: 0, .. })
        ));
        assert!(
            settle(&mut ledger, 1, 0, Ok(())).is_none(),
            "a second answer is ignored"
        );
        assert!(matches!(
            settle(&mut ledger, 1, 1, Err("bad".into())),
            Some(Settled::Failed(_))
        ));
        assert_eq!(
            (ledger.completed(), ledger.failed(), ledger.outstanding()),
            (1, 1, 2)
        );
    }

    #[test]
    fn an_unknown_culprit_makes_suspects_that_run_alone() {
        let mut ledger = ledger_with(5, 2);
        assert_eq!(send(&mut ledger, 1, 3), 3);
        assert!(ledger.worker_lost(1, Blame::Unknown, "crashed").is_empty());
        assert_eq!(ledger.outstanding(), 5);
        // One suspect at a time, and a busy worker gets nothing until it is idle.
        assert_eq!(send(&mut ledger, 2, 10), 1);
        assert_eq!(send(&mut ledger, 2, 10), 0);
        assert_eq!(send(&mut ledger, 3, 10), 1);
        // Worker 2 dies alone with job 0: that is certain blame.
        assert!(ledger.worker_lost(2, Blame::Unknown, "crashed").is_empty());
        assert_eq!(send(&mut ledger, 4, 10), 1);
        assert!(matches!(
            settle(&mut ledger, 4, 2, Ok(())),
            Some(Settled::Completed { id: 2, .. })
        ));
        // Job 0 runs alone again and kills its worker a second time: out of attempts.
        assert_eq!(send(&mut ledger, 4, 10), 1);
        let failures = ledger.worker_lost(4, Blame::Unknown, "crashed");
        assert_eq!(failures.len(), 1);
        assert_eq!((failures[0].id, failures[0].attempts), (0, 2));
        assert!(
            failures[0].error.contains("attempt 2 of 2"),
            "{}",
            failures[0].error
        );
        assert_eq!(
            ledger.completed() + ledger.failed() + ledger.outstanding() as u64,
            5
        );
    }

    #[test]
    fn a_named_culprit_is_charged_and_the_rest_requeued() {
        let mut ledger = ledger_with(3, 3);
        send(&mut ledger, 1, 3);
        ledger.worker_lost(1, Blame::Job(1), "crashed");
        // Job 1 is a suspect now; the others are plain retries.
        assert_eq!(send(&mut ledger, 2, 10), 1);
        assert!(matches!(
            settle(&mut ledger, 2, 1, Ok(())),
            Some(Settled::Completed { id: 1, .. })
        ));
        assert_eq!(send(&mut ledger, 2, 10), 2);
        let not_run: Vec<u64> = ledger.drain_not_run().iter().map(|j| j.id).collect();
        assert_eq!(not_run, vec![0, 2]);
        assert_eq!(ledger.outstanding(), 0);
    }

    #[test]
    fn jobs_given_back_unsent_are_next_in_line_and_not_charged() {
        let mut ledger = ledger_with(6, 1);
        assert_eq!(send(&mut ledger, 1, 5), 5);
        ledger.give_back_newest(1, 3);
        assert_eq!(ledger.in_flight_on(1), 2);
        assert_eq!(ledger.in_flight(), 2);
        assert_eq!(ledger.ready(), 4);
        // The worker dies on what it really held; the given-back jobs are untouched.
        ledger.worker_lost(1, Blame::Unknown, "gone");
        ledger.give_back_newest(1, 3);
        let order: Vec<(u64, u32)> = ledger
            .drain_not_run()
            .iter()
            .map(|j| (j.id, j.attempts))
            .collect();
        assert_eq!(order, [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0)]);
    }

    #[test]
    fn jobs_a_worker_gives_back_are_next_in_submission_order_and_not_charged() {
        let mut ledger = ledger_with(8, 1);
        assert_eq!(send(&mut ledger, 1, 4), 4);
        assert_eq!(send(&mut ledger, 2, 4), 4);
        // Worker 2 runs job 4 and gives back what it has not started; worker 1 too.
        assert_eq!(ledger.give_back(2, &[5, 6, 7]), 3);
        assert_eq!(
            ledger.give_back(1, &[1, 2, 3, 99]),
            3,
            "an unknown id is passed over"
        );
        assert_eq!((ledger.in_flight_on(1), ledger.in_flight_on(2)), (1, 1));
        assert_eq!(ledger.ready(), 6);
        // A second answer for a job given back is not the worker's to give.
        assert_eq!(ledger.give_back(2, &[5]), 0);
        assert!(
            settle(&mut ledger, 2, 5, Ok(())).is_none(),
            "a job given back is not settled by its old worker"
        );
        assert_eq!(send(&mut ledger, 3, 10), 6);
        let order: Vec<u64> = (1..=7).filter(|id| *id != 4).collect();
        for id in order {
            assert!(settle(&mut ledger, 3, id, Ok(())).is_some(), "job {id}");
        }
        assert_eq!(ledger.outstanding(), 2, "jobs 0 and 4 still run");
    }

    #[test]
    fn jobs_taken_back_from_several_workers_keep_submission_order() {
        let mut ledger = ledger_with(6, 3);
        send(&mut ledger, 1, 2);
        send(&mut ledger, 2, 2);
        send(&mut ledger, 3, 2);
        ledger.give_back_newest(3, 1);
        ledger.give_back_newest(1, 1);
        ledger.worker_lost(2, Blame::Nobody, "gone");
        let order: Vec<u64> = ledger.drain_not_run().iter().map(|j| j.id).collect();
        assert_eq!(order, [0, 1, 2, 3, 4, 5]);
        let mut ledger = ledger_with(6, 3);
        send(&mut ledger, 1, 3);
        send(&mut ledger, 2, 3);
        ledger.give_back(2, &[4, 5]);
        ledger.give_back(1, &[1, 2]);
        let mut refused = Vec::new();
        let mut batch = BatchWriter::jobs(64);
        ledger.dispatch(3, 10, 1 << 20, 1 << 20, &mut batch, &mut refused);
        // The frame's body follows its length and kind.
        let mut queue = crate::wire::JobQueue::default();
        queue.push_frame(batch.finish().slice(5..));
        let sent = queue.take_unstarted().unwrap();
        assert_eq!(sent, [1, 2, 4, 5], "sent again oldest first");
    }

    #[test]
    fn a_worker_that_ran_nothing_is_not_blamed() {
        let mut ledger = ledger_with(2, 1);
        send(&mut ledger, 1, 2);
        assert!(ledger
            .worker_lost(1, Blame::Nobody, "init failed")
            .is_empty());
        assert_eq!(send(&mut ledger, 2, 10), 2, "plain retries, not suspects");
    }

    #[test]
    fn batches_respect_the_byte_budget_and_refuse_oversized_jobs() {
        let mut ledger: Ledger<Vec<u8>> = Ledger::new(3, Retry::default());
        ledger.submit(vec![0; 100]);
        ledger.submit(vec![0; 100]);
        ledger.submit(vec![0; 5000]);
        let mut refused = Vec::new();
        let mut batch = BatchWriter::jobs(64);
        assert_eq!(
            ledger.dispatch(1, 10, 50, 4096, &mut batch, &mut refused),
            1
        );
        assert_eq!(ledger.oldest_running(1).map(|(id, _)| id), Some(0));
        assert_eq!(
            ledger.dispatch(2, 10, 1 << 20, 4096, &mut batch, &mut refused),
            1
        );
        assert_eq!(refused.len(), 1);
        assert_eq!(
            (refused[0].id, ledger.failed(), ledger.outstanding()),
            (2, 1, 2)
        );
    }

    #[test]
    fn a_frame_never_outgrows_the_frame_limit() {
        let mut ledger: Ledger<Vec<u8>> = Ledger::new(3, Retry::default());
        for _ in 0..10 {
            ledger.submit(vec![0; 1000]);
        }
        let mut batch = BatchWriter::jobs(64);
        let sent = ledger.dispatch(1, 10, 1 << 20, 4000, &mut batch, &mut Vec::new());
        assert_eq!(sent, 3);
        assert!(batch.body_len() <= 4000);
        assert_eq!(ledger.ready(), 7);
    }
}
