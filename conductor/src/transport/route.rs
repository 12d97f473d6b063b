//! A frame from a worker, on the master's side: lookups and replies are answered on
//! the spot, without the run loop; everything else becomes a [`WorkerEvent`]. Every
//! transport routes its workers' frames through here, so a frame means the same thing
//! whatever carried it.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::link::WorkerLink;
use super::worker_event::WorkerEvent;
use crate::handle::Shared;
use crate::lookup;
use crate::message::{Message, Responder};
use crate::wire::{control_frame, decode_control, Frame, Request, ToMaster, ToWorker};

/// Handles one frame body from a worker: answers lookups and replies on the spot and
/// hands everything else to the run loop. An error means the frame broke the protocol.
pub(crate) fn route_frame(
    worker_id: u64,
    body: Bytes,
    shared: &Shared,
    link: &WorkerLink,
    send: &dyn Fn(WorkerEvent),
) -> Result<(), String> {
    let payload = match Frame::parse(body) {
        Ok(Frame::Results(body)) => {
            send(WorkerEvent::Results(body));
            return Ok(());
        }
        Ok(Frame::Control(payload)) => payload,
        Ok(Frame::Jobs(_)) => return Err("a worker sent a jobs frame".into()),
        Err(e) => return Err(e.to_string()),
    };
    let message = decode_control::<ToMaster>(&payload).map_err(|e| e.to_string())?;
    match message {
        ToMaster::Ready {
            protocol,
            job_type,
            output_type,
            ..
        } => send(WorkerEvent::Ready {
            job_type,
            output_type,
            protocol,
        }),
        ToMaster::Refused { reason } => send(WorkerEvent::Refused(reason)),
        ToMaster::Request {
            request_id,
            request,
        } => {
            if let Some(event) = serve_request(worker_id, shared, link, request_id, request) {
                send(event);
            }
        }
        ToMaster::Reply { request_id, result } => shared.answer(request_id, result),
        ToMaster::Stats(roll) => send(WorkerEvent::Stats(roll)),
        ToMaster::Crash { reason, job } => send(WorkerEvent::Crash { reason, job }),
        ToMaster::Bye => send(WorkerEvent::Bye),
        ToMaster::GaveBack { jobs } => send(WorkerEvent::GaveBack(jobs)),
        ToMaster::Heartbeat => send(WorkerEvent::Heartbeat),
        ToMaster::LimitReached { reason } => send(WorkerEvent::LimitReached(reason)),
        ToMaster::Log(record) => send(WorkerEvent::Log(record)),
        ToMaster::Redelivered { ask, jobs } => send(WorkerEvent::Redelivered { ask, jobs }),
        ToMaster::RunningAlone { job } => send(WorkerEvent::RunningAlone(job)),
    }
    Ok(())
}

/// Answers a lookup on the spot; turns a custom command into an event.
fn serve_request(
    worker_id: u64,
    shared: &Shared,
    link: &WorkerLink,
    request_id: Option<u64>,
    request: Request,
) -> Option<WorkerEvent> {
    let reply = |result: Result<Vec<u8>, String>| {
        if let Some(request_id) = request_id {
            let _ = link.send(control_frame(&ToWorker::Reply { request_id, result }));
        }
    };
    match request {
        Request::Lookup { table, key } => {
            let max_frame = shared.max_frame.load(Ordering::Relaxed);
            let found = shared.lookups.get(&table, &key).and_then(|value| {
                // A value the worker could not receive is an error for it, not a crash.
                let reply = lookup::encode_reply(value);
                match reply.len() + 64 > max_frame {
                    true => Err(format!(
                        "the value of {} bytes in lookup table `{table}` exceeds the frame limit of {max_frame} bytes",
                        reply.len() - 1
                    )),
                    false => Ok(reply),
                }
            });
            reply(found);
            None
        }
        Request::SetLookup { table, key, value } => {
            shared.lookups.set(&table, key, value);
            reply(Ok(Vec::new()));
            None
        }
        Request::Message { cmd, data } => {
            let responder = request_id.map(|request_id| {
                let link = link.clone();
                Responder::new(&cmd, move |result| {
                    let _ = link.send(control_frame(&ToWorker::Reply { request_id, result }));
                })
            });
            Some(WorkerEvent::Message(Message::new(
                Some(worker_id),
                cmd,
                data,
                responder,
            )))
        }
    }
}
