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
/// The secret of a distributed run: every message of the run is sealed with it.
pub const ENV_RUN_SECRET: &str = "CONDUCTOR_RUN_SECRET";
/// The id a master reserved for a worker process it started itself.
pub(crate) const ENV_WORKER_ID: &str = "CONDUCTOR_WORKER_ID";
/// The process id of the master that started this worker: the worker dies with it.
pub(crate) const ENV_MASTER_PID: &str = "CONDUCTOR_MASTER_PID";
/// An operator's command: this process lists, follows or removes the runs on the NATS
/// server (`list`, `follow <run>`, `remove <run>`), and exits.
pub(crate) const ENV_RUNS: &str = "CONDUCTOR_RUNS";
/// Set for a worker from elsewhere that started itself afresh at its
/// `max_jobs_per_worker`: a run it cannot join again is over, not an error.
pub(crate) const ENV_REJOINING: &str = "CONDUCTOR_REJOINING";

/// The distributed mode's credentials and TLS settings (see [`crate::NatsAuth`]).
pub(crate) const ENV_NATS_USER: &str = "CONDUCTOR_NATS_USER";
pub(crate) const ENV_NATS_PASSWORD: &str = "CONDUCTOR_NATS_PASSWORD";
pub(crate) const ENV_NATS_TOKEN: &str = "CONDUCTOR_NATS_TOKEN";
pub(crate) const ENV_NATS_NKEY: &str = "CONDUCTOR_NATS_NKEY";
pub(crate) const ENV_NATS_CREDS: &str = "CONDUCTOR_NATS_CREDS";
pub(crate) const ENV_NATS_CA: &str = "CONDUCTOR_NATS_CA";
pub(crate) const ENV_NATS_CERT: &str = "CONDUCTOR_NATS_CERT";
pub(crate) const ENV_NATS_KEY: &str = "CONDUCTOR_NATS_KEY";
pub(crate) const ENV_NATS_TLS: &str = "CONDUCTOR_NATS_TLS";

const NATS_AUTH_VARS: [&str; 9] = [
    ENV_NATS_USER,
    ENV_NATS_PASSWORD,
    ENV_NATS_TOKEN,
    ENV_NATS_NKEY,
    ENV_NATS_CREDS,
    ENV_NATS_CA,
    ENV_NATS_CERT,
    ENV_NATS_KEY,
    ENV_NATS_TLS,
];

/// `auth`, with what it leaves unset taken from the environment.
pub(crate) fn nats_auth_with_env(auth: &crate::NatsAuth) -> crate::NatsAuth {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut merged = auth.clone();
    if merged.user.is_none() {
        if let Some(user) = var(ENV_NATS_USER) {
            merged.user = Some((user, var(ENV_NATS_PASSWORD).unwrap_or_default()));
        }
    }
    merged.token = merged.token.or_else(|| var(ENV_NATS_TOKEN));
    merged.nkey_seed = merged.nkey_seed.or_else(|| var(ENV_NATS_NKEY));
    merged.credentials_file = merged
        .credentials_file
        .or_else(|| var(ENV_NATS_CREDS).map(Into::into));
    merged.ca_file = merged.ca_file.or_else(|| var(ENV_NATS_CA).map(Into::into));
    if merged.client_cert.is_none() {
        if let (Some(cert), Some(key)) = (var(ENV_NATS_CERT), var(ENV_NATS_KEY)) {
            merged.client_cert = Some((cert.into(), key.into()));
        }
    }
    merged.require_tls |= merged.ca_file.is_some()
        || merged.client_cert.is_some()
        || var(ENV_NATS_TLS).is_some_and(|v| v != "0");
    merged
}

/// Removes the credentials from this process's environment once read, so that
/// programs started by job code do not inherit them.
pub(crate) fn forget_nats_auth_env() {
    for name in NATS_AUTH_VARS {
        std::env::remove_var(name);
    }
}

/// The variables that give a worker process the credentials `auth` holds.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) fn nats_auth_env(auth: &crate::NatsAuth) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let mut set = |name: &str, value: &str| env.push((name.to_string(), value.to_string()));
    if let Some((user, password)) = &auth.user {
        set(ENV_NATS_USER, user);
        set(ENV_NATS_PASSWORD, password);
    }
    if let Some(token) = &auth.token {
        set(ENV_NATS_TOKEN, token);
    }
    if let Some(seed) = &auth.nkey_seed {
        set(ENV_NATS_NKEY, seed);
    }
    if let Some(path) = &auth.credentials_file {
        set(ENV_NATS_CREDS, &path.to_string_lossy());
    }
    if let Some(path) = &auth.ca_file {
        set(ENV_NATS_CA, &path.to_string_lossy());
    }
    if let Some((cert, key)) = &auth.client_cert {
        set(ENV_NATS_CERT, &cert.to_string_lossy());
        set(ENV_NATS_KEY, &key.to_string_lossy());
    }
    if auth.require_tls {
        set(ENV_NATS_TLS, "1");
    }
    env
}
