//! Control messages: the handshake, requests and replies, stats, stop and abort.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{FailedAs, ProtocolError, KIND_CONTROL};

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
    /// The most verbose log level the master's subscriber takes ([`LogRecord::level`];
    /// 0: none): a worker sends nothing finer.
    pub log_level: u8,
    /// Whether the worker times its jobs (for the master's metrics).
    pub time_jobs: bool,
    /// `job_timeout`, for a worker of a run queue: the master cannot see which job such
    /// a worker runs, so the worker gives up on one itself (it crashes, naming it).
    pub job_timeout_ms: Option<u64>,
}

/// How a worker's crash reason starts when it gave up on a job that ran too long.
pub const TIMED_OUT: &str = "timed out after";

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
    /// The answer to [`ToMaster::Redelivered`]: of the jobs of a run queue's message that
    /// came again, those to `run` (each alone), and those that used up their attempts,
    /// with the error to report for each. The others are settled already.
    Redelivery {
        ask: u64,
        run: Vec<u64>,
        failed: Vec<(u64, FailedAs, String)>,
    },
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
    /// A `tracing` event or `log` record from the worker, for the master's subscriber.
    Log(LogRecord),
    /// A message of the run queue came to this worker again (its holder before died or
    /// lost its lease): which of its `jobs` are still to run? Answered with
    /// [`ToWorker::Redelivery`].
    Redelivered {
        ask: u64,
        jobs: Vec<u64>,
    },
    /// Job `job`, of a message that came again, is about to run alone on this worker:
    /// if its message comes again, it was running when this worker stopped.
    RunningAlone {
        job: u64,
    },
}

/// A `tracing` event or `log` record, as a worker sends it to its master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// 1 error, 2 warn, 3 info, 4 debug, 5 trace.
    pub level: u8,
    pub target: String,
    pub module_path: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The event's fields in order, `message` among them.
    pub fields: Vec<(String, LogValue)>,
    /// The spans the event happened in, outermost first, as `name{field=value ...}`.
    pub spans: Vec<String>,
    /// The job the worker was running.
    pub job: Option<u64>,
}

/// A value as a log line shows it: numbers bare, strings quoted, `Debug` and `Display`
/// output (and the message) as written.
impl std::fmt::Display for LogValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogValue::I64(v) => write!(f, "{v}"),
            LogValue::U64(v) => write!(f, "{v}"),
            LogValue::F64(v) => write!(f, "{v}"),
            LogValue::Bool(v) => write!(f, "{v}"),
            LogValue::Str(v) => write!(f, "{v:?}"),
            LogValue::Shown(v) => f.write_str(v),
        }
    }
}

impl LogRecord {
    /// The fields as one line of text: the message as it is, then `name=value`.
    pub fn fields_text(&self) -> String {
        let mut text = String::new();
        for (name, value) in &self.fields {
            if !text.is_empty() {
                text.push(' ');
            }
            if name != "message" {
                text.push_str(name);
                text.push('=');
            }
            text.push_str(&value.to_string());
        }
        text
    }
}

/// Log levels travel as numbers: 0 is "none", then error (1) to trace (5).
pub fn level_number(level: Option<tracing::Level>) -> u8 {
    match level {
        None => 0,
        Some(tracing::Level::ERROR) => 1,
        Some(tracing::Level::WARN) => 2,
        Some(tracing::Level::INFO) => 3,
        Some(tracing::Level::DEBUG) => 4,
        Some(tracing::Level::TRACE) => 5,
    }
}

/// The level a number stands for ([`level_number`]); `None` for 0 and for numbers out
/// of range.
pub fn level_of_number(number: u8) -> Option<tracing::Level> {
    Some(match number {
        1 => tracing::Level::ERROR,
        2 => tracing::Level::WARN,
        3 => tracing::Level::INFO,
        4 => tracing::Level::DEBUG,
        5 => tracing::Level::TRACE,
        _ => return None,
    })
}

/// A field's value, with its type kept where the subscriber cares (numbers print
/// unquoted, strings quoted, `message` and `Debug` values as they were written).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LogValue {
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Str(String),
    /// Written with `Debug` or `Display` (`?x`, `%x`, the message).
    Shown(String),
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
    /// How long the jobs of the interval took, when the master asked for it: how many
    /// fell in each [`duration_bucket`].
    pub durations: Vec<(u16, u64)>,
}

/// Below this many nanoseconds, a duration is its own bucket.
pub(crate) const EXACT_NANOS: u64 = 8;
/// The number of duration buckets: 8 per power of two, up to `u64::MAX` nanoseconds.
pub const DURATION_BUCKETS: usize = 496;

/// The bucket of a job's duration: 8 per power of two, so a bucket's middle is within
/// 1/16 of any duration in it.
pub fn duration_bucket(duration: std::time::Duration) -> u16 {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    if nanos < EXACT_NANOS {
        return nanos as u16;
    }
    let power = 63 - nanos.leading_zeros() as u64;
    let eighth = (nanos >> (power - 3)) & 7;
    (8 * (power - 2) + eighth) as u16
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
