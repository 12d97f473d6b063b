//! What happens during a run, as the caller sees it: [`Event`]s, in the order the
//! master saw them.

use crate::message::Message;
use crate::report::{JobFailure, JobOutput};
use crate::stats::StatsReport;

/// Something that happened during a run, in the order the master saw it.
///
/// The seed's events map here: `stats` → [`Event::Stats`], `error` (a worker crash) →
/// [`Event::WorkerCrashed`], `worker_exit` → [`Event::WorkerExited`], and `end` →
/// [`Running::next_event`](crate::Running::next_event) returning `None`, then
/// [`Running::wait`](crate::Running::wait) giving the report.
/// Its `onWorkerMessage` hook is [`Event::Message`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<J, O> {
    /// A job finished with an output.
    Output(JobOutput<J, O>),
    /// A job failed for good.
    Failed(JobFailure<J>),
    /// Every live worker has rolled its counters: one aggregated report.
    Stats(StatsReport),
    /// A worker finished its handshake and takes jobs.
    WorkerStarted { worker_id: u64 },
    /// A worker crashed, was killed, or exited without being asked to.
    WorkerCrashed(WorkerCrash),
    /// A worker process ended, for whatever reason.
    WorkerExited(WorkerExit),
    /// A custom command from a worker. Answer it with [`Message::reply`] if
    /// [`Message::wants_reply`]; dropping it sends an error reply.
    Message(Message),
}

/// Why a worker stopped unexpectedly (the seed's `worker_crash` error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCrash {
    pub worker_id: u64,
    /// The exit code, if the process exited.
    pub code: Option<i32>,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    /// What the master knows: the worker's own crash reason, a timeout, a broken
    /// frame, or the exit status.
    pub reason: String,
}

/// A worker process that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerExit {
    pub worker_id: u64,
    pub code: Option<i32>,
    pub signal: Option<i32>,
}
