//! What several integration tests share.

use std::path::PathBuf;
use std::time::Duration;

#[allow(dead_code)]
/// The path of an example binary that `cargo test` built next to this test.
pub fn example_path(name: &str) -> PathBuf {
    let mut path: PathBuf = std::env::current_exe().expect("the test binary has a path");
    path.pop();
    if path.ends_with("deps") {
        path.pop();
    }
    path.push("examples");
    path.push(name);
    path
}

/// The NATS server of the distributed tests (127.0.0.1:4222, or
/// `CONDUCTOR_TEST_NATS_URL`); `None` when there is none and none is required, so that
/// `cargo test` works with only the Rust toolchain. CI sets `CONDUCTOR_REQUIRE_NATS=1`.
#[allow(dead_code)]
pub fn nats_url() -> Option<String> {
    let url = std::env::var("CONDUCTOR_TEST_NATS_URL")
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string());
    let address = url.trim_start_matches("nats://").to_string();
    let reachable = std::net::TcpStream::connect_timeout(
        &address.parse().expect("a host:port address"),
        Duration::from_secs(2),
    )
    .is_ok();
    if reachable {
        return Some(url);
    }
    let required = std::env::var("CONDUCTOR_REQUIRE_NATS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "no NATS server at {url}, and CONDUCTOR_REQUIRE_NATS=1: start nats-server -js"
    );
    eprintln!("SKIPPED: no NATS server at {url} (set CONDUCTOR_REQUIRE_NATS=1 to fail instead)");
    None
}

/// A name for a run no other test (or earlier test run) uses.
#[allow(dead_code)]
pub fn unique_run(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("test-{name}-{}-{nanos}", std::process::id())
}

/// Runs the test `entry` of this test binary as a program of its own, with the
/// environment variable `variable` set (the entry does nothing without it); returns
/// whether it passed, and its stderr.
#[allow(dead_code)]
pub fn run_entry(entry: &str, variable: (&str, &str)) -> (bool, String) {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([entry, "--exact", "--nocapture"])
        .env(variable.0, variable.1)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
