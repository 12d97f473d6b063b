//! Jobs for a run queue (the distributed mode): ready jobs go out in messages of
//! several jobs, sized like a local worker's window, and any worker takes them.
//!
//! A message should hold a few milliseconds of work: trivial jobs go by the hundred
//! (the server's cost is per message), slow ones one or a few at a time (a message is
//! run by one worker, and must not keep its jobs from an idle one). Jobs per message
//! are learnt from how fast each worker answers, growing at most fourfold at a time
//! like a slow start; while fewer jobs are ready than the workers could share, they
//! are shared out in smaller messages.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};

use crate::master::{Master, RUN_QUEUE};

/// How much work, by time, one message should carry. Each message costs the server
/// and both ends CPU (its publish, store, delivery, ack, and the results it brings
/// back) that the workers' cores lose: with 1 ms jobs, messages of 4 ms (3 held per
/// worker) ran at 0.94x the local mode's rate, messages of 16 ms (2 held) at 0.97x.
const TARGET_MESSAGE_WORK: Duration = Duration::from_millis(16);
/// The most jobs one message carries, however fast they are.
pub(crate) const MAX_JOBS_PER_MESSAGE: usize = 4096;
/// Answers further apart than this say nothing of a job's length: the worker idled.
const IDLE_GAP: Duration = Duration::from_millis(250);

/// Samples of a job's length kept: the estimate is their lower quartile.
const SAMPLES: usize = 16;

/// How many jobs a message of the run queue carries now.
///
/// A job's length is sampled as the time between a worker's results frames over the
/// jobs they answer. A worker that waited for its next message makes a sample too long,
/// so the estimate is the lower quartile of the recent samples, not their mean: a
/// starved worker must not make messages smaller, and so starve itself more.
pub(in crate::master) struct MessageSizer {
    jobs: usize,
    /// Recent samples of seconds per job, oldest first.
    samples: std::collections::VecDeque<f64>,
    /// When each worker's last answers came.
    last_answers: HashMap<u64, Instant>,
}

impl Default for MessageSizer {
    fn default() -> Self {
        MessageSizer {
            jobs: 1,
            samples: std::collections::VecDeque::with_capacity(SAMPLES),
            last_answers: HashMap::new(),
        }
    }
}

impl MessageSizer {
    /// Learns from `count` answers of `worker` that came `now`.
    pub fn observe(&mut self, worker: u64, count: usize, now: Instant) {
        let before = self.last_answers.insert(worker, now);
        let Some(gap) = before.map(|before| now.saturating_duration_since(before)) else {
            return;
        };
        if count == 0 || gap > IDLE_GAP {
            return;
        }
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(gap.as_secs_f64() / count as f64);
        let mut sorted: Vec<f64> = self.samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let estimate = sorted[sorted.len() / 4];
        let wanted = (TARGET_MESSAGE_WORK.as_secs_f64() / estimate.max(1e-9)) as usize;
        // Grows at most fourfold at a time, like a slow start; shrinks at once.
        self.jobs = wanted
            .clamp(1, MAX_JOBS_PER_MESSAGE)
            .min(self.jobs.saturating_mul(4));
    }

    /// Forgets a worker that left.
    pub fn forget(&mut self, worker: u64) {
        self.last_answers.remove(&worker);
    }

    /// Jobs per message now.
    pub fn jobs(&self) -> usize {
        self.jobs
    }
}

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// How many jobs the run queue holds at once: the transport's window, or enough
    /// for a few messages per worker.
    pub(in crate::master) fn run_queue_window(&self) -> usize {
        let messages = 4 * self.workers.pulling() * self.feeding.run_queue.jobs();
        self.transport.queue_window().max(messages)
    }

    /// Puts ready jobs in the run queue, a message at a time, up to its window. A
    /// message goes out short only when the source is dry, or when the queue holds
    /// less than a message (so a slow source never leaves jobs waiting).
    pub(super) fn fill_run_queue(&mut self) {
        if self.transport.queue_window() == 0 {
            return;
        }
        let window = self.run_queue_window();
        // A worker takes whole messages: with `max_jobs_per_worker`, one it takes
        // past its limit holds a quarter of it at most.
        let recycled_at = self.settings.max_jobs_per_worker;
        let most = recycled_at.map_or(usize::MAX, |jobs| (jobs as usize / 4).max(1));
        let per_message = self.feeding.run_queue.jobs().min(most);
        loop {
            let ledger = &self.accounts.ledger;
            let in_queue = ledger.in_flight_on(RUN_QUEUE);
            let room = window.saturating_sub(in_queue);
            let ready = ledger.ready();
            if room == 0 || ready == 0 {
                return;
            }
            let full = per_message.min(room);
            if ready < full && !self.feeding.source_dry && in_queue >= per_message {
                return;
            }
            // The last jobs of a run are shared out in smaller messages, for all.
            let jobs = match self.feeding.source_dry {
                true => full.min((ready / (2 * self.workers.pulling())).max(1)),
                false => full,
            };
            let (frame, taken) = self.take_batch(RUN_QUEUE, jobs);
            let resent = self.accounts.ledger.take_resent();
            if let Some((frame, _)) = frame {
                self.transport.hand_out(frame, resent);
            }
            if taken == 0 {
                return;
            }
        }
    }
}
