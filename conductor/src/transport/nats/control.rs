//! Control frames from the workers of this master (stats, messages, lookups, replies,
//! crashes, goodbyes, heartbeats), routed like a local worker's frames.

use std::sync::Arc;

use async_nats::Client;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::link::NatsLink;
use super::{header_u64, RunNames, HEADER_HEARTBEAT, HEADER_MASTER, HEADER_WORKER};
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
) {
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
        let Some(worker_id) = header_u64(&message, HEADER_WORKER) else {
            tracing::warn!(
                subject = %message.subject,
                "a message without a valid {HEADER_WORKER} header was ignored"
            );
            continue;
        };
        let send = |event| {
            let _ = to_master.send(FromWorker { worker_id, event });
        };
        let heartbeat = message
            .headers
            .as_ref()
            .is_some_and(|h| h.get(HEADER_HEARTBEAT).is_some());
        if heartbeat {
            send(WorkerEvent::Heartbeat);
            continue;
        }
        let link = shared
            .lock_links()
            .get(&worker_id)
            .cloned()
            .unwrap_or_else(|| {
                NatsLink::start(client.clone(), names.worker_subject(&master_id, worker_id))
            });
        if let Err(reason) = route_frame(worker_id, message.payload, &shared, &link, &send) {
            tracing::warn!(
                worker_id,
                "a malformed message from a worker was ignored: {reason}"
            );
            send(WorkerEvent::Malformed(reason));
        }
    }
}
