//! Attribute macros for the `conductor` crate: `#[conductor::worker]` and
//! `#[conductor::main]`.
//!
//! Use them through the `conductor` crate, which re-exports them as
//! `conductor::worker` and `conductor::main`; the generated code names
//! `::conductor::…` paths, so the crate using the macros must depend on
//! `conductor` under that name.
//!
//! - [`macro@worker`] registers a job handler (a function, or a type
//!   implementing `conductor::JobWorker`) under a worker type name, so any
//!   process of the binary can be asked to run it.
//! - [`macro@main`] makes the binary's `main` hand control to the worker
//!   loop when the process was started as a worker, and otherwise runs the
//!   user's `main` (on a tokio runtime if it is `async`).
//!
//! The examples below are `text` blocks: they need the `conductor` runtime,
//! which this crate cannot depend on.

extern crate proc_macro;

mod main_attr;
mod parse;
mod worker;

#[cfg(test)]
mod test_util;

use proc_macro::TokenStream;

/// Registers a worker under a type name.
///
/// The argument `type = "name"` is the name under which worker processes are
/// asked to run this worker; without it, the worker is named after its function
/// (or the impl's type). It is also exposed as `conductor::NamedWorker::TYPE` on
/// the worker's type, so `Conductor::of::<T>()` names the worker with its job and
/// output types checked at compile time. Names may contain ASCII letters, digits,
/// `_`, `-`, `.` and `:`.
/// Registering the same name twice in one module is a compile error (each
/// registration also defines a hidden `const` named after the type name, so
/// the second one is "defined multiple times"); duplicates across modules are
/// reported by the runtime at startup.
///
/// # On a function
///
/// A plain `fn` or an `async fn` taking the job, and optionally the
/// `&conductor::Worker`, and returning any `Result` whose error converts into
/// `anyhow::Error`:
///
/// ```text
/// #[conductor::worker(type = "square")]
/// async fn square(n: u64, worker: &conductor::Worker) -> anyhow::Result<u64> {
///     Ok(n * n)
/// }
/// ```
///
/// The function is kept as written; next to it the macro generates a type of
/// the same name, for `Conductor::of::<square>()` (a struct with braces lives
/// only in the type namespace, so it does not clash with the function), and the
/// equivalent of:
///
/// ```text
/// pub struct square {}  // with the function's visibility
///
/// const _: () = {
///     impl conductor::JobWorker for square {
///         type Job = u64;
///         type Output = <anyhow::Result<u64> as conductor::__private::JobReturn>::Output;
///
///         async fn init(_: &conductor::Worker) -> anyhow::Result<Self> {
///             Ok(Self {})
///         }
///
///         async fn process(&mut self, job: u64, worker: &conductor::Worker) -> anyhow::Result<Self::Output> {
///             conductor::__private::JobReturn::into_job_result(square(job, worker).await)
///         }
///     }
///
///     impl conductor::NamedWorker for square {
///         const TYPE: &'static str = "square";
///     }
///
///     conductor::__private::inventory::submit! {
///         conductor::__private::WorkerRegistration::new::<square>("square", file!(), line!())
///     }
/// };
/// ```
///
/// Two consequences of the type of the function's name:
/// - it has the function's visibility, so a `pub fn` worker needs job and output
///   types at least as visible as itself (rustc's E0446 otherwise; rustc already
///   warns about the function itself);
/// - in the function's module, the name is that type's, so a function named after
///   a crate it uses (`fn image` calling `image::open`) must write `::image::open`.
///
/// A non-`async` function is called without `.await`; a one-parameter
/// function is called as `square(job)`. Parameters must be plain names (or
/// `_`), and the function cannot be generic, `const`, `unsafe`, `extern` or
/// take `self`.
///
/// # On a `JobWorker` impl
///
/// For a worker with state or a custom `init`/`on_message`:
///
/// ```text
/// struct Resizer { buffer: Vec<u8> }
///
/// #[conductor::worker(type = "resize")]
/// impl conductor::JobWorker for Resizer {
///     type Job = Image;
///     type Output = Image;
///     async fn init(worker: &conductor::Worker) -> anyhow::Result<Self> { /* ... */ }
///     async fn process(&mut self, job: Image, worker: &conductor::Worker) -> anyhow::Result<Image> { /* ... */ }
/// }
/// ```
///
/// The impl is kept as written, followed by the equivalent of:
///
/// ```text
/// impl conductor::NamedWorker for Resizer {
///     const TYPE: &'static str = "resize";
/// }
///
/// const _: () = {
///     conductor::__private::inventory::submit! {
///         conductor::__private::WorkerRegistration::new::<Resizer>("resize", file!(), line!())
///     }
/// };
/// ```
///
/// Generic impls are rejected: register each concrete type separately.
#[proc_macro_attribute]
pub fn worker(args: TokenStream, item: TokenStream) -> TokenStream {
    worker::expand(args.into(), item.into()).into()
}

/// Marks the binary's entry point.
///
/// Every process of a conductor program runs the same binary; this decides
/// at the start of `main` which role the process has. In a worker process it
/// runs the requested worker and exits, never reaching the user's code. In
/// the master process it returns and the user's `main` body runs: an
/// `async fn main` on a multi-threaded tokio runtime, a plain `fn main`
/// directly.
///
/// ```text
/// #[conductor::main]
/// async fn main() -> anyhow::Result<()> {
///     let jobs = load_jobs().await?;
///     // ... hand the jobs to a conductor ...
///     Ok(())
/// }
/// ```
///
/// expands to the equivalent of:
///
/// ```text
/// fn main() -> std::process::ExitCode {
///     conductor::__private::dispatch_role();
///     async fn user_main() -> anyhow::Result<()> {
///         let jobs = load_jobs().await?;
///         // ... hand the jobs to a conductor ...
///         Ok(())
///     }
///     let returned = conductor::__private::block_on_main(user_main());
///     // What `main` returned; when that is success, the worst exit code of the
///     // program's runs (1 after failed jobs, 130 after Ctrl-C, 143 after SIGTERM).
///     conductor::__private::exit_code_of(returned)
/// }
/// ```
///
/// and a non-`async` `fn main() -> R { body }` the same way, without the runtime.
///
/// Attributes, visibility and name are kept; the return type is the user's
/// function's, inside. The attribute takes
/// no arguments, and the function cannot take parameters or be generic.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    main_attr::expand(args.into(), item.into()).into()
}
