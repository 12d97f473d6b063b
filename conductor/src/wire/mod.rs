//! The wire: frames and messages between the master and a worker.
//!
//! Every frame is a little-endian `u32` body length followed by the body; the first
//! byte of the body says what it holds. Control messages are serde enums encoded with
//! postcard; the caller's values (jobs, outputs, lookups, messages) with
//! [`value`], which takes every serde shape. Jobs and results, the hot path, travel as batches in a flat layout that
//! both sides walk without allocating per job:
//!
//! ```text
//! jobs:    [kind=2] ( [job id] [len] [len bytes: the job, `value`] )*
//! results: [kind=3] ( [job id] [u8 ok] [len] [len bytes: output or error] )*
//! ```
//!
//! where ids and lengths are LEB128 varints ([`varint`]).
//!
//! Several jobs may be in flight per worker and several jobs ride in one frame; a
//! worker answers in the order it received its jobs.
//!
//! - [`frame`]: a frame's kinds, and reading frames off a channel;
//! - [`control`]: the control messages each way, and the handshake's settings;
//! - [`batch_writer`]: many jobs or results encoded into one frame;
//! - [`batch_reader`]: walking a batch's entries in place;
//! - [`value`]: the caller's values as bytes;
//! - [`layout`]: which structs of a job type travel as arrays, not maps.
//!
//! This folder knows bytes only: nothing here knows a master, a worker or a transport.

mod batch_reader;
mod batch_writer;
mod control;
mod frame;
mod layout;
mod msgpack;
#[cfg(test)]
mod tests;
pub(crate) mod value;
mod varint;

use std::io;

pub(crate) use batch_reader::{FailedAs, JobQueue, ResultsReader};
pub(crate) use batch_writer::{BatchWriter, MAX_RESULT_HEADER};
pub(crate) use control::{
    control_frame, decode_control, duration_bucket, level_number, level_of_number, LogRecord,
    LogValue, ReplyResult, Request, StatsRoll, ToMaster, ToWorker, WorkerConfig, DURATION_BUCKETS,
    EXACT_NANOS, TIMED_OUT,
};
pub(crate) use frame::{read_frame, Frame, FrameReader};
pub(crate) use layout::Layout;

/// Bumped whenever a frame or message changes shape.
pub const PROTOCOL_VERSION: u32 = 7;

/// A worker reads its handshake before it knows the run's frame limit: the
/// handshake (and the context it carries) must fit in this.
pub(crate) const MAX_HANDSHAKE_BYTES: usize = 1 << 20;

/// Frames larger than this are refused unless the conductor sets another limit.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 << 20;

pub(crate) const KIND_CONTROL: u8 = 1;
const KIND_JOBS: u8 = 2;
pub(crate) const KIND_RESULTS: u8 = 3;

/// The whole jobs frame around a jobs frame's `body` (what follows its kind byte), as
/// a run queue's message carries it.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) fn jobs_frame(body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(body.len() + 5);
    frame.extend_from_slice(&(body.len() as u32 + 1).to_le_bytes());
    frame.push(KIND_JOBS);
    frame.extend_from_slice(body);
    frame
}

/// The ids of the jobs in a jobs frame's `body`, in order.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) fn job_ids(body: bytes::Bytes) -> Result<Vec<u64>, ProtocolError> {
    let mut queue = JobQueue::default();
    queue.push_frame(body);
    queue.take_unstarted()
}

/// What can go wrong with a frame: the peer broke the protocol.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("channel I/O failed: {0}")]
    Io(#[from] io::Error),
}

/// Refuses, where it is sent, a message that the other side would refuse as too large.
pub(crate) fn fits_in_frame(what: &str, len: usize, max_frame: usize) -> Result<(), crate::Error> {
    if len > max_frame {
        return Err(crate::Error::usage(format!(
            "{what} of {len} bytes exceeds the frame limit of {max_frame} bytes"
        )));
    }
    Ok(())
}
