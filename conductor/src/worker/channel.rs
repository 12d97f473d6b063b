//! Who reads a worker's channel from the master: the job thread, or its watchdog.
//!
//! The job thread reads the channel itself whenever it has nothing to run, so a job
//! that arrives wakes exactly one thread, as in a plain blocking loop. A reader thread
//! of its own would cost a second wake-up and a hand-off per round trip, which is most
//! of the price of one-job-at-a-time dispatch on a small machine.
//!
//! Someone must still read while a job runs: a reply the job waits for, an abort, the
//! master's exit. So the watchdog thread looks at the job thread every
//! [`WATCH_EVERY`] and takes the channel over when it finds one job still running,
//! or at once when a request awaits its reply; it hands the channel back as soon as
//! the job thread is free again. Frames it reads reach the job thread through its
//! inbox, as they would from a reader thread.

use std::io::BufReader;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

/// How often the watchdog looks at a busy job thread; a job running this long
/// (at most twice this) has the watchdog read the channel for it.
pub(crate) const WATCH_EVERY: Duration = Duration::from_millis(5);
/// The watchdog looks less and less often at an idle job thread, down to this.
const WATCH_IDLE_EVERY: Duration = Duration::from_millis(160);
/// A watchdog reading for a job thread that has become free hands the channel back
/// after this long without a frame.
const HAND_BACK_AFTER: Duration = Duration::from_millis(1);

/// `current_work` when the job thread runs nothing.
pub(crate) const NO_WORK: u64 = 0;

/// The worker's read side of its channel, and what the watchdog needs to see.
pub(crate) struct MasterChannel {
    reader: Mutex<BufReader<UnixStream>>,
    fd: RawFd,
    /// What the job thread runs now: a number that changes with every job or message
    /// handler it starts ([`NO_WORK`] between them). Written only by the job thread.
    current_work: AtomicU64,
    /// Requests whose reply has not arrived: somebody must read while the job runs.
    awaited_replies: AtomicUsize,
    /// The job thread has the watchdog read ahead, whatever it does (large frames).
    read_ahead: AtomicBool,
    /// Set to wake the watchdog before its next look.
    wake: Mutex<bool>,
    woken: Condvar,
}

/// Held while a request waits for its reply.
pub(crate) struct AwaitingReply<'a>(&'a MasterChannel);

impl Drop for AwaitingReply<'_> {
    fn drop(&mut self) {
        self.0.awaited_replies.fetch_sub(1, Ordering::Relaxed);
    }
}

impl MasterChannel {
    pub fn new(stream: UnixStream) -> Self {
        MasterChannel {
            fd: stream.as_raw_fd(),
            reader: Mutex::new(BufReader::with_capacity(64 << 10, stream)),
            current_work: AtomicU64::new(NO_WORK),
            awaited_replies: AtomicUsize::new(0),
            read_ahead: AtomicBool::new(false),
            wake: Mutex::new(false),
            woken: Condvar::new(),
        }
    }

    /// The channel, for the job thread, unless the watchdog is reading it.
    pub fn try_take(&self) -> Option<MutexGuard<'_, BufReader<UnixStream>>> {
        match self.reader.try_lock() {
            Ok(reader) => Some(reader),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Whether a frame can be read from `reader` without waiting for the master.
    pub fn has_data(&self, reader: &BufReader<UnixStream>) -> bool {
        !reader.buffer().is_empty() || self.readable_within(Duration::ZERO)
    }

    /// Marks the job thread as running `work` (a number it changes for every job,
    /// handler or `init` it starts), or as free with [`NO_WORK`].
    pub fn set_current_work(&self, work: u64) {
        self.current_work.store(work, Ordering::Relaxed);
    }

    /// Tells the watchdog that a reply is awaited; keep the guard until it arrives.
    pub fn awaiting_reply(&self) -> AwaitingReply<'_> {
        self.awaited_replies.fetch_add(1, Ordering::Relaxed);
        self.wake_watchdog();
        AwaitingReply(self)
    }

    /// Has the watchdog read every frame, ahead of the job thread, or stop doing so.
    /// Reading a large frame takes about as long as its job, and the master can only
    /// write it while someone reads: the two must overlap.
    pub fn set_read_ahead(&self, on: bool) {
        self.read_ahead.store(on, Ordering::Relaxed);
        if on {
            self.wake_watchdog();
        }
    }

    /// Whether the watchdog reads every frame (see [`MasterChannel::set_read_ahead`]).
    pub fn reads_ahead(&self) -> bool {
        self.read_ahead.load(Ordering::Relaxed)
    }

    fn wake_watchdog(&self) {
        let mut wake = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        *wake = true;
        self.woken.notify_one();
    }

    /// The watchdog thread's loop: reads the channel for a busy job thread, passing
    /// each frame to `deliver` as `Some`, and `None` each time it gives the channel
    /// back. `read` reads one frame (it does not return if the channel fails).
    pub fn watch<R, F>(&self, mut read: impl FnMut(&mut BufReader<UnixStream>) -> R, mut deliver: F)
    where
        F: FnMut(Option<R>),
    {
        let mut last_seen = NO_WORK;
        let mut every = WATCH_EVERY;
        loop {
            self.sleep(every);
            let work = self.current_work.load(Ordering::Relaxed);
            let busy = work != NO_WORK;
            let needs_reply = self.awaited_replies.load(Ordering::Relaxed) > 0;
            let reader = if self.reads_ahead() {
                // The job thread holds the channel only while it reads one frame.
                Some(self.reader.lock().unwrap_or_else(|p| p.into_inner()))
            } else if busy && (work == last_seen || needs_reply) {
                self.reader.try_lock().ok()
            } else {
                None
            };
            if let Some(mut reader) = reader {
                self.read_while_busy(&mut reader, &mut read, &mut deliver);
                drop(reader);
                deliver(None);
            }
            every = if busy || needs_reply || work != last_seen {
                WATCH_EVERY
            } else {
                (every * 2).min(WATCH_IDLE_EVERY)
            };
            last_seen = work;
        }
    }

    /// Reads and delivers frames until the job thread is free and the channel quiet
    /// for [`HAND_BACK_AFTER`], or a frame has just been passed to a free job thread.
    fn read_while_busy<R>(
        &self,
        reader: &mut BufReader<UnixStream>,
        read: &mut impl FnMut(&mut BufReader<UnixStream>) -> R,
        deliver: &mut impl FnMut(Option<R>),
    ) {
        loop {
            if reader.buffer().is_empty() && !self.readable_within(HAND_BACK_AFTER) {
                if self.job_thread_free() {
                    return;
                }
                continue;
            }
            deliver(Some(read(reader)));
            if self.job_thread_free() {
                return;
            }
        }
    }

    fn job_thread_free(&self) -> bool {
        self.current_work.load(Ordering::Relaxed) == NO_WORK
            && self.awaited_replies.load(Ordering::Relaxed) == 0
            && !self.reads_ahead()
    }

    /// Waits up to `timeout`, or until woken.
    fn sleep(&self, timeout: Duration) {
        let mut wake = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        if !*wake {
            wake = self
                .woken
                .wait_timeout(wake, timeout)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *wake = false;
    }

    /// Whether the channel has bytes (or its end) to read within `timeout`.
    fn readable_within(&self, timeout: Duration) -> bool {
        let mut poll = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, owned by this frame, for the duration of the call.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        // An interrupted poll says "nothing yet": the caller looks again.
        ready > 0
    }
}
