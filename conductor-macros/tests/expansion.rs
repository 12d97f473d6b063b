//! Compiles and runs real macro expansions against a miniature stand-in for
//! the `conductor` runtime, so the generated code is type-checked (paths,
//! privacy, hygiene, `?` and `return` in `async fn main`) without depending on
//! the runtime crate.
//!
//! Linux only: the stand-in registry collects `inventory::submit!` with an
//! `.init_array` constructor, as inventory itself does there.
#![cfg(target_os = "linux")]

// Makes `::conductor::…` in the generated code resolve to this test crate.
extern crate self as conductor;

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

pub use conductor_proc_macros::{main, worker};

pub struct Worker {
    pub id: u32,
}

pub trait JobWorker: Sized + 'static {
    type Job: 'static;
    type Output: 'static;
    #[allow(async_fn_in_trait)]
    async fn init(worker: &Worker) -> __private::anyhow::Result<Self>;
    #[allow(async_fn_in_trait)]
    async fn process(
        &mut self,
        job: Self::Job,
        worker: &Worker,
    ) -> __private::anyhow::Result<Self::Output>;
}

pub trait NamedWorker: JobWorker {
    const TYPE: &'static str;
}

pub mod __private {
    use super::*;

    pub mod anyhow {
        pub type Result<T> = core::result::Result<T, Error>;

        /// Deliberately not `Display`, so the blanket `From` below is coherent.
        #[derive(Debug)]
        pub struct Error(pub String);

        impl<E: std::fmt::Display> From<E> for Error {
            fn from(error: E) -> Self {
                Error(error.to_string())
            }
        }
    }

    pub mod inventory {
        pub use crate::__submit as submit;
    }

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

    type Run = fn(Box<dyn Any>) -> Result<Box<dyn Any>, String>;

    pub struct WorkerRegistration {
        pub worker_type: &'static str,
        pub file: &'static str,
        pub line: u32,
        pub run: Run,
    }

    impl WorkerRegistration {
        pub const fn new<W: JobWorker>(
            worker_type: &'static str,
            file: &'static str,
            line: u32,
        ) -> Self {
            WorkerRegistration {
                worker_type,
                file,
                line,
                run: run::<W>,
            }
        }
    }

    fn run<W: JobWorker>(job: Box<dyn Any>) -> Result<Box<dyn Any>, String> {
        let job = *job
            .downcast::<W::Job>()
            .map_err(|_| "wrong job type".to_string())?;
        block_on_main(async {
            let worker = Worker { id: 100 };
            let mut state = W::init(&worker).await?;
            state.process(job, &worker).await
        })
        .map(|output| Box::new(output) as Box<dyn Any>)
        .map_err(|error| error.0)
    }

    pub static REGISTRY: Mutex<Vec<WorkerRegistration>> = Mutex::new(Vec::new());

    pub fn register(registration: WorkerRegistration) {
        REGISTRY.lock().unwrap().push(registration);
    }

    thread_local! {
        pub static LOG: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
    }

    pub fn log(event: &'static str) {
        LOG.with(|log| log.borrow_mut().push(event));
    }

    pub fn dispatch_role() {
        log("dispatch");
    }

    thread_local! {
        /// What the user's `main` returned, as the exit code saw it.
        pub static RETURNED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    /// Keeps what `main` returned for the test to see.
    pub fn exit_code_of<T: std::fmt::Debug>(returned: T) -> std::process::ExitCode {
        log("exit code");
        RETURNED.with(|r| r.borrow_mut().push(format!("{returned:?}")));
        std::process::ExitCode::SUCCESS
    }

    /// Enough of an executor for futures that never wait.
    pub fn block_on_main<F: Future>(future: F) -> F::Output {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
        }
    }
}

#[macro_export]
#[doc(hidden)]
macro_rules! __submit {
    ($($value:tt)*) => {
        #[used]
        #[link_section = ".init_array"]
        static __CTOR: extern "C" fn() = {
            extern "C" fn ctor() {
                $crate::__private::register({ $($value)* });
            }
            ctor
        };
    };
}

mod workers {
    #[conductor::worker(type = "double")]
    fn double(job: u64) -> Result<u64, String> {
        Ok(job * 2)
    }

    #[conductor::worker(type = "ns::len-v1.0")]
    async fn len(
        job: String,
        worker: &conductor::Worker,
    ) -> conductor::__private::anyhow::Result<usize> {
        Ok(job.len() + worker.id as usize)
    }

    // Named like the generated locals: the call must still reach this fn.
    #[conductor::worker(type = "job")]
    fn job(worker: u32) -> Result<u32, String> {
        Ok(worker + 1)
    }

    #[conductor::worker(type = "worker")]
    async fn worker(mut job: i32, _: &conductor::Worker) -> Result<i32, String> {
        job -= 1;
        if job < 0 {
            return Err(format!("negative: {job}"));
        }
        Ok(job)
    }

    // Types passed through `macro_rules!` arrive as invisible groups.
    macro_rules! make_worker {
        ($name:ident, $job:ty, $ret:ty) => {
            #[conductor::worker(type = "from_macro")]
            fn $name(job: $job) -> $ret {
                Ok(job)
            }
        };
    }
    make_worker!(from_macro, u8, Result<u8, std::fmt::Error>);

    pub struct Counter {
        seen: usize,
    }

    #[conductor::worker(type = "counter")]
    impl conductor::JobWorker for Counter {
        type Job = Vec<u8>;
        type Output = usize;

        async fn init(worker: &conductor::Worker) -> conductor::__private::anyhow::Result<Self> {
            Ok(Counter {
                seen: worker.id as usize,
            })
        }

        async fn process(
            &mut self,
            job: Vec<u8>,
            _worker: &conductor::Worker,
        ) -> conductor::__private::anyhow::Result<usize> {
            self.seen += job.len();
            Ok(self.seen)
        }
    }
}

fn run<T: 'static>(worker_type: &str, job: impl Any) -> Result<T, String> {
    let registry = __private::REGISTRY.lock().unwrap();
    let registration = registry
        .iter()
        .find(|registration| registration.worker_type == worker_type)
        .unwrap_or_else(|| panic!("{worker_type} is not registered"));
    (registration.run)(Box::new(job)).map(|output| *output.downcast::<T>().expect("output type"))
}

#[test]
fn every_worker_is_registered_once_with_its_location() {
    let registry = __private::REGISTRY.lock().unwrap();
    let mut names: Vec<_> = registry.iter().map(|r| r.worker_type).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "counter",
            "double",
            "from_macro",
            "job",
            "ns::len-v1.0",
            "worker"
        ]
    );
    for registration in registry.iter() {
        assert!(
            registration.file.ends_with("expansion.rs"),
            "{}",
            registration.file
        );
        assert!(registration.line > 0);
    }
}

#[test]
fn fn_workers_run() {
    assert_eq!(run::<u64>("double", 21_u64), Ok(42));
    assert_eq!(run::<usize>("ns::len-v1.0", "abc".to_string()), Ok(103));
    assert_eq!(run::<u32>("job", 1_u32), Ok(2));
    assert_eq!(run::<i32>("worker", 1_i32), Ok(0));
    assert_eq!(run::<i32>("worker", 0_i32), Err("negative: -1".to_string()));
    assert_eq!(run::<u8>("from_macro", 7_u8), Ok(7));
}

#[test]
fn impl_worker_runs_and_is_named() {
    assert_eq!(<workers::Counter as NamedWorker>::TYPE, "counter");
    assert_eq!(run::<usize>("counter", vec![1_u8, 2, 3]), Ok(103));
}

#[conductor::main]
async fn main_returning_early() -> Result<u32, String> {
    __private::log("body");
    if std::hint::black_box(true) {
        return Ok(1);
    }
    Ok(2)
}

#[conductor::main]
async fn main_with_question_mark() -> Result<u32, Box<dyn std::error::Error>> {
    __private::log("body");
    let n: u32 = "5".parse()?;
    Ok(n)
}

#[conductor::main]
async fn unit_main() {
    #![allow(unused_variables)]
    let unused = 1;
    __private::log("body");
}

#[conductor::main]
fn sync_main() -> u32 {
    __private::log("body");
    7
}

fn take_log() -> Vec<&'static str> {
    __private::LOG.with(|log| std::mem::take(&mut *log.borrow_mut()))
}

fn returned() -> Vec<String> {
    __private::RETURNED.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

/// Role dispatch first, then the user's body, then the exit code made of what it
/// returned (a `return` returns from the user's body, `?` converts as written).
#[test]
fn main_dispatches_first_then_runs_the_body() {
    for (main, value) in [
        (
            main_returning_early as fn() -> std::process::ExitCode,
            "Ok(1)",
        ),
        (main_with_question_mark, "Ok(5)"),
        (unit_main, "()"),
        (sync_main, "7"),
    ] {
        assert_eq!(main(), std::process::ExitCode::SUCCESS);
        assert_eq!(take_log(), ["dispatch", "body", "exit code"]);
        assert_eq!(returned(), [value]);
    }
}
