//! Worker slots and their lifecycle: one slot per worker the run knows, from its start
//! (or its join from elsewhere) to its exit.
//!
//! - [`start`]: starting workers, the handshake, recycling after `max_jobs_per_worker`;
//! - [`exit`]: exits, kills, crashes, and the crash loop;
//! - [`deadlines`]: start-up, job timeouts, silence, and the end of a stop's grace;
//! - [`capped`]: fewer workers than asked, when the system refuses more;
//! - [`joined`]: workers that join from elsewhere, and come back after a silence.

mod capped;
mod deadlines;
mod exit;
mod joined;
mod start;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

use super::feeding::pacer::Pacer;
use crate::settings::Settings;
use crate::transport::lane::Lane;
use crate::transport::link::WorkerLink;
use crate::transport::{Feed, StartedWorker};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SlotState {
    Starting(Instant),
    Ready,
    Stopping,
    /// Killed by the master; its jobs are already back in the ledger.
    Killed,
}

pub(super) struct WorkerSlot {
    pub state: SlotState,
    pub link: WorkerLink,
    pub feed: Feed,
    /// Its next jobs, staged at the master's end (fixed windows only; see
    /// [`crate::transport::lane`]).
    pub lane: Option<Arc<Lane>>,
    pub kill: Arc<Notify>,
    pub pacer: Pacer,
    /// Jobs sent to it, for recycling after `max_jobs_per_worker`.
    pub dispatched: u64,
    pub answers: u64,
    pub said_bye: bool,
    pub crash: Option<(String, Option<u64>)>,
    pub kill_reason: Option<String>,
    /// Joined from elsewhere: no process of ours, so it cannot be killed or waited for.
    pub remote: bool,
    /// When the master last heard from it: any frame, a heartbeat at least.
    pub last_seen: Instant,
    /// Asked to give back the jobs it has not started; the answer has not come.
    pub giving_back: bool,
    /// Its (answers, dispatched) when last asked: asked again only once they change.
    pub asked_back: Option<(u64, u64)>,
}

impl WorkerSlot {
    fn new(state: SlotState, started: StartedWorker, settings: &Settings) -> Self {
        WorkerSlot {
            state,
            link: started.link,
            feed: started.feed,
            lane: started.lane,
            kill: started.kill,
            pacer: Pacer::new(settings.dispatch),
            dispatched: 0,
            answers: 0,
            said_bye: false,
            crash: None,
            kill_reason: None,
            remote: false,
            last_seen: Instant::now(),
            giving_back: false,
            asked_back: None,
        }
    }

    /// A worker on another machine: no process of ours to kill or wait for; it pulls
    /// from the run queue.
    fn remote(state: SlotState, link: WorkerLink, settings: &Settings) -> Self {
        let started = StartedWorker {
            link,
            feed: Feed::RunQueue,
            lane: None,
            kill: Arc::new(Notify::new()),
        };
        WorkerSlot {
            remote: true,
            ..WorkerSlot::new(state, started, settings)
        }
    }
}

/// Every worker the run knows, and what the run counts about them.
pub(super) struct Workers {
    pub slots: BTreeMap<u64, WorkerSlot>,
    /// Ids increase for the life of the run: a replacement gets a new one.
    next_id: u64,
    started: u64,
    crashes: u64,
    /// Workers that died without finishing anything since the last progress.
    deaths_without_progress: u32,
    last_death: String,
    /// When to try again after a worker failed to start.
    spawn_retry_at: Option<Instant>,
    /// Remote workers taken for gone after a silence; they may come back.
    silent: BTreeSet<u64>,
    /// The most workers of ours the system lets this run have, once a start was
    /// refused a process, a thread or a file.
    cap: capped::WorkerCap,
    /// When deadlines were last checked: a long gap means the master itself was
    /// stopped or starved, not its workers.
    deadlines_checked: Option<Instant>,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            slots: BTreeMap::new(),
            next_id: 1,
            started: 0,
            crashes: 0,
            deaths_without_progress: 0,
            last_death: String::new(),
            spawn_retry_at: None,
            silent: BTreeSet::new(),
            cap: capped::WorkerCap::default(),
            deadlines_checked: None,
        }
    }
}

impl Workers {
    /// A job was settled: workers that die from now on are not a crash loop yet.
    pub fn progressed(&mut self) {
        self.deaths_without_progress = 0;
    }

    /// Workers started (or joined) so far.
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Workers that crashed so far.
    pub fn crashes(&self) -> u64 {
        self.crashes
    }

    /// A new worker id, never given before in this run.
    fn reserve_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The workers a stats round waits for.
    pub fn live(&self) -> BTreeSet<u64> {
        self.slots
            .iter()
            .filter(|(_, w)| matches!(w.state, SlotState::Ready | SlotState::Stopping))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Workers that take jobs from a run queue now (at least one, for sizing).
    pub fn pulling(&self) -> usize {
        self.slots
            .values()
            .filter(|w| w.state == SlotState::Ready && w.feed == Feed::RunQueue)
            .count()
            .max(1)
    }

    /// Workers that take jobs from the master now, each fed its own.
    pub fn ready_to_feed(&self) -> Vec<u64> {
        self.slots
            .iter()
            .filter(|(_, w)| w.state == SlotState::Ready && w.feed == Feed::Own)
            .map(|(id, _)| *id)
            .collect()
    }

    /// A worker's lane, if it has one.
    pub fn lane(&self, worker_id: u64) -> Option<Arc<Lane>> {
        self.slots.get(&worker_id).and_then(|w| w.lane.clone())
    }

    /// Every worker with a lane, and its lane.
    pub fn lanes(&self) -> Vec<(u64, Arc<Lane>)> {
        self.slots
            .iter()
            .filter_map(|(id, w)| Some((*id, w.lane.clone()?)))
            .collect()
    }
}
