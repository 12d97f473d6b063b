//! Workers that ask to join the run: the run loop decides, and this task carries the
//! question and the answer. A worker that claims an id the master reserved for a
//! process of its own must show the token the master gave that process.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::seal::{Purpose, Sealer};
use super::{JoinReply, JoinRequest};
use crate::transport::join::{Admission, Joining};
use crate::transport::worker_event::{FromWorker, WorkerEvent};

/// How far a join request's clock may be from the master's: an older one is a
/// request played again.
const JOIN_FRESHNESS: Duration = Duration::from_secs(300);

/// Milliseconds since the epoch, as join requests carry them.
pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A number no one outside this process can guess easily.
pub(super) fn secret() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// The token a worker this master started shows when it joins with its reserved id,
/// so that no one else can take that id.
pub(super) fn join_token(secret: u64, worker_id: u64) -> u64 {
    (secret ^ worker_id).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// What a worker that joins is told besides its handshake, and the secret behind the
/// tokens of the workers this master started.
pub(super) struct JoinTerms {
    pub secret: u64,
    pub window: u32,
    pub ack_wait_ms: u64,
    pub max_attempts: u32,
}

/// Answers workers that ask to join: the run loop decides, this task carries the
/// question and the answer, and checks the token of a worker that claims an id the
/// master reserved for a process of its own.
pub(super) async fn answer_joins(
    mut joins: async_nats::Subscriber,
    client: Client,
    to_master: mpsc::UnboundedSender<FromWorker>,
    terms: JoinTerms,
    sealer: Arc<Sealer>,
) {
    // Requests answered within their freshness: one played again is refused.
    let mut answered: std::collections::VecDeque<(u64, String)> = Default::default();
    while let Some(message) = joins.next().await {
        let Some(reply_to) = message.reply.clone() else {
            continue;
        };
        // Only a process that has the run's secret may join: nothing else is answered.
        let Some(request) = sealer
            .key
            .open(Purpose::Join, "", &message.payload)
            .and_then(|plain| postcard::from_bytes::<JoinRequest>(&plain).ok())
        else {
            sealer.rejections.note(
                "a joining worker",
                &message.subject,
                "a join request (wrong run secret?)",
            );
            continue;
        };
        let age = now_ms().abs_diff(request.sent_at_ms);
        if age > JOIN_FRESHNESS.as_millis() as u64 {
            sealer.rejections.note(
                "a joining worker",
                &message.subject,
                "a join request sent long ago, or with a clock far off",
            );
            continue;
        }
        let now = now_ms();
        while answered
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > 2 * JOIN_FRESHNESS.as_millis() as u64)
        {
            answered.pop_front();
        }
        if answered.iter().any(|(_, nonce)| *nonce == request.nonce) {
            sealer.rejections.note(
                "a joining worker",
                &message.subject,
                "a join request played again",
            );
            continue;
        }
        answered.push_back((now, request.nonce.clone()));
        let nonce = request.nonce.clone();
        let sequence_floor = sealer.sequence.current();
        let decided = ask_master(&to_master, request, terms.secret).await;
        let answer = match decided {
            Ok(Admission { config, max_jobs }) => JoinReply::Accepted {
                config,
                window: terms.window,
                ack_wait_ms: terms.ack_wait_ms,
                max_attempts: terms.max_attempts,
                max_jobs,
                sequence_floor,
            },
            Err(reason) => JoinReply::Refused { reason },
        };
        if let Ok(bytes) = postcard::to_allocvec(&answer) {
            // Sealed for this request alone: it cannot answer another.
            let sealed = sealer.key.seal(Purpose::JoinReply, &nonce, &bytes);
            let _ = client.publish(reply_to, sealed).await;
        }
    }
}

/// Hands a join request to the run loop and waits (boundedly) for its decision.
async fn ask_master(
    to_master: &mpsc::UnboundedSender<FromWorker>,
    request: JoinRequest,
    secret: u64,
) -> Result<Admission, String> {
    let reserved_id = match request.worker_id {
        Some((id, token)) if token == join_token(secret, id) => Some(id),
        Some((id, _)) => return Err(format!("worker {id} is not expected")),
        None => None,
    };
    let joining = Joining {
        protocol: request.protocol,
        worker_type: request.worker_type,
        reserved_id,
        registered: request.registered,
        host: request.host,
        pid: request.pid,
    };
    let (answer, decision) = oneshot::channel();
    let _ = to_master.send(FromWorker {
        worker_id: 0,
        event: WorkerEvent::Join {
            request: joining,
            answer,
        },
    });
    match tokio::time::timeout(Duration::from_secs(5), decision).await {
        Ok(Ok(decision)) => decision,
        _ => Err("the master is shutting down".into()),
    }
}
