//! No silent hang and no leftovers: a frozen worker or a torn frame is detected
//! without `job_timeout`, a long job in a live worker is left alone, and processes
//! started by job code go with their worker.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conductor::{Conductor, Event, Running, Worker, WorkerCrash};

conductor::test_support!();

/// A file that says a job already ran once: the first run misbehaves, the retry not.
fn first_time(what: &str, job: u32) -> bool {
    let mark = std::env::temp_dir().join(format!(
        "conductor-hangs-{what}-{job}-{}",
        std::env::var("HANGS_RUN").unwrap_or_default()
    ));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(mark)
        .is_ok()
}

/// Job 3 stops its own process the first time (as SIGSTOP from outside would).
#[conductor::worker(type = "freezer")]
fn freezer(job: u32) -> anyhow::Result<u32> {
    if job == 3 && first_time("freeze", job) {
        // SAFETY: raise takes a signal number.
        unsafe { libc::raise(libc::SIGSTOP) };
    }
    Ok(job)
}

/// Job 3 starts a frame and never finishes it, the first time, while its process
/// stays alive (its heartbeats keep coming, into the torn frame).
#[conductor::worker(type = "tearer")]
fn tearer(job: u32, worker: &Worker) -> anyhow::Result<u32> {
    if job == 3 && first_time("tear", job) {
        // A results frame announced as 1 MiB, then a few bytes of it.
        worker.__send_raw_bytes(&[0, 0, 16, 0, 3, 1, 2, 3]);
        std::thread::sleep(Duration::from_secs(3600));
    }
    Ok(job)
}

/// Job 0 blocks its thread longer than the liveness bound.
#[conductor::worker(type = "long_sleeper")]
fn long_sleeper(job: u32) -> anyhow::Result<u32> {
    if job == 0 {
        std::thread::sleep(Duration::from_millis(2500));
    }
    Ok(job)
}

fn unique(what: &str) -> String {
    format!("{what}-{}-{:?}", std::process::id(), Instant::now())
}

async fn run_to_end<O>(mut running: Running<u32, O>) -> (Vec<WorkerCrash>, conductor::Report<u32>) {
    let mut crashes = Vec::new();
    while let Some(event) = running.next_event().await {
        if let Event::WorkerCrashed(crash) = event {
            crashes.push(crash);
        }
    }
    (crashes, running.wait().await.unwrap())
}

/// Runs 20 jobs of `worker_type`, whose job 3 hangs its worker the first time, under
/// a 2 s liveness bound: the worker is killed once, with a reason that says `why`, and
/// every job completes.
async fn one_hang_is_detected(worker_type: &str, why: &str) {
    let started = Instant::now();
    let (crashes, report) = run_to_end(
        Conductor::<u32, u32>::new(worker_type)
            .worker_limit(2)
            .worker_env("HANGS_RUN", unique(worker_type))
            .logging(false)
            .liveness_timeout(Duration::from_secs(2))
            .jobs(0..20)
            .start()
            .unwrap(),
    )
    .await;
    assert_eq!((report.completed(), report.failed()), (20, 0));
    assert_eq!(crashes.len(), 1, "{crashes:?}");
    assert!(crashes[0].reason.contains(why), "{crashes:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn a_frozen_worker_is_replaced_and_its_jobs_rerun_without_a_job_timeout() {
    one_hang_is_detected("freezer", "sent nothing").await;
}

#[tokio::test]
async fn a_torn_frame_breaks_only_its_worker() {
    one_hang_is_detected("tearer", "middle of a frame").await;
}

#[tokio::test]
async fn a_long_job_in_a_live_worker_is_never_taken_for_dead() {
    let (crashes, report) = run_to_end(
        Conductor::<u32, u32>::new("long_sleeper")
            .worker_limit(2)
            .logging(false)
            .liveness_timeout(Duration::from_millis(500))
            .jobs(0..10)
            .start()
            .unwrap(),
    )
    .await;
    assert_eq!((report.completed(), report.failed()), (10, 0));
    assert!(crashes.is_empty(), "{crashes:?}");
}

/// Starts `sleep 100` marked with `mark`, and returns its pid. Never waited for on
/// purpose: it is the leftover that must not outlive its worker.
#[allow(clippy::zombie_processes)]
fn start_sleep(mark: &str) -> u32 {
    let child = Command::new("sleep")
        .arg("100")
        .env("CONDUCTOR_LEFTOVER_MARK", mark)
        .spawn()
        .expect("sleep starts");
    child.id()
}

/// Processes alive with `mark` in their environment.
fn marked(mark: &str) -> Vec<u32> {
    let needle = format!("CONDUCTOR_LEFTOVER_MARK={mark}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let alive = std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        });
        if alive
            && environ
                .split(|b| *b == 0)
                .any(|var| var == needle.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

/// Waits up to a second for every process marked `mark` to be gone.
fn assert_all_gone_within_a_second(mark: &str, case: &str) {
    let since = Instant::now();
    while !marked(mark).is_empty() {
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "{case}: processes {:?} outlived their worker",
            marked(mark)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Each job starts a `sleep 100`, then: job 0 crashes its worker, job 1 outlives the
/// job timeout, job 2 returns (its worker is recycled after each job).
#[conductor::worker(type = "spawner")]
fn spawner(job: u32, worker: &Worker) -> anyhow::Result<u32> {
    let mark = std::env::var("CONDUCTOR_TEST_MARK").unwrap_or_default();
    start_sleep(&format!("{mark}-{job}"));
    match job {
        0 => worker.crash("crashing with a child running"),
        1 => std::thread::sleep(Duration::from_secs(3600)),
        _ => {}
    }
    Ok(job)
}

#[tokio::test]
async fn processes_started_by_a_job_die_with_its_worker() {
    let mark = unique("spawned");
    let (crashes, report) = run_to_end(
        Conductor::<u32, u32>::new("spawner")
            .worker_limit(1)
            .logging(false)
            .worker_env("CONDUCTOR_TEST_MARK", &mark)
            .max_attempts(1)
            .job_timeout(Duration::from_millis(800))
            .max_jobs_per_worker(1)
            .jobs(0..3)
            .start()
            .unwrap(),
    )
    .await;
    assert_eq!((report.completed(), report.failed()), (1, 2), "{crashes:?}");
    for (job, case) in [(0, "a crash"), (1, "a job timeout"), (2, "a recycle")] {
        assert_all_gone_within_a_second(&format!("{mark}-{job}"), case);
    }
}

/// Runs as a master in a child process for the test below: its job starts a `sleep
/// 100` that shares the master's stdout, then waits.
#[tokio::test]
async fn leftover_test_master() {
    if std::env::var_os("LEFTOVER_TEST_MASTER").is_none() {
        return;
    }
    let _ = Conductor::<u32, u32>::new("spawn_and_wait")
        .worker_limit(1)
        .logging(false)
        .jobs(0..1)
        .run()
        .await;
}

#[conductor::worker(type = "spawn_and_wait")]
fn spawn_and_wait(_job: u32) -> anyhow::Result<u32> {
    let mark = std::env::var("LEFTOVER_TEST_MARK").unwrap_or_default();
    let pid = start_sleep(&mark);
    println!("SPAWNED {pid}");
    std::thread::sleep(Duration::from_secs(3600));
    Ok(0)
}

/// A master killed with SIGKILL: its worker goes, and so does what the worker's job
/// started, so whoever reads the master's stdout sees it end.
#[test]
fn a_killed_master_leaves_no_process_holding_its_stdout() {
    let mark = unique("master-killed");
    let mut master = Command::new(std::env::current_exe().unwrap())
        .args(["leftover_test_master", "--exact", "--nocapture"])
        .env("LEFTOVER_TEST_MASTER", "1")
        .env("LEFTOVER_TEST_MARK", &mark)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(master.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("SPAWNED") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the master ended early"
        );
    }
    // The job's child is up once `SPAWNED` is printed; its /proc entry may lag on a
    // loaded machine.
    let seen_by = Instant::now() + Duration::from_secs(2);
    while marked(&mark).len() != 1 && Instant::now() < seen_by {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(marked(&mark).len(), 1);
    master.kill().unwrap();
    master.wait().unwrap();
    let killed_at = Instant::now();
    // Reading to the end returns only once no process holds the pipe.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = stdout.read_to_end(&mut rest);
        let _ = done_tx.send(());
    });
    let ended = done_rx.recv_timeout(Duration::from_secs(5));
    let leftovers = marked(&mark);
    for pid in &leftovers {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    assert!(
        ended.is_ok(),
        "the master's stdout stayed open: {leftovers:?}"
    );
    assert!(leftovers.is_empty(), "{leftovers:?} outlived the master");
    assert!(
        killed_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        killed_at.elapsed()
    );
}

#[conductor::worker(type = "tenth_of_a_second")]
fn tenth_of_a_second(job: u32) -> anyhow::Result<u32> {
    std::thread::sleep(Duration::from_millis(100));
    Ok(job)
}

/// Runs as a master in a child process for the test below.
#[tokio::test]
async fn stopped_test_master() {
    if std::env::var_os("STOPPED_TEST_MASTER").is_none() {
        return;
    }
    let running = Conductor::<u32, u32>::new("tenth_of_a_second")
        .worker_limit(2)
        .logging(false)
        .liveness_timeout(Duration::from_secs(1))
        .jobs(0..30)
        .start()
        .unwrap();
    println!("RUNNING");
    let (crashes, report) = run_to_end(running).await;
    println!("CRASHES {} COMPLETED {}", crashes.len(), report.completed());
}

/// A master stopped longer than the liveness bound (Ctrl-Z, a suspended laptop) finds
/// its workers silent when it resumes: the silence was its own, and nobody is killed.
#[test]
fn a_master_stopped_for_a_while_does_not_take_its_workers_for_dead() {
    let mut master = Command::new(std::env::current_exe().unwrap())
        .args(["stopped_test_master", "--exact", "--nocapture"])
        .env("STOPPED_TEST_MASTER", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(master.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("RUNNING") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the master ended early"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let pid = master.id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_secs(3));
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    master.wait().unwrap();
    assert!(rest.contains("CRASHES 0 COMPLETED 30"), "{rest}");
}
