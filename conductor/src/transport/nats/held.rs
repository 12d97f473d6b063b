//! The run queue's messages a worker holds: each carries several jobs and is acked
//! once every one of them is answered (or passed over).

use std::collections::{HashMap, VecDeque};

use async_nats::jetstream;

/// One message held, and how many of its jobs are still to answer.
struct HeldMessage {
    message: jetstream::Message,
    open: usize,
}

/// What a worker's bridge holds of the run queue.
#[derive(Default)]
pub(super) struct Held {
    messages: HashMap<u64, HeldMessage>,
    /// Jobs handed to the worker loop (or failed by the bridge) and not yet answered,
    /// with the message each came in, in the order handed over: the worker loop
    /// answers in that order, so an answer is almost always the first.
    jobs: VecDeque<(u64, u64)>,
    /// Jobs of the messages held still to answer, handed over or not.
    open: usize,
    next_key: u64,
}

impl Held {
    /// Holds `message`, with `open` jobs to answer; returns its key.
    pub fn hold(&mut self, message: jetstream::Message, open: usize) -> u64 {
        self.next_key += 1;
        self.open += open;
        self.messages
            .insert(self.next_key, HeldMessage { message, open });
        self.next_key
    }

    /// Job `id` of message `key` goes to the worker loop (or is failed by the bridge).
    pub fn hand_over(&mut self, key: u64, id: u64) {
        self.jobs.push_back((id, key));
    }

    /// Jobs answered: returns the messages all of whose jobs are now answered, to ack.
    pub fn answered(&mut self, ids: impl Iterator<Item = u64>) -> Vec<jetstream::Message> {
        let mut done = Vec::new();
        for id in ids {
            let key = match self.jobs.front() {
                Some(&(first, key)) if first == id => {
                    self.jobs.pop_front();
                    key
                }
                _ => match self.jobs.iter().position(|(held, _)| *held == id) {
                    Some(at) => self.jobs.remove(at).map_or(0, |(_, key)| key),
                    None => continue,
                },
            };
            done.extend(self.close(key, 1));
        }
        done
    }

    /// `count` jobs of message `key` need no answer (settled before); returns the
    /// message if none is left to answer.
    pub fn pass_over(&mut self, key: u64, count: usize) -> Option<jetstream::Message> {
        self.close(key, count)
    }

    fn close(&mut self, key: u64, count: usize) -> Option<jetstream::Message> {
        let held = self.messages.get_mut(&key)?;
        let count = count.min(held.open);
        held.open -= count;
        self.open -= count;
        match held.open {
            0 => self.messages.remove(&key).map(|held| held.message),
            _ => None,
        }
    }

    /// Jobs held still to answer.
    pub fn open(&self) -> usize {
        self.open
    }

    /// Messages held.
    pub fn messages(&self) -> usize {
        self.messages.len()
    }

    /// Jobs in the worker loop now (handed over, not answered).
    pub fn in_loop(&self) -> usize {
        self.jobs.len()
    }

    /// Whether job `id` was handed over and is not answered yet.
    pub fn is_running(&self, id: u64) -> bool {
        self.jobs.iter().any(|(held, _)| *held == id)
    }

    /// Every message held, for their leases.
    pub fn all(&self) -> Vec<jetstream::Message> {
        self.messages.values().map(|h| h.message.clone()).collect()
    }

    /// Lets go of every message, to give them back.
    pub fn drain(&mut self) -> Vec<jetstream::Message> {
        self.jobs.clear();
        self.open = 0;
        self.messages.drain().map(|(_, h)| h.message).collect()
    }
}
