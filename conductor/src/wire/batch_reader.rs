//! Walking the entries of a jobs or results frame in place, without copying them.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{varint, ProtocolError};

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

    /// Takes every job received and not yet handed out, leaving the queue empty;
    /// returns their ids in order, or the error of a truncated entry (the frame was
    /// broken: nothing can be said of the jobs after it).
    pub fn take_unstarted(&mut self) -> Result<Vec<u64>, ProtocolError> {
        let mut ids = Vec::new();
        while let Some(job) = self.pop() {
            ids.push(job?.0);
        }
        Ok(ids)
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
        let parsed = varint::read(rest).and_then(|(id, id_len)| {
            let (len, len_len) = varint::read(&rest[id_len..])?;
            let header = id_len + len_len;
            let len = usize::try_from(len).ok()?;
            (rest.len() - header >= len).then_some((id, header, len))
        });
        match parsed {
            Some((id, header, len)) => {
                let start = self.offset + header;
                self.offset = start + len;
                self.handed_out_bytes += (header + len) as u64;
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

/// How a job failed, as its results entry says (the byte after its id; 1 is "ok").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FailedAs {
    /// The job code returned an error.
    Returned = 0,
    /// The job code panicked.
    Panicked = 2,
    /// The job or its output could not travel: decoding, encoding, the frame limit.
    Protocol = 3,
    /// Its workers died on every attempt (as a run queue counts deliveries).
    Crashed = 4,
    /// The job code returned an error it marked permanent: not to be retried.
    Permanent = 5,
    /// It ran past `job_timeout` on each of its attempts (as a run queue's worker times it).
    TimedOut = 6,
}

/// The status byte of an entry that holds an output.
pub(crate) const STATUS_OK: u8 = 1;

impl FailedAs {
    fn from_status(status: u8) -> Option<FailedAs> {
        Some(match status {
            0 => FailedAs::Returned,
            2 => FailedAs::Panicked,
            3 => FailedAs::Protocol,
            4 => FailedAs::Crashed,
            5 => FailedAs::Permanent,
            6 => FailedAs::TimedOut,
            _ => return None,
        })
    }
}

/// One entry of a results frame, borrowed from the frame.
#[derive(Debug)]
pub struct ResultEntry<'a> {
    pub id: u64,
    /// The encoded output (`value.rs`), or how the job failed and its UTF-8 message.
    pub outcome: Result<&'a [u8], (FailedAs, &'a [u8])>,
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

#[inline]
fn parse_result(body: &[u8]) -> Option<(ResultEntry<'_>, &[u8])> {
    let (id, id_len) = varint::read(body)?;
    let status = *body.get(id_len)?;
    let (len, len_len) = varint::read(&body[id_len + 1..])?;
    let rest = &body[id_len + 1 + len_len..];
    let len = usize::try_from(len).ok()?;
    if rest.len() < len {
        return None;
    }
    let (payload, rest) = rest.split_at(len);
    let outcome = match status {
        STATUS_OK => Ok(payload),
        other => Err((FailedAs::from_status(other)?, payload)),
    };
    Some((ResultEntry { id, outcome }, rest))
}
