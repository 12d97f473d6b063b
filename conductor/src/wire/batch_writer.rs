//! Many jobs or many results encoded into one frame, values serialized in place.

use bytes::Bytes;
use serde::Serialize;

use super::{KIND_JOBS, KIND_RESULTS};

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
        self.put(&id.to_le_bytes());
        self.put(&[status]);
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
