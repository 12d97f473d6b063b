//! [`Conductor`]: the builder a master configures and runs.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::mpsc;

use crate::boot::registry;
use crate::boot::{
    self,
    env::{ENV_NATS_URL, ENV_RUN, ENV_RUN_SECRET},
};
use crate::dashboard::{self, ENV_DASHBOARD};
use crate::error::Error;
use crate::handle::{Command, ConductorHandle, Shared};
use crate::jobs::Jobs;
use crate::lookup;
use crate::master::{default_key, Journal, KeyFn, RunInput, RunThread};
use crate::report::Report;
use crate::running::Running;
use crate::settings::{
    Backend, DispatchSettings, Halt, JournalSync, NatsAuth, Retry, Settings,
    DEFAULT_LIVENESS_TIMEOUT,
};
use crate::wire::DEFAULT_MAX_FRAME_BYTES;
use crate::worker::NamedWorker;

mod distributed;

/// Runs jobs of type `J` on worker processes of one worker type, which answer with
/// outputs of type `O`.
///
/// ```no_run
/// # #[conductor::worker(type = "square")]
/// # fn square(job: u64) -> anyhow::Result<u64> { Ok(job * job) }
/// # async fn demo() -> Result<(), conductor::Error> {
/// let report = conductor::Conductor::<u64, u64>::new("square")
///     .worker_limit(2)
///     .jobs(0..10u64)
///     .run()
///     .await?;
/// assert_eq!(report.completed(), 10);
/// # Ok(()) }
/// ```
pub struct Conductor<J, O> {
    settings: Settings,
    source: Jobs<J>,
    setup_error: Option<Error>,
    journal: Option<PathBuf>,
    journal_keys_only: bool,
    journal_sync: JournalSync,
    job_key: Option<KeyFn<J>>,
    nats_url: Option<String>,
    run_name: Option<String>,
    ack_wait: Duration,
    nats_auth: NatsAuth,
    dashboard: Option<String>,
    run_secret: Option<String>,
    nats_worker_auth: Option<NatsAuth>,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    _output: PhantomData<fn() -> O>,
}

impl<J, O> Conductor<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// A conductor for the workers registered as `worker_type`. Its job and output
    /// types must be the worker's; [`Conductor::start`] checks and names both if not.
    pub fn new(worker_type: impl Into<String>) -> Self {
        let worker_type = worker_type.into();
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(worker_type.clone(), commands_tx));
        Conductor {
            settings: Settings {
                worker_type,
                worker_limit: default_worker_limit(),
                worker_env: Vec::new(),
                context: None,
                logging: true,
                stats_interval: Duration::from_secs(5),
                job_timeout: None,
                liveness_timeout: Some(DEFAULT_LIVENESS_TIMEOUT),
                startup_timeout: Duration::from_secs(30),
                max_attempts: 3,
                retry: Retry::default(),
                halt: None,
                dispatch: DispatchSettings::default(),
                max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
                crash_on_job_error: false,
                crash_loop_limit: None,
                stop_grace: Duration::from_secs(10),
                handle_signals: true,
                shutdown_grace: Duration::from_secs(30),
                max_jobs_per_worker: None,
                progress: true,
                total_jobs: None,
                backend: Backend::Local,
            },
            source: Jobs::from_iterator(std::iter::empty()),
            setup_error: None,
            journal: None,
            journal_keys_only: false,
            journal_sync: JournalSync::default(),
            job_key: None,
            nats_url: None,
            run_name: None,
            ack_wait: Duration::from_secs(10),
            nats_auth: NatsAuth::default(),
            dashboard: None,
            run_secret: None,
            nats_worker_auth: None,
            shared,
            commands,
            _output: PhantomData,
        }
    }

    /// A conductor for the worker type `W`, whose job and output types it takes, so
    /// a mismatch is a compile error.
    pub fn of<W: NamedWorker<Job = J, Output = O>>() -> Self {
        Self::new(W::TYPE)
    }

    /// The most worker processes alive at once (default: the number of CPUs, at
    /// most 4). Replacements for crashed workers count within it.
    pub fn worker_limit(mut self, limit: usize) -> Self {
        self.settings.worker_limit = limit.max(1);
        self
    }

    /// The jobs to run, from any iterator; pulled only as workers need them.
    pub fn jobs<I>(mut self, jobs: I) -> Self
    where
        I: IntoIterator<Item = J>,
        I::IntoIter: Send + 'static,
    {
        self.source = Jobs::from_iterator(jobs);
        self
    }

    /// The jobs to run, from an async stream (the seed's `generateJobs`); polled only
    /// as workers need them, so it is back-pressured.
    pub fn job_stream<S>(mut self, jobs: S) -> Self
    where
        S: Stream<Item = J> + Send + 'static,
    {
        self.source = Jobs::from_stream(jobs);
        self
    }

    /// An environment variable for every worker process (the seed's `workerEnv`).
    pub fn worker_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.worker_env.push((key.into(), value.into()));
        self
    }

    /// A value every worker can read ([`Worker::context`](crate::Worker::context)),
    /// typically in its `init`: configuration, credentials, a model path. What
    /// `Pool(initializer, initargs)` gives in Python, typed, instead of parsing argv
    /// or environment strings in each worker. Sent once, in each worker's handshake,
    /// so it must encode in less than 1 MiB (a path to a larger file does the same).
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize)]
    /// struct Setup { quality: u8, out_dir: String }
    ///
    /// struct Encoder { setup: Setup }
    ///
    /// #[conductor::worker(type = "doc_encoder")]
    /// impl conductor::JobWorker for Encoder {
    ///     type Job = String;
    ///     type Output = String;
    ///     async fn init(w: &conductor::Worker) -> anyhow::Result<Self> {
    ///         Ok(Encoder { setup: w.context()? })
    ///     }
    ///     async fn process(&mut self, file: String, _: &conductor::Worker) -> anyhow::Result<String> {
    ///         Ok(format!("{}/{file} at {}", self.setup.out_dir, self.setup.quality))
    ///     }
    /// }
    ///
    /// # async fn demo() -> Result<(), conductor::Error> {
    /// let setup = Setup { quality: 90, out_dir: "/tmp/out".into() };
    /// let outputs = conductor::Conductor::of::<Encoder>()
    ///     .context(&setup)
    ///     .jobs(vec!["a.wav".to_string()])
    ///     .collect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn context<C: Serialize + ?Sized>(mut self, context: &C) -> Self {
        let room = crate::wire::MAX_HANDSHAKE_BYTES - 4096;
        match lookup::encode("the context", context) {
            Ok(bytes) if bytes.len() <= room => {
                self.settings.context = Some(bytes);
            }
            Ok(bytes) => {
                let message = format!(
                    "the context of {} bytes is larger than the {room} bytes a worker's \
                     handshake can carry; pass a path to a file instead",
                    bytes.len(),
                );
                self.setup_error.get_or_insert(Error::usage(message));
            }
            Err(e) => {
                self.setup_error.get_or_insert(e);
            }
        }
        self
    }

    /// Whether the conductor and its workers log what they do (default on). The
    /// master logs through `tracing`; workers print to stderr.
    pub fn logging(mut self, on: bool) -> Self {
        self.settings.logging = on;
        self
    }

    /// How often each worker rolls its counters (default 5 s).
    pub fn stats_interval(mut self, interval: Duration) -> Self {
        self.settings.stats_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The longest one job may run. A worker whose job runs longer is killed and
    /// replaced, and the job counts an attempt. Off by default.
    pub fn job_timeout(mut self, timeout: Duration) -> Self {
        self.settings.job_timeout = Some(timeout);
        self
    }

    /// How long a worker that holds jobs may stay silent before it is taken for dead
    /// (default 10 s; `None` turns the check off). A thread beside the job says the
    /// process is alive several times within this bound, so a long job in a live
    /// worker never trips it; a stopped or frozen process, or one stuck in the middle
    /// of a frame, does: it is killed, and its jobs run again elsewhere, the one it was
    /// running counting an attempt. Unlike [`Conductor::job_timeout`], it needs no
    /// guess of how long a job may take.
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[conductor::worker(type = "doc_liveness")]
    /// # fn work(job: u32) -> anyhow::Result<u32> { Ok(job) }
    /// let patient = conductor::Conductor::<u32, u32>::new("doc_liveness")
    ///     .liveness_timeout(Duration::from_secs(30))
    ///     .jobs(0..10);
    /// let unchecked = conductor::Conductor::<u32, u32>::new("doc_liveness").liveness_timeout(None);
    /// ```
    pub fn liveness_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.settings.liveness_timeout = timeout.into().map(|t| t.max(Duration::from_millis(100)));
        self
    }

    /// How long a new worker may take to start and run its `init` (default 30 s); it
    /// takes jobs only after `init` succeeds, so a slow `init` never counts against
    /// [`Conductor::job_timeout`].
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.settings.startup_timeout = timeout;
        self
    }

    /// How many runs of a job may end with its worker crashing or timing out before
    /// the job is reported failed (default 3). A job that returns an error is retried
    /// only as [`Conductor::retry`] says.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.settings.max_attempts = attempts.max(1);
        self
    }

    /// Retries jobs that return an error, after a backoff (see [`Retry`]); by default
    /// they are not retried. Separate from [`Conductor::max_attempts`], which counts
    /// crashes and timeouts.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.settings.retry = retry;
        self
    }

    /// Stops taking jobs once too many fail (see [`Halt`]); by default a run goes on
    /// whatever fails.
    pub fn halt(mut self, halt: Halt) -> Self {
        self.settings.halt = Some(halt);
        self
    }

    /// Fixes how many jobs each worker holds at once, instead of the adaptive
    /// default. Use 1 for long jobs that must never wait behind another.
    pub fn prefetch(mut self, jobs: usize) -> Self {
        self.settings.dispatch.prefetch = Some(jobs.max(1));
        self
    }

    /// Caps how many jobs travel in one frame.
    pub fn batch(mut self, jobs: usize) -> Self {
        self.settings.dispatch.batch = Some(jobs.max(1));
        self
    }

    /// The largest frame either side accepts (default 64 MiB, at most 4 GiB). A job
    /// or output that does not fit fails with a clear error.
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        // Frame lengths travel as u32.
        self.settings.max_frame_bytes = bytes.clamp(1024, u32::MAX as usize);
        self.shared.max_frame.store(
            self.settings.max_frame_bytes,
            std::sync::atomic::Ordering::Relaxed,
        );
        self
    }

    /// Makes a worker crash (and be replaced) after a job returns an error, as the
    /// seed's workers did. The job is still reported failed, once. Off by default.
    pub fn crash_on_job_error(mut self, on: bool) -> Self {
        self.settings.crash_on_job_error = on;
        self
    }

    /// How many workers in a row may die before finishing any job before the run
    /// stops with [`Error::is_crash_loop`] (default: twice the worker limit, at
    /// least 4, plus the attempts).
    pub fn crash_loop_limit(mut self, deaths: u32) -> Self {
        self.settings.crash_loop_limit = Some(deaths.max(1));
        self
    }

    /// How long workers get to finish after the last job before they are killed.
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.settings.stop_grace = grace;
        self
    }

    /// Whether Ctrl-C and SIGTERM stop the run gracefully (default on): the first
    /// stops handing out jobs and gives those in flight [`Conductor::shutdown_grace`]
    /// to finish, then the run returns a report listing what did not run, with
    /// [`Report::interrupted`] set; the second kills the workers at once; a third
    /// does what the signal did before the run. The handlers are in place only while
    /// a run is going. Off, the program's own handling stays as it is, and
    /// [`ConductorHandle::shutdown`] does the same from code.
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.settings.handle_signals = on;
        self
    }

    /// How long jobs in flight may run after the first Ctrl-C or SIGTERM before their
    /// workers are killed and the jobs reported not run (default 30 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.settings.shutdown_grace = grace;
        self
    }

    /// Replaces each worker process after it has run `jobs` jobs, for job code that
    /// leaks (Python's `maxtasksperchild`). The replacement runs its `init` again.
    /// The old worker finishes what it holds first, so for a moment one more process
    /// than [`Conductor::worker_limit`] may be alive.
    pub fn max_jobs_per_worker(mut self, jobs: u64) -> Self {
        self.settings.max_jobs_per_worker = Some(jobs.max(1));
        self
    }

    /// Whether to draw a progress bar on stderr (default on): done / total, failures,
    /// jobs per second and ETA. It shows only when stderr is a terminal and
    /// `CONDUCTOR_PROGRESS` is not `0`; while it shows, workers' output is printed
    /// above it line by line. Needs the `progress` feature (on by default).
    pub fn progress(mut self, on: bool) -> Self {
        self.settings.progress = on;
        self
    }

    /// How many jobs the source will give, for the progress bar's total and ETA when
    /// the source cannot tell (a stream, or an iterator without an exact size).
    pub fn total_jobs(mut self, total: u64) -> Self {
        self.settings.total_jobs = Some(total);
        self
    }

    /// Makes the run resumable: every finished job is appended to the journal at
    /// `path` (created if missing), with its output, and jobs the journal shows
    /// completed are not run again, so running the same program after a crash or
    /// Ctrl-C does only what is left, and still hands back every output: `collect()`
    /// after an interrupted run and its rerun equals one uninterrupted run. Jobs are
    /// told apart by [`Conductor::job_key`], or else by a stable hash of their
    /// serialized bytes. Failed jobs are recorded but run again next time. See
    /// [`Report::skipped`].
    ///
    /// The file is locked while the run has it: a second run given the same journal
    /// fails to start ([`Error::is_journal`]). Each line is text: `ok`, a tab, the
    /// key, a tab and the output's MessagePack bytes in base64; or `failed`, the key
    /// and the error. See [`Conductor::journal_keys_only`] and
    /// [`Conductor::journal_sync`].
    ///
    /// ```no_run
    /// # #[conductor::worker(type = "thumbnail")]
    /// # fn thumbnail(path: String) -> anyhow::Result<u64> { Ok(path.len() as u64) }
    /// # async fn demo(paths: Vec<String>) -> Result<(), conductor::Error> {
    /// let sizes: Vec<u64> = conductor::Conductor::new("thumbnail")
    ///     .jobs(paths)
    ///     .journal("thumbnails.journal")
    ///     .job_key(|path: &String| path.clone())
    ///     .collect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn journal(mut self, path: impl Into<PathBuf>) -> Self {
        self.journal = Some(path.into());
        self
    }

    /// Keeps only the keys of finished jobs in the journal, not their outputs: for
    /// outputs too large to keep twice, or runs whose outputs go elsewhere. A rerun
    /// then passes over the jobs done before without their outputs
    /// ([`JobError::DoneBefore`](crate::JobError::DoneBefore) in `collect_results`).
    pub fn journal_keys_only(mut self) -> Self {
        self.journal_keys_only = true;
        self
    }

    /// How often the journal is forced to the disk (default: every second, and at
    /// the end of the run). See [`JournalSync`].
    pub fn journal_sync(mut self, sync: JournalSync) -> Self {
        self.journal_sync = sync;
        self
    }

    /// The key that identifies a job in the journal across runs (a file name, a row
    /// id). It must be the same for the same job in every run.
    pub fn job_key<F>(mut self, key: F) -> Self
    where
        F: Fn(&J) -> String + Send + Sync + 'static,
    {
        self.job_key = Some(Arc::new(key));
        self
    }

    /// Serves a live dashboard of the run at `address` (`"127.0.0.1:8800"`, or a port
    /// of 127.0.0.1 such as `"8800"`; `"0"` picks a free port): progress and ETA,
    /// throughput over time, each worker with its state and current job, recent
    /// failures, job code's counters, and buttons to stop the run gracefully or abort
    /// it. Needs the feature `dashboard`; the environment variable
    /// `CONDUCTOR_DASHBOARD` does the same without a line of code.
    ///
    /// At start the run prints the page's address with a token
    /// (`http://127.0.0.1:8800/#token=...`, also [`ConductorHandle::dashboard_url`]):
    /// the run's data and its buttons need it. The server lives as long as the run.
    /// Bind beyond 127.0.0.1 (`"0.0.0.0:8800"`) only on a network you trust: the
    /// token guards the page, but plain HTTP does not hide it on the way.
    ///
    /// ```no_run
    /// # #[conductor::worker] fn resize(n: u64) -> anyhow::Result<u64> { Ok(n) }
    /// # async fn demo() -> Result<(), conductor::Error> {
    /// let report = conductor::Conductor::of::<resize>()
    ///     .dashboard("127.0.0.1:8800")
    ///     .jobs(0..100_000)
    ///     .run()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn dashboard(mut self, address: impl Into<String>) -> Self {
        self.dashboard = Some(address.into());
        self
    }

    /// A named lookup table that workers read with [`crate::Worker::lookup`] (the
    /// seed's `lookups`). Replaces a table of the same name.
    pub fn lookup_table<K, V, I>(mut self, name: impl Into<String>, entries: I) -> Self
    where
        K: Serialize,
        V: Serialize,
        I: IntoIterator<Item = (K, V)>,
    {
        let encoded: Result<HashMap<Vec<u8>, Vec<u8>>, Error> = entries
            .into_iter()
            .map(|(k, v)| lookup::encode_entry(&k, &v))
            .collect();
        match encoded {
            Ok(table) => self.shared.lookups.insert_table(name.into(), table),
            Err(e) => self.setup_error = Some(e),
        }
        self
    }

    /// The conductor's unique id.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The worker type this conductor starts.
    pub fn worker_type(&self) -> &str {
        &self.settings.worker_type
    }

    /// The most worker processes alive at once.
    pub fn get_worker_limit(&self) -> usize {
        self.settings.worker_limit
    }

    /// A handle for messages, lookups and abort, usable before and during the run.
    pub fn handle(&self) -> ConductorHandle {
        ConductorHandle {
            shared: self.shared.clone(),
        }
    }

    /// Starts the run and returns at once; read its events, then wait for its report.
    /// The run goes on its own thread; dropping the [`Running`] does not stop it (use
    /// [`ConductorHandle::abort`]).
    pub fn start(self) -> Result<Running<J, O>, Error> {
        let (events_tx, events) = mpsc::channel(16);
        let handle = self.handle();
        let mut input = self.prepare()?;
        input.events = Some(events_tx);
        // Processing from now on, not from when the run's thread gets going.
        input
            .shared
            .processing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let run = RunThread::start(input, false).inspect_err(|_| {
            handle
                .shared
                .processing
                .store(false, std::sync::atomic::Ordering::Relaxed);
        })?;
        Ok(Running {
            events,
            buffered: Vec::new().into_iter(),
            handle,
            run,
        })
    }

    /// Runs every job and returns the report; outputs are not kept (use
    /// [`Conductor::start`] to receive them as events). Dropping the future stops
    /// the run and kills its workers.
    pub async fn run(self) -> Result<Report<J>, Error> {
        let input = self.prepare()?;
        input
            .shared
            .processing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let processing = input.shared.clone();
        let run = RunThread::start(input, true).inspect_err(|_| {
            processing
                .processing
                .store(false, std::sync::atomic::Ordering::Relaxed);
        })?;
        run.wait().await
    }

    /// Checks the settings, opens the journal and binds the dashboard: everything
    /// that can fail before the run's thread starts.
    fn prepare(self) -> Result<RunInput<J, O>, Error> {
        boot::ensure_master()?;
        if let Some(error) = self.setup_error {
            return Err(error);
        }
        let registration = registry::find(&self.settings.worker_type)?;
        registry::check_types::<J, O>(registration)?;
        let mut settings = self.settings;
        let url = self.nats_url.or_else(|| {
            std::env::var(ENV_NATS_URL)
                .ok()
                .filter(|url| !url.is_empty())
        });
        if let Some(url) = url {
            if !cfg!(feature = "nats") {
                return Err(Error::usage(
                    "the distributed mode (NATS) needs conductor's `nats` feature",
                ));
            }
            let run = self
                .run_name
                .or_else(|| std::env::var(ENV_RUN).ok())
                .unwrap_or_else(|| default_run_name(&settings.worker_type, &self.shared.id));
            settings.backend = Backend::Nats {
                url,
                run,
                ack_wait: self.ack_wait,
                auth: Box::new(self.nats_auth),
                secret: self
                    .run_secret
                    .or_else(|| std::env::var(ENV_RUN_SECRET).ok().filter(|s| !s.is_empty())),
                worker_auth: self.nats_worker_auth.map(Box::new),
            };
        }
        let journal = match self.journal {
            Some(path) => {
                let key = self.job_key.unwrap_or_else(default_key);
                let keep_outputs = !self.journal_keys_only;
                let journal = Journal::open(&path, key, keep_outputs, self.journal_sync);
                Some(journal.map_err(|e| Error::journal(&path, e))?)
            }
            None => None,
        };
        let dashboard = match self.dashboard {
            Some(address) => Some(dashboard::bind(&address, &self.shared)?),
            None => std::env::var(ENV_DASHBOARD)
                .ok()
                .filter(|a| !a.is_empty())
                .and_then(|address| dashboard::bind_for_env(&address, &self.shared)),
        };
        Ok(RunInput {
            settings,
            shared: self.shared,
            source: self.source,
            journal,
            commands: self.commands,
            events: None,
            dashboard,
            job_layout: (registration.job_layout)(),
        })
    }
}

impl<J, O> std::fmt::Debug for Conductor<J, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conductor")
            .field("id", &self.shared.id)
            .field("settings", &self.settings)
            .finish()
    }
}

/// A fresh run name: the worker type, made safe, and the conductor's unique id.
fn default_run_name(worker_type: &str, id: &str) -> String {
    let safe: String = worker_type
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                true => c,
                false => '-',
            },
        )
        .take(24)
        .collect();
    format!("{safe}-{id}")
}

/// The seed's default: the number of CPUs, at most 4.
fn default_worker_limit() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
}
