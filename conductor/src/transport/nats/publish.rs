//! The master's job publisher: each job of each jobs frame becomes a message of the
//! run's work-queue stream, sealed, and stored once even when a publish is retried.

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::seal::{Purpose, Sealer};
use super::{HEADER_JOB, RETRY};
use crate::wire::JobQueue;

/// Publishes each job of each jobs frame as its own message, so that each is acked,
/// redelivered and counted on its own. Waits for the server's acks a frame at a time;
/// a publish that fails (the server restarting) is retried until it is stored.
pub(super) async fn publish_jobs(
    jetstream: jetstream::Context,
    subject: String,
    mut frames: mpsc::UnboundedReceiver<(Bytes, Vec<(u64, u32)>)>,
    sealer: std::sync::Arc<Sealer>,
) {
    while let Some((mut frame, retried)) = frames.recv().await {
        // Length and kind.
        let body = frame.split_off(5.min(frame.len()));
        let mut queue = JobQueue::default();
        queue.push_frame(body);
        let mut jobs = Vec::new();
        while let Some(Ok((id, payload))) = queue.pop() {
            // The server stores a message id once: a retry of the job needs its own.
            let message_id = match retried.iter().find(|(retried, _)| *retried == id) {
                Some((_, before)) => format!("{id}.{before}"),
                None => id.to_string(),
            };
            // Sealed for its id: it opens as this job only, and for the run's own.
            let sealed = sealer.key.seal(Purpose::Job, &id.to_string(), payload);
            jobs.push((id, message_id, sealed));
        }
        let mut waiting = Vec::with_capacity(jobs.len());
        for (id, message_id, payload) in &jobs {
            waiting.push(publish_job(&jetstream, &subject, *id, message_id, payload.clone()).await);
        }
        for ((id, message_id, payload), ack) in jobs.into_iter().zip(waiting) {
            let stored = match ack {
                Some(ack) => ack.await.is_ok(),
                None => false,
            };
            if !stored {
                store_job(&jetstream, &subject, id, &message_id, payload).await;
            }
        }
    }
}

async fn publish_job(
    jetstream: &jetstream::Context,
    subject: &str,
    id: u64,
    message_id: &str,
    payload: Bytes,
) -> Option<jetstream::context::PublishAckFuture> {
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_JOB, id.to_string().as_str());
    // A job published twice (a publish repeated after a lost ack) is stored once.
    headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id);
    jetstream
        .publish_with_headers(subject.to_string(), headers, payload)
        .await
        .ok()
}

/// Publishes one job until the server confirms it.
async fn store_job(
    jetstream: &jetstream::Context,
    subject: &str,
    id: u64,
    message_id: &str,
    payload: Bytes,
) {
    loop {
        if let Some(ack) = publish_job(jetstream, subject, id, message_id, payload.clone()).await {
            match ack.await {
                Ok(_) => return,
                Err(e) => tracing::warn!(job_id = id, "publishing a job failed, retrying: {e}"),
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}
