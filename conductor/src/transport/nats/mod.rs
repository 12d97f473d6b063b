//! The distributed mode: workers on many machines through NATS JetStream.
//!
//! Every concept has its native counterpart. For a run named `R`:
//!
//! | conductor | NATS |
//! |---|---|
//! | the job queue | stream `CONDUCTOR_R_JOBS` (work-queue retention, file storage), one message per batch of jobs, sized by the master like a local worker's window |
//! | workers taking jobs | the durable pull consumer `workers`, shared by every worker |
//! | a dead worker's jobs | their message redelivered after the ack wait (or at once, given back); the master says which of its jobs are still to run, and charges only the one that was running |
//! | `max_attempts` | counted by the master per job, not per delivery |
//! | a long job's heartbeat | in-progress acks (`+WPI`) every third of the ack wait |
//! | results | stream `CONDUCTOR_R_RESULTS`, one message per batch of results, kept until the run ends |
//! | lookup values set while the run runs | stream `CONDUCTOR_R_LOOKUPS`, the last value of each key, made at the first one |
//! | control frames (stats, messages, lookups, stop, abort) | subjects `conductor.R.master` and `conductor.R.worker.<master id>.<id>` |
//! | the end of the run | a stop on `conductor.R.all`, for workers of any master of the run |
//! | joining a run | a request on `conductor.R.join`, answered with the worker's settings or a refusal |
//!
//! A message is acked only after the results frames holding the answers of all its
//! jobs are stored in the results stream, so an answer is never lost and a job never
//! silently vanishes; the master settles each job id once, so a job run twice is
//! still counted once.
//!
//! - [`queue`]: the master's side, the [`NatsTransport`]: the run's streams and its
//!   tasks: the job [`publish`]er, the [`results`] reader, the [`control`] frames of
//!   its workers, [`joins`], and the run's [`owner`]ship;
//! - [`seal`]: every message sealed with the run's secret, so that only the run's
//!   own processes can read, make or replay them;
//! - [`link`]: the master's frames for one worker, on that worker's subject;
//! - [`lookups`]: lookup values set while the run runs, kept in a stream for a master
//!   that takes the run over;
//! - [`runs`]: the runs on a server, for an operator (`CONDUCTOR_RUNS`);
//! - [`bridge`]: the worker's side, between the run's streams and the ordinary worker
//!   loop; it takes jobs with [`pull`], and keeps the messages it [`held`].
//!
//! Must not import the master or another backend.

mod auth;
pub(crate) mod bridge;
mod control;
mod held;
mod join_request;
mod joins;
mod link;
mod lookups;
mod owner;
mod publish;
mod pull;
mod queue;
mod results;
pub(crate) mod runs;
pub(crate) mod seal;

pub(crate) use queue::NatsTransport;

/// How a master gets into its run: its credentials, those of the workers it starts,
/// and the run's secret (64 hex digits, or `None` to make one).
pub(crate) struct Access<'a> {
    pub auth: &'a NatsAuth,
    pub worker_auth: Option<&'a NatsAuth>,
    pub secret: Option<&'a str>,
}

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::settings::NatsAuth;
use crate::wire::WorkerConfig;

/// Header naming the jobs a message of the run queue carries (its message id).
pub(crate) const HEADER_JOBS: &str = "Conductor-Jobs";
/// Header naming the worker that sent a frame.
pub(crate) const HEADER_WORKER: &str = "Conductor-Worker";
/// Header naming the master a worker joined: a master hears only its own workers'
/// control frames (workers of an earlier master of the run may still be about).
pub(crate) const HEADER_MASTER: &str = "Conductor-Master";

/// How long a client waits after a failed publish, pull or subscription before it
/// tries again.
pub(crate) const RETRY: Duration = Duration::from_millis(500);
/// How long connecting may take before the run fails with a clear error.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a worker's bridge says it is alive.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

/// The names of one run's streams and subjects.
#[derive(Debug, Clone)]
pub(crate) struct RunNames {
    run: String,
}

impl RunNames {
    /// Checks that `run` can be part of stream and subject names.
    pub fn new(run: &str) -> Result<Self, Error> {
        let valid = !run.is_empty()
            && run.len() <= 64
            && run
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(Error::usage(format!(
                "invalid run name {run:?}: use 1 to 64 ASCII letters, digits, `_` or `-`"
            )));
        }
        Ok(RunNames {
            run: run.to_string(),
        })
    }

    pub fn run(&self) -> &str {
        &self.run
    }

    pub fn jobs_stream(&self) -> String {
        format!("CONDUCTOR_{}_JOBS", self.run)
    }

    pub fn jobs_subject(&self) -> String {
        format!("conductor.{}.jobs", self.run)
    }

    pub fn results_stream(&self) -> String {
        format!("CONDUCTOR_{}_RESULTS", self.run)
    }

    pub fn results_subject(&self) -> String {
        format!("conductor.{}.results", self.run)
    }

    pub fn join_subject(&self) -> String {
        format!("conductor.{}.join", self.run)
    }

    pub fn master_subject(&self) -> String {
        format!("conductor.{}.master", self.run)
    }

    /// Control frames for one worker of one master.
    pub fn worker_subject(&self, master_id: &str, worker_id: u64) -> String {
        format!("conductor.{}.worker.{master_id}.{worker_id}", self.run)
    }

    /// Where the run's master answers, so that a second one refuses to start.
    pub fn owner_subject(&self) -> String {
        format!("conductor.{}.owner", self.run)
    }

    /// Control frames for every worker of the run, whichever master it joined: the
    /// stop at the end of the run.
    pub fn all_subject(&self) -> String {
        format!("conductor.{}.all", self.run)
    }
}

/// The consumer every worker of a run pulls from.
pub(crate) const WORKERS_CONSUMER: &str = "workers";

/// What a worker says when it asks to join a run.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct JoinRequest {
    pub protocol: u32,
    /// The type the operator asked for, if any; otherwise the run's.
    pub worker_type: Option<String>,
    /// Set for a worker the master started itself, which already has a slot: its id
    /// and the token that proves the master started it.
    pub worker_id: Option<(u64, u64)>,
    /// Every worker type this binary has: (type, job type, output type).
    pub registered: Vec<(String, String, String)>,
    pub host: String,
    pub pid: u32,
    /// Random, hex: the master's answer is sealed for it, so it answers this request
    /// and no other.
    pub nonce: String,
    /// When it was sent (ms since the epoch): an old request played again is refused.
    pub sent_at_ms: u64,
}

/// The master's answer to a join.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum JoinReply {
    Accepted {
        config: WorkerConfig,
        /// How many jobs the worker may hold at once.
        window: u32,
        ack_wait_ms: u64,
        max_attempts: u32,
        /// The most jobs it takes before it is replaced (`max_jobs_per_worker`), for
        /// a worker the master started itself.
        max_jobs: Option<u64>,
        /// The master's last sequence number: the worker takes only later frames.
        sequence_floor: u64,
    },
    Refused {
        reason: String,
    },
}

/// Connects, failing within [`CONNECT_TIMEOUT`] with an error that names the URL.
pub(crate) async fn connect(url: &str, auth: &NatsAuth) -> Result<async_nats::Client, String> {
    let shown = auth::redact(url);
    let (address, auth) = auth::split_url(url, auth);
    let options = async_nats::ConnectOptions::new()
        .connection_timeout(CONNECT_TIMEOUT)
        .ping_interval(Duration::from_secs(5))
        .name("conductor");
    let options = auth::apply(options, &auth)
        .await
        .map_err(|e| format!("cannot connect to the NATS server at {shown}: {e}"))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect(address)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) if matches!(e.kind(), async_nats::ConnectErrorKind::Io) => {
            Err(format!("cannot reach the NATS server at {shown}: {e}"))
        }
        Ok(Err(e)) => Err(format!("cannot connect to the NATS server at {shown}: {e}")),
        Err(_) => Err(format!(
            "cannot reach the NATS server at {shown}: no answer within {CONNECT_TIMEOUT:?}"
        )),
    }
}

/// A JetStream context whose requests (publish acks included) give up after 2 s, so
/// that a server restart costs a retry, not the client's default wait.
pub(crate) fn jetstream_context(client: async_nats::Client) -> async_nats::jetstream::Context {
    async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client)
}

/// Reads a numeric header.
pub(crate) fn header_u64(message: &async_nats::Message, name: &str) -> Option<u64> {
    message.headers.as_ref()?.get(name)?.as_str().parse().ok()
}
