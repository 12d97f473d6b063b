//! A worker's link: where the master writes that worker's frames, whatever carries
//! them.

use std::sync::Arc;

use bytes::Bytes;

/// The link is closed: the worker's channel failed or the worker is gone.
#[derive(Debug)]
pub(crate) struct Closed;

/// Where the master writes a worker's frames (length header included).
pub(crate) trait FrameSink: Send + Sync {
    fn send(&self, frame: Bytes) -> Result<(), Closed>;
    /// Stops sending: queued frames are dropped.
    fn close(&self);
}

/// The sending side of one worker's channel.
pub(crate) type WorkerLink = Arc<dyn FrameSink>;
