//! Work goes where a core is free: when a worker fed by the master has nothing to do
//! and no job is ready, the jobs other workers received but have not started come
//! back to be shared again.
//!
//! Windows keep each worker's next jobs at hand, which is what makes tiny jobs fast;
//! but a job queued behind a long one would wait there while another core idles. The
//! worker, asked, hands back exactly the jobs it will never start (it takes each job
//! from its queue under the lock that the answer takes, see `worker/shared.rs`), so
//! no job runs twice and none is lost. They are ready again first in line, in
//! submission order, and uncharged; [`super::dispatch`] then shares a short queue
//! evenly, idle workers first.
//!
//! A worker is asked only once the job it runs has run [`GIVE_BACK_AFTER`] (and four
//! times the usual job): at the end of a run of tiny jobs, every worker finishes its
//! window sooner than a give-back would help, and asking cost W1 6%.

/// How long the job a worker runs must have run before its queued jobs are asked back.
const GIVE_BACK_AFTER: Duration = Duration::from_millis(2);

use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};

use crate::master::Master;
use crate::wire::{control_frame, ToWorker};

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// Asks the workers that hold jobs they may not have started to give them back,
    /// when one of `ready` (the workers the master feeds) is idle and nothing is ready.
    /// A worker is asked once per change: not again until it answered something or
    /// got more jobs. A worker whose running job is still young is looked at again
    /// when it is not (`Feeding::recheck_at`).
    pub(super) fn ask_for_unstarted_jobs(&mut self, ready: &[u64]) {
        let ledger = &self.accounts.ledger;
        if ledger.ready() > 0 || !ready.iter().any(|id| ledger.in_flight_on(*id) == 0) {
            return;
        }
        let now = Instant::now();
        for &worker_id in ready {
            // One job in flight is the one it runs, or about to.
            if ledger.in_flight_on(worker_id) < 2 {
                continue;
            }
            let Some(slot) = self.workers.slots.get_mut(&worker_id) else {
                continue;
            };
            let books = (slot.answers, slot.dispatched);
            if slot.giving_back || slot.asked_back == Some(books) {
                continue;
            }
            let Some((_, started)) = ledger.oldest_running(worker_id) else {
                continue;
            };
            let usual = slot.pacer.per_job().unwrap_or_default() * 4;
            let due = started + GIVE_BACK_AFTER.max(usual);
            if now < due {
                let recheck = self.feeding.recheck_at.get_or_insert(due);
                *recheck = (*recheck).min(due);
                continue;
            }
            if slot.link.send(control_frame(&ToWorker::GiveBack)).is_ok() {
                slot.giving_back = true;
                slot.asked_back = Some(books);
            }
        }
    }

    /// A worker gave back `jobs`, received and never to be started: they are ready
    /// again, and its window has room for them.
    pub(in crate::master) fn on_gave_back(&mut self, worker_id: u64, jobs: &[u64]) {
        let Some(slot) = self.workers.slots.get_mut(&worker_id) else {
            return;
        };
        slot.giving_back = false;
        let back = self.accounts.ledger.give_back(worker_id, jobs);
        if back > 0 {
            // Its books went back with the jobs: it may be asked again.
            slot.asked_back = None;
        }
        slot.dispatched = slot.dispatched.saturating_sub(back as u64);
        if let Some(lane) = &slot.lane {
            lane.given_back(back);
        }
    }
}
