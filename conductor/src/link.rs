//! The master's sending side of one worker's channel.
//!
//! A frame is written at once, by whoever sends it, when the socket takes it whole;
//! what the socket cannot take yet is queued and finished by a writer task. Handing
//! every frame to a task instead would cost a task wake-up per frame, which is most of
//! a round trip when a worker holds one job at a time. One lock orders the direct
//! writes and the queue, so frames stay whole and in order.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::Notify;

/// The link is closed: the worker's channel failed or the worker is gone.
#[derive(Debug)]
pub(crate) struct Closed;

pub(crate) struct Link {
    write: OwnedWriteHalf,
    state: Mutex<Pending>,
    /// Wakes the writer task when frames are queued or the link closes.
    wake: Notify,
}

#[derive(Default)]
struct Pending {
    frames: VecDeque<Bytes>,
    /// Bytes of the front frame already written.
    written: usize,
    closed: bool,
}

impl Link {
    /// A link over `write`, with its writer task started on the current runtime.
    pub fn start(write: OwnedWriteHalf) -> Arc<Link> {
        let link = Arc::new(Link {
            write,
            state: Mutex::new(Pending::default()),
            wake: Notify::new(),
        });
        tokio::spawn(link.clone().finish_pending());
        link
    }

    /// Sends one whole frame, header included.
    pub fn send(&self, frame: Bytes) -> Result<(), Closed> {
        let mut pending = self.lock();
        if pending.closed {
            return Err(Closed);
        }
        if !pending.frames.is_empty() {
            // The writer task is on it; queue behind to keep the order.
            pending.frames.push_back(frame);
            return Ok(());
        }
        let mut written = 0;
        while written < frame.len() {
            match self.write.try_write(&frame[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    pending.closed = true;
                    return Err(Closed);
                }
            }
        }
        if written < frame.len() {
            pending.written = written;
            pending.frames.push_back(frame);
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Closes the link: queued frames are dropped and the writer task ends.
    pub fn close(&self) {
        let mut pending = self.lock();
        pending.closed = true;
        pending.frames.clear();
        self.wake.notify_one();
    }

    /// The writer task: writes what `send` had to queue, as the socket drains.
    async fn finish_pending(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            loop {
                if self.lock().closed {
                    return;
                }
                if self.write.writable().await.is_err() {
                    self.close();
                    return;
                }
                if self.write_queued() {
                    break;
                }
            }
        }
    }

    /// Writes queued frames until the socket is full; true once the queue is empty.
    fn write_queued(&self) -> bool {
        let mut guard = self.lock();
        let pending = &mut *guard;
        while let Some(front) = pending.frames.front() {
            match self.write.try_write(&front[pending.written..]) {
                Ok(n) => {
                    pending.written += n;
                    if pending.written == front.len() {
                        pending.frames.pop_front();
                        pending.written = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => {
                    pending.closed = true;
                    pending.frames.clear();
                    return true;
                }
            }
        }
        true
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl crate::transport::FrameSink for Link {
    fn send(&self, frame: Bytes) -> Result<(), Closed> {
        Link::send(self, frame)
    }

    fn close(&self) {
        Link::close(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn frames_arrive_whole_and_in_order_even_when_the_socket_is_full() {
        let (ours, mut theirs) = tokio::net::UnixStream::pair().unwrap();
        let (_read, write) = ours.into_split();
        let link = Link::start(write);
        // Far more than a socket buffer holds, so most of it is queued.
        let frames: Vec<Bytes> = (0..64u8).map(|n| Bytes::from(vec![n; 64 << 10])).collect();
        for frame in &frames {
            link.send(frame.clone()).unwrap();
        }
        let mut received = vec![0u8; 64 * (64 << 10)];
        theirs.read_exact(&mut received).await.unwrap();
        for (n, chunk) in received.chunks(64 << 10).enumerate() {
            assert!(
                chunk.iter().all(|&b| b == n as u8),
                "frame {n} arrived out of order"
            );
        }
        link.close();
        assert!(link.send(Bytes::from_static(b"x")).is_err());
    }
}
