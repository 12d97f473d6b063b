//! Typed from end to end: a fn worker named by its function, a plain `fn` worker
//! that waits for the master, and one typed context for every worker's `init`.

use conductor::{Conductor, Event, JobWorker, Worker};
use serde::{Deserialize, Serialize};

conductor::test_support!();

/// Registered under its own name, "typed_cube": no string to repeat.
#[conductor::worker]
fn typed_cube(n: u64) -> anyhow::Result<u64> {
    Ok(n * n * n)
}

#[tokio::test]
async fn a_fn_worker_is_named_by_its_function() {
    let cubes = Conductor::of::<typed_cube>()
        .logging(false)
        .jobs(0..5)
        .collect()
        .await
        .unwrap();
    assert_eq!(cubes, [0, 1, 8, 27, 64]);
}

/// A plain `fn` worker that reads and writes lookups and asks the master, blocking.
#[conductor::worker]
fn typed_priced(item: String, w: &Worker) -> anyhow::Result<(u64, String)> {
    let price: u64 = w.lookup_blocking("prices", &item)?.unwrap_or(0);
    w.set_lookup_blocking("seen", &item, &true)?;
    let seen: Option<bool> = w.lookup_blocking("seen", &item)?;
    anyhow::ensure!(seen == Some(true), "a lookup set just now is there");
    let label: String = w.request_blocking("label", &item)?;
    Ok((price, label))
}

#[tokio::test]
async fn a_sync_worker_waits_for_lookups_and_replies() {
    let items = ["apple", "pear", "fig"].map(String::from);
    let mut running = Conductor::of::<typed_priced>()
        .worker_limit(2)
        .logging(false)
        .lookup_table("prices", [("apple".to_string(), 3u64), ("fig".into(), 7)])
        .jobs(items.clone())
        .start()
        .unwrap();
    let mut outputs = std::collections::BTreeMap::new();
    while let Some(event) = running.next_event().await {
        match event {
            Event::Message(message) => {
                let item: String = message.data().unwrap();
                message.reply(&item.to_uppercase()).unwrap();
            }
            Event::Output(output) => {
                outputs.insert(output.job, output.output);
            }
            _ => {}
        }
    }
    running.wait().await.unwrap();
    assert_eq!(outputs["apple"], (3, "APPLE".to_string()));
    assert_eq!(outputs["pear"], (0, "PEAR".to_string()));
    assert_eq!(outputs["fig"], (7, "FIG".to_string()));
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Setup {
    prefix: String,
    scale: u32,
}

/// Reads the conductor's context once, in `init`.
struct Scaler {
    setup: Setup,
}

#[conductor::worker(type = "typed_scaler")]
impl JobWorker for Scaler {
    type Job = u32;
    type Output = String;

    async fn init(w: &Worker) -> anyhow::Result<Self> {
        Ok(Scaler {
            setup: w.context()?,
        })
    }

    async fn process(&mut self, job: u32, _w: &Worker) -> anyhow::Result<String> {
        Ok(format!("{}{}", self.setup.prefix, job * self.setup.scale))
    }
}

#[tokio::test]
async fn every_worker_gets_the_typed_context() {
    let setup = Setup {
        prefix: "x".into(),
        scale: 10,
    };
    let outputs = Conductor::of::<Scaler>()
        .worker_limit(2)
        .logging(false)
        .context(&setup)
        .jobs(1..4)
        .collect()
        .await
        .unwrap();
    assert_eq!(outputs, ["x10", "x20", "x30"]);
}

#[conductor::worker]
fn typed_needs_context(job: u32, w: &Worker) -> anyhow::Result<u32> {
    let scale: u32 = w.context()?;
    Ok(job * scale)
}

#[tokio::test]
async fn a_missing_or_mistyped_context_says_what_to_give() {
    let collected = Conductor::of::<typed_needs_context>()
        .logging(false)
        .jobs([1])
        .collect_results()
        .await
        .unwrap();
    let message = collected.results[0].as_ref().unwrap_err().to_string();
    assert!(message.contains("gave no context"), "{message}");
    assert!(message.contains("Conductor::context"), "{message}");

    let collected = Conductor::of::<typed_needs_context>()
        .logging(false)
        .context("not a number")
        .jobs([1])
        .collect_results()
        .await
        .unwrap();
    let message = collected.results[0].as_ref().unwrap_err().to_string();
    assert!(message.contains("`u32`"), "{message}");
}

#[tokio::test]
async fn a_context_too_large_for_a_handshake_is_refused_before_any_worker_starts() {
    let error = Conductor::of::<typed_needs_context>()
        .logging(false)
        .context(&vec![7u8; 2 << 20])
        .jobs([1])
        .run()
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("larger than"), "{message}");
    assert!(message.contains("handshake"), "{message}");
}
