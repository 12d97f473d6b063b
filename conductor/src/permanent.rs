//! An error that no retry can fix, for job code to say so.

use std::fmt;

/// Wraps an error that no retry could fix (bad input, a missing file): a job that
/// returns it fails at once, whatever the [`Retry`](crate::Retry) policy, with
/// [`FailureKind::Permanent`](crate::FailureKind::Permanent). Found anywhere in the
/// error's chain, so context added around it keeps it permanent.
///
/// ```
/// use conductor::Permanent;
///
/// #[conductor::worker(type = "doc_permanent")]
/// fn parse(line: String) -> anyhow::Result<u64> {
///     match line.trim().parse() {
///         Ok(n) => Ok(n),
///         // Retrying would not change the line.
///         Err(e) => Err(Permanent::new(anyhow::anyhow!("bad line {line:?}: {e}")).into()),
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Permanent(anyhow::Error);

impl Permanent {
    pub fn new(error: impl Into<anyhow::Error>) -> Self {
        Permanent(error.into())
    }
}

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Permanent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Whether `error` was marked [`Permanent`] anywhere in its chain.
pub(crate) fn is_permanent(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<Permanent>())
}
