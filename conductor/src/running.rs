//! A conductor that has started: its events, its handle, and its end.

use tokio::sync::mpsc;

use crate::error::Error;
use crate::handle::ConductorHandle;
use crate::message::Message;
use crate::report::{JobFailure, JobOutput, Report};
use crate::stats::StatsReport;

/// Something that happened during a run, in the order the master saw it.
///
/// The seed's events map here: `stats` → [`Event::Stats`], `error` (a worker crash) →
/// [`Event::WorkerCrashed`], `worker_exit` → [`Event::WorkerExited`], and `end` →
/// [`Running::next_event`] returning `None`, then [`Running::wait`] giving the report.
/// Its `onWorkerMessage` hook is [`Event::Message`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<J, O> {
    /// A job finished with an output.
    Output(JobOutput<O>),
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

/// A running conductor. Read its events with [`Running::next_event`] until it returns
/// `None`, then take the report with [`Running::wait`].
pub struct Running<J, O> {
    pub(crate) events: mpsc::Receiver<Vec<Event<J, O>>>,
    /// The batch being handed out, one event at a time, without copying it.
    pub(crate) buffered: std::vec::IntoIter<Event<J, O>>,
    pub(crate) handle: ConductorHandle,
    pub(crate) run: crate::run_thread::RunThread<J>,
}

impl<J, O> Running<J, O> {
    /// The next event, or `None` when the run has ended.
    pub async fn next_event(&mut self) -> Option<Event<J, O>> {
        loop {
            if let Some(event) = self.buffered.next() {
                return Some(event);
            }
            let batch = self.events.recv().await?;
            self.buffered = batch.into_iter();
        }
    }

    /// The handle for messages, lookups and abort while the run goes on.
    pub fn handle(&self) -> &ConductorHandle {
        &self.handle
    }

    /// Waits for the end of the run and returns its report. Events not read yet are
    /// dropped (messages among them get error replies).
    pub async fn wait(mut self) -> Result<Report<J>, Error> {
        self.buffered = Vec::new().into_iter();
        self.events.close();
        while self.events.recv().await.is_some() {}
        self.run.wait().await
    }
}
