//! The master's side of the dashboard: the address bound when the run is prepared,
//! and the snapshots the run loop hands over while the run lasts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::server::{self, Bound};
use super::Snapshot;
use crate::error::Error;
use crate::handle::Shared;

/// How often the master makes a snapshot.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(250);
/// How long the end of a run waits for watching pages to receive its last snapshot.
const LAST_WORD: Duration = Duration::from_secs(1);

/// The dashboard's socket, bound when the run is prepared (so that a taken port is an
/// error of `start()`), served once the run's thread is up.
pub(crate) struct Binding(Bound);

/// Binds the dashboard to `address` (`host:port`, or a port of 127.0.0.1) and prints
/// where it is, with its token: the operator must see it, whatever the logging.
pub(crate) fn bind(address: &str, shared: &Shared) -> Result<Binding, Error> {
    let bound = Bound::new(address)?;
    let url = bound.url();
    crate::progress::above_bars(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "conductor dashboard of `{}`: {url}",
            shared.worker_type
        );
    });
    let _ = shared.dashboard_url.set(url);
    Ok(Binding(bound))
}

/// Binds the dashboard that `CONDUCTOR_DASHBOARD` asks for. The variable reaches
/// every conductor of the program (and programs it starts): a second one that finds
/// the port taken serves on a free port instead, and one that cannot serve at all
/// says why and runs without.
pub(crate) fn bind_for_env(address: &str, shared: &Shared) -> Option<Binding> {
    let bound = bind(address, shared).or_else(|first| {
        let host = address
            .rsplit_once(':')
            .map_or("127.0.0.1", |(host, _)| host);
        bind(&format!("{host}:0"), shared).map_err(|_| first)
    });
    match bound {
        Ok(binding) => Some(binding),
        Err(e) => {
            tracing::warn!("{e}; the run goes on without its dashboard");
            None
        }
    }
}

/// Where the run loop's snapshots go.
pub(crate) struct Board {
    server: Option<Arc<server::State>>,
    last: Option<Instant>,
}

impl Board {
    /// Starts serving `binding`, if any, on the current (the run's) runtime.
    pub fn start(binding: Option<Binding>, shared: Arc<Shared>) -> Board {
        Board {
            server: binding.map(|Binding(bound)| server::serve(bound, shared)),
            last: None,
        }
    }

    /// Whether a dashboard is served.
    pub fn is_served(&self) -> bool {
        self.server.is_some()
    }

    /// Whether a snapshot is wanted now: there is a dashboard, and the last is old.
    pub fn due(&self, now: Instant) -> bool {
        self.server.is_some() && self.last.is_none_or(|last| now >= last + SNAPSHOT_EVERY)
    }

    pub fn publish(&mut self, snapshot: Snapshot) {
        self.last = Some(Instant::now());
        if let Some(server) = &self.server {
            server.publish(&snapshot);
        }
    }

    /// Shows the last snapshot, gives the pages watching a moment to receive it, and
    /// closes the port: the server lives as long as the run.
    pub async fn close(&mut self, snapshot: Snapshot) {
        self.publish(snapshot);
        if let Some(server) = &self.server {
            server.close(LAST_WORD).await;
        }
    }
}
