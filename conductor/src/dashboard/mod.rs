//! The live dashboard (feature `dashboard`): one page served by the master, with no
//! build step and nothing fetched from elsewhere, updated live over server-sent
//! events. It shows progress and ETA, throughput over time, each worker with its state
//! and current job, recent failures, and job code's counters; its buttons stop the run
//! gracefully or abort it.
//!
//! - [`snapshot`]: what the page shows, made by the master a few times a second;
//! - `board`: the master's side: binding the address, then taking snapshots to show;
//! - `server`: the HTTP server, on the master's own thread and runtime, so it lives
//!   exactly as long as the run; `page.html`: the page, embedded in the binary;
//! - `off`: the same interface without the feature, doing nothing.
//!
//! Reading the run's data and pressing its buttons take a token that the master makes
//! at start and prints with the address: anyone else who can reach the port gets the
//! empty page and nothing more. The address is 127.0.0.1 unless the program says
//! otherwise.
//!
//! Must not import the master: it is a view of the run, fed by the master.

pub(crate) mod snapshot;

#[cfg(feature = "dashboard")]
mod board;
#[cfg(feature = "dashboard")]
mod server;
#[cfg(feature = "dashboard")]
pub(crate) use board::{bind, bind_for_env, Binding, Board};

#[cfg(not(feature = "dashboard"))]
mod off;
#[cfg(not(feature = "dashboard"))]
pub(crate) use off::{bind, bind_for_env, Binding, Board};

pub(crate) use snapshot::Snapshot;

/// The environment variable that turns the dashboard on, with an address or a port.
pub(crate) const ENV_DASHBOARD: &str = "CONDUCTOR_DASHBOARD";
