//! The run's books: the ledger, the failures so far, the journal of a resumable run,
//! and what an earlier master of the run settled before this one took over.

use std::collections::HashMap;

use bytes::Bytes;

use super::ledger::Ledger;
use super::Journal;
use crate::report::{FailureKind, JobFailure};
use crate::settings::Retry;

pub(super) struct Accounts<J> {
    pub ledger: Ledger<J>,
    /// Every job that failed for good, for the report.
    pub failures: Vec<JobFailure<J>>,
    pub journal: Option<Journal<J>>,
    /// Jobs a resumed run finished before this master read them from its source:
    /// the encoded output of those that completed, the error of those that failed.
    pub settled_before: HashMap<u64, Result<Bytes, String>>,
    /// Jobs passed over because an earlier master of this run finished them.
    pub resumed: u64,
    /// A resumed run reads what it already finished before it takes jobs from the
    /// source (until its transport says `CaughtUp`).
    pub catching_up: bool,
    /// Jobs of a run queue known to be running on a worker: each runs alone there, or
    /// its worker said it crashed in it (or timed it out). If its message comes again,
    /// it is the job to charge, for that (`redelivery.rs`).
    pub running_alone: HashMap<u64, (FailureKind, String)>,
    /// The attempt of the jobs a run queue settled last, newest at the back: a worker's
    /// log records travel apart from its results, and may come after them.
    pub settled_attempts: std::collections::VecDeque<(u64, u32)>,
}

impl<J> Accounts<J> {
    pub fn new(
        max_attempts: u32,
        retry: Retry,
        journal: Option<Journal<J>>,
        catching_up: bool,
    ) -> Self {
        Accounts {
            ledger: Ledger::new(max_attempts, retry),
            failures: Vec::new(),
            journal,
            settled_before: HashMap::new(),
            resumed: 0,
            catching_up,
            running_alone: HashMap::new(),
            settled_attempts: std::collections::VecDeque::new(),
        }
    }

    /// Which attempt of job `id` runs (or ran last) on `holder`, if known.
    pub fn attempt_of(&self, holder: u64, id: u64) -> Option<u32> {
        self.ledger.attempt_of(holder, id).or_else(|| {
            let mut recent = self.settled_attempts.iter().rev();
            recent
                .find(|(job, _)| *job == id)
                .map(|(_, attempt)| *attempt)
        })
    }

    /// Jobs of the source not run because an earlier run finished them.
    pub fn skipped(&self) -> u64 {
        self.journal.as_ref().map_or(0, Journal::skipped) + self.resumed
    }
}
