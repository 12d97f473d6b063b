//! One master per run: a new master asks whether another answers for the run, and
//! then answers for it itself while it lives.

use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;

use super::RunNames;

/// Fails if another master answers for the run; otherwise subscribes to answer for it.
pub(super) async fn claim_run(
    client: &Client,
    names: &RunNames,
) -> Result<async_nats::Subscriber, String> {
    let asked = tokio::time::timeout(
        Duration::from_secs(2),
        client.request(names.owner_subject(), Bytes::new()),
    )
    .await;
    if let Ok(Ok(answer)) = asked {
        return Err(format!(
            "another master runs it ({})",
            String::from_utf8_lossy(&answer.payload)
        ));
    }
    client
        .subscribe(names.owner_subject())
        .await
        .map_err(|e| e.to_string())
}

/// Answers for the run while this master lives.
pub(super) async fn hold_run(mut owner: async_nats::Subscriber, client: Client) {
    let me = format!(
        "pid {} on {}",
        std::process::id(),
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default()
    );
    while let Some(question) = owner.next().await {
        if let Some(reply) = question.reply {
            let _ = client.publish(reply, me.clone().into()).await;
        }
    }
}
