//! How a run ends: the source runs dry and every job is settled (finish), a first
//! Ctrl-C, SIGTERM or `shutdown()` (drain: no new jobs, those in flight get a grace),
//! a second one or `abort()` (stop now), or an error (fail). Every way ends in
//! [`finish`], which turns the books into the report.
//!
//! - [`signals`]: Ctrl-C and SIGTERM while a run is going;
//! - [`journal`]: the record of settled jobs that lets a rerun skip them;
//! - [`finish`]: the report, or the error with the jobs that did not run.

pub(super) mod finish;
pub(super) mod journal;
mod signals;

use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};

use super::workers::SlotState;
use super::Master;
use crate::error::Error;
use crate::report::Interrupt;
use crate::wire::{control_frame, ToWorker};
pub(super) use signals::SignalWatch;

/// How long aborted workers get to exit before they are killed.
const ABORT_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
    Running,
    /// Interrupted: no new jobs; waiting until the deadline for those in flight.
    Draining(Instant),
    /// Workers were asked to stop; those left at the deadline are killed.
    Finishing(Instant),
    Aborting(Instant),
    Failed(Instant),
}

/// Where the run is on its way to the end, and why.
pub(super) struct Ending {
    pub phase: Phase,
    /// The error the run ends with, if it fails.
    pub fatal: Option<Error>,
    pub interrupted: Option<Interrupt>,
    signals: Option<SignalWatch>,
    /// Signals this run has acted on.
    signals_handled: u32,
}

impl Ending {
    pub fn new(signals: Option<SignalWatch>) -> Self {
        Ending {
            phase: Phase::Running,
            fatal: None,
            interrupted: None,
            signals,
            signals_handled: 0,
        }
    }
}

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// Starts the shutdown once the source is dry and every job is settled.
    pub(super) fn maybe_finish(&mut self, source_done: bool) {
        if !source_done || self.accounts.ledger.outstanding() > 0 {
            return;
        }
        log!(self, info, "all jobs are accounted for; stopping workers");
        self.stop_workers();
    }

    /// Asks every worker to exit once it has answered what it holds.
    fn stop_workers(&mut self) {
        self.close_lanes();
        self.ending.phase = Phase::Finishing(Instant::now() + self.settings.stop_grace);
        let stop = control_frame(&ToWorker::Stop);
        for slot in self.workers.slots.values_mut() {
            if matches!(slot.state, SlotState::Starting(_) | SlotState::Ready) {
                slot.state = SlotState::Stopping;
                let _ = slot.link.send(stop.clone());
            }
        }
    }

    /// Reacts to Ctrl-C and SIGTERM: the first drains, the second stops at once.
    pub(super) fn check_signals(&mut self) {
        let Some(watch) = &mut self.ending.signals else {
            return;
        };
        let (count, interrupt) = watch.caught();
        if count == self.ending.signals_handled {
            return;
        }
        self.ending.signals_handled = count;
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
    pub(super) fn shutdown(&mut self, interrupt: Interrupt) {
        match self.ending.phase {
            Phase::Running => {
                let in_flight = self.accounts.ledger.in_flight();
                let grace = self.settings.shutdown_grace;
                log!(
                    self,
                    warn,
                    ?interrupt,
                    in_flight,
                    "interrupted: no new jobs; waiting up to {grace:?} for those in flight"
                );
                self.ending.interrupted = Some(interrupt);
                self.close_lanes();
                self.ending.phase = Phase::Draining(Instant::now() + grace);
                if self.transport.queue_window() > 0 {
                    // The run queue keeps what no worker holds, for a resumed run:
                    // workers finish the jobs they hold, hand back the rest, and leave.
                    self.stop_workers();
                    self.ending.phase = Phase::Finishing(Instant::now() + grace);
                }
                // Staged jobs came back when the lanes closed: they are not in flight.
                let in_flight = self.accounts.ledger.in_flight();
                let again = match interrupt {
                    Interrupt::Halted => "",
                    _ => "; press Ctrl-C again to stop now",
                };
                self.progress.note(&format!(
                    "{interrupt}: finishing the {in_flight} jobs in flight (up to {grace:?}){again}"
                ));
            }
            Phase::Draining(_) => self.stop_now(interrupt),
            Phase::Finishing(_) if self.ending.interrupted.is_some() => self.stop_now(interrupt),
            _ => {}
        }
    }

    /// Stops taking jobs when the halt policy says too many failed: the jobs running
    /// finish, or are stopped with it [`Halt::kill_running`](crate::Halt::kill_running).
    pub(in crate::master) fn maybe_halt(&mut self) {
        let Some(halt) = self.settings.halt else {
            return;
        };
        let (failed, completed) = (
            self.accounts.ledger.failed(),
            self.accounts.ledger.completed(),
        );
        if self.ending.phase != Phase::Running || !halt.reached(failed, failed + completed) {
            return;
        }
        log!(
            self,
            warn,
            failed,
            completed,
            "halting: too many jobs failed"
        );
        match halt.kill_running {
            true => self.stop_now(Interrupt::Halted),
            false => self.shutdown(Interrupt::Halted),
        }
    }

    /// Kills every worker now; the jobs they held are reported not run.
    fn stop_now(&mut self, interrupt: Interrupt) {
        self.ending.interrupted.get_or_insert(interrupt);
        log!(
            self,
            warn,
            ?interrupt,
            "interrupted again: stopping workers now"
        );
        self.progress.note("stopping workers now");
        if !matches!(self.ending.phase, Phase::Failed(_)) {
            self.ending.phase = Phase::Aborting(Instant::now());
        }
        // Workers on other machines are not ours to kill: they are told.
        self.tell_all_to_abort();
        for slot in self.workers.slots.values() {
            slot.kill.notify_one();
        }
    }

    /// Ends the drain once nothing is in flight, or kills what is still running when
    /// the grace is over.
    pub(super) fn maybe_end_drain(&mut self) {
        let Phase::Draining(deadline) = self.ending.phase else {
            return;
        };
        let in_flight = self.accounts.ledger.in_flight();
        if in_flight == 0 {
            log!(self, info, "in-flight jobs are done; stopping workers");
            self.stop_workers();
        } else if Instant::now() >= deadline {
            log!(
                self,
                warn,
                in_flight,
                "shutdown grace is over; stopping workers with jobs in flight"
            );
            self.ending.phase = Phase::Aborting(Instant::now());
            for slot in self.workers.slots.values() {
                slot.kill.notify_one();
            }
        }
    }

    pub(super) fn abort(&mut self) {
        if self.ending.phase != Phase::Running {
            return;
        }
        log!(self, warn, "aborting");
        self.ending.phase = Phase::Aborting(Instant::now() + ABORT_GRACE);
        self.tell_all_to_abort();
    }

    /// Ends the run with an error; the jobs not run go into the error.
    pub(super) fn fail(&mut self, error: Error) {
        if matches!(self.ending.phase, Phase::Failed(_) | Phase::Aborting(_)) {
            return;
        }
        self.ending.fatal = Some(error);
        self.ending.phase = Phase::Failed(Instant::now() + ABORT_GRACE);
        self.tell_all_to_abort();
    }

    fn tell_all_to_abort(&mut self) {
        self.close_lanes();
        let abort = control_frame(&ToWorker::Abort);
        for slot in self.workers.slots.values() {
            let _ = slot.link.send(abort.clone());
        }
    }
}
