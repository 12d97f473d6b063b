//! Jobs that returned an error and wait to be retried: each until its backoff is over.
//! The ledger holds them here, neither ready nor in flight, so they count as
//! outstanding and a drain reports them not run.

use std::collections::BTreeMap;
use std::time::Instant;

/// Jobs waiting for their retry, by when it is due (then by id, which is unique).
pub(crate) struct Backoff<J> {
    waiting: BTreeMap<(Instant, u64), J>,
}

impl<J> Default for Backoff<J> {
    fn default() -> Self {
        Backoff {
            waiting: BTreeMap::new(),
        }
    }
}

impl<J> Backoff<J> {
    /// Holds job `id` until `due`.
    pub fn push(&mut self, due: Instant, id: u64, job: J) {
        self.waiting.insert((due, id), job);
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Takes the jobs due by `now`; says when the next one is due.
    pub fn take_due(&mut self, now: Instant) -> (Vec<J>, Option<Instant>) {
        let later = self.waiting.split_off(&(now, u64::MAX));
        let due = std::mem::replace(&mut self.waiting, later);
        let next = self.waiting.keys().next().map(|(at, _)| *at);
        (due.into_values().collect(), next)
    }

    /// Every job still waiting.
    pub fn drain(&mut self) -> impl Iterator<Item = J> {
        std::mem::take(&mut self.waiting).into_values()
    }
}

/// A number in [0, 1) that differs from job to job and retry to retry: the jitter of
/// a backoff, without a random number generator.
pub(crate) fn jitter(id: u64, retry: u32) -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    // splitmix64
    let mut z = id ^ (u64::from(retry) << 32) ^ nanos;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn jobs_come_out_when_due_and_the_next_due_time_is_told() {
        let now = Instant::now();
        let mut backoff = Backoff::default();
        backoff.push(now + Duration::from_millis(50), 2, "two");
        backoff.push(now, 1, "one");
        backoff.push(now + Duration::from_millis(10), 3, "three");
        let (due, next) = backoff.take_due(now);
        assert_eq!(due, ["one"]);
        assert_eq!(next, Some(now + Duration::from_millis(10)));
        let (due, next) = backoff.take_due(now + Duration::from_millis(60));
        assert_eq!(due, ["three", "two"]);
        assert_eq!((next, backoff.len()), (None, 0));
        assert!((0.0..1.0).contains(&jitter(7, 2)));
    }
}
