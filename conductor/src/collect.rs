//! Results in one call: every output in submission order, as `Pool.map` and rayon's
//! `collect` give them, or each job's result as it finishes.
//!
//! - [`Conductor::collect`]: the outputs in order, or an error if any job has none;
//! - [`Conductor::collect_results`]: a `Result` per job, in order, and the report;
//! - [`Running::next_result`]: each job's id, job and result as it finishes.

use serde::{de::DeserializeOwned, Serialize};

use crate::conductor::Conductor;
use crate::error::{EncodedFailure, Error, Kind};
use crate::event::Event;
use crate::report::{FailureKind, JobFailure, Report};
use crate::running::Running;
use crate::wire::value;

/// Why one job of a run has no output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// It failed for good: how, its error, and how many times it ran.
    #[error("{message}")]
    Failed {
        kind: FailureKind,
        message: String,
        attempts: u32,
    },
    /// It never ran to its end: the run was interrupted, aborted, or ended in an
    /// error first.
    #[error("the job did not run: {reason}")]
    NotRun { reason: String },
    /// An earlier run finished it, and its output was not kept (a journal with
    /// [`Conductor::journal_keys_only`]).
    #[error("the job was done by an earlier run; its output was not kept")]
    DoneBefore,
}

impl JobError {
    /// How the job failed, if it ran and failed.
    pub fn kind(&self) -> Option<FailureKind> {
        match self {
            JobError::Failed { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// A job that finished, as [`Running::next_result`] hands it over.
#[derive(Debug)]
pub struct Finished<J, O> {
    /// The job's position in submission order, from 0.
    pub id: u64,
    pub job: J,
    pub result: Result<O, JobError>,
}

/// Every job's result in submission order, and the run's report.
#[derive(Debug)]
pub struct Collected<J, O> {
    /// One per job taken from the source, at its id.
    pub results: Vec<Result<O, JobError>>,
    pub report: Report<J>,
}

impl<J, O> Conductor<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// Runs every job and returns the outputs in submission order, like `Pool.map`.
    /// If any job has no output (it failed, or never ran because the run was
    /// interrupted), the error says how many and which first
    /// ([`Error::is_job_failure`]), and holds them ([`Error::failures`],
    /// [`Error::not_run`]). Use [`Conductor::collect_results`] to keep the outputs of
    /// a run where some jobs fail.
    ///
    /// ```no_run
    /// # #[conductor::worker(type = "doc_collect_square")]
    /// # fn square(job: u64) -> anyhow::Result<u64> { Ok(job * job) }
    /// # async fn demo() -> Result<(), conductor::Error> {
    /// let squares: Vec<u64> = conductor::Conductor::new("doc_collect_square")
    ///     .jobs(0..10u64)
    ///     .collect()
    ///     .await?;
    /// assert_eq!(squares[3], 9);
    /// # Ok(()) }
    /// ```
    pub async fn collect(self) -> Result<Vec<O>, Error> {
        self.start()?.collect().await
    }

    /// Runs every job and returns a `Result` per job in submission order, with the
    /// run's report. Only a run that ends in an error (a crash loop, an unreachable
    /// server) is an `Err`.
    ///
    /// ```no_run
    /// # #[conductor::worker(type = "doc_collect_results")]
    /// # fn parse(job: String) -> anyhow::Result<u64> { Ok(job.parse()?) }
    /// # async fn demo() -> Result<(), conductor::Error> {
    /// let run = conductor::Conductor::<String, u64>::new("doc_collect_results")
    ///     .jobs(["1", "x", "3"].map(String::from))
    ///     .collect_results()
    ///     .await?;
    /// for (id, result) in run.results.iter().enumerate() {
    ///     match result {
    ///         Ok(n) => println!("job {id}: {n}"),
    ///         Err(e) => println!("job {id} failed: {e}"),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn collect_results(self) -> Result<Collected<J, O>, Error> {
        self.start()?.collect_results().await
    }
}

impl<J: Serialize + 'static, O> Running<J, O> {
    /// The next job that finished, with its job and its output or failure, in the
    /// order they finish; `None` at the end of the run (then [`Running::wait`] gives
    /// the report). Other events are passed over: messages get the automatic error
    /// reply. Read [`Running::next_event`] instead to see them.
    pub async fn next_result(&mut self) -> Option<Finished<J, O>> {
        loop {
            match self.next_event().await? {
                Event::Output(output) => {
                    return Some(Finished {
                        id: output.id,
                        job: output.job,
                        result: Ok(output.output),
                    })
                }
                Event::Failed(failure) => {
                    let result = Err(failed(&failure));
                    return Some(Finished {
                        id: failure.id,
                        job: failure.job,
                        result,
                    });
                }
                _ => {}
            }
        }
    }

    /// Waits for the end of the run; returns the outputs in submission order (see
    /// [`Conductor::collect`]).
    pub async fn collect(self) -> Result<Vec<O>, Error> {
        let Collected {
            results,
            mut report,
        } = self.collect_results().await?;
        let unsubmitted = report.take_unsubmitted();
        if results.iter().all(Result::is_ok) && unsubmitted.is_none() {
            return Ok(results.into_iter().filter_map(Result::ok).collect());
        }
        Err(missing_outputs(&results, &report).with_unsubmitted(unsubmitted))
    }

    /// Waits for the end of the run; returns a `Result` per job in submission order,
    /// and the report (see [`Conductor::collect_results`]).
    pub async fn collect_results(mut self) -> Result<Collected<J, O>, Error> {
        let mut results: Vec<Option<Result<O, JobError>>> = Vec::new();
        let mut place = |id: u64, result| {
            let index = id as usize;
            if results.len() <= index {
                results.resize_with(index + 1, || None);
            }
            results[index] = Some(result);
        };
        while let Some(finished) = self.next_result().await {
            place(finished.id, finished.result);
        }
        let report = self.wait().await?;
        let reason = match (report.interrupted(), report.aborted()) {
            (Some(interrupt), _) => format!("the run was interrupted by {interrupt}"),
            (None, true) => "the run was aborted".to_string(),
            (None, false) => "the run ended first".to_string(),
        };
        for (id, _) in report.not_run() {
            place(
                *id,
                Err(JobError::NotRun {
                    reason: reason.clone(),
                }),
            );
        }
        // Failures whose event came too late to be read (the last results of a run
        // queue) are in the report all the same.
        for failure in report.failures() {
            place(failure.id, Err(failed(failure)));
        }
        // Ids the run passed over were done before (a journal).
        let total = report.submitted() + report.skipped();
        if results.len() < total as usize {
            results.resize_with(total as usize, || None);
        }
        let results = results
            .into_iter()
            .map(|result| result.unwrap_or(Err(JobError::DoneBefore)))
            .collect();
        Ok(Collected { results, report })
    }
}

fn failed<J>(failure: &JobFailure<J>) -> JobError {
    JobError::Failed {
        kind: failure.kind,
        message: failure.error.clone(),
        attempts: failure.attempts,
    }
}

/// The error of a `collect` that lacks outputs: how many, the first reason, and the
/// jobs themselves.
fn missing_outputs<J: Serialize, O>(results: &[Result<O, JobError>], report: &Report<J>) -> Error {
    let missing = results.iter().filter(|r| r.is_err()).count();
    let first = results
        .iter()
        .enumerate()
        .find_map(|(id, r)| r.as_ref().err().map(|e| format!("job {id}: {e}")))
        .unwrap_or_else(|| "the rest of the source was not taken".to_string());
    let failures = report
        .failures()
        .iter()
        .map(|f| EncodedFailure {
            id: f.id,
            job: value::to_vec(&f.job).ok().map(Into::into),
            error: f.error.clone(),
            attempts: f.attempts,
            kind: f.kind,
        })
        .collect();
    let not_run = report
        .not_run()
        .iter()
        .filter_map(|(id, job)| Some((*id, value::to_vec(job).ok()?.into())))
        .collect();
    Error::new(Kind::JobsWithoutOutput {
        missing,
        total: results.len(),
        first,
    })
    .with_failures(failures)
    .with_not_run(not_run)
    .of_run(&report.conductor_id)
}
