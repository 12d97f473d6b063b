//! The one error type of conductor.

use std::any::Any;
use std::fmt;
use std::sync::Mutex;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::jobs::Jobs;
use crate::report::{FailureKind, JobFailure};

/// A failed job kept in an [`Error`], which is not generic over the job type.
#[derive(Debug)]
pub(crate) struct EncodedFailure {
    pub id: u64,
    /// `None` when the job could not be encoded.
    pub job: Option<Bytes>,
    pub error: String,
    pub attempts: u32,
    pub kind: FailureKind,
}

/// Everything that can go wrong in conductor, for the master and for job code alike.
///
/// Branch on meaning with the predicates (`is_crash_loop`, `is_remote`, ...) rather
/// than on the message. An error that ends a run early still holds the jobs that did
/// not run: see [`Error::not_run`].
pub struct Error(Box<Inner>);

struct Inner {
    kind: Kind,
    /// Jobs that did not run when a run ended in error, as (job id, encoded job).
    not_run: Vec<(u64, Bytes)>,
    /// Jobs that failed for good before a run ended in error, with the job encoded.
    failures: Vec<EncodedFailure>,
    /// The rest of the job source, never pulled: a `Jobs<J>` of the run's job type.
    unsubmitted: Mutex<Option<Box<dyn Any + Send>>>,
    /// The conductor whose run ended with this error, for [`Error::mark_handled`].
    conductor: Option<String>,
}

#[derive(Debug)]
pub(crate) enum Kind {
    UnknownWorkerType {
        name: String,
        registered: Vec<String>,
    },
    DuplicateWorkerType {
        name: String,
        first: String,
        second: String,
    },
    TypeMismatch {
        worker_type: String,
        worker_job: String,
        worker_output: String,
        conductor_job: String,
        conductor_output: String,
    },
    CrashLoop {
        deaths: u32,
        last: String,
        completed: u64,
        failed: u64,
    },
    Spawn(std::io::Error),
    /// The journal of a resumable run could not be read or written.
    Journal {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    Codec {
        what: &'static str,
        message: String,
    },
    /// The distributed transport (NATS) failed: unreachable, refused, misconfigured.
    Transport(String),
    /// The other side answered a request with an error.
    Remote(String),
    /// The other side went away before answering.
    Disconnected(String),
    /// The conductor was used in a way it does not allow.
    Usage(String),
    /// `collect` found jobs without an output: failed, or not run.
    JobsWithoutOutput {
        missing: usize,
        total: usize,
        first: String,
    },
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Error(Box::new(Inner {
            kind,
            not_run: Vec::new(),
            failures: Vec::new(),
            unsubmitted: Mutex::new(None),
            conductor: None,
        }))
    }

    pub(crate) fn with_not_run(mut self, not_run: Vec<(u64, Bytes)>) -> Self {
        self.0.not_run = not_run;
        self
    }

    pub(crate) fn with_failures(mut self, failures: Vec<EncodedFailure>) -> Self {
        self.0.failures = failures;
        self
    }

    pub(crate) fn with_unsubmitted<J: 'static>(self, jobs: Option<Jobs<J>>) -> Self {
        if let Some(jobs) = jobs {
            *self.0.unsubmitted.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(jobs));
        }
        self
    }

    pub(crate) fn codec(what: &'static str, err: impl fmt::Display) -> Self {
        Error::new(Kind::Codec {
            what,
            message: err.to_string(),
        })
    }

    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn transport(message: impl Into<String>) -> Self {
        Error::new(Kind::Transport(message.into()))
    }

    pub(crate) fn remote(message: impl Into<String>) -> Self {
        Error::new(Kind::Remote(message.into()))
    }

    pub(crate) fn disconnected(message: impl Into<String>) -> Self {
        Error::new(Kind::Disconnected(message.into()))
    }

    pub(crate) fn journal(path: &std::path::Path, error: std::io::Error) -> Self {
        Error::new(Kind::Journal {
            path: path.to_path_buf(),
            error,
        })
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Error::new(Kind::Usage(message.into()))
    }

    /// No worker of the requested type is registered in this binary.
    pub fn is_unknown_worker_type(&self) -> bool {
        matches!(self.0.kind, Kind::UnknownWorkerType { .. })
    }

    /// Two `#[conductor::worker]` registrations use the same type name.
    pub fn is_duplicate_worker_type(&self) -> bool {
        matches!(self.0.kind, Kind::DuplicateWorkerType { .. })
    }

    /// The conductor's job or output type differs from the worker's.
    pub fn is_type_mismatch(&self) -> bool {
        matches!(self.0.kind, Kind::TypeMismatch { .. })
    }

    /// Workers kept dying before finishing any job, so the run stopped.
    pub fn is_crash_loop(&self) -> bool {
        matches!(self.0.kind, Kind::CrashLoop { .. })
    }

    /// The limit the system hit, in words, when a worker could not be started for want
    /// of a process, a thread or a file.
    pub(crate) fn exhausted_resource(&self) -> Option<String> {
        match &self.0.kind {
            Kind::Spawn(e) if crate::limits::is_exhausted(e) => Some(crate::limits::explain(e)),
            _ => None,
        }
    }

    /// Says that the caller dealt with this error of a run (it ran the jobs again,
    /// say), so that it no longer makes a `#[conductor::main]` program exit 1; as
    /// [`Report::mark_handled`](crate::Report::mark_handled) does for a report.
    pub fn mark_handled(&self) {
        if let Some(conductor) = &self.0.conductor {
            crate::exit_code::forget(conductor);
        }
    }

    /// Ties this error to the run of conductor `id` (see [`Error::mark_handled`]).
    pub(crate) fn of_run(mut self, id: &str) -> Self {
        self.0.conductor = Some(id.to_string());
        self
    }

    /// `collect` found jobs without an output: some failed ([`Error::failures`]) or
    /// did not run ([`Error::not_run`], [`Error::take_unsubmitted`]).
    pub fn is_job_failure(&self) -> bool {
        matches!(self.0.kind, Kind::JobsWithoutOutput { .. })
    }

    /// A worker process could not be started.
    pub fn is_spawn(&self) -> bool {
        matches!(self.0.kind, Kind::Spawn(_))
    }

    /// The distributed transport failed: the NATS server was unreachable, or the
    /// run's streams could not be set up.
    pub fn is_transport(&self) -> bool {
        matches!(self.0.kind, Kind::Transport(_))
    }

    /// The journal of a resumable run could not be read or written.
    pub fn is_journal(&self) -> bool {
        matches!(self.0.kind, Kind::Journal { .. })
    }

    /// A value could not be serialized or deserialized.
    pub fn is_codec(&self) -> bool {
        matches!(self.0.kind, Kind::Codec { .. })
    }

    /// The other side (master or worker) answered a request with an error.
    pub fn is_remote(&self) -> bool {
        matches!(self.0.kind, Kind::Remote(_))
    }

    /// The other side went away before answering.
    pub fn is_disconnected(&self) -> bool {
        matches!(self.0.kind, Kind::Disconnected(_))
    }

    /// The jobs that never ran when a run ended in error (empty for other errors),
    /// decoded as the conductor's job type, with their job ids.
    pub fn not_run<J: DeserializeOwned>(&self) -> Result<Vec<(u64, J)>, Error> {
        self.0
            .not_run
            .iter()
            .map(|(id, bytes)| {
                Ok((
                    *id,
                    crate::wire::value::from_slice(bytes).map_err(|e| Error::codec("a job", e))?,
                ))
            })
            .collect()
    }

    /// The rest of the job source that the run never pulled from, when it ended in
    /// error; `J` is the conductor's job type. Returns `None` the second time.
    pub fn take_unsubmitted<J: 'static>(&self) -> Option<Jobs<J>> {
        let mut slot = self.0.unsubmitted.lock().unwrap_or_else(|p| p.into_inner());
        match slot.take()?.downcast::<Jobs<J>>() {
            Ok(jobs) => Some(*jobs),
            Err(other) => {
                *slot = Some(other);
                None
            }
        }
    }

    /// The jobs that failed for good before a run ended in error, with the job decoded
    /// as the conductor's job type (`None` for a job that could not be encoded, which
    /// is then its error). With [`Error::not_run`] and the completed count in the
    /// message, every submitted job is accounted for.
    pub fn failures<J: DeserializeOwned>(&self) -> Vec<JobFailure<Option<J>>> {
        self.0
            .failures
            .iter()
            .map(|f| JobFailure {
                id: f.id,
                job: f
                    .job
                    .as_ref()
                    .and_then(|bytes| crate::wire::value::from_slice(bytes).ok()),
                error: f.error.clone(),
                attempts: f.attempts,
                kind: f.kind,
                history: Vec::new(),
            })
            .collect()
    }

    /// How many jobs never ran when a run ended in error.
    pub fn not_run_count(&self) -> usize {
        self.0.not_run.len()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.kind {
            Kind::UnknownWorkerType { name, registered } => {
                write!(f, "no worker of type `{name}` is registered in this binary")?;
                if registered.is_empty() {
                    write!(f, " (none is: annotate a function with #[conductor::worker(type = \"{name}\")])")
                } else {
                    write!(f, " (registered: {})", registered.join(", "))
                }
            }
            Kind::DuplicateWorkerType { name, first, second } => {
                write!(f, "worker type `{name}` is registered twice: at {first} and at {second}")
            }
            Kind::TypeMismatch { worker_type, worker_job, worker_output, conductor_job, conductor_output } => write!(
                f,
                "worker type `{worker_type}` takes jobs of type `{worker_job}` and returns `{worker_output}`, \
                 but the conductor sends `{conductor_job}` and expects `{conductor_output}`"
            ),
            Kind::CrashLoop { deaths, last, completed, failed } => write!(
                f,
                "crash loop: {deaths} workers in a row died before finishing a job (last: {last}); \
                 stopped after {completed} completed and {failed} failed, {} not run",
                self.0.not_run.len()
            ),
            Kind::Spawn(e) => write!(f, "could not start a worker process: {e}"),
            Kind::Journal { path, error } => write!(f, "journal {}: {error}", path.display()),
            Kind::Codec { what, message } => write!(f, "{what}: {message}"),
            Kind::Transport(message) => write!(f, "{message}"),
            Kind::Remote(message) => write!(f, "{message}"),
            Kind::Disconnected(message) => write!(f, "{message}"),
            Kind::Usage(message) => write!(f, "{message}"),
            Kind::JobsWithoutOutput { missing, total, first } => write!(
                f,
                "{missing} of {total} jobs have no output (first: {first}); \
                 collect_results keeps the outputs of the others"
            ),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("message", &self.to_string())
            .field("not_run", &self.0.not_run.len())
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0.kind {
            Kind::Spawn(e) | Kind::Journal { error: e, .. } => Some(e),
            _ => None,
        }
    }
}
