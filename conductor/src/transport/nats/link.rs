//! The master's link to one worker of a NATS run: its frames, published in order on
//! the worker's own subject.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_nats::Client;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::seal::{Purpose, Sealer};
use crate::transport::link::{Closed, FrameSink, WorkerLink};

/// Frames for one worker, sealed and published in order on its subject.
pub(crate) struct NatsLink {
    frames: mpsc::UnboundedSender<Bytes>,
    closed: AtomicBool,
}

impl NatsLink {
    /// Frames for the worker at `subject`, sealed in `context` (its master and id).
    pub fn start(
        client: Client,
        subject: String,
        sealer: Arc<Sealer>,
        context: String,
    ) -> WorkerLink {
        let (frames, mut rx) = mpsc::unbounded_channel::<Bytes>();
        tokio::spawn(async move {
            while let Some(body) = rx.recv().await {
                let sealed = sealer.seal_frame(Purpose::ToWorker, &context, &body);
                // While the server is away the client holds what is published.
                if let Err(e) = client.publish(subject.clone(), sealed).await {
                    tracing::warn!(%subject, "a frame for a worker was lost: {e}");
                }
            }
        });
        Arc::new(NatsLink {
            frames,
            closed: AtomicBool::new(false),
        })
    }
}

impl FrameSink for NatsLink {
    fn send(&self, mut frame: Bytes) -> Result<(), Closed> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Closed);
        }
        // Messages have their own length: only the frame's body travels.
        let body = frame.split_off(4.min(frame.len()));
        self.frames.send(body).map_err(|_| Closed)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}
