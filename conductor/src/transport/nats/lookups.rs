//! The run's lookup values set while it runs (by job code, or the master's handle),
//! kept in a stream of the run's that holds the last value of each key, sealed: a
//! master that takes the run over after a restart finds them again. Tables given to
//! the builder need no keeping: the restarted program gives them again.
//!
//! The stream is made at the first value set, so most runs have none, and is removed
//! with the run's other streams.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::seal::{Purpose, Sealer};
use super::{RunNames, RETRY};
use crate::lookup::LookupStore;

/// The stream of run `names`'s kept lookup values.
pub(super) fn stream_name(names: &RunNames) -> String {
    format!("CONDUCTOR_{}_LOOKUPS", names.run())
}

fn subjects(names: &RunNames) -> String {
    format!("conductor.{}.lookups.>", names.run())
}

/// The subject of an entry: the table and the key, in hex (a table's name and a key's
/// bytes may hold anything; a subject may not).
fn subject(names: &RunNames, table: &str, key: &[u8]) -> String {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    format!(
        "conductor.{}.lookups.t{}.k{}",
        names.run(),
        hex(table.as_bytes()),
        hex(key)
    )
}

/// The table and key of an entry's subject.
fn parse_subject(subject: &str) -> Option<(String, Vec<u8>)> {
    let unhex = |text: &str| -> Option<Vec<u8>> {
        if !text.len().is_multiple_of(2) {
            return None;
        }
        (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
            .collect()
    };
    let mut tokens = subject.rsplit('.');
    let key = unhex(tokens.next()?.strip_prefix('k')?)?;
    let table = unhex(tokens.next()?.strip_prefix('t')?)?;
    Some((String::from_utf8(table).ok()?, key))
}

/// Reads the values an earlier master of the run kept into `lookups`, then keeps every
/// value set from now on.
pub(super) async fn keep_lookups(
    jetstream: jetstream::Context,
    names: RunNames,
    lookups: &LookupStore,
    sealer: Arc<Sealer>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    read_kept(&jetstream, &names, lookups, &sealer).await?;
    let (writes, mut to_keep) = mpsc::unbounded_channel::<(String, bytes::Bytes)>();
    let (keeper_names, keeper_sealer) = (names.clone(), sealer.clone());
    lookups.keep_writes(Box::new(move |table, key, value| {
        let subject = subject(&keeper_names, table, key);
        let sealed = keeper_sealer.key.seal(Purpose::Lookup, &subject, value);
        let _ = writes.send((subject, sealed));
    }));
    Ok(tokio::spawn(async move {
        let mut made = false;
        while let Some((subject, sealed)) = to_keep.recv().await {
            loop {
                if !made {
                    made = make_stream(&jetstream, &names).await.is_ok();
                }
                let stored = match jetstream.publish(subject.clone(), sealed.clone()).await {
                    Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match stored {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!("keeping a lookup value failed, retrying: {e}");
                        made = false;
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
        }
    }))
}

async fn make_stream(jetstream: &jetstream::Context, names: &RunNames) -> Result<(), String> {
    jetstream
        .get_or_create_stream(stream::Config {
            name: stream_name(names),
            subjects: vec![subjects(names)],
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Every value kept, into `lookups`; nothing if the run kept none.
async fn read_kept(
    jetstream: &jetstream::Context,
    names: &RunNames,
    lookups: &LookupStore,
    sealer: &Sealer,
) -> Result<(), String> {
    let Ok(mut kept) = jetstream.get_stream(stream_name(names)).await else {
        return Ok(());
    };
    let total = kept.info().await.map_err(|e| e.to_string())?.state.messages;
    if total == 0 {
        return Ok(());
    }
    let reader = kept
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = reader.messages().await.map_err(|e| e.to_string())?;
    for _ in 0..total {
        let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
        let Ok(Some(Ok(message))) = next else {
            return Err("the kept lookup values could not all be read".into());
        };
        let subject = message.subject.as_str();
        let opened = sealer.key.open(Purpose::Lookup, subject, &message.payload);
        match (parse_subject(subject), opened) {
            (Some((table, key)), Some(value)) => lookups.set(&table, key, value),
            _ => {
                sealer
                    .rejections
                    .note("a lookup writer", subject, "a kept lookup value");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn subjects_hold_any_table_name_and_key() {
        let names = super::RunNames::new("run-1").unwrap();
        for (table, key) in [("prices €", &[0, 255, b'.'][..]), ("t", &[][..])] {
            let subject = super::subject(&names, table, key);
            assert!(
                subject.starts_with("conductor.run-1.lookups.t"),
                "{subject}"
            );
            let (read_table, read_key) = super::parse_subject(&subject).unwrap();
            assert_eq!((read_table.as_str(), read_key.as_slice()), (table, key));
        }
        assert!(super::parse_subject("conductor.r.lookups.tzz.k00").is_none());
    }
}
