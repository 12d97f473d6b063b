//! Everything a conductor was configured with: what the builder fills in and the
//! master, its transport and its pacer read. Plain data, importing nothing of ours.

use std::time::Duration;

/// How long a worker holding jobs may stay silent, unless the conductor says otherwise.
pub(crate) const DEFAULT_LIVENESS_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a worker says it is alive: five times within the liveness bound, so a
/// late heartbeat or two on a loaded machine is no death; at most once a second.
pub(crate) fn heartbeat_every(liveness: Option<Duration>) -> Duration {
    match liveness {
        Some(bound) => (bound / 5).clamp(Duration::from_millis(20), Duration::from_secs(1)),
        None => Duration::from_secs(1),
    }
}

/// Everything a conductor was configured with.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub worker_type: String,
    pub worker_limit: usize,
    pub worker_env: Vec<(String, String)>,
    pub logging: bool,
    pub stats_interval: Duration,
    pub job_timeout: Option<Duration>,
    /// A worker holding jobs that sends nothing for this long is taken for dead.
    pub liveness_timeout: Option<Duration>,
    pub startup_timeout: Duration,
    pub max_attempts: u32,
    pub dispatch: DispatchSettings,
    pub max_frame_bytes: usize,
    pub crash_on_job_error: bool,
    pub crash_loop_limit: Option<u32>,
    pub stop_grace: Duration,
    pub handle_signals: bool,
    pub shutdown_grace: Duration,
    pub max_jobs_per_worker: Option<u64>,
    pub progress: bool,
    pub total_jobs: Option<u64>,
    pub backend: Backend,
}

/// Where the run's workers are and how jobs reach them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Backend {
    /// Worker processes on this machine, each on a private socketpair.
    Local,
    /// A NATS JetStream run: local workers and any that join from elsewhere pull jobs
    /// from the run's queue.
    Nats {
        url: String,
        run: String,
        ack_wait: Duration,
    },
}

/// The user's overrides, for the rare workload the estimate serves badly.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DispatchSettings {
    /// Fixed number of jobs in flight per worker.
    pub prefetch: Option<usize>,
    /// Fixed most jobs per frame.
    pub batch: Option<usize>,
}
