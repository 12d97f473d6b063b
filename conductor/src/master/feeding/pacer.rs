//! How many jobs each worker gets at once: pipelined, adaptive, overridable.
//!
//! A worker should never wait for its next job, yet should not hoard jobs that an
//! idle worker could run. The pacer keeps about [`TARGET_QUEUED_WORK`] of work in
//! flight per worker, from a running estimate of how long a job takes there: tiny jobs
//! get windows of thousands (sent in large frames), long jobs a window of one. A
//! window is refilled when half of it has come back, so frames carry many jobs.

use std::time::Duration;

use crate::settings::DispatchSettings;

/// How much work, by time, each worker should have queued.
pub(crate) const TARGET_QUEUED_WORK: Duration = Duration::from_millis(2);
/// The most jobs in flight per worker, whatever the estimate.
pub(crate) const MAX_WINDOW: usize = 2048;
/// The most bytes of jobs in one frame (a larger single job still goes alone).
pub(crate) const MAX_BATCH_BYTES: usize = 1 << 20;
/// How much work, by time, a fixed-window worker's lane holds staged: more than a
/// window's target, as the run loop comes to refill it only now and then.
pub(crate) const TARGET_STAGED_WORK: Duration = Duration::from_millis(8);
/// The most jobs a worker's lane holds staged with a fixed window.
pub(crate) const MAX_STAGED: usize = 256;

/// One worker's window.
#[derive(Clone)]
pub(crate) struct Pacer {
    settings: DispatchSettings,
    window: usize,
    /// Running estimate of seconds per job on this worker.
    per_job: Option<f64>,
}

impl Pacer {
    pub fn new(settings: DispatchSettings) -> Self {
        let window = settings.prefetch.unwrap_or(1).clamp(1, 1 << 20);
        Pacer {
            settings,
            window,
            per_job: None,
        }
    }

    /// How many jobs to send now to a worker that has `in_flight` of them.
    pub fn room(&self, in_flight: usize) -> usize {
        if in_flight > self.window / 2 {
            return 0;
        }
        let room = self.window - in_flight;
        match self.settings.batch {
            Some(batch) => room.min(batch.max(1)),
            None => room,
        }
    }

    /// Learns from `count` answers that arrived `busy` after the oldest of them started.
    pub fn observe(&mut self, count: usize, busy: Duration) {
        if count == 0 {
            return;
        }
        let sample = busy.as_secs_f64() / count as f64;
        let estimate = match self.per_job {
            Some(previous) => previous * 0.7 + sample * 0.3,
            None => sample,
        };
        self.per_job = Some(estimate);
        if self.settings.prefetch.is_some() {
            return;
        }
        let wanted = self.jobs_for(TARGET_QUEUED_WORK);
        // Grow at most fourfold per answer, like a slow start; shrink at once.
        self.window = wanted.clamp(1, MAX_WINDOW).min(self.window * 4);
    }

    /// The running estimate of how long a job takes on this worker.
    pub fn per_job(&self) -> Option<Duration> {
        self.per_job.map(Duration::from_secs_f64)
    }

    pub fn window(&self) -> usize {
        self.window
    }

    /// With a fixed window, how many more jobs the master keeps staged in the
    /// worker's lane (see `crate::transport::lane`) so that its next job leaves as
    /// soon as it answers: enough for about [`TARGET_STAGED_WORK`] with the window, at
    /// most [`MAX_STAGED`]. None until the job time is known, and none for jobs long
    /// enough that a round trip does not matter.
    pub fn staged_target(&self) -> usize {
        if self.settings.prefetch.is_none() || self.per_job.is_none() {
            return 0;
        }
        self.jobs_for(TARGET_STAGED_WORK)
            .min(MAX_STAGED)
            .saturating_sub(self.window)
    }

    /// Jobs that make about `work` at the estimated job time.
    fn jobs_for(&self, work: Duration) -> usize {
        let per_job = self.per_job.unwrap_or(f64::MAX).max(1e-9);
        (work.as_secs_f64() / per_job).ceil() as usize
    }

    /// Starts from what another worker of the same conductor has learned: they run
    /// the same job type, and a worker that joins late (a replacement, a slow start)
    /// would otherwise creep up from a window of one while the others race ahead.
    pub fn learn_from(&mut self, other: &Pacer) {
        if other.per_job.is_none() {
            return;
        }
        self.per_job = other.per_job;
        if self.settings.prefetch.is_none() {
            self.window = other.window;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_jobs_open_the_window_and_long_jobs_close_it() {
        let mut pacer = Pacer::new(DispatchSettings::default());
        assert_eq!(pacer.room(0), 1);
        for _ in 0..20 {
            pacer.observe(
                pacer.window(),
                Duration::from_micros(50 + pacer.window() as u64 / 10),
            );
        }
        assert_eq!(pacer.window(), MAX_WINDOW);
        for _ in 0..10 {
            pacer.observe(1, Duration::from_millis(50));
        }
        assert_eq!(pacer.window(), 1);
    }

    #[test]
    fn the_window_grows_at_most_fourfold_per_answer() {
        let mut pacer = Pacer::new(DispatchSettings::default());
        // 1 µs a job asks for 2,000 jobs in flight; the window gets there by steps.
        pacer.observe(1, Duration::from_micros(1));
        assert_eq!(pacer.window(), 4);
        pacer.observe(4, Duration::from_micros(4));
        assert_eq!(pacer.window(), 16);
    }

    #[test]
    fn a_new_worker_starts_from_what_another_has_learned() {
        let mut seasoned = Pacer::new(DispatchSettings::default());
        for _ in 0..20 {
            seasoned.observe(seasoned.window(), Duration::from_micros(50));
        }
        let mut fresh = Pacer::new(DispatchSettings::default());
        fresh.learn_from(&seasoned);
        assert_eq!(fresh.window(), seasoned.window());
        // A long job on the newcomer still closes its window at once.
        fresh.observe(1, Duration::from_millis(50));
        assert_eq!(fresh.window(), 1);
    }

    #[test]
    fn the_window_refills_when_half_has_come_back() {
        let mut pacer = Pacer::new(DispatchSettings {
            prefetch: Some(8),
            batch: None,
        });
        assert_eq!(pacer.room(0), 8);
        assert_eq!(pacer.room(5), 0);
        assert_eq!(pacer.room(4), 4);
        pacer.observe(100, Duration::from_nanos(1));
        assert_eq!(pacer.window(), 8, "a fixed prefetch does not adapt");
    }

    #[test]
    fn a_fixed_window_stages_jobs_only_while_they_are_short() {
        let mut pacer = Pacer::new(DispatchSettings {
            prefetch: Some(1),
            batch: None,
        });
        assert_eq!(
            pacer.staged_target(),
            0,
            "nothing staged before a job time is known"
        );
        pacer.observe(1, Duration::from_micros(1));
        assert_eq!(pacer.staged_target(), MAX_STAGED - 1);
        for _ in 0..20 {
            pacer.observe(1, Duration::from_micros(800));
        }
        let staged = pacer.staged_target();
        assert!(
            (9..=10).contains(&staged),
            "8 ms of 800 µs jobs, one sent: {staged}"
        );
        for _ in 0..20 {
            pacer.observe(1, Duration::from_millis(20));
        }
        assert_eq!(pacer.staged_target(), 0);
        let adaptive = Pacer::new(DispatchSettings::default());
        assert_eq!(adaptive.staged_target(), 0, "adaptive windows never stage");
    }

    #[test]
    fn a_batch_override_caps_frames() {
        let pacer = Pacer::new(DispatchSettings {
            prefetch: Some(100),
            batch: Some(10),
        });
        assert_eq!(pacer.room(0), 10);
    }
}
