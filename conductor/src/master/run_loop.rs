//! The run loop: each turn takes signals, jobs from the source, starts workers and
//! dispatches, hands events over, then waits for the next worker event, command, job
//! or tick. Each worker event goes to the part it concerns.

use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::mpsc;

use super::accounts::Accounts;
use super::ending::{Ending, Phase, SignalWatch};
use super::events::EventOut;
use super::feeding::{pull_stream, Feeding};
use super::stats_round::Aggregator;
use super::thread::RunInput;
use super::worker_logs::WorkerLogs;
use super::workers::Workers;
use super::{FromWorker, Master, WorkerEvent, RUN_QUEUE};
use crate::dashboard::Board;
use crate::error::Error;
use crate::handle::Command;
use crate::metrics::RunMetrics;
use crate::progress::Progress;
use crate::report::{Interrupt, Report};
use crate::transport::{self, Context};

/// How often deadlines (job timeouts, start-up, shutdown) are checked.
const TICK: Duration = Duration::from_millis(50);
/// How many waiting worker events are taken in one turn before dispatching again.
const EVENTS_PER_TURN: usize = 256;
/// The longest a master that ends waits for results its transport stored but has
/// not handed over yet.
const LAST_RESULTS_WAIT: Duration = Duration::from_secs(5);

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    pub(crate) async fn run(input: RunInput<J, O>) -> Result<Report<J>, Error> {
        let RunInput {
            mut settings,
            shared,
            source,
            journal,
            mut commands,
            events,
            dashboard,
            job_layout,
        } = input;
        let (inbox, mut inbox_rx) = mpsc::unbounded_channel();
        let worker_window = settings.dispatch.prefetch.unwrap_or(32);
        let context = Context {
            shared: shared.clone(),
            inbox: inbox.clone(),
            max_frame: settings.max_frame_bytes,
            max_attempts: settings.max_attempts,
            worker_window,
            queue_window: (worker_window * settings.worker_limit * 4).max(1024),
            logging: settings.logging,
        };
        let transport = match transport::open(&settings.backend, context).await {
            Ok(transport) => transport,
            Err(e) => return Err(e.with_unsubmitted(Some(source))),
        };
        // No frame may outgrow what the carriage takes.
        let max_frame = settings.max_frame_bytes.min(transport.frame_limit());
        settings.max_frame_bytes = max_frame;
        shared.max_frame.store(max_frame, Ordering::Relaxed);
        let signals = match settings.handle_signals {
            true => SignalWatch::install()
                .inspect_err(|e| {
                    tracing::warn!("conductor cannot watch for Ctrl-C and SIGTERM: {e}");
                })
                .ok(),
            false => None,
        };
        let total_jobs = settings.total_jobs.or_else(|| source.exact_len());
        let progress = Progress::start(settings.progress, total_jobs, &settings.worker_type);
        let mut master = Master {
            accounts: Accounts::new(
                settings.max_attempts,
                settings.retry,
                journal,
                transport.resumes_results(),
            ),
            workers: Workers::default(),
            feeding: Feeding::new(job_layout),
            events: EventOut::new(events),
            ending: Ending::new(signals),
            stats: Aggregator::default(),
            progress,
            worker_logs: WorkerLogs::default(),
            metrics: RunMetrics::new(&settings.worker_type, &shared.id),
            dashboard: Board::start(dashboard, shared.clone()),
            started: Instant::now(),
            total_jobs,
            transport,
            _inbox_open: inbox,
            settings,
            shared,
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
        let events_due = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(events_due);
        let recheck_due = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(recheck_due);
        loop {
            master.check_signals();
            // Checked here, not where a failure is recorded: a halt in the middle of a
            // dispatch would close lanes that are being filled.
            master.maybe_halt();
            master.drain_lanes();
            if master.ending.phase == Phase::Running {
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
                master.feeding.source_dry = source.is_none();
                master.dispatch();
            }
            master.maybe_end_drain();
            master.write_journal();
            master.show_progress();
            let ending = master.ending.phase != Phase::Running && master.workers.slots.is_empty();
            if let Some(due) = master.events.flush(ending).await {
                events_due.as_mut().reset(due.into());
            }
            // Only a running run dispatches: a timer left from before would fire forever.
            let recheck = master
                .feeding
                .recheck_at
                .filter(|_| master.ending.phase == Phase::Running);
            if let Some(due) = recheck {
                recheck_due.as_mut().reset(due.into());
            }
            if ending {
                // Results stored by workers that already left may still be on their way.
                master.read_last_results(&mut inbox_rx).await;
                // Their outputs and failures reach the caller too.
                master.events.flush(true).await;
                break;
            }
            let want_stream = master.ending.phase == Phase::Running && master.wanted_jobs() > 0;
            tokio::select! {
                event = inbox_rx.recv() => {
                    // The master holds a sender, so the channel never closes here.
                    if let Some(event) = event {
                        master.on_worker_event(event);
                    }
                    // Take what else has arrived before dispatching again.
                    for _ in 0..EVENTS_PER_TURN {
                        match inbox_rx.try_recv() {
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
                _ = &mut events_due, if master.events.waiting() => {}
                // A busy worker's running job is now old enough: dispatch looks again.
                _ = &mut recheck_due, if recheck.is_some() => {
                    master.feeding.recheck_at = None;
                }
                _ = tick.tick() => {
                    // Hear out what already arrived, so no deadline is judged on stale news.
                    while let Ok(event) = inbox_rx.try_recv() {
                        master.on_worker_event(event);
                    }
                    master.check_deadlines();
                }
            }
        }
        master.close_run().await;
        master.close_dashboard().await;
        master.finish(started, source)
    }

    /// Sends each worker event to the part it concerns.
    fn on_worker_event(&mut self, FromWorker { worker_id, event }: FromWorker) {
        match event {
            WorkerEvent::Join { request, answer } => {
                // A worker that gave up waiting must not leave a slot behind.
                if !answer.is_closed() {
                    let decision = self.on_join(request);
                    let _ = answer.send(decision);
                }
                return;
            }
            WorkerEvent::CaughtUp => {
                self.accounts.catching_up = false;
                return;
            }
            _ => {}
        }
        self.readmit_if_silent(worker_id);
        match self.workers.slots.get_mut(&worker_id) {
            Some(slot) => slot.last_seen = Instant::now(),
            // Results in a run queue count whoever sent them, even a worker long gone,
            // or one of a master that ran before this one.
            None if self.transport.queue_window() > 0
                && matches!(event, WorkerEvent::Results(_)) => {}
            None => return,
        }
        match event {
            WorkerEvent::Ready {
                job_type,
                output_type,
                protocol,
            } => self.on_ready(worker_id, job_type, output_type, protocol),
            WorkerEvent::Refused(reason) => self.on_refused(worker_id, reason),
            WorkerEvent::Results(body) => self.on_results(worker_id, body),
            WorkerEvent::LaneLow => {
                if let Some(lane) = self.workers.lane(worker_id) {
                    self.drain_lane(worker_id, &lane);
                }
            }
            WorkerEvent::Message(message) => self.events.message(message),
            WorkerEvent::Stats(roll) => {
                self.metrics.worker_roll(worker_id, &roll);
                let live = self.workers.live();
                if let Some(report) = self.stats.add(worker_id, roll, &live) {
                    self.publish_stats(report);
                }
            }
            WorkerEvent::Crash { reason, job } => {
                if let (Some(job), RUN_QUEUE) = (job, self.holder(worker_id)) {
                    self.on_crashed_in(worker_id, job, &reason);
                }
                if let Some(slot) = self.workers.slots.get_mut(&worker_id) {
                    slot.crash = Some((reason, job));
                }
            }
            WorkerEvent::Redelivered { ask, jobs } => self.on_redelivered(worker_id, ask, jobs),
            WorkerEvent::RunningAlone(job) => self.on_running_alone(worker_id, job),
            WorkerEvent::Bye => {
                if let Some(slot) = self.workers.slots.get_mut(&worker_id) {
                    slot.said_bye = true;
                    if slot.remote {
                        self.on_exit(worker_id, Ok(std::process::ExitStatus::from_raw(0)));
                    }
                }
            }
            WorkerEvent::Malformed(reason) => {
                log!(
                    self,
                    warn,
                    worker_id,
                    "a malformed message from the worker was dropped: {reason}"
                );
            }
            WorkerEvent::GaveBack(jobs) => self.on_gave_back(worker_id, &jobs),
            WorkerEvent::LimitReached(reason) => self.on_limit_reached(Some(worker_id), &reason),
            WorkerEvent::Broken(reason) => self.on_broken(worker_id, reason),
            WorkerEvent::Exited(status) => self.on_exit(worker_id, status),
            // Heard: `last_seen` is all a heartbeat changes.
            WorkerEvent::Log(record) => {
                let (accounts, holder) = (&self.accounts, self.holder(worker_id));
                self.worker_logs
                    .replay(worker_id, record, |job| accounts.attempt_of(holder, job));
            }
            WorkerEvent::Heartbeat | WorkerEvent::CaughtUp | WorkerEvent::Join { .. } => {}
        }
    }

    /// Before a run ends, reads every result its transport stored so far: a worker's
    /// last results can arrive after its goodbye, and would otherwise be reported as
    /// jobs that did not run.
    async fn read_last_results(&mut self, inbox: &mut mpsc::UnboundedReceiver<FromWorker>) {
        let Some(stored) = self.transport.results_stored().await else {
            return;
        };
        let deadline = tokio::time::Instant::now() + LAST_RESULTS_WAIT;
        while self.transport.results_read() < stored && self.accounts.ledger.in_flight() > 0 {
            match tokio::time::timeout_at(deadline, inbox.recv()).await {
                Ok(Some(event)) => self.on_worker_event(event),
                _ => break,
            }
        }
        while let Ok(event) = inbox.try_recv() {
            self.on_worker_event(event);
        }
        self.write_journal();
    }

    /// Ends the run on its transport: complete once every job is accounted for;
    /// a run that stopped early keeps what a resumed run needs.
    async fn close_run(&mut self) {
        let complete = matches!(self.ending.phase, Phase::Finishing(_))
            && self.ending.interrupted.is_none()
            && self.ending.fatal.is_none()
            && self.accounts.ledger.outstanding() == 0;
        self.transport.close(complete).await;
    }
}
