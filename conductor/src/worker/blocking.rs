//! Waiting for the master from a plain `fn` worker: the blocking forms of
//! [`Worker::lookup`], [`Worker::set_lookup`] and [`Worker::request`].
//!
//! A sync worker runs inside its process's runtime, so tokio's own blocking waits
//! would panic there. A request only waits for its reply, which the worker's
//! channel reader delivers from another thread; so the job thread can simply park
//! until it is woken.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use serde::{de::DeserializeOwned, Serialize};

use super::api::Worker;
use crate::error::Error;

impl Worker {
    /// [`Worker::lookup`] for a plain `fn` worker: waits on this thread. In an
    /// `async fn` worker, `.await` the async form instead.
    ///
    /// ```no_run
    /// #[conductor::worker(type = "doc_price")]
    /// fn price(item: String, w: &conductor::Worker) -> anyhow::Result<u64> {
    ///     Ok(w.lookup_blocking("prices", &item)?.unwrap_or(0))
    /// }
    /// ```
    pub fn lookup_blocking<V: DeserializeOwned, K: Serialize + ?Sized>(
        &self,
        table: &str,
        key: &K,
    ) -> Result<Option<V>, Error> {
        wait_here(self.lookup(table, key))
    }

    /// [`Worker::set_lookup`] for a plain `fn` worker: waits on this thread.
    pub fn set_lookup_blocking<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &self,
        table: &str,
        key: &K,
        value: &V,
    ) -> Result<(), Error> {
        wait_here(self.set_lookup(table, key, value))
    }

    /// [`Worker::request`] for a plain `fn` worker: waits on this thread.
    pub fn request_blocking<R: DeserializeOwned, T: Serialize + ?Sized>(
        &self,
        cmd: &str,
        data: &T,
    ) -> Result<R, Error> {
        wait_here(self.request(cmd, data))
    }
}

/// Runs `future` to its end on this thread, parking between polls.
fn wait_here<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        thread::park();
    }
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}
