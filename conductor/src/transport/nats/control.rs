//! Control frames from the workers of this master (stats, messages, lookups, replies,
//! crashes, goodbyes, heartbeats), routed like a local worker's frames.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::Client;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::link::NatsLink;
use super::seal::{frame_context, Purpose, ReplayWindow, Sealer};
use super::{header_u64, RunNames, HEADER_MASTER, HEADER_WORKER};
use crate::handle::Shared;
use crate::transport::route::route_frame;
use crate::transport::worker_event::{FromWorker, WorkerEvent};

/// The master whose workers' frames are read: where they go, and what opens them.
pub(super) struct Master {
    pub client: Client,
    pub names: RunNames,
    pub master_id: String,
    pub shared: Arc<Shared>,
    pub to_master: mpsc::UnboundedSender<FromWorker>,
    pub sealer: Arc<Sealer>,
    pub last_words: LastWords,
}

/// Turns control frames from workers into worker events (or answers them on the spot,
/// like lookups). A message that is not a valid frame is reported and dropped.
pub(super) async fn read_control(mut control: async_nats::Subscriber, master: Master) {
    let Master {
        client,
        names,
        master_id,
        shared,
        to_master,
        sealer,
        last_words,
    } = master;
    // Each worker's frames are numbered: a number is taken once.
    let mut windows: HashMap<u64, ReplayWindow> = HashMap::new();
    while let Some(message) = control.next().await {
        let ours = message
            .headers
            .as_ref()
            .and_then(|h| h.get(HEADER_MASTER))
            .is_some_and(|m| m.as_str() == master_id);
        if !ours {
            // A worker of an earlier master of the run, or a stray message.
            continue;
        }
        let subject = message.subject.as_str();
        let Some(worker_id) = header_u64(&message, HEADER_WORKER) else {
            sealer
                .rejections
                .note("unknown", subject, "no valid worker header");
            continue;
        };
        let context = frame_context(&master_id, worker_id);
        let opened = sealer
            .key
            .open_numbered(Purpose::ToMaster, &context, &message.payload);
        let Some((sequence, body)) = opened else {
            let sender = format!("worker {worker_id}");
            sealer.rejections.note(&sender, subject, "a control frame");
            continue;
        };
        if !windows.entry(worker_id).or_default().take(sequence) {
            let sender = format!("worker {worker_id}");
            sealer
                .rejections
                .note(&sender, subject, "a control frame played again");
            continue;
        }
        if said_last_word(&body) {
            last_words.heard(worker_id);
        }
        let send = |event| {
            let _ = to_master.send(FromWorker { worker_id, event });
        };
        let link = shared
            .lock_links()
            .get(&worker_id)
            .cloned()
            .unwrap_or_else(|| {
                NatsLink::start(
                    client.clone(),
                    names.worker_subject(&master_id, worker_id),
                    sealer.clone(),
                    context,
                )
            });
        if let Err(reason) = route_frame(worker_id, body.into(), &shared, &link, &send) {
            tracing::warn!(
                worker_id,
                "a malformed message from a worker was ignored: {reason}"
            );
            send(WorkerEvent::Malformed(reason));
        }
    }
}

/// Whether a frame is a worker's last word: its goodbye, or why it crashes.
fn said_last_word(body: &[u8]) -> bool {
    match body.split_first() {
        Some((&crate::wire::KIND_CONTROL, payload)) => matches!(
            crate::wire::decode_control::<crate::wire::ToMaster>(payload),
            Ok(crate::wire::ToMaster::Bye | crate::wire::ToMaster::Crash { .. })
        ),
        _ => false,
    }
}

/// The last words of the master's own worker processes: their exit is reported as
/// soon as the goodbye (or the crash's reason) that travels the server has arrived,
/// and only waits [`LAST_FRAMES_WAIT`] when it has not.
#[derive(Clone, Default)]
pub(super) struct LastWords(Arc<std::sync::Mutex<HashMap<u64, Arc<tokio::sync::Notify>>>>);

/// How long the exit of a worker process of the master's own waits for its last
/// words: they travel the server, apart from the exit.
const LAST_FRAMES_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

impl LastWords {
    fn of(&self, worker_id: u64) -> Arc<tokio::sync::Notify> {
        let mut words = self.0.lock().unwrap_or_else(|p| p.into_inner());
        words.entry(worker_id).or_default().clone()
    }

    fn heard(&self, worker_id: u64) {
        self.of(worker_id).notify_one();
    }

    /// Ends when worker `worker_id` has said its last word, or after
    /// [`LAST_FRAMES_WAIT`].
    pub fn awaited(&self, worker_id: u64) -> impl std::future::Future<Output = ()> + use<> {
        let said = self.of(worker_id);
        let words = self.clone();
        async move {
            let _ = tokio::time::timeout(LAST_FRAMES_WAIT, said.notified()).await;
            words
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&worker_id);
        }
    }
}
