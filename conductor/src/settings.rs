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

/// How often a journal's lines are forced to the disk (`fdatasync`), for
/// [`crate::Conductor::journal_sync`]. Lines reach the file as jobs settle whatever
/// the policy, so a crash of the program loses at most the batch it was settling;
/// the policy is about a crash of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalSync {
    /// After every batch of lines: nothing is lost, for a disk flush per batch.
    Always,
    /// At most once per period, and at the end of the run. The default, every second.
    Every(Duration),
    /// Left to the operating system.
    Never,
}

impl Default for JournalSync {
    fn default() -> Self {
        JournalSync::Every(Duration::from_secs(1))
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
    /// Retries of jobs that return an error.
    pub retry: Retry,
    /// When to stop taking jobs because too many fail.
    pub halt: Option<Halt>,
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
    /// The value every worker's `init` can read ([`crate::Worker::context`]), encoded.
    pub context: Option<Vec<u8>>,
}

/// How jobs that return an error are retried: separate from the attempts that crashes
/// and timeouts use up ([`Conductor::max_attempts`](crate::Conductor::max_attempts)).
/// Each retry waits a backoff that doubles from the first delay up to the longest,
/// each wait drawn at random within ±50% of it (jitter), so retries of many jobs that
/// failed together do not come back together. Job code marks an error no retry can
/// fix with [`Permanent`](crate::Permanent): that job fails at once.
///
/// ```
/// # #[conductor::worker(type = "doc_retry")]
/// # fn fetch(url: String) -> anyhow::Result<usize> { Ok(url.len()) }
/// use std::time::Duration;
/// use conductor::{Conductor, Retry};
/// let conductor = Conductor::<String, usize>::new("doc_retry")
///     .retry(Retry::attempts(4).backoff(Duration::from_millis(200), Duration::from_secs(10)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    pub(crate) attempts: u32,
    pub(crate) first_delay: Duration,
    pub(crate) max_delay: Duration,
}

impl Retry {
    /// Runs a job that returns an error up to `attempts` times in all (1: never
    /// retried, the default), after 100 ms, 200 ms, 400 ms... at most 30 s.
    pub fn attempts(attempts: u32) -> Self {
        Retry {
            attempts: attempts.max(1),
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
        }
    }

    /// The wait before the first retry, doubled for each next one up to `max`.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_delay = first;
        self.max_delay = max.max(first);
        self
    }

    /// The wait before retry number `retry` (from 1), with `jitter` in [0, 1) drawn
    /// at random: ±50% around the doubled delay.
    pub(crate) fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let doubled = self
            .first_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max_delay);
        doubled.mul_f64(0.5 + jitter)
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry::attempts(1)
    }
}

/// When a run stops taking new jobs because too many fail, as GNU parallel's `--halt`
/// does: after a number of failed jobs, or once a share of the settled jobs failed.
/// The jobs already running finish (or, with [`Halt::kill_running`], are stopped and
/// reported not run); the run then ends with [`Interrupt::Halted`](crate::Interrupt).
///
/// ```
/// # #[conductor::worker(type = "doc_halt")]
/// # fn work(job: u32) -> anyhow::Result<u32> { Ok(job) }
/// use conductor::{Conductor, Halt};
/// let strict = Conductor::<u32, u32>::new("doc_halt").halt(Halt::after_failures(1));
/// let tolerant = Conductor::<u32, u32>::new("doc_halt").halt(Halt::at_failure_ratio(0.1, 100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Halt {
    pub(crate) failures: Option<u64>,
    pub(crate) ratio: Option<(f64, u64)>,
    pub(crate) kill_running: bool,
}

impl Halt {
    /// Stops taking jobs once `failures` jobs have failed for good.
    pub fn after_failures(failures: u64) -> Self {
        Halt {
            failures: Some(failures.max(1)),
            ratio: None,
            kill_running: false,
        }
    }

    /// Stops taking jobs once more than `ratio` (0 to 1) of the settled jobs failed,
    /// counted from `after` settled jobs on (so one early failure does not stop it).
    pub fn at_failure_ratio(ratio: f64, after: u64) -> Self {
        Halt {
            failures: None,
            ratio: Some((ratio.clamp(0.0, 1.0), after.max(1))),
            kill_running: false,
        }
    }

    /// Stops the jobs that run when the run halts, instead of letting them finish.
    pub fn kill_running(mut self) -> Self {
        self.kill_running = true;
        self
    }

    /// Whether `failed` of `settled` jobs call for a halt.
    pub(crate) fn reached(&self, failed: u64, settled: u64) -> bool {
        self.failures.is_some_and(|limit| failed >= limit)
            || self.ratio.is_some_and(|(ratio, after)| {
                settled >= after && failed as f64 > ratio * settled as f64
            })
    }
}

/// How the distributed mode proves itself to a secured NATS server, and trusts it.
///
/// Each setting also comes from the environment, so that workers started by hand
/// authenticate the same way (the master passes its own to the workers it starts):
/// `CONDUCTOR_NATS_USER` and `CONDUCTOR_NATS_PASSWORD`, `CONDUCTOR_NATS_TOKEN`,
/// `CONDUCTOR_NATS_NKEY` (a seed), `CONDUCTOR_NATS_CREDS` (a `.creds` file),
/// `CONDUCTOR_NATS_CA` (else the standard `SSL_CERT_FILE`), `CONDUCTOR_NATS_CERT` and
/// `CONDUCTOR_NATS_KEY` (a client certificate), `CONDUCTOR_NATS_TLS=1` (require TLS).
/// A user and password or a token in the URL (`nats://user:pass@host`,
/// `nats://token@host`) work too. What is set here wins over the environment, and both
/// over credentials in the URL. Secrets are never printed: not by `Debug`, not in
/// errors.
///
/// ```
/// # #[conductor::worker(type = "doc_nats_auth")]
/// # fn work(job: u32) -> anyhow::Result<u32> { Ok(job) }
/// use conductor::{Conductor, NatsAuth};
/// let conductor = Conductor::<u32, u32>::new("doc_nats_auth")
///     .nats("tls://nats.internal:4222")
///     .nats_auth(
///         NatsAuth::new()
///             .credentials_file("/etc/conductor/worker.creds")
///             .ca_file("/etc/conductor/ca.pem"),
///     );
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NatsAuth {
    pub(crate) user: Option<(String, String)>,
    pub(crate) token: Option<String>,
    pub(crate) nkey_seed: Option<String>,
    pub(crate) credentials_file: Option<std::path::PathBuf>,
    pub(crate) ca_file: Option<std::path::PathBuf>,
    pub(crate) client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
    pub(crate) require_tls: bool,
}

impl NatsAuth {
    /// No credentials, and the system's trusted certificates.
    pub fn new() -> Self {
        NatsAuth::default()
    }

    /// A user and password (`--user`/`--pass`, or `users` in the server's config).
    pub fn user_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }

    /// A token (`--auth` in the server's config).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// An NKey seed (`SU...`): the server knows its public key.
    pub fn nkey_seed(mut self, seed: impl Into<String>) -> Self {
        self.nkey_seed = Some(seed.into());
        self
    }

    /// A credentials file (a user JWT and its NKey seed), as `nsc` makes them.
    pub fn credentials_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.credentials_file = Some(path.into());
        self
    }

    /// The certificate authority (PEM) that signed the server's certificate, for a
    /// server the system does not trust already.
    pub fn ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self.require_tls = true;
        self
    }

    /// A client certificate and its key (PEM), for a server that verifies clients
    /// (mutual TLS).
    pub fn client_cert(
        mut self,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.client_cert = Some((cert.into(), key.into()));
        self.require_tls = true;
        self
    }

    /// Refuses to talk to the server without TLS, even with a `nats://` URL.
    pub fn require_tls(mut self) -> Self {
        self.require_tls = true;
        self
    }
}

/// Says which settings are there, never their secrets.
impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |set: bool| if set { "<set>" } else { "<none>" };
        f.debug_struct("NatsAuth")
            .field("user", &self.user.as_ref().map(|(user, _)| user))
            .field("password", &hidden(self.user.is_some()))
            .field("token", &hidden(self.token.is_some()))
            .field("nkey_seed", &hidden(self.nkey_seed.is_some()))
            .field("credentials_file", &self.credentials_file)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("require_tls", &self.require_tls)
            .finish()
    }
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
        /// Boxed: it is large, and a local run carries none.
        auth: Box<NatsAuth>,
        /// The run's secret, as given (64 hex digits); `None`: the master makes one.
        secret: Option<String>,
        /// What the workers it starts authenticate with, if not the master's own.
        worker_auth: Option<Box<NatsAuth>>,
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
