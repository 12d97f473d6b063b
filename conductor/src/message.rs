//! Custom messages between a master and its workers, with optional replies.

use std::fmt;

use serde::{de::DeserializeOwned, Serialize};

use crate::error::Error;
use crate::lookup;
use crate::wire::ReplyResult;

/// A custom command with a payload, sent by a worker to its master or by a master to
/// a worker.
///
/// When the sender waits for an answer, [`Message::wants_reply`] is true and the
/// receiver answers with [`Message::reply`] or [`Message::reply_error`]. A message
/// that expected a reply and is dropped unanswered sends an error reply naming the
/// command, so the sender never hangs on a command nobody handles.
pub struct Message {
    worker_id: Option<u64>,
    cmd: String,
    data: Vec<u8>,
    responder: Option<Responder>,
}

/// Delivers the one reply a request gets, whichever side asked.
pub(crate) struct Responder {
    cmd: String,
    send: Option<Box<dyn FnOnce(ReplyResult) + Send>>,
}

impl Responder {
    pub(crate) fn new(cmd: &str, send: impl FnOnce(ReplyResult) + Send + 'static) -> Self {
        Responder {
            cmd: cmd.to_string(),
            send: Some(Box::new(send)),
        }
    }

    fn answer(mut self, result: ReplyResult) {
        if let Some(send) = self.send.take() {
            send(result);
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(send) = self.send.take() {
            send(Err(format!(
                "command `{}` was not handled: the message was dropped without an answer \
                 (answer it with `Message::reply` or `Message::reply_error`, in the \
                 master's `Event::Message` or the worker's `on_message`)",
                self.cmd
            )));
        }
    }
}

impl Message {
    pub(crate) fn new(
        worker_id: Option<u64>,
        cmd: String,
        data: Vec<u8>,
        responder: Option<Responder>,
    ) -> Self {
        Message {
            worker_id,
            cmd,
            data,
            responder,
        }
    }

    /// The command name the sender chose.
    pub fn cmd(&self) -> &str {
        &self.cmd
    }

    /// Decodes the payload as `T`, the type the sender serialized.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, Error> {
        lookup::decode("a message payload", &self.data)
    }

    /// The payload as encoded bytes (MessagePack with field names).
    pub fn raw_data(&self) -> &[u8] {
        &self.data
    }

    /// The worker that sent this message; `None` when the master sent it.
    pub fn worker_id(&self) -> Option<u64> {
        self.worker_id
    }

    /// Whether the sender waits for a reply.
    pub fn wants_reply(&self) -> bool {
        self.responder.is_some()
    }

    /// Answers the sender with `value`; does nothing when no reply is expected.
    pub fn reply<T: Serialize + ?Sized>(mut self, value: &T) -> Result<(), Error> {
        let encoded = lookup::encode("a reply", value)?;
        if let Some(responder) = self.responder.take() {
            responder.answer(Ok(encoded));
        }
        Ok(())
    }

    /// Answers the sender with an error; does nothing when no reply is expected.
    pub fn reply_error(mut self, message: impl fmt::Display) {
        if let Some(responder) = self.responder.take() {
            responder.answer(Err(message.to_string()));
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("worker_id", &self.worker_id)
            .field("cmd", &self.cmd)
            .field("data_bytes", &self.data.len())
            .field("wants_reply", &self.wants_reply())
            .finish()
    }
}

/// Turns a raw reply into the caller's type.
pub(crate) fn decode_reply<R: DeserializeOwned>(reply: ReplyResult) -> Result<R, Error> {
    match reply {
        Ok(bytes) => lookup::decode("a reply", &bytes),
        Err(message) => Err(Error::remote(message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn recorded() -> (Arc<Mutex<Option<ReplyResult>>>, Responder) {
        let slot = Arc::new(Mutex::new(None));
        let sink = slot.clone();
        (
            slot,
            Responder::new("hello", move |r| *sink.lock().unwrap() = Some(r)),
        )
    }

    #[test]
    fn an_unanswered_request_gets_an_error_reply() {
        let (slot, responder) = recorded();
        drop(Message::new(
            Some(1),
            "hello".into(),
            vec![],
            Some(responder),
        ));
        let reply = slot.lock().unwrap().take().unwrap();
        let error = reply.unwrap_err();
        assert!(
            error.starts_with("command `hello` was not handled"),
            "{error}"
        );
        assert!(error.contains("Message::reply"), "{error}");
    }

    #[test]
    fn a_reply_is_delivered_once() {
        let (slot, responder) = recorded();
        let message = Message::new(
            None,
            "hello".into(),
            lookup::encode("a message payload", "hi").unwrap(),
            Some(responder),
        );
        assert_eq!(message.data::<String>().unwrap(), "hi");
        message.reply(&42u32).unwrap();
        let reply = slot.lock().unwrap().take().unwrap();
        assert_eq!(decode_reply::<u32>(reply).unwrap(), 42);
    }
}
