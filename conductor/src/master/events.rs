//! The hand-off of events to the caller: batched, so that the reader of events is not
//! woken for every job that ends alone, and dropped when no one listens.

use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::mpsc;

use super::Master;
use crate::event::Event;
use crate::message::Message;
use crate::stats::StatsReport;

/// The longest an event waits in the master before it is handed to the reader of
/// events. Handing over each one at once would wake the reader for every job that
/// ends alone (one job in flight per worker): most of the master's work then.
const EVENT_LINGER: Duration = Duration::from_millis(1);
/// Events are handed over at once when this many wait.
const EVENT_BATCH: usize = 2048;

/// Events on their way to the caller of [`crate::Conductor::start`]; none for
/// [`crate::Conductor::run`], which only wants the report.
pub(super) struct EventOut<J, O> {
    sender: Option<mpsc::Sender<Vec<Event<J, O>>>>,
    pending: Vec<Event<J, O>>,
    /// When the run loop first saw the oldest of `pending`.
    waiting_since: Option<Instant>,
}

impl<J, O> EventOut<J, O> {
    pub fn new(sender: Option<mpsc::Sender<Vec<Event<J, O>>>>) -> Self {
        EventOut {
            sender,
            pending: Vec::new(),
            waiting_since: None,
        }
    }

    /// Whether someone reads events (outputs are handed over only then).
    pub fn listening(&self) -> bool {
        self.sender.is_some()
    }

    /// Whether events wait for their linger to pass.
    pub fn waiting(&self) -> bool {
        self.waiting_since.is_some()
    }

    pub fn push(&mut self, event: Event<J, O>) {
        if self.sender.is_some() {
            self.pending.push(event);
        }
    }

    /// A custom command from a worker goes to the caller, or gets an error reply
    /// that says how to listen.
    pub fn message(&mut self, message: Message) {
        if self.sender.is_some() {
            self.pending.push(Event::Message(message));
        } else {
            let cmd = message.cmd().to_string();
            message.reply_error(format!(
                "command `{cmd}` was not handled: the master does not listen for messages \
                 (use Conductor::start and read its events)"
            ));
        }
    }

    /// Hands the waiting events over if they have waited [`EVENT_LINGER`], are many,
    /// or `now`; otherwise returns when they will be due, if they just began waiting.
    pub async fn flush(&mut self, now: bool) -> Option<Instant> {
        if self.pending.is_empty() {
            return None;
        }
        if !now && self.pending.len() < EVENT_BATCH {
            match self.waiting_since {
                None => {
                    let since = Instant::now();
                    self.waiting_since = Some(since);
                    return Some(since + EVENT_LINGER);
                }
                Some(since) if since.elapsed() < EVENT_LINGER => return None,
                Some(_) => {}
            }
        }
        self.waiting_since = None;
        // The next batch will likely be as large: spare it the regrowth.
        let capacity = self.pending.len();
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(capacity));
        let sender = self.sender.as_ref()?;
        if sender.send(batch).await.is_err() {
            // Nobody listens any more: stop producing events.
            self.sender = None;
        }
        None
    }

    /// Events not delivered by the end are dropped; the report has what matters.
    pub fn discard(&mut self) {
        self.pending.clear();
    }
}

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// A completed stats round: the handle's last stats, and an event.
    pub(super) fn publish_stats(&mut self, report: StatsReport) {
        self.metrics.report(&report);
        *self
            .shared
            .last_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(report.clone());
        self.events.push(Event::Stats(report));
    }
}
