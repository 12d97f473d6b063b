//! What the macros' generated code calls. Not a public API: names may change.

pub use ::anyhow;
pub use ::inventory;

pub use crate::boot::registry::WorkerRegistration;
pub use crate::boot::TestEntry;

/// Turns whatever a worker function returns into the job's result.
pub trait JobReturn {
    type Output;
    fn into_job_result(self) -> anyhow::Result<Self::Output>;
}

impl<O, E: Into<anyhow::Error>> JobReturn for Result<O, E> {
    type Output = O;
    fn into_job_result(self) -> anyhow::Result<O> {
        self.map_err(Into::into)
    }
}

/// Runs the registered worker and exits if this process is a worker; returns if it
/// is the master. `#[conductor::main]` calls it first thing.
pub fn dispatch_role() {
    crate::boot::dispatch_role();
}

/// Builds the master's multi-thread tokio runtime and runs `future` on it. A system
/// that refuses the runtime its threads or files ends the program with the limit
/// named, and exit code 1.
pub fn block_on_main<F: std::future::Future>(future: F) -> F::Output {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    let runtime = crate::limits::build_runtime(builder.enable_all(), |e| {
        // The program ends here, before any subscriber could exist: stderr it is.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "conductor: cannot start the program's runtime: {}",
            crate::limits::explain(&e)
        );
        std::process::exit(1)
    });
    runtime.block_on(future)
}

pub use crate::exit_code::exit_code_of;

/// The body of the test that [`crate::test_support!`] adds: a worker started by a
/// test's conductor runs here and exits; in a normal test run it does nothing.
pub fn test_worker_entry() {
    crate::boot::give_back_stdout();
    crate::boot::dispatch_role();
}

pub use crate::boot::silence_test_harness;
