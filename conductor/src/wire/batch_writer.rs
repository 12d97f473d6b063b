//! Many jobs or many results encoded into one frame, values serialized in place.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::{varint, Layout, KIND_JOBS, KIND_RESULTS};

/// The most bytes a results entry's header takes: its id, status and length.
pub(crate) const MAX_RESULT_HEADER: usize = 2 * varint::MAX_LEN + 1;

/// Builds one frame that carries many jobs or many results (or several such frames
/// back to back in one buffer, see [`BatchWriter::next_frame`]).
pub struct BatchWriter {
    /// The frames so far, the one being written last.
    buf: Vec<u8>,
    /// Where the frame being written starts, and how many entries it has.
    frame_start: usize,
    count: usize,
    /// Frames sealed before it: where each starts and ends, and its entries.
    sealed: Vec<(usize, usize, usize)>,
    /// How jobs' structs are laid out; names throughout without one.
    layout: Option<Arc<Layout>>,
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
        let mut buf = Vec::with_capacity(capacity.max(64));
        buf.extend_from_slice(&[0, 0, 0, 0, kind]);
        BatchWriter {
            buf,
            frame_start: 0,
            count: 0,
            sealed: Vec::new(),
            layout: None,
        }
    }

    /// Lays out the jobs' structs by `layout` (arrays where it allows).
    pub fn laid_out(mut self, layout: &Arc<Layout>) -> Self {
        self.layout = Some(layout.clone());
        self
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends an entry header (its id, and a status for a result) and `value`
    /// serialized in place, behind its length. A value too large for a frame of
    /// `max_frame` bytes is taken back out and refused with the reason, naming it as
    /// `what`.
    fn push_encoded<T: Serialize + ?Sized>(
        &mut self,
        (id, status): (u64, Option<u8>),
        value: &T,
        what: &str,
        max_frame: usize,
    ) -> Result<(), String> {
        let limit = max_frame.saturating_sub(64);
        let start = self.buf.len();
        varint::put(&mut self.buf, id);
        if let Some(status) = status {
            self.buf.push(status);
        }
        // One byte for the length, which most values need; a longer one moves the
        // value along once it is written.
        self.buf.push(0);
        let body = self.buf.len();
        // A `Serialize` that fails or panics leaves the frame as it was: only a
        // complete entry counts.
        let written =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &self.layout {
                Some(layout) => super::value::write_with(value, &mut self.buf, layout),
                None => super::value::write(value, &mut self.buf),
            }));
        let written = match written {
            Ok(written) => written,
            Err(panic) => {
                self.buf.truncate(start);
                std::panic::resume_unwind(panic);
            }
        };
        let len = self.buf.len() - body;
        let refusal = match written {
            Ok(()) if len <= limit => {
                let extra = varint::len(len as u64) - 1;
                if extra > 0 {
                    let end = self.buf.len();
                    self.buf.resize(end + extra, 0);
                    self.buf.copy_within(body..end, body + extra);
                }
                varint::write_at(&mut self.buf[body - 1..], len as u64);
                self.count += 1;
                return Ok(());
            }
            Ok(()) => {
                format!("the {what} of {len} bytes exceeds the frame limit of {max_frame} bytes")
            }
            Err(e) => format!("could not send the {what}: {e}"),
        };
        self.buf.truncate(start);
        // A refused value may have grown the buffer far past what the frame needs.
        self.buf.shrink_to(start + 4096);
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
        self.push_encoded((id, None), job, "job", max_frame)
    }

    /// Appends a job's output serialized in place, or refuses it like a job.
    pub fn push_output_encoded<O: Serialize>(
        &mut self,
        id: u64,
        output: &O,
        max_frame: usize,
    ) -> Result<(), String> {
        let status = Some(super::batch_reader::STATUS_OK);
        self.push_encoded((id, status), output, "output", max_frame)
    }

    #[cfg(any(test, feature = "nats"))]
    pub fn push_job(&mut self, id: u64, payload: &[u8]) {
        varint::put(&mut self.buf, id);
        varint::put(&mut self.buf, payload.len() as u64);
        self.put(payload);
        self.count += 1;
    }

    /// An entry holding an already encoded output.
    #[cfg(test)]
    pub fn push_output(&mut self, id: u64, payload: &[u8]) {
        self.push_entry(id, super::batch_reader::STATUS_OK, payload);
    }

    /// An entry saying how job `id` failed, with its message.
    pub fn push_failure(&mut self, id: u64, failed: super::FailedAs, message: &[u8]) {
        self.push_entry(id, failed as u8, message);
    }

    fn push_entry(&mut self, id: u64, status: u8, payload: &[u8]) {
        varint::put(&mut self.buf, id);
        self.put(&[status]);
        varint::put(&mut self.buf, payload.len() as u64);
        self.put(payload);
        self.count += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the frame's body so far: what the frame limit applies to.
    pub fn body_len(&self) -> usize {
        self.buf.len() - self.frame_start - 4
    }

    /// Removes the last entry, which began at byte `len` of the frame.
    pub fn take_back(&mut self, len: usize) {
        self.buf.truncate(self.frame_start + len);
        self.count -= 1;
    }

    /// Bytes the frame holds so far, header included.
    pub fn byte_len(&self) -> usize {
        self.buf.len() - self.frame_start
    }

    /// Bytes of all the frames so far.
    pub fn total_len(&self) -> usize {
        self.buf.len()
    }

    /// Seals the frame being written, unless it is empty, and starts another behind
    /// it in the same buffer: many small frames then cost one allocation.
    pub fn next_frame(&mut self) {
        if self.count == 0 {
            return;
        }
        self.seal();
        self.sealed
            .push((self.frame_start, self.buf.len(), self.count));
        let kind = self.buf[self.frame_start + 4];
        self.frame_start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0, 0, 0, kind]);
        self.count = 0;
    }

    /// Writes the length of the frame being written into its header.
    fn seal(&mut self) {
        let len = (self.buf.len() - self.frame_start - 4) as u32;
        self.buf[self.frame_start..self.frame_start + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// Seals the frame: the returned bytes are ready to write to the channel.
    pub fn finish(mut self) -> Bytes {
        self.seal();
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
