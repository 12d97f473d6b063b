//! The live dashboard: served by the master during a real run, guarded by its token,
//! and used in a real headless browser: the page loads, its numbers move, and its Stop
//! button stops the run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use conductor::{Conductor, Interrupt, Permanent, Worker};

#[path = "common/chromium.rs"]
mod chromium;
mod common;

conductor::test_support!();

/// 10 ms a job; job 3 fails for good; every job counts a row.
#[conductor::worker]
fn dashboard_job(job: u64, w: &Worker) -> anyhow::Result<u64> {
    std::thread::sleep(Duration::from_millis(10));
    w.count("rows", 1);
    if job == 3 {
        return Err(Permanent::new(anyhow::anyhow!("job 3 has no template")).into());
    }
    Ok(job)
}

/// The address and token in a dashboard URL (`http://ADDRESS/#token=TOKEN`).
fn split(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (address, token) = rest.split_once("/#token=").expect("a token in the URL");
    (address.to_string(), token.to_string())
}

/// Sends `request` as it is and returns the whole answer.
fn raw(address: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("the dashboard listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

fn status(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

#[tokio::test]
async fn without_its_token_no_one_reads_the_run_or_stops_it() {
    let running = Conductor::of::<dashboard_job>()
        .worker_limit(2)
        .logging(false)
        .stats_interval(Duration::from_millis(100))
        .dashboard("127.0.0.1:0")
        .jobs(0..150u64)
        .start()
        .unwrap();
    let url = running
        .handle()
        .dashboard_url()
        .expect("a dashboard URL")
        .to_string();
    let (address, token) = split(&url);
    assert_eq!(token.len(), 32);
    assert!(address.starts_with("127.0.0.1:"), "{url}");
    let page = raw(&address, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status(&page), "HTTP/1.1 200 OK");
    assert!(
        page.contains("Content-Security-Policy: default-src 'none'"),
        "{page}"
    );
    assert!(
        page.contains("<canvas id=\"chart\">"),
        "the page is embedded"
    );
    for refused in [
        "GET /state HTTP/1.1\r\n\r\n".to_string(),
        "GET /events?token=0123 HTTP/1.1\r\n\r\n".to_string(),
        "POST /stop HTTP/1.1\r\n\r\n".to_string(),
        "POST /abort HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n".to_string(),
        // The token is taken from a header only for the buttons: a link cannot press them.
        format!("POST /stop?token={token} HTTP/1.1\r\n\r\n"),
    ] {
        let answer = raw(&address, &refused);
        assert_eq!(status(&answer), "HTTP/1.1 401 Unauthorized", "{refused}");
    }
    assert_eq!(
        status(&raw(&address, "nonsense\r\n\r\n")),
        "HTTP/1.1 400 Bad Request"
    );
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(
        status(&raw(&address, &huge)),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    assert_eq!(
        status(&raw(&address, "GET /nowhere HTTP/1.1\r\n\r\n")),
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        status(&raw(&address, "DELETE /stop HTTP/1.1\r\n\r\n")),
        "HTTP/1.1 405 Method Not Allowed"
    );
    // With the token: the state as JSON.
    let state = raw(
        &address,
        &format!("GET /state?token={token} HTTP/1.1\r\n\r\n"),
    );
    assert_eq!(status(&state), "HTTP/1.1 200 OK", "{state}");
    let body: serde_json::Value =
        serde_json::from_str(state.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(
        body.is_null() || body["conductor"] == "dashboard_job",
        "{body}"
    );

    // Nothing refused above touched the run: it ran every job.
    let report = running.wait().await.unwrap();
    assert_eq!((report.completed(), report.failed()), (149, 1));
    assert_eq!(report.interrupted(), None);
    // The server went with the run.
    assert!(
        TcpStream::connect(&address).is_err(),
        "the dashboard outlived its run"
    );
}

#[tokio::test]
async fn a_taken_address_is_an_error_of_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let error = Conductor::of::<dashboard_job>()
        .dashboard(&address)
        .jobs(0..1u64)
        .start()
        .err()
        .expect("the address is taken");
    assert!(
        error
            .to_string()
            .contains(&format!("cannot serve the dashboard on `{address}`")),
        "{error}"
    );
}

#[tokio::test]
async fn in_a_browser_the_numbers_move_and_stop_stops_the_run() {
    let Some(program) = chromium::find() else {
        return;
    };
    let running = Conductor::of::<dashboard_job>()
        .worker_limit(2)
        .logging(false)
        .stats_interval(Duration::from_millis(200))
        .dashboard("127.0.0.1:0")
        .jobs(0..3000u64)
        .start()
        .unwrap();
    let url = running.handle().dashboard_url().unwrap().to_string();
    // The browser works on a thread of its own while `wait` takes the run's events.
    let browser = tokio::task::spawn_blocking(move || {
        let mut browser = chromium::Browser::open(program, &url, 1280, 1000);
        let done = "Number(document.getElementById('done').textContent.replace(/,/g, ''))";
        browser.wait_for(
            "document.getElementById('state').textContent",
            Duration::from_secs(20),
            |v| v == "running",
        );
        let first = browser.wait_for(done, Duration::from_secs(20), |v| v.as_u64() > Some(0));
        std::thread::sleep(Duration::from_millis(800));
        let later = browser.eval(done);
        assert!(
            later.as_u64() > first.as_u64(),
            "the numbers move: {first} then {later}"
        );
        assert_eq!(
            browser.eval("document.getElementById('of-total').textContent"),
            " / 3,000"
        );
        // Both workers, each with its state; a rate and an ETA; the failure; the counter.
        let workers = browser.wait_for(
            "Array.from(document.querySelectorAll('#workers tr')).map(r => r.textContent)",
            Duration::from_secs(10),
            |v| v.as_array().is_some_and(|rows| rows.len() == 2),
        );
        assert!(
            workers.as_array().unwrap().iter().all(|row| {
                let row = row.as_str().unwrap();
                row.contains("local") && (row.contains("busy") || row.contains("idle"))
            }),
            "{workers}"
        );
        browser.wait_for(
            "document.getElementById('rate').textContent",
            Duration::from_secs(10),
            |v| {
                v.as_str()
                    .is_some_and(|rate| rate.chars().next().is_some_and(|c| c.is_ascii_digit()))
            },
        );
        let eta = browser.eval("document.getElementById('eta').textContent");
        assert!(
            eta.as_str()
                .is_some_and(|eta| eta.ends_with('s') || eta.ends_with('m')),
            "ETA {eta}"
        );
        browser.wait_for(
            "document.getElementById('failures').textContent",
            Duration::from_secs(10),
            |v| {
                v.as_str()
                    .is_some_and(|text| text.contains("job 3 has no template"))
            },
        );
        browser.wait_for(
            "document.getElementById('stats').textContent",
            Duration::from_secs(10),
            |v| v.as_str().is_some_and(|text| text.contains("rows")),
        );
        // The chart has drawn a line: some pixels of its colour.
        let drawn = browser.eval(
            "(() => { const c = document.getElementById('chart'); \
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
             let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] === 0x35 && d[i+1] === 0x59 && d[i+2] === 0xe0) n++; \
             return n; })()",
        );
        assert!(
            drawn.as_u64() > Some(50),
            "the throughput chart is drawn: {drawn} pixels"
        );
        let png = browser.screenshot();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = std::env::var("CONDUCTOR_SCREENSHOT").unwrap_or_else(|_| {
            std::env::temp_dir()
                .join("conductor-dashboard.png")
                .display()
                .to_string()
        });
        std::fs::write(&path, &png).unwrap();
        // Stop: no new job starts, the jobs in flight finish, and the page says it ended.
        browser.eval("document.getElementById('stop').click()");
        browser.wait_for(
            "document.getElementById('state').textContent",
            Duration::from_secs(20),
            |v| v == "ended",
        );
        browser
    });
    let (browser, report) = tokio::join!(browser, running.wait());
    drop(browser.unwrap());
    let mut report = report.unwrap();
    assert_eq!(report.interrupted(), Some(Interrupt::Shutdown));
    let done = report.completed() + report.failed();
    assert!(
        done > 0 && done < 3000,
        "the run stopped early: {done} of 3000"
    );
    assert_eq!(done + report.not_run().len() as u64, report.submitted());
    // Every job is accounted for: the rest of the source comes back untouched.
    let mut rest = report
        .take_unsubmitted()
        .expect("the source was not finished");
    assert_eq!(rest.next().await, Some(report.submitted()));
}

#[test]
fn the_dashboard_example_prints_its_address_and_runs_to_the_end() {
    let output = std::process::Command::new(common::example_path("dashboard"))
        .args(["--jobs", "40", "--address", "127.0.0.1:0"])
        .output()
        .expect("build the example with `cargo build --examples --features dashboard`");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("conductor dashboard of `render_page`: http://127.0.0.1:")
            && stderr.contains("/#token="),
        "{stderr}"
    );
    assert!(stdout.contains("40 pages rendered, 0 failed"), "{stdout}");
}

#[tokio::test]
async fn abort_with_the_token_kills_the_workers_and_accounts_for_every_job() {
    let running = Conductor::of::<dashboard_job>()
        .worker_limit(2)
        .logging(false)
        .dashboard("0")
        .jobs(0..2000u64)
        .start()
        .unwrap();
    let (address, token) = split(running.handle().dashboard_url().unwrap());
    // Wait until work is under way, then press Abort as the page does.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = tokio::task::spawn_blocking(move || {
        raw(
            &address,
            &format!("POST /abort HTTP/1.1\r\nAuthorization: bearer {token}\r\n\r\n"),
        )
    })
    .await
    .unwrap();
    assert_eq!(status(&answer), "HTTP/1.1 202 Accepted", "{answer}");
    let mut report = running.wait().await.unwrap();
    assert!(report.aborted(), "{report:?}");
    let done = report.completed() + report.failed();
    assert!(done < 2000, "stopped early: {done}");
    assert_eq!(done + report.not_run().len() as u64, report.submitted());
    let mut rest = report
        .take_unsubmitted()
        .expect("the source was not finished");
    assert_eq!(rest.next().await, Some(report.submitted()));
}

/// Run as a program of its own by the test below, with `CONDUCTOR_DASHBOARD` set.
#[tokio::test]
async fn dashboard_from_the_environment_entry() {
    if std::env::var_os("CONDUCTOR_DASHBOARD").is_none() {
        return;
    }
    let report = Conductor::of::<dashboard_job>()
        .worker_limit(1)
        .logging(false)
        .jobs(0..5u64)
        .run()
        .await
        .unwrap();
    assert_eq!(report.completed(), 4);
}

#[test]
fn conductor_dashboard_turns_it_on_without_a_line_of_code() {
    let (passed, stderr) = common::run_entry(
        "dashboard_from_the_environment_entry",
        ("CONDUCTOR_DASHBOARD", "0"),
    );
    assert!(passed, "{stderr}");
    assert!(
        stderr.contains("conductor dashboard of `dashboard_job`: http://127.0.0.1:"),
        "{stderr}"
    );
}
