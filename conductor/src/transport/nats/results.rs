//! The master's reader of the results stream: every results frame any worker stored,
//! turned into a worker event, and `CaughtUp` once what an earlier master left is read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::seal::{Purpose, Sealer};
use super::{header_u64, HEADER_WORKER, RETRY};
use crate::transport::worker_event::{FromWorker, WorkerEvent};

/// Reads the results stream from the start: every results frame any worker stored,
/// including those stored while no master was listening. The run loop settles each
/// job once, so frames read twice after a reconnect change nothing.
pub(super) async fn read_results(
    jetstream: jetstream::Context,
    stream_name: String,
    stored: u64,
    read: Arc<AtomicU64>,
    to_master: mpsc::UnboundedSender<FromWorker>,
    sealer: Arc<Sealer>,
) {
    let mut next_sequence = 1;
    let mut caught_up = stored == 0;
    if caught_up {
        let _ = to_master.send(FromWorker {
            worker_id: 0,
            event: WorkerEvent::CaughtUp,
        });
    }
    loop {
        let consumer = match results_consumer(&jetstream, &stream_name, next_sequence).await {
            Ok(consumer) => consumer,
            Err(e) => {
                tracing::warn!("cannot read the results stream {stream_name}, retrying: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut messages = match consumer
            .stream()
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await
        {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!("cannot read the results stream {stream_name}, retrying: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(message) => message,
                // Recreated from where it stopped, whatever went wrong.
                Err(_) => break,
            };
            // Caught up with what was stored when nothing more is waiting.
            let mut catching_up = false;
            if let Ok(info) = message.info() {
                next_sequence = info.stream_sequence + 1;
                catching_up = !caught_up && info.pending == 0;
            }
            if let Some(event) = results_event(&message.message, &sealer) {
                let _ = to_master.send(event);
            }
            read.store(next_sequence - 1, Ordering::SeqCst);
            if catching_up {
                caught_up = true;
                let _ = to_master.send(FromWorker {
                    worker_id: 0,
                    event: WorkerEvent::CaughtUp,
                });
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// The worker event for one message of the results stream; `None` (counted and
/// logged) for a message that is not a results frame sealed by a worker of the run.
fn results_event(message: &async_nats::Message, sealer: &Sealer) -> Option<FromWorker> {
    let subject = message.subject.as_str();
    let Some(worker_id) = header_u64(message, HEADER_WORKER) else {
        sealer
            .rejections
            .note("unknown", subject, "no valid worker header");
        return None;
    };
    // Sealed for the worker its header names: a header changed does not open.
    let Some(body) = sealer
        .key
        .open(Purpose::Results, &worker_id.to_string(), &message.payload)
    else {
        let sender = format!("worker {worker_id}");
        sealer
            .rejections
            .note(&sender, subject, "a results message");
        return None;
    };
    if body.first() != Some(&crate::wire::KIND_RESULTS) {
        tracing::warn!(worker_id, "a malformed results message was ignored");
        return None;
    }
    Some(FromWorker {
        worker_id,
        event: WorkerEvent::Results(bytes::Bytes::from(body).split_off(1)),
    })
}

async fn results_consumer(
    jetstream: &jetstream::Context,
    stream_name: &str,
    start_sequence: u64,
) -> Result<consumer::PullConsumer, async_nats::Error> {
    let stream = jetstream.get_stream(stream_name).await?;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence },
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await?;
    Ok(consumer)
}
