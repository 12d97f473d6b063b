//! The distributed mode under attack, from outside: a client that can reach the NATS
//! server but lacks the run's secret forges results, failures, jobs and control
//! frames, plays recorded messages again, squats the run's ownership and listens to
//! everything. Each run still ends with every job accounted for once, and no forged
//! value reaches the caller. Needs a NATS server with JetStream (see `tests/nats.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use conductor::{Conductor, Event, Report};

mod common;
use common::nats_url;

fn unique_run(name: &str) -> String {
    common::unique_run(&format!("attack-{name}"))
}

conductor::test_support!();

/// Each output names its job: a forged one cannot pass for the real thing.
#[conductor::worker]
fn attacked_job(job: String) -> anyhow::Result<String> {
    std::thread::sleep(Duration::from_millis(5));
    Ok(format!("output of {job}"))
}

const JOBS: u64 = 300;

fn job(n: u64) -> String {
    format!("classified-job-{n}")
}

/// Everything published on the run's subjects, with its headers, as an outsider sees it.
#[derive(Clone, Default)]
struct Recording(Arc<Mutex<Vec<async_nats::Message>>>);

impl Recording {
    async fn start(client: &async_nats::Client, run: &str) -> Recording {
        let recording = Recording::default();
        let mut all = client
            .subscribe(format!("conductor.{run}.>"))
            .await
            .unwrap();
        let kept = recording.clone();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            while let Some(message) = all.next().await {
                kept.0.lock().unwrap().push(message);
            }
        });
        recording
    }

    fn messages(&self) -> Vec<async_nats::Message> {
        self.0.lock().unwrap().clone()
    }

    /// The master's id, as the headers of workers' messages give it away.
    fn master_id(&self) -> Option<String> {
        self.messages().iter().find_map(|m| {
            Some(
                m.headers
                    .as_ref()?
                    .get("Conductor-Master")?
                    .as_str()
                    .to_string(),
            )
        })
    }
}

/// Runs `JOBS` jobs over NATS while `attack` does its worst; checks that every job is
/// settled once with its own output, and returns the report.
async fn run_under<F, Fut>(name: &str, attack: F) -> Option<Report<String>>
where
    F: FnOnce(async_nats::Client, String, Recording) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let url = nats_url()?;
    let run = unique_run(name);
    let attacker = async_nats::connect(&url).await.unwrap();
    let recording = Recording::start(&attacker, &run).await;
    let attack = tokio::spawn(attack(attacker.clone(), run.clone(), recording));
    let mut running = Conductor::of::<attacked_job>()
        .nats(&url)
        .run_name(&run)
        .worker_limit(2)
        .logging(false)
        .jobs((0..JOBS).map(job))
        .start()
        .unwrap();
    let mut outputs = BTreeMap::new();
    while let Some(event) = running.next_event().await {
        if let Event::Output(output) = event {
            assert_eq!(output.job, job(output.id), "an output for the wrong job");
            assert_eq!(
                output.output,
                format!("output of {}", output.job),
                "a forged output"
            );
            assert!(
                outputs.insert(output.id, output.output).is_none(),
                "job {} twice",
                output.id
            );
        }
    }
    let report = running.wait().await.expect("the run ends without error");
    attack.abort();
    assert!(report.all_completed(), "{report:?}");
    assert_eq!(report.completed(), JOBS);
    assert_eq!(outputs.len() as u64, JOBS, "every job's own output, once");
    Some(report)
}

/// Waits until the run has started work (its workers published something).
async fn until_busy(recording: &Recording) {
    for _ in 0..200 {
        if recording.master_id().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.insert(*name, *value);
    }
    headers
}

/// A results frame's body as a worker would have sent it before runs were sealed:
/// job `id` with the MessagePack string `output` (status 1), or failed (status 0).
fn results_body(entries: &[(u64, u8, &[u8])]) -> Bytes {
    let mut body = vec![3u8];
    for (id, status, payload) in entries {
        leb128(&mut body, *id);
        body.push(*status);
        leb128(&mut body, payload.len() as u64);
        body.extend_from_slice(payload);
    }
    body.into()
}

/// An entry header's id or length, as the wire writes it.
fn leb128(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn msgpack_str(text: &str) -> Vec<u8> {
    let mut bytes = vec![0xd9, text.len() as u8];
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

#[tokio::test]
async fn forged_results_and_failures_are_rejected() {
    let report = run_under("results", |client, run, recording| async move {
        let jetstream = async_nats::jetstream::new(client);
        let forged = msgpack_str("forged output");
        until_busy(&recording).await;
        // Until the run ends.
        for round in 0.. {
            for worker in ["1", "2"] {
                // Ok results for jobs not sent yet, and failures for jobs running.
                let ids: Vec<u64> = (0..JOBS).step_by(7).map(|i| (i + round) % JOBS).collect();
                let entries: Vec<(u64, u8, &[u8])> = ids
                    .iter()
                    .map(|&id| (id, (id % 2) as u8, &forged[..]))
                    .collect();
                let mut pairs = vec![("Conductor-Worker", worker)];
                let master = recording.master_id().unwrap_or_default();
                pairs.push(("Conductor-Master", &master));
                let _ = jetstream
                    .publish_with_headers(
                        format!("conductor.{run}.results"),
                        headers(&pairs),
                        results_body(&entries),
                    )
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let Some(report) = report else { return };
    assert!(
        report.rejected_messages() > 0,
        "the forgeries were seen and counted"
    );
}

#[tokio::test]
async fn forged_jobs_are_never_run() {
    let report = run_under("jobs", |client, run, _| async move {
        let jetstream = async_nats::jetstream::new(client);
        for id in 0..50u64 {
            // A job id the run uses, and one it does not: neither runs.
            for forged_id in [id, 100_000 + id] {
                let _ = jetstream
                    .publish_with_headers(
                        format!("conductor.{run}.jobs"),
                        headers(&[("Conductor-Job", &forged_id.to_string())]),
                        msgpack_str("injected").into(),
                    )
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // An injected job would have given "output of injected" for a real id (caught in
    // `run_under`) or an answer for an unknown id; the run's counts are exact.
    let Some(report) = report else { return };
    assert_eq!(report.submitted(), JOBS);
}

#[tokio::test]
async fn forged_aborts_and_stops_stop_nobody() {
    let report = run_under("abort", |client, run, recording| async move {
        until_busy(&recording).await;
        let master = recording.master_id().unwrap_or_default();
        // ToWorker::Stop and ToWorker::Abort as control frames (kind 1).
        for frame in [[1u8, 3], [1u8, 4]] {
            for subject in [
                format!("conductor.{run}.all"),
                format!("conductor.{run}.worker.{master}.1"),
                format!("conductor.{run}.worker.{master}.2"),
            ] {
                let _ = client
                    .publish(subject, Bytes::copy_from_slice(&frame))
                    .await;
            }
        }
        // And to the master, as if from a worker: a crash and a goodbye.
        for frame in [[1u8, 6], [1u8, 5]] {
            let pairs = [
                ("Conductor-Worker", "1"),
                ("Conductor-Master", master.as_str()),
            ];
            let _ = client
                .publish_with_headers(
                    format!("conductor.{run}.master"),
                    headers(&pairs),
                    Bytes::copy_from_slice(&frame),
                )
                .await;
        }
    })
    .await;
    let Some(report) = report else { return };
    assert!(report.rejected_messages() >= 2, "{report:?}");
    assert_eq!(report.worker_crashes(), 0);
}

#[tokio::test]
async fn messages_played_again_change_nothing() {
    let report = run_under("replay", |client, _run, recording| async move {
        // Once the run is under way, play everything recorded again, as it was, until
        // the run ends.
        until_busy(&recording).await;
        loop {
            for message in recording.messages() {
                let headers = message.headers.clone().unwrap_or_default();
                let _ = client
                    .publish_with_headers(message.subject.clone(), headers, message.payload.clone())
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let Some(report) = report else { return };
    // Control frames played again are refused by number; results and jobs open, and
    // are settled once (checked in `run_under`).
    assert!(report.rejected_messages() > 0, "{report:?}");
}

#[tokio::test]
async fn a_squatter_on_the_owner_subject_does_not_block_the_master() {
    let report = run_under("squat", |client, run, _| async move {
        use futures_util::StreamExt;
        let mut questions = client
            .subscribe(format!("conductor.{run}.owner"))
            .await
            .unwrap();
        while let Some(question) = questions.next().await {
            if let Some(reply) = question.reply {
                let _ = client.publish(reply, "I run it, go away".into()).await;
            }
        }
    })
    .await;
    let Some(report) = report else { return };
    assert!(
        report.rejected_messages() >= 1,
        "the squatter's answer was refused"
    );
}

#[tokio::test]
async fn an_eavesdropper_reads_no_job_and_no_output() {
    let recording = Arc::new(Mutex::new(None));
    let kept = recording.clone();
    let report = run_under("listen", move |_, _, seen| async move {
        *kept.lock().unwrap() = Some(seen);
    })
    .await;
    let Some(_) = report else { return };
    let seen = recording.lock().unwrap().take().unwrap().messages();
    assert!(seen.len() > 10, "the eavesdropper saw the run's traffic");
    for message in &seen {
        let payload = &message.payload;
        for needle in [&b"classified-job"[..], b"output of"] {
            assert!(
                !payload.windows(needle.len()).any(|w| w == needle),
                "plaintext on {}: {:?}",
                message.subject,
                String::from_utf8_lossy(payload)
            );
        }
    }
}

#[tokio::test]
async fn malformed_frames_everywhere_change_nothing() {
    let report = run_under("garbage", |client, run, recording| async move {
        until_busy(&recording).await;
        let master = recording.master_id().unwrap_or_default();
        let subjects = [
            "results",
            "master",
            "jobs",
            "join",
            "owner",
            "all",
            "worker.x.1",
        ]
        .map(|s| format!("conductor.{run}.{s}"));
        let worker = format!("conductor.{run}.worker.{master}.1");
        let payloads: [&[u8]; 5] = [b"", b"\x01", b"\x01\x00\xff\xff", b"garbage", &[0xff; 300]];
        for subject in subjects.iter().chain([&worker]) {
            for payload in payloads {
                let pairs = [
                    ("Conductor-Worker", "1"),
                    ("Conductor-Master", master.as_str()),
                ];
                let _ = client
                    .publish_with_headers(
                        subject.clone(),
                        headers(&pairs),
                        Bytes::copy_from_slice(payload),
                    )
                    .await;
                let _ = client
                    .publish(subject.clone(), Bytes::copy_from_slice(payload))
                    .await;
            }
        }
    })
    .await;
    let Some(report) = report else { return };
    assert!(report.rejected_messages() > 0, "{report:?}");
}
