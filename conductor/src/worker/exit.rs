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
/// Runs what must happen before the process ends (or becomes another program).
pub(crate) fn before_exit() {
    if let Some(hook) = BEFORE_EXIT.get() {
        hook();
    }
}

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

/// Set when a master started this worker, in a process group of its own.
static STARTED_BY_MASTER: AtomicBool = AtomicBool::new(false);

/// Notes that a master started this worker (see [`leads_its_group`]).
pub(crate) fn set_started_by_master() {
    STARTED_BY_MASTER.store(true, Ordering::Relaxed);
}

/// Whether this worker leads a process group made for it by its master: the processes
/// its job code starts are then in that group, and go with it. A worker started by
/// hand may lead a group too (a shell's job control makes one per pipeline), which
/// holds the user's other processes: not ours to end.
pub(crate) fn leads_its_group() -> bool {
    // SAFETY: getpgrp and getpid cannot fail.
    STARTED_BY_MASTER.load(Ordering::Relaxed) && unsafe { libc::getpgrp() == libc::getpid() }
}

/// Ends this worker and every process its job code started (the whole group it leads),
/// when no master is left to do it.
pub(crate) fn end_with_group(code: i32) -> ! {
    if leads_its_group() {
        let _ = std::io::Write::flush(&mut std::io::stdout());
        // SAFETY: kill takes a pid and a signal; 0 is this process's own group.
        unsafe { libc::kill(0, libc::SIGKILL) };
    }
    exit_worker(code)
}

/// The signal the kernel sends a worker when its master dies: caught, so that the
/// worker takes the processes its job code started along (a plain SIGKILL would leave
/// them running, holding the master's stdout open).
#[cfg(target_os = "linux")]
pub(crate) fn master_death_signal() -> libc::c_int {
    libc::SIGRTMAX() - 3
}

/// Has [`master_death_signal`] end the worker's whole process group.
#[cfg(target_os = "linux")]
pub(crate) fn end_group_on_master_death() -> std::io::Result<()> {
    extern "C" fn on_master_death(_: libc::c_int) {
        // SAFETY: kill is async-signal-safe; 0 is this process's own group.
        unsafe { libc::kill(0, libc::SIGKILL) };
    }
    let handler: extern "C" fn(libc::c_int) = on_master_death;
    // SAFETY: a zeroed sigaction with a valid handler and an empty mask.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(master_death_signal(), &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether the process is already on its way out (a closed channel is then no news).
pub(crate) fn is_exiting() -> bool {
    EXITING.load(Ordering::SeqCst)
}
