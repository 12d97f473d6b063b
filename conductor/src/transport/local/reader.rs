//! Reading a local worker's channel: a task on the run loop's runtime, or, for a
//! worker with a lane, a thread of its own that sends the worker's next staged jobs
//! the moment it answers.

use std::sync::Arc;

use tokio::net::unix::OwnedReadHalf;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{Error, Kind};
use crate::handle::Shared;
use crate::transport::lane::{Answer, Lane};
use crate::transport::link::WorkerLink;
use crate::transport::route::route_frame;
use crate::transport::worker_event::{FromWorker, WorkerEvent};
use crate::wire::FrameReader;

/// Reads one worker's frames until its channel closes.
pub(super) async fn read_frames(
    worker_id: u64,
    read: OwnedReadHalf,
    shared: Arc<Shared>,
    link: WorkerLink,
    to_master: mpsc::UnboundedSender<FromWorker>,
    max_frame: usize,
) {
    route_frames(worker_id, read, &shared, link, to_master, max_frame).await;
    shared.forget_requests(worker_id);
}

/// Lookups and replies are answered right here, without the run loop; everything
/// else goes to it.
async fn route_frames(
    worker_id: u64,
    read: OwnedReadHalf,
    shared: &Shared,
    link: WorkerLink,
    to_master: mpsc::UnboundedSender<FromWorker>,
    max_frame: usize,
) {
    let send = |event| {
        let _ = to_master.send(FromWorker { worker_id, event });
    };
    let mut frames = FrameReader::new(read, max_frame);
    loop {
        let body = match frames.next().await {
            Ok(Some(body)) => body,
            Ok(None) => return,
            Err(e) => return send(WorkerEvent::Broken(e.to_string())),
        };
        if let Err(reason) = route_frame(worker_id, body, shared, &link, &send) {
            return send(WorkerEvent::Broken(reason));
        }
    }
}

/// Reads a worker's frames on a thread of its own, so that the worker's next staged
/// jobs leave the moment it answers, whatever the run loop is doing. Answers wait in
/// the lane for the run loop; anything else is passed on at once, after them. The
/// returned task ends when the thread has.
pub(super) fn read_frames_on_thread(
    worker_id: u64,
    socket: std::os::unix::net::UnixStream,
    shared: Arc<Shared>,
    link: WorkerLink,
    lane: Arc<Lane>,
    to_master: mpsc::UnboundedSender<FromWorker>,
    max_frame: usize,
) -> Result<JoinHandle<()>, Error> {
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("conductor-lane-{worker_id}"))
        .spawn(move || {
            let send = |event| {
                let _ = to_master.send(FromWorker { worker_id, event });
            };
            let pass_held = || {
                for body in lane.take_results() {
                    send(WorkerEvent::Results(body));
                }
            };
            let route = |event: WorkerEvent| match event {
                WorkerEvent::Results(body) => match lane.answered(body) {
                    Answer::Forward(body) => {
                        pass_held();
                        send(WorkerEvent::Results(body));
                    }
                    Answer::Held => {}
                    Answer::CallRunLoop => send(WorkerEvent::LaneLow),
                },
                other => {
                    pass_held();
                    send(other);
                }
            };
            let mut frames = FrameReader::new(socket, max_frame);
            loop {
                let body = match frames.next_blocking() {
                    Ok(Some(body)) => body,
                    Ok(None) => break,
                    Err(e) => {
                        route(WorkerEvent::Broken(e.to_string()));
                        break;
                    }
                };
                if let Err(reason) = route_frame(worker_id, body, &shared, &link, &route) {
                    route(WorkerEvent::Broken(reason));
                    break;
                }
            }
            pass_held();
            shared.forget_requests(worker_id);
            let _ = done.send(());
        })
        .map_err(|e| Error::new(Kind::Spawn(e)))?;
    Ok(tokio::spawn(async move {
        let _ = finished.await;
    }))
}
