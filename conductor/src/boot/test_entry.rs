//! The worker entry of test binaries, which have no `#[conductor::main]`: a test that
//! runs conductors starts its workers as copies of the test binary, running only the
//! test that [`crate::test_support!`] adds.

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
