//! Baseline for "one job in flight per worker": the master sends a job (8 bytes) to
//! each of W child processes over a socketpair and waits for its answer before sending
//! the next, with no framework at all. Same flags and JSON line as the other systems.
//!
//! By default the master has one thread per child, blocked on its socket, so each
//! pair can share a core. `--multiplex 1` makes it one thread that polls every
//! child's socket, the shape of a master that schedules all workers itself (as
//! conductor's does); it prints `raw-roundtrip-poll`.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Instant;

fn flag(args: &[String], name: &str, default: u64) -> u64 {
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

/// The child: answer n*n for every n until the channel closes (stdin is its socket).
fn child() {
    let mut stream = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    let mut buf = [0u8; 8];
    while stream.read_exact(&mut buf).is_ok() {
        let n = u64::from_le_bytes(buf);
        if out.write_all(&n.wrapping_mul(n).to_le_bytes()).and_then(|_| out.flush()).is_err() {
            return;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if std::env::var_os("RAW_ROUNDTRIP_CHILD").is_some() {
        return child();
    }
    let jobs = flag(&args, "--jobs", 100_000);
    let workers = flag(&args, "--workers", 2).max(1);
    let multiplex = flag(&args, "--multiplex", 0) == 1;
    let started = Instant::now();
    let sum = if multiplex {
        polled(jobs, workers)
    } else {
        threaded(jobs, workers)
    };
    let secs = started.elapsed().as_secs_f64();
    let expected = (0..jobs).fold(0u64, |acc, n| acc.wrapping_add(n.wrapping_mul(n)));
    assert_eq!(sum, expected, "outputs do not add up");
    println!(
        "{{\"system\":\"{}\",\"jobs\":{jobs},\"workers\":{workers},\"work_us\":0,\"payload_bytes\":0,\"completed\":{jobs},\"failed\":0,\"secs\":{secs:.6},\"jobs_per_sec\":{:.1},\"master_peak_rss_mib\":0.0}}",
        if multiplex { "raw-roundtrip-poll" } else { "raw-roundtrip" },
        jobs as f64 / secs
    );
}

/// Starts a child whose stdin and stdout are one end of a fresh socketpair.
fn start_child() -> (UnixStream, std::process::Child) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let child = Command::new(std::env::current_exe().expect("exe"))
        .env("RAW_ROUNDTRIP_CHILD", "1")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs.try_clone().expect("dup"))))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .spawn()
        .expect("spawn");
    (ours, child)
}

/// One thread polls every child's socket and sends each its next job on its answer.
fn polled(jobs: u64, workers: u64) -> u64 {
    let mut children: Vec<_> = (0..workers).map(|_| start_child()).collect();
    let mut next = 0u64;
    let mut sum = 0u64;
    let mut busy = 0;
    for (stream, _) in children.iter_mut() {
        if next < jobs {
            stream.write_all(&next.to_le_bytes()).expect("write");
            next += 1;
            busy += 1;
        }
    }
    let mut fds: Vec<libc::pollfd> = children
        .iter()
        .map(|(stream, _)| libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLIN, revents: 0 })
        .collect();
    let mut buf = [0u8; 8];
    while busy > 0 {
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        assert!(ready > 0, "poll failed");
        for (k, fd) in fds.iter().enumerate() {
            if fd.revents == 0 {
                continue;
            }
            let stream = &mut children[k].0;
            stream.read_exact(&mut buf).expect("read");
            sum = sum.wrapping_add(u64::from_le_bytes(buf));
            busy -= 1;
            if next < jobs {
                stream.write_all(&next.to_le_bytes()).expect("write");
                next += 1;
                busy += 1;
            }
        }
    }
    for (stream, mut child) in children {
        drop(stream);
        let _ = child.wait();
    }
    sum
}

/// One thread per child, each blocked on its own socket.
fn threaded(jobs: u64, workers: u64) -> u64 {
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            std::thread::spawn(move || {
                let (mut ours, mut child) = start_child();
                let mut sum = 0u64;
                let mut buf = [0u8; 8];
                for n in (w..jobs).step_by(workers as usize) {
                    ours.write_all(&n.to_le_bytes()).expect("write");
                    ours.read_exact(&mut buf).expect("read");
                    sum = sum.wrapping_add(u64::from_le_bytes(buf));
                }
                drop(ours);
                let _ = child.wait();
                sum
            })
        })
        .collect();
    handles.into_iter().fold(0u64, |acc, h| acc.wrapping_add(h.join().expect("thread")))
}
