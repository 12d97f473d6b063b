//! Frames and messages between the master and a worker.
//!
//! Every frame is a little-endian `u32` body length followed by the body; the first
//! byte of the body says what it holds. Control messages are serde enums encoded with
//! postcard. Jobs and results, the hot path, travel as batches in a flat layout that
//! both sides walk without allocating per job:
//!
//! ```text
//! jobs:    [kind=2] ( [u64 job id] [u32 len] [len bytes: the job, postcard] )*
//! results: [kind=3] ( [u64 job id] [u8 ok]  [u32 len] [len bytes: output or error] )*
//! ```
//!
//! Several jobs may be in flight per worker and several jobs ride in one frame; a
//! worker answers in the order it received its jobs.

use std::collections::VecDeque;
use std::io::{self, Read};

use bytes::{Buf, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bumped whenever a frame or message changes shape.
pub const PROTOCOL_VERSION: u32 = 1;

/// Frames larger than this are refused unless the conductor sets another limit.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 << 20;

pub(crate) const KIND_CONTROL: u8 = 1;
const KIND_JOBS: u8 = 2;
pub(crate) const KIND_RESULTS: u8 = 3;

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

/// The settings a worker receives from its master right after it starts.
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

/// A decoded frame body.
#[derive(Debug)]
pub enum Frame {
    Control(Bytes),
    Jobs(Bytes),
    Results(Bytes),
}

impl Frame {
    /// Splits a frame body into its kind and payload.
    pub fn parse(mut body: Bytes) -> Result<Frame, ProtocolError> {
        if body.is_empty() {
            return Err(ProtocolError::Malformed("empty frame".into()));
        }
        let kind = body.get_u8();
        match kind {
            KIND_CONTROL => Ok(Frame::Control(body)),
            KIND_JOBS => Ok(Frame::Jobs(body)),
            KIND_RESULTS => Ok(Frame::Results(body)),
            other => Err(ProtocolError::Malformed(format!(
                "unknown frame kind {other}"
            ))),
        }
    }
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

/// Builds one frame that carries many jobs or many results (or several such frames
/// back to back in one buffer, see [`BatchWriter::next_frame`]).
pub struct BatchWriter {
    /// Fully initialized, so values can be serialized straight into it; only the
    /// first `used` bytes belong to the frames.
    buf: Vec<u8>,
    used: usize,
    /// Where the frame being written starts, and how many entries it has.
    frame_start: usize,
    count: usize,
    /// Frames sealed before it: where each starts and ends, and its entries.
    sealed: Vec<(usize, usize, usize)>,
}

impl BatchWriter {
    /// Starts a batch of jobs.
    pub fn jobs(capacity: usize) -> Self {
        Self::with_kind(KIND_JOBS, capacity)
    }

    /// Starts a batch of results.
    pub fn results(capacity: usize) -> Self {
        Self::with_kind(KIND_RESULTS, capacity)
    }

    fn with_kind(kind: u8, capacity: usize) -> Self {
        let mut buf = vec![0; capacity.max(64)];
        buf[4] = kind;
        BatchWriter {
            buf,
            used: 5,
            frame_start: 0,
            count: 0,
            sealed: Vec::new(),
        }
    }

    /// Makes room for `extra` more bytes; new room is zeroed once, when it grows.
    fn reserve(&mut self, extra: usize) {
        let needed = self.used + extra;
        if needed > self.buf.len() {
            self.buf.resize(needed.max(self.buf.len() * 2), 0);
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        self.buf[self.used..self.used + bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
    }

    /// Appends an entry header and `value` serialized in place. A value too large
    /// for a frame of `max_frame` bytes is taken back out and refused with the
    /// reason, naming it as `what`.
    fn push_encoded<T: Serialize + ?Sized>(
        &mut self,
        header: &[u8],
        value: &T,
        what: &str,
        max_frame: usize,
    ) -> Result<(), String> {
        let limit = max_frame.saturating_sub(64);
        // `used` moves only once the value is in, so a `Serialize` that panics or
        // fails leaves the frame as it was.
        let start = self.used;
        let body = start + header.len() + 4;
        self.reserve(header.len() + 4 + 64);
        self.buf[start..body - 4].copy_from_slice(header);
        // Small values are written straight into the initialized room; a value that
        // does not fit is appended through the Vec's writer instead, which grows the
        // buffer without zeroing it first (large payloads stay one copy).
        let room = Room {
            buf: &mut self.buf[body..],
            used: 0,
        };
        let outcome = match postcard::serialize_with_flavor(value, room) {
            Ok(written) => Ok(written),
            Err(postcard::Error::SerializeBufferFull) => {
                self.buf.truncate(body);
                let appended = postcard::to_io(value, &mut self.buf).map(drop);
                appended.map(|()| self.buf.len() - body)
            }
            Err(e) => Err(e),
        };
        let refusal = match outcome {
            Ok(len) if len <= limit => {
                self.buf[body - 4..body].copy_from_slice(&(len as u32).to_le_bytes());
                self.used = body + len;
                self.count += 1;
                return Ok(());
            }
            Ok(len) => {
                format!("the {what} of {len} bytes exceeds the frame limit of {max_frame} bytes")
            }
            Err(e) => format!("could not encode the {what}: {e}"),
        };
        // A refused value may have grown the buffer far past what the frame needs.
        let keep = self.buf.len().min(start + 4096);
        self.buf.truncate(keep);
        Err(refusal)
    }

    /// Appends a job serialized in place; a job too large for a frame of `max_frame`
    /// bytes is taken back out and refused with the reason.
    pub fn push_job_encoded<J: Serialize>(
        &mut self,
        id: u64,
        job: &J,
        max_frame: usize,
    ) -> Result<(), String> {
        self.push_encoded(&id.to_le_bytes(), job, "job", max_frame)
    }

    /// Appends a job's output serialized in place, or refuses it like a job.
    pub fn push_output_encoded<O: Serialize>(
        &mut self,
        id: u64,
        output: &O,
        max_frame: usize,
    ) -> Result<(), String> {
        let mut header = [1u8; 9];
        header[..8].copy_from_slice(&id.to_le_bytes());
        self.push_encoded(&header, output, "output", max_frame)
    }

    #[cfg(any(test, feature = "nats"))]
    pub fn push_job(&mut self, id: u64, payload: &[u8]) {
        self.put(&id.to_le_bytes());
        self.put(&(payload.len() as u32).to_le_bytes());
        self.put(payload);
        self.count += 1;
    }

    pub fn push_result(&mut self, id: u64, ok: bool, payload: &[u8]) {
        self.put(&id.to_le_bytes());
        self.put(&[ok as u8]);
        self.put(&(payload.len() as u32).to_le_bytes());
        self.put(payload);
        self.count += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the frame's body so far: what the frame limit applies to.
    pub fn body_len(&self) -> usize {
        self.used - self.frame_start - 4
    }

    /// Removes the last entry, which began at byte `len` of the frame.
    pub fn take_back(&mut self, len: usize) {
        self.used = self.frame_start + len;
        self.count -= 1;
    }

    /// Bytes the frame holds so far, header included.
    pub fn byte_len(&self) -> usize {
        self.used - self.frame_start
    }

    /// Bytes of all the frames so far.
    pub fn total_len(&self) -> usize {
        self.used
    }

    /// Seals the frame being written, unless it is empty, and starts another behind
    /// it in the same buffer: many small frames then cost one allocation.
    pub fn next_frame(&mut self) {
        if self.count == 0 {
            return;
        }
        self.seal();
        self.sealed.push((self.frame_start, self.used, self.count));
        let kind = self.buf[self.frame_start + 4];
        self.frame_start = self.used;
        self.reserve(5);
        self.buf[self.used + 4] = kind;
        self.used += 5;
        self.count = 0;
    }

    /// Writes the length of the frame being written into its header.
    fn seal(&mut self) {
        let len = (self.used - self.frame_start - 4) as u32;
        self.buf[self.frame_start..self.frame_start + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// Seals the frame: the returned bytes are ready to write to the channel.
    pub fn finish(mut self) -> Bytes {
        self.seal();
        self.buf.truncate(self.used);
        // An exact allocation becomes `Bytes` as it is; a larger one would cost a
        // second allocation (to track its capacity), on every frame.
        Bytes::from(self.buf.into_boxed_slice())
    }

    /// Seals the frames, each ready to write to the channel, with its entries; they
    /// share one allocation. An empty last frame is left out.
    pub fn finish_frames(mut self) -> Vec<(Bytes, usize)> {
        self.next_frame();
        self.buf.truncate(self.frame_start);
        let all = Bytes::from(self.buf.into_boxed_slice());
        self.sealed
            .iter()
            .map(|&(start, end, entries)| (all.slice(start..end), entries))
            .collect()
    }
}

/// Jobs received and not yet run: whole jobs frames, walked in place so that no job
/// costs an allocation or a reference count.
#[derive(Default)]
pub struct JobQueue {
    frames: VecDeque<Bytes>,
    offset: usize,
    /// Bytes of the last frame received.
    last_frame_bytes: usize,
    /// Bytes of jobs handed out so far.
    handed_out_bytes: u64,
}

impl JobQueue {
    pub fn push_frame(&mut self, body: Bytes) {
        if !body.is_empty() {
            self.last_frame_bytes = body.len();
            self.frames.push_back(body);
        }
    }

    /// Bytes of the last frame received: how much the master sends at once.
    pub fn last_frame_bytes(&self) -> usize {
        self.last_frame_bytes
    }

    /// Bytes of jobs handed out since the queue was made.
    pub fn handed_out_bytes(&self) -> u64 {
        self.handed_out_bytes
    }

    /// Whether every job received has been handed out.
    pub fn is_empty(&self) -> bool {
        match self.frames.len() {
            0 => true,
            1 => self.offset >= self.frames[0].len(),
            _ => false,
        }
    }

    /// The next job's id and encoded bytes, valid until the next call.
    pub fn pop(&mut self) -> Option<Result<(u64, &[u8]), ProtocolError>> {
        // Frames are dropped here rather than when their last job is handed out,
        // because that job borrows from its frame.
        while self.frames.front().is_some_and(|f| self.offset >= f.len()) {
            self.frames.pop_front();
            self.offset = 0;
        }
        let rest = &self.frames.front()?[self.offset..];
        let parsed = rest.split_first_chunk::<12>().and_then(|(header, tail)| {
            let id = u64::from_le_bytes(header[..8].try_into().ok()?);
            let len = u32::from_le_bytes(header[8..].try_into().ok()?) as usize;
            (tail.len() >= len).then_some((id, len))
        });
        match parsed {
            Some((id, len)) => {
                let start = self.offset + 12;
                self.offset = start + len;
                self.handed_out_bytes += 12 + len as u64;
                let frame = self.frames.front()?;
                Some(Ok((id, &frame[start..start + len])))
            }
            None => {
                self.frames.clear();
                self.offset = 0;
                Some(Err(ProtocolError::Malformed("truncated job".into())))
            }
        }
    }
}

/// One entry of a results frame, borrowed from the frame.
#[derive(Debug)]
pub struct ResultEntry<'a> {
    pub id: u64,
    /// The postcard-encoded output, or the UTF-8 error message of a failed job.
    pub outcome: Result<&'a [u8], &'a [u8]>,
}

/// Where postcard writes a value in place: the room left in a batch. Postcard hands
/// over every integer as a slice of 1 to 10 bytes; a `memcpy` call for each of those
/// was a tenth of the master's time with tiny jobs, so short slices are copied here
/// in fixed-size pieces, which compile to plain moves.
struct Room<'a> {
    buf: &'a mut [u8],
    used: usize,
}

impl postcard::ser_flavors::Flavor for Room<'_> {
    type Output = usize;

    #[inline(always)]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        let slot = self
            .buf
            .get_mut(self.used)
            .ok_or(postcard::Error::SerializeBufferFull)?;
        *slot = byte;
        self.used += 1;
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let end = self.used + data.len();
        let dst = self
            .buf
            .get_mut(self.used..end)
            .ok_or(postcard::Error::SerializeBufferFull)?;
        if data.len() > 16 {
            dst.copy_from_slice(data);
        } else {
            let mut at = 0;
            for width in [8, 4, 2, 1] {
                while data.len() - at >= width {
                    dst[at..at + width].copy_from_slice(&data[at..at + width]);
                    at += width;
                }
            }
        }
        self.used = end;
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.used)
    }
}

/// Walks the results of a results frame without copying them.
pub struct ResultsReader<'a> {
    body: &'a [u8],
}

impl<'a> ResultsReader<'a> {
    pub fn new(body: &'a [u8]) -> Self {
        ResultsReader { body }
    }
}

impl<'a> Iterator for ResultsReader<'a> {
    type Item = Result<ResultEntry<'a>, ProtocolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.body.is_empty() {
            return None;
        }
        let entry = parse_result(self.body);
        match entry {
            Some((entry, rest)) => {
                self.body = rest;
                Some(Ok(entry))
            }
            None => {
                self.body = &[];
                Some(Err(ProtocolError::Malformed(
                    "truncated or invalid result".into(),
                )))
            }
        }
    }
}

fn parse_result(body: &[u8]) -> Option<(ResultEntry<'_>, &[u8])> {
    let (header, rest) = body.split_first_chunk::<13>()?;
    let id = u64::from_le_bytes(header[..8].try_into().ok()?);
    let ok = header[8];
    let len = u32::from_le_bytes(header[9..].try_into().ok()?) as usize;
    if rest.len() < len || ok > 1 {
        return None;
    }
    let (payload, rest) = rest.split_at(len);
    let outcome = if ok == 1 { Ok(payload) } else { Err(payload) };
    Some((ResultEntry { id, outcome }, rest))
}

/// Whether a read error only means that the peer closed its end. A peer that exits
/// with unread data in its socket shows as a reset rather than an end-of-file.
fn is_closed(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
    )
}

/// Reads one frame body with blocking I/O; `Ok(None)` means the peer closed the channel.
pub fn read_frame(reader: &mut impl Read, max: usize) -> Result<Option<Bytes>, ProtocolError> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if is_closed(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(header) as usize;
    if len > max {
        return Err(ProtocolError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    Ok(Some(Bytes::from(body)))
}

/// Reads frames through one growing buffer: a frame's body is split off the buffer
/// without copying or zeroing it, so frames cost no allocation each.
pub struct FrameReader<R> {
    reader: R,
    buf: BytesMut,
    max: usize,
}

impl<R> FrameReader<R> {
    pub fn new(reader: R, max: usize) -> Self {
        FrameReader {
            reader,
            // Whenever the buffer must move, it gets at least this much room again.
            buf: BytesMut::with_capacity(64 << 10),
            max,
        }
    }

    /// The next frame body if the buffer holds all of it; otherwise makes room for
    /// it and returns `None`.
    fn buffered_frame(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        let mut wanted = 4;
        if let Some(header) = self.buf.first_chunk::<4>() {
            let len = u32::from_le_bytes(*header) as usize;
            if len > self.max {
                return Err(ProtocolError::TooLarge { len, max: self.max });
            }
            if self.buf.len() >= 4 + len {
                self.buf.advance(4);
                return Ok(Some(self.buf.split_to(len).freeze()));
            }
            wanted = 4 + len;
        }
        // Room for the whole frame at once, and never a read of a few bytes. The
        // buffer moves only when its room runs out: the frames split off it keep
        // the old one alive until they are dropped.
        self.buf.reserve((wanted - self.buf.len()).max(4 << 10));
        Ok(None)
    }

    /// Judges a read that returned nothing or failed: `Ok(false)` when the peer
    /// closed the channel between frames, `Ok(true)` to read again.
    fn read_failed(&self, read: io::Result<()>) -> Result<bool, ProtocolError> {
        match read {
            Ok(()) if self.buf.is_empty() => Ok(false),
            Ok(()) => Err(ProtocolError::Malformed(
                "the channel closed inside a frame".into(),
            )),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) if is_closed(&e) && self.buf.is_empty() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// The next frame body; `Ok(None)` means the peer closed the channel between frames.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        loop {
            if let Some(body) = self.buffered_frame()? {
                return Ok(Some(body));
            }
            let read = match self.reader.read_buf(&mut self.buf).await {
                Ok(0) => Ok(()),
                Ok(_) => continue,
                Err(e) => Err(e),
            };
            if !self.read_failed(read)? {
                return Ok(None);
            }
        }
    }
}

impl FrameReader<std::os::unix::net::UnixStream> {
    /// The next frame body from a blocking socket (a lane's reader thread); `Ok(None)`
    /// means the peer closed the channel between frames.
    pub fn next_blocking(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        use bytes::BufMut;
        use std::os::fd::AsRawFd;
        loop {
            if let Some(body) = self.buffered_frame()? {
                return Ok(Some(body));
            }
            let spare = self.buf.chunk_mut();
            // SAFETY: recv writes at most `spare.len()` bytes into the buffer's spare
            // capacity, which is ours; only the bytes it wrote are then counted in.
            let read = unsafe {
                libc::recv(
                    self.reader.as_raw_fd(),
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                    0,
                )
            };
            let read = match read {
                0 => Ok(()),
                -1 => Err(io::Error::last_os_error()),
                n => {
                    // SAFETY: the first `n` bytes of the spare capacity were just written.
                    unsafe { self.buf.advance_mut(n as usize) };
                    continue;
                }
            };
            if !self.read_failed(read)? {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(frame: Bytes) -> Bytes {
        let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        frame.slice(4..)
    }

    fn jobs_body(frame: Bytes) -> Bytes {
        let Frame::Jobs(body) = Frame::parse(body_of(frame)).unwrap() else {
            panic!("not a jobs frame")
        };
        body
    }

    /// Every job in the jobs frame bodies, in order.
    fn jobs_in(bodies: impl IntoIterator<Item = Bytes>) -> Vec<(u64, Vec<u8>)> {
        let mut queue = JobQueue::default();
        for body in bodies {
            queue.push_frame(body);
        }
        let mut jobs = Vec::new();
        while let Some(job) = queue.pop() {
            let (id, payload) = job.unwrap();
            jobs.push((id, payload.to_vec()));
        }
        jobs
    }

    #[test]
    fn frames_written_back_to_back_come_out_whole() {
        let mut batch = BatchWriter::jobs(16);
        batch.push_job(1, b"one");
        batch.next_frame();
        batch.push_job(2, b"two");
        batch.push_job(3, b"three");
        assert_eq!(batch.byte_len(), 5 + 2 * 12 + 3 + 5);
        batch.next_frame();
        batch.next_frame();
        let frames = batch.finish_frames();
        assert_eq!(frames.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [1, 2]);
        let bodies = frames.into_iter().map(|(frame, _)| jobs_body(frame));
        assert_eq!(
            jobs_in(bodies),
            [
                (1, b"one".to_vec()),
                (2, b"two".to_vec()),
                (3, b"three".to_vec())
            ]
        );
    }

    #[test]
    fn job_batches_round_trip() {
        let mut batch = BatchWriter::jobs(64);
        batch.push_job(7, b"seven");
        batch.push_job(9, b"");
        let body = jobs_body(batch.finish());
        assert_eq!(
            jobs_in([body.clone(), body]),
            vec![
                (7, b"seven".to_vec()),
                (9, vec![]),
                (7, b"seven".to_vec()),
                (9, vec![])
            ]
        );
    }

    #[test]
    fn values_encoded_in_place_match_postcard_and_count_what_was_handed_out() {
        // Integers of every varint width and byte strings of every short length (the
        // piecewise copies), then long ones, some past the initial room.
        let values: Vec<(u64, Vec<u8>)> = (0..64u32)
            .map(|k| (1u64 << k, (0..k as u8 % 40).collect()))
            .chain([(u64::MAX, vec![7u8; 5000])])
            .collect();
        let mut batch = BatchWriter::jobs(16);
        for (id, value) in values.iter().enumerate() {
            batch
                .push_job_encoded(id as u64, value, 1 << 20)
                .expect("fits");
        }
        let Frame::Jobs(body) = Frame::parse(body_of(batch.finish())).unwrap() else {
            panic!("not a jobs frame")
        };
        let mut queue = JobQueue::default();
        let frame_bytes = body.len();
        queue.push_frame(body);
        assert_eq!(queue.last_frame_bytes(), frame_bytes);
        for (id, value) in values.iter().enumerate() {
            let (got_id, bytes) = queue.pop().unwrap().unwrap();
            assert_eq!(got_id, id as u64);
            assert_eq!(bytes, postcard::to_stdvec(value).unwrap());
        }
        assert!(queue.pop().is_none());
        assert_eq!(queue.handed_out_bytes(), frame_bytes as u64);
    }

    #[test]
    fn result_batches_round_trip() {
        let mut batch = BatchWriter::results(64);
        batch.push_result(1, true, b"out");
        batch.push_result(2, false, b"boom");
        batch.push_result(3, true, b"xy");
        let Frame::Results(body) = Frame::parse(body_of(batch.finish())).unwrap() else {
            panic!("not a results frame")
        };
        let results: Vec<_> = ResultsReader::new(&body).map(Result::unwrap).collect();
        assert_eq!(results[0].outcome, Ok(&b"out"[..]));
        assert_eq!(results[1].outcome, Err(&b"boom"[..]));
        assert_eq!((results[2].id, results[2].outcome), (3, Ok(&b"xy"[..])));
        assert!(ResultsReader::new(&body[..20]).nth(1).unwrap().is_err());
    }

    #[test]
    fn truncated_batches_are_errors_not_panics() {
        let mut batch = BatchWriter::jobs(64);
        batch.push_job(1, b"abcdef");
        let body = body_of(batch.finish()).slice(1..10);
        let mut queue = JobQueue::default();
        queue.push_frame(body);
        assert!(matches!(
            queue.pop(),
            Some(Err(ProtocolError::Malformed(_)))
        ));
        assert!(queue.pop().is_none());
        assert!(matches!(
            Frame::parse(Bytes::from_static(&[42])),
            Err(ProtocolError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_frames_are_refused_before_reading_them() {
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0x7f, 1, 2, 3];
        let err = read_frame(&mut input, 1024).unwrap_err();
        assert!(
            err.to_string().contains("exceeds the limit of 1024 bytes"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_frame_reader_splits_frames_and_refuses_oversized_ones() {
        let mut bytes = control_frame(&ToWorker::Stop).to_vec();
        bytes.extend_from_slice(&control_frame(&ToWorker::Abort));
        let mut reader = FrameReader::new(&bytes[..], 1024);
        assert!(matches!(reader.next().await, Ok(Some(_))));
        assert!(matches!(reader.next().await, Ok(Some(_))));
        assert!(matches!(reader.next().await, Ok(None)));
        let mut truncated = FrameReader::new(&bytes[..3], 1024);
        assert!(matches!(
            truncated.next().await,
            Err(ProtocolError::Malformed(_))
        ));
        let mut huge = FrameReader::new(&[0xff, 0xff, 0xff, 0x7f][..], 1024);
        assert!(matches!(
            huge.next().await,
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn job_encoding_refuses_jobs_over_the_limit() {
        let mut batch = BatchWriter::jobs(64);
        batch.push_job_encoded(1, &7u64, 164).unwrap();
        let error = batch.push_job_encoded(2, &vec![0u8; 200], 164).unwrap_err();
        assert_eq!(
            error,
            "the job of 202 bytes exceeds the frame limit of 164 bytes"
        );
        assert!(batch.push_job_encoded(3, &"x", 164).is_ok());
        let Frame::Jobs(body) = Frame::parse(body_of(batch.finish())).unwrap() else {
            panic!()
        };
        let mut queue = JobQueue::default();
        queue.push_frame(body);
        let mut ids = Vec::new();
        while let Some(job) = queue.pop() {
            ids.push(job.unwrap().0);
        }
        assert_eq!(ids, vec![1, 3]);
    }

    #[test]
    fn control_messages_round_trip() {
        let frame = control_frame(&ToMaster::Crash {
            reason: "x".into(),
            job: Some(3),
        });
        let Frame::Control(payload) = Frame::parse(body_of(frame)).unwrap() else {
            panic!()
        };
        let msg: ToMaster = decode_control(&payload).unwrap();
        assert!(matches!(msg, ToMaster::Crash { job: Some(3), .. }));
    }
}
