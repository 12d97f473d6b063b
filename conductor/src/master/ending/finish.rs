//! The end of a run: the last stats round, journal lines and bar update, then the
//! report; or, for a run that failed, the error holding every job that did not run.
//! Also the journal and the bar, brought up to date on every turn of the run loop.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use super::Phase;
use crate::error::{EncodedFailure, Error};
use crate::jobs::Jobs;
use crate::master::{Journal, Master};
use crate::metrics::RunCounts;
use crate::report::{FailureKind, Report};

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// Writes the journal lines of the jobs settled since the last call.
    pub(in crate::master) fn write_journal(&mut self) {
        self.journal_io(Journal::flush);
    }

    /// Writes the last lines, and has them reach the disk: the end of the run.
    fn close_journal(&mut self) {
        self.journal_io(Journal::close);
    }

    fn journal_io(&mut self, io: fn(&mut Journal<J>) -> std::io::Result<()>) {
        let Some(journal) = &mut self.accounts.journal else {
            return;
        };
        if let Err(e) = io(journal) {
            let error = Error::journal(journal.path(), e);
            log!(self, error, "{error}");
            // A run that cannot record its progress would redo it all next time.
            self.accounts.journal = None;
            self.fail(error);
        }
    }

    /// Brings the bar and the metrics up to date.
    pub(in crate::master) fn show_progress(&mut self) {
        let ledger = &self.accounts.ledger;
        let (done, failed) = (ledger.completed() + ledger.failed(), ledger.failed());
        let skipped = self.accounts.skipped();
        self.progress.update(done, failed, skipped);
        let counts = RunCounts {
            submitted: ledger.submitted(),
            completed: ledger.completed(),
            failed: ledger.failed(),
            retried: ledger.retried(),
            skipped,
            in_flight: ledger.in_flight() as u64,
            queued: ledger.queued() as u64,
            workers: self.workers.slots.len() as u64,
        };
        *self.shared.counts.lock().unwrap_or_else(|p| p.into_inner()) = counts;
        if crate::metrics::wanted() {
            self.metrics.publish(counts);
        }
        self.show_dashboard();
    }

    pub(in crate::master) fn finish(
        mut self,
        started: Instant,
        source: Option<Jobs<J>>,
    ) -> Result<Report<J>, Error> {
        if let Some(report) = self.stats.take() {
            self.publish_stats(report);
        }
        self.close_journal();
        self.show_progress();
        self.progress.finish();
        let skipped = self.accounts.skipped();
        // Events not delivered by now are dropped; the report has what matters.
        self.events.discard();
        self.shared.processing.store(false, Ordering::Relaxed);
        let not_run = self.accounts.ledger.drain_not_run();
        log!(
            self,
            info,
            submitted = self.accounts.ledger.submitted(),
            completed = self.accounts.ledger.completed(),
            failed = self.accounts.ledger.failed(),
            not_run = not_run.len(),
            "conductor ended"
        );
        let failures = std::mem::take(&mut self.accounts.failures);
        if let Some(error) = self.ending.fatal.take() {
            // The error is not generic over the job type, so it keeps jobs encoded; one
            // that cannot be encoded could never have run, and counts as failed.
            let encode = |job: &J| crate::wire::value::to_vec(job).map(Bytes::from);
            let mut encoded_failures = Vec::new();
            let mut not_run_encoded = Vec::new();
            for j in not_run {
                match encode(&j.job) {
                    Ok(bytes) => not_run_encoded.push((j.id, bytes)),
                    Err(e) => encoded_failures.push(EncodedFailure {
                        id: j.id,
                        job: None,
                        error: format!("could not encode the job: {e}"),
                        attempts: j.attempts,
                        kind: FailureKind::Protocol,
                    }),
                }
            }
            for f in failures {
                encoded_failures.push(EncodedFailure {
                    id: f.id,
                    job: encode(&f.job).ok(),
                    error: f.error,
                    attempts: f.attempts,
                    kind: f.kind,
                });
            }
            encoded_failures.sort_by_key(|f| f.id);
            let error = error
                .with_not_run(not_run_encoded)
                .with_failures(encoded_failures);
            return Err(error.with_unsubmitted(source).of_run(&self.shared.id));
        }
        Ok(Report {
            submitted: self.accounts.ledger.submitted(),
            completed: self.accounts.ledger.completed(),
            failures,
            not_run: not_run.into_iter().map(|j| (j.id, j.job)).collect(),
            aborted: matches!(self.ending.phase, Phase::Aborting(_))
                && self.ending.interrupted.is_none(),
            interrupted: self.ending.interrupted,
            skipped,
            elapsed: started.elapsed(),
            workers_started: self.workers.started(),
            worker_crashes: self.workers.crashes(),
            rejected_messages: self.transport.rejected(),
            unsubmitted: source,
            conductor_id: self.shared.id.clone(),
        })
    }
}
