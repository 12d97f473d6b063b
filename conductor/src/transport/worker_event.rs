//! What a transport tells the run loop about a worker: the frames it sent, turned into
//! events, and what became of its process.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::join::{Admission, Joining};
use crate::message::Message;
use crate::wire::{LogRecord, StatsRoll};

/// One event from (or about) worker `worker_id`. Events of a worker reach the run loop
/// in the order its frames were sent; its `Exited` comes after its last frame.
pub(crate) struct FromWorker {
    pub worker_id: u64,
    pub event: WorkerEvent,
}

pub(crate) enum WorkerEvent {
    Ready {
        job_type: String,
        output_type: String,
        protocol: u32,
    },
    Refused(String),
    Results(Bytes),
    /// Answers wait in the worker's lane and its staged jobs are running low.
    LaneLow,
    Message(Message),
    Stats(StatsRoll),
    Crash {
        reason: String,
        job: Option<u64>,
    },
    Bye,
    /// The worker sent back these jobs, received and never to be started there.
    GaveBack(Vec<u64>),
    /// The worker's process is alive (a thread beside its job says so).
    Heartbeat,
    /// A `tracing` event or `log` record from the worker's process.
    Log(LogRecord),
    /// The system refused the worker a thread or a file; it exits without starting.
    LimitReached(String),
    /// The worker broke the protocol; its reader stopped.
    Broken(String),
    Exited(std::io::Result<std::process::ExitStatus>),
    // Sent only by transports that store results or join workers from elsewhere.
    /// The results an earlier master of this run had stored are all read.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    CaughtUp,
    /// A message from a worker that joined from elsewhere made no sense; it was dropped.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    Malformed(String),
    /// Jobs of a run queue's message came again to this worker: which are to run?
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    Redelivered {
        ask: u64,
        jobs: Vec<u64>,
    },
    /// A job of a message that came again runs alone on this worker now.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    RunningAlone(u64),
    /// A worker asks to join the run from elsewhere; the run loop decides.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    Join {
        request: Joining,
        answer: oneshot::Sender<Result<Admission, String>>,
    },
}
