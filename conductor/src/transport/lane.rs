//! The master's end of one worker's channel when the window is small and fixed.
//!
//! With `prefetch(n)` a worker holds at most `n` jobs, so after every answer it waits
//! a round trip for its next job; when that round trip goes through the run loop, one
//! thread serves every worker, and each hand-over crosses cores. A lane lets the
//! thread that reads the worker's answers send its next jobs itself: the run loop
//! *stages* jobs frames here (taken from the ledger and encoded, but not sent), and
//! the reader sends the next one the moment an answer makes room in the worker's
//! window. The answers wait here until the stage runs low, and the run loop,
//! woken once for many answers, settles them together and stages more.
//!
//! Staged jobs are in flight on the worker as far as the ledger knows; they are the
//! newest of them, since a frame is staged only behind other staged frames. The run
//! loop takes them back (unsent, so nothing is charged) for an idle worker, or when
//! the worker stops, crashes or the run winds down.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::link::WorkerLink;
use crate::wire::ResultsReader;

/// The most bytes of jobs a lane stages, however short the jobs.
pub(crate) const MAX_STAGED_BYTES: usize = 1 << 20;

pub(crate) struct Lane {
    link: WorkerLink,
    /// Jobs the worker may hold at once: the `prefetch` setting.
    window: usize,
    state: Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    /// Jobs sent down the channel that the worker has not answered yet.
    sent: usize,
    /// Jobs frames waiting for room in the worker's window, oldest first, with the
    /// number of jobs in each.
    staged: VecDeque<(Bytes, usize)>,
    staged_jobs: usize,
    staged_bytes: usize,
    /// How many jobs the run loop means to keep staged; 0 sends every answer to
    /// the run loop at once. It is called when a quarter is left.
    target: usize,
    /// Answers held for the run loop, in arrival order.
    results: Vec<Bytes>,
    /// The run loop has been called for the held answers and has not taken them yet.
    called: bool,
    /// The worker is stopping or gone: nothing is staged or held any more.
    closed: bool,
}

/// Frames leaving the stage: the first, and any others.
struct Leaving(Option<Bytes>, Vec<Bytes>);

/// What the reader does with an answer.
pub(crate) enum Answer {
    /// Hand it to the run loop now.
    Forward(Bytes),
    /// It waits here; the run loop comes for it.
    Held,
    /// It waits here, and the stage is running low: call the run loop.
    CallRunLoop,
}

impl Lane {
    pub fn new(link: WorkerLink, window: usize) -> Arc<Lane> {
        Arc::new(Lane {
            link,
            window: window.max(1),
            state: Mutex::new(LaneState::default()),
        })
    }

    /// The reader heard an answer: it makes room in the worker's window, which staged
    /// frames fill at once.
    pub fn answered(&self, body: Bytes) -> Answer {
        let answers = ResultsReader::new(&body).count();
        let mut state = self.lock();
        state.sent = state.sent.saturating_sub(answers);
        let leaving = self.take_sendable(&mut state);
        let answer = if state.closed || state.target == 0 {
            Answer::Forward(body)
        } else {
            state.results.push(body);
            match !state.called && state.staged_jobs <= state.target / 4 {
                true => {
                    state.called = true;
                    Answer::CallRunLoop
                }
                false => Answer::Held,
            }
        };
        drop(state);
        self.send(leaving);
        answer
    }

    /// Takes the staged frames that the worker's window has room for, oldest first.
    fn take_sendable(&self, state: &mut LaneState) -> Leaving {
        // Usually one frame leaves at a time: no allocation for it.
        let mut leaving = Leaving(None, Vec::new());
        while let Some((_, jobs)) = state.staged.front() {
            if state.sent + jobs > self.window {
                break;
            }
            let (frame, jobs) = state.staged.pop_front().expect("a staged frame");
            state.staged_jobs -= jobs;
            state.staged_bytes -= frame.len();
            state.sent += jobs;
            match leaving.0 {
                None => leaving.0 = Some(frame),
                Some(_) => leaving.1.push(frame),
            }
        }
        leaving
    }

    /// Sends frames taken from the stage. This happens after the lock is let go, so
    /// the run loop never waits on a write; the link keeps frames whole, and their
    /// order matters to nobody, as a staged frame leaves only for room in the window.
    fn send(&self, Leaving(first, more): Leaving) {
        for frame in first.into_iter().chain(more) {
            // A closed link means the worker is gone; its exit takes the jobs back.
            let _ = self.link.send(frame);
        }
    }

    /// The answers held so far, oldest first. The reader takes them before it passes
    /// on anything else the worker said, so the run loop hears it all in order.
    pub fn take_results(&self) -> Vec<Bytes> {
        let mut state = self.lock();
        state.called = false;
        std::mem::take(&mut state.results)
    }

    /// Hands jobs frames to the worker, each with the number of jobs it holds: sent
    /// now while its window has room and nothing is staged before them, staged
    /// otherwise.
    pub fn place(&self, frames: impl IntoIterator<Item = (Bytes, usize)>) {
        let mut state = self.lock();
        for (frame, jobs) in frames {
            state.staged_jobs += jobs;
            state.staged_bytes += frame.len();
            state.staged.push_back((frame, jobs));
        }
        let leaving = self.take_sendable(&mut state);
        drop(state);
        self.send(leaving);
    }

    /// Sets how many jobs to keep staged; the reader calls the run loop when a
    /// quarter of them is left.
    pub fn set_target(&self, jobs: usize) {
        self.lock().target = jobs;
    }

    /// The worker gave back `jobs` it had received and not started: room in its
    /// window, which staged frames fill at once.
    pub fn given_back(&self, jobs: usize) {
        let mut state = self.lock();
        state.sent = state.sent.saturating_sub(jobs);
        let leaving = self.take_sendable(&mut state);
        drop(state);
        self.send(leaving);
    }

    /// Jobs and bytes staged now.
    pub fn staged(&self) -> (usize, usize) {
        let state = self.lock();
        (state.staged_jobs, state.staged_bytes)
    }

    /// Takes back every staged frame; returns how many jobs they held (the newest
    /// jobs the ledger has on this worker).
    pub fn reclaim(&self) -> usize {
        let mut state = self.lock();
        state.staged.clear();
        state.staged_bytes = 0;
        std::mem::take(&mut state.staged_jobs)
    }

    /// The worker stops or is gone: takes back what is staged (see [`Lane::reclaim`])
    /// and from now on sends every answer to the run loop at once.
    pub fn close(&self) -> usize {
        self.lock().closed = true;
        self.reclaim()
    }

    fn lock(&self) -> MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::link::{Closed, FrameSink};
    use crate::wire::BatchWriter;

    /// Records what the lane sends.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Bytes>>);

    impl FrameSink for Recorder {
        fn send(&self, frame: Bytes) -> Result<(), Closed> {
            self.0.lock().unwrap().push(frame);
            Ok(())
        }
        fn close(&self) {}
    }

    fn answers(n: u64) -> Bytes {
        let mut batch = BatchWriter::results(64);
        for id in 0..n {
            batch.push_output(id, &[]);
        }
        batch.finish().slice(5..)
    }

    #[test]
    fn staged_frames_leave_as_answers_make_room_and_the_run_loop_is_called_when_low() {
        let sink = Arc::new(Recorder::default());
        let lane = Lane::new(sink.clone(), 1);
        lane.set_target(8);
        lane.place((0..5u8).map(|n| (Bytes::from(vec![n]), 1)));
        // The first went at once; four wait for room.
        assert_eq!(sink.0.lock().unwrap().len(), 1);
        assert_eq!(lane.staged().0, 4);
        assert!(matches!(lane.answered(answers(1)), Answer::Held));
        assert!(matches!(lane.answered(answers(1)), Answer::CallRunLoop));
        // Called once until the run loop comes.
        assert!(matches!(lane.answered(answers(1)), Answer::Held));
        let sent: Vec<u8> = sink.0.lock().unwrap().iter().map(|f| f[0]).collect();
        assert_eq!(sent, [0, 1, 2, 3], "frames leave in order, one per answer");
        assert_eq!(lane.take_results().len(), 3);
        // What is still staged comes back, and nothing more is held once closed.
        assert_eq!(lane.close(), 1);
        assert!(matches!(lane.answered(answers(1)), Answer::Forward(_)));
        assert_eq!(sink.0.lock().unwrap().len(), 4);
    }

    #[test]
    fn jobs_given_back_make_room_for_staged_frames() {
        let sink = Arc::new(Recorder::default());
        let lane = Lane::new(sink.clone(), 2);
        lane.set_target(8);
        lane.place((0..3u8).map(|n| (Bytes::from(vec![n]), 1)));
        assert_eq!(sink.0.lock().unwrap().len(), 2, "the window holds two");
        // The worker gives one back unstarted: the staged frame may leave.
        lane.given_back(1);
        assert_eq!(sink.0.lock().unwrap().len(), 3);
        assert_eq!(lane.staged().0, 0);
    }

    #[test]
    fn without_a_target_answers_go_to_the_run_loop_at_once() {
        let sink = Arc::new(Recorder::default());
        let lane = Lane::new(sink.clone(), 2);
        lane.place([(Bytes::from_static(b"a"), 2)]);
        lane.place([(Bytes::from_static(b"b"), 2)]);
        assert!(matches!(lane.answered(answers(2)), Answer::Forward(_)));
        assert_eq!(sink.0.lock().unwrap().len(), 2);
        assert!(lane.take_results().is_empty());
    }
}
