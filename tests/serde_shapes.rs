//! Every serde shape users send goes to real workers and comes back unchanged: jobs,
//! outputs and lookup values. A value that cannot be read says which type and why,
//! and `run()` counts it the way `collect_results()` does.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use conductor::{Conductor, FailureKind, JobError};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;

conductor::test_support!();

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
enum Action {
    Resize { width: u32, height: u32 },
    Skip,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Coord {
    Cartesian { x: f64, y: f64 },
    Polar { r: f64, theta: f64 },
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Shapes {
    id: u32,
    meta: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    note: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    tags: Vec<String>,
    #[serde(flatten)]
    extra: BTreeMap<String, i64>,
    action: Action,
    at: Coord,
    grid: HashMap<(u32, u32), String>,
    big: i128,
    huge: u128,
    label: Cow<'static, str>,
    #[serde(with = "serde_bytes")]
    blob: Vec<u8>,
    plain_bytes: Vec<u8>,
}

/// Sends the job back with what the worker saw of it.
#[conductor::worker(type = "shapes_echo")]
async fn echo(job: Shapes, w: &conductor::Worker) -> anyhow::Result<(Shapes, serde_json::Value)> {
    let table: Option<serde_json::Value> = w.lookup("shapes", &(job.id, "key")).await?;
    Ok((job, table.unwrap_or(serde_json::Value::Null)))
}

fn shapes(id: u32, blob_bytes: usize) -> Shapes {
    Shapes {
        id,
        meta: json!({"source": "test", "sizes": [1, 2.5, -3], "nested": {"ok": id.is_multiple_of(2)}}),
        note: (id.is_multiple_of(2)).then(|| format!("note {id}")),
        tags: if id.is_multiple_of(3) {
            vec![]
        } else {
            vec!["a".into(), "b".into()]
        },
        extra: (0..id % 4)
            .map(|k| (format!("x{k}"), -(k as i64)))
            .collect(),
        action: if id.is_multiple_of(2) {
            Action::Resize {
                width: id,
                height: id * 2,
            }
        } else {
            Action::Skip
        },
        at: match id % 3 {
            0 => Coord::Cartesian { x: 1.0, y: 2.0 },
            // Same arity as `Cartesian`: only the field names tell them apart.
            1 => Coord::Polar { r: 3.0, theta: 0.5 },
            _ => Coord::Named(format!("place {id}")),
        },
        grid: HashMap::from([((id, 0), "origin".to_string()), ((1, id), "edge".into())]),
        big: i128::MIN + id as i128,
        huge: u128::MAX - id as u128,
        label: Cow::Borrowed("borrowed here, owned there"),
        blob: vec![(id % 251) as u8; blob_bytes],
        plain_bytes: vec![7; blob_bytes],
    }
}

#[tokio::test]
async fn every_shape_round_trips_through_real_workers() {
    let mut jobs: Vec<Shapes> = (0..12).map(|id| shapes(id, 64)).collect();
    // Two 16 MiB blobs, one as bytes and one as a sequence of numbers.
    jobs.push(shapes(12, 16 << 20));
    let outputs = Conductor::<Shapes, (Shapes, serde_json::Value)>::new("shapes_echo")
        .worker_limit(2)
        .logging(false)
        .lookup_table(
            "shapes",
            (0..13u32).map(|id| ((id, "key"), json!({"id": id, "tags": ["t"]}))),
        )
        .jobs(jobs.clone())
        .collect()
        .await
        .unwrap();
    assert_eq!(outputs.len(), jobs.len());
    for (job, (echoed, looked_up)) in jobs.iter().zip(&outputs) {
        assert_eq!(echoed, job);
        assert_eq!(looked_up, &json!({"id": job.id, "tags": ["t"]}));
    }
    // The untagged coordinates came back as the variant that was sent.
    assert_eq!(outputs[1].0.at, Coord::Polar { r: 3.0, theta: 0.5 });
}

/// Reads only even numbers: a value the master cannot take, after the job ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Even(u64);

impl<'de> Deserialize<'de> for Even {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        if !n.is_multiple_of(2) {
            return Err(serde::de::Error::custom(format!("{n} is odd")));
        }
        Ok(Even(n))
    }
}

#[conductor::worker(type = "shapes_even")]
fn even(job: u64) -> anyhow::Result<Even> {
    Ok(Even(job))
}

#[tokio::test]
async fn an_output_the_master_cannot_read_fails_its_job_the_same_way_in_every_api() {
    let collected = Conductor::<u64, Even>::new("shapes_even")
        .worker_limit(2)
        .logging(false)
        .jobs(0..10u64)
        .collect_results()
        .await
        .unwrap();
    let failed: Vec<usize> = (0..10).filter(|&i| collected.results[i].is_err()).collect();
    assert_eq!(failed, [1, 3, 5, 7, 9]);
    let Err(JobError::Failed { kind, message, .. }) = &collected.results[3] else {
        panic!("{:?}", collected.results[3])
    };
    assert_eq!(*kind, FailureKind::Protocol);
    assert!(message.contains("`serde_shapes::Even`"), "{message}");
    assert!(message.contains("3 is odd"), "{message}");

    let report = Conductor::<u64, Even>::new("shapes_even")
        .worker_limit(2)
        .logging(false)
        .jobs(0..10u64)
        .run()
        .await
        .unwrap();
    assert_eq!((report.completed(), report.failed()), (5, 5));
    assert_eq!(collected.report.completed(), 5);
}
