//! A conductor that has started: its events, its handle, and its end.

use tokio::sync::mpsc;

use crate::error::Error;
use crate::event::Event;
use crate::handle::ConductorHandle;
use crate::master::RunThread;
use crate::report::Report;

/// A running conductor. Read its events with [`Running::next_event`] until it returns
/// `None`, then take the report with [`Running::wait`].
pub struct Running<J, O> {
    pub(crate) events: mpsc::Receiver<Vec<Event<J, O>>>,
    /// The batch being handed out, one event at a time, without copying it.
    pub(crate) buffered: std::vec::IntoIter<Event<J, O>>,
    pub(crate) handle: ConductorHandle,
    pub(crate) run: RunThread<J>,
}

impl<J, O> Running<J, O> {
    /// The next event, or `None` when the run has ended.
    pub async fn next_event(&mut self) -> Option<Event<J, O>> {
        loop {
            if let Some(event) = self.buffered.next() {
                return Some(event);
            }
            let batch = self.events.recv().await?;
            self.buffered = batch.into_iter();
        }
    }

    /// The handle for messages, lookups and abort while the run goes on.
    pub fn handle(&self) -> &ConductorHandle {
        &self.handle
    }

    /// Waits for the end of the run and returns its report. Events not read yet are
    /// dropped (messages among them get error replies).
    pub async fn wait(mut self) -> Result<Report<J>, Error> {
        self.buffered = Vec::new().into_iter();
        self.events.close();
        while self.events.recv().await.is_some() {}
        self.run.wait().await
    }
}
