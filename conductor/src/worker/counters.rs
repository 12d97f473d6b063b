//! A worker's counters: `jobsDone` and `jobsFailed`, and those job code adds, rolled
//! every stats interval.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::stats::{add_to, Counters, JOBS_DONE, JOBS_FAILED};
use crate::wire::StatsRoll;

/// The worker's side: counters and what they were at the previous roll. The two
/// automatic counters are atomics, so finishing a job takes no lock.
pub(crate) struct StatsBook {
    done: AtomicI64,
    failed: AtomicI64,
    inner: Mutex<BookState>,
}

struct BookState {
    counters: Counters,
    last_rolled: Counters,
    rolled_at: Instant,
}

impl StatsBook {
    pub fn new() -> Self {
        let counters: Counters = [(JOBS_DONE.to_string(), 0), (JOBS_FAILED.to_string(), 0)].into();
        StatsBook {
            done: AtomicI64::new(0),
            failed: AtomicI64::new(0),
            inner: Mutex::new(BookState {
                last_rolled: counters.clone(),
                counters,
                rolled_at: Instant::now(),
            }),
        }
    }

    /// Counts one finished job.
    pub fn job_finished(&self, ok: bool) {
        let counter = if ok { &self.done } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn automatic(&self, name: &str) -> Option<&AtomicI64> {
        match name {
            JOBS_DONE => Some(&self.done),
            JOBS_FAILED => Some(&self.failed),
            _ => None,
        }
    }

    pub fn add(&self, name: &str, delta: i64) {
        if let Some(counter) = self.automatic(name) {
            counter.fetch_add(delta, Ordering::Relaxed);
            return;
        }
        let mut state = self.lock();
        match state.counters.get_mut(name) {
            Some(value) => add_to(value, delta),
            None => {
                state.counters.insert(name.to_string(), delta);
            }
        }
    }

    pub fn set(&self, name: &str, value: i64) {
        match self.automatic(name) {
            Some(counter) => counter.store(value, Ordering::Relaxed),
            None => {
                self.lock().counters.insert(name.to_string(), value);
            }
        }
    }

    pub fn snapshot(&self) -> Counters {
        let mut state = self.lock();
        self.merge_automatic(&mut state);
        state.counters.clone()
    }

    fn merge_automatic(&self, state: &mut BookState) {
        state
            .counters
            .insert(JOBS_DONE.to_string(), self.done.load(Ordering::Relaxed));
        state
            .counters
            .insert(JOBS_FAILED.to_string(), self.failed.load(Ordering::Relaxed));
    }

    pub fn last_rolled(&self) -> Counters {
        self.lock().last_rolled.clone()
    }

    /// Closes the current interval: returns the roll to send and starts a new one.
    pub fn roll(&self) -> StatsRoll {
        let mut state = self.lock();
        self.merge_automatic(&mut state);
        let now = Instant::now();
        let span = now - state.rolled_at;
        let diff = state
            .counters
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.saturating_sub(state.last_rolled.get(k).copied().unwrap_or(0)),
                )
            })
            .collect();
        let last: Vec<(String, i64)> = state
            .counters
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        state.last_rolled = state.counters.clone();
        state.rolled_at = now;
        StatsRoll {
            span_ms: span.as_millis() as u64,
            last,
            diff,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BookState> {
        // Counters stay usable even if job code panicked while holding the lock.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_book_rolls_differences() {
        let book = StatsBook::new();
        book.add(JOBS_DONE, 2);
        book.job_finished(true);
        book.job_finished(false);
        book.add("rows", 10);
        let first = book.roll();
        assert!(first.diff.contains(&("rows".to_string(), 10)));
        book.add("rows", 5);
        let second = book.roll();
        assert!(second.diff.contains(&("rows".to_string(), 5)));
        assert!(second.last.contains(&("rows".to_string(), 15)));
        assert_eq!(book.last_rolled()["jobsDone"], 3);
        assert_eq!(book.snapshot()["jobsFailed"], 1);
    }
}
