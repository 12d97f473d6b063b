//! A frame's kind, and reading frames off a channel: blocking, async, or through
//! one growing buffer.

use std::io::{self, Read};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{ProtocolError, KIND_CONTROL, KIND_JOBS, KIND_RESULTS};

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
