//! The builder's settings for the distributed mode: the NATS server, how to log in
//! to it, the run's name and secret, and how long a dead worker's jobs wait.

use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use super::Conductor;
use crate::settings::NatsAuth;

impl<J, O> Conductor<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// Runs the jobs through the NATS JetStream server at `url` (say
    /// `nats://127.0.0.1:4222`) instead of private channels, so that workers on other
    /// machines can join: start the same program there with `CONDUCTOR_NATS_URL`,
    /// `CONDUCTOR_JOIN=<run name>` and `CONDUCTOR_RUN_SECRET` (the run's secret: see
    /// [`Conductor::run_secret`]). The master still starts its own
    /// [`Conductor::worker_limit`] workers. Setting `CONDUCTOR_NATS_URL` for the master
    /// does the same without recompiling. Needs the `nats` feature; without it the run
    /// fails with a usage error.
    ///
    /// ```no_run
    /// # #[conductor::worker(type = "thumbnail")]
    /// # fn thumbnail(path: String) -> anyhow::Result<u64> { Ok(path.len() as u64) }
    /// # async fn demo(paths: Vec<String>) -> Result<(), conductor::Error> {
    /// // Other machines join with:
    /// //   CONDUCTOR_NATS_URL=nats://10.0.0.5:4222 CONDUCTOR_JOIN=thumbs \
    /// //   CONDUCTOR_RUN_SECRET=<the 64 hex digits the master printed> ./this-program
    /// let report = conductor::Conductor::<String, u64>::new("thumbnail")
    ///     .nats("nats://10.0.0.5:4222")
    ///     .run_name("thumbs")
    ///     .jobs(paths)
    ///     .run()
    ///     .await?;
    /// println!("{} done, {} done by an earlier master", report.completed(), report.skipped());
    /// # Ok(()) }
    /// ```
    pub fn nats(mut self, url: impl Into<String>) -> Self {
        self.nats_url = Some(url.into());
        self
    }

    /// How the distributed mode authenticates to a secured NATS server and which
    /// server certificates it trusts (see [`NatsAuth`]); workers it starts get the
    /// same. Unset parts come from the `CONDUCTOR_NATS_*` environment variables.
    pub fn nats_auth(mut self, auth: NatsAuth) -> Self {
        self.nats_auth = auth;
        self
    }

    /// What the workers this master starts itself authenticate with, in the
    /// distributed mode; by default, the master's own credentials. With a NATS user
    /// for the master and one for workers, each holds only the permissions it needs
    /// (see the permissions recipe in the distributed mode's documentation).
    pub fn nats_worker_auth(mut self, auth: NatsAuth) -> Self {
        self.nats_worker_auth = Some(auth);
        self
    }

    /// The secret of the distributed run (64 hex digits): every message of the run is
    /// sealed with it, so that a client of the NATS server without it can neither read
    /// the run's jobs and outputs nor change, add, replay or stop anything. Workers
    /// the master starts get it; workers joined by hand need it in
    /// `CONDUCTOR_RUN_SECRET`. Defaults to `CONDUCTOR_RUN_SECRET`, or else the master
    /// makes one and prints it with the command that joins a worker (when its logging
    /// is on). A master that resumes a run needs the secret the run started with.
    pub fn run_secret(mut self, secret: impl Into<String>) -> Self {
        self.run_secret = Some(secret.into());
        self
    }

    /// The name of the distributed run: workers join it by this name, two runs with
    /// different names never see each other's jobs, and a master restarted with the
    /// same name resumes the run. Defaults to `CONDUCTOR_RUN`, or else to the worker
    /// type and this conductor's id (a fresh run each time). Letters, digits, `_`, `-`.
    pub fn run_name(mut self, name: impl Into<String>) -> Self {
        self.run_name = Some(name.into());
        self
    }

    /// In the distributed mode, how long a worker may hold a job without a sign of
    /// life before the server hands it to another worker (default 10 s). Workers
    /// renew the lease of jobs they run three times per period, so this bounds how
    /// long the jobs of a vanished worker wait, not how long a job may take.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait.max(Duration::from_millis(100));
        self
    }
}
