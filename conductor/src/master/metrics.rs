//! The run's figures through the `metrics` facade (feature `metrics`).

/// Whether workers should time their jobs: only when the figures go somewhere.
pub(crate) fn wanted() -> bool {
    false
}
