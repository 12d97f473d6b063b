//! The seed's scenarios on real worker processes: jobs and outputs, errors, panics,
//! stats, lookups, messages, broadcast, abort, and several conductors at once.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use conductor::{Conductor, Event, JobWorker, Message, Running, Worker};

conductor::test_support!();

#[conductor::worker(type = "square")]
fn square(job: u64) -> anyhow::Result<u64> {
    Ok(job * job)
}

#[conductor::worker(type = "identity")]
async fn identity(_job: u32, worker: &Worker) -> anyhow::Result<(u64, String)> {
    Ok((worker.id(), worker.master_id().to_string()))
}

#[conductor::worker(type = "picky")]
async fn picky(job: u32) -> anyhow::Result<u32> {
    match job % 10 {
        3 => anyhow::bail!("job {job} is unlucky"),
        7 => panic!("job {job} panicked on purpose"),
        _ => Ok(job),
    }
}

#[conductor::worker(type = "counter")]
async fn counter(job: u32, worker: &Worker) -> anyhow::Result<u32> {
    worker.count("units", i64::from(job));
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok(job)
}

/// Pauses its periodic stats rolls from the first job on.
#[conductor::worker(type = "quiet_counter")]
async fn quiet_counter(job: u32, worker: &Worker) -> anyhow::Result<bool> {
    worker.stop_monitoring();
    worker.count("units", 1);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let monitoring = worker.is_monitoring();
    if job == 59 {
        worker.start_monitoring();
    }
    Ok(monitoring)
}

#[conductor::worker(type = "slow")]
async fn slow(job: u32) -> anyhow::Result<u32> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(job)
}

/// Blocks its thread for `ms` milliseconds: its job thread reads nothing meanwhile.
#[conductor::worker(type = "blocker")]
fn blocker(ms: u64) -> anyhow::Result<u64> {
    std::thread::sleep(Duration::from_millis(ms));
    Ok(ms)
}

/// Sums a job's bytes, asking the master for a lookup on every tenth job.
#[conductor::worker(type = "byte_summer")]
async fn byte_summer(job: (u32, Vec<u8>), worker: &Worker) -> anyhow::Result<u64> {
    if job.0.is_multiple_of(10) {
        worker.lookup::<u32, _>("offsets", &0u32).await?;
    }
    Ok(job.1.iter().map(|&b| u64::from(b)).sum::<u64>() + u64::from(job.0))
}

#[conductor::worker(type = "namer")]
async fn namer(job: u32, worker: &Worker) -> anyhow::Result<String> {
    if job == 99 {
        worker.lookup::<String, _>("nope", &job).await?;
    }
    let name = worker
        .lookup::<String, _>("names", &job)
        .await?
        .unwrap_or_else(|| "nobody".into());
    worker.set_lookup("seen", &job, &name).await?;
    Ok(name)
}

#[conductor::worker(type = "env_reader")]
fn env_reader(_job: u8) -> anyhow::Result<(Option<String>, bool)> {
    let role = [
        "CONDUCTOR_WORKER_TYPE",
        "CONDUCTOR_CHANNEL_FD",
        "CONDUCTOR_JOIN",
        "CONDUCTOR_WORKER_ID",
        "CONDUCTOR_MASTER_PID",
    ];
    let leaked = role.iter().any(|name| std::env::var_os(name).is_some());
    // The channel arrives as stdin; job code must find stdin empty, as /dev/null.
    let mut byte = [0u8; 1];
    let stdin_empty = std::io::Read::read(&mut std::io::stdin(), &mut byte)? == 0;
    Ok((std::env::var("GREETING").ok(), leaked || !stdin_empty))
}

#[conductor::worker(type = "asker")]
async fn asker(job: u32, worker: &Worker) -> anyhow::Result<u32> {
    Ok(worker.request::<u32, _>("double", &job).await?)
}

/// A stateful worker that talks with its master.
struct Chatty {
    prefix: String,
}

#[conductor::worker(type = "chatty")]
impl JobWorker for Chatty {
    type Job = u32;
    type Output = String;

    async fn init(worker: &Worker) -> anyhow::Result<Self> {
        let prefix: String = worker.request("prefix", &worker.id()).await?;
        Ok(Chatty { prefix })
    }

    async fn process(&mut self, job: u32, worker: &Worker) -> anyhow::Result<String> {
        worker.send("progress", &job)?;
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(format!("{}{job}", self.prefix))
    }

    async fn on_message(&mut self, message: Message, _worker: &Worker) -> anyhow::Result<()> {
        match message.cmd() {
            "prefix" => self.prefix = message.data()?,
            "echo" => {
                let text: String = message.data()?;
                message.reply(&text.to_uppercase())?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// How many times the init hook ran in this worker process.
static INIT_RUNS: AtomicU64 = AtomicU64::new(0);

fn count_init(_worker: &Worker) -> anyhow::Result<()> {
    INIT_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Answers which worker ran it and how often its process ran the init hook.
#[conductor::worker(type = "recycled", init = count_init)]
fn recycled(_job: u32, worker: &Worker) -> anyhow::Result<(u64, u64)> {
    Ok((worker.id(), INIT_RUNS.load(Ordering::SeqCst)))
}

fn refuse_to_start(_worker: &Worker) -> anyhow::Result<()> {
    anyhow::bail!("the licence server is down")
}

#[conductor::worker(type = "never_starts", init = refuse_to_start)]
fn never_starts(job: u32) -> anyhow::Result<u32> {
    Ok(job)
}

/// Every event of a run, and its report.
struct Collected<J, O> {
    events: Vec<Event<J, O>>,
    report: conductor::Report<J>,
}

async fn collect<J, O>(mut running: Running<J, O>) -> Collected<J, O> {
    let mut events = Vec::new();
    while let Some(event) = running.next_event().await {
        events.push(event);
    }
    let report = running.wait().await.expect("the run ends without error");
    Collected { events, report }
}

fn outputs<J, O: Clone>(events: &[Event<J, O>]) -> BTreeMap<u64, O> {
    let mut outputs = BTreeMap::new();
    for event in events {
        if let Event::Output(output) = event {
            assert!(
                outputs.insert(output.id, output.output.clone()).is_none(),
                "job {} answered twice",
                output.id
            );
        }
    }
    outputs
}

fn stats_reports<J, O>(events: &[Event<J, O>]) -> Vec<conductor::StatsReport> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Stats(report) => Some(report.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn every_job_runs_once_and_its_output_comes_back() {
    let conductor = Conductor::<u64, u64>::new("square")
        .worker_limit(2)
        .jobs(0..2000u64);
    let handle = conductor.handle();
    assert!(!handle.is_processing());
    let running = conductor.start().unwrap();
    let run = collect(running).await;
    let outputs = outputs(&run.events);
    assert_eq!(outputs.len(), 2000);
    assert!(outputs.iter().all(|(id, out)| *out == id * id));
    assert_eq!(
        (
            run.report.submitted(),
            run.report.completed(),
            run.report.failed()
        ),
        (2000, 2000, 0)
    );
    assert!(run.report.all_completed() && !run.report.aborted());
    assert!(run.report.not_run().is_empty());
    let started = run
        .events
        .iter()
        .filter(|e| matches!(e, Event::WorkerStarted { .. }))
        .count();
    let exited = run
        .events
        .iter()
        .filter(|e| matches!(e, Event::WorkerExited(_)))
        .count();
    // A worker may be stopped before its handshake when the others finish first.
    assert!(
        (1..=2).contains(&started) && exited == 2,
        "{started} {exited}"
    );
    assert!(!run
        .events
        .iter()
        .any(|e| matches!(e, Event::WorkerCrashed(_))));
    assert!(!handle.is_processing());
}

#[tokio::test]
async fn workers_know_their_ids_and_their_master() {
    let conductor = Conductor::<u32, (u64, String)>::new("identity")
        .worker_limit(2)
        .prefetch(1)
        .jobs(0..50);
    let master_id = conductor.id().to_string();
    let run = collect(conductor.start().unwrap()).await;
    let outputs = outputs(&run.events);
    let worker_ids: BTreeSet<u64> = outputs.values().map(|(id, _)| *id).collect();
    assert!(worker_ids.is_subset(&[1, 2].into()), "{worker_ids:?}");
    assert!(outputs.values().all(|(_, master)| *master == master_id));
    let other = Conductor::<u32, (u64, String)>::new("identity");
    assert_ne!(other.id(), master_id, "conductor ids are unique");
}

#[tokio::test]
async fn errors_and_panics_fail_only_their_job() {
    let run = collect(
        Conductor::<u32, u32>::new("picky")
            .worker_limit(2)
            .jobs(0..100)
            .start()
            .unwrap(),
    )
    .await;
    assert_eq!((run.report.completed(), run.report.failed()), (80, 20));
    for failure in run.report.failures() {
        assert_eq!(failure.attempts, 1);
        let (expected, kind) = match failure.job % 10 {
            3 => (
                format!("job {} is unlucky", failure.job),
                conductor::FailureKind::Returned,
            ),
            7 => (
                // The panic's place comes with it: the worker prints nothing of it.
                format!(
                    "job panicked: job {} panicked on purpose (at tests/basics.rs:29:14)",
                    failure.job
                ),
                conductor::FailureKind::Panicked,
            ),
            _ => panic!("job {} should not fail", failure.job),
        };
        assert_eq!(failure.error, expected);
        assert_eq!(failure.kind, kind);
        assert_eq!(failure.id, u64::from(failure.job));
    }
    let failed_events = run
        .events
        .iter()
        .filter(|e| matches!(e, Event::Failed(_)))
        .count();
    assert_eq!(failed_events, 20);
    assert!(
        !run.events
            .iter()
            .any(|e| matches!(e, Event::WorkerCrashed(_))),
        "workers survive errors and panics"
    );
}

#[tokio::test]
async fn crash_on_job_error_replaces_the_worker_like_the_seed() {
    let run = collect(
        Conductor::<u32, u32>::new("picky")
            .worker_limit(2)
            .crash_on_job_error(true)
            .jobs(0..20)
            .start()
            .unwrap(),
    )
    .await;
    assert_eq!((run.report.completed(), run.report.failed()), (16, 4));
    let crashes: Vec<_> = run
        .events
        .iter()
        .filter_map(|e| match e {
            Event::WorkerCrashed(crash) => Some(crash.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(crashes.len(), 4, "{crashes:?}");
    assert!(crashes
        .iter()
        .all(|c| c.code == Some(conductor::CRASH_EXIT_CODE)));
    assert!(
        crashes[0].reason.contains("failed"),
        "{}",
        crashes[0].reason
    );
    // Two workers, plus a replacement for each crash while jobs were left.
    assert!(
        run.report.workers_started() >= 5,
        "{}",
        run.report.workers_started()
    );
}

#[tokio::test]
async fn stats_rounds_cover_every_live_worker() {
    let conductor = Conductor::<u32, u32>::new("counter")
        .worker_limit(2)
        .stats_interval(Duration::from_millis(100))
        .jobs(1..=200);
    let handle = conductor.handle();
    let run = collect(conductor.start().unwrap()).await;
    let reports = stats_reports(&run.events);
    assert!(reports.len() >= 2, "{} reports", reports.len());
    assert!(reports.iter().any(|r| r.worker_count() == 2));
    for report in &reports {
        let sum: i64 = report.raw.values().map(|w| w.last["jobsDone"]).sum();
        assert_eq!(report.agg.last["jobsDone"], sum);
        let diff: i64 = report.raw.values().map(|w| w.diff["jobsDone"]).sum();
        assert_eq!(report.agg.diff["jobsDone"], diff);
    }
    // Each worker's final roll shows its totals: together they are every job.
    let mut last_by_worker: BTreeMap<u64, (i64, i64)> = BTreeMap::new();
    for report in &reports {
        for (id, stats) in &report.raw {
            last_by_worker.insert(*id, (stats.last["jobsDone"], stats.last["units"]));
        }
    }
    let jobs: i64 = last_by_worker.values().map(|(jobs, _)| jobs).sum();
    let units: i64 = last_by_worker.values().map(|(_, units)| units).sum();
    assert_eq!((jobs, units), (200, (1..=200).sum()));
    assert!(handle.last_stats().is_some());
}

#[tokio::test]
async fn stopped_monitoring_sends_only_the_final_rolls() {
    let run = collect(
        Conductor::<u32, bool>::new("quiet_counter")
            .worker_limit(1)
            .stats_interval(Duration::from_millis(100))
            .jobs(0..60)
            .start()
            .unwrap(),
    )
    .await;
    assert!(outputs(&run.events).values().all(|monitoring| !monitoring));
    let reports = stats_reports(&run.events);
    // 60 jobs of 10 ms span six intervals, yet only a roll sent before the first job
    // (on a slow start) and the final roll on exit arrive.
    assert!(!reports.is_empty() && reports.len() <= 3, "{reports:?}");
    assert_eq!(reports.last().unwrap().agg.last["units"], 60);
}

#[tokio::test]
async fn lookups_are_served_by_the_master_and_written_by_workers() {
    let conductor = Conductor::<u32, String>::new("namer")
        .worker_limit(2)
        .lookup_table("names", [(1u32, "one"), (2, "two")])
        .jobs([1, 2, 3, 99]);
    let handle = conductor.handle();
    handle.set_lookup("names", &3u32, "three").unwrap();
    assert_eq!(
        handle
            .lookup::<String, _>("names", &1u32)
            .unwrap()
            .as_deref(),
        Some("one")
    );
    let report = conductor.run().await.unwrap();
    assert_eq!((report.completed(), report.failed()), (3, 1));
    assert!(
        report.failures()[0]
            .error
            .contains("no lookup table named `nope`"),
        "{}",
        report.failures()[0].error
    );
    let mut seen = handle.lookup_table::<u32, String>("seen").unwrap().unwrap();
    seen.sort();
    assert_eq!(
        seen,
        vec![(1, "one".into()), (2, "two".into()), (3, "three".into())]
    );
    assert_eq!(handle.lookup_names(), vec!["names", "seen"]);
}

#[tokio::test]
async fn the_worker_environment_is_passed_and_role_variables_are_removed() {
    let report = Conductor::<u8, (Option<String>, bool)>::new("env_reader")
        .worker_limit(1)
        .worker_env("GREETING", "hello")
        .jobs([0u8]);
    let run = collect(report.start().unwrap()).await;
    assert_eq!(outputs(&run.events)[&0], (Some("hello".to_string()), false));
}

#[tokio::test]
async fn messages_travel_both_ways_with_replies_and_broadcasts() {
    let mut running = Conductor::of::<Chatty>()
        .worker_limit(2)
        .prefetch(1)
        .jobs(0..40)
        .start()
        .unwrap();
    let handle = running.handle().clone();
    let mut progress = 0;
    let mut outputs = Vec::new();
    let mut answers = Vec::new();
    let mut broadcast_to = 0;
    while let Some(event) = running.next_event().await {
        match event {
            Event::Message(message) if message.cmd() == "prefix" => {
                assert!(message.wants_reply());
                message.reply("a-").unwrap();
            }
            Event::Message(message) if message.cmd() == "progress" => {
                assert!(!message.wants_reply());
                progress += 1;
            }
            Event::WorkerStarted { worker_id } => {
                let handle = handle.clone();
                answers.push(tokio::spawn(async move {
                    let echo: String = handle.request(worker_id, "echo", "hi").await.unwrap();
                    let unknown = handle
                        .request::<String, _>(worker_id, "nobody-handles-this", &())
                        .await
                        .unwrap_err();
                    (echo, unknown)
                }));
            }
            Event::Output(output) => {
                outputs.push(output.output);
                if outputs.len() == 20 {
                    broadcast_to = handle.broadcast("prefix", "b-").unwrap();
                }
            }
            _ => {}
        }
    }
    let report = running.wait().await.unwrap();
    assert_eq!(report.completed(), 40);
    assert_eq!(progress, 40);
    assert_eq!(broadcast_to, 2);
    assert!(outputs.iter().any(|o| o.starts_with("a-")));
    assert!(outputs.iter().any(|o| o.starts_with("b-")));
    for answer in answers {
        let (echo, unknown) = answer.await.unwrap();
        assert_eq!(echo, "HI");
        assert!(unknown.is_remote());
        let unknown = unknown.to_string();
        assert!(
            unknown.starts_with("command `nobody-handles-this` was not handled: ")
                && unknown.contains("Message::reply"),
            "{unknown}"
        );
    }
    assert!(handle
        .send(999, "prefix", "x")
        .unwrap_err()
        .is_disconnected());
}

#[tokio::test]
async fn a_request_nobody_listens_to_gets_an_error_reply() {
    // `run` reads no events, so the worker's request cannot be answered.
    let report = Conductor::<u32, u32>::new("asker")
        .worker_limit(1)
        .jobs([1, 2])
        .run()
        .await
        .unwrap();
    assert_eq!(report.failed(), 2);
    assert!(
        report.failures()[0]
            .error
            .contains("command `double` was not handled"),
        "{}",
        report.failures()[0].error
    );
}

#[tokio::test]
async fn abort_hands_back_every_job_that_did_not_run() {
    let mut running = Conductor::<u32, u32>::new("slow")
        .worker_limit(2)
        .jobs(0..1000)
        .start()
        .unwrap();
    let mut completed = BTreeSet::new();
    while let Some(event) = running.next_event().await {
        if let Event::Output(output) = event {
            completed.insert(output.id);
            if completed.len() == 5 {
                running.handle().abort();
            }
        }
    }
    let mut report = running.wait().await.unwrap();
    assert!(report.aborted());
    assert_eq!(report.completed(), completed.len() as u64);
    let not_run: BTreeSet<u64> = report.not_run().iter().map(|(id, _)| *id).collect();
    assert!(!not_run.is_empty());
    assert!(not_run.is_disjoint(&completed));
    assert_eq!(
        report.completed() + report.failed() + not_run.len() as u64,
        report.submitted()
    );
    for (id, job) in report.not_run() {
        assert_eq!(*id, u64::from(*job));
    }
    // The rest of the source was never touched, and comes back too.
    let mut rest = report
        .take_unsubmitted()
        .expect("the source was not finished");
    let next = rest.next().await.unwrap();
    assert_eq!(u64::from(next), report.submitted());
}

#[tokio::test]
async fn large_and_small_frames_in_turn_lose_nothing() {
    // 256 KiB jobs have the watchdog read frames ahead of the job thread; the tiny
    // ones after them hand the channel back; lookups need a reader in both modes.
    let sizes = (0..30u32)
        .map(|_| 256 << 10)
        .chain((0..3000).map(|_| 3))
        .chain((0..10).map(|_| 200 << 10));
    let jobs: Vec<(u32, Vec<u8>)> = sizes
        .enumerate()
        .map(|(n, size)| (n as u32, vec![(n % 7) as u8; size]))
        .collect();
    let expected: u64 = jobs
        .iter()
        .map(|(n, bytes)| bytes.iter().map(|&b| u64::from(b)).sum::<u64>() + u64::from(*n))
        .sum();
    let run = collect(
        Conductor::<(u32, Vec<u8>), u64>::new("byte_summer")
            .worker_limit(2)
            .lookup_table("offsets", [(0u32, 0u32)])
            .jobs(jobs)
            .start()
            .unwrap(),
    )
    .await;
    let outputs = outputs(&run.events);
    assert_eq!(outputs.len(), 3040);
    assert_eq!(outputs.values().sum::<u64>(), expected);
    assert_eq!((run.report.completed(), run.report.failed()), (3040, 0));
}

#[tokio::test]
async fn a_worker_stuck_in_a_long_job_still_hears_the_abort() {
    let mut running = Conductor::<u64, u64>::new("blocker")
        .worker_limit(1)
        .jobs([30_000u64])
        .start()
        .unwrap();
    let mut exits = Vec::new();
    while let Some(event) = running.next_event().await {
        match event {
            Event::WorkerStarted { .. } => {
                // Let the job begin: the job thread then sleeps inside it.
                tokio::time::sleep(Duration::from_millis(300)).await;
                running.handle().abort();
            }
            Event::WorkerExited(exit) => exits.push(exit),
            _ => {}
        }
    }
    let report = running.wait().await.unwrap();
    assert!(report.aborted());
    assert_eq!(report.not_run().len(), 1);
    // Exit code 5 is a worker leaving on the master's abort: its watchdog read the abort
    // while the job still ran, before the master's grace ran out and it was killed.
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(
        (exits[0].code, exits[0].signal),
        (Some(5), None),
        "{exits:?}"
    );
}

/// A stream that counts how far it has been pulled.
struct Counting {
    next: u64,
    end: u64,
    pulled: Arc<AtomicU64>,
}

impl futures_core::Stream for Counting {
    type Item = u64;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<u64>> {
        if self.next == self.end {
            return Poll::Ready(None);
        }
        self.next += 1;
        self.pulled.store(self.next, Ordering::Relaxed);
        Poll::Ready(Some(self.next - 1))
    }
}

#[tokio::test]
async fn a_lazy_source_is_pulled_only_as_workers_need_it() {
    let pulled = Arc::new(AtomicU64::new(0));
    let total = 200_000;
    let stream = Counting {
        next: 0,
        end: total,
        pulled: pulled.clone(),
    };
    let mut running = Conductor::<u64, u64>::new("square")
        .worker_limit(2)
        .job_stream(stream)
        .start()
        .unwrap();
    let mut pulled_at_first_output = None;
    let mut sum = 0u64;
    while let Some(event) = running.next_event().await {
        if let Event::Output(output) = event {
            pulled_at_first_output.get_or_insert(pulled.load(Ordering::Relaxed));
            sum = sum.wrapping_add(output.output);
        }
    }
    let report = running.wait().await.unwrap();
    assert_eq!(report.completed(), total);
    assert_eq!(sum, (0..total).map(|n| n * n).fold(0u64, u64::wrapping_add));
    let early = pulled_at_first_output.unwrap();
    assert!(
        early < total / 10,
        "{early} of {total} jobs pulled before the first output"
    );
}

#[tokio::test]
async fn several_conductors_of_different_types_run_at_once() {
    let squares = Conductor::<u64, u64>::new("square")
        .worker_limit(2)
        .jobs(0..500u64)
        .start()
        .unwrap();
    let picky = Conductor::<u32, u32>::new("picky")
        .worker_limit(2)
        .jobs(0..50)
        .start()
        .unwrap();
    let (squares, picky) = tokio::join!(collect(squares), collect(picky));
    assert_eq!(squares.report.completed(), 500);
    assert_eq!((picky.report.completed(), picky.report.failed()), (40, 10));
}

#[tokio::test]
async fn an_unknown_worker_type_is_a_clear_error_and_others_keep_running() {
    let good = Conductor::<u64, u64>::new("square")
        .worker_limit(1)
        .jobs(0..100u64)
        .start()
        .unwrap();
    let error = Conductor::<u64, u64>::new("no_such_type")
        .jobs(0..10u64)
        .run()
        .await
        .unwrap_err();
    assert!(error.is_unknown_worker_type());
    let message = error.to_string();
    assert!(
        message.starts_with("no worker of type `no_such_type` is registered in this binary"),
        "{message}"
    );
    assert!(
        message.contains("square") && message.contains("picky"),
        "{message}"
    );
    assert_eq!(collect(good).await.report.completed(), 100);
}

#[tokio::test]
async fn a_wrong_job_type_names_both_types() {
    let error = Conductor::<String, u64>::new("square")
        .jobs(["x".to_string()])
        .run()
        .await
        .unwrap_err();
    assert!(error.is_type_mismatch());
    assert_eq!(
        error.to_string(),
        "worker type `square` takes jobs of type `u64` and returns `u64`, \
         but the conductor sends `alloc::string::String` and expects `u64`"
    );
}

#[tokio::test]
async fn an_empty_source_ends_without_starting_workers() {
    let report = Conductor::<u64, u64>::new("square")
        .jobs(Vec::new())
        .run()
        .await
        .unwrap();
    assert_eq!((report.submitted(), report.workers_started()), (0, 0));
}

#[tokio::test]
async fn workers_are_recycled_after_max_jobs_and_each_runs_its_init_once() {
    let running = Conductor::<u32, (u64, u64)>::new("recycled")
        .worker_limit(2)
        .max_jobs_per_worker(7)
        .jobs(0..100)
        .start()
        .unwrap();
    let Collected { events, report } = collect(running).await;
    assert!(report.all_completed(), "{report:?}");
    assert_eq!(report.worker_crashes(), 0);
    let outputs = outputs(&events);
    assert_eq!(outputs.len(), 100);
    let mut per_worker: BTreeMap<u64, u64> = BTreeMap::new();
    for (worker_id, init_runs) in outputs.values() {
        assert_eq!(*init_runs, 1, "the init hook runs once per process, first");
        *per_worker.entry(*worker_id).or_default() += 1;
    }
    assert!(
        per_worker.values().all(|&jobs| jobs <= 7),
        "a worker ran more than 7 jobs: {per_worker:?}"
    );
    assert!(per_worker.len() >= 15, "{per_worker:?}");
    // A replacement may start just as the source runs dry, and get nothing.
    assert!(report.workers_started() >= per_worker.len() as u64);
}

#[tokio::test]
async fn a_failing_init_hook_is_a_crash_loop_that_names_its_error() {
    let error = Conductor::<u32, u32>::new("never_starts")
        .worker_limit(1)
        .crash_loop_limit(3)
        .jobs(0..10)
        .run()
        .await
        .expect_err("no worker can start");
    assert!(error.is_crash_loop(), "{error}");
    assert!(
        error.to_string().contains("the licence server is down"),
        "{error}"
    );
    // Nothing ran: what was pulled and what was not add up to every job.
    let mut rest = error
        .take_unsubmitted::<u32>()
        .expect("the rest of the source");
    let mut unpulled = 0;
    while rest.next().await.is_some() {
        unpulled += 1;
    }
    assert_eq!(error.not_run_count() + unpulled, 10);
}

/// With one job in flight per worker, the master stages each worker's next jobs; a
/// long job must not hold back the jobs staged behind it while the other worker idles.
#[tokio::test]
async fn jobs_staged_behind_a_long_job_go_to_an_idle_worker() {
    let jobs = (0..300u64).map(|n| if n == 150 { 2000 } else { 0 });
    let Collected { events, report } = collect(
        Conductor::<u64, u64>::new("blocker")
            .worker_limit(2)
            .prefetch(1)
            .jobs(jobs)
            .start()
            .unwrap(),
    )
    .await;
    assert_eq!((report.completed(), report.failed()), (300, 0));
    let order: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Output(output) => Some(output.id),
            _ => None,
        })
        .collect();
    assert_eq!(order.len(), 300);
    assert_eq!(order.last(), Some(&150), "a job waited behind the long one");
}

/// Runs until `outputs` outputs have come back, then shuts down; returns the ids of
/// the completed jobs and the report.
async fn shut_down_after<J, O>(
    conductor: Conductor<J, O>,
    outputs: usize,
) -> (BTreeSet<u64>, conductor::Report<J>)
where
    J: serde::Serialize + Clone + Send + 'static,
    O: serde::de::DeserializeOwned + Send + 'static,
{
    let mut running = conductor
        .worker_limit(2)
        .prefetch(1)
        .handle_signals(false)
        .start()
        .unwrap();
    let mut completed = BTreeSet::new();
    while let Some(event) = running.next_event().await {
        if let Event::Output(output) = event {
            completed.insert(output.id);
            if completed.len() == outputs {
                running.handle().shutdown();
            }
        }
    }
    let report = running.wait().await.unwrap();
    assert_eq!(report.interrupted(), Some(conductor::Interrupt::Shutdown));
    (completed, report)
}

#[tokio::test]
async fn a_shutdown_sends_none_of_the_jobs_staged_for_workers() {
    let jobs = (0..50_000u64).map(|_| 0);
    let (completed, report) =
        shut_down_after(Conductor::<u64, u64>::new("blocker").jobs(jobs), 500).await;
    assert_eq!(report.failed(), 0);
    assert_eq!(report.completed(), completed.len() as u64);
    assert!(!report.not_run().is_empty(), "the run was not cut short");
    assert_eq!(
        report.completed() + report.not_run().len() as u64,
        report.submitted()
    );
    let not_run: BTreeSet<u64> = report.not_run().iter().map(|(id, _)| *id).collect();
    assert!(not_run.is_disjoint(&completed));
}

#[tokio::test]
async fn shutdown_finishes_jobs_in_flight_and_reports_the_rest() {
    let (completed, report) =
        shut_down_after(Conductor::<u32, u32>::new("slow").jobs(0..1000), 5).await;
    assert!(!report.aborted());
    assert_eq!(report.exit_code(), 130);
    assert_eq!(report.failed(), 0);
    assert_eq!(report.completed(), completed.len() as u64);
    // Events trail the run a little, so a few more than 5 + 2 may have finished by
    // the time the call arrives; far from all of them.
    assert!(completed.len() < 100, "{}", completed.len());
    assert_eq!(
        report.completed() + report.not_run().len() as u64,
        report.submitted()
    );
}
