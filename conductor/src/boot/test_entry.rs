//! The worker entry of test binaries, which have no `#[conductor::main]`: a test that
//! runs conductors starts its workers as copies of the test binary, running only the
//! test that [`crate::test_support!`] adds.
//!
//! libtest announces that test ("running 1 test", "test __conductor_worker_entry
//! ...") on stdout, which the worker shares with the test run: a line per worker
//! started, with no verdict. So before `main`, a worker's stdout is pointed at
//! `/dev/null` while libtest starts, and given back when the worker entry runs.

use std::sync::atomic::{AtomicI32, Ordering};

use super::env::{ENV_JOIN, ENV_WORKER_TYPE};

/// The worker's real stdout while libtest talks, or -1.
static HARNESS_STDOUT: AtomicI32 = AtomicI32::new(-1);

/// Runs before `main` in a test binary (see [`crate::test_support!`]): in a worker
/// process, silences stdout until the worker entry gives it back. Only libc calls: the
/// standard library may not be set up yet.
pub extern "C" fn silence_test_harness() {
    let is_worker = [ENV_WORKER_TYPE, ENV_JOIN].iter().any(|name| {
        let name = std::ffi::CString::new(*name).expect("no NUL in a variable name");
        // SAFETY: `getenv` with a NUL-terminated name; nothing else runs yet.
        !unsafe { libc::getenv(name.as_ptr()) }.is_null()
    });
    if !is_worker {
        return;
    }
    // SAFETY: plain descriptor calls on descriptors this function owns, and fd 1.
    unsafe {
        let saved = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if saved >= 0 && null >= 0 && libc::dup2(null, 1) == 1 {
            HARNESS_STDOUT.store(saved, Ordering::SeqCst);
        } else if saved >= 0 {
            libc::close(saved);
        }
        if null >= 0 {
            libc::close(null);
        }
    }
}

/// The worker's stdout back, for its jobs: libtest has said what it had to say.
pub(crate) fn give_back_stdout() {
    let saved = HARNESS_STDOUT.swap(-1, Ordering::SeqCst);
    if saved >= 0 {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // SAFETY: `saved` is the descriptor stored above, owned here alone.
        unsafe {
            libc::dup2(saved, 1);
            libc::close(saved);
        }
    }
}

/// A test binary's worker entry, registered by [`crate::test_support!`].
#[doc(hidden)]
pub struct TestEntry {
    pub module_path: &'static str,
}

inventory::collect!(TestEntry);

/// Whether this is a test binary with [`crate::test_support!`] (no progress bar there:
/// libtest does not capture what is drawn on the terminal).
pub(crate) fn in_test_binary() -> bool {
    inventory::iter::<TestEntry>.into_iter().next().is_some()
}

/// The arguments that make a test binary run only its worker entry, or `None` in a
/// normal program.
pub(crate) fn test_harness_args() -> Option<Vec<String>> {
    let entry = inventory::iter::<TestEntry>.into_iter().next()?;
    // libtest names tests by their path without the crate name.
    let path = match entry.module_path.split_once("::") {
        Some((_, rest)) => format!("{rest}::__conductor_worker_entry"),
        None => "__conductor_worker_entry".to_string(),
    };
    Some(vec![
        path,
        "--exact".into(),
        "--nocapture".into(),
        "--test-threads=1".into(),
    ])
}
