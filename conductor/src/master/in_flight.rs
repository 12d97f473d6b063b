//! The jobs one holder has in flight, as the ledger keeps them.
//!
//! A worker fed its own jobs answers them in the order it got them, so its jobs are a
//! queue and each answer is almost always at the front. A run queue is answered by
//! many workers at once, each from its own messages: its answers come in any order,
//! and a queue would move thousands of jobs for each one. Its jobs are kept by id,
//! in a slot per id from the oldest on ([`ById`]): ids go out nearly in order.

use std::collections::VecDeque;

mod by_id;
pub(crate) use by_id::ById;
use std::time::Instant;

use crate::report::Attempt;

/// A job the ledger holds. It is encoded anew each time it is sent, straight into
/// the outgoing frame, so the ledger keeps no second copy of it.
pub(crate) struct PendingJob<J> {
    pub id: u64,
    pub job: J,
    /// Runs that ended with the job's worker crashing or timing out.
    pub attempts: u32,
    /// Runs that returned an error (retried while the retry policy allows).
    pub returned: u32,
    /// How each earlier run ended, oldest first.
    pub history: Vec<Attempt>,
}

/// A job sent, and when.
pub(crate) struct InFlight<J> {
    pub job: PendingJob<J>,
    pub sent_at: Instant,
}

pub(crate) enum InFlightJobs<J> {
    /// In the order sent: a worker's own.
    Ordered(VecDeque<InFlight<J>>),
    /// By id: a run queue's, answered in any order.
    ById(ById<J>),
}

impl<J> InFlightJobs<J> {
    pub fn len(&self) -> usize {
        match self {
            InFlightJobs::Ordered(jobs) => jobs.len(),
            InFlightJobs::ById(jobs) => jobs.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The oldest: the first sent, or the lowest id.
    pub fn front(&self) -> Option<&InFlight<J>> {
        match self {
            InFlightJobs::Ordered(jobs) => jobs.front(),
            InFlightJobs::ById(jobs) => jobs.front(),
        }
    }

    pub fn push_back(&mut self, job: InFlight<J>) {
        match self {
            InFlightJobs::Ordered(jobs) => jobs.push_back(job),
            InFlightJobs::ById(jobs) => jobs.insert(job),
        }
    }

    /// Takes job `id` out, if held.
    pub fn remove(&mut self, id: u64) -> Option<InFlight<J>> {
        match self {
            InFlightJobs::Ordered(jobs) => {
                // Workers answer in order, so the match is almost always at the front.
                if jobs.front().is_some_and(|f| f.job.id == id) {
                    return jobs.pop_front();
                }
                let position = jobs.iter().position(|f| f.job.id == id)?;
                jobs.remove(position)
            }
            InFlightJobs::ById(jobs) => jobs.remove(id),
        }
    }

    pub fn get(&self, id: u64) -> Option<&InFlight<J>> {
        match self {
            InFlightJobs::Ordered(jobs) => jobs.iter().find(|f| f.job.id == id),
            InFlightJobs::ById(jobs) => jobs.get(id),
        }
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut InFlight<J>> {
        match self {
            InFlightJobs::Ordered(jobs) => jobs.iter_mut().find(|f| f.job.id == id),
            InFlightJobs::ById(jobs) => jobs.get_mut(id),
        }
    }

    /// Takes out the `count` sent last.
    pub fn take_newest(&mut self, count: usize) -> Vec<PendingJob<J>> {
        let count = count.min(self.len());
        match self {
            InFlightJobs::Ordered(jobs) => {
                let at = jobs.len() - count;
                jobs.drain(at..).map(|f| f.job).collect()
            }
            InFlightJobs::ById(jobs) => {
                let mut all = jobs.take_all();
                let newest = all.split_off(all.len() - count);
                all.into_iter().for_each(|job| jobs.insert(job));
                newest.into_iter().map(|f| f.job).collect()
            }
        }
    }

    /// Takes out the jobs `wanted` says, keeping the others in their order.
    pub fn take_where(&mut self, wanted: impl Fn(u64) -> bool) -> Vec<PendingJob<J>> {
        let mut taken = Vec::new();
        match self {
            InFlightJobs::Ordered(jobs) => {
                let mut kept = VecDeque::with_capacity(jobs.len());
                for entry in jobs.drain(..) {
                    match wanted(entry.job.id) {
                        true => taken.push(entry.job),
                        false => kept.push_back(entry),
                    }
                }
                *jobs = kept;
            }
            InFlightJobs::ById(jobs) => {
                for entry in jobs.take_all() {
                    match wanted(entry.job.id) {
                        true => taken.push(entry.job),
                        false => jobs.insert(entry),
                    }
                }
            }
        }
        taken
    }

    /// Every job, oldest first, leaving none.
    pub fn take_all(&mut self) -> Vec<PendingJob<J>> {
        match self {
            InFlightJobs::Ordered(jobs) => jobs.drain(..).map(|f| f.job).collect(),
            InFlightJobs::ById(jobs) => jobs.take_all().into_iter().map(|f| f.job).collect(),
        }
    }
}
