//! What job code sees: the [`JobWorker`] trait and the [`Worker`] handle.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use super::exit::EXIT_CRASHED;
use super::shared::WorkerShared;
use crate::error::Error;
use crate::lookup;
use crate::message::{decode_reply, Message};
use crate::stats::Counters;
use crate::wire::{fits_in_frame, Request, ToMaster};

/// A worker with state: built once per worker process, then fed jobs one at a time.
///
/// Register an implementation with `#[conductor::worker(type = "...")]` on the impl
/// block. A plain function with the same attribute is the stateless shorthand.
///
/// ```
/// use conductor::{JobWorker, Message, Worker};
///
/// struct Resizer {
///     scale: u32,
/// }
///
/// #[conductor::worker(type = "resizer")]
/// impl JobWorker for Resizer {
///     type Job = u32;
///     type Output = u32;
///
///     async fn init(_worker: &Worker) -> anyhow::Result<Self> {
///         Ok(Resizer { scale: 3 })
///     }
///
///     async fn process(&mut self, job: u32, worker: &Worker) -> anyhow::Result<u32> {
///         worker.count("pixels", i64::from(job));
///         Ok(job * self.scale)
///     }
///
///     async fn on_message(&mut self, message: Message, _worker: &Worker) -> anyhow::Result<()> {
///         if message.cmd() == "scale" {
///             self.scale = message.data()?;
///         }
///         Ok(())
///     }
/// }
/// # fn main() {}
/// ```
#[allow(async_fn_in_trait)] // Workers run on their process's main task: no `Send` bound is needed.
pub trait JobWorker: Sized + 'static {
    /// What the master sends.
    type Job: Serialize + DeserializeOwned + 'static;
    /// What a finished job sends back.
    type Output: Serialize + DeserializeOwned + 'static;

    /// Builds the worker once per process, before its first job. An error crashes the
    /// worker (exit code 4) and the master starts a replacement.
    async fn init(worker: &Worker) -> anyhow::Result<Self>;

    /// Runs one job. An error or a panic fails this job and the worker goes on.
    async fn process(&mut self, job: Self::Job, worker: &Worker) -> anyhow::Result<Self::Output>;

    /// Handles a custom message from the master, between jobs: a message that has
    /// reached the worker runs before its next job starts (a job that runs long has
    /// the watchdog read it meanwhile; between short jobs the channel is read at least
    /// every millisecond). A message sent while `init` runs waits for it to finish.
    /// The default ignores it (and a message that expected a reply gets an error
    /// reply that says how to answer).
    async fn on_message(&mut self, message: Message, worker: &Worker) -> anyhow::Result<()> {
        let _ = (message, worker);
        Ok(())
    }
}

/// A [`JobWorker`] registered under a type name, so [`crate::Conductor::of`] can name it.
/// Implemented by `#[conductor::worker]` on an impl block.
pub trait NamedWorker: JobWorker {
    /// The name given in `#[conductor::worker(type = "...")]`.
    const TYPE: &'static str;
}

/// The job code's handle on its worker process: identity, counters, lookups and
/// messages to the master.
#[derive(Clone)]
pub struct Worker {
    pub(crate) shared: Arc<WorkerShared>,
}

impl Worker {
    /// This worker's id, unique for the life of its conductor (a replacement gets a
    /// new one).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The id of the conductor that runs this worker.
    pub fn master_id(&self) -> &str {
        &self.shared.master_id
    }

    /// The value the conductor gave with [`Conductor::context`](crate::Conductor::context),
    /// as `C`: read it in `init`. An error if the conductor gave none, or gave
    /// another type.
    pub fn context<C: DeserializeOwned>(&self) -> Result<C, Error> {
        let Some(bytes) = &self.shared.context else {
            return Err(Error::usage(format!(
                "this worker's conductor gave no context; give the `{}` with \
                 `Conductor::context(&value)`",
                std::any::type_name::<C>()
            )));
        };
        lookup::decode("the context", bytes)
    }

    /// The type name this worker was registered under.
    pub fn worker_type(&self) -> &str {
        &self.shared.worker_type
    }

    /// Adds `delta` to the counter `name`, creating it at 0 first.
    pub fn count(&self, name: &str, delta: i64) {
        self.shared.stats.add(name, delta);
    }

    /// Sets the counter `name` to `value`.
    pub fn set_stat(&self, name: &str, value: i64) {
        self.shared.stats.set(name, value);
    }

    /// The current counters.
    pub fn stats(&self) -> Counters {
        self.shared.stats.snapshot()
    }

    /// The counters as of the last roll sent to the master.
    pub fn last_stats(&self) -> Counters {
        self.shared.stats.last_rolled()
    }

    /// Resumes the periodic stats rolls (on by default).
    pub fn start_monitoring(&self) {
        self.shared.monitoring.store(true, Ordering::Relaxed);
    }

    /// Pauses the periodic stats rolls; the final roll on exit is still sent.
    pub fn stop_monitoring(&self) {
        self.shared.monitoring.store(false, Ordering::Relaxed);
    }

    /// Whether periodic stats rolls are on.
    pub fn is_monitoring(&self) -> bool {
        self.shared.monitoring.load(Ordering::Relaxed)
    }

    /// Sends a custom command to the master without waiting for an answer.
    pub fn send<T: Serialize + ?Sized>(&self, cmd: &str, data: &T) -> Result<(), Error> {
        let request = self.message(cmd, data)?;
        self.shared.send_control(&ToMaster::Request {
            request_id: None,
            request,
        });
        Ok(())
    }

    /// Sends a custom command to the master and waits for its reply. A command the
    /// master does not handle comes back as an error ([`Error::is_remote`]).
    pub async fn request<R: DeserializeOwned, T: Serialize + ?Sized>(
        &self,
        cmd: &str,
        data: &T,
    ) -> Result<R, Error> {
        let reply = self.shared.request(self.message(cmd, data)?).await?;
        decode_reply(reply)
    }

    /// A custom command as a request, refused here if it could not fit in a frame.
    fn message<T: Serialize + ?Sized>(&self, cmd: &str, data: &T) -> Result<Request, Error> {
        let data = lookup::encode("a message payload", data)?;
        fits_in_frame(
            "the message",
            data.len() + cmd.len() + 64,
            self.shared.max_frame,
        )?;
        Ok(Request::Message {
            cmd: cmd.to_string(),
            data,
        })
    }

    /// Reads `key` from the master's lookup table `table`.
    pub async fn lookup<V: DeserializeOwned, K: Serialize + ?Sized>(
        &self,
        table: &str,
        key: &K,
    ) -> Result<Option<V>, Error> {
        let key = lookup::encode("a lookup key", key)?;
        let reply = self
            .shared
            .request(Request::Lookup {
                table: table.to_string(),
                key,
            })
            .await?;
        let bytes = reply.map_err(Error::remote)?;
        match lookup::decode_reply(&bytes)? {
            Some(value) => Ok(Some(lookup::decode("a lookup value", value)?)),
            None => Ok(None),
        }
    }

    /// Stores `key` → `value` in the master's lookup table `table` (created if new),
    /// and waits until the master has it.
    pub async fn set_lookup<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &self,
        table: &str,
        key: &K,
        value: &V,
    ) -> Result<(), Error> {
        let (key, value) = lookup::encode_entry(key, value)?;
        fits_in_frame(
            "the lookup entry",
            key.len() + value.len() + table.len() + 64,
            self.shared.max_frame,
        )?;
        let reply = self
            .shared
            .request(Request::SetLookup {
                table: table.to_string(),
                key,
                value,
            })
            .await?;
        reply.map(drop).map_err(Error::remote)
    }

    /// Stops this worker at once: sends the results and stats it holds, tells the
    /// master why, and exits with code 4. The master reports the crash, counts an
    /// attempt for the job that was running, and starts a replacement.
    pub fn crash(&self, reason: impl fmt::Display) -> ! {
        self.shared.crash(reason.to_string())
    }
}

impl Worker {
    /// Writes raw bytes to the master's channel, bypassing the protocol. Only for
    /// tests that check how a master survives a broken worker.
    #[doc(hidden)]
    pub fn __send_raw_bytes(&self, bytes: &[u8]) {
        self.shared.send_raw(bytes);
    }
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id())
            .field("master_id", &self.master_id())
            .field("worker_type", &self.worker_type())
            .finish()
    }
}

/// The code a crashed worker exits with, as in the seed.
pub const CRASH_EXIT_CODE: i32 = EXIT_CRASHED;
