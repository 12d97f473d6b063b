//! The `CONDUCTOR_*` environment variables: the contract between a master, the
//! worker processes it starts, and operators who start workers by hand.

/// The worker type a worker process runs (the seed's `process.env.worker_type`).
pub(crate) const ENV_WORKER_TYPE: &str = "CONDUCTOR_WORKER_TYPE";
/// The inherited file descriptor of the worker's end of its private channel.
pub(crate) const ENV_CHANNEL_FD: &str = "CONDUCTOR_CHANNEL_FD";
/// The NATS server of the distributed mode: for a master, it switches the mode on;
/// for a worker, it is where the run is.
pub const ENV_NATS_URL: &str = "CONDUCTOR_NATS_URL";
/// The name of a master's run in the distributed mode.
pub const ENV_RUN: &str = "CONDUCTOR_RUN";
/// Set to a run's name, makes this process a worker that joins that run.
pub const ENV_JOIN: &str = "CONDUCTOR_JOIN";
/// The id a master reserved for a worker process it started itself.
pub(crate) const ENV_WORKER_ID: &str = "CONDUCTOR_WORKER_ID";
/// The process id of the master that started this worker: the worker dies with it.
pub(crate) const ENV_MASTER_PID: &str = "CONDUCTOR_MASTER_PID";
