//! Joining a run from elsewhere: what a worker asks, and what the master grants. The
//! run loop decides (the worker type, its job and output types); the transport only
//! carries the question and the answer, and proves who asks.

use crate::wire::WorkerConfig;

/// A worker that asks to join.
#[derive(Debug)]
pub(crate) struct Joining {
    pub protocol: u32,
    /// The type the operator asked for, if any; otherwise the run's.
    pub worker_type: Option<String>,
    /// The id the master reserved for this worker when it started it as a process of
    /// its own (the transport has checked the proof); `None` for a worker from
    /// elsewhere.
    pub reserved_id: Option<u64>,
    /// Every worker type the joining program has: (type, job type, output type).
    pub registered: Vec<(String, String, String)>,
    pub host: String,
    pub pid: u32,
}

/// The master lets the worker in.
#[derive(Debug)]
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) struct Admission {
    /// Its handshake: its id, its types and its settings.
    pub config: WorkerConfig,
    /// The most jobs it takes before it is replaced (`max_jobs_per_worker`).
    pub max_jobs: Option<u64>,
}
