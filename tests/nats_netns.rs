//! Many machines, simulated with network namespaces: the NATS server in one, a worker
//! in each of two others, joined over veth links, and the master outside. One worker's
//! link is cut for longer than the ack wait, then restored. Every job is accounted for
//! once, and the cut worker comes back to work.
//!
//! Needs root and `ip netns` (these machines and CI have both); elsewhere it says why
//! and passes, unless `CONDUCTOR_REQUIRE_NETNS=1`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conductor::{Conductor, Event};

conductor::test_support!();

mod common;
use common::unique_run;

const TEST_SECRET: &str = "4e754e754e754e754e754e754e754e754e754e754e754e754e754e754e754e75";

/// Which process ran the job, and when it finished (ms since the epoch).
#[conductor::worker(type = "netns_job")]
fn netns_job(_job: u64) -> anyhow::Result<(u32, u64)> {
    std::thread::sleep(Duration::from_millis(15));
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    Ok((std::process::id(), now))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Runs `ip` with `args` (in namespace `ns`, if given); the error says what failed.
fn ip(ns: Option<&str>, args: &[&str]) -> Result<(), String> {
    let mut command = Command::new("ip");
    if let Some(ns) = ns {
        command.args(["netns", "exec", ns, "ip"]);
    }
    let output = command
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    match output.status.success() {
        true => Ok(()),
        false => Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

/// A pair of linked virtual interfaces, `a` and `b`.
fn veth(a: &str, b: &str) -> Result<(), String> {
    ip(None, &["link", "add", a, "type", "veth", "peer", "name", b])
}

/// Three namespaces (server, two workers) and the links between them and to this one;
/// all removed when dropped, the server killed.
struct Network {
    server_ns: String,
    worker_ns: [String; 2],
    /// The worker links, as named inside each worker's namespace.
    worker_links: [String; 2],
    root_link: String,
    server: Option<Child>,
    store: std::path::PathBuf,
}

impl Network {
    fn build() -> Result<Network, String> {
        let tag = std::process::id() % 100_000;
        let mut network = Network {
            server_ns: format!("cnd-s{tag}"),
            worker_ns: [format!("cnd-a{tag}"), format!("cnd-b{tag}")],
            worker_links: [format!("cwa{tag}"), format!("cwb{tag}")],
            root_link: format!("cr{tag}"),
            server: None,
            store: std::env::temp_dir().join(format!("cnd-netns-{tag}")),
        };
        let server_ns = network.server_ns.clone();
        ip(None, &["netns", "add", &server_ns])?;
        ip(Some(&server_ns), &["link", "set", "lo", "up"])?;
        // This namespace (the master) to the server's: 10.231.0.1 <-> 10.231.0.2.
        let server_end = format!("cs0{tag}");
        veth(&network.root_link, &server_end)?;
        ip(None, &["link", "set", &server_end, "netns", &server_ns])?;
        ip(
            None,
            &["addr", "add", "10.231.0.1/24", "dev", &network.root_link],
        )?;
        ip(None, &["link", "set", &network.root_link, "up"])?;
        ip(
            Some(&server_ns),
            &["addr", "add", "10.231.0.2/24", "dev", &server_end],
        )?;
        ip(Some(&server_ns), &["link", "set", &server_end, "up"])?;
        // Each worker's namespace to the server's: 10.231.N.2 <-> 10.231.N.1.
        for n in 0..2 {
            let (ns, link) = (
                network.worker_ns[n].clone(),
                network.worker_links[n].clone(),
            );
            let server_end = format!("cs{}{tag}", n + 1);
            ip(None, &["netns", "add", &ns])?;
            ip(Some(&ns), &["link", "set", "lo", "up"])?;
            veth(&link, &server_end)?;
            ip(None, &["link", "set", &link, "netns", &ns])?;
            ip(None, &["link", "set", &server_end, "netns", &server_ns])?;
            let (worker_addr, server_addr) = (
                format!("10.231.{}.2/24", n + 1),
                format!("10.231.{}.1/24", n + 1),
            );
            ip(Some(&ns), &["addr", "add", &worker_addr, "dev", &link])?;
            ip(Some(&ns), &["link", "set", &link, "up"])?;
            ip(
                Some(&server_ns),
                &["addr", "add", &server_addr, "dev", &server_end],
            )?;
            ip(Some(&server_ns), &["link", "set", &server_end, "up"])?;
        }
        let _ = std::fs::remove_dir_all(&network.store);
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &server_ns,
                "nats-server",
                "-js",
                "-p",
                "4222",
                "-sd",
            ])
            .arg(&network.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start nats-server: {e}"))?;
        network.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect("10.231.0.2:4222").is_err() {
            if Instant::now() > deadline {
                return Err("the server in its namespace did not come up".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(network)
    }

    /// A worker that joins `run` from namespace `n`, through the server's address there.
    fn worker(&self, n: usize, run: &str) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.worker_ns[n]])
            .arg(std::env::current_exe().unwrap())
            .args(["__conductor_worker_entry", "--exact", "--nocapture"])
            .env(
                "CONDUCTOR_NATS_URL",
                format!("nats://10.231.{}.1:4222", n + 1),
            )
            .env("CONDUCTOR_JOIN", run)
            .env("CONDUCTOR_RUN_SECRET", TEST_SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Cuts (or restores) worker `n`'s link.
    fn set_link(&self, n: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(
            Some(&self.worker_ns[n]),
            &["link", "set", &self.worker_links[n], state],
        )
        .unwrap();
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = ip(None, &["link", "del", &self.root_link]);
        for ns in self.worker_ns.iter().chain([&self.server_ns]) {
            let _ = ip(None, &["netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

#[tokio::test]
async fn a_worker_cut_off_longer_than_the_ack_wait_loses_nothing_and_comes_back() {
    let network = match Network::build() {
        Ok(network) => network,
        Err(why) if std::env::var_os("CONDUCTOR_REQUIRE_NETNS").is_none() => {
            eprintln!("SKIPPED: network namespaces cannot be made here ({why})");
            return;
        }
        Err(why) => panic!("network namespaces cannot be made here: {why}"),
    };
    let run = unique_run("netns");
    let mut running = Conductor::<u64, (u32, u64)>::new("netns_job")
        .nats("nats://10.231.0.2:4222")
        .run_name(&run)
        .run_secret(TEST_SECRET)
        .worker_limit(1)
        .ack_wait(Duration::from_secs(2))
        .logging(false)
        .jobs(0..1500)
        .start()
        .unwrap();
    let mut workers = [network.worker(0, &run), network.worker(1, &run)];
    let cut_pid = workers[0].id();
    let mut outputs = BTreeMap::new();
    let mut cut_at = None;
    let mut restored_at = None;
    let mut after_restore = 0;
    while let Some(event) = running.next_event().await {
        let Event::Output(output) = event else {
            continue;
        };
        let (pid, finished_ms) = output.output;
        assert!(
            outputs.insert(output.id, pid).is_none(),
            "job {} twice",
            output.id
        );
        let from_cut = outputs.values().filter(|p| **p == cut_pid).count();
        if cut_at.is_none() && from_cut >= 20 {
            network.set_link(0, false);
            cut_at = Some(Instant::now());
        }
        // Longer than the ack wait and than the master's patience with a silent worker.
        if restored_at.is_none() && cut_at.is_some_and(|at| at.elapsed() > Duration::from_secs(5)) {
            network.set_link(0, true);
            restored_at = Some(now_ms());
        }
        if pid == cut_pid && restored_at.is_some_and(|at| finished_ms > at) {
            after_restore += 1;
        }
    }
    let report = running.wait().await.unwrap();
    assert!(cut_at.is_some(), "the worker to cut never ran a job");
    assert!(
        restored_at.is_some(),
        "the run ended before the link came back: {report:?}"
    );
    assert!(report.all_completed(), "{report:?}");
    assert_eq!(outputs.len(), 1500, "every job accounted for once");
    assert!(
        after_restore > 0,
        "the cut worker did not work again after its link came back"
    );
    for worker in &mut workers {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = worker.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "a worker stayed after the run");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{status}");
    }
}
