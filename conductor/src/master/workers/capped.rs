//! Fewer workers than asked: the system refused a worker a process, a thread or a file
//! (`ulimit -u`, `ulimit -n`). The run goes on with the workers it has and says so; with
//! none, it fails naming the limit. The cap is lifted after a while and tried again, as
//! a shortage may pass (a recycled worker still exiting, another program ending).

use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};

use super::SlotState;
use crate::error::{Error, Kind};
use crate::master::Master;

/// How long a cap holds before the run tries to start the workers it lacks again.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// The most workers of ours the system lets this run have, for now.
#[derive(Default)]
pub(in crate::master) struct WorkerCap {
    most: Option<(usize, Instant)>,
    /// The lowest cap said so far: a cap said once is not said again.
    said: Option<usize>,
}

impl WorkerCap {
    /// The most workers to keep alive at `now`.
    pub fn most(&mut self, now: Instant) -> usize {
        match self.most {
            Some((most, until)) if now < until => most,
            Some(_) => {
                self.most = None;
                usize::MAX
            }
            None => usize::MAX,
        }
    }

    /// Caps the run at `most` workers from `now`; says whether this cap is news.
    fn lower_to(&mut self, most: usize, now: Instant) -> bool {
        self.most = Some((most, now + RETRY_AFTER));
        let news = self.said.is_none_or(|said| most < said);
        if news {
            self.said = Some(most);
        }
        news
    }
}

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// The system refused a worker (`worker_id`, or one that could not be started at
    /// all) what it needs to start. A worker from elsewhere hit its own machine's
    /// limit: it leaves, and this run's count is not its business.
    pub(in crate::master) fn on_limit_reached(&mut self, worker_id: Option<u64>, reason: &str) {
        if let Some(id) = worker_id {
            let Some(slot) = self.workers.slots.get_mut(&id) else {
                return;
            };
            if slot.remote {
                let message = format!("worker {id} could not start: {reason}");
                log!(self, warn, "{message}");
                self.on_exit(id, Err(std::io::Error::other(message)));
                return;
            }
            slot.crash = Some((reason.to_string(), None));
        }
        let others = self
            .workers
            .slots
            .iter()
            .filter(|(id, w)| {
                Some(**id) != worker_id
                    && !w.remote
                    && w.crash.is_none()
                    && matches!(w.state, SlotState::Starting(_) | SlotState::Ready)
            })
            .count();
        if others == 0 {
            let error = std::io::Error::other(format!("no worker could start: {reason}"));
            self.fail(Error::new(Kind::Spawn(error)));
            return;
        }
        if self.workers.cap.lower_to(others, Instant::now()) {
            // Said whatever the logging: the run is slower than asked, and the user can
            // raise the limit.
            let line = format!(
                "going on with {others} of {} workers: {reason}",
                self.settings.worker_limit
            );
            tracing::warn!(
                conductor = %self.shared.id,
                worker_type = %self.settings.worker_type,
                "{line}"
            );
            if crate::master::worker_logs::no_subscriber() {
                // No subscriber to hear it, and the operator must: stderr, above the bar.
                crate::progress::above_bars(|| {
                    use std::io::Write;
                    let _ = writeln!(std::io::stderr(), "conductor: {line}");
                });
            }
        }
    }
}
