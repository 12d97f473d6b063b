//! Transports: how jobs and frames travel between the master and its workers.
//!
//! The master decides what runs where and keeps the ledger; a transport only carries.
//! It is chosen once, in [`open`], and the master talks to it through [`Transport`],
//! whose methods are operations: start a worker, link to one that joined, hand jobs
//! out to the run queue, close the run. What workers send comes back as
//! [`FromWorker`] events on the run loop's inbox, the same events from every backend.
//!
//! Two ways for jobs to reach workers, said per worker by its [`Feed`]:
//!
//! - [`Feed::Own`]: the master picks the worker for every batch and writes it down the
//!   worker's own link; the worker holds those jobs until it answers them;
//! - [`Feed::RunQueue`]: the master hands batches to the run's queue
//!   ([`Transport::hand_out`]) and any worker pulls from it; the queue holds every job
//!   until it is answered, and gives the jobs of a lost worker to another.
//!
//! Backends, one folder each:
//!
//! - [`local`]: worker processes on this machine, each on a private socketpair (own
//!   feed);
//! - `nats` (feature `nats`): a NATS JetStream run, with workers on any machine
//!   pulling from a work-queue stream (run queue).
//!
//! Shared by the backends: the [`link`] a frame is written to, the [`worker_event`]s
//! and [`route`] that turns a worker's frame into one, [`process`] for starting worker
//! processes of ours, a worker's [`lane`] of staged jobs, and [`join`](mod@join)ing from elsewhere.
//!
//! Must not import the master (`crate::master`): it imports us.

pub(crate) mod join;
pub(crate) mod lane;
pub(crate) mod link;
pub(crate) mod local;
#[cfg(feature = "nats")]
pub(crate) mod nats;
pub(crate) mod process;
pub(crate) mod route;
pub(crate) mod worker_event;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use crate::error::Error;
use crate::handle::Shared;
use crate::settings::Backend;
use lane::Lane;
use link::WorkerLink;
use process::OutputSink;
use worker_event::FromWorker;

/// A future that a transport's operation returns; the run loop awaits it on its own
/// thread, so it need not be `Send`.
pub(crate) type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The carriage between a master and its workers.
pub(crate) trait Transport {
    /// Starts worker `spec.worker_id` as a process on this machine. What it sends, and
    /// its exit, reach the run loop as events.
    fn start_worker(&self, spec: WorkerSpec) -> Pending<'_, Result<StartedWorker, Error>>;

    /// A link to worker `worker_id`, which runs elsewhere and joined through this
    /// carriage; `None` where workers cannot join from elsewhere.
    fn link_to_joined(&self, worker_id: u64) -> Option<WorkerLink>;

    /// Hands a jobs frame (header included) to the run queue, for any worker to pull.
    ///
    /// `retried` lists the jobs of the frame that were handed out before and come
    /// again (a retry after an error), with how many times they went out before: a
    /// carriage that deduplicates by job must let them through.
    fn hand_out(&self, jobs: Bytes, retried: Vec<(u64, u32)>);

    /// How many jobs the run queue may hold unanswered at once; 0 where there is no
    /// run queue and every worker is fed its own jobs.
    fn queue_window(&self) -> usize;

    /// The largest frame body the carriage carries.
    fn frame_limit(&self) -> usize;

    /// Whether the carriage holds results stored under an earlier master of this run:
    /// they reach the run loop first, then a `CaughtUp` event.
    fn resumes_results(&self) -> bool;

    /// How far the results stored so far go, and [`Transport::results_read`] how far
    /// the run loop has been handed them: a master that ends waits for the second to
    /// reach the first. `None` where nothing is stored apart from the links.
    fn results_stored(&self) -> Pending<'_, Option<u64>>;

    fn results_read(&self) -> u64;

    /// Messages dropped because they did not carry the run's seal (forged, replayed,
    /// or sealed with another secret). Only carriages others can reach have any.
    fn rejected(&self) -> u64 {
        0
    }

    /// Ends the run on the carriage. `complete` when every job is accounted for (what
    /// the run kept may go); otherwise what a resumed run needs is kept.
    fn close(&self, complete: bool) -> Pending<'_, ()>;
}

/// Where a worker's jobs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feed {
    /// The master picks this worker for a batch and writes the batch down its link.
    Own,
    /// The worker pulls from the run queue; the queue, not the worker, holds the jobs.
    RunQueue,
}

/// What the master asks of a worker it starts.
pub(crate) struct WorkerSpec {
    pub worker_id: u64,
    pub worker_type: String,
    /// The user's environment for workers.
    pub env: Vec<(String, String)>,
    /// The handshake frame, for a carriage that sends it down the worker's own link.
    pub config: Bytes,
    /// Where its output lines go; `None` lets them go to the master's stdout/stderr.
    pub output: Option<OutputSink>,
    /// A lane of this window, if the carriage can give the worker one (see [`lane`]).
    pub lane_window: Option<usize>,
}

/// A worker process the transport started.
pub(crate) struct StartedWorker {
    pub link: WorkerLink,
    pub feed: Feed,
    /// Its lane, when the master asked for one and the carriage has one.
    pub lane: Option<Arc<Lane>>,
    /// Notified, the process is killed (its exit then comes as an event).
    pub kill: Arc<Notify>,
}

/// What a transport is opened with. (The local transport needs only the first three.)
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) struct Context {
    /// The run's shared state: lookups and replies are served from it.
    pub shared: Arc<Shared>,
    /// The run loop's inbox.
    pub inbox: mpsc::UnboundedSender<FromWorker>,
    /// The largest frame the run allows.
    pub max_frame: usize,
    pub max_attempts: u32,
    /// Jobs each worker pulling from a run queue holds at once.
    pub worker_window: usize,
    /// Jobs a run queue holds unanswered at once.
    pub queue_window: usize,
    pub logging: bool,
}

/// Opens the carriage the run was configured with: the one place a backend is chosen.
pub(crate) async fn open(backend: &Backend, context: Context) -> Result<Box<dyn Transport>, Error> {
    match backend {
        Backend::Local => Ok(Box::new(local::LocalTransport::new(context))),
        #[cfg(feature = "nats")]
        Backend::Nats {
            url,
            run,
            ack_wait,
            auth,
            secret,
            worker_auth,
        } => {
            let access = nats::Access {
                auth,
                worker_auth: worker_auth.as_deref(),
                secret: secret.as_deref(),
            };
            let transport =
                nats::NatsTransport::start(url, run, *ack_wait, access, context).await?;
            Ok(Box::new(transport))
        }
        #[cfg(not(feature = "nats"))]
        Backend::Nats { .. } => Err(Error::usage(
            "the distributed mode (NATS) needs conductor's `nats` feature",
        )),
    }
}

/// A worker that joined a run from elsewhere: its end of a channel to the transport,
/// and the worker type it runs.
pub(crate) struct Joined {
    pub channel: std::os::unix::net::UnixStream,
    pub worker_type: String,
}

/// Lists, follows or removes the runs on the NATS server at `url`, as an operator's
/// `CONDUCTOR_RUNS` says; returns the exit code.
pub(crate) fn operate_runs(
    command: &str,
    url: &str,
    auth: crate::settings::NatsAuth,
    secret: Option<String>,
) -> i32 {
    #[cfg(feature = "nats")]
    return nats::runs::operate(command, url, auth, secret);
    #[cfg(not(feature = "nats"))]
    {
        let _ = (command, url, auth, secret);
        eprintln!("conductor: CONDUCTOR_RUNS needs conductor's `nats` feature");
        2
    }
}

/// Whether this worker, from elsewhere, ran its `max_jobs_per_worker` and should start
/// itself afresh to join again.
pub(crate) fn recycled() -> bool {
    #[cfg(feature = "nats")]
    return nats::bridge::recycled();
    #[cfg(not(feature = "nats"))]
    false
}

/// Joins the run `run` at `url` as a worker: the worker loop then runs over the
/// returned channel as over a local one. An error is the reason, for the operator.
pub(crate) fn join(
    url: &str,
    run: &str,
    worker_type: Option<String>,
    reserved: Option<(u64, u64)>,
    auth: crate::settings::NatsAuth,
    secret: Option<String>,
) -> Result<Joined, String> {
    #[cfg(feature = "nats")]
    return nats::bridge::join(url, run, worker_type, reserved, auth, secret);
    #[cfg(not(feature = "nats"))]
    {
        let _ = (url, worker_type, reserved, auth, secret);
        let _ = run;
        Err("this program was built without conductor's `nats` feature".into())
    }
}
