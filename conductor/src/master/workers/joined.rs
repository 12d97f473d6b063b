//! Workers that join from elsewhere: the run loop decides whether one may join (this
//! run's worker type, with the same job and output types), and takes back one that
//! went silent and speaks again.

use std::time::Instant;

use serde::{de::DeserializeOwned, Serialize};

use super::{SlotState, WorkerSlot};
use crate::master::ending::Phase;
use crate::master::Master;
use crate::transport::join::{Admission, Joining};
use crate::wire::{control_frame, ToWorker, PROTOCOL_VERSION};

impl<J, O> Master<J, O>
where
    J: Serialize + Clone + Send + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// Decides whether a worker may join. A worker the master started itself comes
    /// with its reserved id; one from elsewhere gets a new one.
    pub(in crate::master) fn on_join(&mut self, request: Joining) -> Result<Admission, String> {
        if !matches!(self.ending.phase, Phase::Running) {
            return Err("the run is ending".into());
        }
        if request.protocol != PROTOCOL_VERSION {
            return Err(format!(
                "the worker speaks protocol {} and the master {PROTOCOL_VERSION}: run the same program on both sides",
                request.protocol
            ));
        }
        let run_type = &self.settings.worker_type;
        if let Some(asked) = &request.worker_type {
            if asked != run_type {
                return Err(format!(
                    "this run runs workers of type `{run_type}`, not `{asked}`"
                ));
            }
        }
        let (job_type, output_type) = (std::any::type_name::<J>(), std::any::type_name::<O>());
        match request.registered.iter().find(|(t, _, _)| t == run_type) {
            None => {
                let known: Vec<&str> = request
                    .registered
                    .iter()
                    .map(|(t, _, _)| t.as_str())
                    .collect();
                return Err(format!(
                    "this run runs workers of type `{run_type}`, which the joining program does not have (it has: {})",
                    known.join(", ")
                ));
            }
            Some((_, job, output)) if job != job_type || output != output_type => {
                return Err(format!(
                    "worker type `{run_type}` takes `{job}` and returns `{output}` in the joining program, \
                     but this run sends `{job_type}` and expects `{output_type}`"
                ));
            }
            Some(_) => {}
        }
        let worker_id = match request.reserved_id {
            Some(id) => match self.workers.slots.get(&id) {
                Some(slot) if !slot.remote && matches!(slot.state, SlotState::Starting(_)) => id,
                _ => return Err(format!("worker {id} is not expected")),
            },
            None => {
                let Some(link) = self.transport.link_to_joined(self.workers.next_id) else {
                    return Err("this run takes no workers from elsewhere".into());
                };
                let id = self.workers.reserve_id();
                self.workers.started += 1;
                log!(
                    self,
                    info,
                    worker_id = id,
                    host = %request.host,
                    pid = request.pid,
                    "a worker joined from elsewhere"
                );
                let slot =
                    WorkerSlot::remote(SlotState::Starting(Instant::now()), link, &self.settings);
                self.workers.slots.insert(id, slot);
                id
            }
        };
        Ok(Admission {
            config: self.worker_config(worker_id),
            max_jobs: self.settings.max_jobs_per_worker,
        })
    }

    /// Takes back a remote worker that went silent and speaks again.
    pub(in crate::master) fn readmit_if_silent(&mut self, worker_id: u64) {
        if !self.workers.silent.remove(&worker_id) {
            return;
        }
        let Some(link) = self.transport.link_to_joined(worker_id) else {
            return;
        };
        log!(self, info, worker_id, "remote worker is back");
        let state = match self.ending.phase {
            Phase::Running => {
                self.shared.lock_links().insert(worker_id, link.clone());
                SlotState::Ready
            }
            _ => {
                let _ = link.send(control_frame(&ToWorker::Stop));
                SlotState::Stopping
            }
        };
        let slot = WorkerSlot::remote(state, link, &self.settings);
        self.workers.slots.insert(worker_id, slot);
    }
}
