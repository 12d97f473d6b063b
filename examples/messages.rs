//! Custom messages both ways: requests with replies, notices, and broadcasts.
//!
//! Run it with `cargo run --example messages`.

use std::time::Duration;

use conductor::{Conductor, Event, JobWorker, Message, Worker};

/// Greets the master once, then tags each job with a prefix the master can change.
struct Tagger {
    prefix: String,
}

#[conductor::worker(type = "tagger")]
impl JobWorker for Tagger {
    type Job = u32;
    type Output = String;

    async fn init(worker: &Worker) -> anyhow::Result<Self> {
        // A request with a reply: the master answers it from its event loop.
        let greeting: String = worker.request("hello", &worker.id()).await?;
        println!("worker {} heard: {greeting}", worker.id());
        Ok(Tagger {
            prefix: "job".into(),
        })
    }

    async fn process(&mut self, job: u32, worker: &Worker) -> anyhow::Result<String> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if job == 5 {
            // A notice: no reply expected.
            worker.send("fyi", &format!("worker {} reached job 5", worker.id()))?;
        }
        Ok(format!("{}-{job}", self.prefix))
    }

    async fn on_message(&mut self, message: Message, worker: &Worker) -> anyhow::Result<()> {
        match message.cmd() {
            "prefix" => self.prefix = message.data()?,
            "status" => message.reply(&format!(
                "worker {} tags with {:?}",
                worker.id(),
                self.prefix
            ))?,
            // Anything else is dropped, which answers an error if a reply was expected.
            _ => {}
        }
        Ok(())
    }
}

#[conductor::main]
async fn main() -> anyhow::Result<()> {
    let mut running = Conductor::of::<Tagger>()
        .worker_limit(2)
        .logging(false)
        .jobs(0..20)
        .start()?;
    let handle = running.handle().clone();
    let mut outputs = Vec::new();
    while let Some(event) = running.next_event().await {
        match event {
            Event::Message(message) => match message.cmd() {
                "hello" => {
                    let worker_id: u64 = message.data()?;
                    message.reply(&format!("hello to you too, worker {worker_id}!"))?;
                }
                "fyi" => println!("master heard: {}", message.data::<String>()?),
                _ => {}
            },
            Event::WorkerStarted { worker_id } => {
                // Workers answer between jobs, so ask from a task of its own and keep
                // handling events meanwhile (this worker is waiting for our "hello").
                let handle = handle.clone();
                tokio::spawn(async move {
                    match handle.request::<String, _>(worker_id, "status", &()).await {
                        Ok(status) => println!("asked worker {worker_id}: {status}"),
                        Err(e) => println!("worker {worker_id} did not answer: {e}"),
                    }
                    if let Err(e) = handle.request::<String, _>(worker_id, "unknown", &()).await {
                        println!("an unhandled command is an error, not a hang: {e}");
                    }
                });
            }
            Event::Output(output) => {
                outputs.push(output.output);
                if outputs.len() == 10 {
                    let told = handle.broadcast("prefix", "item")?;
                    println!("broadcast a new prefix to {told} workers");
                }
            }
            _ => {}
        }
    }
    running.wait().await?;
    outputs.sort();
    println!("{}", outputs.join(" "));
    Ok(())
}
