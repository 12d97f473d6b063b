//! The dashboard's interface without the feature `dashboard`: asking for one is an
//! error, and the master's snapshots are never made.

use std::sync::Arc;
use std::time::Instant;

use super::Snapshot;
use crate::error::Error;
use crate::handle::Shared;

/// Never made: there is nothing to bind without the feature.
pub(crate) enum Binding {}

pub(crate) fn bind(_address: &str, _shared: &Shared) -> Result<Binding, Error> {
    Err(Error::usage(
        "the dashboard needs conductor's `dashboard` feature",
    ))
}

/// `CONDUCTOR_DASHBOARD` in a program built without the feature: said, and ignored,
/// so that the variable never breaks a program that cannot serve a dashboard.
pub(crate) fn bind_for_env(address: &str, _shared: &Shared) -> Option<Binding> {
    tracing::warn!(
        "CONDUCTOR_DASHBOARD={address} is ignored: this program is built without \
         conductor's `dashboard` feature"
    );
    None
}

/// Without a dashboard: no snapshot is ever due.
pub(crate) struct Board;

impl Board {
    pub fn start(_binding: Option<Binding>, _shared: Arc<Shared>) -> Board {
        Board
    }
    pub fn is_served(&self) -> bool {
        false
    }
    pub fn due(&self, _now: Instant) -> bool {
        false
    }
    pub fn publish(&mut self, _snapshot: Snapshot) {}
    pub async fn close(&mut self, _snapshot: Snapshot) {}
}
