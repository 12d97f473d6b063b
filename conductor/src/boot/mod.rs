//! Boot: which role this process plays, read from the environment its master gave it.
//!
//! A master starts workers as copies of its own executable with a few `CONDUCTOR_*`
//! variables set ([`env`](mod@env)). The role dispatch reads them, removes them (so programs
//! started by job code do not think they are workers too) and runs the registered
//! worker ([`registry`]); a test binary's workers enter through [`test_entry`].
//!
//! Must not import the master: a worker process never runs master code.

pub(crate) mod env;
pub(crate) mod registry;
mod test_entry;

use env::{
    ENV_CHANNEL_FD, ENV_JOIN, ENV_MASTER_PID, ENV_NATS_URL, ENV_REJOINING, ENV_RUN, ENV_RUN_SECRET,
    ENV_WORKER_ID, ENV_WORKER_TYPE,
};
pub use test_entry::silence_test_harness;
pub use test_entry::TestEntry;
pub(crate) use test_entry::{give_back_stdout, in_test_binary, test_harness_args};

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;

use crate::worker::exit::EXIT_SETUP;
use crate::worker::WorkerBoot;

/// Runs the worker and exits when this process was started as one; returns otherwise.
pub(crate) fn dispatch_role() {
    if let Some(command) = std::env::var_os(env::ENV_RUNS) {
        operate_runs(&command.to_string_lossy());
    }
    if std::env::var_os(ENV_JOIN).is_some() || std::env::var_os(ENV_WORKER_TYPE).is_some() {
        crate::worker::logs::install();
        die_with_master();
    }
    if let Some(run) = std::env::var_os(ENV_JOIN) {
        join_run(&run.to_string_lossy());
    }
    let Some(worker_type) = std::env::var_os(ENV_WORKER_TYPE) else {
        return;
    };
    let fd = std::env::var(ENV_CHANNEL_FD);
    // Safe in edition 2021; role dispatch runs first in `main`, before other threads.
    std::env::remove_var(ENV_WORKER_TYPE);
    std::env::remove_var(ENV_CHANNEL_FD);
    let worker_type = worker_type.to_string_lossy().into_owned();
    name_process_after_program();
    let Some(channel) = fd
        .ok()
        .and_then(|fd| fd.parse::<RawFd>().ok())
        .and_then(adopt_channel)
    else {
        tracing::error!(
            target: "conductor::worker",
            "this process was started as a worker of type `{worker_type}` without a valid \
             {ENV_CHANNEL_FD}; workers are started by their master, not by hand"
        );
        std::process::exit(EXIT_SETUP);
    };
    let registration = match registry::find(&worker_type) {
        Ok(registration) => registration,
        Err(e) => refuse(channel, &e.to_string()),
    };
    let code = (registration.run)(WorkerBoot {
        channel,
        worker_type,
    });
    crate::worker::exit::exit_worker(code);
}

/// Joins the distributed run `run` as a worker (started by hand on any machine, or by
/// the master itself), runs it, and exits.
fn join_run(run: &str) -> ! {
    let url = std::env::var(ENV_NATS_URL).ok();
    let secret = std::env::var(ENV_RUN_SECRET).ok().filter(|s| !s.is_empty());
    let worker_type = std::env::var(ENV_WORKER_TYPE).ok();
    // `<id>.<token>`, set by a master for a worker it started itself.
    let worker_id = std::env::var(ENV_WORKER_ID).ok().and_then(|value| {
        let (id, token) = value.split_once('.')?;
        Some((id.parse::<u64>().ok()?, token.parse::<u64>().ok()?))
    });
    let rejoining = std::env::var_os(ENV_REJOINING).is_some();
    // What it joined with, to join again the same way when it is recycled.
    let mut joined_with: Vec<(String, String)> =
        [ENV_JOIN, ENV_WORKER_TYPE, ENV_NATS_URL, ENV_RUN_SECRET]
            .iter()
            .filter_map(|name| Some((name.to_string(), std::env::var(name).ok()?)))
            .collect();
    for name in [
        ENV_REJOINING,
        ENV_JOIN,
        ENV_WORKER_TYPE,
        ENV_WORKER_ID,
        ENV_NATS_URL,
        ENV_RUN,
        ENV_RUN_SECRET,
    ] {
        std::env::remove_var(name);
    }
    // Read once, then out of the environment that job code's programs inherit.
    let auth = env::nats_auth_with_env(&crate::NatsAuth::default());
    joined_with.extend(env::nats_auth_env(&auth));
    env::forget_nats_auth_env();
    name_process_after_program();
    let Some(url) = url else {
        tracing::error!(
            target: "conductor::worker",
            "{ENV_JOIN}={run} needs {ENV_NATS_URL}, the NATS server of the run"
        );
        std::process::exit(EXIT_SETUP);
    };
    let joined = match crate::transport::join(&url, run, worker_type, worker_id, auth, secret) {
        Ok(joined) => joined,
        // Recycled as the run ended: nothing left to join.
        Err(reason) if rejoining => {
            tracing::info!(target: "conductor::worker", "not joining run `{run}` again: {reason}");
            std::process::exit(0);
        }
        Err(reason) => {
            tracing::error!(target: "conductor::worker", "cannot join run `{run}`: {reason}");
            std::process::exit(EXIT_SETUP);
        }
    };
    let registration = match registry::find(&joined.worker_type) {
        Ok(registration) => registration,
        Err(e) => refuse(joined.channel, &e.to_string()),
    };
    let code = (registration.run)(WorkerBoot {
        channel: joined.channel,
        worker_type: joined.worker_type,
    });
    if code == 0 && crate::transport::recycled() {
        start_afresh(joined_with);
    }
    crate::worker::exit::exit_worker(code);
}

/// The operator's `CONDUCTOR_RUNS`: this process is a tool for the runs on a server.
fn operate_runs(command: &str) -> ! {
    let Ok(url) = std::env::var(ENV_NATS_URL) else {
        eprintln!(
            "conductor: {}={command} needs {ENV_NATS_URL}",
            env::ENV_RUNS
        );
        std::process::exit(2);
    };
    let auth = env::nats_auth_with_env(&crate::NatsAuth::default());
    let secret = std::env::var(ENV_RUN_SECRET).ok().filter(|s| !s.is_empty());
    std::process::exit(crate::transport::operate_runs(command, &url, auth, secret))
}

/// A worker from elsewhere that ran its `max_jobs_per_worker` becomes a fresh process
/// of the same program (same pid, arguments and settings) that joins the run again, as
/// a worker the master starts would be replaced.
fn start_afresh(joined_with: Vec<(String, String)>) -> ! {
    use std::os::unix::process::CommandExt;
    // Its last frames reach the server first.
    crate::worker::exit::before_exit();
    let program = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
    let error = std::process::Command::new(program)
        .args(std::env::args_os().skip(1))
        .envs(joined_with)
        .env(ENV_REJOINING, "1")
        .exec();
    tracing::error!(target: "conductor::worker", "cannot start afresh to join again: {error}");
    std::process::exit(0);
}

/// Has the kernel kill this worker when the master that started it dies; exits now if
/// it already has. Workers started by hand (no master pid) live on their own.
fn die_with_master() {
    let master = std::env::var(ENV_MASTER_PID).ok();
    std::env::remove_var(ENV_MASTER_PID);
    let Some(master) = master.and_then(|pid| pid.parse::<u32>().ok()) else {
        return;
    };
    crate::worker::exit::set_started_by_master();
    #[cfg(target_os = "linux")]
    {
        use crate::worker::exit::{
            end_group_on_master_death, leads_its_group, master_death_signal,
        };
        // A worker that leads its group takes the processes its jobs started along.
        let signal = match leads_its_group() && end_group_on_master_death().is_ok() {
            true => master_death_signal(),
            false => libc::SIGKILL,
        };
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and nothing else.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal) };
    }
    // The master may have died before the line above: this process then has a new
    // parent, and no signal would ever come.
    // SAFETY: getppid cannot fail.
    if unsafe { libc::getppid() } as u32 != master {
        std::process::exit(crate::worker::exit::EXIT_MASTER_GONE);
    }
}

/// Masters start workers through /proc/self/exe, so the kernel names them "exe";
/// give them the program's name back, for `ps`, `top` and `pgrep`.
fn name_process_after_program() {
    #[cfg(target_os = "linux")]
    {
        let Some(arg0) = std::env::args_os().next() else {
            return;
        };
        let Some(name) = std::path::Path::new(&arg0).file_name() else {
            return;
        };
        let mut bytes: Vec<u8> = name.as_encoded_bytes().iter().copied().take(15).collect();
        bytes.push(0);
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, bytes.as_ptr() as libc::c_ulong, 0, 0, 0) };
    }
}

/// Takes ownership of the inherited channel and keeps it from leaking into programs
/// that job code starts (they would hold it open and hide the master's exit). A
/// channel that came as stdin moves to an fd of its own, and stdin becomes
/// /dev/null, as job code expects of a worker.
fn adopt_channel(fd: RawFd) -> Option<UnixStream> {
    // SAFETY: fcntl on an integer fd is harmless; it fails with EBADF if it is not
    // open. F_DUPFD_CLOEXEC makes a new fd that nothing else owns.
    let channel = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if channel < 0 {
        return None;
    }
    // SAFETY: open and dup2 on fds this process owns; /dev/null replaces `fd`.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if fd == 0 && null >= 0 {
            libc::dup2(null, 0);
        } else {
            libc::close(fd);
        }
        if null >= 0 && null != fd {
            libc::close(null);
        }
    }
    // SAFETY: the master created this fd for us alone and nothing else in this
    // process owns it.
    Some(unsafe { UnixStream::from_raw_fd(channel) })
}

fn refuse(channel: UnixStream, reason: &str) -> ! {
    use std::io::Write;
    tracing::error!(target: "conductor::worker", "{reason}");
    let mut channel = channel;
    let refusal = crate::wire::ToMaster::Refused {
        reason: reason.to_string(),
    };
    let _ = channel.write_all(&crate::wire::control_frame(&refusal));
    crate::worker::exit::exit_worker(EXIT_SETUP);
}

/// Fails when this process was started as a worker but never dispatched its role:
/// running the master's code here would start workers of workers without end.
pub(crate) fn ensure_master() -> Result<(), crate::Error> {
    if std::env::var_os(ENV_WORKER_TYPE).is_some() || std::env::var_os(ENV_JOIN).is_some() {
        return Err(crate::Error::usage(
            "this process was started as a conductor worker but its role was never dispatched: \
             put #[conductor::main] on `main` (or conductor::test_support!() in a test crate)",
        ));
    }
    Ok(())
}
