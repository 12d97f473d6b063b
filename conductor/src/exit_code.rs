//! The exit code of a `#[conductor::main]` program: the worst of its runs, so that a
//! `main` that ends with `run().await?` does not exit 0 after failed jobs or a Ctrl-C.
//! Each run's code is [`Report::exit_code`](crate::Report::exit_code) (1 for a run that
//! ended in an error); a run whose report is [marked handled](crate::Report::mark_handled)
//! counts no more.

use std::process::{ExitCode, Termination};
use std::sync::Mutex;

/// Each finished run's exit code, by its conductor's id.
static RUNS: Mutex<Vec<(String, i32)>> = Mutex::new(Vec::new());

fn runs() -> std::sync::MutexGuard<'static, Vec<(String, i32)>> {
    RUNS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records how run `conductor` ended.
pub(crate) fn record(conductor: &str, code: i32) {
    if code != 0 {
        runs().push((conductor.to_string(), code));
    }
}

/// Forgets run `conductor`: its caller dealt with how it ended.
pub(crate) fn forget(conductor: &str) {
    runs().retain(|(id, _)| id != conductor);
}

/// The worst code of the runs so far: an interruption (130, 143) over an abort (2)
/// over failed jobs (1).
pub(crate) fn worst() -> i32 {
    runs().iter().map(|(_, code)| *code).max().unwrap_or(0)
}

/// What `main` returned, then the runs: a `main` that succeeded exits with the worst
/// code of its runs; a failed one keeps its own code, unless a run was interrupted
/// (the shells' 130 or 143 says more than 1).
pub fn exit_code_of<T: Termination>(result: T) -> ExitCode {
    let own = result.report();
    match worst() {
        0 => own,
        runs if own == ExitCode::SUCCESS || runs >= 128 => ExitCode::from(runs as u8),
        _ => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_unhandled_run_decides_a_successful_mains_exit_code() {
        record("a", 1);
        record("b", 130);
        record("c", 0);
        assert_eq!(worst(), 130);
        assert_eq!(exit_code_of(()), ExitCode::from(130));
        // A failed `main` keeps its own code unless a run was interrupted.
        assert_eq!(exit_code_of(Err::<(), _>("boom")), ExitCode::from(130));
        forget("b");
        assert_eq!(exit_code_of(()), ExitCode::from(1));
        assert_eq!(exit_code_of(Err::<(), _>("boom")), ExitCode::FAILURE);
        forget("a");
        assert_eq!(exit_code_of(()), ExitCode::SUCCESS);
    }
}
