//! Control messages: the handshake, requests and replies, stats, stop and abort.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{ProtocolError, KIND_CONTROL};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerConfig {
    pub protocol: u32,
    pub worker_type: String,
    pub job_type: String,
    pub output_type: String,
    pub worker_id: u64,
    pub master_id: String,
    pub stats_interval_ms: u64,
    pub max_frame_bytes: u64,
    pub logging: bool,
    pub crash_on_job_error: bool,
    /// How often the worker says it is alive, whatever its job does.
    pub heartbeat_ms: u64,
    /// The conductor's context value, encoded (`Conductor::context`).
    pub context: Option<Vec<u8>>,
}

/// The answer to a request: the encoded reply, or the error the other side gave.
pub type ReplyResult = Result<Vec<u8>, String>;

/// Control messages from the master to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker {
    Config(WorkerConfig),
    /// A custom command; `request_id` is set when the master waits for a reply.
    Message {
        cmd: String,
        data: Vec<u8>,
        request_id: Option<u64>,
    },
    /// The answer to a worker's request.
    Reply {
        request_id: u64,
        result: Result<Vec<u8>, String>,
    },
    /// No more jobs will come: finish the ones received, roll stats, say bye, exit.
    Stop,
    /// Exit now, without finishing anything.
    Abort,
    /// Send back every job received and not yet started: a worker elsewhere is idle.
    GiveBack,
}

/// Control messages from a worker to its master.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToMaster {
    /// The handshake answer: what this worker runs.
    Ready {
        protocol: u32,
        worker_type: String,
        job_type: String,
        output_type: String,
    },
    /// The worker cannot run what the master asked for, and says why before exiting.
    Refused {
        reason: String,
    },
    /// A request from job code; `request_id` is set when the worker waits for a reply.
    Request {
        request_id: Option<u64>,
        request: Request,
    },
    /// The answer to a master's request.
    Reply {
        request_id: u64,
        result: Result<Vec<u8>, String>,
    },
    Stats(StatsRoll),
    /// The worker is about to exit with the crash code; `job` is the job it was running.
    Crash {
        reason: String,
        job: Option<u64>,
    },
    /// Clean exit after `Stop`: everything received has been answered.
    Bye,
    /// The answer to `GiveBack`: these jobs were received and will never be started.
    GaveBack {
        jobs: Vec<u64>,
    },
    /// Sent every `heartbeat_ms` by a thread beside the job: the process is alive.
    Heartbeat,
    /// The system refused the worker a thread or a file it needs to start; it exits.
    LimitReached {
        reason: String,
    },
}

/// What a worker can ask of its master.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Message {
        cmd: String,
        data: Vec<u8>,
    },
    Lookup {
        table: String,
        key: Vec<u8>,
    },
    SetLookup {
        table: String,
        key: Vec<u8>,
        value: Vec<u8>,
    },
}

/// One worker's counters for one stats interval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatsRoll {
    pub span_ms: u64,
    pub last: Vec<(String, i64)>,
    pub diff: Vec<(String, i64)>,
}

/// Encodes a control message as a whole frame, header included.
pub fn control_frame<T: Serialize>(message: &T) -> Bytes {
    let mut frame = Vec::with_capacity(64);
    frame.extend_from_slice(&[0, 0, 0, 0, KIND_CONTROL]);
    // Serializing our own enums into a Vec cannot fail.
    let mut frame = postcard::to_extend(message, frame).expect("control message serializes");
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_le_bytes());
    Bytes::from(frame)
}

/// Decodes a control message from the payload of a control frame.
pub fn decode_control<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ProtocolError> {
    postcard::from_bytes(payload)
        .map_err(|e| ProtocolError::Malformed(format!("bad control message: {e}")))
}
