//! Operating a run as a person would, with real signals: the `batch` example is the
//! program, started, interrupted, killed and rerun from outside.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

/// Generous: only a hang should ever reach it.
const PATIENCE: Duration = Duration::from_secs(60);

fn batch(args: &[&str]) -> Command {
    let mut command = Command::new(common::example_path("batch"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn temp_journal(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("conductor-operating-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

fn journal_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until the journal holds at least `lines` lines; returns how many it holds.
fn wait_for_journal(path: &Path, lines: usize) -> usize {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = journal_lines(path).len();
        if now >= lines {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the journal never reached {lines} lines"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(rc, 0, "kill failed");
}

fn finish(child: Child) -> (Output, String) {
    let output = child.wait_with_output().expect("the batch ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, stdout)
}

/// The figure after `label ` in the example's summary line.
fn figure(stdout: &str, label: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("completed "))
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    let at = line
        .find(&format!("{label} "))
        .unwrap_or_else(|| panic!("no `{label}` in {line}"));
    line[at + label.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no figure for `{label}` in {line}"))
}

#[test]
fn the_first_ctrl_c_lets_jobs_in_flight_finish_and_reports_the_rest() {
    let journal = temp_journal("first-ctrl-c");
    let journal_arg = journal.to_str().unwrap();
    let child = batch(&[
        "--jobs",
        "60",
        "--job-ms",
        "300",
        "--prefetch",
        "1",
        "--journal",
        journal_arg,
    ])
    .spawn()
    .expect("the batch starts");
    let done_at_signal = wait_for_journal(&journal, 2);
    signal(&child, libc::SIGINT);
    let (output, stdout) = finish(child);

    assert_eq!(output.status.code(), Some(130), "{stdout}");
    assert!(stdout.contains("interrupted by Ctrl-C"), "{stdout}");
    let completed = figure(&stdout, "completed");
    assert_eq!(figure(&stdout, "failed"), 0, "{stdout}");
    assert_eq!(completed + figure(&stdout, "not run"), 60, "{stdout}");
    // The two jobs running at the signal (one per worker) finished; none started after.
    assert!(
        completed > done_at_signal as u64 && completed <= done_at_signal as u64 + 4,
        "{done_at_signal} done at the signal:\n{stdout}"
    );
    assert_eq!(journal_lines(&journal).len() as u64, completed);
}

#[test]
fn a_second_ctrl_c_stops_the_workers_at_once() {
    let started = Instant::now();
    let child = batch(&["--jobs", "10", "--job-ms", "30000", "--prefetch", "1"])
        .spawn()
        .expect("the batch starts");
    // Long enough for both workers to start their first job.
    std::thread::sleep(Duration::from_millis(1500));
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGINT);
    let (output, stdout) = finish(child);

    assert_eq!(output.status.code(), Some(130), "{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "jobs of 30 s were waited for: {:?}",
        started.elapsed()
    );
    assert_eq!(figure(&stdout, "completed"), 0, "{stdout}");
    assert_eq!(figure(&stdout, "not run"), 10, "{stdout}");
    assert_eq!(figure(&stdout, "failed"), 0, "{stdout}");
}

#[test]
fn sigterm_drains_like_ctrl_c_and_exits_143() {
    let journal = temp_journal("sigterm");
    let child = batch(&[
        "--jobs",
        "200",
        "--job-ms",
        "50",
        "--journal",
        journal.to_str().unwrap(),
    ])
    .spawn()
    .expect("the batch starts");
    wait_for_journal(&journal, 1);
    signal(&child, libc::SIGTERM);
    let (output, stdout) = finish(child);

    assert_eq!(output.status.code(), Some(143), "{stdout}");
    assert!(stdout.contains("interrupted by SIGTERM"), "{stdout}");
    let completed = figure(&stdout, "completed");
    assert!(completed < 200, "{stdout}");
    assert_eq!(completed + figure(&stdout, "not run"), 200, "{stdout}");
}

#[test]
fn a_killed_master_resumes_from_its_journal_and_runs_every_job_once() {
    let journal = temp_journal("resume");
    let args = [
        "--jobs",
        "400",
        "--job-ms",
        "5",
        "--journal",
        journal.to_str().unwrap(),
    ];
    let first = batch(&args).spawn().expect("the batch starts");
    wait_for_journal(&journal, 60);
    signal(&first, libc::SIGKILL);
    let (output, _) = finish(first);
    assert_eq!(output.status.code(), None, "SIGKILL ends it");

    let done_before = journal_lines(&journal).len() as u64;
    assert!(done_before < 400, "the first run was killed too late");
    // As if the master had died in the middle of a write.
    let mut text = std::fs::read(&journal).unwrap();
    text.extend_from_slice(b"ok\tframe-3");
    std::fs::write(&journal, text).unwrap();

    let (output, stdout) = finish(batch(&args).spawn().expect("the rerun starts"));
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert_eq!(figure(&stdout, "skipped"), done_before, "{stdout}");
    assert_eq!(figure(&stdout, "completed"), 400 - done_before, "{stdout}");

    let lines = journal_lines(&journal);
    assert_eq!(lines.len(), 400, "one line per job overall");
    let keys: BTreeSet<&str> = lines
        .iter()
        .map(|l| match l.split('\t').collect::<Vec<_>>()[..] {
            ["ok", key, _output] => key,
            _ => panic!("a torn or failed line: {l:?}"),
        })
        .collect();
    let expected: BTreeSet<String> = (0..400).map(|n| format!("frame-{n}")).collect();
    assert_eq!(
        keys,
        expected.iter().map(String::as_str).collect(),
        "every job exactly once"
    );
}

#[test]
fn a_finished_journal_makes_a_rerun_skip_everything() {
    let journal = temp_journal("rerun");
    let args = [
        "--jobs",
        "50",
        "--job-ms",
        "0",
        "--fail-every",
        "10",
        "--journal",
        journal.to_str().unwrap(),
    ];
    let (output, stdout) = finish(batch(&args).spawn().unwrap());
    assert_eq!(
        output.status.code(),
        Some(1),
        "failures make exit code 1:\n{stdout}"
    );
    assert_eq!(figure(&stdout, "failed"), 5, "{stdout}");

    // Failed jobs are retried on the rerun; they fail again.
    let (output, stdout) = finish(batch(&args).spawn().unwrap());
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert_eq!(figure(&stdout, "skipped"), 45, "{stdout}");
    assert_eq!(figure(&stdout, "completed"), 0, "{stdout}");
    assert_eq!(figure(&stdout, "failed"), 5, "{stdout}");
}

/// Drops ANSI escape sequences and splits on both line feeds and carriage returns,
/// which is how a terminal would show the text, roughly.
fn screen_lines(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let mut clean = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        clean.push(c);
    }
    clean
        .split(['\n', '\r'])
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Runs the batch with a pseudo-terminal for stdout and stderr, through `script`.
fn batch_on_a_terminal(args: &str, progress_env: Option<&str>) -> Vec<String> {
    let command = format!("{} {args}", common::example_path("batch").display());
    let mut script = Command::new("script");
    script
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(Stdio::null());
    if let Some(value) = progress_env {
        script.env("CONDUCTOR_PROGRESS", value);
    }
    let output = script.output().expect("`script` (util-linux) runs");
    assert!(output.status.success(), "{output:?}");
    screen_lines(&output.stdout)
}

#[test]
fn the_progress_bar_shows_on_a_terminal_without_tearing_worker_lines() {
    let lines = batch_on_a_terminal("--jobs 400 --job-ms 2", None);
    let text = lines.join("\n");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("400/400") && l.contains("jobs/s")),
        "no finished bar:\n{text}"
    );
    // Every line a worker printed arrives whole, on its own line.
    for job in [99, 199, 299, 399] {
        let wanted = format!("rendered job {job}");
        let line = lines
            .iter()
            .find(|l| l.contains(&wanted))
            .unwrap_or_else(|| panic!("no `{wanted}` line:\n{text}"));
        assert!(
            line.starts_with("worker ") && line.ends_with(&wanted),
            "torn: {line:?}"
        );
    }
    assert!(text.contains("completed 400, failed 0"), "{text}");
}

#[test]
fn two_conductors_draw_two_labelled_bars_and_master_lines_stay_whole() {
    let command = common::example_path("multi_type").display().to_string();
    let output = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("`script` (util-linux) runs");
    assert!(output.status.success(), "{output:?}");
    let lines = screen_lines(&output.stdout);
    let text = lines.join("\n");
    // Each conductor's final bar is on screen, with its label, neither drawn over.
    // (The bars of a group are apart by cursor moves, which `screen_lines` drops.)
    for (label, total) in [("shouter", "4/4"), ("cuber", "100/100")] {
        let finished = text.match_indices(label).any(|(at, _)| {
            let bar: String = text[at..].chars().take(100).collect();
            bar.contains(&format!(" {total} "))
        });
        assert!(finished, "no finished `{label}` bar:\n{text}");
    }
    assert!(
        lines.iter().any(|l| l == "both conductors are running"),
        "the master's line was torn or lost:\n{text}"
    );
    assert!(text.contains("sum of cubes 1..=100: 25502500"), "{text}");
}

#[test]
fn the_progress_bar_stays_off_when_not_on_a_terminal_or_switched_off() {
    let lines = batch_on_a_terminal("--jobs 100 --job-ms 1", Some("0"));
    assert!(
        !lines.iter().any(|l| l.contains("jobs/s")),
        "CONDUCTOR_PROGRESS=0 still drew:\n{}",
        lines.join("\n")
    );
    let output = batch(&["--jobs", "100", "--job-ms", "1"])
        .output()
        .expect("the batch runs");
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("jobs/s"), "drew into a pipe: {stderr}");
}
