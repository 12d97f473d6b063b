//! A worker's counters: `jobsDone` and `jobsFailed`, and those job code adds, rolled
//! every stats interval; and, when the master's metrics want them, how long jobs took.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::stats::{add_to, Counters, JOBS_DONE, JOBS_FAILED};
use crate::wire::{duration_bucket, StatsRoll, DURATION_BUCKETS};

/// The worker's side: counters and what they were at the previous roll. The two
/// automatic counters are atomics, so finishing a job takes no lock.
pub(crate) struct StatsBook {
    done: AtomicI64,
    failed: AtomicI64,
    inner: Mutex<BookState>,
    /// Jobs finished in the interval, by how long they took; `None` unless the master
    /// asked (its metrics are on), so that timing costs nothing otherwise.
    durations: Option<Box<[AtomicU64]>>,
}

struct BookState {
    counters: Counters,
    last_rolled: Counters,
    rolled_at: Instant,
}

impl StatsBook {
    pub fn new(time_jobs: bool) -> Self {
        let counters: Counters = [(JOBS_DONE.to_string(), 0), (JOBS_FAILED.to_string(), 0)].into();
        StatsBook {
            done: AtomicI64::new(0),
            failed: AtomicI64::new(0),
            inner: Mutex::new(BookState {
                last_rolled: counters.clone(),
                counters,
                rolled_at: Instant::now(),
            }),
            durations: time_jobs
                .then(|| (0..DURATION_BUCKETS).map(|_| AtomicU64::new(0)).collect()),
        }
    }

    /// Whether jobs are timed ([`StatsBook::job_took`]).
    pub fn times_jobs(&self) -> bool {
        self.durations.is_some()
    }

    /// Counts one job that took `duration`, when jobs are timed.
    pub fn job_took(&self, duration: Duration) {
        if let Some(durations) = &self.durations {
            durations[duration_bucket(duration) as usize].fetch_add(1, Ordering::Relaxed);
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
        let durations = self.durations.iter().flat_map(|buckets| {
            buckets.iter().enumerate().filter_map(|(bucket, count)| {
                let count = count.swap(0, Ordering::Relaxed);
                (count > 0).then_some((bucket as u16, count))
            })
        });
        StatsRoll {
            span_ms: span.as_millis() as u64,
            last,
            diff,
            durations: durations.collect(),
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
        let book = StatsBook::new(false);
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
        assert!(second.durations.is_empty());
    }

    #[test]
    fn timed_jobs_roll_by_bucket() {
        let book = StatsBook::new(true);
        book.job_took(Duration::from_millis(3));
        book.job_took(Duration::from_millis(3));
        book.job_took(Duration::from_secs(1));
        let roll = book.roll();
        let bucket = duration_bucket(Duration::from_millis(3));
        assert!(
            roll.durations.contains(&(bucket, 2)),
            "{:?}",
            roll.durations
        );
        assert_eq!(roll.durations.iter().map(|(_, n)| n).sum::<u64>(), 3);
        assert!(
            book.roll().durations.is_empty(),
            "a roll starts the interval anew"
        );
    }
}
