//! Run batch jobs across many worker processes of one binary.
//!
//! Annotate the functions that do the work with `#[conductor::worker]`, put
//! `#[conductor::main]` on `main`, and the program becomes a master that starts
//! copies of itself as workers, feeds them jobs over a private channel, serves them
//! shared lookup tables, aggregates their statistics, survives their crashes, and
//! ends when every job is accounted for.
//!
//! ```
//! #[conductor::worker(type = "my_math_processor")]
//! async fn square(job: u64, w: &conductor::Worker) -> anyhow::Result<u64> {
//!     println!("Worker {}, Job {} => the square is {}", w.id(), job, job * job);
//!     Ok(job * job)
//! }
//!
//! #[conductor::main]
//! async fn main() -> anyhow::Result<()> {
//!     let squares: Vec<u64> = conductor::Conductor::new("my_math_processor")
//!         .worker_limit(2)
//!         .jobs(0..10u64)
//!         .collect()
//!         .await?;
//!     println!("All jobs finished processing: {squares:?}");
//!     Ok(())
//! }
//! ```
//!
//! # How it fits together
//!
//! - [`Conductor`] configures a run. [`Conductor::collect`] returns the outputs in
//!   submission order, [`Conductor::collect_results`] a result per job and the
//!   [`Report`], [`Conductor::run`] only the report, and [`Conductor::start`] a
//!   [`Running`] whose results ([`Running::next_result`]) or [`Event`]s come as
//!   jobs finish, with stats reports, worker crashes and exits, and custom messages.
//! - A [`ConductorHandle`] sends messages to workers, reads and writes lookup tables,
//!   and aborts, from anywhere.
//! - Job code gets a [`Worker`]: its ids, counters, lookups, and requests to the
//!   master. A worker with state implements [`JobWorker`].
//!
//! # Guarantees
//!
//! - Every submitted job ends exactly once as completed, failed, or not run.
//! - A job whose worker dies is run again, up to [`Conductor::max_attempts`] runs,
//!   then reported failed with the reason. A job that returns an error or panics is
//!   reported failed with its message, and the worker goes on.
//! - Workers exit promptly when their master dies (end-of-file on their channel, and
//!   on Linux a parent-death signal too).
//!
//! # Operating a run
//!
//! A progress bar on a terminal ([`Conductor::progress`]), a graceful first Ctrl-C
//! or SIGTERM and an immediate second ([`Conductor::handle_signals`],
//! [`Report::exit_code`]), resumable runs ([`Conductor::journal`]), worker recycling
//! ([`Conductor::max_jobs_per_worker`]) and per-worker init hooks
//! (`#[conductor::worker(type = "...", init = path)]`).
//!
//! # Cargo features
//!
//! - `progress` (default): the progress bar, with indicatif.
//! - `nats`: the distributed mode ([`Conductor::nats`]): workers on many machines
//!   pull jobs from a NATS JetStream work queue; started elsewhere with
//!   `CONDUCTOR_NATS_URL`, `CONDUCTOR_JOIN=<run name>` and the run's
//!   `CONDUCTOR_RUN_SECRET`, the same program joins a run as a worker. Every message
//!   of a run is sealed with its secret.
//! - `metrics`: the run's figures through the `metrics` facade.
//! - `dashboard`: a live page of the run, served by the master
//!   ([`Conductor::dashboard`]).
//!
//! # Worker exit codes
//!
//! 0 finished, 3 could not start (unknown worker type, type mismatch), 4 crashed
//! ([`Worker::crash`], `init` failed), 5 aborted by the master, 6 master gone,
//! 7 protocol error.
//!
//! # Testing your own conductor app
//!
//! Integration tests are binaries without your `main`, so they need a worker entry:
//! add `conductor::test_support!();` once at the top level of the test file, and
//! conductors started by its tests run their workers as copies of the test binary.
//! Register the workers in the test file itself, or in your library crate.
//!
//! ```no_run
//! conductor::test_support!();
//!
//! #[conductor::worker(type = "double")]
//! fn double(job: u32) -> anyhow::Result<u32> {
//!     Ok(job * 2)
//! }
//!
//! #[tokio::test]
//! async fn doubles_every_job() {
//!     let report = conductor::Conductor::<u32, u32>::new("double")
//!         .jobs(0..100)
//!         .run()
//!         .await
//!         .unwrap();
//!     assert_eq!(report.completed(), 100);
//! }
//! # fn main() {}
//! ```
//!
//! # How the code is laid out
//!
//! The public surface sits at the top of the crate: the builder (`conductor.rs`), the
//! handle, `Running` and its events, the report, errors, messages, lookups and stats.
//! Behind it, one folder per part, named after what it does, so that a reader can
//! follow a job by folder names (`ARCHITECTURE.md`, at the repository's root, follows
//! one file by file):
//!
//! - `master/`: the run loop, split by concern: `workers/` (slots and their
//!   lifecycle), `feeding/` (source, dispatch, lanes, pacing), the ledger and settling,
//!   `ending/` (signals, drain, abort, journal, the report), events to the caller;
//! - `transport/`: the seam between the master and its workers: a trait of operations
//!   and the events every backend sends, with each backend in a folder of its own
//!   (`local/`: socketpairs; `nats/`: NATS JetStream);
//! - `worker/`: what job code sees (`Worker`, `JobWorker`) and the worker's own loop;
//! - `wire/`: frames and messages, as bytes: shared by both sides, knowing neither;
//! - `boot/`: which role a process plays, and the registry of worker types.
//!
//! Why these cuts: the master decides and keeps the books, a transport only carries,
//! a worker only runs jobs, and the wire only encodes. Each folder's `mod.rs` says what
//! it must not import; none imports its caller.
//!
//! # Further reading
//!
//! In the repository: `README.md`, a ten-minute introduction with every example
//! listed, and `docs/`, one page per topic: `api.md` (every builder setting and its
//! default), `guarantees.md`, `operating.md`, `distributed.md`, `how-it-works.md`,
//! `performance.md` (the benchmark method and figures) and `okanjo-mapping.md` (the
//! Node.js seed's concepts, mapped).
//!
//! # Platforms
//!
//! Unix only (Linux and macOS): workers are joined to their master by a socket pair.

// Workers are processes joined to their master by socketpairs, process groups and
// Unix signals: there is no Windows port to fall back to.
#[cfg(not(unix))]
compile_error!(
    "conductor runs on Unix only (Linux and macOS): its workers are processes joined to the \
     master by socketpairs, process groups and signals"
);

mod boot;
mod collect;
mod conductor;
mod dashboard;
mod error;
mod event;
mod exit_code;
mod handle;
mod jobs;
mod limits;
mod lookup;
mod master;
mod message;
mod metrics;
mod permanent;
mod progress;
mod report;
mod running;
mod settings;
pub mod stats;
mod transport;
mod wire;
mod worker;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use crate::collect::{Collected, Finished, JobError};
pub use crate::conductor::Conductor;
pub use crate::error::Error;
pub use crate::event::{Event, WorkerCrash, WorkerExit};
pub use crate::handle::ConductorHandle;
pub use crate::jobs::Jobs;
pub use crate::message::Message;
pub use crate::permanent::Permanent;
pub use crate::progress::above_bars;
pub use crate::report::Interrupt;
pub use crate::report::{Attempt, FailureKind, JobFailure, JobOutput, Report};
pub use crate::running::Running;
pub use crate::settings::NatsAuth;
pub use crate::settings::{Halt, JournalSync, Retry};
pub use crate::stats::StatsReport;
pub use crate::worker::{JobWorker, NamedWorker, Worker, CRASH_EXIT_CODE};
pub use conductor_macros::{main, worker};

/// Adds the worker entry that lets tests in this file run conductors: put it once at
/// the top level of an integration test (see the crate docs).
#[macro_export]
macro_rules! test_support {
    () => {
        #[test]
        fn __conductor_worker_entry() {
            $crate::__private::test_worker_entry();
        }

        // Runs before `main`: a worker's stdout says nothing of libtest's.
        #[used]
        #[cfg_attr(
            any(target_os = "linux", target_os = "android", target_os = "freebsd"),
            link_section = ".init_array"
        )]
        #[cfg_attr(target_vendor = "apple", link_section = "__DATA,__mod_init_func")]
        static __CONDUCTOR_QUIET_TEST_HARNESS: extern "C" fn() =
            $crate::__private::silence_test_harness;

        $crate::__private::inventory::submit! {
            $crate::__private::TestEntry { module_path: ::core::module_path!() }
        }
    };
}
