//! How jobs and frames travel between the master and its workers.
//!
//! The master's run loop, the ledger, the protocol and the whole worker loop are the
//! same in every mode; a [`Transport`] decides only the carriage:
//!
//! - local (the default): each worker process gets a private socketpair; the master
//!   picks the worker for every batch of jobs and hears each worker on its own socket;
//! - NATS JetStream (feature `nats`): jobs go one message each into a work-queue
//!   stream that workers on any machine pull from; frames travel on subjects.
//!
//! A worker is reached through a [`FrameSink`] either way.

use std::sync::Arc;

use bytes::Bytes;

use crate::link::Closed;

/// Where the master writes a worker's frames (length header included).
pub(crate) trait FrameSink: Send + Sync {
    fn send(&self, frame: Bytes) -> Result<(), Closed>;
    /// Stops sending: queued frames are dropped.
    fn close(&self);
}

/// The carriage between a master and its workers.
pub(crate) trait Transport: Send + Sync {
    /// Whether jobs go into one queue that workers pull from (true), instead of down
    /// the channel of a worker the master picks (false).
    fn is_queue(&self) -> bool;

    /// Whether a local worker process gets a private socketpair to the master.
    fn private_channel(&self) -> bool;

    /// Extra environment for local worker process `worker_id`.
    fn worker_env(&self, worker_id: u64) -> Vec<(String, String)>;

    /// The sink for worker `worker_id`'s frames, when it has no private channel.
    fn link_for(&self, worker_id: u64) -> Option<Arc<dyn FrameSink>>;

    /// Puts a jobs frame on the shared queue (queue transports only).
    fn enqueue(&self, jobs: Bytes);

    /// Jobs the queue may hold unanswered at once.
    fn queue_window(&self) -> usize;
}

/// The default: private socketpairs, nothing shared.
pub(crate) struct LocalTransport;

impl Transport for LocalTransport {
    fn is_queue(&self) -> bool {
        false
    }

    fn private_channel(&self) -> bool {
        true
    }

    fn worker_env(&self, _worker_id: u64) -> Vec<(String, String)> {
        Vec::new()
    }

    fn link_for(&self, _worker_id: u64) -> Option<Arc<dyn FrameSink>> {
        None
    }

    fn enqueue(&self, _jobs: Bytes) {
        debug_assert!(false, "the local transport has no queue");
    }

    fn queue_window(&self) -> usize {
        0
    }
}
