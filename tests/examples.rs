//! Every example is a real program: run each one and check what it prints.

use std::process::Command;

mod common;

/// Runs an example binary that `cargo test` built next to this test.
fn run_example(name: &str) -> String {
    let path = common::example_path(name);
    let output = Command::new(&path).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {}: {e} (build it with `cargo test` or `cargo build --examples`)",
            path.display()
        )
    });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{name} failed with {}:\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn squares_prints_the_seeds_lines() {
    let stdout = run_example("squares");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 11, "{stdout}");
    for job in 0..10u64 {
        let line = lines
            .iter()
            .find(|l| l.ends_with(&format!(", Job {job} => the square is {}", job * job)))
            .unwrap_or_else(|| panic!("no line for job {job}:\n{stdout}"));
        assert!(
            line.starts_with("Worker 1,") || line.starts_with("Worker 2,"),
            "{line}"
        );
    }
    assert_eq!(
        lines[10],
        "All jobs finished processing: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]"
    );
}

#[test]
fn multi_type_runs_two_conductors_at_once() {
    let stdout = run_example("multi_type");
    assert!(
        stdout.contains("shouted: ALPHA BETA GAMMA DELTA"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sum of cubes 1..=100: 25502500"),
        "{stdout}"
    );
}

#[test]
fn lookups_reads_and_writes_the_masters_tables() {
    let stdout = run_example("lookups");
    let expected = "a => apple\nb => banana\nc => carrot\nd => dill\ne => eggplant\nf => fig\nz => unknown\n7 jobs completed";
    assert!(stdout.contains(expected), "{stdout}");
}

#[test]
fn stats_prints_aggregated_reports() {
    let stdout = run_example("stats");
    assert!(stdout.contains("stats from 2 workers"), "{stdout}");
    assert!(stdout.ends_with("60 jobs completed\n"), "{stdout}");
}

#[test]
fn messages_go_both_ways() {
    let stdout = run_example("messages");
    for expected in [
        "worker 1 heard: hello to you too, worker 1!",
        "asked worker 2: worker 2 tags with",
        "an unhandled command is an error, not a hang: command `unknown` was not handled",
        "broadcast a new prefix to 2 workers",
        "reached job 5",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("item-19") && stdout.contains("job-0"),
        "{stdout}"
    );
}

/// Ten jobs whose 6th and 7th take 300 ms: the two long ones run side by side, so the
/// batch takes about one long job's time (the ideal), not two.
#[test]
fn uneven_jobs_finish_close_to_the_ideal_schedule() {
    let path = common::example_path("uneven");
    let output = Command::new(&path)
        .args(["--case", "two-long"])
        .output()
        .expect("the uneven example runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let ratio: f64 = stdout
        .split("\"ratio\":")
        .nth(1)
        .and_then(|rest| rest.trim_end_matches(['}', '\n']).parse().ok())
        .unwrap_or_else(|| panic!("no ratio in {stdout}"));
    // Two long jobs one after the other would be 2.0.
    assert!(ratio < 1.5, "{ratio}× the ideal: {stdout}");
}

#[test]
fn logs_shows_job_code_events_in_the_masters_terminal() {
    let stdout = run_example("logs");
    for (job, width) in [64, 320, 640, 1280].into_iter().enumerate() {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("made a thumbnail width={width} ")))
            .unwrap_or_else(|| panic!("no line for width {width}:\n{stdout}"));
        assert!(line.starts_with(" INFO job{worker="), "{line}");
        assert!(
            line.contains(&format!(" job={job} attempt=1}}: logs: ")),
            "{line}"
        );
    }
    assert!(
        stdout.contains("}: logs: thumbnail 64 px wide is too small to read"),
        "{stdout}"
    );
    assert!(!stdout.contains("not shown"), "{stdout}");
}
