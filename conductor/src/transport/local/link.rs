//! The master's sending side of one worker's channel.
//!
//! A frame is written at once, by whoever sends it, when the socket takes it whole;
//! what the socket cannot take yet is queued and finished by a writer task. Handing
//! every frame to a task instead would cost a task wake-up per frame, which is most of
//! a round trip when a worker holds one job at a time. One lock orders the direct
//! writes and the queue, so frames stay whole and in order.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::Notify;

use crate::transport::link::{Closed, FrameSink};

pub(crate) struct Link {
    socket: Socket,
    state: Mutex<Pending>,
}

/// The socket, and who finishes the frames it could not take at once.
enum Socket {
    /// Registered with the run loop's runtime; a task waits until it is writable.
    Runtime { write: OwnedWriteHalf, wake: Notify },
    /// Not registered anywhere, so that traffic on it never wakes the run loop (a
    /// lane's channel, see `lane.rs`); a thread of its own waits until it is writable.
    /// The socket may block (its reader wants it to): writes never wait regardless.
    Plain { socket: UnixStream, wake: Condvar },
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
            socket: Socket::Runtime {
                write,
                wake: Notify::new(),
            },
            state: Mutex::new(Pending::default()),
        });
        tokio::spawn(link.clone().finish_pending());
        link
    }

    /// A link over a socket that no runtime watches, with a writer thread that
    /// sleeps until a frame has to wait.
    pub fn start_plain(socket: UnixStream, name: String) -> io::Result<Arc<Link>> {
        let link = Arc::new(Link {
            socket: Socket::Plain {
                socket,
                wake: Condvar::new(),
            },
            state: Mutex::new(Pending::default()),
        });
        let writer = link.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || writer.finish_pending_on_thread())?;
        Ok(link)
    }

    /// Sends one whole frame, header included.
    pub fn send(&self, frame: Bytes) -> Result<(), Closed> {
        let mut pending = self.lock();
        if pending.closed {
            return Err(Closed);
        }
        if !pending.frames.is_empty() {
            // The writer is on it; queue behind to keep the order.
            pending.frames.push_back(frame);
            return Ok(());
        }
        let mut written = 0;
        while written < frame.len() {
            match self.try_write(&frame[written..]) {
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
            self.wake_writer();
        }
        Ok(())
    }

    /// Closes the link: queued frames are dropped and the writer ends.
    pub fn close(&self) {
        let mut pending = self.lock();
        pending.closed = true;
        pending.frames.clear();
        if let Socket::Plain { socket, .. } = &self.socket {
            // As dropping the runtime's write half does: the worker reads the end.
            let _ = socket.shutdown(std::net::Shutdown::Write);
        }
        self.wake_writer();
    }

    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        match &self.socket {
            Socket::Runtime { write, .. } => write.try_write(bytes),
            Socket::Plain { socket, .. } => {
                // SAFETY: `bytes` is valid for reads of its length during the call.
                let sent = unsafe {
                    libc::send(
                        socket.as_raw_fd(),
                        bytes.as_ptr().cast(),
                        bytes.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                match sent {
                    -1 => Err(io::Error::last_os_error()),
                    n => Ok(n as usize),
                }
            }
        }
    }

    fn wake_writer(&self) {
        match &self.socket {
            Socket::Runtime { wake, .. } => wake.notify_one(),
            Socket::Plain { wake, .. } => wake.notify_one(),
        }
    }

    /// The writer task: writes what `send` had to queue, as the socket drains.
    async fn finish_pending(self: Arc<Self>) {
        let Socket::Runtime { write, wake } = &self.socket else {
            return;
        };
        loop {
            wake.notified().await;
            loop {
                if self.lock().closed {
                    return;
                }
                if write.writable().await.is_err() {
                    self.close();
                    return;
                }
                if self.write_queued() {
                    break;
                }
            }
        }
    }

    /// The writer thread of a plain link: the same, waiting in `poll`.
    fn finish_pending_on_thread(self: Arc<Self>) {
        let Socket::Plain { socket, wake } = &self.socket else {
            return;
        };
        loop {
            {
                let mut pending = self.lock();
                while pending.frames.is_empty() && !pending.closed {
                    pending = wake.wait(pending).unwrap_or_else(|p| p.into_inner());
                }
                if pending.closed {
                    return;
                }
            }
            if wait_for(socket, libc::POLLOUT).is_err() {
                self.close();
                return;
            }
            self.write_queued();
        }
    }

    /// Writes queued frames until the socket is full; true once the queue is empty.
    fn write_queued(&self) -> bool {
        let mut guard = self.lock();
        let pending = &mut *guard;
        while let Some(front) = pending.frames.front() {
            match self.try_write(&front[pending.written..]) {
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

/// Waits in `poll` until a socket is ready for `events` (or has failed: the next
/// write says how).
fn wait_for(socket: &impl AsFd, events: libc::c_short) -> io::Result<()> {
    let mut poll = libc::pollfd {
        fd: socket.as_fd().as_raw_fd(),
        events,
        revents: 0,
    };
    loop {
        // SAFETY: `poll` points to one valid pollfd for the duration of the call.
        if unsafe { libc::poll(&mut poll, 1, -1) } >= 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

impl FrameSink for Link {
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

    /// Far more than a socket buffer holds, so most of it is queued: 64 frames of
    /// 64 KiB, frame n filled with n.
    fn send_many_frames(link: &Link) {
        for n in 0..64u8 {
            link.send(Bytes::from(vec![n; 64 << 10])).unwrap();
        }
    }

    fn assert_whole_and_in_order(received: &[u8]) {
        for (n, chunk) in received.chunks(64 << 10).enumerate() {
            assert!(
                chunk.iter().all(|&b| b == n as u8),
                "frame {n} arrived out of order"
            );
        }
    }

    #[tokio::test]
    async fn frames_arrive_whole_and_in_order_even_when_the_socket_is_full() {
        let (ours, mut theirs) = tokio::net::UnixStream::pair().unwrap();
        let (_read, write) = ours.into_split();
        let link = Link::start(write);
        // Far more than a socket buffer holds, so most of it is queued.
        send_many_frames(&link);
        let mut received = vec![0u8; 64 * (64 << 10)];
        theirs.read_exact(&mut received).await.unwrap();
        assert_whole_and_in_order(&received);
        link.close();
        assert!(link.send(Bytes::from_static(b"x")).is_err());
    }

    #[test]
    fn a_plain_link_keeps_frames_whole_and_in_order_too() {
        use std::io::Read;
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let link = Link::start_plain(ours, "test-link".into()).unwrap();
        send_many_frames(&link);
        let mut received = vec![0u8; 64 * (64 << 10)];
        theirs.read_exact(&mut received).unwrap();
        assert_whole_and_in_order(&received);
        link.close();
        assert!(link.send(Bytes::from_static(b"x")).is_err());
        assert_eq!(
            theirs.read(&mut [0u8; 8]).unwrap(),
            0,
            "the worker reads the end"
        );
    }
}
