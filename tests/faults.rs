//! Faults on real processes: workers killed mid-run, poison jobs, crash loops, stuck
//! jobs, broken frames, a killed master, and workers started wrongly.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conductor::{Conductor, Event, JobWorker, Running, Worker, WorkerCrash};

conductor::test_support!();

/// Returns the job doubled and the pid that ran it.
#[conductor::worker(type = "doubler")]
async fn doubler(job: u64) -> anyhow::Result<(u64, u32)> {
    tokio::time::sleep(Duration::from_micros(300)).await;
    Ok((job * 2, std::process::id()))
}

#[conductor::worker(type = "poisoned")]
fn poisoned(job: u32) -> anyhow::Result<u32> {
    if job == 13 {
        std::process::abort();
    }
    Ok(job)
}

#[conductor::worker(type = "self_crasher")]
fn self_crasher(job: u32, worker: &Worker) -> anyhow::Result<u32> {
    if job == 5 {
        worker.crash(format!("cannot go on after job {job}"));
    }
    Ok(job)
}

struct NeverStarts;

#[conductor::worker(type = "never_starts")]
impl JobWorker for NeverStarts {
    type Job = u32;
    type Output = u32;

    async fn init(_worker: &Worker) -> anyhow::Result<Self> {
        anyhow::bail!("the database is down")
    }

    async fn process(&mut self, job: u32, _worker: &Worker) -> anyhow::Result<u32> {
        Ok(job)
    }
}

#[conductor::worker(type = "sleepy")]
fn sleepy(job: u32) -> anyhow::Result<u32> {
    if job == 3 {
        // Blocking on purpose: the job thread never yields.
        std::thread::sleep(Duration::from_secs(3600));
    }
    Ok(job)
}

#[conductor::worker(type = "vandal")]
fn vandal(job: u32, worker: &Worker) -> anyhow::Result<u32> {
    match job {
        3 => worker.__send_raw_bytes(&[3, 0, 0, 0, 9, 9, 9]),
        4 => worker.__send_raw_bytes(&[0xff, 0xff, 0xff, 0x7f]),
        _ => {}
    }
    Ok(job)
}

/// Says goodbye in the middle of its work, which a master must not believe.
#[conductor::worker(type = "liar")]
fn liar(job: u32, worker: &Worker) -> anyhow::Result<u32> {
    if job == 2 {
        // A control frame holding `Bye`.
        worker.__send_raw_bytes(&[2, 0, 0, 0, 1, 6]);
        std::process::exit(0);
    }
    Ok(job)
}

/// Takes longer to start than any job may take.
struct SlowStart;

#[conductor::worker(type = "slow_start")]
impl JobWorker for SlowStart {
    type Job = u32;
    type Output = u32;

    async fn init(_worker: &Worker) -> anyhow::Result<Self> {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        Ok(SlowStart)
    }

    async fn process(&mut self, job: u32, _worker: &Worker) -> anyhow::Result<u32> {
        Ok(job)
    }
}

#[conductor::worker(type = "big_output")]
fn big_output(job: u32) -> anyhow::Result<Vec<u8>> {
    Ok(vec![7; job as usize])
}

#[conductor::worker(type = "byte_counter")]
fn byte_counter(job: Vec<u8>) -> anyhow::Result<usize> {
    Ok(job.len())
}

#[conductor::worker(type = "big_talker")]
async fn big_talker(job: u32, worker: &Worker) -> anyhow::Result<u32> {
    match job {
        0 => worker.send("big", &vec![0u8; 100_000])?,
        1 => drop(worker.lookup::<Vec<u8>, _>("blobs", &1u32).await?),
        _ => {}
    }
    Ok(job)
}

#[conductor::worker(type = "long_jobs")]
async fn long_jobs(_job: u32) -> anyhow::Result<u32> {
    println!("WORKER_PID {}", std::process::id());
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(0)
}

fn crashes<J, O>(events: &[Event<J, O>]) -> Vec<WorkerCrash> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::WorkerCrashed(crash) => Some(crash.clone()),
            _ => None,
        })
        .collect()
}

async fn events_and_report<J, O>(
    mut running: Running<J, O>,
) -> (Vec<Event<J, O>>, conductor::Report<J>) {
    let mut events = Vec::new();
    while let Some(event) = running.next_event().await {
        events.push(event);
    }
    (events, running.wait().await.unwrap())
}

#[tokio::test]
async fn workers_killed_mid_run_lose_no_job_and_run_none_twice_in_the_report() {
    kill_workers_mid_run(Conductor::<u64, (u64, u32)>::new("doubler")).await;
}

/// With one job in flight, the next ones wait staged in the master's lane for each
/// worker: a killed worker's staged jobs were never sent, and come back uncharged.
#[tokio::test]
async fn workers_killed_with_jobs_staged_for_them_lose_none() {
    kill_workers_mid_run(Conductor::<u64, (u64, u32)>::new("doubler").prefetch(1)).await;
}

async fn kill_workers_mid_run(conductor: Conductor<u64, (u64, u32)>) {
    let total = 5000u64;
    let mut running = conductor.worker_limit(2).jobs(0..total).start().unwrap();
    let mut outputs: BTreeMap<u64, u64> = BTreeMap::new();
    let mut kills = 0;
    let mut crash_events = Vec::new();
    while let Some(event) = running.next_event().await {
        match event {
            Event::Output(output) => {
                let (doubled, pid) = output.output;
                assert!(
                    outputs.insert(output.id, doubled).is_none(),
                    "job {} reported twice",
                    output.id
                );
                if outputs.len().is_multiple_of(400) && kills < 10 {
                    // SAFETY: kill(2) on a pid; the worst case is ESRCH.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    kills += 1;
                }
            }
            Event::WorkerCrashed(crash) => crash_events.push(crash),
            Event::Failed(failure) => panic!("job {} failed: {}", failure.id, failure.error),
            _ => {}
        }
    }
    let report = running.wait().await.unwrap();
    assert_eq!(kills, 10);
    assert_eq!(crash_events.len(), 10, "{crash_events:?}");
    assert!(crash_events.iter().all(|c| c.signal == Some(libc::SIGKILL)));
    assert_eq!(
        (report.submitted(), report.completed(), report.failed()),
        (total, total, 0)
    );
    assert!(report.not_run().is_empty());
    assert_eq!(outputs.len() as u64, total);
    assert!(outputs.iter().all(|(id, doubled)| *doubled == id * 2));
    assert_eq!(report.worker_crashes(), 10);
}

#[tokio::test]
async fn a_poison_job_fails_after_its_attempts_and_spares_the_others() {
    let (events, report) = events_and_report(
        Conductor::<u32, u32>::new("poisoned")
            .worker_limit(2)
            .max_attempts(3)
            .jobs(0..200)
            .start()
            .unwrap(),
    )
    .await;
    assert_eq!((report.completed(), report.failed()), (199, 1));
    let failure = &report.failures()[0];
    assert_eq!((failure.job, failure.attempts), (13, 3));
    assert!(
        failure.error.contains("attempt 3 of 3"),
        "{}",
        failure.error
    );
    assert!(failure.error.contains("signal"), "{}", failure.error);
    assert_eq!(failure.kind, conductor::FailureKind::Crashed);
    let crashes = crashes(&events);
    assert!(crashes.len() >= 3, "{crashes:?}");
    assert!(crashes.iter().all(|c| c.signal == Some(libc::SIGABRT)));
}

#[tokio::test]
async fn worker_crash_exits_with_code_4_and_is_replaced() {
    let (events, report) = events_and_report(
        Conductor::<u32, u32>::new("self_crasher")
            .worker_limit(2)
            .max_attempts(2)
            .jobs(0..50)
            .start()
            .unwrap(),
    )
    .await;
    assert_eq!((report.completed(), report.failed()), (49, 1));
    assert_eq!(report.failures()[0].job, 5);
    assert!(
        report.failures()[0]
            .error
            .contains("crashed: cannot go on after job 5"),
        "{}",
        report.failures()[0].error
    );
    let crashes = crashes(&events);
    assert_eq!(crashes.len(), 2, "{crashes:?}");
    assert!(crashes.iter().all(|c| c.code == Some(4)));
}

#[tokio::test]
async fn a_crash_loop_ends_the_run_with_a_clear_error() {
    let error = Conductor::<u32, u32>::new("never_starts")
        .worker_limit(2)
        .crash_loop_limit(4)
        .jobs(0..10)
        .run()
        .await
        .unwrap_err();
    assert!(error.is_crash_loop());
    assert!(
        error.failures::<u32>().is_empty(),
        "a failed init is blamed on no job"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("crash loop: 4 workers in a row died"),
        "{message}"
    );
    assert!(
        message.contains("init failed: the database is down"),
        "{message}"
    );
    // Nothing is lost: the jobs taken from the source come back, then the rest of it.
    let mut jobs: Vec<u32> = error
        .not_run()
        .unwrap()
        .into_iter()
        .map(|(_, job)| job)
        .collect();
    assert_eq!(jobs.len(), error.not_run_count());
    let mut rest = error
        .take_unsubmitted::<u32>()
        .expect("the source was not finished");
    while let Some(job) = rest.next().await {
        jobs.push(job);
    }
    assert_eq!(jobs, (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_stuck_job_times_out_and_its_worker_is_replaced() {
    let (events, report) = events_and_report(
        Conductor::<u32, u32>::new("sleepy")
            .worker_limit(2)
            .job_timeout(Duration::from_millis(1500))
            .max_attempts(2)
            .jobs(0..20)
            .start()
            .unwrap(),
    )
    .await;
    assert_eq!((report.completed(), report.failed()), (19, 1));
    let failure = &report.failures()[0];
    assert_eq!((failure.job, failure.attempts), (3, 2));
    assert!(
        failure.error.contains("timed out after 1.5s"),
        "{}",
        failure.error
    );
    assert_eq!(failure.kind, conductor::FailureKind::TimedOut);
    // Two kills for job 3; a busy machine might time out an innocent job once more.
    let crashes = crashes(&events);
    assert!(crashes.len() >= 2, "{crashes:?}");
    assert!(crashes
        .iter()
        .all(|c| c.signal == Some(libc::SIGKILL) && c.reason.contains("timed out")));
}

#[tokio::test]
async fn malformed_and_oversized_frames_stop_only_the_worker_that_sent_them() {
    let (events, report) = events_and_report(
        Conductor::<u32, u32>::new("vandal")
            .worker_limit(2)
            .prefetch(1)
            .max_attempts(2)
            .jobs(0..30)
            .start()
            .unwrap(),
    )
    .await;
    assert_eq!((report.completed(), report.failed()), (28, 2));
    let errors: BTreeMap<u32, String> = report
        .failures()
        .iter()
        .map(|f| (f.job, f.error.clone()))
        .collect();
    assert!(
        errors[&3].contains("broke the protocol: malformed frame"),
        "{}",
        errors[&3]
    );
    assert!(
        errors[&4].contains("exceeds the limit of 67108864 bytes"),
        "{}",
        errors[&4]
    );
    assert_eq!(crashes(&events).len(), 4);
}

#[tokio::test]
async fn jobs_and_outputs_too_large_for_a_frame_fail_clearly() {
    let report = Conductor::<u32, Vec<u8>>::new("big_output")
        .worker_limit(1)
        .max_frame_bytes(64 << 10)
        .jobs([10, 1 << 20, 20])
        .run()
        .await
        .unwrap();
    assert_eq!((report.completed(), report.failed()), (2, 1));
    assert!(
        report.failures()[0]
            .error
            .starts_with("the output of 1048581 bytes exceeds the frame limit of 65536 bytes"),
        "{}",
        report.failures()[0].error
    );
    assert_eq!(report.failures()[0].kind, conductor::FailureKind::Protocol);
    let report = Conductor::<Vec<u8>, usize>::new("byte_counter")
        .worker_limit(1)
        .max_frame_bytes(64 << 10)
        .jobs([vec![1; 100], vec![2; 100_000], vec![3; 10]])
        .run()
        .await
        .unwrap();
    assert_eq!((report.completed(), report.failed()), (2, 1));
    let failure = &report.failures()[0];
    assert_eq!((failure.id, failure.attempts), (1, 0), "it never ran");
    assert_eq!(
        failure.error,
        "the job of 100005 bytes exceeds the frame limit of 65536 bytes"
    );
}

#[tokio::test]
async fn a_bye_with_jobs_in_flight_is_a_crash_not_a_hang() {
    let (events, report) = events_and_report(
        Conductor::<u32, u32>::new("liar")
            .worker_limit(2)
            .prefetch(1)
            .max_attempts(2)
            .jobs(0..10)
            .start()
            .unwrap(),
    )
    .await;
    assert_eq!((report.completed(), report.failed()), (9, 1));
    assert_eq!(report.failures()[0].job, 2);
    assert_eq!(crashes(&events).len(), 2);
}

#[tokio::test]
async fn a_slow_init_counts_against_start_up_not_against_jobs() {
    let report = Conductor::<u32, u32>::new("slow_start")
        .worker_limit(2)
        .job_timeout(Duration::from_millis(1000))
        .jobs(0..10)
        .run()
        .await
        .unwrap();
    assert_eq!((report.completed(), report.worker_crashes()), (10, 0));
}

#[tokio::test]
async fn a_run_dropped_midway_takes_its_workers_down() {
    let handle;
    {
        let conductor = Conductor::<u32, u32>::new("long_jobs")
            .worker_limit(2)
            .logging(false)
            .jobs(0..2);
        handle = conductor.handle();
        let run = conductor.run();
        // Give the workers time to start, then drop the run.
        let _ = tokio::time::timeout(Duration::from_millis(500), run).await;
    }
    assert!(!handle.is_processing());
    assert!(handle.workers().is_empty());
}

#[tokio::test]
async fn messages_too_large_for_a_frame_fail_where_they_are_sent() {
    let conductor = Conductor::<u32, u32>::new("big_talker")
        .worker_limit(1)
        .max_frame_bytes(64 << 10)
        .lookup_table("blobs", [(1u32, vec![0u8; 100_000])])
        .jobs(0..3);
    let handle = conductor.handle();
    let report = conductor.run().await.unwrap();
    assert_eq!(
        (report.completed(), report.failed(), report.worker_crashes()),
        (1, 2, 0)
    );
    for failure in report.failures() {
        assert!(
            failure
                .error
                .contains("exceeds the frame limit of 65536 bytes"),
            "{}",
            failure.error
        );
    }
    let refused = handle.broadcast("big", &vec![0u8; 100_000]).unwrap_err();
    assert!(
        refused.to_string().contains("exceeds the frame limit"),
        "{refused}"
    );
}

/// Runs as a master in a child process for the orphan test below.
#[tokio::test]
async fn orphan_test_master() {
    if std::env::var_os("ORPHAN_TEST_MASTER").is_none() {
        return;
    }
    let _ = Conductor::<u32, u32>::new("long_jobs")
        .worker_limit(2)
        .logging(false)
        .jobs(0..2)
        .run()
        .await;
}

fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie waiting for its new parent to reap it is gone too.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

#[test]
fn a_killed_master_leaves_no_orphans() {
    let mut master = Command::new(std::env::current_exe().unwrap())
        .args(["orphan_test_master", "--exact", "--nocapture"])
        .env("ORPHAN_TEST_MASTER", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(master.stdout.take().unwrap()).lines();
    let mut pids = Vec::new();
    for line in lines {
        let line = line.unwrap();
        if let Some((_, pid)) = line.split_once("WORKER_PID ") {
            pids.push(pid.trim().parse::<u32>().unwrap());
            if pids.len() == 2 {
                break;
            }
        }
    }
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|pid| !is_gone(*pid)));
    master.kill().unwrap();
    master.wait().unwrap();
    let killed_at = Instant::now();
    // Workers exit within milliseconds; the generous bound only avoids flakes.
    while !pids.iter().all(|pid| is_gone(*pid)) {
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "workers {pids:?} outlived their master"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!(
        "workers gone {:?} after the master was killed",
        killed_at.elapsed()
    );
}

#[test]
fn a_worker_of_an_unknown_type_refuses_clearly() {
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let fd = theirs.as_raw_fd();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["__conductor_worker_entry", "--exact", "--nocapture"])
        .env("CONDUCTOR_WORKER_TYPE", "no_such_type")
        .env("CONDUCTOR_CHANNEL_FD", fd.to_string())
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    // SAFETY: only fcntl between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    drop(theirs);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no worker of type `no_such_type` is registered in this binary"),
        "{stderr}"
    );
    // The refusal also travels on the channel, so the master can say why.
    let mut frame = Vec::new();
    ours.read_to_end(&mut frame).unwrap();
    let text = String::from_utf8_lossy(&frame);
    assert!(text.contains("no_such_type"), "{text}");
}

#[test]
fn a_worker_started_by_hand_without_a_channel_exits_with_a_clear_message() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["__conductor_worker_entry", "--exact", "--nocapture"])
        .env("CONDUCTOR_WORKER_TYPE", "doubler")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("workers are started by their master"),
        "{stderr}"
    );
}
