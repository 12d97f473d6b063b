//! Ctrl-C and SIGTERM while a run is going: the first asks for a graceful stop, the
//! second for an immediate one, and a third gets the program's old behaviour back.
//!
//! The handler only counts signals in an atomic (all a signal handler may safely do);
//! each run loop compares the count with what it saw when it started. The previous
//! dispositions are restored when the last run ends, so a library never keeps a
//! program from dying of Ctrl-C after its batch is over. Workers sit in their own
//! process groups, so a terminal's Ctrl-C reaches only the master, which decides.

use std::io;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::Mutex;

use crate::report::Interrupt;

/// Signals caught since the process started.
static CAUGHT: AtomicU32 = AtomicU32::new(0);
/// The last signal caught.
static LAST: AtomicI32 = AtomicI32::new(0);
/// The installed handlers: how many runs watch, and the dispositions to restore.
static INSTALLED: Mutex<Option<Installed>> = Mutex::new(None);

const WATCHED: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

struct Installed {
    watchers: usize,
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

// SAFETY: `sigaction` is plain old data; it is only moved between threads under the lock.
unsafe impl Send for Installed {}

extern "C" fn on_signal(signal: libc::c_int) {
    LAST.store(signal, Ordering::Relaxed);
    CAUGHT.fetch_add(1, Ordering::SeqCst);
}

/// One run's view of the signals; dropping it gives the handlers back when it was
/// the last.
pub(crate) struct SignalWatch {
    seen_at_start: u32,
    released: bool,
}

impl SignalWatch {
    /// Installs the handlers (once for all runs) and starts counting from now.
    pub fn install() -> io::Result<Self> {
        let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
        match installed.as_mut() {
            Some(installed) => installed.watchers += 1,
            None => {
                let mut previous = Vec::new();
                for signal in WATCHED {
                    match replace_handler(signal, on_signal as *const () as libc::sighandler_t) {
                        Ok(old) => previous.push((signal, old)),
                        Err(e) => {
                            restore(&previous);
                            return Err(e);
                        }
                    }
                }
                *installed = Some(Installed {
                    watchers: 1,
                    previous,
                });
            }
        }
        Ok(SignalWatch {
            seen_at_start: CAUGHT.load(Ordering::SeqCst),
            released: false,
        })
    }

    /// How many signals arrived since this run started, and the last one.
    pub fn caught(&self) -> (u32, Interrupt) {
        let count = CAUGHT
            .load(Ordering::SeqCst)
            .wrapping_sub(self.seen_at_start);
        (count, Interrupt::from_signal(LAST.load(Ordering::Relaxed)))
    }

    /// Gives the handlers back now (after the second signal, so a third one acts as
    /// the program would without conductor).
    pub fn release(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
        let last = match installed.as_mut() {
            Some(state) => {
                state.watchers -= 1;
                state.watchers == 0
            }
            None => false,
        };
        if last {
            if let Some(state) = installed.take() {
                restore(&state.previous);
            }
        }
    }
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        self.release();
    }
}

fn replace_handler(
    signal: libc::c_int,
    handler: libc::sighandler_t,
) -> io::Result<libc::sigaction> {
    // SAFETY: both structs are fully initialised (zeroed, then filled); the handler
    // only touches atomics, which is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, &action, &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(old)
    }
}

fn restore(previous: &[(libc::c_int, libc::sigaction)]) {
    for (signal, old) in previous {
        // SAFETY: `old` is what sigaction gave us for this signal.
        unsafe {
            libc::sigaction(*signal, old, std::ptr::null_mut());
        }
    }
}
