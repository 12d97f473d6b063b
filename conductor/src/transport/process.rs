//! Starting worker processes: copies of this executable joined to the master by a
//! private socket pair.
//!
//! The worker's end of the pair is the only way in: no path, no port. It becomes the
//! child's stdin, so it is inherited by that one child only (every other fd of ours is
//! close-on-exec), and the worker moves it off stdin at once (see
//! [`crate::boot`]). On Linux the worker also asks the kernel to kill it when its
//! parent dies (`PR_SET_PDEATHSIG`). That signal fires when the *thread* that started
//! the child exits, so all spawns happen on one thread that lives as long as the
//! process.
//!
//! Nothing runs in the child between fork and exec, so the standard library starts it
//! with `posix_spawn` (a vfork), not a fork that copies the master's page tables:
//! a worker starts ~0.5 ms sooner.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use tokio::process::Child;
use tokio::sync::{mpsc as async_mpsc, Notify};

use super::worker_event::{FromWorker, WorkerEvent};

use crate::boot::env::{ENV_CHANNEL_FD, ENV_MASTER_PID, ENV_WORKER_TYPE};
use crate::boot::test_harness_args;

/// A started worker process and the master's end of its channel, if it has one.
pub(crate) struct Spawned {
    pub child: Child,
    pub channel: Option<tokio::net::UnixStream>,
}

struct SpawnRequest {
    command: std::process::Command,
    runtime: tokio::runtime::Handle,
    reply: tokio::sync::oneshot::Sender<io::Result<Child>>,
}

/// Where a worker's output lines go when the master does not let it write to its own
/// stdout and stderr (a progress bar is drawn there): the line, and whether it came
/// from stderr.
pub(crate) type OutputSink = Arc<dyn Fn(&[u8], bool) + Send + Sync>;

/// Starts one worker process of `worker_type` with extra environment `env`. With an
/// `output` sink its stdout and stderr are pipes whose lines go there (so they do not
/// tear a progress bar); otherwise they are the master's. Without `private_channel`
/// the worker finds its master through `env` (a transport that joins workers).
pub(crate) async fn spawn_worker(
    worker_type: &str,
    env: &[(String, String)],
    output: Option<&OutputSink>,
    private_channel: bool,
) -> io::Result<Spawned> {
    let (master_end, worker_end) = match private_channel {
        true => {
            let (master_end, worker_end) = UnixStream::pair()?;
            for end in [&master_end, &worker_end] {
                ask_for_send_buffer(end, CHANNEL_SEND_BUFFER);
            }
            (Some(master_end), Some(above_stdio(worker_end)?))
        }
        false => (None, None),
    };
    let exe = std::env::current_exe()?;
    // On Linux, /proc/self/exe still starts this program after its file was replaced
    // or deleted (a rebuild during a long run); argv[0] keeps the real path.
    #[cfg(target_os = "linux")]
    let mut command = {
        let mut command = std::process::Command::new("/proc/self/exe");
        command.arg0(&exe);
        command
    };
    #[cfg(not(target_os = "linux"))]
    let mut command = std::process::Command::new(exe);
    match test_harness_args() {
        Some(args) => command.args(args),
        None => command.args(std::env::args_os().skip(1)),
    };
    command
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env(ENV_WORKER_TYPE, worker_type)
        .env(ENV_MASTER_PID, std::process::id().to_string())
        // Its own process group: a terminal's Ctrl-C reaches the master, which decides.
        .process_group(0);
    // Our copy of the worker's end goes with the command, which the spawner drops
    // once the child has started: it must close, or the worker's exit would never
    // show as end-of-file here.
    match worker_end {
        Some(end) => {
            command
                .stdin(Stdio::from(OwnedFd::from(end)))
                .env(ENV_CHANNEL_FD, "0");
        }
        None => {
            command.stdin(Stdio::null());
        }
    }
    if output.is_some() {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    let request = SpawnRequest {
        command,
        runtime: tokio::runtime::Handle::current(),
        reply,
    };
    spawner()?
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(request)
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    let mut child = answer
        .await
        .map_err(|_| io::Error::other("the spawner thread dropped a request"))??;
    if let Some(output) = output {
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(forward_output(stdout, output.clone(), false));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward_output(stderr, output.clone(), true));
        }
    }
    let channel = match master_end {
        Some(master_end) => {
            master_end.set_nonblocking(true)?;
            Some(tokio::net::UnixStream::from_std(master_end)?)
        }
        None => None,
    };
    Ok(Spawned { child, channel })
}

/// How many bytes each end of a channel asks the kernel to buffer: a whole frame of
/// the largest batch. With the default (about 200 KiB), a 1 MiB frame took five
/// writes, each after a wake-up; 1 MiB jobs moved 1.6× faster with this. The kernel
/// caps it at `net.core.wmem_max` without complaint.
const CHANNEL_SEND_BUFFER: libc::c_int = 1 << 20;

fn ask_for_send_buffer(socket: &UnixStream, bytes: libc::c_int) {
    // SAFETY: a valid socket and a pointer to a c_int of the length given. A refusal
    // only leaves the default buffer.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Moves the worker's end of the channel above fds 0–2: if the master runs with stdio
/// closed, the pair could land there, and setting up the child's stdio would clobber it.
fn above_stdio(stream: UnixStream) -> io::Result<UnixStream> {
    if stream.as_raw_fd() > 2 {
        return Ok(stream);
    }
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd that nothing else owns.
    let fd = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open and owned by nothing else.
    Ok(unsafe { UnixStream::from_raw_fd(fd) })
}

/// The one long-lived thread that forks every worker; an error if the system refuses
/// it (the next start tries again).
fn spawner() -> io::Result<&'static Mutex<mpsc::Sender<SpawnRequest>>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    if let Some(spawner) = SPAWNER.get() {
        return Ok(spawner);
    }
    let (tx, rx) = mpsc::channel::<SpawnRequest>();
    let started = std::thread::Builder::new()
        .name("conductor-spawner".into())
        .spawn(move || {
            for request in rx {
                let _runtime = request.runtime.enter();
                let mut command = tokio::process::Command::from(request.command);
                command.kill_on_drop(true);
                let spawned = command.spawn();
                // Closes our copy of the worker's end of its channel.
                drop(command);
                let _ = request.reply.send(spawned);
            }
        });
    started?;
    // Two conductors may race here: the loser's sender is dropped, so its thread ends
    // at once, having started nothing.
    Ok(SPAWNER.get_or_init(|| Mutex::new(tx)))
}

/// Waits for a worker process to end (or kills it when `kill` is notified), then for
/// `last_frames` (what it sent before it exited must reach the run loop first), then
/// reports the exit.
pub(crate) async fn watch_exit(
    worker_id: u64,
    mut child: Child,
    last_frames: impl Future<Output = ()>,
    kill: Arc<Notify>,
    to_master: async_mpsc::UnboundedSender<FromWorker>,
) {
    let mut group = GroupReaper(child.id());
    let status = tokio::select! {
        status = child.wait() => status,
        _ = kill.notified() => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    // At once: the longer the group's id stays free, the likelier it is reused.
    group.reap();
    last_frames.await;
    let _ = to_master.send(FromWorker {
        worker_id,
        event: WorkerEvent::Exited(status),
    });
}

/// Ends what is left of a worker's process group when dropped: once the worker has
/// exited (its job code's processes must not outlive it, holding our stdout open),
/// or when the run is torn down while it runs. Each worker leads a group of its own
/// (see [`spawn_worker`]), so the group is the worker and what its jobs started.
struct GroupReaper(Option<u32>);

impl GroupReaper {
    /// Kills the group now, once.
    fn reap(&mut self) {
        let Some(pid) = self
            .0
            .take()
            .and_then(|pid| libc::pid_t::try_from(pid).ok())
        else {
            return;
        };
        if pid > 1 {
            // SAFETY: kill takes a pid and a signal; a negative pid names a group, here
            // the one the worker leads. A group already empty is no error worth a word.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
}

impl Drop for GroupReaper {
    fn drop(&mut self) {
        self.reap();
    }
}

/// Forwards a worker's output to `sink`, line by line.
async fn forward_output<R>(output: R, sink: OutputSink, to_stderr: bool)
where
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncBufReadExt;
    let mut output = tokio::io::BufReader::new(output);
    let mut line = Vec::new();
    loop {
        line.clear();
        match output.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => sink(&line, to_stderr),
        }
    }
}
