//! The master: starts workers, feeds them jobs, hears them out, and ends when every
//! job is accounted for.
//!
//! One task, the run loop, owns all the run's state on the master's own thread, so the
//! hot path takes no locks. A job travels: the caller's source →
//! `feeding/source.rs` → the [`ledger`] → `feeding/dispatch.rs` (a jobs frame down a
//! worker's link, through its lane, or into the run queue) → the worker → a results
//! frame, back as a [`WorkerEvent`] → [`settle`] → the ledger settles it → an
//! [`Event`](crate::Event) for the caller ([`events`]) → at the end the
//! [`Report`](crate::Report) ([`ending::finish`]).
//!
//! The parts, each owning its own state:
//!
//! - [`run_loop`]: the loop, and where each worker event goes;
//! - [`workers`]: worker slots and their lifecycle: start, ready, recycling, exits,
//!   the crash loop, deadlines, workers that join from elsewhere;
//! - [`feeding`]: jobs from the source into the ledger and out to workers: windows,
//!   lanes, the run queue, pacing;
//! - [`ledger`], [`accounts`] and [`settle`]: exactly-once accounting; [`backoff`]:
//!   jobs waiting for a retry;
//! - [`ending`]: how a run ends: signals, drain, abort, failure, the journal, the
//!   report;
//! - [`events`]: the hand-off of events to the caller; [`stats_round`]: workers'
//!   stats rolls gathered into reports; [`thread`]: the master's own thread and
//!   runtime; [`worker_logs`]: workers' `tracing` events and `log` records, replayed
//!   into the master's subscriber; [`snapshot`]: the run as the dashboard shows it.
//!   (Views of the run live beside the master: the
//!   progress bar in `crate::progress`, the figures for a `metrics` exporter in
//!   `crate::metrics`, the live page in `crate::dashboard`.)
//!
//! Invariants:
//!
//! - Every job the source yields is settled exactly once (completed, failed, or not
//!   run), by the ledger alone; a job is charged an attempt only when its worker dies
//!   while it was the one running.
//! - Only the run loop touches this state. Readers, lanes and transports talk to it
//!   through the inbox ([`FromWorker`]); handles through commands and [`Shared`].
//! - Nothing here blocks: every wait is a `select!` arm or a deadline checked on the
//!   tick.
//!
//! Must not import a backend: the master knows a transport only as [`Transport`].

/// Logs for this conductor, if its logging is on.
macro_rules! log {
    ($master:expr, $level:ident, $($arg:tt)+) => {
        if $master.settings.logging {
            tracing::$level!(conductor = %$master.shared.id, worker_type = %$master.settings.worker_type, $($arg)+);
        }
    };
}

mod accounts;
mod backoff;
mod ending;
mod events;
mod feeding;
mod in_flight;
mod ledger;

mod redelivery;
mod run_loop;
mod settle;
mod snapshot;
mod stats_round;
mod thread;
pub(in crate::master) mod worker_logs;
mod workers;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::dashboard::Board;
use crate::handle::Shared;
use crate::metrics::RunMetrics;
use crate::progress::Progress;
use crate::settings::Settings;
use crate::transport::worker_event::{FromWorker, WorkerEvent};
use crate::transport::Transport;
use accounts::Accounts;
use ending::Ending;
use events::EventOut;
use feeding::Feeding;
use stats_round::Aggregator;
use worker_logs::WorkerLogs;
use workers::Workers;

pub(crate) use ending::journal::{default_key, Journal, KeyFn};
pub(crate) use thread::{RunInput, RunThread};

/// The ledger's holder for jobs in a run queue (worker ids start at 1).
const RUN_QUEUE: u64 = 0;

/// A run in progress: the parts, and what they share.
pub(crate) struct Master<J, O> {
    settings: Settings,
    shared: Arc<Shared>,
    transport: Box<dyn Transport>,
    /// Held so that the inbox never closes while the run loop waits on it, whatever
    /// the transport keeps.
    _inbox_open: mpsc::UnboundedSender<FromWorker>,
    workers: Workers,
    accounts: Accounts<J>,
    feeding: Feeding,
    events: EventOut<J, O>,
    ending: Ending,
    stats: Aggregator,
    progress: Progress,
    worker_logs: WorkerLogs,
    metrics: RunMetrics,
    dashboard: Board,
    /// When the run began, and how many jobs it has if that is known: for the
    /// dashboard's clock and ETA.
    started: std::time::Instant,
    total_jobs: Option<u64>,
}

impl<J, O> Drop for Master<J, O> {
    /// A run that ends early (its future dropped, a panic in the job source) still
    /// takes its workers down instead of leaving them waiting for jobs.
    fn drop(&mut self) {
        for (worker_id, slot) in self.workers.slots.iter() {
            slot.kill.notify_one();
            slot.link.close();
            self.shared.forget_worker(*worker_id);
        }
        self.shared.processing.store(false, Ordering::Relaxed);
    }
}
