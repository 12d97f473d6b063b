//! The run's books: the ledger, the failures so far, the journal of a resumable run,
//! and what an earlier master of the run settled before this one took over.

use std::collections::HashMap;

use bytes::Bytes;

use super::ledger::Ledger;
use super::Journal;
use crate::report::JobFailure;
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
    /// Jobs of a run queue known to be running on a worker, by that worker: each runs
    /// alone there, or its worker said it crashed in it. If its message comes again,
    /// it is the job to charge (`redelivery.rs`).
    pub running_alone: HashMap<u64, u64>,
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
        }
    }

    /// Jobs of the source not run because an earlier run finished them.
    pub fn skipped(&self) -> u64 {
        self.journal.as_ref().map_or(0, Journal::skipped) + self.resumed
    }
}
