//! The state of a worker process that every thread shares: its identity, counters,
//! the channel's writing end, results waiting to be sent, and requests waiting for a
//! reply. Also the small threads that run beside job code: the watchdog, the stats
//! timer and the result flusher.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::channel::MasterChannel;
use super::counters::StatsBook;
use super::exit::{
    end_with_group, exit_worker, is_exiting, EXIT_ABORTED, EXIT_CRASHED, EXIT_MASTER_GONE,
    EXIT_PROTOCOL, EXIT_SETUP,
};
use crate::error::Error;
use crate::message::{Message, Responder};
use crate::wire::{
    control_frame, decode_control, read_frame, value, BatchWriter, FailedAs, Frame, JobQueue,
    ReplyResult, Request, ToMaster, ToWorker, WorkerConfig, MAX_RESULT_HEADER, TIMED_OUT,
};

/// The longest a finished job's result waits in the worker before it is sent.
pub(crate) const RESULT_LINGER: Duration = Duration::from_millis(2);
/// A result batch is sent as soon as it holds this many bytes.
const RESULT_FLUSH_BYTES: usize = 256 << 10;
pub(super) const NO_JOB: u64 = u64::MAX;

/// State shared by the job thread, the watchdog, the timers and every [`Worker`](super::Worker) handle.
pub(crate) struct WorkerShared {
    pub id: u64,
    pub master_id: String,
    pub worker_type: String,
    /// The conductor's context value, encoded.
    pub context: Option<Vec<u8>>,
    pub stats: StatsBook,
    pub monitoring: AtomicBool,
    logging: bool,
    pub max_frame: usize,
    writer: Mutex<UnixStream>,
    pub(super) channel: MasterChannel,
    pending: Mutex<HashMap<u64, oneshot::Sender<ReplyResult>>>,
    next_request: AtomicU64,
    results: Mutex<ResultBuffer>,
    results_waiting: Condvar,
    /// The flusher is timing the buffered results: the job thread need not wake it.
    /// Cleared, under the results lock, only by the flusher.
    flusher_armed: AtomicBool,
    pub(super) current_job: AtomicU64,
    /// Jobs received and not yet started. Whoever reads a jobs frame queues it here,
    /// and the job thread takes one job at a time under the lock, so a `GiveBack` read
    /// while a job runs hands back exactly the jobs that will never start here.
    jobs: Mutex<JobQueue>,
    heartbeat: Duration,
    /// How long a job may run here before this worker gives up on it (a worker of a
    /// run queue; the master times its own workers' jobs).
    job_timeout: Option<Duration>,
    /// The watchdog put something in the job thread's inbox since it last looked.
    pub(super) inbox_waiting: AtomicBool,
}

/// The next job the job thread runs, and what it needs to know of the queue.
pub(super) struct NextJob<J> {
    pub id: u64,
    pub job: Result<J, String>,
    /// More jobs wait behind this one.
    pub more: bool,
    /// Bytes of the last jobs frame received: how much the master sends at once.
    pub frame_bytes: usize,
    /// Bytes of jobs handed out so far, this one included.
    pub handed_out: u64,
}

struct ResultBuffer {
    batch: BatchWriter,
    first_at: Option<Instant>,
}

/// What the watchdog hands to the job thread, or what a frame asks of it.
pub(super) enum Inbox {
    /// Jobs were queued (in [`WorkerShared::next_job`]'s queue).
    Jobs,
    Message(Message),
    Stop,
    /// The watchdog has handed the channel back.
    ChannelFree,
}

/// The watchdog thread: reads the channel for the job thread while it is busy.
pub(super) fn watchdog_loop(shared: &Arc<WorkerShared>, inbox: mpsc::UnboundedSender<Inbox>) {
    shared.channel.watch(
        |reader| shared.read_frame(reader),
        |frame| {
            let item = match frame {
                Some(body) => shared.route(body),
                None => Some(Inbox::ChannelFree),
            };
            if let Some(item) = item {
                let _ = inbox.send(item);
                // After the send: a job thread that clears the flag then finds it.
                shared.inbox_waiting.store(true, Ordering::Release);
            }
        },
    );
}

/// Says the process is alive every heartbeat, and rolls the stats every `interval`.
/// It runs beside the job, so a long job never looks like a dead worker; a stopped or
/// frozen process stops both.
pub(super) fn stats_loop(shared: &WorkerShared, interval: Duration) {
    let start = Instant::now();
    let (mut next_roll, mut next_beat) = (start + interval, start + shared.heartbeat);
    let mut timer = shared.job_timeout.map(JobTimer::new);
    loop {
        let next_look = timer.as_ref().map_or(next_beat, JobTimer::next_look);
        std::thread::sleep(
            next_roll
                .min(next_beat)
                .min(next_look)
                .saturating_duration_since(Instant::now()),
        );
        let now = Instant::now();
        if let Some(timer) = &mut timer {
            let running = shared.current_job.load(Ordering::Relaxed);
            if let Some(reason) = timer.look(running, now) {
                shared.crash(reason);
            }
        }
        if now >= next_roll {
            next_roll = now + interval;
            if shared.monitoring.load(Ordering::Relaxed) {
                shared.send_control(&ToMaster::Stats(shared.stats.roll()));
                next_beat = now + shared.heartbeat;
                continue;
            }
        }
        if now >= next_beat {
            shared.send_control(&ToMaster::Heartbeat);
            next_beat = now + shared.heartbeat;
        }
    }
}

/// Times the running job out, seen from beside it: the job that is running at each
/// look, and since when it has been (within a tenth of the timeout).
struct JobTimer {
    timeout: Duration,
    running: (u64, Instant),
    looked: Instant,
}

impl JobTimer {
    fn new(timeout: Duration) -> Self {
        let now = Instant::now();
        JobTimer {
            timeout,
            running: (NO_JOB, now),
            looked: now,
        }
    }

    /// When to look again.
    fn next_look(&self) -> Instant {
        self.looked + (self.timeout / 10).clamp(Duration::from_millis(5), Duration::from_secs(1))
    }

    /// Looks at the job running `now`: the reason to give up, if it ran too long.
    fn look(&mut self, job: u64, now: Instant) -> Option<String> {
        self.looked = now;
        if job != self.running.0 {
            self.running = (job, now);
            return None;
        }
        let ran = now.saturating_duration_since(self.running.1);
        (job != NO_JOB && ran > self.timeout)
            .then(|| format!("{TIMED_OUT} {:?} on job {job}", self.timeout))
    }
}

/// Sends results that have waited [`RESULT_LINGER`], so a long job never hides the
/// results of the short jobs before it. The job thread arms it only when it starts a
/// job with results still buffered: a worker that answers each job before taking the
/// next never wakes it.
pub(super) fn flush_loop(shared: &WorkerShared) {
    let mut results = shared.lock_results();
    loop {
        if !shared.flusher_armed.load(Ordering::Relaxed) {
            results = shared
                .results_waiting
                .wait(results)
                .unwrap_or_else(|p| p.into_inner());
            continue;
        }
        match results.first_at {
            None => shared.flusher_armed.store(false, Ordering::Relaxed),
            Some(first_at) => {
                let due = first_at + RESULT_LINGER;
                let now = Instant::now();
                if now >= due {
                    shared.flush_locked(&mut results);
                } else {
                    results = shared
                        .results_waiting
                        .wait_timeout(results, due - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }
}

impl WorkerShared {
    /// The state of a worker that `config` set up, writing to `channel` and reading
    /// from `reader` (a second handle on the same socket).
    pub(super) fn new(
        config: &WorkerConfig,
        worker_type: String,
        channel: UnixStream,
        reader: UnixStream,
    ) -> Self {
        WorkerShared {
            id: config.worker_id,
            master_id: config.master_id.clone(),
            worker_type,
            context: config.context.clone(),
            stats: StatsBook::new(config.time_jobs),
            monitoring: AtomicBool::new(true),
            logging: config.logging,
            max_frame: config.max_frame_bytes as usize,
            writer: Mutex::new(channel),
            channel: MasterChannel::new(reader),
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            results: Mutex::new(ResultBuffer {
                batch: BatchWriter::results(4096),
                first_at: None,
            }),
            flusher_armed: AtomicBool::new(false),
            results_waiting: Condvar::new(),
            current_job: AtomicU64::new(NO_JOB),
            jobs: Mutex::new(JobQueue::default()),
            heartbeat: Duration::from_millis(config.heartbeat_ms.max(1)),
            job_timeout: config.job_timeout_ms.map(Duration::from_millis),
            inbox_waiting: AtomicBool::new(false),
        }
    }

    /// Takes the next job received, decoded as `J`; `None` when none waits.
    pub(super) fn next_job<J: serde::de::DeserializeOwned>(&self) -> Option<NextJob<J>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let (id, job) = match jobs.pop()? {
            Ok((id, payload)) => (
                id,
                value::from_slice::<J>(payload).map_err(|e| format!("the job {e}")),
            ),
            Err(e) => {
                drop(jobs);
                self.protocol_failure(&e.to_string())
            }
        };
        Some(NextJob {
            id,
            job,
            more: !jobs.is_empty(),
            frame_bytes: jobs.last_frame_bytes(),
            handed_out: jobs.handed_out_bytes(),
        })
    }

    /// Reads one frame from the master; exits the process when it is gone.
    pub(super) fn read_frame(&self, reader: &mut BufReader<UnixStream>) -> Bytes {
        match read_frame(reader, self.max_frame) {
            Ok(Some(body)) => body,
            Ok(None) => self.master_gone(),
            Err(e) => self.protocol_failure(&e.to_string()),
        }
    }

    /// Acts on a frame from the master: a reply reaches its waiter here, an abort ends
    /// the process; what the job thread must run comes back.
    pub(super) fn route(self: &Arc<Self>, body: Bytes) -> Option<Inbox> {
        let payload = match Frame::parse(body) {
            Ok(Frame::Jobs(body)) => {
                self.jobs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_frame(body);
                return Some(Inbox::Jobs);
            }
            Ok(Frame::Control(payload)) => payload,
            Ok(Frame::Results(_)) => self.protocol_failure("the master sent a results frame"),
            Err(e) => self.protocol_failure(&e.to_string()),
        };
        match decode_control::<ToWorker>(&payload) {
            Ok(ToWorker::Message {
                cmd,
                data,
                request_id,
            }) => {
                let responder = request_id.map(|request_id| {
                    let shared = self.clone();
                    Responder::new(&cmd, move |result| {
                        shared.send_control(&ToMaster::Reply { request_id, result })
                    })
                });
                Some(Inbox::Message(Message::new(None, cmd, data, responder)))
            }
            Ok(ToWorker::Reply { request_id, result }) => {
                let waiter = self.lock_pending().remove(&request_id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(result);
                }
                None
            }
            Ok(ToWorker::Stop) => Some(Inbox::Stop),
            Ok(ToWorker::Abort) => {
                self.log(format_args!("aborted by the master"));
                exit_worker(EXIT_ABORTED);
            }
            Ok(ToWorker::GiveBack) => {
                let taken = self
                    .jobs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take_unstarted();
                match taken {
                    Ok(jobs) => self.send_control(&ToMaster::GaveBack { jobs }),
                    Err(e) => self.protocol_failure(&e.to_string()),
                }
                None
            }
            Ok(ToWorker::Config(_)) => self.protocol_failure("a second handshake"),
            // For the NATS bridge, which keeps it: never sent down to the worker loop.
            Ok(ToWorker::Redelivery { .. }) => None,
            Err(e) => self.protocol_failure(&e.to_string()),
        }
    }

    /// Serializes a job's output straight into the result batch. An output too large
    /// for a frame is refused with the reason, to be sent as the job's error.
    pub(super) fn finish_output<O: serde::Serialize>(
        &self,
        id: u64,
        output: &O,
    ) -> Result<(), String> {
        let mut results = self.lock_results();
        let before = results.batch.byte_len();
        results
            .batch
            .push_output_encoded(id, output, self.max_frame)?;
        if results.batch.body_len() > self.max_frame {
            // It fits in a frame of its own: send the others first.
            results.batch.take_back(before);
            self.flush_locked(&mut results);
            results
                .batch
                .push_output_encoded(id, output, self.max_frame)?;
        }
        self.stats.job_finished(true);
        self.after_push(&mut results);
        Ok(())
    }

    /// Buffers a failed job's error message, and how it failed.
    pub(super) fn finish_failure(&self, id: u64, failed: FailedAs, error: &str) {
        let error = &error.as_bytes()[..error.len().min(self.max_frame.saturating_sub(64))];
        let mut results = self.lock_results();
        if results.batch.body_len() + error.len() + MAX_RESULT_HEADER > self.max_frame {
            self.flush_locked(&mut results);
        }
        results.batch.push_failure(id, failed, error);
        self.stats.job_finished(false);
        self.after_push(&mut results);
    }

    /// Notes when a batch's first result came; sends a batch that grew large.
    fn after_push(&self, results: &mut MutexGuard<'_, ResultBuffer>) {
        if results.first_at.is_none() {
            results.first_at = Some(Instant::now());
        }
        if results.batch.byte_len() >= RESULT_FLUSH_BYTES {
            self.flush_locked(results);
        }
    }

    /// Has the flusher time the buffered results, unless it already does.
    pub(super) fn arm_flusher(&self) {
        if self.flusher_armed.load(Ordering::Relaxed) {
            return;
        }
        let _results = self.lock_results();
        self.flusher_armed.store(true, Ordering::Relaxed);
        self.results_waiting.notify_one();
    }

    pub(crate) fn flush_results(&self) {
        let mut results = self.lock_results();
        self.flush_locked(&mut results);
    }

    /// Sends the buffered results while holding the buffer, which keeps frames in order.
    fn flush_locked(&self, results: &mut MutexGuard<'_, ResultBuffer>) {
        if results.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut results.batch, BatchWriter::results(4096));
        results.first_at = None;
        self.send_frame(&batch.finish());
    }

    pub(crate) fn send_control(&self, message: &ToMaster) {
        self.send_frame(&control_frame(message));
    }

    pub(crate) fn send_raw(&self, bytes: &[u8]) {
        self.send_frame(bytes);
    }

    fn send_frame(&self, frame: &[u8]) {
        if self.try_send_frame(frame).is_err() {
            self.master_gone();
        }
    }

    /// Sends a whole frame; an error means the master is gone.
    pub(super) fn try_send_frame(&self, frame: &[u8]) -> std::io::Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer.write_all(frame)
    }

    /// Sends a request to the master and waits for its reply.
    pub(crate) async fn request(&self, request: Request) -> Result<ReplyResult, Error> {
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(request_id, tx);
        // The job thread may be busy running the job that waits: have the watchdog read.
        let _reading = self.channel.awaiting_reply();
        self.send_control(&ToMaster::Request {
            request_id: Some(request_id),
            request,
        });
        rx.await
            .map_err(|_| Error::disconnected("the master went away before replying"))
    }

    pub(crate) fn crash(&self, reason: String) -> ! {
        self.log(format_args!("crashing: {reason}"));
        self.flush_results();
        self.send_control(&ToMaster::Stats(self.stats.roll()));
        let job = match self.current_job.load(Ordering::Relaxed) {
            NO_JOB => None,
            id => Some(id),
        };
        // The reason must fit in a frame, whatever the error text.
        let mut reason = reason;
        let room = self.max_frame.saturating_sub(256);
        if reason.len() > room {
            let mut cut = room;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        let _ = std::io::stdout().flush();
        // Exit holding the channel, so no other thread starts a frame it cannot finish;
        // this thread's last events go to stderr, not to the channel it holds.
        super::logs::keep_on_this_thread();
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writer.write_all(&control_frame(&ToMaster::Crash { reason, job }));
        exit_worker(EXIT_CRASHED)
    }

    /// The system refused this worker a thread or a file it needs: tells the master
    /// which limit, so it goes on with the workers it has, and exits.
    pub(super) fn limit_reached(&self, reason: &str) -> ! {
        tracing::error!(target: "conductor::worker", worker = self.id, "{reason}");
        self.send_control(&ToMaster::LimitReached {
            reason: reason.to_string(),
        });
        exit_worker(EXIT_SETUP)
    }

    fn master_gone(&self) -> ! {
        // The channel also closes when this process is already on its way out.
        if is_exiting() {
            exit_worker(EXIT_MASTER_GONE)
        }
        self.log(format_args!("the master is gone; exiting"));
        // Nobody is left to end what the job code started.
        end_with_group(EXIT_MASTER_GONE)
    }

    pub(super) fn protocol_failure(&self, what: &str) -> ! {
        tracing::error!(
            target: "conductor::worker",
            worker = self.id,
            "protocol error from the master: {what}; exiting"
        );
        exit_worker(EXIT_PROTOCOL)
    }

    pub(super) fn log(&self, message: std::fmt::Arguments<'_>) {
        if self.logging {
            tracing::info!(target: "conductor::worker", worker_type = %self.worker_type, "{message}");
        }
    }

    fn lock_results(&self) -> MutexGuard<'_, ResultBuffer> {
        self.results.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_pending(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<ReplyResult>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}
