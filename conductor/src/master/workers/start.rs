//! Starting workers: as many as the limit and the work left call for, each with its
//! handshake; ready once it answers with the right types; replaced after
//! `max_jobs_per_worker`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};

use super::{SlotState, WorkerSlot};
use crate::error::Error;
use crate::event::Event;
use crate::master::Master;
use crate::settings::heartbeat_every;
use crate::transport::process::OutputSink;
use crate::transport::{Feed, WorkerSpec};
use crate::wire::{control_frame, level_number, ToWorker, WorkerConfig, PROTOCOL_VERSION};

/// How long the master waits before trying again to start a worker that failed to start.
const SPAWN_RETRY: Duration = Duration::from_millis(200);

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// Starts workers up to the limit, or up to the jobs left once the source is dry.
    pub(in crate::master) async fn spawn_workers(&mut self, source_open: bool) {
        let alive = self
            .workers
            .slots
            .values()
            .filter(|w| !w.remote && matches!(w.state, SlotState::Starting(_) | SlotState::Ready))
            .count();
        let desired = if source_open {
            self.settings.worker_limit
        } else {
            self.settings
                .worker_limit
                .min(self.accounts.ledger.outstanding())
        };
        let desired = desired.min(self.workers.cap.most(Instant::now()));
        if self
            .workers
            .spawn_retry_at
            .is_some_and(|at| Instant::now() < at)
        {
            return;
        }
        for up in alive..desired {
            if let Err(e) = self.spawn_worker().await {
                if let Some(reason) = e.exhausted_resource() {
                    self.on_limit_reached(None, &format!("could not start a worker: {reason}"));
                    return;
                }
                log!(self, error, "could not start a worker: {e}");
                // With other workers up, try again a little later; with none, nothing
                // would ever run.
                if up == 0 {
                    self.fail(e);
                }
                self.workers.spawn_retry_at = Some(Instant::now() + SPAWN_RETRY);
                return;
            }
        }
        self.workers.spawn_retry_at = None;
    }

    async fn spawn_worker(&mut self) -> Result<(), Error> {
        let worker_id = self.workers.reserve_id();
        // While a progress bar shows, workers' lines are printed above it.
        let output = self.progress.is_visible().then(|| {
            let progress = self.progress.clone();
            Arc::new(move |line: &[u8], to_stderr: bool| progress.print(line, to_stderr))
                as OutputSink
        });
        let spec = WorkerSpec {
            worker_id,
            worker_type: self.settings.worker_type.clone(),
            env: self.settings.worker_env.clone(),
            config: control_frame(&ToWorker::Config(self.worker_config(worker_id))),
            output,
            lane_window: self.lane_window(),
        };
        let started = self.transport.start_worker(spec).await?;
        self.workers.started += 1;
        log!(self, debug, worker_id, "worker process started");
        let slot = WorkerSlot::new(SlotState::Starting(Instant::now()), started, &self.settings);
        // Reachable by `send` and `broadcast` from now: what it is sent waits in its
        // channel, behind its handshake, and is handled as soon as its `init` is done.
        // (A worker that joins through a server listens only once it has joined.)
        if slot.feed == Feed::Own {
            self.shared
                .lock_links()
                .insert(worker_id, slot.link.clone());
        }
        self.workers.slots.insert(worker_id, slot);
        Ok(())
    }

    /// The window of a worker that may get a lane: a fixed `prefetch`. Not with a job
    /// timeout, which needs to know when each job really left, nor with recycling,
    /// which counts the jobs that left.
    pub(in crate::master) fn lane_window(&self) -> Option<usize> {
        let settings = &self.settings;
        if settings.job_timeout.is_some() || settings.max_jobs_per_worker.is_some() {
            return None;
        }
        settings.dispatch.prefetch
    }

    /// The settings a worker gets in its handshake.
    pub(in crate::master) fn worker_config(&self, worker_id: u64) -> WorkerConfig {
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
            heartbeat_ms: heartbeat_every(self.settings.liveness_timeout).as_millis() as u64,
            context: self.settings.context.clone(),
            // What the subscriber takes now: a worker sends nothing finer.
            log_level: level_number(tracing::level_filters::LevelFilter::current().into_level())
                .max(log_level_number(log::max_level())),
            time_jobs: crate::metrics::wanted(),
            // The master times its own workers' jobs; those of a run queue time theirs.
            job_timeout_ms: self
                .settings
                .job_timeout
                .filter(|_| self.transport.queue_window() > 0)
                .map(|timeout| timeout.as_millis().max(1) as u64),
        }
    }

    /// The worker answered its handshake: it takes jobs if it runs this run's types.
    pub(in crate::master) fn on_ready(
        &mut self,
        worker_id: u64,
        job_type: String,
        output_type: String,
        protocol: u32,
    ) {
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
        let Some(slot) = self.workers.slots.get_mut(&worker_id) else {
            return;
        };
        // A worker killed or stopped meanwhile stays out of the live set.
        if !matches!(slot.state, SlotState::Starting(_)) {
            if slot.state == SlotState::Stopping && slot.feed == Feed::RunQueue {
                // A stop sent before it listened on its subject was lost: again.
                let _ = slot.link.send(control_frame(&ToWorker::Stop));
            }
            return;
        }
        slot.state = SlotState::Ready;
        let learned = self
            .workers
            .slots
            .values()
            .filter(|w| w.state == SlotState::Ready)
            .max_by_key(|w| w.pacer.window())
            .map(|w| w.pacer.clone());
        let Some(slot) = self.workers.slots.get_mut(&worker_id) else {
            return;
        };
        if let Some(learned) = learned {
            slot.pacer.learn_from(&learned);
        }
        self.shared
            .lock_links()
            .insert(worker_id, slot.link.clone());
        log!(self, info, worker_id, "worker ready");
        self.events.push(Event::WorkerStarted { worker_id });
    }

    /// The worker cannot run this run's jobs. One of ours means the program is wrong,
    /// and the run fails; a stranger only leaves.
    pub(in crate::master) fn on_refused(&mut self, worker_id: u64, reason: String) {
        let message = format!("worker {worker_id} refused to start: {reason}");
        log!(self, error, "{message}");
        if self.workers.slots.get(&worker_id).is_some_and(|w| w.remote) {
            self.on_exit(worker_id, Err(std::io::Error::other(message)));
        } else {
            self.fail(Error::remote(message));
        }
    }

    /// Stops a worker that has run its `max_jobs_per_worker` once it holds no more
    /// jobs; a fresh one takes its place.
    pub(in crate::master) fn maybe_recycle(&mut self, worker_id: u64) {
        let Some(limit) = self.settings.max_jobs_per_worker else {
            return;
        };
        let idle = self.accounts.ledger.in_flight_on(worker_id) == 0;
        let Some(slot) = self.workers.slots.get_mut(&worker_id) else {
            return;
        };
        // From a run queue a worker pulls for itself: count what it answered (it
        // finishes the few jobs it holds before it stops). A worker from elsewhere
        // starts itself afresh, and joins again.
        let ran = match slot.feed {
            Feed::Own => slot.dispatched,
            Feed::RunQueue => slot.answers,
        };
        if slot.state != SlotState::Ready || ran < limit || !idle {
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
}

/// The most verbose level a `log` logger of the program takes, as a log level number.
fn log_level_number(filter: log::LevelFilter) -> u8 {
    // `log` counts the same way: off 0, error 1 ... trace 5.
    filter as u8
}
