//! The local transport: worker processes on this machine, each joined to the master by
//! a private socketpair (see [`super::process`]), each fed its own jobs.
//!
//! - [`link`]: the master's writing end of a worker's channel;
//! - [`reader`]: reading a worker's frames, on a task or, for a worker with a lane,
//!   on a thread that sends its next staged jobs itself.
//!
//! Nothing is stored apart from the channels, so a run has nothing to resume or close.
//!
//! Must not import the master or another backend.

mod link;
mod reader;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::lane::Lane;
use super::link::WorkerLink;
use super::process::{self, watch_exit};
use super::{Context, Feed, Pending, StartedWorker, Transport, WorkerSpec};
use crate::error::{Error, Kind};
use link::Link;

/// How long the master waits for a dead worker's last frames.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

pub(crate) struct LocalTransport {
    context: Context,
}

impl LocalTransport {
    pub fn new(context: Context) -> Self {
        LocalTransport { context }
    }

    /// Starts a worker process with a private channel, its reader, and the task that
    /// watches its exit.
    async fn start(&self, spec: WorkerSpec) -> Result<StartedWorker, Error> {
        let spawn_error = |e| Error::new(Kind::Spawn(e));
        let mut spawned =
            process::spawn_worker(&spec.worker_type, &spec.env, spec.output.as_ref(), true)
                .await
                .map_err(spawn_error)?;
        let Some(channel) = spawned.channel.take() else {
            let _ = spawned.child.start_kill();
            return Err(Error::usage("a local worker started without its channel"));
        };
        let worker_id = spec.worker_id;
        let (link, lane, reader) = match spec.lane_window {
            // A lane's channel stays out of the run loop's sight: threads of its own
            // read and write it.
            Some(window) => match self.start_lane(worker_id, channel, window, spec.config) {
                Ok((link, lane, reader)) => (link, Some(lane), reader),
                Err(e) => {
                    // Nobody would ever talk to it.
                    let _ = spawned.child.start_kill();
                    return Err(e);
                }
            },
            None => {
                let (read, write) = channel.into_split();
                let link: WorkerLink = Link::start(write);
                let _ = link.send(spec.config);
                let reader = tokio::spawn(reader::read_frames(
                    worker_id,
                    read,
                    self.context.shared.clone(),
                    link.clone(),
                    self.context.inbox.clone(),
                    self.context.max_frame,
                ));
                (link, None, reader)
            }
        };
        let kill = Arc::new(Notify::new());
        tokio::spawn(watch_exit(
            worker_id,
            spawned.child,
            last_frames(reader),
            kill.clone(),
            self.context.inbox.clone(),
        ));
        Ok(StartedWorker {
            link,
            feed: Feed::Own,
            lane,
            kill,
        })
    }

    /// Takes a worker's channel out of the runtime's sight and starts its lane, with a
    /// reader thread and a link whose writes need no task.
    fn start_lane(
        &self,
        worker_id: u64,
        channel: tokio::net::UnixStream,
        window: usize,
        config: Bytes,
    ) -> Result<(WorkerLink, Arc<Lane>, JoinHandle<()>), Error> {
        let spawn_error = |e| Error::new(Kind::Spawn(e));
        let socket = channel.into_std().map_err(spawn_error)?;
        // The reader blocks in `read`; the link's writes never wait (MSG_DONTWAIT).
        socket.set_nonblocking(false).map_err(spawn_error)?;
        let read = socket.try_clone().map_err(spawn_error)?;
        let link: WorkerLink = Link::start_plain(socket, format!("conductor-link-{worker_id}"))
            .map_err(spawn_error)?;
        let _ = link.send(config);
        let lane = Lane::new(link.clone(), window);
        let reader = reader::read_frames_on_thread(
            worker_id,
            read,
            self.context.shared.clone(),
            link.clone(),
            lane.clone(),
            self.context.inbox.clone(),
            self.context.max_frame,
        );
        if reader.is_err() {
            link.close();
        }
        Ok((link, lane, reader?))
    }
}

/// Lets a dead worker's reader pass on the frames it sent before exiting, for at most
/// [`DRAIN_WAIT`].
async fn last_frames(reader: JoinHandle<()>) {
    let abort = reader.abort_handle();
    if tokio::time::timeout(DRAIN_WAIT, reader).await.is_err() {
        abort.abort();
    }
}

impl Transport for LocalTransport {
    fn start_worker(&self, spec: WorkerSpec) -> Pending<'_, Result<StartedWorker, Error>> {
        Box::pin(self.start(spec))
    }

    fn link_to_joined(&self, _worker_id: u64) -> Option<WorkerLink> {
        None
    }

    fn hand_out(&self, _jobs: Bytes, _retried: Vec<(u64, u32)>) {
        debug_assert!(false, "the local transport has no run queue");
    }

    fn queue_window(&self) -> usize {
        0
    }

    fn frame_limit(&self) -> usize {
        usize::MAX
    }

    fn resumes_results(&self) -> bool {
        false
    }

    fn results_stored(&self) -> Pending<'_, Option<u64>> {
        Box::pin(std::future::ready(None))
    }

    fn results_read(&self) -> u64 {
        0
    }

    fn close(&self, _complete: bool) -> Pending<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}
