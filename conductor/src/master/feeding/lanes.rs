//! Lanes, seen from the run loop: jobs staged at the master's end of a fixed-window
//! worker's link (see [`crate::transport::lane`]), and the answers that wait there.
//! Staged jobs never left the master: they come back uncharged for an idle worker,
//! and when their worker stops or the run winds down.

use std::sync::Arc;
use std::time::Instant;

use serde::{de::DeserializeOwned, Serialize};

use super::pacer::MAX_BATCH_BYTES;
use crate::master::Master;
use crate::transport::lane::{Lane, MAX_STAGED_BYTES};
use crate::wire::BatchWriter;

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// Stages jobs in the lanes until each holds what its pacer asks for; a short
    /// queue is shared out evenly.
    pub(super) fn fill_lanes(&mut self, ready: &[u64]) {
        if self.lane_window().is_none() {
            return;
        }
        let mut wanting = Vec::new();
        self.feeding.staging = false;
        for &worker_id in ready {
            let Some(slot) = self.workers.slots.get(&worker_id) else {
                continue;
            };
            let Some(lane) = &slot.lane else {
                continue;
            };
            let target = slot.pacer.staged_target();
            lane.set_target(target);
            self.feeding.staging |= target > 0;
            let (jobs, bytes) = lane.staged();
            if jobs < target && bytes < MAX_STAGED_BYTES {
                wanting.push((worker_id, lane.clone(), target - jobs, slot.pacer.room(0)));
            }
        }
        let total_wanted: usize = wanting.iter().map(|(_, _, wanted, _)| wanted).sum();
        if self.accounts.ledger.ready() < total_wanted {
            self.deal_out(wanting);
            return;
        }
        for (worker_id, lane, wanted, frame_jobs) in wanting {
            self.stage(worker_id, &lane, wanted, frame_jobs);
        }
    }

    /// Stages the few ready jobs one frame per lane in turn, like cards: each worker's
    /// next jobs are then the oldest left, and whichever worker is free first starts
    /// them, so jobs start close to submission order (a lane taking its share at once
    /// let the last jobs start before the middle ones).
    fn deal_out(&mut self, mut wanting: Vec<(u64, Arc<Lane>, usize, usize)>) {
        while self.accounts.ledger.ready() > 0 && !wanting.is_empty() {
            for (worker_id, lane, wanted, frame_jobs) in wanting.iter_mut() {
                if self.accounts.ledger.ready() == 0 {
                    return;
                }
                let jobs = (*frame_jobs).min(*wanted).max(1);
                self.stage(*worker_id, lane, jobs, jobs);
                *wanted -= jobs.min(*wanted);
            }
            wanting.retain(|(_, _, wanted, _)| *wanted > 0);
        }
    }

    /// Takes up to `jobs` ready jobs for a worker's lane, in frames of at most
    /// `frame_jobs` written into one buffer, and stages them.
    fn stage(&mut self, worker_id: u64, lane: &Lane, jobs: usize, frame_jobs: usize) {
        let mut batch = BatchWriter::jobs((jobs * 32).min(MAX_STAGED_BYTES) + 64)
            .laid_out(&self.feeding.job_layout);
        let mut refused = Vec::new();
        let (mut staged, mut taken) = (0, 0);
        while staged < jobs && batch.total_len() < MAX_STAGED_BYTES {
            let refused_before = refused.len();
            let sent = self.accounts.ledger.dispatch(
                worker_id,
                frame_jobs.min(jobs - staged),
                MAX_BATCH_BYTES,
                self.settings.max_frame_bytes,
                &mut batch,
                &mut refused,
            );
            if sent == 0 && refused.len() == refused_before {
                break;
            }
            staged += sent;
            taken += sent + refused.len() - refused_before;
            batch.next_frame();
        }
        for failure in refused {
            self.record_failure(failure);
        }
        if let Some(slot) = self.workers.slots.get_mut(&worker_id) {
            slot.dispatched += taken as u64;
        }
        lane.place(batch.finish_frames());
    }

    /// Takes back every job staged in a lane: none has left the master.
    pub(super) fn reclaim_staged(&mut self) {
        for (worker_id, slot) in self.workers.slots.iter_mut() {
            if let Some(lane) = &slot.lane {
                let staged = lane.reclaim();
                self.accounts.ledger.give_back_newest(*worker_id, staged);
                slot.dispatched = slot.dispatched.saturating_sub(staged as u64);
            }
        }
    }

    /// Settles the answers waiting in every lane.
    pub(in crate::master) fn drain_lanes(&mut self) {
        if !self.feeding.staging {
            return;
        }
        for (worker_id, lane) in self.workers.lanes() {
            self.drain_lane(worker_id, &lane);
        }
    }

    /// Settles the answers waiting in one worker's lane. They are timed together:
    /// the worker was busy from the oldest job's start until now.
    pub(in crate::master) fn drain_lane(&mut self, worker_id: u64, lane: &Lane) {
        let answers = lane.take_results();
        if answers.is_empty() {
            return;
        }
        let started = self.oldest_start(worker_id);
        let now = Instant::now();
        let mut count = 0;
        for body in answers {
            count += self.settle_results(worker_id, body, now);
        }
        self.after_answers(worker_id, count, started, now);
    }

    /// A worker stops or is gone: what waits in its lane is settled, and what is
    /// staged there goes back to the ready queues, never having left the master.
    pub(in crate::master) fn close_lane(&mut self, worker_id: u64) {
        let Some(lane) = self.workers.lane(worker_id) else {
            return;
        };
        self.drain_lane(worker_id, &lane);
        let staged = lane.close();
        self.accounts.ledger.give_back_newest(worker_id, staged);
    }

    /// The run winds down: no lane sends anything more.
    pub(in crate::master) fn close_lanes(&mut self) {
        for (worker_id, _) in self.workers.lanes() {
            self.close_lane(worker_id);
        }
        self.feeding.staging = false;
    }
}
