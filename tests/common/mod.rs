//! What several integration tests share.

use std::path::PathBuf;

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
