//! What a run hands back: each job's output or failure, and the final report.

use std::time::Duration;

use crate::jobs::Jobs;

/// A job that finished: the job, and its output, sent back by the worker that ran it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutput<J, O> {
    /// The job's position in submission order, from 0.
    pub id: u64,
    /// The worker that ran it; 0 when an earlier run did (a journal, or a resumed
    /// distributed run), and this one handed back its output.
    pub worker_id: u64,
    pub job: J,
    pub output: O,
}

/// A job that failed for good: it returned an error, panicked, or used up its
/// attempts on workers that crashed or timed out.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFailure<J> {
    /// The job's position in submission order, from 0.
    pub id: u64,
    pub job: J,
    /// The job's error message, or why its last attempt ended.
    pub error: String,
    /// How many times it ran (a job error counts as one run).
    pub attempts: u32,
    /// How it failed, to branch on without reading `error`.
    pub kind: FailureKind,
    /// How each earlier run ended, oldest first: retried errors, crashes.
    pub history: Vec<Attempt>,
}

/// How one run of a job ended, in a failure's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub kind: FailureKind,
    pub error: String,
}

/// How a job failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The job code returned an error (on its last attempt, when retried).
    Returned,
    /// The job code returned an error it marked [`Permanent`](crate::Permanent): no
    /// retry could fix it.
    Permanent,
    /// The job code panicked (the panic was caught; the worker went on).
    Panicked,
    /// It ran past `job_timeout` on its last attempt, and its worker was killed.
    TimedOut,
    /// Its worker crashed, was killed or stopped answering on its last attempt.
    Crashed,
    /// The job or its output could not travel: it could not be encoded or decoded as
    /// its type (serde), or did not fit in a frame.
    Protocol,
    /// It failed in an earlier run of a resumed distributed run.
    Earlier,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailureKind::Returned => "returned an error",
            FailureKind::Permanent => "returned a permanent error",
            FailureKind::Panicked => "panicked",
            FailureKind::TimedOut => "timed out",
            FailureKind::Crashed => "its worker crashed",
            FailureKind::Protocol => "could not travel",
            FailureKind::Earlier => "failed in an earlier run",
        })
    }
}

/// The end of a run: every submitted job is counted exactly once as completed,
/// failed or not run.
#[derive(Debug)]
pub struct Report<J> {
    pub(crate) submitted: u64,
    pub(crate) completed: u64,
    pub(crate) failures: Vec<JobFailure<J>>,
    pub(crate) not_run: Vec<(u64, J)>,
    pub(crate) aborted: bool,
    pub(crate) interrupted: Option<Interrupt>,
    pub(crate) skipped: u64,
    pub(crate) elapsed: Duration,
    pub(crate) workers_started: u64,
    pub(crate) worker_crashes: u64,
    pub(crate) rejected_messages: u64,
    pub(crate) unsubmitted: Option<Jobs<J>>,
    /// Whose run: what [`Report::mark_handled`] forgets.
    pub(crate) conductor_id: String,
}

impl<J> Report<J> {
    /// Jobs taken from the source.
    pub fn submitted(&self) -> u64 {
        self.submitted
    }

    /// Jobs that finished with an output.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Jobs that failed for good.
    pub fn failed(&self) -> u64 {
        self.failures.len() as u64
    }

    /// The failed jobs, with their errors.
    pub fn failures(&self) -> &[JobFailure<J>] {
        &self.failures
    }

    /// Jobs that were submitted but never finished, because the run was aborted.
    pub fn not_run(&self) -> &[(u64, J)] {
        &self.not_run
    }

    /// Takes the jobs that did not run, to run them another time.
    pub fn take_not_run(&mut self) -> Vec<(u64, J)> {
        std::mem::take(&mut self.not_run)
    }

    /// The rest of the job source that an aborted run never pulled from.
    pub fn take_unsubmitted(&mut self) -> Option<Jobs<J>> {
        self.unsubmitted.take()
    }

    /// Whether the run was aborted before it ran every job.
    pub fn aborted(&self) -> bool {
        self.aborted
    }

    /// What stopped the run early: Ctrl-C, SIGTERM or [`crate::ConductorHandle::shutdown`].
    pub fn interrupted(&self) -> Option<Interrupt> {
        self.interrupted
    }

    /// Jobs the source gave that the journal shows done by an earlier run, so they
    /// did not run again (see [`crate::Conductor::journal`]). Not counted as submitted.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Whether every submitted job completed.
    pub fn all_completed(&self) -> bool {
        self.completed == self.submitted
    }

    /// The exit code a batch program should end with, after the shells' conventions:
    ///
    /// | code | the run |
    /// |---|---|
    /// | 0 | completed every job (or found it done in the journal) |
    /// | 1 | finished, but some jobs failed, or was halted by its [`crate::Halt`] policy |
    /// | 2 | was aborted with [`crate::ConductorHandle::abort`] |
    /// | 130 | was interrupted by Ctrl-C (SIGINT) or [`crate::ConductorHandle::shutdown`] |
    /// | 143 | was interrupted by SIGTERM |
    ///
    /// A run that ends in an [`crate::Error`] (a crash loop, say) is best ended with 1.
    ///
    /// ```no_run
    /// # async fn demo(conductor: conductor::Conductor<u64, u64>) -> Result<(), conductor::Error> {
    /// let report = conductor.run().await?;
    /// std::process::exit(report.exit_code());
    /// # }
    /// ```
    pub fn exit_code(&self) -> i32 {
        if let Some(interrupt) = self.interrupted {
            interrupt.exit_code()
        } else if self.aborted {
            2
        } else if !self.failures.is_empty() || !self.all_completed() {
            1
        } else {
            0
        }
    }

    /// Says that the caller dealt with how this run ended (it retried the failed jobs,
    /// say), so that it no longer decides the exit code of a `#[conductor::main]`
    /// program. Without it, such a program whose `main` returns `Ok` exits with the
    /// worst [`Report::exit_code`] of its runs: 1 after failed jobs, 130 after Ctrl-C.
    ///
    /// ```no_run
    /// # async fn demo(first: conductor::Conductor<u64, u64>, again: conductor::Conductor<u64, u64>) -> Result<(), conductor::Error> {
    /// let report = first.run().await?;
    /// let retry: Vec<u64> = report.failures().iter().map(|f| f.job).collect();
    /// let second = again.jobs(retry).run().await?;
    /// if second.all_completed() {
    ///     report.mark_handled();
    /// }
    /// # Ok(()) }
    /// ```
    pub fn mark_handled(&self) {
        crate::exit_code::forget(&self.conductor_id);
    }

    /// Time from the start of the run to its end.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Worker processes started, replacements included.
    pub fn workers_started(&self) -> u64 {
        self.workers_started
    }

    /// Worker processes that crashed, were killed or exited unexpectedly.
    pub fn worker_crashes(&self) -> u64 {
        self.worker_crashes
    }

    /// Messages the master dropped because they did not carry the run's seal: forged,
    /// played again, or sealed with another secret (distributed mode; each sender is
    /// also logged once). Always 0 for a local run.
    pub fn rejected_messages(&self) -> u64 {
        self.rejected_messages
    }
}

/// A signal the master was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Interrupt {
    /// SIGINT: Ctrl-C on a terminal.
    CtrlC,
    /// SIGTERM: a service manager or `kill` asked the program to stop.
    Terminate,
    /// [`crate::ConductorHandle::shutdown`] was called.
    Shutdown,
    /// The halt policy ([`crate::Halt`]): too many jobs failed.
    Halted,
}

impl Interrupt {
    /// The exit code shells use for a program ended by this signal (128 + its number);
    /// 130 for a shutdown asked in code, like Ctrl-C.
    pub fn exit_code(self) -> i32 {
        match self {
            Interrupt::CtrlC | Interrupt::Shutdown => 128 + libc::SIGINT,
            Interrupt::Terminate => 128 + libc::SIGTERM,
            // Jobs failed: the code of a run with failures.
            Interrupt::Halted => 1,
        }
    }

    pub(crate) fn from_signal(signal: libc::c_int) -> Self {
        if signal == libc::SIGTERM {
            Interrupt::Terminate
        } else {
            Interrupt::CtrlC
        }
    }
}

impl std::fmt::Display for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Interrupt::CtrlC => "Ctrl-C",
            Interrupt::Terminate => "SIGTERM",
            Interrupt::Shutdown => "shutdown",
            Interrupt::Halted => "the halt policy",
        })
    }
}
