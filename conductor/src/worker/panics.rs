//! Panics in job code (`process`, `init`, `on_message`): a job that panics fails,
//! with the panic's message and where it happened, and the worker goes on (a panic
//! in `init` is the worker's crash, with the same words). That failure reaches the
//! master like any other (its report, its log), so the worker does not also print
//! the panic: a run with intended panics, or a test suite, stays readable. Panics
//! anywhere else (the worker's own threads) print as usual.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::sync::Once;
use std::task::Poll;

thread_local! {
    /// This thread is polling job code.
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
    /// Where the job code on this thread last panicked.
    static PANICKED_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the hook that keeps job panics quiet; once per process.
pub(super) fn keep_job_panics_quiet() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
            if IN_JOB.with(Cell::get) {
                let at = info.location().map(ToString::to_string);
                PANICKED_AT.with(|slot| *slot.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// Polls a future, turning a panic inside it into an error with the panic's message
/// and its place in the code.
pub(super) async fn catch_panic<F: Future>(future: F) -> Result<F::Output, String> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        IN_JOB.with(|flag| flag.set(true));
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx)));
        IN_JOB.with(|flag| flag.set(false));
        match polled {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                Poll::Ready(Err(
                    match PANICKED_AT.with(|slot| slot.borrow_mut().take()) {
                        Some(at) => format!("{message} (at {at})"),
                        None => message,
                    },
                ))
            }
        }
    })
    .await
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_string()
    }
}
