//! The master's handle on a conductor: messages to workers, lookups, abort, status.
//!
//! Everything here works without the run loop's help (workers' channels and the
//! lookup tables are shared), so a handle can be used from an event loop, another
//! task or a signal handler without waiting behind a busy run.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::lookup::{self, LookupStore};
use crate::message::decode_reply;
use crate::stats::StatsReport;
use crate::transport::link::WorkerLink;
use crate::wire::{control_frame, fits_in_frame, ReplyResult, ToWorker};

/// A cloneable handle on a conductor, usable before, during and after its run.
#[derive(Clone)]
pub struct ConductorHandle {
    pub(crate) shared: Arc<Shared>,
}

/// Requests from handles that only the run loop can carry out.
pub(crate) enum Command {
    Abort,
    Shutdown,
}

type ReplySender = oneshot::Sender<ReplyResult>;

/// State that the run loop, the per-worker tasks and every handle share.
pub(crate) struct Shared {
    pub id: String,
    pub worker_type: String,
    pub lookups: LookupStore,
    pub processing: AtomicBool,
    /// The frame limit, so messages too large for a frame fail where they are sent.
    pub max_frame: AtomicUsize,
    pub last_stats: Mutex<Option<StatsReport>>,
    /// Live workers (handshake done, not exited), by id.
    pub links: Mutex<BTreeMap<u64, WorkerLink>>,
    pub commands: mpsc::UnboundedSender<Command>,
    /// Where the dashboard is, with its token, once it is bound.
    pub dashboard_url: std::sync::OnceLock<String>,
    /// The run's counts as of the run loop's last turn, for those who ask from outside
    /// (an operator's `CONDUCTOR_RUNS`).
    pub counts: Mutex<crate::metrics::RunCounts>,
    /// The master's requests waiting for a worker's reply: request id → (worker, reply).
    pending: Mutex<HashMap<u64, (u64, ReplySender)>>,
    next_request: AtomicU64,
}

impl Shared {
    pub fn new(worker_type: String, commands: mpsc::UnboundedSender<Command>) -> Self {
        Shared {
            id: new_conductor_id(),
            worker_type,
            lookups: LookupStore::default(),
            processing: AtomicBool::new(false),
            max_frame: AtomicUsize::new(crate::wire::DEFAULT_MAX_FRAME_BYTES),
            last_stats: Mutex::new(None),
            links: Mutex::new(BTreeMap::new()),
            commands,
            dashboard_url: std::sync::OnceLock::new(),
            counts: Mutex::new(Default::default()),
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
        }
    }

    pub fn lock_links(&self) -> MutexGuard<'_, BTreeMap<u64, WorkerLink>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_pending(&self) -> MutexGuard<'_, HashMap<u64, (u64, ReplySender)>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers a worker's reply to the request that waits for it.
    pub fn answer(&self, request_id: u64, result: ReplyResult) {
        if let Some((_, waiter)) = self.lock_pending().remove(&request_id) {
            let _ = waiter.send(result);
        }
    }

    /// Takes a worker that stopped out of the live set and fails its requests.
    pub fn forget_worker(&self, worker_id: u64) {
        self.lock_links().remove(&worker_id);
        self.forget_requests(worker_id);
    }

    /// Fails the requests still waiting on a worker whose channel has closed: they
    /// can never be answered, and their callers must not wait for the run loop.
    pub fn forget_requests(&self, worker_id: u64) {
        self.lock_pending()
            .retain(|_, (worker, _)| *worker != worker_id);
    }

    fn link(&self, worker_id: u64) -> Result<WorkerLink, Error> {
        self.lock_links()
            .get(&worker_id)
            .cloned()
            .ok_or_else(|| Error::disconnected(format!("no live worker with id {worker_id}")))
    }
}

/// A conductor id: unique per process and per run, readable in logs.
fn new_conductor_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{:x}-{}-{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

impl ConductorHandle {
    /// The address of the run's live dashboard, with its token (`http://127.0.0.1:PORT/#token=...`),
    /// once the run is started with [`Conductor::dashboard`](crate::Conductor::dashboard)
    /// (or `CONDUCTOR_DASHBOARD`); `None` otherwise.
    pub fn dashboard_url(&self) -> Option<&str> {
        self.shared.dashboard_url.get().map(String::as_str)
    }

    /// The conductor's unique id; its workers see it as [`crate::Worker::master_id`].
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The worker type this conductor starts.
    pub fn worker_type(&self) -> &str {
        &self.shared.worker_type
    }

    /// Whether the conductor is running its jobs (the seed's `isProcessing()`).
    pub fn is_processing(&self) -> bool {
        self.shared.processing.load(Ordering::Relaxed)
    }

    /// The most recent aggregated stats report, if any round has completed.
    pub fn last_stats(&self) -> Option<StatsReport> {
        self.shared
            .last_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Ids of the workers that can be sent to: started (a worker still in its `init`
    /// handles what it is sent once `init` is done) and not exited. Workers that join
    /// from elsewhere count once they have joined.
    pub fn workers(&self) -> Vec<u64> {
        self.shared.lock_links().keys().copied().collect()
    }

    /// Sends a custom command to one worker, without waiting for an answer.
    pub fn send<T: Serialize + ?Sized>(
        &self,
        worker_id: u64,
        cmd: &str,
        data: &T,
    ) -> Result<(), Error> {
        let frame = message_frame(&self.shared, cmd, data, None)?;
        self.shared
            .link(worker_id)?
            .send(frame)
            .map_err(|_| Error::disconnected(format!("worker {worker_id} has exited")))
    }

    /// Sends a custom command to every live worker; returns how many got it.
    pub fn broadcast<T: Serialize + ?Sized>(&self, cmd: &str, data: &T) -> Result<usize, Error> {
        let frame = message_frame(&self.shared, cmd, data, None)?;
        let links = self.shared.lock_links();
        Ok(links
            .values()
            .filter(|link| link.send(frame.clone()).is_ok())
            .count())
    }

    /// Sends a custom command to one worker and waits for its reply. A worker that
    /// does not handle the command answers with an error ([`Error::is_remote`]); one
    /// that exits first gives [`Error::is_disconnected`].
    pub async fn request<R: DeserializeOwned, T: Serialize + ?Sized>(
        &self,
        worker_id: u64,
        cmd: &str,
        data: &T,
    ) -> Result<R, Error> {
        let link = self.shared.link(worker_id)?;
        let request_id = self.shared.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.shared
            .lock_pending()
            .insert(request_id, (worker_id, tx));
        let sent = link.send(message_frame(&self.shared, cmd, data, Some(request_id))?);
        if sent.is_err() {
            self.shared.lock_pending().remove(&request_id);
            return Err(Error::disconnected(format!(
                "worker {worker_id} has exited"
            )));
        }
        let reply = rx.await.map_err(|_| {
            Error::disconnected(format!(
                "worker {worker_id} exited before replying to `{cmd}`"
            ))
        })?;
        decode_reply(reply)
    }

    /// Stops the run: workers exit at once, and the report lists the jobs that did
    /// not run. Does nothing once the run has ended.
    pub fn abort(&self) {
        let _ = self.shared.commands.send(Command::Abort);
    }

    /// Stops the run gracefully, as the first Ctrl-C does: no new jobs start, the jobs
    /// in flight get [`crate::Conductor::shutdown_grace`] to finish, and the report
    /// lists the rest as not run, with [`crate::Report::interrupted`] set. A second
    /// call stops the workers at once.
    pub fn shutdown(&self) {
        let _ = self.shared.commands.send(Command::Shutdown);
    }

    /// Reads `key` from the lookup table `table` (the seed's `getLookupValue`).
    pub fn lookup<V: DeserializeOwned, K: Serialize + ?Sized>(
        &self,
        table: &str,
        key: &K,
    ) -> Result<Option<V>, Error> {
        let key = lookup::encode("a lookup key", key)?;
        match self.shared.lookups.get(table, &key).map_err(Error::usage)? {
            Some(value) => Ok(Some(lookup::decode("a lookup value", &value)?)),
            None => Ok(None),
        }
    }

    /// Stores `key` → `value` in the lookup table `table`, creating the table if
    /// needed (the seed's `setLookupValue`). Workers see it from their next lookup.
    pub fn set_lookup<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &self,
        table: &str,
        key: &K,
        value: &V,
    ) -> Result<(), Error> {
        let (key, value) = lookup::encode_entry(key, value)?;
        self.shared.lookups.set(table, key, value);
        Ok(())
    }

    /// Every entry of the lookup table `table`, or `None` if there is no such table
    /// (the seed's `getLookup`).
    pub fn lookup_table<K: DeserializeOwned, V: DeserializeOwned>(
        &self,
        table: &str,
    ) -> Result<Option<Vec<(K, V)>>, Error> {
        let Some(entries) = self.shared.lookups.entries(table) else {
            return Ok(None);
        };
        entries
            .iter()
            .map(|(k, v)| {
                Ok((
                    lookup::decode("a lookup key", k)?,
                    lookup::decode("a lookup value", v)?,
                ))
            })
            .collect::<Result<Vec<_>, Error>>()
            .map(Some)
    }

    /// The names of the lookup tables.
    pub fn lookup_names(&self) -> Vec<String> {
        self.shared.lookups.table_names()
    }
}

fn message_frame<T: Serialize + ?Sized>(
    shared: &Shared,
    cmd: &str,
    data: &T,
    request_id: Option<u64>,
) -> Result<Bytes, Error> {
    let data = lookup::encode("a message payload", data)?;
    let frame = control_frame(&ToWorker::Message {
        cmd: cmd.to_string(),
        data,
        request_id,
    });
    fits_in_frame(
        "the message",
        frame.len() - 4,
        shared.max_frame.load(Ordering::Relaxed),
    )?;
    Ok(frame)
}

impl std::fmt::Debug for ConductorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConductorHandle")
            .field("id", &self.id())
            .field("worker_type", &self.worker_type())
            .field("processing", &self.is_processing())
            .finish()
    }
}
