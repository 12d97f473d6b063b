//! Round trips of every frame and batch shape, and the refusals of broken ones.

use bytes::Bytes;

use super::*;

fn body_of(frame: Bytes) -> Bytes {
    let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4);
    frame.slice(4..)
}

fn jobs_body(frame: Bytes) -> Bytes {
    let Frame::Jobs(body) = Frame::parse(body_of(frame)).unwrap() else {
        panic!("not a jobs frame")
    };
    body
}

/// Every job in the jobs frame bodies, in order.
fn jobs_in(bodies: impl IntoIterator<Item = Bytes>) -> Vec<(u64, Vec<u8>)> {
    let mut queue = JobQueue::default();
    for body in bodies {
        queue.push_frame(body);
    }
    let mut jobs = Vec::new();
    while let Some(job) = queue.pop() {
        let (id, payload) = job.unwrap();
        jobs.push((id, payload.to_vec()));
    }
    jobs
}

#[test]
fn frames_written_back_to_back_come_out_whole() {
    let mut batch = BatchWriter::jobs(16);
    batch.push_job(1, b"one");
    batch.next_frame();
    batch.push_job(2, b"two");
    batch.push_job(3, b"three");
    // Small ids and lengths take a byte each.
    assert_eq!(batch.byte_len(), 5 + 2 * 2 + 3 + 5);
    batch.next_frame();
    batch.next_frame();
    let frames = batch.finish_frames();
    assert_eq!(frames.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [1, 2]);
    let bodies = frames.into_iter().map(|(frame, _)| jobs_body(frame));
    assert_eq!(
        jobs_in(bodies),
        [
            (1, b"one".to_vec()),
            (2, b"two".to_vec()),
            (3, b"three".to_vec())
        ]
    );
}

#[test]
fn job_batches_round_trip() {
    let mut batch = BatchWriter::jobs(64);
    batch.push_job(7, b"seven");
    batch.push_job(9, b"");
    batch.push_job(u64::MAX, &[5; 300]);
    let body = jobs_body(batch.finish());
    assert_eq!(
        jobs_in([body.clone(), body]),
        vec![
            (7, b"seven".to_vec()),
            (9, vec![]),
            (u64::MAX, vec![5; 300]),
            (7, b"seven".to_vec()),
            (9, vec![]),
            (u64::MAX, vec![5; 300])
        ]
    );
}

#[test]
fn values_encoded_in_place_match_their_own_encoding_and_count_what_was_handed_out() {
    // Integers of every varint width and byte strings of every short length (the
    // piecewise copies), then long ones, some past the initial room.
    let values: Vec<(u64, Vec<u8>)> = (0..64u32)
        .map(|k| (1u64 << k, (0..k as u8 % 40).collect()))
        .chain([(u64::MAX, vec![7u8; 5000])])
        .collect();
    let mut batch = BatchWriter::jobs(16);
    for (id, value) in values.iter().enumerate() {
        batch
            .push_job_encoded(id as u64, value, 1 << 20)
            .expect("fits");
    }
    let Frame::Jobs(body) = Frame::parse(body_of(batch.finish())).unwrap() else {
        panic!("not a jobs frame")
    };
    let mut queue = JobQueue::default();
    let frame_bytes = body.len();
    queue.push_frame(body);
    assert_eq!(queue.last_frame_bytes(), frame_bytes);
    for (id, value) in values.iter().enumerate() {
        let (got_id, bytes) = queue.pop().unwrap().unwrap();
        assert_eq!(got_id, id as u64);
        assert_eq!(bytes, super::value::to_vec(value).unwrap());
    }
    assert!(queue.pop().is_none());
    assert_eq!(queue.handed_out_bytes(), frame_bytes as u64);
}

#[test]
fn result_batches_round_trip() {
    let mut batch = BatchWriter::results(64);
    batch.push_output(1, b"out");
    batch.push_failure(2, FailedAs::Panicked, b"boom");
    batch.push_output(3, b"xy");
    let Frame::Results(body) = Frame::parse(body_of(batch.finish())).unwrap() else {
        panic!("not a results frame")
    };
    let results: Vec<_> = ResultsReader::new(&body).map(Result::unwrap).collect();
    assert_eq!(results[0].outcome, Ok(&b"out"[..]));
    assert_eq!(results[1].outcome, Err((FailedAs::Panicked, &b"boom"[..])));
    assert_eq!((results[2].id, results[2].outcome), (3, Ok(&b"xy"[..])));
    assert!(ResultsReader::new(&body[..10]).nth(1).unwrap().is_err());
    // An id or a length cut in the middle of its varint.
    assert!(ResultsReader::new(&[0x80]).next().unwrap().is_err());
    assert!(ResultsReader::new(&[1, 1, 0x80]).next().unwrap().is_err());
}

#[test]
fn truncated_batches_are_errors_not_panics() {
    let mut batch = BatchWriter::jobs(64);
    batch.push_job(1, b"abcdefghijklmnop");
    let body = body_of(batch.finish()).slice(1..10);
    let mut queue = JobQueue::default();
    queue.push_frame(body);
    assert!(matches!(
        queue.pop(),
        Some(Err(ProtocolError::Malformed(_)))
    ));
    assert!(queue.pop().is_none());
    assert!(matches!(
        Frame::parse(Bytes::from_static(&[42])),
        Err(ProtocolError::Malformed(_))
    ));
}

#[test]
fn oversized_frames_are_refused_before_reading_them() {
    let mut input: &[u8] = &[0xff, 0xff, 0xff, 0x7f, 1, 2, 3];
    let err = read_frame(&mut input, 1024).unwrap_err();
    assert!(
        err.to_string().contains("exceeds the limit of 1024 bytes"),
        "{err}"
    );
}

#[tokio::test]
async fn the_frame_reader_splits_frames_and_refuses_oversized_ones() {
    let mut bytes = control_frame(&ToWorker::Stop).to_vec();
    bytes.extend_from_slice(&control_frame(&ToWorker::Abort));
    let mut reader = FrameReader::new(&bytes[..], 1024);
    assert!(matches!(reader.next().await, Ok(Some(_))));
    assert!(matches!(reader.next().await, Ok(Some(_))));
    assert!(matches!(reader.next().await, Ok(None)));
    let mut truncated = FrameReader::new(&bytes[..3], 1024);
    assert!(matches!(
        truncated.next().await,
        Err(ProtocolError::Malformed(_))
    ));
    let mut huge = FrameReader::new(&[0xff, 0xff, 0xff, 0x7f][..], 1024);
    assert!(matches!(
        huge.next().await,
        Err(ProtocolError::TooLarge { .. })
    ));
}

#[test]
fn job_encoding_refuses_jobs_over_the_limit() {
    let mut batch = BatchWriter::jobs(64);
    batch.push_job_encoded(1, &7u64, 164).unwrap();
    let error = batch.push_job_encoded(2, &vec![0u8; 200], 164).unwrap_err();
    assert_eq!(
        error,
        "the job of 203 bytes exceeds the frame limit of 164 bytes"
    );
    assert!(batch.push_job_encoded(3, &"x", 164).is_ok());
    let Frame::Jobs(body) = Frame::parse(body_of(batch.finish())).unwrap() else {
        panic!()
    };
    let mut queue = JobQueue::default();
    queue.push_frame(body);
    let mut ids = Vec::new();
    while let Some(job) = queue.pop() {
        ids.push(job.unwrap().0);
    }
    assert_eq!(ids, vec![1, 3]);
}

#[test]
fn control_messages_round_trip() {
    let frame = control_frame(&ToMaster::Crash {
        reason: "x".into(),
        job: Some(3),
    });
    let Frame::Control(payload) = Frame::parse(body_of(frame)).unwrap() else {
        panic!()
    };
    let msg: ToMaster = decode_control(&payload).unwrap();
    assert!(matches!(msg, ToMaster::Crash { job: Some(3), .. }));
}

#[test]
fn a_queue_gives_back_exactly_the_jobs_not_yet_taken() {
    let mut batch = BatchWriter::jobs(64);
    for id in 10..14 {
        batch.push_job(id, b"job");
    }
    let mut queue = JobQueue::default();
    queue.push_frame(jobs_body(batch.finish()));
    let mut batch = BatchWriter::jobs(64);
    batch.push_job(14, b"job");
    queue.push_frame(jobs_body(batch.finish()));
    assert_eq!(queue.pop().unwrap().unwrap().0, 10);
    assert_eq!(queue.take_unstarted().unwrap(), [11, 12, 13, 14]);
    assert!(queue.is_empty());
    assert!(queue.pop().is_none());
}

#[test]
fn duration_buckets_grow_with_the_duration() {
    use super::{duration_bucket, DURATION_BUCKETS};
    use std::time::Duration;
    assert!((duration_bucket(Duration::MAX) as usize) < DURATION_BUCKETS);
    // Buckets grow with the duration.
    let mut last = 0;
    for nanos in (0..40u64).map(|p| 3u64 << p) {
        let bucket = duration_bucket(Duration::from_nanos(nanos));
        assert!(bucket >= last);
        last = bucket;
    }
}
