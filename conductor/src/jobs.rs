//! Where a conductor's jobs come from: an iterator or an async stream, pulled lazily.
//!
//! The master pulls only as many jobs as its workers can take soon, so a source of
//! ten million jobs never sits in memory at once (the seed's `generateJobs` filled a
//! whole queue up front; a stream is its async counterpart with back-pressure).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

/// A lazy source of jobs.
pub struct Jobs<J> {
    inner: Source<J>,
}

enum Source<J> {
    Iter(Box<dyn Iterator<Item = J> + Send>),
    Stream(Pin<Box<dyn Stream<Item = J> + Send>>),
}

impl<J> Jobs<J> {
    /// Jobs from an iterator; it is advanced only as workers need more.
    pub fn from_iterator<I>(jobs: I) -> Self
    where
        I: IntoIterator<Item = J>,
        I::IntoIter: Send + 'static,
    {
        Jobs {
            inner: Source::Iter(Box::new(jobs.into_iter())),
        }
    }

    /// Jobs from an async stream, polled only as workers need more.
    pub fn from_stream<S>(jobs: S) -> Self
    where
        S: Stream<Item = J> + Send + 'static,
    {
        Jobs {
            inner: Source::Stream(Box::pin(jobs)),
        }
    }

    /// The next job, waiting for the stream if needed; `None` once the source ends.
    pub async fn next(&mut self) -> Option<J> {
        match &mut self.inner {
            Source::Iter(iter) => iter.next(),
            Source::Stream(stream) => {
                std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await
            }
        }
    }

    /// How many jobs the source holds, when an iterator knows exactly.
    pub(crate) fn exact_len(&self) -> Option<u64> {
        match &self.inner {
            Source::Iter(iter) => match iter.size_hint() {
                (low, Some(high)) if low == high => Some(low as u64),
                _ => None,
            },
            Source::Stream(_) => None,
        }
    }

    /// Whether jobs can be pulled without waiting (an iterator).
    pub(crate) fn is_sync(&self) -> bool {
        matches!(self.inner, Source::Iter(_))
    }

    /// Pulls up to `max` jobs from an iterator. Returns the jobs and whether it ended.
    pub(crate) fn pull_now(&mut self, max: usize, into: &mut Vec<J>) -> bool {
        let Source::Iter(iter) = &mut self.inner else {
            return false;
        };
        for _ in 0..max {
            match iter.next() {
                Some(job) => into.push(job),
                None => return true,
            }
        }
        false
    }

    /// Waits for at least one job from a stream, then takes up to `max` that are
    /// ready. Returns whether the stream ended.
    pub(crate) async fn pull_ready(&mut self, max: usize, into: &mut Vec<J>) -> bool {
        let Source::Stream(stream) = &mut self.inner else {
            return self.pull_now(max, into);
        };
        let start = into.len();
        std::future::poll_fn(|cx: &mut Context<'_>| loop {
            if into.len() - start >= max {
                return Poll::Ready(false);
            }
            match stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(job)) => into.push(job),
                Poll::Ready(None) => return Poll::Ready(true),
                Poll::Pending if into.len() == start => return Poll::Pending,
                Poll::Pending => return Poll::Ready(false),
            }
        })
        .await
    }
}

impl<J> fmt::Debug for Jobs<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_sync() { "iterator" } else { "stream" };
        f.debug_struct("Jobs").field("source", &kind).finish()
    }
}
