//! One master per run: a new master asks whether another answers for the run, and
//! then answers for it itself while it lives.
//!
//! Question and answer are sealed with the run's key, the answer for the question's
//! random challenge: a client without the secret cannot pretend to own the run (and
//! keep its master from starting), nor pass off an answer it recorded earlier.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use futures_util::StreamExt;
use ring::rand::{SecureRandom, SystemRandom};

use super::seal::{Purpose, Sealer};
use super::RunNames;

/// How long a new master listens for another that answers for the run.
const OWNER_WAIT: Duration = Duration::from_secs(2);

/// Fails if another master answers for the run; otherwise subscribes to answer for it.
pub(super) async fn claim_run(
    client: &Client,
    names: &RunNames,
    sealer: &Sealer,
) -> Result<async_nats::Subscriber, String> {
    let mut challenge = [0u8; 16];
    SystemRandom::new()
        .fill(&mut challenge)
        .map_err(|_| "no randomness for the run's ownership".to_string())?;
    let challenge: String = challenge.iter().map(|b| format!("{b:02x}")).collect();
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    let question = sealer
        .key
        .seal(Purpose::OwnerQuestion, "", challenge.as_bytes());
    client
        .publish_with_reply(names.owner_subject(), inbox, question)
        .await
        .map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + OWNER_WAIT;
    while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, answers.next()).await {
        if answer.status.is_some() {
            // "No responders": nobody owns the run.
            break;
        }
        match sealer
            .key
            .open(Purpose::OwnerAnswer, &challenge, &answer.payload)
        {
            Some(owner) => {
                return Err(format!(
                    "another master runs it ({})",
                    String::from_utf8_lossy(&owner)
                ))
            }
            None => {
                sealer.rejections.note(
                    "an owner's answer",
                    names.owner_subject().as_str(),
                    "an answer to the ownership question",
                );
            }
        }
    }
    client
        .subscribe(names.owner_subject())
        .await
        .map_err(|e| e.to_string())
}

/// Answers for the run while this master lives: to questions sealed with its key.
pub(super) async fn hold_run(
    mut owner: async_nats::Subscriber,
    client: Client,
    sealer: Arc<Sealer>,
    shared: Arc<crate::handle::Shared>,
) {
    let me = format!(
        "pid {} on {}",
        std::process::id(),
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default()
    );
    while let Some(question) = owner.next().await {
        let Some(reply) = question.reply else {
            continue;
        };
        // Who runs it, and how far it is: for a master that would start, and for an
        // operator who asks (`CONDUCTOR_RUNS`).
        let c = *shared.counts.lock().unwrap_or_else(|p| p.into_inner());
        let me = format!(
            "{me}; submitted={} completed={} failed={} retried={} skipped={} queued={} in_flight={} workers={}",
            c.submitted, c.completed, c.failed, c.retried, c.skipped, c.queued, c.in_flight, c.workers
        );
        let Some(challenge) = sealer
            .key
            .open(Purpose::OwnerQuestion, "", &question.payload)
        else {
            sealer.rejections.note(
                "an ownership question",
                question.subject.as_str(),
                "a question about the run's owner",
            );
            continue;
        };
        let challenge = String::from_utf8_lossy(&challenge).into_owned();
        let answer = sealer
            .key
            .seal(Purpose::OwnerAnswer, &challenge, me.as_bytes());
        let _ = client.publish(reply, answer).await;
    }
}
