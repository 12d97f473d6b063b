//! How a worker process ends: its exit codes, and the one way out that lets a
//! transport send what it holds first.

use std::sync::atomic::{AtomicBool, Ordering};

/// Exit codes of a worker process.
pub(crate) const EXIT_OK: i32 = 0;
pub(crate) const EXIT_SETUP: i32 = 3;
pub(crate) const EXIT_CRASHED: i32 = 4;
pub(crate) const EXIT_ABORTED: i32 = 5;
pub(crate) const EXIT_MASTER_GONE: i32 = 6;
pub(crate) const EXIT_PROTOCOL: i32 = 7;

/// Runs before a worker process exits: set by a transport whose last frames need
/// time to leave the process (the NATS bridge).
static BEFORE_EXIT: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>> = std::sync::OnceLock::new();

#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) fn set_before_exit(hook: Box<dyn Fn() + Send + Sync>) {
    let _ = BEFORE_EXIT.set(hook);
}

/// Set by the first thread that ends the process.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Ends the worker process, after the transport has sent what it holds. The first
/// caller decides the exit code: a thread that sees the channel close because the
/// process is already exiting must not turn a clean exit into "master gone".
pub(crate) fn exit_worker(code: i32) -> ! {
    if EXITING.swap(true, Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
    if let Some(hook) = BEFORE_EXIT.get() {
        hook();
    }
    std::process::exit(code)
}

/// Whether the process is already on its way out (a closed channel is then no news).
pub(crate) fn is_exiting() -> bool {
    EXITING.load(Ordering::SeqCst)
}
