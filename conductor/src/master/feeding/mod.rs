//! Feeding: jobs from the caller's source into the ledger, and from the ledger out to
//! workers, as fast as they take them and no faster.
//!
//! - [`source`]: how many jobs to pull now (memory stays flat however long the
//!   source), and admitting them to the ledger (or passing over those an earlier run
//!   finished);
//! - [`dispatch`]: batches to workers with room in their window, taking turns, or to
//!   the run queue;
//! - [`give_back`]: jobs received but not started come back for an idle worker;
//! - [`lanes`]: jobs staged at the master's end of a fixed-window worker's link, and
//!   the answers that wait there for the run loop;
//! - [`pacer`]: each worker's window, from how long its jobs take;
//! - [`run_queue`]: jobs for a run queue, in messages sized the same way.

mod dispatch;
mod give_back;
mod lanes;
pub(super) mod pacer;
pub(super) mod run_queue;
mod source;

pub(super) use source::pull_stream;

/// What dispatching remembers between turns.
pub(super) struct Feeding {
    /// Which structs of the jobs go as arrays, not maps (`wire/layout.rs`).
    pub(super) job_layout: std::sync::Arc<crate::wire::Layout>,
    /// Where the next turn of handing out batches starts, so a short queue is shared
    /// out fairly.
    round_robin: usize,
    /// Some lane holds staged jobs, so answers may wait there for the run loop.
    staging: bool,
    /// When to look again at a busy worker whose jobs an idle one could take, once its
    /// running job has run long enough to be worth a give-back.
    pub(super) recheck_at: Option<std::time::Instant>,
    /// Jobs per message of a run queue.
    pub(super) run_queue: run_queue::MessageSizer,
    /// The source has no more jobs: a run queue's last message may go out short.
    pub(super) source_dry: bool,
}

impl Feeding {
    pub(super) fn new(job_layout: crate::wire::Layout) -> Self {
        Feeding {
            job_layout: std::sync::Arc::new(job_layout),
            round_robin: 0,
            staging: false,
            recheck_at: None,
            run_queue: run_queue::MessageSizer::default(),
            source_dry: false,
        }
    }
}
