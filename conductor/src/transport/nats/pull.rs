//! The worker's bridge taking jobs from the run queue: messages of several jobs,
//! pulled while the worker has room and handed to the worker loop as they came.
//!
//! A message that comes again (its holder before died, lost its lease, or gave it
//! back) is not run as it is: the master says which of its jobs are still to run (the
//! others are settled, or failed for good), and those run one at a time, each
//! announced to the master first, so that the one running when a worker stops is the
//! only one charged (`master/redelivery.rs`).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::oneshot;

use super::bridge::{is_stream_gone, Bridge, Redelivery, PULL_WAIT, REASK};
use super::seal::Purpose;
use super::{RETRY, WORKERS_CONSUMER};
use crate::wire::{control_frame, BatchWriter, FailedAs, JobQueue, ToMaster};

/// How long a worker waits for the master to say which jobs of a message that came
/// again are still to run; with no answer (no master), it runs them all.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// Messages a worker holds at least, whatever its window: while it runs one, the
/// next is there. More would hold jobs back from an idle worker at a run's end
/// (a message holds about 16 ms of work, see `master/feeding/run_queue.rs`).
const MIN_MESSAGES_HELD: usize = 2;

/// A message of the run queue, opened and held.
struct Opened {
    /// Its key among the messages held.
    key: u64,
    /// The jobs frame body it carries.
    body: Bytes,
    ids: Vec<u64>,
    /// How many times the server has delivered it, this time included.
    delivered: i64,
}

impl Bridge {
    /// Pulls messages while the worker has room, and hands their jobs over.
    pub(super) async fn pull_jobs(self: Arc<Self>) {
        let mut consumer = None;
        // Jobs in the last message: how many messages the room is worth.
        let mut per_message = 1;
        while !self.stopping.load(Ordering::Relaxed) {
            if !self.started.load(Ordering::Relaxed) {
                let _ = tokio::time::timeout(PULL_WAIT, self.room.notified()).await;
                continue;
            }
            let wanted = self.messages_wanted(per_message);
            if wanted == 0 {
                let _ = tokio::time::timeout(PULL_WAIT, self.room.notified()).await;
                continue;
            }
            let Some(jobs) = self.consumer(&mut consumer).await else {
                tokio::time::sleep(RETRY).await;
                continue;
            };
            // What is there now, without waiting; if nothing, wait for the next one.
            let pulled = match take_messages(&jobs, wanted, None).await {
                Ok(messages) if messages.is_empty() => {
                    take_messages(&jobs, 1, Some(PULL_WAIT)).await
                }
                other => other,
            };
            let Ok(messages) = pulled else {
                consumer = None;
                tokio::time::sleep(RETRY).await;
                continue;
            };
            if self.stopping.load(Ordering::Relaxed) {
                // Pulled while the worker was told to stop: straight back to the queue.
                for message in messages {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                }
                return;
            }
            // All held at once: their leases are kept while those before them run.
            let mut opened = Vec::with_capacity(messages.len());
            for message in messages {
                opened.extend(self.open(message).await);
            }
            for opened in opened {
                per_message = opened.ids.len().max(1);
                let taken = opened.ids.len() as u64;
                let _ =
                    self.pulls_left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                            Some(left.saturating_sub(taken))
                        });
                let handed = match opened.delivered {
                    1 => self.hand_over(opened).await,
                    _ => self.run_again(opened).await,
                };
                if handed.is_err() {
                    return;
                }
            }
        }
    }

    /// How many messages to pull now: its window of jobs, less those it holds, but
    /// always [`MIN_MESSAGES_HELD`] (a large one must not leave the worker idle while
    /// the next is fetched), and none past the jobs it may still take.
    fn messages_wanted(&self, per_message: usize) -> usize {
        let left = self.pulls_left.load(Ordering::Relaxed);
        if left == 0 {
            return 0;
        }
        let by_limit = usize::try_from(left.div_ceil(per_message as u64)).unwrap_or(usize::MAX);
        let (open, messages) = {
            let held = self.held();
            (held.open(), held.messages())
        };
        let by_window = self.window.saturating_sub(open) / per_message;
        by_window
            .max(MIN_MESSAGES_HELD.saturating_sub(messages))
            .min(by_limit)
            .min(256)
    }

    /// Opens a message of the run queue and holds it: only jobs the master sealed,
    /// under the id the message names, run. Anything else is dropped for good, and
    /// counted.
    async fn open(&self, message: jetstream::Message) -> Option<Opened> {
        let name = message
            .headers
            .as_ref()
            .and_then(|h| h.get(super::HEADER_JOBS))
            .map(|v| v.as_str().to_string());
        let body = name.and_then(|name| {
            self.sealer
                .key
                .open(Purpose::Job, &name, &message.message.payload)
        });
        let opened = body.map(Bytes::from).and_then(|body| {
            let ids = crate::wire::job_ids(body.clone()).ok()?;
            (!ids.is_empty()).then_some((body, ids))
        });
        let Some((body, ids)) = opened else {
            self.sealer.rejections.note(
                "a job publisher",
                message.subject.as_str(),
                "a jobs message",
            );
            let _ = message.ack_with(AckKind::Term).await;
            return None;
        };
        let delivered = message.info().map_or(1, |info| info.delivered);
        let key = self.held().hold(message, ids.len());
        Some(Opened {
            key,
            body,
            ids,
            delivered,
        })
    }

    /// A message delivered for the first time: its jobs go to the worker loop as they
    /// came, in one frame. An error means the worker loop is gone.
    async fn hand_over(&self, opened: Opened) -> Result<(), ()> {
        {
            let mut held = self.held();
            for id in &opened.ids {
                held.hand_over(opened.key, *id);
            }
        }
        let frame = crate::wire::jobs_frame(&opened.body);
        self.write_frame(&frame).await.map_err(|_| ())
    }

    /// A message that came again: runs those of its jobs the master says are still to
    /// run, one at a time, and reports those that used up their attempts.
    async fn run_again(&self, opened: Opened) -> Result<(), ()> {
        let Opened {
            key,
            body,
            ids,
            delivered,
        } = opened;
        let (run, failed) = match self.ask_master(&ids).await {
            Some(answer) => answer,
            // No master to say: as many deliveries as attempts fail them all.
            None if delivered > i64::from(self.max_attempts) => {
                let error = format!(
                    "its message came {delivered} times, and no master could say which of its jobs was running when its workers stopped"
                );
                (
                    Vec::new(),
                    ids.iter()
                        .map(|id| (*id, FailedAs::Crashed, error.clone()))
                        .collect(),
                )
            }
            None => (ids.clone(), Vec::new()),
        };
        let ours: HashSet<u64> = ids.iter().copied().collect();
        let run: Vec<u64> = run.into_iter().filter(|id| ours.contains(id)).collect();
        let failed: Vec<(u64, FailedAs, String)> = failed
            .into_iter()
            .filter(|(id, _, _)| ours.contains(id))
            .collect();
        let settled = ids.len() - run.len() - failed.len();
        let all_settled = self.held().pass_over(key, settled);
        if let Some(message) = all_settled {
            let _ = message.ack().await;
        }
        if !failed.is_empty() {
            let mut frame = BatchWriter::results(256);
            for (id, failed_as, error) in &failed {
                frame.push_failure(*id, *failed_as, error.as_bytes());
                self.held().hand_over(key, *id);
            }
            self.store_results(frame.finish().slice(4..)).await;
        }
        let mut jobs = JobQueue::default();
        jobs.push_frame(body);
        let wanted: HashSet<u64> = run.iter().copied().collect();
        while let Some(Ok((id, payload))) = jobs.pop() {
            if !wanted.contains(&id) {
                continue;
            }
            // Alone: nothing else in the worker loop, then this job and nothing more.
            if !self.wait_until(|bridge| bridge.held().in_loop() == 0).await {
                return Ok(());
            }
            self.to_master(&control_frame(&ToMaster::RunningAlone { job: id })[4..])
                .await;
            // The master hears of it before the job can take its worker down.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.client.flush()).await;
            let mut frame = BatchWriter::jobs(payload.len() + 64);
            frame.push_job(id, payload);
            self.held().hand_over(key, id);
            self.write_frame(&frame.finish()).await.map_err(|_| ())?;
            if !self
                .wait_until(|bridge| !bridge.held().is_running(id))
                .await
            {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Waits until `done` holds; `false` if the worker stops first.
    async fn wait_until(&self, done: impl Fn(&Self) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if self.stopping.load(Ordering::Relaxed) {
                return false;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), self.room.notified()).await;
        }
    }

    /// Asks the master which of `jobs`, of a message that came again, are still to
    /// run; asks again while it does not answer, and gives up after [`ANSWER_WAIT`].
    async fn ask_master(&self, jobs: &[u64]) -> Option<Redelivery> {
        let ask = self.next_ask.fetch_add(1, Ordering::Relaxed);
        let (answer, mut answered) = oneshot::channel();
        self.redeliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ask, answer);
        let frame = control_frame(&ToMaster::Redelivered {
            ask,
            jobs: jobs.to_vec(),
        });
        let deadline = Instant::now() + ANSWER_WAIT;
        while Instant::now() < deadline {
            // Sealed anew each time: the master takes each number once.
            self.to_master(&frame[4..]).await;
            match tokio::time::timeout(REASK, &mut answered).await {
                Ok(Ok(answer)) => return Some(answer),
                Ok(Err(_)) => return None,
                Err(_) => continue,
            }
        }
        self.redeliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ask);
        None
    }

    pub(super) async fn consumer(
        &self,
        consumer: &mut Option<jetstream::consumer::PullConsumer>,
    ) -> Option<jetstream::consumer::PullConsumer> {
        if consumer.is_none() {
            let stream = match self.jetstream.get_stream(self.names.jobs_stream()).await {
                Ok(stream) => stream,
                Err(e) => {
                    if is_stream_gone(&e) {
                        self.run_is_over().await;
                    }
                    return None;
                }
            };
            *consumer = stream.get_consumer(WORKERS_CONSUMER).await.ok();
        }
        consumer.clone()
    }
}

/// Pulls up to `max` messages: those available now (`wait` of `None`), or else
/// waiting up to `wait` for them to arrive.
async fn take_messages(
    consumer: &jetstream::consumer::PullConsumer,
    max: usize,
    wait: Option<Duration>,
) -> Result<Vec<jetstream::Message>, async_nats::Error> {
    // A pull the server lost (it restarted) must not hold the worker for long.
    let limit = wait.unwrap_or_default() + Duration::from_secs(1);
    match tokio::time::timeout(limit, pull(consumer, max, wait)).await {
        Ok(pulled) => pulled,
        Err(_) => Err("the pull timed out".into()),
    }
}

async fn pull(
    consumer: &jetstream::consumer::PullConsumer,
    max: usize,
    wait: Option<Duration>,
) -> Result<Vec<jetstream::Message>, async_nats::Error> {
    let batch = match wait {
        None => consumer.fetch().max_messages(max).messages().await?,
        Some(wait) => {
            consumer
                .batch()
                .max_messages(max)
                .expires(wait)
                .messages()
                .await?
        }
    };
    Ok(batch.filter_map(|m| async { m.ok() }).collect().await)
}
