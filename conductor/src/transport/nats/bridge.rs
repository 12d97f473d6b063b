//! The worker's side of the NATS mode: a bridge between the run's streams and
//! subjects and the ordinary worker loop.
//!
//! The worker loop is exactly the local one: it talks frames over a socketpair. The
//! bridge holds the other end. It pulls jobs from the shared consumer and writes
//! them as jobs frames; it stores each results frame in the results stream and only
//! then acks the jobs it answers; it keeps the lease of held jobs with in-progress
//! acks; and it carries control frames both ways on the run's subjects.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use async_nats::{Client, HeaderMap};
use bytes::{BufMut, Bytes};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{oneshot, Notify};

use super::held::Held;
use super::join_request::{ask_to_join, Accepted};
use super::seal::{frame_context, Purpose, ReplayWindow, RunKey, RunSecret, Sealer};
use super::{RunNames, HEADER_MASTER, HEADER_WORKER, HEARTBEAT, RETRY, WORKERS_CONSUMER};
use crate::settings::NatsAuth;
use crate::transport::Joined;
use crate::wire::{
    control_frame, decode_control, FailedAs, FrameReader, Request, ToMaster, ToWorker, KIND_CONTROL,
};

/// How long a pull waits for jobs before asking again.
pub(super) const PULL_WAIT: Duration = Duration::from_millis(250);
/// How long a request waits for its reply before it is sent again.
pub(super) const REASK: Duration = Duration::from_secs(3);

/// Connects, asks the run's master to join, and starts the bridge on its own thread.
/// An error is the reason the worker cannot join, for the operator.
pub(crate) fn join(
    url: &str,
    run: &str,
    worker_type: Option<String>,
    worker_id: Option<(u64, u64)>,
    auth: NatsAuth,
    secret: Option<String>,
) -> Result<Joined, String> {
    let names = RunNames::new(run).map_err(|e| e.to_string())?;
    let secret = secret.ok_or_else(|| {
        format!(
            "joining run `{run}` needs its secret: set {} to the one its master printed",
            crate::boot::env::ENV_RUN_SECRET
        )
    })?;
    let secret =
        RunSecret::parse(&secret).map_err(|e| format!("the secret of run `{run}`: {e}"))?;
    let sealer = Sealer::new(RunKey::new(&secret, run));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let url = url.to_string();
    std::thread::Builder::new()
        .name("conductor-nats".into())
        .spawn(move || {
            // The bridge alone drains the worker's channel: its own events must not
            // wait for room in it.
            crate::worker::logs::keep_on_this_thread();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot start a tokio runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(run_bridge(
                url,
                auth,
                names,
                sealer,
                worker_type,
                worker_id,
                ready_tx,
            ));
        })
        .map_err(|e| format!("cannot start the NATS bridge thread: {e}"))?;
    ready_rx
        .recv()
        .map_err(|_| "the NATS bridge stopped before joining".to_string())?
}

type Ready = std::sync::mpsc::Sender<Result<Joined, String>>;

async fn run_bridge(
    url: String,
    auth: NatsAuth,
    names: RunNames,
    sealer: Sealer,
    worker_type: Option<String>,
    worker_id: Option<(u64, u64)>,
    ready: Ready,
) {
    let joined = match ask_to_join(&url, &auth, &names, &sealer, worker_type, worker_id).await {
        Ok(joined) => joined,
        Err(reason) => {
            let _ = ready.send(Err(reason));
            return;
        }
    };
    // Started by hand, not by the master: recycled, it starts itself afresh.
    let from_elsewhere = worker_id.is_none();
    let Accepted {
        client,
        config_frame,
        worker_id,
        master_id,
        worker_type,
        window,
        ack_wait,
        max_attempts,
        max_jobs,
        sequence_floor,
    } = joined;
    let (ours, theirs) = match UnixStream::pair() {
        Ok(pair) => pair,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot create the worker's channel: {e}")));
            return;
        }
    };
    let theirs_fd = theirs.as_raw_fd();
    let ours = match ours
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(ours))
    {
        Ok(ours) => ours,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot set up the worker's channel: {e}")));
            return;
        }
    };
    let (read, write) = ours.into_split();
    let bridge = Arc::new(Bridge {
        client: client.clone(),
        jetstream: super::jetstream_context(client),
        names,
        worker_id,
        master_id,
        write: tokio::sync::Mutex::new(write),
        held: Mutex::new(Held::default()),
        redeliveries: Mutex::new(HashMap::new()),
        next_ask: std::sync::atomic::AtomicU64::new(1),
        room: Notify::new(),
        started: std::sync::atomic::AtomicBool::new(false),
        asked: Mutex::new(HashMap::new()),
        stopping: std::sync::atomic::AtomicBool::new(false),
        window,
        max_attempts,
        pulls_left: std::sync::atomic::AtomicU64::new(max_jobs.unwrap_or(u64::MAX)),
        sealer,
        from_master: Mutex::new(ReplayWindow::above(sequence_floor)),
        from_elsewhere,
    });
    if bridge.write_frame(&config_frame).await.is_err() {
        let _ = ready.send(Err("the worker's channel closed at once".into()));
        return;
    }
    let subscribed = async {
        let own = bridge
            .client
            .subscribe(bridge.names.worker_subject(&bridge.master_id, worker_id))
            .await?;
        let all = bridge.client.subscribe(bridge.names.all_subject()).await?;
        Ok::<_, async_nats::SubscribeError>(futures_util::stream::select(own, all))
    };
    let control = match subscribed.await {
        Ok(control) => control,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot subscribe to the master: {e}")));
            return;
        }
    };
    install_exit_hook(theirs_fd);
    let _ = ready.send(Ok(Joined {
        channel: theirs,
        worker_type,
    }));
    let puller = tokio::spawn(bridge.clone().pull_jobs());
    let tasks = [
        tokio::spawn(bridge.clone().carry_control(control)),
        tokio::spawn(bridge.clone().keep_leases(ack_wait)),
        tokio::spawn(bridge.clone().heartbeat()),
        tokio::spawn(bridge.clone().ask_again()),
    ];
    // Runs until the worker loop closes its end (it exits).
    bridge.clone().carry_frames(read).await;
    // A pull under way is let finish, not cut off: the server counts the jobs it
    // delivered as held by this worker, and only their ack wait would free them.
    // Unless the queue is empty (the run's end): then no pull can bring a job, and
    // waiting for it to expire would only hold up the end.
    bridge
        .stopping
        .store(true, std::sync::atomic::Ordering::Relaxed);
    bridge.room.notify_one();
    if bridge.queue_is_empty().await {
        puller.abort();
    } else {
        let _ = tokio::time::timeout(PULL_WAIT + Duration::from_secs(2), puller).await;
    }
    for task in tasks {
        task.abort();
    }
    bridge.give_back_held().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), bridge.client.flush()).await;
    exit_hook_done();
}

pub(super) struct Bridge {
    pub(super) client: Client,
    pub(super) jetstream: jetstream::Context,
    pub(super) names: RunNames,
    pub(super) worker_id: u64,
    master_id: String,
    write: tokio::sync::Mutex<OwnedWriteHalf>,
    /// The run queue's messages it holds, and their jobs not yet answered.
    held: Mutex<Held>,
    /// The master's answers about messages that came again, awaited by ask number.
    pub(super) redeliveries: Mutex<HashMap<u64, oneshot::Sender<Redelivery>>>,
    pub(super) next_ask: std::sync::atomic::AtomicU64,
    /// Signalled when held jobs are answered, and when the worker is ready.
    pub(super) room: Notify,
    /// The worker loop said it is ready: its init went well.
    pub(super) started: std::sync::atomic::AtomicBool,
    /// Requests to the master not answered yet, by request id, with when they went.
    asked: Mutex<HashMap<u64, (Bytes, Instant)>>,
    pub(super) stopping: std::sync::atomic::AtomicBool,
    pub(super) window: usize,
    pub(super) max_attempts: u32,
    /// Jobs it may still pull before it is replaced.
    pub(super) pulls_left: std::sync::atomic::AtomicU64,
    /// Seals what it sends and opens what it gets.
    pub(super) sealer: Sealer,
    /// The master's frames taken so far: each is taken once.
    from_master: Mutex<ReplayWindow>,
    /// Started by hand, not by the master.
    from_elsewhere: bool,
}

/// The master's answer about a message that came again: the jobs to run, and those
/// to fail with their error (`ToWorker::Redelivery`).
pub(super) type Redelivery = (Vec<u64>, Vec<(u64, FailedAs, String)>);

impl Bridge {
    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_WORKER, self.worker_id.to_string().as_str());
        headers.insert(HEADER_MASTER, self.master_id.as_str());
        headers
    }

    /// Sends a control frame body to the master, sealed and numbered.
    pub(super) async fn to_master(&self, body: &[u8]) {
        let context = frame_context(&self.master_id, self.worker_id);
        let sealed = self.sealer.seal_frame(Purpose::ToMaster, &context, body);
        let _ = self
            .client
            .publish_with_headers(self.names.master_subject(), self.headers(), sealed)
            .await;
    }

    /// Writes a whole frame (header included) to the worker loop.
    pub(super) async fn write_frame(&self, frame: &[u8]) -> std::io::Result<()> {
        self.write.lock().await.write_all(frame).await
    }

    pub(super) fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Frames from the worker loop: results are stored, then their jobs acked;
    /// control frames go to the master as they are.
    async fn carry_frames(self: Arc<Self>, read: tokio::net::unix::OwnedReadHalf) {
        let mut frames = FrameReader::new(read, usize::MAX >> 1);
        while let Ok(Some(body)) = frames.next().await {
            match body.first() {
                Some(&crate::wire::KIND_RESULTS) => self.store_results(body).await,
                _ => {
                    match body.get(1..).map(decode_control::<ToMaster>) {
                        // The bridge says it is alive itself, for the whole process.
                        Some(Ok(ToMaster::Heartbeat)) => continue,
                        Some(Ok(ToMaster::Bye | ToMaster::Crash { .. })) => {
                            self.stopping
                                .store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        // Jobs only for a worker whose init went well.
                        Some(Ok(ToMaster::Ready { .. })) => {
                            self.started
                                .store(true, std::sync::atomic::Ordering::Relaxed);
                            self.room.notify_one();
                        }
                        Some(Ok(ToMaster::Request {
                            request_id: Some(id),
                            request: Request::Lookup { .. } | Request::SetLookup { .. },
                        })) => {
                            self.asked().insert(id, (body.clone(), Instant::now()));
                        }
                        _ => {}
                    }
                    self.to_master(&body).await;
                }
            }
        }
    }

    /// Stores a results frame until the server confirms, then acks the messages all
    /// of whose jobs are answered.
    pub(super) async fn store_results(&self, body: Bytes) {
        let sealed = self
            .sealer
            .key
            .seal(Purpose::Results, &self.worker_id.to_string(), &body);
        loop {
            let stored = match self
                .jetstream
                .publish_with_headers(self.names.results_subject(), self.headers(), sealed.clone())
                .await
            {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match stored {
                Ok(()) => break,
                // The run is over (its master settled every job and removed its
                // streams): these answers are of jobs run twice, and nobody needs them.
                Err(_) if self.results_stream_gone().await => {
                    self.run_is_over().await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(
                        target: "conductor::worker",
                        worker = self.worker_id,
                        "storing results failed, retrying: {e}"
                    );
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
        let answered = self.held().answered(
            crate::wire::ResultsReader::new(&body[1..])
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.id),
        );
        for message in answered {
            // If the ack is lost, the job comes back and its second answer is ignored.
            let _ = message.ack().await;
        }
        self.room.notify_one();
    }

    /// Whether the server says the run's results stream no longer exists.
    async fn results_stream_gone(&self) -> bool {
        match self.jetstream.get_stream(self.names.results_stream()).await {
            Err(e) => is_stream_gone(&e),
            Ok(_) => false,
        }
    }

    /// Control frames from the master to the worker loop.
    async fn carry_control(
        self: Arc<Self>,
        mut control: impl futures_util::Stream<Item = async_nats::Message> + Unpin,
    ) {
        let all = self.names.all_subject();
        while let Some(message) = control.next().await {
            // Anyone can publish on a subject: only a frame the master sealed for this
            // worker (or all of its workers), never taken before, goes through.
            let to = match message.subject.as_str() == all {
                true => frame_context(&self.master_id, "all"),
                false => frame_context(&self.master_id, self.worker_id),
            };
            let opened = self
                .sealer
                .key
                .open_numbered(Purpose::ToWorker, &to, &message.payload);
            let Some((sequence, body)) = opened else {
                self.sealer.rejections.note(
                    "the master?",
                    message.subject.as_str(),
                    "a control frame",
                );
                continue;
            };
            let fresh = self
                .from_master
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(sequence);
            if !fresh {
                self.sealer.rejections.note(
                    "the master?",
                    message.subject.as_str(),
                    "a control frame played again",
                );
                continue;
            }
            let body = Bytes::from(body);
            let decoded = match body.split_first() {
                Some((&KIND_CONTROL, payload)) => {
                    decode_control::<ToWorker>(payload).map_err(|e| e.to_string())
                }
                _ => Err("not a control frame".to_string()),
            };
            match decoded {
                Ok(ToWorker::Reply { request_id, .. }) => {
                    self.asked().remove(&request_id);
                }
                // For the bridge itself: which jobs of a message that came again to run.
                Ok(ToWorker::Redelivery { ask, run, failed }) => {
                    let waiter = self
                        .redeliveries
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&ask);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send((run, failed));
                    }
                    continue;
                }
                Ok(ToWorker::Stop | ToWorker::Abort) => {
                    // Stopped alone at its `max_jobs_per_worker`, not with the run: a
                    // worker from elsewhere starts afresh once it has left.
                    let at_limit = self.pulls_left.load(std::sync::atomic::Ordering::Relaxed) == 0;
                    if self.from_elsewhere && at_limit && message.subject.as_str() != all {
                        RECYCLED.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    self.stopping
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    self.room.notify_one();
                }
                Ok(_) => {}
                Err(reason) => {
                    tracing::warn!(
                        target: "conductor::worker",
                        worker = self.worker_id,
                        "a malformed message on {} was dropped: {reason}",
                        message.subject
                    );
                    continue;
                }
            }
            let mut frame = Vec::with_capacity(body.len() + 4);
            frame.put_u32_le(body.len() as u32);
            frame.extend_from_slice(&body);
            if self.write_frame(&frame).await.is_err() {
                return;
            }
        }
    }

    /// Whether the run's queue holds no job to deliver, as the server says now (`false`
    /// when it cannot say within a moment).
    async fn queue_is_empty(&self) -> bool {
        let asked = async {
            let stream = self
                .jetstream
                .get_stream(self.names.jobs_stream())
                .await
                .ok()?;
            let mut consumer: jetstream::consumer::PullConsumer =
                stream.get_consumer(WORKERS_CONSUMER).await.ok()?;
            Some(consumer.info().await.ok()?.num_pending == 0)
        };
        matches!(
            tokio::time::timeout(Duration::from_millis(500), asked).await,
            Ok(Some(true))
        )
    }

    /// The run's queue is gone: its master finished it (and this worker missed the
    /// stop) or removed it. The worker loop is told to stop, as a master would.
    pub(super) async fn run_is_over(&self) {
        if self
            .stopping
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let _ = self.write_frame(&control_frame(&ToWorker::Stop)).await;
    }

    fn asked(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Bytes, Instant)>> {
        self.asked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends again the lookups the master has not answered: a request or its reply
    /// can be lost while the server restarts, and the job waiting on it would wait
    /// for ever. Lookups are idempotent; custom messages are not, and are not resent.
    async fn ask_again(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let due: Vec<Bytes> = self
                .asked()
                .values_mut()
                .filter(|(_, at)| at.elapsed() > REASK)
                .map(|(body, at)| {
                    *at = Instant::now();
                    body.clone()
                })
                .collect();
            for body in due {
                // Sealed anew: the master takes each number once.
                self.to_master(&body).await;
            }
        }
    }

    /// Hands unanswered jobs back to the queue at once, for another worker: a worker
    /// that exits holding jobs (aborted, crashed) need not make them wait out the
    /// ack wait. Only a worker killed outright leaves that to the server.
    async fn give_back_held(&self) {
        let held = self.held().drain();
        for message in held {
            let _ = message.ack_with(AckKind::Nak(None)).await;
        }
    }

    /// Tells the server the held jobs are still being worked on, so their lease holds.
    async fn keep_leases(self: Arc<Self>, ack_wait: Duration) {
        let every = (ack_wait / 3).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(every).await;
            let held = self.held().all();
            for message in held {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    }

    async fn heartbeat(self: Arc<Self>) {
        let frame = control_frame(&ToMaster::Heartbeat);
        loop {
            self.to_master(&frame[4..]).await;
            tokio::time::sleep(HEARTBEAT).await;
        }
    }
}

pub(super) fn is_stream_gone(error: &async_nats::jetstream::context::GetStreamError) -> bool {
    match error.kind() {
        async_nats::jetstream::context::GetStreamErrorKind::JetStream(e) => {
            e.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
        }
        _ => false,
    }
}

/// Set when this worker, from elsewhere, was stopped at its `max_jobs_per_worker`.
static RECYCLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this worker should start itself afresh and join again once it has left:
/// it came from elsewhere and ran its `max_jobs_per_worker`.
pub(crate) fn recycled() -> bool {
    RECYCLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Set once the bridge has carried the worker's last frames.
static BRIDGE_DONE: (Mutex<bool>, std::sync::Condvar) =
    (Mutex::new(false), std::sync::Condvar::new());

fn exit_hook_done() {
    let (done, signal) = &BRIDGE_DONE;
    *done.lock().unwrap_or_else(|p| p.into_inner()) = true;
    signal.notify_all();
}

/// Before the worker process exits, its last frames (results, the final stats, a bye
/// or a crash) must still reach NATS: shutting the worker's end for writing lets the
/// bridge read them to the end, and the exit waits (a little) for that.
fn install_exit_hook(theirs: RawFd) {
    crate::worker::exit::set_before_exit(Box::new(move || {
        // SAFETY: shutdown(2) on the worker's own end of the pair; it stays open.
        unsafe { libc::shutdown(theirs, libc::SHUT_WR) };
        let (done, signal) = &BRIDGE_DONE;
        let guard = done.lock().unwrap_or_else(|p| p.into_inner());
        let _ = signal.wait_timeout_while(guard, Duration::from_secs(3), |done| !*done);
    }));
}
