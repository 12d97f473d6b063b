//! The master's run loop: starts workers, feeds them jobs, hears them out, and ends
//! when every job is accounted for.
//!
//! One task owns all the run's state, so there are no locks on the hot path. A job
//! travels: source → [`Ledger::submit`] → [`Ledger::dispatch`] (a jobs frame through
//! the worker's link) → the worker → a results frame read by the worker's reader task
//! → [`Master::on_results`] → [`Ledger::settle`] → an [`Event::Output`] or
//! [`Event::Failed`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::marker::PhantomData;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::dispatch::{DispatchSettings, Pacer, MAX_BATCH_BYTES};
use crate::error::{EncodedFailure, Error, Kind};
use crate::handle::{Command, Shared, WorkerLink};
use crate::jobs::Jobs;
use crate::journal::Journal;
use crate::lane::{Answer, Lane, MAX_STAGED_BYTES};
use crate::ledger::{Blame, Failure, Ledger, Settled};
use crate::link::Link;
use crate::lookup;
use crate::message::{Message, Responder};
use crate::process;
use crate::progress::Progress;
use crate::report::{JobFailure, JobOutput, Report};
use crate::running::{Event, WorkerCrash, WorkerExit};
use crate::signals::{Interrupt, SignalWatch};
use crate::stats::Aggregator;
use crate::transport::{LocalTransport, Transport};
use crate::wire::{
    control_frame, decode_control, BatchWriter, Frame, FrameReader, Request, ResultsReader,
    StatsRoll, ToMaster, ToWorker, WorkerConfig, PROTOCOL_VERSION,
};

/// Everything a conductor was configured with.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub worker_type: String,
    pub worker_limit: usize,
    pub worker_env: Vec<(String, String)>,
    pub logging: bool,
    pub stats_interval: Duration,
    pub job_timeout: Option<Duration>,
    pub startup_timeout: Duration,
    pub max_attempts: u32,
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
}

/// Where the run's workers are and how jobs reach them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Backend {
    /// Worker processes on this machine, each on a private socketpair.
    Local,
    /// A NATS JetStream run: local workers and any that join from elsewhere pull jobs
    /// from the run's queue.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    Nats {
        url: String,
        run: String,
        ack_wait: Duration,
    },
}

/// How long aborted workers get to exit before they are killed.
const ABORT_GRACE: Duration = Duration::from_secs(2);
/// How often deadlines (job timeouts, start-up, shutdown) are checked.
const TICK: Duration = Duration::from_millis(50);
/// The longest an event waits in the master before it is handed to the reader of
/// events. Handing over each one at once would wake the reader for every job that
/// ends alone (one job in flight per worker): most of the master's work then.
const EVENT_LINGER: Duration = Duration::from_millis(1);
/// Events are handed over at once when this many wait.
const EVENT_BATCH: usize = 2048;
/// How long the master waits before trying again to start a worker that failed to start.
const SPAWN_RETRY: Duration = Duration::from_millis(200);
/// How long the master waits for a dead worker's last frames.
const DRAIN_WAIT: Duration = Duration::from_secs(2);
/// How long the master waits for the last frames of a worker without a private channel.
const TRANSPORT_DRAIN: Duration = Duration::from_millis(300);
/// The ledger's name for the shared queue, where jobs wait for any worker to pull them.
const QUEUE: u64 = 0;
/// A worker on another machine that says nothing for this long is taken for gone.
const REMOTE_SILENCE: Duration = Duration::from_secs(4);

/// What a worker's tasks tell the run loop.
pub(crate) enum WorkerEvent {
    Ready {
        job_type: String,
        output_type: String,
        protocol: u32,
    },
    Refused(String),
    Results(Bytes),
    /// Answers wait in the worker's lane and its staged jobs are running low.
    LaneLow,
    Message(Message),
    Stats(StatsRoll),
    Crash {
        reason: String,
        job: Option<u64>,
    },
    Bye,
    /// The worker broke the protocol; its reader stopped.
    Broken(String),
    Exited(std::io::Result<std::process::ExitStatus>),
    /// The results a resumed run had stored before this master started are read.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    CaughtUp,
    /// A remote worker is alive.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    Heartbeat,
    /// A message from a remote worker made no sense; it was dropped.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    Malformed(String),
    /// A worker asks to join a distributed run.
    #[cfg(feature = "nats")]
    Join {
        request: crate::nats::JoinRequest,
        reply: tokio::sync::oneshot::Sender<crate::nats::JoinReply>,
    },
}

pub(crate) struct FromWorker {
    pub worker_id: u64,
    pub event: WorkerEvent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Starting(Instant),
    Ready,
    Stopping,
    /// Killed by the master; its jobs are already back in the ledger.
    Killed,
}

struct WorkerSlot {
    state: SlotState,
    link: WorkerLink,
    /// Its next jobs, staged at the master's end (fixed windows only; see `lane.rs`).
    lane: Option<Arc<Lane>>,
    kill: Arc<Notify>,
    pacer: Pacer,
    /// Jobs sent to it, for recycling after `max_jobs_per_worker`.
    dispatched: u64,
    answers: u64,
    said_bye: bool,
    crash: Option<(String, Option<u64>)>,
    kill_reason: Option<String>,
    /// Joined from elsewhere: no process of ours, so it cannot be killed or waited for.
    remote: bool,
    last_seen: Instant,
}

impl WorkerSlot {
    fn new(state: SlotState, link: WorkerLink, kill: Arc<Notify>, settings: &Settings) -> Self {
        WorkerSlot {
            state,
            link,
            lane: None,
            kill,
            pacer: Pacer::new(settings.dispatch),
            dispatched: 0,
            answers: 0,
            said_bye: false,
            crash: None,
            kill_reason: None,
            remote: false,
            last_seen: Instant::now(),
        }
    }

    /// A worker on another machine: no process of ours to kill or wait for.
    fn remote(state: SlotState, link: WorkerLink, settings: &Settings) -> Self {
        WorkerSlot {
            remote: true,
            ..WorkerSlot::new(state, link, Arc::new(Notify::new()), settings)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Running,
    /// Interrupted: no new jobs; waiting until the deadline for those in flight.
    Draining(Instant),
    Finishing(Instant),
    Aborting(Instant),
    Failed(Instant),
}

pub(crate) struct Master<J, O> {
    settings: Settings,
    shared: Arc<Shared>,
    ledger: Ledger<J>,
    workers: BTreeMap<u64, WorkerSlot>,
    next_worker_id: u64,
    worker_tx: mpsc::UnboundedSender<FromWorker>,
    events: Option<mpsc::Sender<Vec<Event<J, O>>>>,
    pending_events: Vec<Event<J, O>>,
    /// When the run loop first saw the oldest of `pending_events`.
    events_waiting_since: Option<Instant>,
    failures: Vec<JobFailure<J>>,
    stats: Aggregator,
    phase: Phase,
    fatal: Option<Error>,
    deaths_without_progress: u32,
    last_death: String,
    workers_started: u64,
    worker_crashes: u64,
    round_robin: usize,
    spawn_retry_at: Option<Instant>,
    journal: Option<Journal<J>>,
    progress: Progress,
    signals: Option<SignalWatch>,
    signals_handled: u32,
    interrupted: Option<Interrupt>,
    transport: Arc<dyn Transport>,
    /// Jobs a resumed run finished before this master pulled them: `None` if they
    /// completed, the error if they failed.
    settled_before: HashMap<u64, Option<String>>,
    /// Jobs passed over because an earlier master of this run finished them.
    resumed: u64,
    /// A resumed distributed run reads what it already finished before it takes
    /// jobs from the source.
    replaying: bool,
    /// Remote workers taken for gone after a silence; they may come back.
    silent: BTreeSet<u64>,
    /// Some lane holds staged jobs, so answers may wait there for the run loop.
    staging: bool,
    #[cfg(feature = "nats")]
    nats: Option<Arc<crate::nats::queue::NatsTransport>>,
    _output: PhantomData<fn() -> O>,
}

macro_rules! log {
    ($master:expr, $level:ident, $($arg:tt)+) => {
        if $master.settings.logging {
            tracing::$level!(conductor = %$master.shared.id, worker_type = %$master.settings.worker_type, $($arg)+);
        }
    };
}

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    pub(crate) async fn run(
        #[cfg_attr(not(feature = "nats"), allow(unused_mut))] mut settings: Settings,
        shared: Arc<Shared>,
        source: Jobs<J>,
        journal: Option<Journal<J>>,
        mut commands: mpsc::UnboundedReceiver<Command>,
        events: Option<mpsc::Sender<Vec<Event<J, O>>>>,
    ) -> Result<Report<J>, Error> {
        let (worker_tx, mut worker_rx) = mpsc::unbounded_channel();
        #[cfg(feature = "nats")]
        let nats = match &settings.backend {
            Backend::Nats { url, run, ack_wait } => {
                let worker_window = settings.dispatch.prefetch.unwrap_or(32);
                let queue = crate::nats::queue::QueueSettings {
                    url: url.clone(),
                    run: run.clone(),
                    max_attempts: settings.max_attempts,
                    ack_wait: *ack_wait,
                    worker_window,
                    queue_window: (worker_window * settings.worker_limit * 4).max(1024),
                };
                let started = crate::nats::queue::NatsTransport::start(
                    queue,
                    shared.clone(),
                    worker_tx.clone(),
                )
                .await;
                match started {
                    Ok(transport) => {
                        // Frames travel as messages: none may outgrow the server's limit.
                        let max_frame = settings.max_frame_bytes.min(transport.max_frame());
                        settings.max_frame_bytes = max_frame;
                        shared.max_frame.store(max_frame, Ordering::Relaxed);
                        Some(Arc::new(transport))
                    }
                    Err(e) => return Err(e.with_unsubmitted(Some(source))),
                }
            }
            Backend::Local => None,
        };
        #[cfg(feature = "nats")]
        let transport: Arc<dyn Transport> = match &nats {
            Some(nats) => nats.clone(),
            None => Arc::new(LocalTransport),
        };
        #[cfg(not(feature = "nats"))]
        let transport: Arc<dyn Transport> = Arc::new(LocalTransport);
        let signals = match settings.handle_signals {
            true => SignalWatch::install()
                .inspect_err(|e| {
                    tracing::warn!("conductor cannot watch for Ctrl-C and SIGTERM: {e}");
                })
                .ok(),
            false => None,
        };
        let progress = Progress::start(
            settings.progress,
            settings.total_jobs.or_else(|| source.exact_len()),
        );
        let mut master = Master {
            ledger: Ledger::new(settings.max_attempts),
            settings,
            shared,
            workers: BTreeMap::new(),
            next_worker_id: 1,
            worker_tx,
            events,
            pending_events: Vec::new(),
            events_waiting_since: None,
            failures: Vec::new(),
            stats: Aggregator::default(),
            phase: Phase::Running,
            fatal: None,
            deaths_without_progress: 0,
            last_death: String::new(),
            workers_started: 0,
            worker_crashes: 0,
            round_robin: 0,
            spawn_retry_at: None,
            journal,
            progress,
            signals,
            signals_handled: 0,
            interrupted: None,
            transport,
            settled_before: HashMap::new(),
            resumed: 0,
            #[cfg(feature = "nats")]
            replaying: nats.as_ref().is_some_and(|n| n.replaying()),
            #[cfg(not(feature = "nats"))]
            replaying: false,
            silent: BTreeSet::new(),
            staging: false,
            #[cfg(feature = "nats")]
            nats,
            _output: PhantomData,
        };
        let started = Instant::now();
        master.shared.processing.store(true, Ordering::Relaxed);
        log!(
            master,
            info,
            worker_limit = master.settings.worker_limit,
            "conductor started"
        );
        let mut source = Some(source);
        let mut pulled = Vec::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let events_due = tokio::time::sleep(EVENT_LINGER);
        tokio::pin!(events_due);
        loop {
            master.check_signals();
            master.drain_lanes();
            if master.phase == Phase::Running {
                if let Some(jobs) = source.as_mut().filter(|s| s.is_sync()) {
                    // Jobs the journal skips leave room: pull until the room is filled.
                    loop {
                        let wanted = master.wanted_jobs();
                        let ended = wanted > 0 && jobs.pull_now(wanted, &mut pulled);
                        master.accept_jobs(&mut pulled);
                        if ended {
                            source = None;
                            break;
                        }
                        if master.wanted_jobs() == 0 || wanted == 0 {
                            break;
                        }
                    }
                }
                master.maybe_finish(source.is_none());
                master.spawn_workers(source.is_some()).await;
                master.dispatch();
            }
            master.maybe_end_drain();
            master.write_journal();
            master.show_progress();
            let ending = master.phase != Phase::Running && master.workers.is_empty();
            if let Some(due) = master.flush_events(ending).await {
                events_due.as_mut().reset(due.into());
            }
            if ending {
                // Results stored by workers that already left may still be on their way.
                #[cfg(feature = "nats")]
                master.read_last_results(&mut worker_rx).await;
                break;
            }
            let want_stream = master.phase == Phase::Running && master.wanted_jobs() > 0;
            tokio::select! {
                event = worker_rx.recv() => {
                    // The master holds a sender, so the channel never closes here.
                    if let Some(event) = event {
                        master.on_worker_event(event);
                    }
                    // Take what else has arrived before dispatching again.
                    for _ in 0..256 {
                        match worker_rx.try_recv() {
                            Ok(event) => master.on_worker_event(event),
                            Err(_) => break,
                        }
                    }
                }
                Some(command) = commands.recv() => match command {
                    Command::Abort => master.abort(),
                    Command::Shutdown => master.shutdown(Interrupt::Shutdown),
                },
                ended = pull_stream(&mut source, master.wanted_jobs(), &mut pulled), if want_stream && source.as_ref().is_some_and(|s| !s.is_sync()) => {
                    master.accept_jobs(&mut pulled);
                    if ended {
                        source = None;
                    }
                }
                _ = &mut events_due, if master.events_waiting_since.is_some() => {}
                _ = tick.tick() => {
                    // Hear out what already arrived, so no deadline is judged on stale news.
                    while let Ok(event) = worker_rx.try_recv() {
                        master.on_worker_event(event);
                    }
                    master.check_deadlines();
                }
            }
        }
        #[cfg(feature = "nats")]
        master.close_run().await;
        master.finish(started, source)
    }

    /// Before a distributed run ends, reads every result stored so far: a worker's
    /// last results can arrive after its goodbye, and would otherwise be reported as
    /// jobs that did not run.
    #[cfg(feature = "nats")]
    async fn read_last_results(&mut self, worker_rx: &mut mpsc::UnboundedReceiver<FromWorker>) {
        let Some(nats) = self.nats.clone() else {
            return;
        };
        let Some(stored) = nats.results_stored().await else {
            return;
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while nats.results_read() < stored && self.ledger.in_flight() > 0 {
            match tokio::time::timeout_at(deadline, worker_rx.recv()).await {
                Ok(Some(event)) => self.on_worker_event(event),
                _ => break,
            }
        }
        while let Ok(event) = worker_rx.try_recv() {
            self.on_worker_event(event);
        }
        self.write_journal();
    }

    /// Removes a distributed run's streams once every job is accounted for; a run
    /// that stopped early keeps them, so it can be resumed.
    #[cfg(feature = "nats")]
    async fn close_run(&mut self) {
        let Some(nats) = self.nats.clone() else {
            return;
        };
        let complete = matches!(self.phase, Phase::Finishing(_))
            && self.interrupted.is_none()
            && self.fatal.is_none()
            && self.ledger.outstanding() == 0;
        if complete {
            nats.end_run().await;
            if let Err(e) = nats.remove_run().await {
                log!(self, warn, "{e}");
            }
        } else {
            log!(
                self,
                info,
                run = nats.run(),
                "run stopped early: its streams are kept, to be resumed"
            );
        }
        nats.flush().await;
    }

    /// How many more jobs to pull from the source now: enough to refill every
    /// worker's window, so memory stays flat however long the source is.
    fn wanted_jobs(&self) -> usize {
        if self.replaying {
            return 0;
        }
        if self.transport.is_queue() {
            // Only what goes on the queue at once: a job pulled from the source is
            // published in the same turn, so no result can find it still unpublished.
            let held = self.ledger.ready() + self.ledger.in_flight_on(QUEUE);
            return self.transport.queue_window().saturating_sub(held);
        }
        let windows: usize = match self.transport.is_queue() {
            true => self.transport.queue_window(),
            false => self
                .workers
                .values()
                .map(|w| match w.lane {
                    Some(_) => w.pacer.window() + w.pacer.staged_target(),
                    None => w.pacer.window(),
                })
                .sum(),
        };
        let target = windows.max(self.settings.worker_limit) * 2;
        target.saturating_sub(self.ledger.ready())
    }

    fn accept_jobs(&mut self, pulled: &mut Vec<J>) {
        for job in pulled.drain(..) {
            if let Some(journal) = &mut self.journal {
                // Done in an earlier run: it never enters this one.
                if !journal.admit(&job, self.ledger.next_id()) {
                    if !self.settled_before.is_empty() {
                        self.settled_before.remove(&self.ledger.next_id());
                    }
                    self.ledger.pass_over();
                    continue;
                }
            }
            // A resumed distributed run: an earlier master saw this job through.
            let before = match self.settled_before.is_empty() {
                true => None,
                false => self.settled_before.remove(&self.ledger.next_id()),
            };
            if let Some(before) = before {
                match before {
                    None => {
                        self.ledger.pass_over();
                        self.resumed += 1;
                    }
                    Some(error) => {
                        let failure = self.ledger.submit_failed(job, error);
                        self.record_failure(failure);
                    }
                }
                continue;
            }
            self.ledger.submit(job);
        }
    }

    /// Starts the shutdown once the source is dry and every job is settled.
    fn maybe_finish(&mut self, source_done: bool) {
        if !source_done || self.ledger.outstanding() > 0 {
            return;
        }
        log!(self, info, "all jobs are accounted for; stopping workers");
        self.stop_workers();
    }

    /// Asks every worker to exit once it has answered what it holds.
    fn stop_workers(&mut self) {
        self.close_lanes();
        self.phase = Phase::Finishing(Instant::now() + self.settings.stop_grace);
        let stop = control_frame(&ToWorker::Stop);
        for slot in self.workers.values_mut() {
            if matches!(slot.state, SlotState::Starting(_) | SlotState::Ready) {
                slot.state = SlotState::Stopping;
                let _ = slot.link.send(stop.clone());
            }
        }
    }

    async fn spawn_workers(&mut self, source_open: bool) {
        let alive = self
            .workers
            .values()
            .filter(|w| !w.remote && matches!(w.state, SlotState::Starting(_) | SlotState::Ready))
            .count();
        let desired = if source_open {
            self.settings.worker_limit
        } else {
            self.settings.worker_limit.min(self.ledger.outstanding())
        };
        if self.spawn_retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        for up in alive..desired {
            if let Err(e) = self.spawn_worker().await {
                log!(self, error, "could not start a worker: {e}");
                // With other workers up, try again a little later; with none, nothing
                // would ever run.
                if up == 0 {
                    self.fail(e);
                }
                self.spawn_retry_at = Some(Instant::now() + SPAWN_RETRY);
                return;
            }
        }
        self.spawn_retry_at = None;
    }

    async fn spawn_worker(&mut self) -> Result<(), Error> {
        let worker_id = self.next_worker_id;
        self.next_worker_id += 1;
        let capture_output = self.progress.is_visible();
        let mut env = self.settings.worker_env.clone();
        env.extend(self.transport.worker_env(worker_id));
        let mut spawned = process::spawn_worker(
            &self.settings.worker_type,
            &env,
            capture_output,
            self.transport.private_channel(),
        )
        .await
        .map_err(|e| Error::new(Kind::Spawn(e)))?;
        self.workers_started += 1;
        if let Some(stdout) = spawned.child.stdout.take() {
            tokio::spawn(forward_output(stdout, self.progress.clone(), false));
        }
        if let Some(stderr) = spawned.child.stderr.take() {
            tokio::spawn(forward_output(stderr, self.progress.clone(), true));
        }
        let mut lane = None;
        let config = control_frame(&ToWorker::Config(self.worker_config(worker_id)));
        let (link, reader): (WorkerLink, _) = match (spawned.channel, self.lane_window()) {
            // A lane's channel stays out of the run loop's sight: threads of its own
            // read and write it.
            (Some(channel), Some(window)) => {
                match self.start_lane(worker_id, channel, window, config) {
                    Ok((link, new_lane, reader)) => {
                        lane = Some(new_lane);
                        (link, Some(reader))
                    }
                    Err(e) => {
                        // Nobody would ever talk to it.
                        let _ = spawned.child.start_kill();
                        return Err(e);
                    }
                }
            }
            (Some(channel), None) => {
                let (read, write) = channel.into_split();
                let link: WorkerLink = Link::start(write);
                let _ = link.send(config);
                let reader = tokio::spawn(read_frames(
                    worker_id,
                    read,
                    self.shared.clone(),
                    link.clone(),
                    self.worker_tx.clone(),
                    self.settings.max_frame_bytes,
                ));
                (link, Some(reader))
            }
            // It gets its settings when it joins, and its frames travel the transport.
            (None, _) => match self.transport.link_for(worker_id) {
                Some(link) => (link, None),
                None => return Err(Error::usage("the transport has no link for a worker")),
            },
        };
        let kill = Arc::new(Notify::new());
        tokio::spawn(wait_for_exit(
            worker_id,
            spawned.child,
            reader,
            kill.clone(),
            self.worker_tx.clone(),
        ));
        log!(self, debug, worker_id, "worker process started");
        let mut slot = WorkerSlot::new(
            SlotState::Starting(Instant::now()),
            link,
            kill,
            &self.settings,
        );
        slot.lane = lane;
        self.workers.insert(worker_id, slot);
        Ok(())
    }

    /// Takes a worker's channel out of the runtime's sight and starts its lane, with a
    /// reader thread and a link whose writes need no task.
    fn start_lane(
        &self,
        worker_id: u64,
        channel: tokio::net::UnixStream,
        window: usize,
        config: Bytes,
    ) -> Result<(WorkerLink, Arc<Lane>, JoinHandle<()>), Error> {
        let spawn_error = |e| Error::new(Kind::Spawn(e));
        let socket = channel.into_std().map_err(spawn_error)?;
        // The reader blocks in `read`; the link's writes never wait (MSG_DONTWAIT).
        socket.set_nonblocking(false).map_err(spawn_error)?;
        let read = socket.try_clone().map_err(spawn_error)?;
        let link: WorkerLink = Link::start_plain(socket, format!("conductor-link-{worker_id}"))
            .map_err(spawn_error)?;
        let _ = link.send(config);
        let lane = Lane::new(link.clone(), window);
        let reader = read_frames_on_thread(
            worker_id,
            read,
            self.shared.clone(),
            link.clone(),
            lane.clone(),
            self.worker_tx.clone(),
            self.settings.max_frame_bytes,
        );
        if reader.is_err() {
            link.close();
        }
        Ok((link, lane, reader?))
    }

    /// The window of a worker that gets a lane: a fixed `prefetch` over a private
    /// channel. Not with a job timeout, which needs to know when each job really left,
    /// nor with recycling, which counts the jobs that left.
    fn lane_window(&self) -> Option<usize> {
        let settings = &self.settings;
        if !self.transport.private_channel()
            || settings.job_timeout.is_some()
            || settings.max_jobs_per_worker.is_some()
        {
            return None;
        }
        settings.dispatch.prefetch
    }

    /// The settings a worker gets in its handshake.
    fn worker_config(&self, worker_id: u64) -> WorkerConfig {
        WorkerConfig {
            protocol: PROTOCOL_VERSION,
            worker_type: self.settings.worker_type.clone(),
            job_type: std::any::type_name::<J>().to_string(),
            output_type: std::any::type_name::<O>().to_string(),
            worker_id,
            master_id: self.shared.id.clone(),
            stats_interval_ms: self.settings.stats_interval.as_millis() as u64,
            max_frame_bytes: self.settings.max_frame_bytes as u64,
            logging: self.settings.logging,
            crash_on_job_error: self.settings.crash_on_job_error,
        }
    }

    /// Sends ready jobs to workers with room in their window, taking turns so a
    /// short queue is shared out fairly; then stages jobs in the workers' lanes.
    fn dispatch(&mut self) {
        if self.transport.is_queue() {
            if self.ledger.ready() > 0 {
                self.enqueue();
            }
            return;
        }
        if self.ledger.ready() == 0 && !self.staging {
            return;
        }
        let ready: Vec<u64> = self
            .workers
            .iter()
            .filter(|(_, w)| w.state == SlotState::Ready)
            .map(|(id, _)| *id)
            .collect();
        if ready.is_empty() {
            return;
        }
        self.round_robin = self.round_robin.wrapping_add(1);
        self.fill_windows(&ready);
        // A worker must not idle while jobs wait staged for a busy one (the
        // classic prefetch starvation): staged jobs come back and are shared again.
        if self.ledger.ready() == 0
            && self.staging
            && ready.iter().any(|id| self.ledger.in_flight_on(*id) == 0)
        {
            self.reclaim_staged();
            self.fill_windows(&ready);
        }
        self.fill_lanes(&ready);
    }

    /// Gives each ready worker what its window has room for.
    fn fill_windows(&mut self, ready: &[u64]) {
        for k in 0..ready.len() {
            if self.ledger.ready() == 0 {
                return;
            }
            let worker_id = ready[(self.round_robin + k) % ready.len()];
            let Some(slot) = self.workers.get(&worker_id) else {
                continue;
            };
            let mut room = slot.pacer.room(self.ledger.in_flight_on(worker_id));
            if let Some(limit) = self.settings.max_jobs_per_worker {
                room = room.min(limit.saturating_sub(slot.dispatched) as usize);
            }
            if room > 0 {
                self.send_batch(worker_id, room);
            }
        }
    }

    /// Stages jobs in the lanes until each holds what its pacer asks for; a short
    /// queue is shared out evenly.
    fn fill_lanes(&mut self, ready: &[u64]) {
        if self.lane_window().is_none() {
            return;
        }
        let mut wanting = Vec::new();
        self.staging = false;
        for &worker_id in ready {
            let Some(slot) = self.workers.get(&worker_id) else {
                continue;
            };
            let Some(lane) = &slot.lane else {
                continue;
            };
            let target = slot.pacer.staged_target();
            lane.set_target(target);
            self.staging |= target > 0;
            let (jobs, bytes) = lane.staged();
            if jobs < target && bytes < MAX_STAGED_BYTES {
                wanting.push((worker_id, lane.clone(), target - jobs, slot.pacer.room(0)));
            }
        }
        let share = (self.ledger.ready() / wanting.len().max(1)).max(1);
        for (worker_id, lane, wanted, frame_jobs) in wanting {
            if self.ledger.ready() == 0 {
                break;
            }
            self.stage(worker_id, &lane, wanted.min(share), frame_jobs);
        }
    }

    /// Takes up to `jobs` ready jobs for a worker's lane, in frames of at most
    /// `frame_jobs` written into one buffer, and stages them.
    fn stage(&mut self, worker_id: u64, lane: &Lane, jobs: usize, frame_jobs: usize) {
        let mut batch = BatchWriter::jobs((jobs * 32).min(MAX_STAGED_BYTES) + 64);
        let mut refused = Vec::new();
        let (mut staged, mut taken) = (0, 0);
        while staged < jobs && batch.total_len() < MAX_STAGED_BYTES {
            let refused_before = refused.len();
            let sent = self.ledger.dispatch(
                worker_id,
                frame_jobs.min(jobs - staged),
                MAX_BATCH_BYTES,
                self.settings.max_frame_bytes,
                &mut batch,
                &mut refused,
            );
            if sent == 0 && refused.len() == refused_before {
                break;
            }
            staged += sent;
            taken += sent + refused.len() - refused_before;
            batch.next_frame();
        }
        for failure in refused {
            self.record_failure(failure);
        }
        if let Some(slot) = self.workers.get_mut(&worker_id) {
            slot.dispatched += taken as u64;
        }
        lane.place(batch.finish_frames());
    }

    /// Takes back every job staged in a lane: none has left the master.
    fn reclaim_staged(&mut self) {
        for (worker_id, slot) in self.workers.iter_mut() {
            if let Some(lane) = &slot.lane {
                let staged = lane.reclaim();
                self.ledger.give_back_newest(*worker_id, staged);
                slot.dispatched = slot.dispatched.saturating_sub(staged as u64);
            }
        }
    }

    /// Moves up to `room` ready jobs onto a worker and hands them to it, through its
    /// lane if it has one. Returns how many jobs left the ready queues.
    fn send_batch(&mut self, worker_id: u64, room: usize) -> usize {
        let (frame, taken) = self.take_batch(worker_id, room);
        if let Some(slot) = self.workers.get_mut(&worker_id) {
            match (frame, &slot.lane) {
                (Some(frame), Some(lane)) => lane.place([frame]),
                (Some((frame, _)), None) => {
                    let _ = slot.link.send(frame);
                }
                (None, _) => {}
            }
            slot.dispatched += taken as u64;
        }
        self.maybe_recycle(worker_id);
        taken
    }

    /// Puts ready jobs on the shared queue, up to its window; any worker pulls them.
    fn enqueue(&mut self) {
        loop {
            let room = self
                .transport
                .queue_window()
                .saturating_sub(self.ledger.in_flight_on(QUEUE));
            if room == 0 || self.ledger.ready() == 0 {
                return;
            }
            let (frame, taken) = self.take_batch(QUEUE, room);
            if let Some((frame, _)) = frame {
                self.transport.enqueue(frame);
            }
            if taken == 0 {
                return;
            }
        }
    }

    /// Moves up to `room` ready jobs onto `holder` (a worker, or the queue), encoded
    /// in one jobs frame; a job too large for a frame fails here. Returns the frame
    /// and the jobs in it, if any job went in, and how many jobs left the ready queues.
    fn take_batch(&mut self, holder: u64, room: usize) -> (Option<(Bytes, usize)>, usize) {
        let mut batch = BatchWriter::jobs((room * 16).min(MAX_BATCH_BYTES) + 64);
        let mut refused = Vec::new();
        let sent = self.ledger.dispatch(
            holder,
            room,
            MAX_BATCH_BYTES,
            self.settings.max_frame_bytes,
            &mut batch,
            &mut refused,
        );
        let taken = sent + refused.len();
        for failure in refused {
            self.record_failure(failure);
        }
        ((sent > 0).then(|| (batch.finish(), sent)), taken)
    }

    fn on_worker_event(&mut self, FromWorker { worker_id, event }: FromWorker) {
        #[cfg(feature = "nats")]
        let event = match event {
            WorkerEvent::Join { request, reply } => {
                // A worker that gave up waiting must not leave a slot behind.
                if !reply.is_closed() {
                    let answer = self.on_join(request);
                    let _ = reply.send(answer);
                }
                return;
            }
            event => event,
        };
        if let WorkerEvent::CaughtUp = event {
            self.replaying = false;
            return;
        }
        if self.silent.remove(&worker_id) {
            self.readmit(worker_id);
        }
        match self.workers.get_mut(&worker_id) {
            Some(slot) => slot.last_seen = Instant::now(),
            // Results in a shared queue count whoever sent them, even a worker long
            // gone, or one of a master that ran before this one.
            None if self.transport.is_queue() && matches!(event, WorkerEvent::Results(_)) => {}
            None => return,
        }
        match event {
            WorkerEvent::Ready {
                job_type,
                output_type,
                protocol,
            } => self.on_ready(worker_id, job_type, output_type, protocol),
            WorkerEvent::Refused(reason) => {
                let message = format!("worker {worker_id} refused to start: {reason}");
                log!(self, error, "{message}");
                if self.workers.get(&worker_id).is_some_and(|w| w.remote) {
                    // A stranger that cannot run this run's jobs only leaves.
                    self.on_exit(worker_id, Err(std::io::Error::other(message)));
                } else {
                    self.fail(Error::remote(message));
                }
            }
            WorkerEvent::Results(body) => self.on_results(worker_id, body),
            WorkerEvent::LaneLow => {
                if let Some(lane) = self.workers.get(&worker_id).and_then(|w| w.lane.clone()) {
                    self.drain_lane(worker_id, &lane);
                }
            }
            WorkerEvent::Message(message) => {
                if self.events.is_some() {
                    self.pending_events.push(Event::Message(message));
                } else {
                    let cmd = message.cmd().to_string();
                    message.reply_error(format!(
                        "command `{cmd}` was not handled: the master does not listen for messages \
                         (use Conductor::start and read its events)"
                    ));
                }
            }
            WorkerEvent::Stats(roll) => {
                let live = self.live_workers();
                if let Some(report) = self.stats.add(worker_id, roll, &live) {
                    self.publish_stats(report);
                }
            }
            WorkerEvent::Crash { reason, job } => {
                if let Some(slot) = self.workers.get_mut(&worker_id) {
                    slot.crash = Some((reason, job));
                }
            }
            WorkerEvent::Bye => {
                if let Some(slot) = self.workers.get_mut(&worker_id) {
                    slot.said_bye = true;
                    if slot.remote {
                        self.on_exit(worker_id, Ok(std::process::ExitStatus::from_raw(0)));
                    }
                }
            }
            WorkerEvent::Heartbeat | WorkerEvent::CaughtUp => {}
            WorkerEvent::Malformed(reason) => {
                log!(
                    self,
                    warn,
                    worker_id,
                    "a malformed message from the worker was dropped: {reason}"
                );
            }
            #[cfg(feature = "nats")]
            WorkerEvent::Join { .. } => {}
            WorkerEvent::Broken(reason) => {
                log!(
                    self,
                    error,
                    worker_id,
                    "worker broke the protocol: {reason}"
                );
                self.kill_worker(
                    worker_id,
                    format!("broke the protocol: {reason}"),
                    Blame::Unknown,
                );
            }
            WorkerEvent::Exited(status) => self.on_exit(worker_id, status),
        }
    }

    /// Takes back a remote worker that went silent and speaks again.
    fn readmit(&mut self, worker_id: u64) {
        let Some(link) = self.transport.link_for(worker_id) else {
            return;
        };
        log!(self, info, worker_id, "remote worker is back");
        let state = match self.phase {
            Phase::Running => {
                self.shared.lock_links().insert(worker_id, link.clone());
                SlotState::Ready
            }
            _ => {
                let _ = link.send(control_frame(&ToWorker::Stop));
                SlotState::Stopping
            }
        };
        let slot = WorkerSlot::remote(state, link, &self.settings);
        self.workers.insert(worker_id, slot);
    }

    /// Decides whether a worker may join this distributed run: it must run this run's
    /// worker type with the same job and output types. A worker the master started
    /// itself comes with its reserved id; one from elsewhere gets a new one.
    #[cfg(feature = "nats")]
    fn on_join(&mut self, request: crate::nats::JoinRequest) -> crate::nats::JoinReply {
        use crate::nats::JoinReply;
        let refuse = |reason: String| JoinReply::Refused { reason };
        if !matches!(self.phase, Phase::Running) {
            return refuse("the run is ending".into());
        }
        if request.protocol != PROTOCOL_VERSION {
            return refuse(format!(
                "the worker speaks protocol {} and the master {PROTOCOL_VERSION}: run the same program on both sides",
                request.protocol
            ));
        }
        let run_type = &self.settings.worker_type;
        if let Some(asked) = &request.worker_type {
            if asked != run_type {
                return refuse(format!(
                    "this run runs workers of type `{run_type}`, not `{asked}`"
                ));
            }
        }
        let (job_type, output_type) = (std::any::type_name::<J>(), std::any::type_name::<O>());
        match request.registered.iter().find(|(t, _, _)| t == run_type) {
            None => {
                let known: Vec<&str> = request
                    .registered
                    .iter()
                    .map(|(t, _, _)| t.as_str())
                    .collect();
                return refuse(format!(
                    "this run runs workers of type `{run_type}`, which the joining program does not have (it has: {})",
                    known.join(", ")
                ));
            }
            Some((_, job, output)) if job != job_type || output != output_type => {
                return refuse(format!(
                    "worker type `{run_type}` takes `{job}` and returns `{output}` in the joining program, \
                     but this run sends `{job_type}` and expects `{output_type}`"
                ));
            }
            Some(_) => {}
        }
        let Some(nats) = self.nats.clone() else {
            return refuse("this run takes no workers from elsewhere".into());
        };
        let worker_id = match request.worker_id {
            Some((id, token)) => match self.workers.get(&id) {
                Some(slot)
                    if !slot.remote
                        && matches!(slot.state, SlotState::Starting(_))
                        && token == nats.join_token(id) =>
                {
                    id
                }
                _ => return refuse(format!("worker {id} is not expected")),
            },
            None => {
                let Some(link) = self.transport.link_for(self.next_worker_id) else {
                    return refuse("this run takes no workers from elsewhere".into());
                };
                let id = self.next_worker_id;
                self.next_worker_id += 1;
                self.workers_started += 1;
                log!(
                    self,
                    info,
                    worker_id = id,
                    host = %request.host,
                    pid = request.pid,
                    "a worker joined from elsewhere"
                );
                let slot =
                    WorkerSlot::remote(SlotState::Starting(Instant::now()), link, &self.settings);
                self.workers.insert(id, slot);
                id
            }
        };
        let remote = self.workers.get(&worker_id).is_some_and(|w| w.remote);
        JoinReply::Accepted {
            config: self.worker_config(worker_id),
            window: nats.worker_window as u32,
            ack_wait_ms: nats.ack_wait.as_millis() as u64,
            max_attempts: nats.max_attempts,
            max_jobs: self.settings.max_jobs_per_worker.filter(|_| !remote),
        }
    }

    fn on_ready(&mut self, worker_id: u64, job_type: String, output_type: String, protocol: u32) {
        let expected = (std::any::type_name::<J>(), std::any::type_name::<O>());
        if protocol != PROTOCOL_VERSION || job_type != expected.0 || output_type != expected.1 {
            let reason = format!(
                "worker {worker_id} runs protocol {protocol} with `{job_type}` → `{output_type}`, \
                 but this conductor runs protocol {PROTOCOL_VERSION} with `{}` → `{}`",
                expected.0, expected.1
            );
            self.fail(Error::remote(reason));
            return;
        }
        let Some(slot) = self.workers.get_mut(&worker_id) else {
            return;
        };
        // A worker killed or stopped meanwhile stays out of the live set.
        if !matches!(slot.state, SlotState::Starting(_)) {
            if slot.state == SlotState::Stopping && self.transport.is_queue() {
                // A stop sent before it listened on its subject was lost: again.
                let _ = slot.link.send(control_frame(&ToWorker::Stop));
            }
            return;
        }
        slot.state = SlotState::Ready;
        let learned = self
            .workers
            .values()
            .filter(|w| w.state == SlotState::Ready)
            .max_by_key(|w| w.pacer.window())
            .map(|w| w.pacer.clone());
        let Some(slot) = self.workers.get_mut(&worker_id) else {
            return;
        };
        if let Some(learned) = learned {
            slot.pacer.learn_from(&learned);
        }
        self.shared
            .lock_links()
            .insert(worker_id, slot.link.clone());
        log!(self, info, worker_id, "worker ready");
        self.push_event(Event::WorkerStarted { worker_id });
    }

    fn on_results(&mut self, worker_id: u64, body: Bytes) {
        let started = self.oldest_start(worker_id);
        let now = Instant::now();
        let count = self.settle_results(worker_id, body, now);
        self.after_answers(worker_id, count, started, now);
    }

    /// Who holds a worker's jobs in the ledger: with a shared queue, jobs are in
    /// flight on the queue, not on a worker.
    fn holder(&self, worker_id: u64) -> u64 {
        match self.transport.is_queue() {
            true => QUEUE,
            false => worker_id,
        }
    }

    /// When the oldest job the worker holds started, as far as the master can tell.
    fn oldest_start(&self, worker_id: u64) -> Option<Instant> {
        self.ledger
            .oldest_running(self.holder(worker_id))
            .map(|(_, at)| at)
    }

    /// Settles the answers of one results frame; returns how many jobs it settled.
    fn settle_results(&mut self, worker_id: u64, body: Bytes, now: Instant) -> usize {
        let holder = self.holder(worker_id);
        let mut count = 0;
        for entry in ResultsReader::new(&body) {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if holder == QUEUE => {
                    log!(
                        self,
                        warn,
                        worker_id,
                        "a broken results message was dropped: {e}"
                    );
                    break;
                }
                Err(e) => {
                    let reason = format!("sent a broken results frame: {e}");
                    self.kill_worker(worker_id, reason, Blame::Unknown);
                    return count;
                }
            };
            // Outputs are decoded only for someone who listens.
            let mut output = None;
            let outcome = match entry.outcome {
                Ok(bytes) if self.events.is_some() => match postcard::from_bytes::<O>(bytes) {
                    Ok(decoded) => {
                        output = Some(decoded);
                        Ok(())
                    }
                    Err(e) => Err(format!(
                        "could not decode the output as `{}`: {e}",
                        std::any::type_name::<O>()
                    )),
                },
                Ok(_) => Ok(()),
                Err(error) => Err(String::from_utf8_lossy(error).into_owned()),
            };
            if holder == QUEUE && entry.id >= self.ledger.next_id() {
                // Finished before this master took the job from its source: a run
                // resumed after its master stopped. Kept until the source gets there.
                self.settled_before.insert(entry.id, outcome.err());
                continue;
            }
            let Some(settled) = self.ledger.settle(holder, entry.id, outcome, now) else {
                continue;
            };
            count += 1;
            match settled {
                Settled::Completed { id } => {
                    if let Some(journal) = &mut self.journal {
                        journal.record(id, true);
                    }
                    if let Some(output) = output {
                        self.pending_events.push(Event::Output(JobOutput {
                            id,
                            worker_id,
                            output,
                        }));
                    }
                }
                Settled::Failed(failure) => self.record_failure(failure),
            }
        }
        count
    }

    /// Learns from `count` answers that came `now`, the oldest of their jobs having
    /// started at `started`.
    fn after_answers(
        &mut self,
        worker_id: u64,
        count: usize,
        started: Option<Instant>,
        now: Instant,
    ) {
        if count > 0 {
            self.deaths_without_progress = 0;
            if let Some(slot) = self.workers.get_mut(&worker_id) {
                slot.answers += count as u64;
                if let Some(started) = started {
                    slot.pacer
                        .observe(count, now.saturating_duration_since(started));
                }
            }
            self.maybe_recycle(worker_id);
        }
    }

    /// Settles the answers waiting in every lane.
    fn drain_lanes(&mut self) {
        if !self.staging {
            return;
        }
        let lanes: Vec<(u64, Arc<Lane>)> = self
            .workers
            .iter()
            .filter_map(|(id, w)| Some((*id, w.lane.clone()?)))
            .collect();
        for (worker_id, lane) in lanes {
            self.drain_lane(worker_id, &lane);
        }
    }

    /// Settles the answers waiting in one worker's lane. They are timed together:
    /// the worker was busy from the oldest job's start until now.
    fn drain_lane(&mut self, worker_id: u64, lane: &Lane) {
        let answers = lane.take_results();
        if answers.is_empty() {
            return;
        }
        let started = self.oldest_start(worker_id);
        let now = Instant::now();
        let mut count = 0;
        for body in answers {
            count += self.settle_results(worker_id, body, now);
        }
        self.after_answers(worker_id, count, started, now);
    }

    /// A worker stops or is gone: what waits in its lane is settled, and what is
    /// staged there goes back to the ready queues, never having left the master.
    fn close_lane(&mut self, worker_id: u64) {
        let Some(lane) = self.workers.get(&worker_id).and_then(|w| w.lane.clone()) else {
            return;
        };
        self.drain_lane(worker_id, &lane);
        let staged = lane.close();
        self.ledger.give_back_newest(worker_id, staged);
    }

    /// The run winds down: no lane sends anything more.
    fn close_lanes(&mut self) {
        let ids: Vec<u64> = self
            .workers
            .iter()
            .filter(|(_, w)| w.lane.is_some())
            .map(|(id, _)| *id)
            .collect();
        for worker_id in ids {
            self.close_lane(worker_id);
        }
        self.staging = false;
    }

    /// Stops a worker that has run its `max_jobs_per_worker` once it holds no more
    /// jobs; a fresh one takes its place.
    fn maybe_recycle(&mut self, worker_id: u64) {
        let Some(limit) = self.settings.max_jobs_per_worker else {
            return;
        };
        let idle = self.ledger.in_flight_on(worker_id) == 0;
        let queue = self.transport.is_queue();
        let Some(slot) = self.workers.get_mut(&worker_id) else {
            return;
        };
        // From a shared queue a worker pulls for itself: count what it answered (it
        // finishes the few jobs it holds before it stops). A worker from elsewhere is
        // not ours to replace.
        let ran = if queue { slot.answers } else { slot.dispatched };
        if slot.remote || slot.state != SlotState::Ready || ran < limit || !idle {
            return;
        }
        slot.state = SlotState::Stopping;
        let _ = slot.link.send(control_frame(&ToWorker::Stop));
        log!(
            self,
            debug,
            worker_id,
            "worker ran {limit} jobs: replacing it"
        );
    }

    fn record_failure(&mut self, failure: Failure<J>) {
        // A job settled for good is progress, even when its worker died of it.
        self.deaths_without_progress = 0;
        let Failure {
            id,
            job,
            error,
            attempts,
        } = failure;
        log!(self, warn, job_id = id, attempts, "job failed: {error}");
        if let Some(journal) = &mut self.journal {
            journal.record(id, false);
        }
        let failure = JobFailure {
            id,
            job,
            error,
            attempts,
        };
        if self.events.is_some() {
            self.pending_events.push(Event::Failed(failure.clone()));
        }
        self.failures.push(failure);
    }

    /// Stops a worker that misbehaved and takes its jobs back at once.
    fn kill_worker(&mut self, worker_id: u64, reason: String, blame: Blame) {
        let Some(slot) = self.workers.get_mut(&worker_id) else {
            return;
        };
        if slot.state == SlotState::Killed {
            return;
        }
        if slot.remote {
            // Not ours to kill: told to stop and let go; the queue takes its jobs back.
            let _ = slot.link.send(control_frame(&ToWorker::Abort));
            self.on_exit(worker_id, Err(std::io::Error::other(reason)));
            return;
        }
        slot.state = SlotState::Killed;
        slot.kill.notify_one();
        slot.kill_reason = Some(reason.clone());
        self.shared.forget_worker(worker_id);
        self.close_lane(worker_id);
        let failures =
            self.ledger
                .worker_lost(worker_id, blame, &format!("worker {worker_id} {reason}"));
        for failure in failures {
            self.record_failure(failure);
        }
    }

    fn on_exit(&mut self, worker_id: u64, status: std::io::Result<std::process::ExitStatus>) {
        self.close_lane(worker_id);
        let Some(slot) = self.workers.remove(&worker_id) else {
            return;
        };
        slot.link.close();
        self.shared.forget_worker(worker_id);
        let (code, signal) = match &status {
            Ok(status) => (status.code(), status.signal()),
            Err(_) => (None, None),
        };
        // A bye with jobs still in flight is a broken promise, handled as a crash.
        let said_bye = slot.said_bye && self.ledger.in_flight_on(worker_id) == 0;
        // Without a private channel its bye travels apart from its exit: a clean exit
        // code says the same.
        let clean_exit = !self.transport.private_channel() && code == Some(0);
        // From a shared queue a worker holds no job of the ledger's: one told to stop
        // (its join refused as the run ends, say) leaves however it exits.
        let told_to_stop = self.transport.is_queue() && slot.state == SlotState::Stopping;
        let expected = said_bye
            || clean_exit
            || told_to_stop
            || matches!(self.phase, Phase::Aborting(_) | Phase::Failed(_));
        if !expected {
            self.worker_crashes += 1;
            let reason = match (&slot.kill_reason, &slot.crash, &status) {
                (Some(reason), _, _) => format!("killed by the master: it {reason}"),
                (None, Some((reason, _)), _) => format!("crashed: {reason}"),
                (None, None, Ok(status)) => format!("exited unexpectedly ({status})"),
                (None, None, Err(e)) => format!("could not be waited for: {e}"),
            };
            log!(self, warn, worker_id, ?code, ?signal, "worker {reason}");
            if slot.state != SlotState::Killed {
                let blame = match &slot.crash {
                    Some((_, Some(job))) => Blame::Job(*job),
                    Some((_, None)) => Blame::Nobody,
                    None => Blame::Unknown,
                };
                let failures = self.ledger.worker_lost(
                    worker_id,
                    blame,
                    &format!("worker {worker_id} {reason}"),
                );
                for failure in failures {
                    self.record_failure(failure);
                }
            }
            if slot.answers == 0 && self.phase == Phase::Running {
                self.deaths_without_progress += 1;
                self.last_death = format!("worker {worker_id} {reason}");
            }
            self.push_event(Event::WorkerCrashed(WorkerCrash {
                worker_id,
                code,
                signal,
                reason,
            }));
        } else {
            log!(self, debug, worker_id, ?code, ?signal, "worker exited");
        }
        self.push_event(Event::WorkerExited(WorkerExit {
            worker_id,
            code,
            signal,
        }));
        let live = self.live_workers();
        if let Some(report) = self.stats.complete(&live) {
            self.publish_stats(report);
        }
        let limit = self.settings.crash_loop_limit.unwrap_or_else(|| {
            (2 * self.settings.worker_limit as u32).max(4) + self.settings.max_attempts
        });
        if self.deaths_without_progress >= limit && self.phase == Phase::Running {
            log!(
                self,
                error,
                "crash loop: {} workers died before finishing a job",
                self.deaths_without_progress
            );
            let error = Error::new(Kind::CrashLoop {
                deaths: self.deaths_without_progress,
                last: self.last_death.clone(),
                completed: self.ledger.completed(),
                failed: self.ledger.failed(),
            });
            self.fail(error);
        }
    }

    fn check_deadlines(&mut self) {
        let now = Instant::now();
        let silent: Vec<u64> = self
            .workers
            .iter()
            .filter(|(_, w)| w.remote && now - w.last_seen > REMOTE_SILENCE)
            .map(|(id, _)| *id)
            .collect();
        for worker_id in silent {
            let reason = format!("went silent for {REMOTE_SILENCE:?}");
            log!(self, warn, worker_id, "remote worker {reason}");
            // Not a crash (the network, or the server restarting): it may come back.
            if let Some(slot) = self.workers.get_mut(&worker_id) {
                slot.said_bye = true;
            }
            self.silent.insert(worker_id);
            self.on_exit(worker_id, Err(std::io::Error::other(reason)));
        }
        match self.phase {
            Phase::Running | Phase::Draining(_) => {}
            Phase::Finishing(deadline) | Phase::Aborting(deadline) | Phase::Failed(deadline) => {
                if now >= deadline {
                    let remote: Vec<u64> = self
                        .workers
                        .iter()
                        .filter(|(_, w)| w.remote)
                        .map(|(id, _)| *id)
                        .collect();
                    for slot in self.workers.values() {
                        slot.kill.notify_one();
                    }
                    // Not ours to kill: they are let go.
                    for worker_id in remote {
                        let reason = std::io::Error::other("did not stop in time");
                        self.on_exit(worker_id, Err(reason));
                    }
                }
                return;
            }
        }
        let mut overdue = Vec::new();
        for (&worker_id, slot) in &self.workers {
            match slot.state {
                SlotState::Starting(since) if now - since > self.settings.startup_timeout => {
                    overdue.push((
                        worker_id,
                        format!("did not start within {:?}", self.settings.startup_timeout),
                    ));
                }
                SlotState::Ready => {
                    let Some(timeout) = self.settings.job_timeout else {
                        continue;
                    };
                    if let Some((job_id, started)) = self.ledger.oldest_running(worker_id) {
                        if now - started > timeout {
                            overdue.push((
                                worker_id,
                                format!("timed out after {timeout:?} on job {job_id}"),
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        for (worker_id, reason) in overdue {
            log!(self, warn, worker_id, "killing worker: it {reason}");
            self.kill_worker(worker_id, reason, Blame::Oldest);
        }
    }

    /// Reacts to Ctrl-C and SIGTERM: the first drains, the second stops at once.
    fn check_signals(&mut self) {
        let Some(watch) = &mut self.signals else {
            return;
        };
        let (count, interrupt) = watch.caught();
        if count == self.signals_handled {
            return;
        }
        self.signals_handled = count;
        if count >= 2 {
            // A third signal then does what it would do without conductor.
            watch.release();
            self.stop_now(interrupt);
        } else {
            self.shutdown(interrupt);
        }
    }

    /// The graceful stop: no new jobs, and those in flight get the shutdown grace to
    /// finish. Asked twice, it stops at once.
    fn shutdown(&mut self, interrupt: Interrupt) {
        match self.phase {
            Phase::Running => {
                log!(
                    self,
                    warn,
                    ?interrupt,
                    in_flight = self.ledger.in_flight(),
                    "interrupted: no new jobs; waiting up to {:?} for those in flight",
                    self.settings.shutdown_grace
                );
                self.interrupted = Some(interrupt);
                self.close_lanes();
                self.phase = Phase::Draining(Instant::now() + self.settings.shutdown_grace);
                if self.transport.is_queue() {
                    // The queue keeps what no worker holds, for a resumed run: workers
                    // finish the jobs they hold, hand back the rest, and leave.
                    self.stop_workers();
                    self.phase = Phase::Finishing(Instant::now() + self.settings.shutdown_grace);
                }
                self.progress.note(&format!(
                    "{interrupt}: finishing the {} jobs in flight (up to {:?}); \
                     press Ctrl-C again to stop now",
                    self.ledger.in_flight(),
                    self.settings.shutdown_grace
                ));
            }
            Phase::Draining(_) => self.stop_now(interrupt),
            Phase::Finishing(_) if self.interrupted.is_some() => self.stop_now(interrupt),
            _ => {}
        }
    }

    /// Kills every worker now; the jobs they held are reported not run.
    fn stop_now(&mut self, interrupt: Interrupt) {
        self.interrupted.get_or_insert(interrupt);
        log!(
            self,
            warn,
            ?interrupt,
            "interrupted again: stopping workers now"
        );
        self.progress.note("stopping workers now");
        if !matches!(self.phase, Phase::Failed(_)) {
            self.phase = Phase::Aborting(Instant::now());
        }
        // Workers on other machines are not ours to kill: they are told.
        self.tell_all_to_abort();
        for slot in self.workers.values() {
            slot.kill.notify_one();
        }
    }

    /// Ends the drain once nothing is in flight, or kills what is still running when
    /// the grace is over.
    fn maybe_end_drain(&mut self) {
        let Phase::Draining(deadline) = self.phase else {
            return;
        };
        if self.ledger.in_flight() == 0 {
            log!(self, info, "in-flight jobs are done; stopping workers");
            self.stop_workers();
        } else if Instant::now() >= deadline {
            log!(
                self,
                warn,
                in_flight = self.ledger.in_flight(),
                "shutdown grace is over; stopping workers with jobs in flight"
            );
            self.phase = Phase::Aborting(Instant::now());
            for slot in self.workers.values() {
                slot.kill.notify_one();
            }
        }
    }

    /// Writes the journal lines of the jobs settled since the last call.
    fn write_journal(&mut self) {
        let Some(journal) = &mut self.journal else {
            return;
        };
        if let Err(e) = journal.flush() {
            let error = Error::journal(journal.path(), e);
            log!(self, error, "{error}");
            // A run that cannot record its progress would redo it all next time.
            self.journal = None;
            self.fail(error);
        }
    }

    /// Jobs of the source not run because an earlier run finished them.
    fn skipped(&self) -> u64 {
        self.journal.as_ref().map_or(0, Journal::skipped) + self.resumed
    }

    fn show_progress(&mut self) {
        let skipped = self.skipped();
        self.progress.update(
            self.ledger.completed() + self.ledger.failed(),
            self.ledger.failed(),
            skipped,
        );
    }

    fn abort(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        log!(self, warn, "aborting");
        self.phase = Phase::Aborting(Instant::now() + ABORT_GRACE);
        self.tell_all_to_abort();
    }

    /// Ends the run with an error; the jobs not run go into the error.
    fn fail(&mut self, error: Error) {
        if matches!(self.phase, Phase::Failed(_) | Phase::Aborting(_)) {
            return;
        }
        self.fatal = Some(error);
        self.phase = Phase::Failed(Instant::now() + ABORT_GRACE);
        self.tell_all_to_abort();
    }

    fn tell_all_to_abort(&mut self) {
        self.close_lanes();
        let abort = control_frame(&ToWorker::Abort);
        for slot in self.workers.values() {
            let _ = slot.link.send(abort.clone());
        }
    }

    fn live_workers(&self) -> BTreeSet<u64> {
        self.workers
            .iter()
            .filter(|(_, w)| matches!(w.state, SlotState::Ready | SlotState::Stopping))
            .map(|(id, _)| *id)
            .collect()
    }

    fn publish_stats(&mut self, report: crate::stats::StatsReport) {
        *self
            .shared
            .last_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(report.clone());
        self.push_event(Event::Stats(report));
    }

    fn push_event(&mut self, event: Event<J, O>) {
        if self.events.is_some() {
            self.pending_events.push(event);
        }
    }

    /// Hands the waiting events over if they have waited [`EVENT_LINGER`], are many,
    /// or `now`; otherwise returns when they will be due, if they just began waiting.
    async fn flush_events(&mut self, now: bool) -> Option<Instant> {
        if self.pending_events.is_empty() {
            return None;
        }
        if !now && self.pending_events.len() < EVENT_BATCH {
            match self.events_waiting_since {
                None => {
                    let since = Instant::now();
                    self.events_waiting_since = Some(since);
                    return Some(since + EVENT_LINGER);
                }
                Some(since) if since.elapsed() < EVENT_LINGER => return None,
                Some(_) => {}
            }
        }
        self.events_waiting_since = None;
        // The next batch will likely be as large: spare it the regrowth.
        let capacity = self.pending_events.len();
        let batch = std::mem::replace(&mut self.pending_events, Vec::with_capacity(capacity));
        let Some(events) = &self.events else {
            return None;
        };
        if events.send(batch).await.is_err() {
            // Nobody listens any more: stop producing events.
            self.events = None;
        }
        None
    }

    fn finish(mut self, started: Instant, source: Option<Jobs<J>>) -> Result<Report<J>, Error> {
        if let Some(report) = self.stats.take() {
            self.publish_stats(report);
        }
        self.write_journal();
        self.show_progress();
        self.progress.finish();
        let skipped = self.skipped();
        // Events not delivered by now are dropped; the report has what matters.
        self.pending_events.clear();
        self.shared.processing.store(false, Ordering::Relaxed);
        let not_run = self.ledger.drain_not_run();
        log!(
            self,
            info,
            submitted = self.ledger.submitted(),
            completed = self.ledger.completed(),
            failed = self.ledger.failed(),
            not_run = not_run.len(),
            "conductor ended"
        );
        if let Some(error) = self.fatal.take() {
            // The error is not generic over the job type, so it keeps jobs encoded; one
            // that cannot be encoded could never have run, and counts as failed.
            let encode = |job: &J| postcard::to_allocvec(job).map(Bytes::from);
            let mut failures = Vec::new();
            let mut not_run_encoded = Vec::new();
            for j in not_run {
                match encode(&j.job) {
                    Ok(bytes) => not_run_encoded.push((j.id, bytes)),
                    Err(e) => failures.push(EncodedFailure {
                        id: j.id,
                        job: None,
                        error: format!("could not encode the job: {e}"),
                        attempts: j.attempts,
                    }),
                }
            }
            for f in std::mem::take(&mut self.failures) {
                failures.push(EncodedFailure {
                    id: f.id,
                    job: encode(&f.job).ok(),
                    error: f.error,
                    attempts: f.attempts,
                });
            }
            failures.sort_by_key(|f| f.id);
            let error = error.with_not_run(not_run_encoded).with_failures(failures);
            return Err(error.with_unsubmitted(source));
        }
        Ok(Report {
            submitted: self.ledger.submitted(),
            completed: self.ledger.completed(),
            failures: std::mem::take(&mut self.failures),
            not_run: not_run.into_iter().map(|j| (j.id, j.job)).collect(),
            aborted: matches!(self.phase, Phase::Aborting(_)) && self.interrupted.is_none(),
            interrupted: self.interrupted,
            skipped,
            elapsed: started.elapsed(),
            workers_started: self.workers_started,
            worker_crashes: self.worker_crashes,
            unsubmitted: source,
        })
    }
}

impl<J, O> Drop for Master<J, O> {
    /// A run that ends early (its future dropped, a panic in the job source) still
    /// takes its workers down instead of leaving them waiting for jobs.
    fn drop(&mut self) {
        for (worker_id, slot) in &self.workers {
            slot.kill.notify_one();
            slot.link.close();
            self.shared.forget_worker(*worker_id);
        }
        self.shared.processing.store(false, Ordering::Relaxed);
    }
}

/// Forwards a worker's output line by line, above the progress bar.
async fn forward_output<R>(output: R, progress: Progress, to_stderr: bool)
where
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncBufReadExt;
    let mut output = tokio::io::BufReader::new(output);
    let mut line = Vec::new();
    loop {
        line.clear();
        match output.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => progress.print(&line, to_stderr),
        }
    }
}

async fn pull_stream<J>(source: &mut Option<Jobs<J>>, max: usize, into: &mut Vec<J>) -> bool {
    match source {
        Some(jobs) => jobs.pull_ready(max.max(1), into).await,
        None => std::future::pending().await,
    }
}

/// Reads one worker's frames until its channel closes.
async fn read_frames(
    worker_id: u64,
    read: OwnedReadHalf,
    shared: Arc<Shared>,
    link: WorkerLink,
    to_master: mpsc::UnboundedSender<FromWorker>,
    max_frame: usize,
) {
    route_frames(worker_id, read, &shared, link, to_master, max_frame).await;
    shared.forget_requests(worker_id);
}

/// Lookups and replies are answered right here, without the run loop; everything
/// else goes to it.
async fn route_frames(
    worker_id: u64,
    read: OwnedReadHalf,
    shared: &Shared,
    link: WorkerLink,
    to_master: mpsc::UnboundedSender<FromWorker>,
    max_frame: usize,
) {
    let send = |event| {
        let _ = to_master.send(FromWorker { worker_id, event });
    };
    let mut frames = FrameReader::new(read, max_frame);
    loop {
        let body = match frames.next().await {
            Ok(Some(body)) => body,
            Ok(None) => return,
            Err(e) => return send(WorkerEvent::Broken(e.to_string())),
        };
        if let Err(reason) = route_frame(worker_id, body, shared, &link, &send) {
            return send(WorkerEvent::Broken(reason));
        }
    }
}

/// Reads a worker's frames on a thread of its own, so that the worker's next staged
/// jobs leave the moment it answers, whatever the run loop is doing. Answers wait in
/// the lane for the run loop; anything else is passed on at once, after them. The
/// returned task ends when the thread has.
fn read_frames_on_thread(
    worker_id: u64,
    socket: std::os::unix::net::UnixStream,
    shared: Arc<Shared>,
    link: WorkerLink,
    lane: Arc<Lane>,
    to_master: mpsc::UnboundedSender<FromWorker>,
    max_frame: usize,
) -> Result<JoinHandle<()>, Error> {
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("conductor-lane-{worker_id}"))
        .spawn(move || {
            let send = |event| {
                let _ = to_master.send(FromWorker { worker_id, event });
            };
            let pass_held = || {
                for body in lane.take_results() {
                    send(WorkerEvent::Results(body));
                }
            };
            let route = |event: WorkerEvent| match event {
                WorkerEvent::Results(body) => match lane.answered(body) {
                    Answer::Forward(body) => {
                        pass_held();
                        send(WorkerEvent::Results(body));
                    }
                    Answer::Held => {}
                    Answer::CallRunLoop => send(WorkerEvent::LaneLow),
                },
                other => {
                    pass_held();
                    send(other);
                }
            };
            let mut frames = FrameReader::new(socket, max_frame);
            loop {
                let body = match frames.next_blocking() {
                    Ok(Some(body)) => body,
                    Ok(None) => break,
                    Err(e) => {
                        route(WorkerEvent::Broken(e.to_string()));
                        break;
                    }
                };
                if let Err(reason) = route_frame(worker_id, body, &shared, &link, &route) {
                    route(WorkerEvent::Broken(reason));
                    break;
                }
            }
            pass_held();
            shared.forget_requests(worker_id);
            let _ = done.send(());
        })
        .map_err(|e| Error::new(Kind::Spawn(e)))?;
    Ok(tokio::spawn(async move {
        let _ = finished.await;
    }))
}

/// Handles one frame body from a worker: answers lookups and replies on the spot and
/// hands everything else to the run loop. An error means the frame broke the protocol.
pub(crate) fn route_frame(
    worker_id: u64,
    body: Bytes,
    shared: &Shared,
    link: &WorkerLink,
    send: &dyn Fn(WorkerEvent),
) -> Result<(), String> {
    let payload = match Frame::parse(body) {
        Ok(Frame::Results(body)) => {
            send(WorkerEvent::Results(body));
            return Ok(());
        }
        Ok(Frame::Control(payload)) => payload,
        Ok(Frame::Jobs(_)) => return Err("a worker sent a jobs frame".into()),
        Err(e) => return Err(e.to_string()),
    };
    let message = decode_control::<ToMaster>(&payload).map_err(|e| e.to_string())?;
    match message {
        ToMaster::Ready {
            protocol,
            job_type,
            output_type,
            ..
        } => send(WorkerEvent::Ready {
            job_type,
            output_type,
            protocol,
        }),
        ToMaster::Refused { reason } => send(WorkerEvent::Refused(reason)),
        ToMaster::Request {
            request_id,
            request,
        } => {
            if let Some(event) = serve_request(worker_id, shared, link, request_id, request) {
                send(event);
            }
        }
        ToMaster::Reply { request_id, result } => shared.answer(request_id, result),
        ToMaster::Stats(roll) => send(WorkerEvent::Stats(roll)),
        ToMaster::Crash { reason, job } => send(WorkerEvent::Crash { reason, job }),
        ToMaster::Bye => send(WorkerEvent::Bye),
    }
    Ok(())
}

/// Answers a lookup on the spot; turns a custom command into an event.
fn serve_request(
    worker_id: u64,
    shared: &Shared,
    link: &WorkerLink,
    request_id: Option<u64>,
    request: Request,
) -> Option<WorkerEvent> {
    let reply = |result: Result<Vec<u8>, String>| {
        if let Some(request_id) = request_id {
            let _ = link.send(control_frame(&ToWorker::Reply { request_id, result }));
        }
    };
    match request {
        Request::Lookup { table, key } => {
            let max_frame = shared.max_frame.load(Ordering::Relaxed);
            let found = shared.lookups.get(&table, &key).and_then(|value| {
                // A value the worker could not receive is an error for it, not a crash.
                let reply = lookup::encode_reply(value);
                match reply.len() + 64 > max_frame {
                    true => Err(format!(
                        "the value of {} bytes in lookup table `{table}` exceeds the frame limit of {max_frame} bytes",
                        reply.len() - 1
                    )),
                    false => Ok(reply),
                }
            });
            reply(found);
            None
        }
        Request::SetLookup { table, key, value } => {
            shared.lookups.set(&table, key, value);
            reply(Ok(Vec::new()));
            None
        }
        Request::Message { cmd, data } => {
            let responder = request_id.map(|request_id| {
                let link = link.clone();
                Responder::new(&cmd, move |result| {
                    let _ = link.send(control_frame(&ToWorker::Reply { request_id, result }));
                })
            });
            Some(WorkerEvent::Message(Message::new(
                Some(worker_id),
                cmd,
                data,
                responder,
            )))
        }
    }
}

/// Waits for a worker process to end (or kills it when told), lets its reader finish
/// the frames it sent before exiting, then reports the exit.
async fn wait_for_exit(
    worker_id: u64,
    mut child: tokio::process::Child,
    reader: Option<JoinHandle<()>>,
    kill: Arc<Notify>,
    to_master: mpsc::UnboundedSender<FromWorker>,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        _ = kill.notified() => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    match reader {
        Some(reader) => {
            let abort = reader.abort_handle();
            if tokio::time::timeout(DRAIN_WAIT, reader).await.is_err() {
                abort.abort();
            }
        }
        // Its last frames (a crash reason) travel the transport: give them a moment.
        None => tokio::time::sleep(TRANSPORT_DRAIN).await,
    }
    let _ = to_master.send(FromWorker {
        worker_id,
        event: WorkerEvent::Exited(status),
    });
}
