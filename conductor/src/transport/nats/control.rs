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

/// Turns control frames from workers into worker events (or answers them on the spot,
/// like lookups). A message that is not a valid frame is reported and dropped.
pub(super) async fn read_control(
    mut control: async_nats::Subscriber,
    client: Client,
    names: RunNames,
    master_id: String,
    shared: Arc<Shared>,
    to_master: mpsc::UnboundedSender<FromWorker>,
    sealer: Arc<Sealer>,
) {
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
