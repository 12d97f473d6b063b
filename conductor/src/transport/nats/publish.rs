//! The master's job publisher: each jobs frame the master hands out becomes one
//! message of the run's work-queue stream (the master sizes frames for that), sealed,
//! and stored once even when a publish is retried.

use std::collections::VecDeque;

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::seal::{Purpose, Sealer};
use super::{HEADER_JOBS, RETRY};

/// Publishes waiting for their acks at once: enough to keep the server busy.
const IN_FLIGHT: usize = 256;

/// A message ready to publish: its id (also the seal's context) and sealed body.
struct Outgoing {
    message_id: String,
    payload: Bytes,
}

/// Publishes each jobs frame as one message, so that its jobs are acked and
/// redelivered together. Keeps up to [`IN_FLIGHT`] publishes waiting for their acks;
/// a publish that fails (the server restarting) is retried until it is stored.
pub(super) async fn publish_jobs(
    jetstream: jetstream::Context,
    subject: String,
    mut frames: mpsc::UnboundedReceiver<(Bytes, Vec<(u64, u32)>)>,
    sealer: std::sync::Arc<Sealer>,
) {
    let mut waiting = VecDeque::with_capacity(IN_FLIGHT);
    loop {
        // Waits for a frame only when no ack is due.
        let next = match waiting.is_empty() {
            true => frames.recv().await,
            false => match frames.try_recv() {
                Ok(frame) => Some(frame),
                Err(mpsc::error::TryRecvError::Empty) => {
                    settle_oldest(&jetstream, &subject, &mut waiting).await;
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            },
        };
        let Some((frame, retried)) = next else {
            while !waiting.is_empty() {
                settle_oldest(&jetstream, &subject, &mut waiting).await;
            }
            return;
        };
        let Some(outgoing) = seal_frame(frame, &retried, &sealer) else {
            continue;
        };
        let ack = publish(&jetstream, &subject, &outgoing).await;
        waiting.push_back((outgoing, ack));
        if waiting.len() >= IN_FLIGHT {
            settle_oldest(&jetstream, &subject, &mut waiting).await;
        }
    }
}

/// Seals a jobs frame for the run queue, under an id that names its jobs: the server
/// stores a message id once, so a frame published twice (a publish repeated after a
/// lost ack, or a resumed master handing out the same jobs soon after) is stored once.
fn seal_frame(mut frame: Bytes, retried: &[(u64, u32)], sealer: &Sealer) -> Option<Outgoing> {
    // Length and kind.
    let body = frame.split_off(5.min(frame.len()));
    let ids = crate::wire::job_ids(body.clone()).ok()?;
    let (first, last) = (*ids.first()?, *ids.last()?);
    // FNV-1a over the ids, and over each retried job's runs before: a retry of a job
    // is another message.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |n: u64| {
        for byte in n.to_le_bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    ids.iter().for_each(|id| mix(*id));
    for (id, before) in retried {
        mix(*id);
        mix(u64::from(*before));
    }
    let message_id = format!("{first}-{last}.{}.{hash:016x}", ids.len());
    // Sealed for its id: it opens as these jobs only, and for the run's own.
    let payload = sealer.key.seal(Purpose::Job, &message_id, &body);
    Some(Outgoing {
        message_id,
        payload,
    })
}

async fn publish(
    jetstream: &jetstream::Context,
    subject: &str,
    outgoing: &Outgoing,
) -> Option<jetstream::context::PublishAckFuture> {
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_JOBS, outgoing.message_id.as_str());
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        outgoing.message_id.as_str(),
    );
    jetstream
        .publish_with_headers(subject.to_string(), headers, outgoing.payload.clone())
        .await
        .ok()
}

/// Waits for the oldest publish's ack; publishes it again until it is stored.
async fn settle_oldest(
    jetstream: &jetstream::Context,
    subject: &str,
    waiting: &mut VecDeque<(Outgoing, Option<jetstream::context::PublishAckFuture>)>,
) {
    let Some((outgoing, mut ack)) = waiting.pop_front() else {
        return;
    };
    loop {
        if let Some(pending) = ack.take() {
            match pending.await {
                Ok(_) => return,
                Err(e) => tracing::warn!(
                    jobs = %outgoing.message_id,
                    "publishing jobs failed, retrying: {e}"
                ),
            }
            tokio::time::sleep(RETRY).await;
        }
        ack = publish(jetstream, subject, &outgoing).await;
        if ack.is_none() {
            tokio::time::sleep(RETRY).await;
        }
    }
}
