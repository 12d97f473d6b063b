//! The distributed mode against a real NATS server with JetStream (127.0.0.1:4222,
//! or `CONDUCTOR_TEST_NATS_URL`). Without a server these tests say so and pass, so
//! that `cargo test` works on a machine with only the Rust toolchain; CI sets
//! `CONDUCTOR_REQUIRE_NATS=1`, which makes a missing server a failure.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conductor::{Conductor, Event, Running, Worker};

conductor::test_support!();

mod common;
use common::{nats_url, unique_run};

/// The secret of the tests' runs, so that workers started by hand can join them.
const TEST_SECRET: &str = "5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2";

/// Squares `n` after `ms` milliseconds; answers which worker ran it.
#[conductor::worker(type = "nats_square")]
fn nats_square(job: (u64, u64), worker: &Worker) -> anyhow::Result<(u64, u64)> {
    let (n, ms) = job;
    std::thread::sleep(Duration::from_millis(ms));
    Ok((worker.id(), n * n))
}

#[conductor::worker(type = "nats_cube")]
fn nats_cube(job: u64) -> anyhow::Result<u64> {
    Ok(job * job * job)
}

/// Job 7 kills whichever worker runs it.
#[conductor::worker(type = "nats_poison")]
fn nats_poison(job: u64) -> anyhow::Result<u64> {
    if job == 7 {
        std::process::abort();
    }
    Ok(job)
}

/// This test binary, started as a worker that joins `run` by hand.
fn hand_worker(url: &str, run: &str, worker_type: Option<&str>) -> Child {
    hand_worker_command(url, run, worker_type)
        .spawn()
        .expect("the worker starts")
}

fn hand_worker_command(url: &str, run: &str, worker_type: Option<&str>) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "__conductor_worker_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CONDUCTOR_NATS_URL", url)
        .env("CONDUCTOR_JOIN", run)
        .env("CONDUCTOR_RUN_SECRET", TEST_SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(worker_type) = worker_type {
        command.env("CONDUCTOR_WORKER_TYPE", worker_type);
    }
    command
}

/// Every output by job id (each exactly once), and the report.
async fn collect<J, O: Clone>(
    mut running: Running<J, O>,
) -> (BTreeMap<u64, O>, conductor::Report<J>) {
    let mut outputs = BTreeMap::new();
    while let Some(event) = running.next_event().await {
        if let Event::Output(output) = event {
            assert!(
                outputs.insert(output.id, output.output).is_none(),
                "job {} answered twice",
                output.id
            );
        }
    }
    let report = running.wait().await.expect("the run ends without error");
    (outputs, report)
}

async fn stream_exists(url: &str, name: &str) -> bool {
    let client = async_nats::connect(url).await.expect("the test connects");
    let jetstream = async_nats::jetstream::new(client);
    jetstream.get_stream(name).await.is_ok()
}

#[tokio::test]
async fn a_run_over_nats_runs_every_job_once_and_removes_its_streams() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("basic");
    let running = Conductor::<(u64, u64), (u64, u64)>::new("nats_square")
        .nats(&url)
        .run_name(&run)
        .run_secret(TEST_SECRET)
        .worker_limit(2)
        .logging(false)
        .jobs((0..2000).map(|n| (n, 0)))
        .start()
        .unwrap();
    let (outputs, report) = collect(running).await;
    assert!(report.all_completed(), "{report:?}");
    assert_eq!(outputs.len(), 2000);
    for (id, (_, square)) in &outputs {
        assert_eq!(*square, id * id);
    }
    assert!(!stream_exists(&url, &format!("CONDUCTOR_{run}_JOBS")).await);
    assert!(!stream_exists(&url, &format!("CONDUCTOR_{run}_RESULTS")).await);
}

#[tokio::test]
async fn hand_started_workers_join_and_a_killed_one_loses_no_job() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("joined");
    let mut running = Conductor::<(u64, u64), (u64, u64)>::new("nats_square")
        .nats(&url)
        .run_name(&run)
        .run_secret(TEST_SECRET)
        .worker_limit(1)
        .prefetch(4)
        .ack_wait(Duration::from_secs(1))
        .logging(false)
        .jobs((0..1500).map(|n| (n, 2)))
        .start()
        .unwrap();
    let mut hands: Vec<Child> = (0..3).map(|_| hand_worker(&url, &run, None)).collect();
    let mut outputs = BTreeMap::new();
    let mut by_worker: BTreeMap<u64, u64> = BTreeMap::new();
    let mut killed = None;
    while let Some(event) = running.next_event().await {
        if let Event::Output(output) = event {
            let (worker_id, square) = output.output;
            assert_eq!(square, output.id * output.id);
            assert!(
                outputs.insert(output.id, worker_id).is_none(),
                "job {} twice",
                output.id
            );
            *by_worker.entry(worker_id).or_default() += 1;
            // Once every hand worker has answered, kill one of them mid-run.
            if killed.is_none() && by_worker.len() >= 4 {
                let victim = &mut hands[1];
                victim.kill().expect("SIGKILL");
                killed = Some(victim.id());
            }
        }
    }
    let report = running.wait().await.unwrap();
    assert!(
        killed.is_some(),
        "the hand workers never ran jobs: {by_worker:?}"
    );
    assert!(report.all_completed(), "{report:?}");
    assert_eq!(report.failed(), 0);
    assert_eq!(outputs.len(), 1500, "every job exactly once");
    assert!(by_worker.len() >= 4, "distinct worker ids: {by_worker:?}");
    for (n, hand) in hands.into_iter().enumerate() {
        let output = hand.wait_with_output().unwrap();
        if n != 1 {
            assert!(
                output.status.success(),
                "hand worker {n} left with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

#[tokio::test]
async fn two_runs_on_one_server_never_see_each_others_jobs() {
    let Some(url) = nats_url() else { return };
    let start = |run: String, base: u64| {
        Conductor::<(u64, u64), (u64, u64)>::new("nats_square")
            .nats(&url)
            .run_name(run)
            .run_secret(TEST_SECRET)
            .worker_limit(1)
            .logging(false)
            .jobs((base..base + 400).map(|n| (n, 1)))
            .start()
            .unwrap()
    };
    let first = start(unique_run("first"), 0);
    let second = start(unique_run("second"), 1_000_000);
    let ((first, first_report), (second, second_report)) =
        tokio::join!(collect(first), collect(second));
    assert!(first_report.all_completed() && second_report.all_completed());
    assert_eq!((first.len(), second.len()), (400, 400));
    assert!(first.values().all(|(_, square)| *square < 400 * 400));
    assert!(second
        .values()
        .all(|(_, square)| *square >= 1_000_000 * 1_000_000));
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_within_seconds() {
    let started = Instant::now();
    let conductor = Conductor::<u64, u64>::new("nats_cube")
        .nats("nats://127.0.0.1:1")
        .logging(false)
        .jobs(0..10);
    let handle = conductor.handle();
    let error = conductor
        .run()
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        !handle.is_processing(),
        "a run that never started is not processing"
    );
    assert!(error.is_transport(), "{error}");
    assert!(
        error
            .to_string()
            .contains("cannot reach the NATS server at nats://127.0.0.1:1"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut rest = error.take_unsubmitted::<u64>().expect("the jobs come back");
    assert_eq!(rest.next().await, Some(0));
}

#[tokio::test]
async fn a_worker_of_another_type_is_refused_with_a_clear_error() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("refuse");
    let running = Conductor::<(u64, u64), (u64, u64)>::new("nats_square")
        .nats(&url)
        .run_name(&run)
        .run_secret(TEST_SECRET)
        .worker_limit(1)
        .logging(false)
        .jobs((0..300).map(|n| (n, 5)))
        .start()
        .unwrap();
    let stranger = tokio::task::spawn_blocking({
        let (url, run) = (url.clone(), run.clone());
        move || {
            // Give the master a moment to listen.
            std::thread::sleep(Duration::from_millis(300));
            hand_worker(&url, &run, Some("nats_cube"))
                .wait_with_output()
                .unwrap()
        }
    });
    let (outputs, report) = collect(running).await;
    let stranger = stranger.await.unwrap();
    assert_eq!(stranger.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&stranger.stderr);
    assert!(
        stderr.contains("refused this worker")
            && stderr.contains("runs workers of type `nats_square`, not `nats_cube`"),
        "{stderr}"
    );
    assert!(report.all_completed());
    assert_eq!(outputs.len(), 300);
}

#[tokio::test]
async fn malformed_messages_are_reported_and_change_nothing() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("malformed");
    let running = Conductor::<(u64, u64), (u64, u64)>::new("nats_square")
        .nats(&url)
        .run_name(&run)
        .run_secret(TEST_SECRET)
        .worker_limit(2)
        .logging(false)
        .jobs((0..400).map(|n| (n, 2)))
        .start()
        .unwrap();
    let client = async_nats::connect(&url).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Conductor-Worker", "1");
    for subject in ["master", "join", "results", "worker.1"] {
        let subject = format!("conductor.{run}.{subject}");
        client
            .publish(subject.clone(), "garbage".into())
            .await
            .unwrap();
        client
            .publish_with_headers(subject, headers.clone(), vec![1, 0xff, 0xff].into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let (outputs, report) = collect(running).await;
    assert!(report.all_completed(), "{report:?}");
    assert_eq!(outputs.len(), 400);
}

#[tokio::test]
async fn a_job_that_kills_its_workers_fails_after_its_attempts() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("poison");
    let report = Conductor::<u64, u64>::new("nats_poison")
        .nats(&url)
        .run_name(&run)
        .run_secret(TEST_SECRET)
        .worker_limit(2)
        .prefetch(1)
        .max_attempts(2)
        .ack_wait(Duration::from_millis(500))
        .logging(false)
        .jobs(0..30)
        .run()
        .await
        .unwrap();
    assert_eq!(report.completed(), 29, "{report:?}");
    let failures = report.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].job, 7);
    assert_eq!(failures[0].attempts, 2);
    assert!(
        failures[0].error.contains("attempt 2 of 2"),
        "{}",
        failures[0].error
    );
}

/// Appends the job to the file in `TEST_JOB_LOG`, so a test can count executions.
#[conductor::worker(type = "nats_logged")]
fn nats_logged(job: u64) -> anyhow::Result<u64> {
    use std::io::Write;
    std::thread::sleep(Duration::from_millis(3));
    let path = std::env::var("TEST_JOB_LOG")?;
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    log.write_all(format!("{job}\n").as_bytes())?;
    Ok(job)
}

/// The master of the resume test, run in a child process of that test (and a no-op
/// in an ordinary test run).
#[tokio::test]
async fn resumable_master_entry() {
    let (Ok(url), Ok(run), Ok(log)) = (
        std::env::var("TEST_MASTER_URL"),
        std::env::var("TEST_MASTER_RUN"),
        std::env::var("TEST_JOB_LOG"),
    ) else {
        return;
    };
    let collected = Conductor::<u64, u64>::new("nats_logged")
        .nats(url)
        .run_name(run)
        .run_secret(TEST_SECRET)
        .worker_limit(2)
        .worker_env("TEST_JOB_LOG", log)
        .ack_wait(Duration::from_secs(1))
        .logging(false)
        .jobs(0..600)
        .collect_results()
        .await
        .unwrap();
    let report = &collected.report;
    // Every output, those of jobs the first master saw through included.
    let outputs_back = (0..600u64)
        .filter(|&n| collected.results.get(n as usize) == Some(&Ok(n)))
        .count();
    println!(
        "RESULT completed={} skipped={} failed={} outputs={outputs_back}",
        report.completed(),
        report.skipped(),
        report.failed()
    );
}

fn job_log(path: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

#[test]
fn a_killed_master_is_resumed_by_its_run_name_without_redoing_finished_jobs() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("resume");
    let log = std::env::temp_dir().join(format!("{run}.log"));
    let master = || {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "resumable_master_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TEST_MASTER_URL", &url)
            .env("TEST_MASTER_RUN", &run)
            .env("TEST_JOB_LOG", &log)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = master();
    // A worker from elsewhere outlives the first master and must leave at the end.
    let outsider = hand_worker_command(&url, &run, None)
        .env("TEST_JOB_LOG", &log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while job_log(&log).len() < 150 {
        assert!(Instant::now() < deadline, "the first master ran nothing");
        std::thread::sleep(Duration::from_millis(10));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let ran_before = job_log(&log).len();

    let second = master().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&second.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.find("RESULT ").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("no result from the second master:\n{stdout}"));
    let figure = |name: &str| -> u64 {
        let at = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
        line[at..].split(' ').next().unwrap().parse().unwrap()
    };
    let (completed, skipped) = (figure("completed"), figure("skipped"));
    assert_eq!(figure("failed"), 0, "{line}");
    assert_eq!(
        completed + skipped,
        600,
        "every job accounted for once: {line}"
    );
    assert!(skipped > 0, "the second master found nothing done: {line}");
    assert_eq!(figure("outputs"), 600, "{line}");
    let outsider = outsider.wait_with_output().unwrap();
    assert!(
        outsider.status.success(),
        "the worker of the first master left with {}: {}",
        outsider.status,
        String::from_utf8_lossy(&outsider.stderr)
    );

    let runs = job_log(&log);
    let mut count = BTreeMap::new();
    for job in &runs {
        *count.entry(*job).or_insert(0u32) += 1;
    }
    assert_eq!(count.len(), 600, "every job ran");
    // Only jobs in flight when the master died may have run twice.
    let again = runs.len() - 600;
    assert!(
        again <= 2 * 32 + 4,
        "{again} jobs ran again ({ran_before} ran before the kill)"
    );
    let _ = std::fs::remove_file(&log);
}

/// A NATS server of the test's own, on its own port and store, to stop and restart.
struct OwnServer {
    child: Child,
    port: u16,
    store: std::path::PathBuf,
}

impl OwnServer {
    fn start(port: u16, store: &std::path::Path) -> Option<OwnServer> {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(OwnServer {
            child,
            port,
            store: store.to_path_buf(),
        })
    }

    fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let again = OwnServer::start(self.port, &self.store).expect("nats-server restarts");
        let old = std::mem::replace(self, again);
        std::mem::forget(old);
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_mid_run_loses_nothing() {
    if nats_url().is_none() {
        return;
    }
    let port = 20000 + (std::process::id() % 20000) as u16;
    let store = std::env::temp_dir().join(format!("conductor-nats-store-{port}"));
    let _ = std::fs::remove_dir_all(&store);
    let Some(mut server) = OwnServer::start(port, &store) else {
        let required = std::env::var("CONDUCTOR_REQUIRE_NATS").is_ok_and(|v| v == "1");
        assert!(!required, "nats-server cannot be started");
        eprintln!("SKIPPED: no nats-server binary");
        return;
    };
    let url = format!("nats://127.0.0.1:{port}");
    let mut running = Conductor::<(u64, u64), (u64, u64)>::new("nats_square")
        .nats(&url)
        .run_name(unique_run("restart"))
        .run_secret(TEST_SECRET)
        .worker_limit(2)
        .ack_wait(Duration::from_secs(2))
        .logging(false)
        .jobs((0..3000).map(|n| (n, 1)))
        .start()
        .unwrap();
    let mut outputs = BTreeMap::new();
    let mut restarted = false;
    while let Some(event) = running.next_event().await {
        if let Event::Output(output) = event {
            assert_eq!(output.output.1, output.id * output.id);
            assert!(
                outputs.insert(output.id, ()).is_none(),
                "job {} twice",
                output.id
            );
            if outputs.len() == 500 && !restarted {
                restarted = true;
                tokio::task::block_in_place(|| server.restart());
            }
        }
    }
    let report = running.wait().await.unwrap();
    assert!(restarted);
    assert!(report.all_completed(), "{report:?}");
    assert_eq!(outputs.len(), 3000, "every job exactly once");
    drop(server);
    let _ = std::fs::remove_dir_all(&store);
}

/// A stateful worker that uses everything but jobs: a request from `init`, notices,
/// lookups both ways, a counter, and master requests and broadcasts.
struct Talker {
    prefix: String,
}

#[conductor::worker(type = "nats_talker")]
impl conductor::JobWorker for Talker {
    type Job = u32;
    type Output = String;

    async fn init(worker: &Worker) -> anyhow::Result<Self> {
        let prefix: String = worker.request("prefix", &worker.id()).await?;
        Ok(Talker { prefix })
    }

    async fn process(&mut self, job: u32, worker: &Worker) -> anyhow::Result<String> {
        worker.send("progress", &job)?;
        worker.count("units", 2);
        let name: Option<String> = worker.lookup("names", &job).await?;
        worker.set_lookup("seen", &job, &worker.id()).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(format!("{}{}", self.prefix, name.unwrap_or_default()))
    }

    async fn on_message(
        &mut self,
        message: conductor::Message,
        _worker: &Worker,
    ) -> anyhow::Result<()> {
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

#[tokio::test]
async fn messages_lookups_stats_and_broadcasts_cross_the_transport() {
    let Some(url) = nats_url() else { return };
    let conductor = Conductor::<u32, String>::new("nats_talker")
        .nats(&url)
        .run_name(unique_run("talk"))
        .run_secret(TEST_SECRET)
        .worker_limit(2)
        .prefetch(1)
        .stats_interval(Duration::from_millis(100))
        .lookup_table("names", (0..60u32).map(|n| (n, format!("n{n}"))))
        .logging(false)
        .jobs(0..60);
    let handle = conductor.handle();
    let mut running = conductor.start().unwrap();
    let (mut progress, mut outputs, mut answers, mut stats) = (0, Vec::new(), Vec::new(), 0);
    let mut broadcast_to = 0;
    while let Some(event) = running.next_event().await {
        match event {
            Event::Message(message) if message.cmd() == "prefix" => {
                message.reply("a-").unwrap();
            }
            Event::Message(message) if message.cmd() == "progress" => progress += 1,
            Event::WorkerStarted { worker_id } => {
                let handle = handle.clone();
                answers.push(tokio::spawn(async move {
                    handle.request::<String, _>(worker_id, "echo", "hi").await
                }));
            }
            Event::Stats(report) if report.agg.last.get("units").copied().unwrap_or(0) > 0 => {
                stats += 1;
            }
            Event::Output(output) => {
                outputs.push(output.output);
                if outputs.len() == 30 {
                    broadcast_to = handle.broadcast("prefix", "b-").unwrap();
                }
            }
            _ => {}
        }
    }
    let report = running.wait().await.unwrap();
    assert_eq!(report.completed(), 60);
    assert_eq!(progress, 60);
    assert_eq!(broadcast_to, 2);
    assert!(stats > 0, "no stats round counted the workers' units");
    assert!(outputs.iter().any(|o| o.starts_with("a-n")), "{outputs:?}");
    assert!(outputs.iter().any(|o| o.starts_with("b-n")), "{outputs:?}");
    for answer in answers {
        assert_eq!(answer.await.unwrap().unwrap(), "HI");
    }
    let seen = handle
        .lookup_table::<u32, u64>("seen")
        .unwrap()
        .expect("the table exists");
    assert_eq!(seen.len(), 60, "every worker write reached the master");
}

#[tokio::test]
async fn abort_stops_every_worker_and_keeps_the_run_for_later() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("abort");
    let mut running = Conductor::<(u64, u64), (u64, u64)>::new("nats_square")
        .nats(&url)
        .run_name(&run)
        .run_secret(TEST_SECRET)
        .worker_limit(2)
        .logging(false)
        .jobs((0..5000).map(|n| (n, 2)))
        .start()
        .unwrap();
    let mut done = 0;
    while let Some(event) = running.next_event().await {
        if let Event::Output(_) = event {
            done += 1;
            if done == 50 {
                running.handle().abort();
            }
        }
    }
    let report = running.wait().await.unwrap();
    assert!(report.aborted());
    assert!(report.completed() < 5000);
    assert_eq!(
        report.completed() + report.failed() + report.not_run().len() as u64,
        report.submitted()
    );
    // An aborted run is not finished: its streams stay, to be resumed.
    assert!(stream_exists(&url, &format!("CONDUCTOR_{run}_JOBS")).await);
    let client = async_nats::connect(&url).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    for name in ["JOBS", "RESULTS"] {
        let _ = jetstream
            .delete_stream(format!("CONDUCTOR_{run}_{name}"))
            .await;
    }
}

#[tokio::test]
async fn a_shutdown_keeps_the_queue_and_the_same_run_name_finishes_it() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("shutdown");
    let start = || {
        Conductor::<(u64, u64), (u64, u64)>::new("nats_square")
            .nats(&url)
            .run_name(&run)
            .run_secret(TEST_SECRET)
            .worker_limit(2)
            .handle_signals(false)
            .ack_wait(Duration::from_secs(1))
            .logging(false)
            .jobs((0..3000).map(|n| (n, 1)))
            .start()
            .unwrap()
    };
    let mut first = start();
    let mut done_first = BTreeMap::new();
    while let Some(event) = first.next_event().await {
        if let Event::Output(output) = event {
            done_first.insert(output.id, output.output);
            if done_first.len() == 100 {
                first.handle().shutdown();
            }
        }
    }
    let report = first.wait().await.unwrap();
    assert_eq!(report.interrupted(), Some(conductor::Interrupt::Shutdown));
    assert!(report.completed() < 3000, "{report:?}");
    assert_eq!(
        report.completed() + report.not_run().len() as u64,
        report.submitted()
    );
    assert!(stream_exists(&url, &format!("CONDUCTOR_{run}_JOBS")).await);

    // The second master runs only what is left, and hands back every output: those
    // of the jobs the first one saw through too.
    let mut second = start();
    let mut outputs = BTreeMap::new();
    let mut handed_back = 0;
    while let Some(event) = second.next_event().await {
        if let Event::Output(output) = event {
            if output.worker_id == 0 {
                handed_back += 1;
                assert_eq!(done_first.get(&output.id), Some(&output.output));
            }
            assert!(outputs.insert(output.id, output.output).is_none());
        }
    }
    let report = second.wait().await.unwrap();
    assert!(report.interrupted().is_none());
    assert_eq!(report.skipped(), done_first.len() as u64, "{report:?}");
    assert_eq!(report.completed() + report.skipped(), 3000);
    assert_eq!(handed_back, done_first.len());
    assert_eq!(
        outputs
            .into_values()
            .map(|(_, square)| square)
            .collect::<Vec<_>>(),
        (0..3000).map(|n| n * n).collect::<Vec<_>>()
    );
    assert!(!stream_exists(&url, &format!("CONDUCTOR_{run}_JOBS")).await);
}

#[conductor::worker(type = "nats_len")]
fn nats_len(job: Vec<u8>) -> anyhow::Result<usize> {
    Ok(job.len())
}

fn refuse_init(_worker: &Worker) -> anyhow::Result<()> {
    anyhow::bail!("no licence on this machine")
}

#[conductor::worker(type = "nats_never_starts", init = refuse_init)]
fn nats_never_starts(job: u64) -> anyhow::Result<u64> {
    Ok(job)
}

#[tokio::test]
async fn a_job_larger_than_the_servers_messages_fails_alone() {
    let Some(url) = nats_url() else { return };
    let jobs = vec![vec![1u8; 10], vec![2u8; 2 << 20], vec![3u8; 10]];
    let report = Conductor::<Vec<u8>, usize>::new("nats_len")
        .nats(&url)
        .run_name(unique_run("large"))
        .run_secret(TEST_SECRET)
        .worker_limit(1)
        .logging(false)
        .jobs(jobs)
        .run()
        .await
        .unwrap();
    assert_eq!(report.completed(), 2, "{report:?}");
    let failures = report.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].id, 1);
    assert!(
        failures[0].error.contains("frame limit"),
        "{}",
        failures[0].error
    );
}

#[tokio::test]
async fn a_failing_init_is_a_crash_loop_and_burns_no_job() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("init");
    let error = Conductor::<u64, u64>::new("nats_never_starts")
        .nats(&url)
        .run_name(&run)
        .run_secret(TEST_SECRET)
        .worker_limit(1)
        .crash_loop_limit(3)
        .logging(false)
        .jobs(0..20)
        .run()
        .await
        .expect_err("no worker can start");
    assert!(error.is_crash_loop(), "{error}");
    assert!(error.to_string().contains("no licence"), "{error}");
    assert!(
        error.failures::<u64>().is_empty(),
        "jobs were charged: {error}"
    );
    // A failed run keeps its streams, to be resumed; this one never will be.
    remove_run(&url, &run).await;
}

/// Removes what a run that stopped early left on the server: tests leave nothing.
async fn remove_run(url: &str, run: &str) {
    let client = async_nats::connect(url).await.expect("the test connects");
    let jetstream = async_nats::jetstream::new(client);
    for stream in ["JOBS", "RESULTS", "LOOKUPS"] {
        let _ = jetstream
            .delete_stream(format!("CONDUCTOR_{run}_{stream}"))
            .await;
    }
}

#[tokio::test]
async fn a_second_master_for_a_running_run_is_refused() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("owner");
    let first = Conductor::<(u64, u64), (u64, u64)>::new("nats_square")
        .nats(&url)
        .run_name(&run)
        .run_secret(TEST_SECRET)
        .worker_limit(1)
        .logging(false)
        .jobs((0..300).map(|n| (n, 2)))
        .start()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let error = Conductor::<(u64, u64), (u64, u64)>::new("nats_square")
        .nats(&url)
        .run_name(&run)
        .run_secret(TEST_SECRET)
        .logging(false)
        .jobs((0..300).map(|n| (n, 2)))
        .run()
        .await
        .expect_err("the run has a master");
    assert!(error.is_transport(), "{error}");
    assert!(
        error.to_string().contains("another master runs it"),
        "{error}"
    );
    let (outputs, report) = collect(first).await;
    assert!(report.all_completed());
    assert_eq!(outputs.len(), 300);
}

#[tokio::test]
async fn local_workers_are_recycled_after_max_jobs() {
    let Some(url) = nats_url() else { return };
    let running = Conductor::<(u64, u64), (u64, u64)>::new("nats_square")
        .nats(&url)
        .run_name(unique_run("recycle"))
        .run_secret(TEST_SECRET)
        .worker_limit(2)
        .prefetch(4)
        .max_jobs_per_worker(50)
        .logging(false)
        .jobs((0..400).map(|n| (n, 0)))
        .start()
        .unwrap();
    let (outputs, report) = collect(running).await;
    assert!(report.all_completed(), "{report:?}");
    let mut per_worker: BTreeMap<u64, u64> = BTreeMap::new();
    for (worker_id, _) in outputs.values() {
        *per_worker.entry(*worker_id).or_default() += 1;
    }
    // A worker takes whole messages, of a quarter of its limit at most: the one it
    // takes last may carry it past the limit by that much.
    assert!(
        per_worker.values().all(|&jobs| jobs <= 50 + 50 / 4),
        "{per_worker:?}"
    );
    assert!(report.workers_started() >= 7, "{report:?}");
    assert_eq!(report.worker_crashes(), 0, "recycling is not crashing");
}

/// Fails the first run of every job (a mark per job in `NATS_RETRY_MARKS`).
#[conductor::worker(type = "nats_flaky")]
fn nats_flaky(job: u64) -> anyhow::Result<u64> {
    let dir = std::path::PathBuf::from(std::env::var("NATS_RETRY_MARKS").unwrap());
    let first = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join(job.to_string()))
        .is_ok();
    if first {
        anyhow::bail!("the first run of job {job} fails");
    }
    Ok(job * 10)
}

/// The retry policy is the master's: in the distributed mode a job that returned an
/// error goes back on the run queue after its backoff, and any worker runs it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_work_through_the_run_queue() {
    let Some(url) = nats_url() else {
        return;
    };
    let marks = std::env::temp_dir().join(unique_run("nats-retry-marks"));
    std::fs::create_dir_all(&marks).unwrap();
    let outputs: Vec<u64> = Conductor::new("nats_flaky")
        .nats(&url)
        .run_name(unique_run("retry"))
        .run_secret(TEST_SECRET)
        .worker_limit(2)
        .logging(false)
        .worker_env("NATS_RETRY_MARKS", marks.to_string_lossy())
        .retry(
            conductor::Retry::attempts(2)
                .backoff(Duration::from_millis(10), Duration::from_millis(50)),
        )
        .jobs(0..30u64)
        .collect()
        .await
        .unwrap();
    assert_eq!(outputs, (0..30).map(|n| n * 10).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(marks);
}

/// The quick try: the example's master makes the run's secret and prints the line that
/// joins a worker; a worker started with that line joins and takes jobs.
#[test]
fn the_printed_join_line_joins_a_worker_to_the_distributed_example() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("example");
    let mut master = Command::new(common::example_path("distributed"))
        .args([
            "--url",
            &url,
            "--run",
            &run,
            "--jobs",
            "400",
            "--job-ms",
            "5",
            "--workers",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("build the example with `cargo build --examples --features nats`");
    let mut stderr = std::io::BufReader::new(master.stderr.take().unwrap());
    let mut line = String::new();
    use std::io::BufRead;
    while line.is_empty() || !line.contains("CONDUCTOR_RUN_SECRET=") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no join line from the master"
        );
    }
    let variables: Vec<(String, String)> = line
        .split_whitespace()
        .filter_map(|word| word.split_once('='))
        .filter(|(name, _)| name.starts_with("CONDUCTOR_"))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    assert_eq!(variables.len(), 3, "{line}");
    let worker = Command::new(common::example_path("distributed"))
        .envs(variables)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let worker = worker.wait_with_output().unwrap();
    assert!(
        worker.status.success(),
        "{}",
        String::from_utf8_lossy(&worker.stderr)
    );
    let output = master.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("accounted for: 400 of 400 jobs, each once\n"),
        "{stdout}"
    );
    // The hand-joined worker (id 2: the master's own is 1) took some of them.
    assert!(stdout.contains("worker 2: "), "{stdout}");
}

/// A worker started by hand without the run's secret, or with another one, says so
/// and exits; the run goes on without it.
#[tokio::test]
async fn a_worker_without_the_runs_secret_is_told_so_and_the_run_goes_on() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("secret");
    // The source stays open until both workers were turned away: the run (and the
    // master they ask) cannot end before.
    let (more, mut jobs) = tokio::sync::mpsc::unbounded_channel::<u64>();
    (0..300).for_each(|n| more.send(n).unwrap());
    let running = Conductor::<u64, u64>::new("nats_cube")
        .nats(&url)
        .run_name(&run)
        .run_secret(TEST_SECRET)
        .worker_limit(1)
        .logging(false)
        .job_stream(futures_util::stream::poll_fn(move |cx| jobs.poll_recv(cx)))
        .start()
        .unwrap();
    let missing = hand_worker_command(&url, &run, None)
        .env_remove("CONDUCTOR_RUN_SECRET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        stderr.contains("needs its secret: set CONDUCTOR_RUN_SECRET"),
        "{stderr}"
    );
    let wrong = hand_worker_command(&url, &run, None)
        .env("CONDUCTOR_RUN_SECRET", "00".repeat(32))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success());
    assert!(
        stderr.contains("carries the run's seal") && stderr.contains("CONDUCTOR_RUN_SECRET"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&"00".repeat(32)),
        "the secret is never printed back"
    );
    drop(more);
    let (outputs, report) = collect(running).await;
    assert_eq!(outputs.len(), 300);
    assert!(
        report.rejected_messages() >= 1,
        "the wrong worker's request was counted"
    );
}

/// No fixed waits: a one-job run over NATS ends about as soon as a local one (the
/// goal is 50 ms more; the bound here leaves room for a loaded machine, and would
/// still catch the waits of a quarter second each it once had).
#[test]
fn a_one_job_run_over_nats_waits_for_nothing() {
    let Some(url) = nats_url() else { return };
    let time = |nats: bool| {
        let mut command = Command::new(common::example_path("throughput"));
        command.args(["--jobs", "1", "--workers", "2"]);
        if nats {
            command.args(["--nats", &url]);
        }
        let started = Instant::now();
        let output = command.output().expect("the throughput example runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        started.elapsed()
    };
    let median = |nats: bool| {
        let mut runs: Vec<Duration> = (0..5).map(|_| time(nats)).collect();
        runs.sort();
        runs[2]
    };
    let (local, nats) = (median(false), median(true));
    assert!(
        nats < local + Duration::from_millis(150),
        "one job: {nats:?} over NATS, {local:?} locally"
    );
}
