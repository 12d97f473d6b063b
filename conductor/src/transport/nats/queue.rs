//! The master's side of the NATS mode: the run's streams, the job publisher, and the
//! tasks that turn what workers publish into the run loop's worker events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use super::link::NatsLink;
use super::{
    connect, header_u64, JoinReply, JoinRequest, RunNames, HEADER_HEARTBEAT, HEADER_JOB,
    HEADER_MASTER, HEADER_WORKER, WORKERS_CONSUMER,
};
use crate::boot::env::{ENV_JOIN, ENV_NATS_URL, ENV_WORKER_ID};
use crate::error::{Error, Kind};
use crate::handle::Shared;
use crate::transport::join::{Admission, Joining};
use crate::transport::link::WorkerLink;
use crate::transport::process::{self, watch_exit};
use crate::transport::route::route_frame;
use crate::transport::worker_event::{FromWorker, WorkerEvent};
use crate::transport::{Context, Feed, Pending, StartedWorker, Transport, WorkerSpec};
use crate::wire::JobQueue;

/// How long the master waits for the last frames of a worker process of its own
/// after it exited: they travel the server, apart from the exit.
const LAST_FRAMES_WAIT: Duration = Duration::from_millis(300);
/// How long the master waits after a failed publish or subscription before retrying.
const RETRY: Duration = Duration::from_millis(500);
/// Results kept by the server per run: far more than any run needs, but bounded.
const RESULTS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// A run's JetStream queue, as the master's [`Transport`].
pub(crate) struct NatsTransport {
    names: RunNames,
    url: String,
    client: Client,
    jetstream: jetstream::Context,
    publish: mpsc::UnboundedSender<Bytes>,
    /// Results the run had stored when this master started.
    stored_results: u64,
    /// The sequence of the last results message handed to the run loop.
    results_read: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
    master_id: String,
    /// Makes the join tokens of local workers unguessable from outside.
    secret: u64,
    context: Context,
}

impl NatsTransport {
    /// Connects, creates (or finds) the run's streams and starts listening.
    pub async fn start(
        url: &str,
        run: &str,
        ack_wait: Duration,
        context: Context,
    ) -> Result<NatsTransport, Error> {
        let names = RunNames::new(run)?;
        let client = connect(url).await.map_err(Error::transport)?;
        let jetstream = super::jetstream_context(client.clone());
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            Error::transport(format!(
                "run `{}` on {}: cannot {what}: {e}",
                names.run(),
                url
            ))
        };
        // One master per run: two would both hand out and settle its jobs.
        let owner = claim_run(&client, &names)
            .await
            .map_err(|e| fail("take the run", &e))?;
        let jobs = jetstream
            .get_or_create_stream(stream::Config {
                name: names.jobs_stream(),
                subjects: vec![names.jobs_subject()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| fail("create the jobs stream", &e))?;
        let consumer = jobs
            .get_or_create_consumer(
                WORKERS_CONSUMER,
                consumer::pull::Config {
                    durable_name: Some(WORKERS_CONSUMER.to_string()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait,
                    // No limit: the worker that gets a job past its attempts reports the
                    // failure, and if that report is lost the job simply comes again.
                    max_deliver: -1,
                    max_ack_pending: (context.queue_window as i64).max(1024),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| fail("create the workers' consumer", &e))?;
        // A resumed run keeps the consumer it was created with: its leases are the
        // ones workers must renew.
        let ack_wait = consumer.cached_info().config.ack_wait;
        let results = jetstream
            .get_or_create_stream(stream::Config {
                name: names.results_stream(),
                subjects: vec![names.results_subject()],
                storage: stream::StorageType::File,
                max_age: RESULTS_MAX_AGE,
                ..Default::default()
            })
            .await
            .map_err(|e| fail("create the results stream", &e))?;
        // Results stored before this master started: a resumed run reads them first.
        let stored_results = results.cached_info().state.messages;

        let master_id = context.shared.id.clone();
        let secret = secret();
        let (publish, jobs_rx) = mpsc::unbounded_channel();
        let results_read = Arc::new(AtomicU64::new(0));
        let control = client
            .subscribe(names.master_subject())
            .await
            .map_err(|e| fail("subscribe to its workers", &e))?;
        let joins = client
            .subscribe(names.join_subject())
            .await
            .map_err(|e| fail("listen for workers joining", &e))?;
        let tasks = vec![
            tokio::spawn(publish_jobs(
                jetstream.clone(),
                names.jobs_subject(),
                jobs_rx,
            )),
            tokio::spawn(read_results(
                jetstream.clone(),
                names.results_stream(),
                stored_results,
                results_read.clone(),
                context.inbox.clone(),
            )),
            tokio::spawn(read_control(
                control,
                client.clone(),
                names.clone(),
                master_id.clone(),
                context.shared.clone(),
                context.inbox.clone(),
            )),
            tokio::spawn(answer_joins(
                joins,
                client.clone(),
                context.inbox.clone(),
                JoinTerms {
                    secret,
                    window: context.worker_window as u32,
                    ack_wait_ms: ack_wait.as_millis() as u64,
                    max_attempts: context.max_attempts,
                },
            )),
            tokio::spawn(hold_run(owner, client.clone())),
        ];
        Ok(NatsTransport {
            names,
            master_id,
            secret,
            url: url.to_string(),
            client,
            jetstream,
            publish,
            stored_results,
            results_read,
            tasks,
            context,
        })
    }

    /// Starts a worker process of ours that joins the run through the server, as a
    /// worker from elsewhere would, with the id reserved for it and the token that
    /// proves it.
    async fn start_process(&self, spec: WorkerSpec) -> Result<StartedWorker, Error> {
        let worker_id = spec.worker_id;
        let mut env = spec.env;
        env.extend([
            (ENV_NATS_URL.to_string(), self.url.clone()),
            (ENV_JOIN.to_string(), self.names.run().to_string()),
            (
                ENV_WORKER_ID.to_string(),
                format!("{worker_id}.{}", join_token(self.secret, worker_id)),
            ),
        ]);
        let spawned = process::spawn_worker(&spec.worker_type, &env, spec.output.as_ref(), false)
            .await
            .map_err(|e| Error::new(Kind::Spawn(e)))?;
        let kill = Arc::new(Notify::new());
        tokio::spawn(watch_exit(
            worker_id,
            spawned.child,
            // Its last frames (a crash reason) travel the server: give them a moment.
            tokio::time::sleep(LAST_FRAMES_WAIT),
            kill.clone(),
            self.context.inbox.clone(),
        ));
        Ok(StartedWorker {
            link: self.link(worker_id),
            feed: Feed::RunQueue,
            lane: None,
            kill,
        })
    }

    /// The link to worker `worker_id` of this master.
    fn link(&self, worker_id: u64) -> WorkerLink {
        NatsLink::start(
            self.client.clone(),
            self.names.worker_subject(&self.master_id, worker_id),
        )
    }

    /// Ends the run: once every job is accounted for, tells every worker of the run
    /// and removes its streams; a run that stopped early keeps them, to be resumed.
    async fn close_run(&self, complete: bool) {
        if complete {
            self.end_run().await;
            if let Err(e) = self.remove_run().await {
                if self.context.logging {
                    tracing::warn!(conductor = %self.master_id, "{e}");
                }
            }
        } else if self.context.logging {
            tracing::info!(
                conductor = %self.master_id,
                run = self.names.run(),
                "run stopped early: its streams are kept, to be resumed"
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
    }

    /// Removes the run's streams (and with them its consumer).
    async fn remove_run(&self) -> Result<(), Error> {
        for name in [self.names.jobs_stream(), self.names.results_stream()] {
            if let Err(e) = self.jetstream.delete_stream(&name).await {
                return Err(Error::transport(format!(
                    "cannot delete stream {name}: {e}"
                )));
            }
        }
        Ok(())
    }

    /// Tells every worker of the run, joined to this master or an earlier one, that
    /// the run is over.
    async fn end_run(&self) {
        let stop = crate::wire::control_frame(&crate::wire::ToWorker::Stop);
        let _ = self
            .client
            .publish(self.names.all_subject(), stop.slice(4..))
            .await;
    }

    /// The sequence of the last results message stored now, if the server says.
    async fn last_stored_results(&self) -> Option<u64> {
        let mut stream = self
            .jetstream
            .get_stream(self.names.results_stream())
            .await
            .ok()?;
        Some(stream.info().await.ok()?.state.last_sequence)
    }

    /// The largest message the server takes, less room for headers: the frame limit
    /// of a run in this mode.
    fn max_frame(&self) -> usize {
        self.client
            .server_info()
            .max_payload
            .saturating_sub(4096)
            .max(1024)
    }
}

/// The token a worker this master started shows when it joins with its reserved id,
/// so that no one else can take that id.
fn join_token(secret: u64, worker_id: u64) -> u64 {
    (secret ^ worker_id).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Drop for NatsTransport {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Transport for NatsTransport {
    fn start_worker(&self, spec: WorkerSpec) -> Pending<'_, Result<StartedWorker, Error>> {
        Box::pin(self.start_process(spec))
    }

    fn link_to_joined(&self, worker_id: u64) -> Option<WorkerLink> {
        Some(self.link(worker_id))
    }

    fn hand_out(&self, jobs: Bytes) {
        let _ = self.publish.send(jobs);
    }

    fn queue_window(&self) -> usize {
        self.context.queue_window
    }

    fn frame_limit(&self) -> usize {
        self.max_frame()
    }

    fn resumes_results(&self) -> bool {
        self.stored_results > 0
    }

    fn results_stored(&self) -> Pending<'_, Option<u64>> {
        Box::pin(self.last_stored_results())
    }

    fn results_read(&self) -> u64 {
        self.results_read.load(Ordering::SeqCst)
    }

    fn close(&self, complete: bool) -> Pending<'_, ()> {
        Box::pin(self.close_run(complete))
    }
}

/// Publishes each job of each jobs frame as its own message, so that each is acked,
/// redelivered and counted on its own. Waits for the server's acks a frame at a time;
/// a publish that fails (the server restarting) is retried until it is stored.
async fn publish_jobs(
    jetstream: jetstream::Context,
    subject: String,
    mut frames: mpsc::UnboundedReceiver<Bytes>,
) {
    while let Some(mut frame) = frames.recv().await {
        // Length and kind.
        let body = frame.split_off(5.min(frame.len()));
        let mut queue = JobQueue::default();
        queue.push_frame(body);
        let mut jobs = Vec::new();
        while let Some(Ok((id, payload))) = queue.pop() {
            jobs.push((id, Bytes::copy_from_slice(payload)));
        }
        let mut waiting = Vec::with_capacity(jobs.len());
        for (id, payload) in &jobs {
            waiting.push(publish_job(&jetstream, &subject, *id, payload.clone()).await);
        }
        for ((id, payload), ack) in jobs.into_iter().zip(waiting) {
            let stored = match ack {
                Some(ack) => ack.await.is_ok(),
                None => false,
            };
            if !stored {
                store_job(&jetstream, &subject, id, payload).await;
            }
        }
    }
}

async fn publish_job(
    jetstream: &jetstream::Context,
    subject: &str,
    id: u64,
    payload: Bytes,
) -> Option<jetstream::context::PublishAckFuture> {
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_JOB, id.to_string().as_str());
    // A job published twice (a retry after a lost ack) is stored once.
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.to_string().as_str());
    jetstream
        .publish_with_headers(subject.to_string(), headers, payload)
        .await
        .ok()
}

/// Publishes one job until the server confirms it.
async fn store_job(jetstream: &jetstream::Context, subject: &str, id: u64, payload: Bytes) {
    loop {
        if let Some(ack) = publish_job(jetstream, subject, id, payload.clone()).await {
            match ack.await {
                Ok(_) => return,
                Err(e) => tracing::warn!(job_id = id, "publishing a job failed, retrying: {e}"),
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Reads the results stream from the start: every results frame any worker stored,
/// including those stored while no master was listening. The run loop settles each
/// job once, so frames read twice after a reconnect change nothing.
async fn read_results(
    jetstream: jetstream::Context,
    stream_name: String,
    stored: u64,
    read: Arc<AtomicU64>,
    to_master: mpsc::UnboundedSender<FromWorker>,
) {
    let mut next_sequence = 1;
    let mut caught_up = stored == 0;
    if caught_up {
        let _ = to_master.send(FromWorker {
            worker_id: 0,
            event: WorkerEvent::CaughtUp,
        });
    }
    loop {
        let consumer = match results_consumer(&jetstream, &stream_name, next_sequence).await {
            Ok(consumer) => consumer,
            Err(e) => {
                tracing::warn!("cannot read the results stream {stream_name}, retrying: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut messages = match consumer
            .stream()
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await
        {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!("cannot read the results stream {stream_name}, retrying: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(message) => message,
                // Recreated from where it stopped, whatever went wrong.
                Err(_) => break,
            };
            // Caught up with what was stored when nothing more is waiting.
            let mut catching_up = false;
            if let Ok(info) = message.info() {
                next_sequence = info.stream_sequence + 1;
                catching_up = !caught_up && info.pending == 0;
            }
            if let Some(event) = results_event(&message.message) {
                let _ = to_master.send(event);
            }
            read.store(next_sequence - 1, Ordering::SeqCst);
            if catching_up {
                caught_up = true;
                let _ = to_master.send(FromWorker {
                    worker_id: 0,
                    event: WorkerEvent::CaughtUp,
                });
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// The worker event for one message of the results stream; `None` (and a warning)
/// for a message that is not a results frame from a worker.
fn results_event(message: &async_nats::Message) -> Option<FromWorker> {
    let Some(worker_id) = header_u64(message, HEADER_WORKER) else {
        tracing::warn!("a results message without a valid {HEADER_WORKER} header was ignored");
        return None;
    };
    let mut body = message.payload.clone();
    if body.first() != Some(&crate::wire::KIND_RESULTS) {
        tracing::warn!(worker_id, "a malformed results message was ignored");
        return None;
    }
    Some(FromWorker {
        worker_id,
        event: WorkerEvent::Results(body.split_off(1)),
    })
}

async fn results_consumer(
    jetstream: &jetstream::Context,
    stream_name: &str,
    start_sequence: u64,
) -> Result<consumer::PullConsumer, async_nats::Error> {
    let stream = jetstream.get_stream(stream_name).await?;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence },
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await?;
    Ok(consumer)
}

/// Turns control frames from workers into worker events (or answers them on the spot,
/// like lookups). A message that is not a valid frame is reported and dropped.
async fn read_control(
    mut control: async_nats::Subscriber,
    client: Client,
    names: RunNames,
    master_id: String,
    shared: Arc<Shared>,
    to_master: mpsc::UnboundedSender<FromWorker>,
) {
    while let Some(message) = control.next().await {
        let ours = message
            .headers
            .as_ref()
            .and_then(|h| h.get(HEADER_MASTER))
            .is_some_and(|m| m.as_str() == master_id);
        if !ours {
            // A worker of an earlier master of the run, or a stray message.
            continue;
        }
        let Some(worker_id) = header_u64(&message, HEADER_WORKER) else {
            tracing::warn!(
                subject = %message.subject,
                "a message without a valid {HEADER_WORKER} header was ignored"
            );
            continue;
        };
        let send = |event| {
            let _ = to_master.send(FromWorker { worker_id, event });
        };
        let heartbeat = message
            .headers
            .as_ref()
            .is_some_and(|h| h.get(HEADER_HEARTBEAT).is_some());
        if heartbeat {
            send(WorkerEvent::Heartbeat);
            continue;
        }
        let link = shared
            .lock_links()
            .get(&worker_id)
            .cloned()
            .unwrap_or_else(|| {
                NatsLink::start(client.clone(), names.worker_subject(&master_id, worker_id))
            });
        if let Err(reason) = route_frame(worker_id, message.payload, &shared, &link, &send) {
            tracing::warn!(
                worker_id,
                "a malformed message from a worker was ignored: {reason}"
            );
            send(WorkerEvent::Malformed(reason));
        }
    }
}

/// A number no one outside this process can guess easily.
fn secret() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// Fails if another master answers for the run; otherwise subscribes to answer for it.
async fn claim_run(client: &Client, names: &RunNames) -> Result<async_nats::Subscriber, String> {
    let asked = tokio::time::timeout(
        Duration::from_secs(2),
        client.request(names.owner_subject(), Bytes::new()),
    )
    .await;
    if let Ok(Ok(answer)) = asked {
        return Err(format!(
            "another master runs it ({})",
            String::from_utf8_lossy(&answer.payload)
        ));
    }
    client
        .subscribe(names.owner_subject())
        .await
        .map_err(|e| e.to_string())
}

/// Answers for the run while this master lives.
async fn hold_run(mut owner: async_nats::Subscriber, client: Client) {
    let me = format!(
        "pid {} on {}",
        std::process::id(),
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default()
    );
    while let Some(question) = owner.next().await {
        if let Some(reply) = question.reply {
            let _ = client.publish(reply, me.clone().into()).await;
        }
    }
}

/// What a worker that joins is told besides its handshake, and the secret behind the
/// tokens of the workers this master started.
struct JoinTerms {
    secret: u64,
    window: u32,
    ack_wait_ms: u64,
    max_attempts: u32,
}

/// Answers workers that ask to join: the run loop decides, this task carries the
/// question and the answer, and checks the token of a worker that claims an id the
/// master reserved for a process of its own.
async fn answer_joins(
    mut joins: async_nats::Subscriber,
    client: Client,
    to_master: mpsc::UnboundedSender<FromWorker>,
    terms: JoinTerms,
) {
    while let Some(message) = joins.next().await {
        let Some(reply_to) = message.reply.clone() else {
            continue;
        };
        let decided = match postcard::from_bytes::<JoinRequest>(&message.payload) {
            Ok(request) => ask_master(&to_master, request, terms.secret).await,
            Err(e) => Err(format!("malformed join request: {e}")),
        };
        let answer = match decided {
            Ok(Admission { config, max_jobs }) => JoinReply::Accepted {
                config,
                window: terms.window,
                ack_wait_ms: terms.ack_wait_ms,
                max_attempts: terms.max_attempts,
                max_jobs,
            },
            Err(reason) => JoinReply::Refused { reason },
        };
        if let Ok(bytes) = postcard::to_allocvec(&answer) {
            let _ = client.publish(reply_to, bytes.into()).await;
        }
    }
}

/// Hands a join request to the run loop and waits (boundedly) for its decision.
async fn ask_master(
    to_master: &mpsc::UnboundedSender<FromWorker>,
    request: JoinRequest,
    secret: u64,
) -> Result<Admission, String> {
    let reserved_id = match request.worker_id {
        Some((id, token)) if token == join_token(secret, id) => Some(id),
        Some((id, _)) => return Err(format!("worker {id} is not expected")),
        None => None,
    };
    let joining = Joining {
        protocol: request.protocol,
        worker_type: request.worker_type,
        reserved_id,
        registered: request.registered,
        host: request.host,
        pid: request.pid,
    };
    let (answer, decision) = oneshot::channel();
    let _ = to_master.send(FromWorker {
        worker_id: 0,
        event: WorkerEvent::Join {
            request: joining,
            answer,
        },
    });
    match tokio::time::timeout(Duration::from_secs(5), decision).await {
        Ok(Ok(decision)) => decision,
        _ => Err("the master is shutting down".into()),
    }
}
