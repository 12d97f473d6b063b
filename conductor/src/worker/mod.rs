//! The worker: what job code sees, and the worker process's own loop.
//!
//! A worker process reads its role (see [`crate::boot`]), then runs here until its
//! master says stop:
//!
//! - [`api`]: [`Worker`] and [`JobWorker`], all that job code touches;
//! - [`blocking`]: the blocking forms of its requests, for plain `fn` workers;
//! - [`job_loop`]: the handshake, then jobs in and results out on the job thread;
//! - [`shared`]: the process's state that every thread shares, and the small threads
//!   beside job code (watchdog, stats timer, result flusher);
//! - [`channel`]: who reads the master's channel, the job thread or the watchdog;
//! - [`exit`]: exit codes, and the one way out of the process;
//! - [`panics`]: a panicking job fails quietly, with its message and place;
//! - [`logs`]: `tracing` events and `log` records of the process, sent to the master.
//!
//! Nothing here knows the master's internals or a transport: a worker talks frames
//! ([`crate::wire`]) over one socket, whoever holds its other end.

mod api;
mod blocking;
mod channel;
mod counters;
pub(crate) mod exit;
mod job_loop;
pub(crate) mod logs;
mod panics;
mod shared;

pub use api::{JobWorker, NamedWorker, Worker, CRASH_EXIT_CODE};
pub(crate) use job_loop::run_worker;
pub use job_loop::WorkerBoot;
