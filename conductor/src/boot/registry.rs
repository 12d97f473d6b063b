//! The worker types this binary knows, collected from `#[conductor::worker]` with inventory.

use crate::error::{Error, Kind};
use crate::wire::Layout;
use crate::worker::JobWorker;
use crate::worker::{run_worker, WorkerBoot};

/// One `#[conductor::worker(type = "...")]` registration.
#[doc(hidden)]
pub struct WorkerRegistration {
    pub(crate) worker_type: &'static str,
    pub(crate) job_type: fn() -> &'static str,
    pub(crate) output_type: fn() -> &'static str,
    /// How the worker's jobs may be laid out, traced from how it reads them.
    pub(crate) job_layout: fn() -> Layout,
    pub(crate) run: fn(WorkerBoot) -> i32,
    pub(crate) file: &'static str,
    pub(crate) line: u32,
}

impl WorkerRegistration {
    /// Describes the worker `W` under the type name `worker_type`; called by the macro.
    pub const fn new<W: JobWorker>(
        worker_type: &'static str,
        file: &'static str,
        line: u32,
    ) -> Self {
        WorkerRegistration {
            worker_type,
            job_type: std::any::type_name::<W::Job>,
            output_type: std::any::type_name::<W::Output>,
            job_layout: Layout::of::<W::Job>,
            run: run_worker::<W>,
            file,
            line,
        }
    }

    pub(crate) fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

inventory::collect!(WorkerRegistration);

/// Every registered worker type with its job and output types.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) fn describe_all() -> Vec<(String, String, String)> {
    inventory::iter::<WorkerRegistration>
        .into_iter()
        .map(|r| {
            (
                r.worker_type.to_string(),
                (r.job_type)().to_string(),
                (r.output_type)().to_string(),
            )
        })
        .collect()
}

/// Finds the registration of `worker_type`, refusing unknown and duplicated names.
pub(crate) fn find(worker_type: &str) -> Result<&'static WorkerRegistration, Error> {
    let mut found: Option<&'static WorkerRegistration> = None;
    for registration in inventory::iter::<WorkerRegistration> {
        if registration.worker_type != worker_type {
            continue;
        }
        if let Some(first) = found {
            return Err(Error::new(Kind::DuplicateWorkerType {
                name: worker_type.to_string(),
                first: first.location(),
                second: registration.location(),
            }));
        }
        found = Some(registration);
    }
    found.ok_or_else(|| {
        Error::new(Kind::UnknownWorkerType {
            name: worker_type.to_string(),
            registered: names(),
        })
    })
}

/// The registered type names, sorted, for error messages.
pub(crate) fn names() -> Vec<String> {
    let mut names: Vec<String> = inventory::iter::<WorkerRegistration>
        .into_iter()
        .map(|r| r.worker_type.to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Checks that a conductor of job type `J` and output type `O` may drive `registration`.
pub(crate) fn check_types<J, O>(registration: &WorkerRegistration) -> Result<(), Error> {
    let (conductor_job, conductor_output) =
        (std::any::type_name::<J>(), std::any::type_name::<O>());
    let (worker_job, worker_output) = ((registration.job_type)(), (registration.output_type)());
    if conductor_job == worker_job && conductor_output == worker_output {
        return Ok(());
    }
    Err(Error::new(Kind::TypeMismatch {
        worker_type: registration.worker_type.to_string(),
        worker_job: worker_job.to_string(),
        worker_output: worker_output.to_string(),
        conductor_job: conductor_job.to_string(),
        conductor_output: conductor_output.to_string(),
    }))
}
