//! The handle does what it says: processing from the moment `start` returns, workers
//! reachable while their `init` runs, and an unanswered request that says how to
//! answer.

use std::time::{Duration, Instant};

use conductor::{Conductor, Event, JobWorker, Message, Worker};

conductor::test_support!();

/// How long the worker's `init` takes.
const INIT: Duration = Duration::from_millis(1500);

/// Takes a while to start, and answers `hello` once it has.
struct SlowGreeter {
    ready_at: Instant,
}

#[conductor::worker(type = "slow_greeter")]
impl JobWorker for SlowGreeter {
    type Job = u32;
    type Output = u32;

    async fn init(_worker: &Worker) -> anyhow::Result<Self> {
        tokio::time::sleep(INIT).await;
        Ok(SlowGreeter {
            ready_at: Instant::now(),
        })
    }

    async fn process(&mut self, job: u32, _worker: &Worker) -> anyhow::Result<u32> {
        Ok(job)
    }

    async fn on_message(&mut self, message: Message, worker: &Worker) -> anyhow::Result<()> {
        // Anything else is dropped unanswered: the sender hears how to answer.
        if message.cmd() == "hello" {
            message.reply(&format!(
                "worker {} ready for {} ms",
                worker.id(),
                self.ready_at.elapsed().as_millis()
            ))?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn processing_as_soon_as_start_returns() {
    let running = Conductor::<u32, u32>::new("slow_greeter")
        .worker_limit(1)
        .logging(false)
        .jobs(0..3)
        .start()
        .unwrap();
    assert!(running.handle().is_processing());
    let handle = running.handle().clone();
    let report = running.wait().await.unwrap();
    assert_eq!(report.completed(), 3);
    assert!(!handle.is_processing());
}

#[tokio::test]
async fn a_worker_in_its_init_is_reachable_and_answers_once_started() {
    let mut running = Conductor::<u32, u32>::new("slow_greeter")
        .worker_limit(1)
        .logging(false)
        .jobs(0..3)
        .start()
        .unwrap();
    let handle = running.handle().clone();
    // The worker is listed as soon as its process runs, long before `init` is done.
    let since = Instant::now();
    let worker_id = loop {
        if let Some(id) = handle.workers().first() {
            break *id;
        }
        assert!(
            since.elapsed() < INIT * 2 / 3,
            "no worker listed while its init ran"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert_eq!(handle.broadcast("note", &()).unwrap(), 1);
    let answer = tokio::spawn({
        let handle = handle.clone();
        async move { handle.request::<String, _>(worker_id, "hello", &()).await }
    });
    let unanswered = tokio::spawn({
        let handle = handle.clone();
        async move { handle.request::<String, _>(worker_id, "unknown", &()).await }
    });
    let mut started_event = false;
    while let Some(event) = running.next_event().await {
        started_event |= matches!(event, Event::WorkerStarted { .. });
    }
    assert!(started_event);
    let answer = answer.await.unwrap().unwrap();
    assert!(
        answer.starts_with(&format!("worker {worker_id} ready for")),
        "{answer}"
    );
    let error = unanswered.await.unwrap().unwrap_err().to_string();
    assert!(error.contains("was not handled"), "{error}");
    assert!(error.contains("Message::reply"), "how to answer: {error}");
    running.wait().await.unwrap();
}
