//! From the ledger out: batches of ready jobs to workers with room in their window,
//! taking turns so a short queue is shared out fairly, or to the run queue.

use std::time::Instant;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use super::pacer::MAX_BATCH_BYTES;
use crate::master::Master;
use crate::wire::BatchWriter;

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// Hands ready jobs to the run queue, if there is one, then to workers fed their
    /// own jobs that have room in their window; then stages jobs in their lanes. When
    /// nothing is ready and a worker idles, asks for the jobs others have not started.
    pub(in crate::master) fn dispatch(&mut self) {
        // Retries whose backoff is over are ready again; the run loop wakes for the next.
        self.feeding.recheck_at = self.accounts.ledger.release_due(Instant::now());
        if self.accounts.ledger.ready() > 0 {
            self.fill_run_queue();
        }
        let ready = self.workers.ready_to_feed();
        if ready.is_empty() {
            return;
        }
        if self.accounts.ledger.ready() > 0 || self.feeding.staging {
            self.feeding.round_robin = self.feeding.round_robin.wrapping_add(1);
            self.fill_windows(&ready);
            // A worker must not idle while jobs wait staged for a busy one (the
            // classic prefetch starvation): staged jobs come back and are shared again.
            if self.accounts.ledger.ready() == 0
                && self.feeding.staging
                && ready
                    .iter()
                    .any(|id| self.accounts.ledger.in_flight_on(*id) == 0)
            {
                self.reclaim_staged();
                self.fill_windows(&ready);
            }
            self.fill_lanes(&ready);
        }
        self.ask_for_unstarted_jobs(&ready);
    }

    /// Gives each ready worker what its window has room for, taking turns. When fewer
    /// jobs are ready than the windows have room for, they are shared evenly, idle
    /// workers first: the last jobs of a run, or those given back, must not all go to
    /// one worker while another has nothing.
    fn fill_windows(&mut self, ready: &[u64]) {
        let mut rooms = Vec::with_capacity(ready.len());
        for k in 0..ready.len() {
            let worker_id = ready[(self.feeding.round_robin + k) % ready.len()];
            let Some(slot) = self.workers.slots.get(&worker_id) else {
                continue;
            };
            let in_flight = self.accounts.ledger.in_flight_on(worker_id);
            let mut room = slot.pacer.room(in_flight);
            if let Some(limit) = self.settings.max_jobs_per_worker {
                room = room.min(limit.saturating_sub(slot.dispatched) as usize);
            }
            if room > 0 {
                rooms.push((worker_id, room, in_flight));
            }
        }
        let total_room: usize = rooms.iter().map(|(_, room, _)| room).sum();
        let waiting = self.accounts.ledger.ready();
        let share = match waiting < total_room {
            true => waiting.div_ceil(rooms.len().max(1)),
            false => usize::MAX,
        };
        if share != usize::MAX {
            rooms.sort_by_key(|(_, _, in_flight)| *in_flight);
        }
        let mut room_left = Vec::new();
        for (worker_id, room, _) in rooms {
            if self.accounts.ledger.ready() == 0 {
                return;
            }
            let taken = self.send_batch(worker_id, room.min(share));
            if room > taken {
                room_left.push((worker_id, room - taken));
            }
        }
        // A worker with less room than its share left jobs behind: others take them.
        for (worker_id, room) in room_left {
            if self.accounts.ledger.ready() == 0 {
                return;
            }
            self.send_batch(worker_id, room);
        }
    }

    /// Moves up to `room` ready jobs onto a worker and hands them to it, through its
    /// lane if it has one. Returns how many jobs left the ready queues.
    fn send_batch(&mut self, worker_id: u64, room: usize) -> usize {
        let (frame, taken) = self.take_batch(worker_id, room);
        if let Some(slot) = self.workers.slots.get_mut(&worker_id) {
            match (frame, &slot.lane) {
                (Some(frame), Some(lane)) => lane.place([frame]),
                (Some((frame, _)), None) => {
                    let _ = slot.link.send(frame);
                }
                (None, _) => {}
            }
            slot.dispatched += taken as u64;
        }
        self.maybe_recycle(worker_id);
        taken
    }

    /// Moves up to `room` ready jobs onto `holder` (a worker, or the run queue),
    /// encoded in one jobs frame; a job too large for a frame fails here. Returns the
    /// frame and the jobs in it, if any job went in, and how many jobs left the ready
    /// queues.
    pub(super) fn take_batch(
        &mut self,
        holder: u64,
        room: usize,
    ) -> (Option<(Bytes, usize)>, usize) {
        let mut batch = BatchWriter::jobs((room * 16).min(MAX_BATCH_BYTES) + 64)
            .laid_out(&self.feeding.job_layout);
        let mut refused = Vec::new();
        let sent = self.accounts.ledger.dispatch(
            holder,
            room,
            MAX_BATCH_BYTES,
            self.settings.max_frame_bytes,
            &mut batch,
            &mut refused,
        );
        let taken = sent + refused.len();
        for failure in refused {
            self.record_failure(failure);
        }
        ((sent > 0).then(|| (batch.finish(), sent)), taken)
    }
}
