//! The worker's side of joining a run: a join request sealed with the run's key, sent
//! until a master answers, and only an answer sealed for this very request taken.
//! (The master's side is `joins.rs`.)

use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;

use super::joins::now_ms;
use super::seal::{Purpose, Sealer};
use super::{connect, JoinReply, JoinRequest, RunNames};
use crate::settings::NatsAuth;
use crate::wire::{control_frame, ToWorker, PROTOCOL_VERSION};

/// How long a worker started before its master waits for it.
const MASTER_WAIT: Duration = Duration::from_secs(30);

/// What a worker is told when its master takes it in.
pub(super) struct Accepted {
    pub(super) client: Client,
    pub(super) config_frame: Bytes,
    pub(super) worker_id: u64,
    pub(super) master_id: String,
    pub(super) worker_type: String,
    pub(super) window: usize,
    pub(super) ack_wait: Duration,
    pub(super) max_attempts: u32,
    pub(super) max_jobs: Option<u64>,
    pub(super) sequence_floor: u64,
}

/// How long a worker waits for a sealed answer to its join request.
const JOIN_ANSWER_WAIT: Duration = Duration::from_secs(10);

pub(super) async fn ask_to_join(
    url: &str,
    auth: &NatsAuth,
    names: &RunNames,
    sealer: &Sealer,
    worker_type: Option<String>,
    worker_id: Option<(u64, u64)>,
) -> Result<Accepted, String> {
    let client = connect(url, auth).await?;
    let nonce = format!(
        "{:016x}{:016x}",
        super::joins::secret(),
        super::joins::secret()
    );
    let request = JoinRequest {
        protocol: PROTOCOL_VERSION,
        worker_type,
        worker_id,
        registered: crate::boot::registry::describe_all(),
        host: hostname(),
        pid: std::process::id(),
        nonce: nonce.clone(),
        sent_at_ms: now_ms(),
    };
    let plain = postcard::to_allocvec(&request).map_err(|e| e.to_string())?;
    let payload = sealer.key.seal(Purpose::Join, "", &plain);
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| format!("cannot join run `{}`: {e}", names.run()))?;
    // A worker may start before its master: it waits for one a while.
    let deadline = tokio::time::Instant::now() + MASTER_WAIT;
    let answer = 'asking: loop {
        client
            .publish_with_reply(names.join_subject(), inbox.clone(), payload.clone())
            .await
            .map_err(|e| format!("cannot join run `{}`: {e}", names.run()))?;
        let wait_until = tokio::time::Instant::now() + JOIN_ANSWER_WAIT;
        // Only an answer sealed for this request counts: anyone can publish to the inbox.
        while let Ok(Some(answer)) = tokio::time::timeout_at(wait_until, answers.next()).await {
            if answer.status.is_some() {
                // No master listens (yet): ask again, until the deadline.
                if tokio::time::Instant::now() >= deadline {
                    return Err(format!(
                        "no master is running run `{}` on {} (waited {MASTER_WAIT:?}; check the run name)",
                        names.run(),
                        super::auth::redact(url)
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue 'asking;
            }
            let opened = sealer.key.open(Purpose::JoinReply, &nonce, &answer.payload);
            match opened.and_then(|plain| postcard::from_bytes::<JoinReply>(&plain).ok()) {
                Some(reply) => break 'asking reply,
                None => {
                    sealer.rejections.note(
                        "an answer to this worker's join",
                        answer.subject.as_str(),
                        "a join answer",
                    );
                }
            }
        }
        return Err(format!(
            "no answer from the master of run `{}` that carries the run's seal within {JOIN_ANSWER_WAIT:?}: \
             is {} the secret the master printed?",
            names.run(),
            crate::boot::env::ENV_RUN_SECRET
        ));
    };
    match answer {
        JoinReply::Accepted {
            config,
            window,
            ack_wait_ms,
            max_attempts,
            max_jobs,
            sequence_floor,
        } => Ok(Accepted {
            client,
            worker_id: config.worker_id,
            master_id: config.master_id.clone(),
            worker_type: config.worker_type.clone(),
            config_frame: control_frame(&ToWorker::Config(config)),
            window: window.max(1) as usize,
            ack_wait: Duration::from_millis(ack_wait_ms.max(100)),
            max_attempts,
            max_jobs,
            sequence_floor,
        }),
        JoinReply::Refused { reason } => Err(format!(
            "the master of run `{}` refused this worker: {reason}",
            names.run()
        )),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}
