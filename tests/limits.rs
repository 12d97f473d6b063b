//! Resource limits: too few processes or open files for the workers asked for. The
//! run goes on with the workers it could start, or fails with an error that names the
//! limit; never a silent stall, never a panic.
//!
//! Each case runs the `uneven` example (6 workers, 200 jobs of 1 ms) as the
//! unprivileged user `nobody` (root ignores the process limit) under `prlimit`, over a
//! range of limits: from too low for anything to enough for some workers. It skips
//! with a message where that cannot be arranged.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// What one run under a limit did.
struct Outcome {
    completed: bool,
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

/// A copy of the example that `nobody` may run, wherever the tree was checked out.
fn runnable_example(flag: &str) -> Option<PathBuf> {
    let source = common::example_path("uneven");
    let copy = std::env::temp_dir().join(format!("conductor-limits-{flag}-{}", std::process::id()));
    std::fs::copy(&source, &copy).ok()?;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).ok()?;
    Some(copy)
}

fn can_drop_privileges() -> bool {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "true",
        ])
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("prlimit").arg("--version").output().is_ok()
}

fn run_under(example: &PathBuf, limit: &str) -> Outcome {
    let started = Instant::now();
    let output = Command::new("timeout")
        .args(["60", "prlimit", limit, "--", "setpriv"])
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(example)
        .args(["--case", "short", "--workers", "6"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("timeout runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    Outcome {
        completed: stdout.contains("\"jobs\":200"),
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// Runs the example under each limit; checks every run ended promptly and either
/// completed or failed naming `limit_name`, and that both happened somewhere.
fn sweep(flag: &str, values: &[u32], limit_name: &str) {
    if !can_drop_privileges() {
        eprintln!("skipped: needs root, setpriv and prlimit to run as `nobody` under a limit");
        return;
    }
    // Processes of `nobody` count against each other's process limit: one sweep at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Some(example) = runnable_example(flag) else {
        eprintln!("skipped: the example could not be copied where `nobody` may run it");
        return;
    };
    let (mut went_on, mut failed_clearly) = (false, false);
    for value in values {
        let limit = format!("--{flag}={value}");
        let outcome = run_under(&example, &limit);
        let context = format!(
            "{limit}: exit {:?} after {:?}\n{}",
            outcome.code, outcome.took, outcome.stderr
        );
        assert_ne!(outcome.code, Some(124), "a stall: {context}");
        assert!(
            outcome.took < Duration::from_secs(20),
            "too slow: {context}"
        );
        assert!(!outcome.stderr.contains("panicked"), "a panic: {context}");
        if outcome.completed {
            assert_eq!(outcome.code, Some(0), "{context}");
            went_on |=
                outcome.stderr.contains("going on with") && outcome.stderr.contains(limit_name);
        } else {
            assert_eq!(outcome.code, Some(1), "{context}");
            assert!(
                outcome.stderr.contains(limit_name),
                "the limit unnamed: {context}"
            );
            failed_clearly = true;
        }
    }
    let _ = std::fs::remove_file(&example);
    assert!(
        failed_clearly,
        "no {flag} value was low enough to refuse the run"
    );
    assert!(
        went_on,
        "no {flag} value let the run go on with fewer workers, saying so"
    );
}

#[test]
fn too_few_processes_run_with_fewer_workers_or_fail_naming_the_limit() {
    sweep("nproc", &[6, 8, 10, 12, 16, 20, 30], "ulimit -u");
}

#[test]
fn too_few_files_run_with_fewer_workers_or_fail_naming_the_limit() {
    sweep("nofile", &[6, 8, 10, 12, 14, 16, 20], "ulimit -n");
}
