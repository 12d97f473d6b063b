//! The worker's own loop: handshake, then jobs in, results out, until the master
//! says stop.
//!
//! Job code runs on the main thread (the job thread) inside a tokio runtime, one job
//! at a time; the job thread also reads the master's frames whenever it has nothing to
//! run. Three small threads keep the process responsive whatever the job code does
//! (see [`super::shared`]): the watchdog (reads the channel while a job runs long or
//! waits for a reply; see [`super::channel`]; end-of-file means the master is gone,
//! and the process exits even if a job is busy), the stats timer, and the result
//! flusher (results wait at most [`super::shared::RESULT_LINGER`] before they are
//! sent, so the master always knows which job is running).

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::api::{JobWorker, Worker};
use super::channel::NO_WORK;
use super::exit::{EXIT_OK, EXIT_SETUP};
use super::panics::catch_panic;
use super::shared::{flush_loop, stats_loop, watchdog_loop, Inbox, WorkerShared, NO_JOB};
use crate::limits::explain;
use crate::message::Message;
use crate::wire::{
    control_frame, decode_control, read_frame, FailedAs, Frame, ToMaster, ToWorker, WorkerConfig,
    MAX_HANDSHAKE_BYTES, PROTOCOL_VERSION,
};

/// While frames are this large, the watchdog reads them as jobs run, not the job
/// thread between jobs.
const READ_AHEAD_FRAME_BYTES: usize = 128 << 10;
/// Results are sent before the queue runs dry only once jobs of this many bytes ran.
const SEND_EVERY_MIN_BYTES: u64 = 640;
/// How many jobs may run back to back before the job thread looks whether it is time
/// to read its channel (reading the clock after every tiny job would cost more).
const CHANNEL_LOOK_EVERY: u32 = 32;
/// How long jobs may run back to back before the job thread reads the frames waiting
/// on its channel (a message, a stop) instead of only when its queue runs dry.
const CHANNEL_CHECK_EVERY: Duration = Duration::from_millis(1);

/// What the role dispatch hands to a worker: its channel and the type it was asked for.
pub struct WorkerBoot {
    pub(crate) channel: UnixStream,
    pub(crate) worker_type: String,
}

/// Runs a worker of type `W` on the channel until the master stops it; returns the
/// process exit code.
pub(crate) fn run_worker<W: JobWorker>(boot: WorkerBoot) -> i32 {
    let WorkerBoot {
        channel,
        worker_type,
    } = boot;
    let config = match handshake::<W>(&channel, &worker_type) {
        Ok(config) => config,
        Err(reason) => {
            tracing::error!(target: "conductor::worker", %worker_type, "{reason}");
            let mut channel = &channel;
            let _ = channel.write_all(&control_frame(&ToMaster::Refused { reason }));
            return EXIT_SETUP;
        }
    };
    let reader = match channel.try_clone() {
        Ok(reader) => reader,
        Err(e) => {
            tracing::error!(target: "conductor::worker", "cannot clone its channel: {e}");
            return EXIT_SETUP;
        }
    };
    let shared = Arc::new(WorkerShared::new(&config, worker_type, channel, reader));
    let sink = super::logs::Sink {
        send: Box::new({
            let shared = shared.clone();
            move |frame| shared.try_send_frame(frame)
        }),
        current_job: Box::new({
            let shared = shared.clone();
            move || match shared.current_job.load(Ordering::Relaxed) {
                NO_JOB => None,
                job => Some(job),
            }
        }),
    };
    super::logs::connect(sink, config.log_level);
    super::panics::keep_job_panics_quiet();
    let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
    spawn_thread(&shared, "conductor-watchdog", {
        let shared = shared.clone();
        move || watchdog_loop(&shared, inbox_tx)
    });
    spawn_thread(&shared, "conductor-stats", {
        let shared = shared.clone();
        let interval = Duration::from_millis(config.stats_interval_ms.max(1));
        move || stats_loop(&shared, interval)
    });
    spawn_thread(&shared, "conductor-flush", {
        let shared = shared.clone();
        move || flush_loop(&shared)
    });
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    let runtime = crate::limits::build_runtime(builder.enable_all(), {
        let shared = shared.clone();
        move |e| shared.limit_reached(&format!("cannot start a tokio runtime: {}", explain(&e)))
    });
    let worker = Worker { shared };
    let code = runtime.block_on(job_loop::<W>(worker, inbox_rx, config.crash_on_job_error));
    // Blocking tasks that job code left behind must not keep a finished worker alive.
    runtime.shutdown_background();
    code
}

fn spawn_thread(shared: &WorkerShared, name: &str, body: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
    {
        shared.limit_reached(&format!("cannot start thread {name}: {}", explain(&e)));
    }
}

/// Reads the master's settings and checks that this worker can run them. The
/// answer (`Ready`) waits until `init` has succeeded.
fn handshake<W: JobWorker>(
    channel: &UnixStream,
    worker_type: &str,
) -> Result<WorkerConfig, String> {
    let mut reader = channel;
    let body = match read_frame(&mut reader, MAX_HANDSHAKE_BYTES) {
        Ok(Some(body)) => body,
        Ok(None) => return Err("the master closed the channel before the handshake".into()),
        Err(e) => return Err(format!("handshake failed: {e}")),
    };
    let config = match Frame::parse(body) {
        Ok(Frame::Control(payload)) => match decode_control::<ToWorker>(&payload) {
            Ok(ToWorker::Config(config)) => config,
            Ok(other) => return Err(format!("expected the handshake, got {other:?}")),
            Err(e) => return Err(format!("handshake failed: {e}")),
        },
        Ok(_) => return Err("expected the handshake, got a batch".into()),
        Err(e) => return Err(format!("handshake failed: {e}")),
    };
    let (job_type, output_type) = (
        std::any::type_name::<W::Job>(),
        std::any::type_name::<W::Output>(),
    );
    if config.protocol != PROTOCOL_VERSION {
        return Err(format!(
            "the master speaks protocol {} and this worker {PROTOCOL_VERSION}: run the same binary on both sides",
            config.protocol
        ));
    }
    if config.worker_type != worker_type {
        return Err(format!(
            "the master asked for type `{}` but started `{worker_type}`",
            config.worker_type
        ));
    }
    if config.job_type != job_type || config.output_type != output_type {
        return Err(format!(
            "worker type `{worker_type}` takes `{job_type}` and returns `{output_type}`, \
             but the master sends `{}` and expects `{}`",
            config.job_type, config.output_type
        ));
    }
    Ok(config)
}

/// The job thread: runs jobs and messages in arrival order until told to stop.
async fn job_loop<W: JobWorker>(
    worker: Worker,
    inbox: mpsc::UnboundedReceiver<Inbox>,
    crash_on_error: bool,
) -> i32 {
    let shared = worker.shared.clone();
    // Like a job, `init` may wait for replies: the watchdog reads for it.
    let mut work_started = NO_WORK + 1;
    shared.channel.set_current_work(work_started);
    let initialized = catch_panic(W::init(&worker)).await;
    shared.channel.set_current_work(NO_WORK);
    let mut state = match initialized {
        Ok(Ok(state)) => state,
        Ok(Err(e)) => shared.crash(format!("init failed: {e:#}")),
        Err(panic) => shared.crash(format!("init panicked: {panic}")),
    };
    // Only now take jobs: a slow `init` counts against the start-up timeout, never
    // against a job's.
    shared.send_control(&ToMaster::Ready {
        protocol: PROTOCOL_VERSION,
        worker_type: shared.worker_type.clone(),
        job_type: std::any::type_name::<W::Job>().to_string(),
        output_type: std::any::type_name::<W::Output>().to_string(),
    });
    let mut todo = Todo {
        inbox,
        messages: VecDeque::new(),
        stopping: false,
    };
    let mut channel_checked = Instant::now();
    let mut since_look = 0u32;
    let mut unsent_results = false;
    // Whether the job queue was empty when last looked at.
    let mut queue_dry = true;
    // How far into the queue the job thread was when it last sent results.
    let (mut sent_at, mut handed_out) = (0u64, 0u64);
    loop {
        // What the watchdog read while the last job ran (a message) is taken before the
        // next job starts: one relaxed load per job says whether there is any. Every
        // few jobs the channel itself is looked at too (at most every millisecond).
        since_look += 1;
        let flagged = shared.inbox_waiting.load(Ordering::Relaxed)
            && shared.inbox_waiting.swap(false, Ordering::Acquire);
        if queue_dry || flagged || since_look >= CHANNEL_LOOK_EVERY {
            since_look = 0;
            todo.take_inbox();
            if !queue_dry && channel_checked.elapsed() >= CHANNEL_CHECK_EVERY {
                channel_checked = Instant::now();
                todo.read_waiting_frames(&shared);
            }
        }
        if let Some(message) = todo.messages.pop_front() {
            let cmd = message.cmd().to_string();
            work_started += 1;
            shared.channel.set_current_work(work_started);
            let outcome = catch_panic(state.on_message(message, &worker)).await;
            shared.channel.set_current_work(NO_WORK);
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => shared.log(format_args!("handler of `{cmd}` failed: {e:#}")),
                Err(panic) => shared.log(format_args!("handler of `{cmd}` panicked: {panic}")),
            }
            continue;
        }
        if let Some(next) = shared.next_job::<W::Job>() {
            queue_dry = !next.more;
            handed_out = next.handed_out;
            if unsent_results {
                // This job may run long: results already done must not wait for it.
                shared.arm_flusher();
            }
            let large_frames = next.frame_bytes >= READ_AHEAD_FRAME_BYTES;
            if large_frames != shared.channel.reads_ahead() {
                shared.channel.set_read_ahead(large_frames);
            }
            work_started += 1;
            shared.channel.set_current_work(work_started);
            let failure = run_job(&mut state, &worker, next.id, next.job).await;
            shared.channel.set_current_work(NO_WORK);
            // Send results every half frame of jobs: the master refills while the rest
            // run, so the next frame is here before the queue runs dry. Small frames
            // (a window still opening, one job per message in the distributed mode)
            // are answered when the queue runs dry, in one frame.
            let done = handed_out - sent_at;
            if done >= SEND_EVERY_MIN_BYTES && done >= next.frame_bytes as u64 / 2 {
                shared.flush_results();
                sent_at = handed_out;
                unsent_results = false;
            } else {
                unsent_results = true;
            }
            if let Some(failure) = failure {
                if crash_on_error {
                    shared.flush_results();
                    shared.crash(format!("job {} failed: {failure}", next.id));
                }
            }
            continue;
        }
        queue_dry = true;
        if todo.stopping {
            break;
        }
        // Nothing left to run: send what is done, then wait for the master, on the
        // channel itself unless the watchdog is reading it.
        shared.flush_results();
        unsent_results = false;
        sent_at = handed_out;
        if !todo.wait_for_frame(&shared).await {
            break;
        }
    }
    shared.flush_results();
    shared.send_control(&ToMaster::Stats(shared.stats.roll()));
    shared.send_control(&ToMaster::Bye);
    EXIT_OK
}

/// What the job thread has to do besides jobs, and where more comes from.
struct Todo {
    /// Frames the watchdog read while the job thread was busy.
    inbox: mpsc::UnboundedReceiver<Inbox>,
    messages: VecDeque<Message>,
    stopping: bool,
}

impl Todo {
    fn accept(&mut self, item: Inbox) {
        match item {
            // Already queued by whoever read the frame.
            Inbox::Jobs => {}
            Inbox::Message(message) => self.messages.push_back(message),
            Inbox::Stop => self.stopping = true,
            Inbox::ChannelFree => {}
        }
    }

    /// Takes what the watchdog has read; says whether there was anything.
    fn take_inbox(&mut self) -> bool {
        let mut any = false;
        while let Ok(item) = self.inbox.try_recv() {
            self.accept(item);
            any = true;
        }
        any
    }

    /// Takes the frames that can be read from the channel without waiting.
    fn read_waiting_frames(&mut self, shared: &Arc<WorkerShared>) {
        let Some(mut reader) = shared.channel.try_take() else {
            return;
        };
        // The watchdog passes on what it read before it hands the channel back:
        // take that first, so frames keep their order.
        self.take_inbox();
        while shared.channel.has_data(&reader) {
            let frame = shared.read_frame(&mut reader);
            if let Some(item) = shared.route(frame) {
                self.accept(item);
            }
        }
    }

    /// Waits for the next frame, on the channel itself unless the watchdog is reading
    /// it; `false` when no frame can come any more.
    async fn wait_for_frame(&mut self, shared: &Arc<WorkerShared>) -> bool {
        if let Some(mut reader) = shared.channel.try_take() {
            if self.take_inbox() {
                return true;
            }
            // The first frame, and those that came with it: jobs that arrived together
            // run back to back and are answered in one frame.
            loop {
                let frame = shared.read_frame(&mut reader);
                if let Some(item) = shared.route(frame) {
                    self.accept(item);
                }
                if reader.buffer().is_empty() {
                    return true;
                }
            }
        }
        match self.inbox.recv().await {
            Some(item) => {
                self.accept(item);
                true
            }
            None => false,
        }
    }
}

/// Runs one job and buffers its result; returns the error text when the job failed.
async fn run_job<W: JobWorker>(
    state: &mut W,
    worker: &Worker,
    id: u64,
    decoded: Result<W::Job, String>,
) -> Option<String> {
    let shared = &worker.shared;
    let job = match decoded {
        Ok(job) => job,
        Err(error) => {
            shared.finish_failure(id, FailedAs::Protocol, &error);
            return Some(error);
        }
    };
    shared.current_job.store(id, Ordering::Relaxed);
    let started = shared.stats.times_jobs().then(Instant::now);
    let outcome = catch_panic(state.process(job, worker)).await;
    if let Some(started) = started {
        shared.stats.job_took(started.elapsed());
    }
    shared.current_job.store(NO_JOB, Ordering::Relaxed);
    let (failed, error) = match outcome {
        Ok(Ok(value)) => match shared.finish_output(id, &value) {
            Ok(()) => return None,
            Err(error) => (FailedAs::Protocol, error),
        },
        Ok(Err(e)) if crate::permanent::is_permanent(&e) => (FailedAs::Permanent, format!("{e:#}")),
        Ok(Err(e)) => (FailedAs::Returned, format!("{e:#}")),
        Err(panic) => (FailedAs::Panicked, format!("job panicked: {panic}")),
    };
    shared.finish_failure(id, failed, &error);
    Some(error)
}
