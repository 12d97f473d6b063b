//! The master's own thread: a current-thread tokio runtime for the run loop and every
//! per-worker task.
//!
//! A results frame's way from a worker's socket to the run loop, and the next jobs
//! frame's way out, then never cross threads, whatever runtime the program uses: on a
//! multi-thread runtime each hand-off between tasks could wake another thread, which
//! costs more than the work itself when jobs are small. The program's own code keeps
//! its runtime; events and commands cross over through channels, a batch at a time.

use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::event::Event;
use crate::handle::Command;
use crate::jobs::Jobs;
use crate::master::Journal;
use crate::master::Master;
use crate::report::Report;
use crate::settings::Settings;

/// What a run needs, moved onto its thread.
pub(crate) struct RunInput<J, O> {
    pub settings: Settings,
    pub shared: Arc<crate::handle::Shared>,
    pub source: Jobs<J>,
    pub journal: Option<Journal<J>>,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub events: Option<mpsc::Sender<Vec<Event<J, O>>>>,
    /// The dashboard's socket, when one was asked for.
    pub dashboard: Option<crate::dashboard::Binding>,
    /// How jobs are laid out on the wire, traced from how the worker reads them.
    pub job_layout: crate::wire::Layout,
}

/// A run going on its own thread.
pub(crate) struct RunThread<J> {
    report: Option<oneshot::Receiver<Result<Report<J>, Error>>>,
    /// While held, the run goes on; dropped, it stops and its workers are killed.
    keep_going: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<J: Send + 'static> RunThread<J> {
    /// Starts the run. With `stop_when_dropped`, dropping the returned value stops it
    /// (a dropped `run()` future); otherwise it runs to its end on its own.
    pub fn start<O>(input: RunInput<J, O>, stop_when_dropped: bool) -> Result<Self, Error>
    where
        J: Serialize + Clone,
        O: DeserializeOwned + Send + 'static,
    {
        let (report_tx, report) = oneshot::channel();
        let (keep_going, stopped) = match stop_when_dropped {
            true => {
                let (tx, rx) = oneshot::channel::<()>();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                let e = crate::limits::explain(&e);
                Error::usage(format!("conductor cannot build its runtime: {e}"))
            })?;
        // The caller's subscriber, even one set for its thread or scope only, hears the
        // run: its own events and its workers'.
        let subscriber = tracing::dispatcher::get_default(|d| d.clone());
        let thread = std::thread::Builder::new()
            .name("conductor-master".into())
            .spawn(move || {
                let _subscriber = tracing::dispatcher::set_default(&subscriber);
                let conductor_id = input.shared.id.clone();
                let processing = input.shared.clone();
                let run = Master::<J, O>::run(input);
                let result = runtime.block_on(async move {
                    match stopped {
                        Some(stopped) => tokio::select! {
                            result = run => Some(result),
                            // The sender is never used: only its drop says stop.
                            _ = stopped => None,
                        },
                        None => Some(run.await),
                    }
                });
                // Also when the run failed before its master existed (a transport that
                // could not open): `start` said it was processing.
                processing
                    .processing
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                if let Some(result) = result {
                    // What a `#[conductor::main]` program's exit code will say.
                    let code = result.as_ref().map_or(1, |report| report.exit_code());
                    crate::exit_code::record(&conductor_id, code);
                    let _ = report_tx.send(result);
                }
            })
            .map_err(|e| {
                let e = crate::limits::explain(&e);
                Error::usage(format!("conductor cannot start its thread: {e}"))
            })?;
        Ok(RunThread {
            report: Some(report),
            keep_going,
            thread: Some(thread),
        })
    }
}

impl<J> RunThread<J> {
    /// Waits for the report.
    pub async fn wait(mut self) -> Result<Report<J>, Error> {
        let report = self.report.take().expect("waited for once");
        let result = match report.await {
            Ok(result) => result,
            Err(_) => Err(Error::usage(
                "the conductor's run loop failed (it panicked); see the panic message above",
            )),
        };
        // The run is over: nothing left to stop.
        self.keep_going = None;
        result
    }
}

impl<J> Drop for RunThread<J> {
    /// A run dropped before its end (its `run()` future dropped) stops now: once this
    /// returns, its workers are being killed and its handle says it is not processing.
    fn drop(&mut self) {
        if self.keep_going.take().is_some() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}
