//! Jobs in flight kept by id, in a slot per id from the oldest on: ids go out nearly in
//! order, so finding, adding and removing one is a subtraction, not a search.

use std::collections::{BTreeMap, VecDeque};

use super::InFlight;

pub(crate) struct ById<J> {
    /// The id of `slots[0]`.
    base: u64,
    /// A slot per id from `base` on; the first is never empty.
    slots: VecDeque<Option<InFlight<J>>>,
    /// Jobs with ids below `base` (a retry of an older job, sent again).
    older: BTreeMap<u64, InFlight<J>>,
    /// Jobs in `slots`.
    in_slots: usize,
}

impl<J> Default for ById<J> {
    fn default() -> Self {
        ById {
            base: 0,
            slots: VecDeque::new(),
            older: BTreeMap::new(),
            in_slots: 0,
        }
    }
}

impl<J> ById<J> {
    pub fn len(&self) -> usize {
        self.older.len() + self.in_slots
    }

    pub fn insert(&mut self, job: InFlight<J>) {
        let id = job.job.id;
        if self.slots.is_empty() {
            self.base = id;
        }
        if id < self.base {
            self.older.insert(id, job);
            return;
        }
        let at = (id - self.base) as usize;
        if at >= self.slots.len() {
            self.slots.resize_with(at + 1, || None);
        }
        if self.slots[at].replace(job).is_none() {
            self.in_slots += 1;
        }
    }

    fn slot(&self, id: u64) -> Option<usize> {
        let at = usize::try_from(id.checked_sub(self.base)?).ok()?;
        (at < self.slots.len()).then_some(at)
    }

    pub fn remove(&mut self, id: u64) -> Option<InFlight<J>> {
        let Some(at) = self.slot(id) else {
            return self.older.remove(&id);
        };
        let job = self.slots[at].take()?;
        self.in_slots -= 1;
        while self.slots.front().is_some_and(Option::is_none) {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(job)
    }

    pub fn get(&self, id: u64) -> Option<&InFlight<J>> {
        match self.slot(id) {
            Some(at) => self.slots[at].as_ref(),
            None => self.older.get(&id),
        }
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut InFlight<J>> {
        match self.slot(id) {
            Some(at) => self.slots[at].as_mut(),
            None => self.older.get_mut(&id),
        }
    }

    /// The job with the lowest id.
    pub fn front(&self) -> Option<&InFlight<J>> {
        self.older
            .values()
            .next()
            .or_else(|| self.slots.front().and_then(Option::as_ref))
    }

    /// Every job, by id, leaving none.
    pub fn take_all(&mut self) -> Vec<InFlight<J>> {
        let mut all: Vec<InFlight<J>> = std::mem::take(&mut self.older).into_values().collect();
        all.extend(self.slots.drain(..).flatten());
        self.in_slots = 0;
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::in_flight::PendingJob;

    fn job(id: u64) -> InFlight<()> {
        InFlight {
            job: PendingJob {
                id,
                job: (),
                attempts: 0,
                returned: 0,
                history: Vec::new(),
            },
            sent_at: std::time::Instant::now(),
        }
    }

    #[test]
    fn jobs_come_out_by_id_in_any_order_and_older_ids_are_kept_apart() {
        let mut jobs = ById::default();
        for id in [10, 11, 13, 12] {
            jobs.insert(job(id));
        }
        assert_eq!(jobs.len(), 4);
        assert!(jobs.remove(12).is_some());
        assert!(jobs.remove(12).is_none(), "a job comes out once");
        assert_eq!(jobs.front().map(|f| f.job.id), Some(10));
        assert!(jobs.remove(10).is_some());
        assert_eq!(jobs.front().map(|f| f.job.id), Some(11));
        // A retry of an older job, sent after newer ones.
        jobs.insert(job(3));
        assert_eq!(jobs.front().map(|f| f.job.id), Some(3));
        assert!(jobs.get(3).is_some() && jobs.get(13).is_some() && jobs.get(10).is_none());
        assert_eq!(jobs.len(), 3);
        let ids: Vec<u64> = jobs.take_all().iter().map(|f| f.job.id).collect();
        assert_eq!(ids, [3, 11, 13]);
        assert_eq!(jobs.len(), 0);
        jobs.insert(job(1_000_000));
        assert_eq!(jobs.len(), 1, "an empty set starts again at any id");
    }
}
