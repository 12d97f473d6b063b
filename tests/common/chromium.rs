//! Headless Chromium, driven over the DevTools protocol on a pipe (fds 3 and 4 of
//! the browser, `--remote-debugging-pipe`): no WebSocket client and no driver to
//! install, only the browser from the distribution's packages.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A browser with one page open.
pub struct Browser {
    child: Child,
    to_browser: std::fs::File,
    from_browser: BufReader<std::fs::File>,
    next_id: u64,
    session: String,
    _profile: TempDir,
}

/// Where Chromium is, or why the test cannot run. CI sets `CONDUCTOR_REQUIRE_BROWSER=1`,
/// which makes a missing browser a failure.
pub fn find() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if found.is_none() {
        let required = std::env::var("CONDUCTOR_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "no Chromium, and CONDUCTOR_REQUIRE_BROWSER=1: apt-get install chromium"
        );
        eprintln!("SKIPPED: no Chromium (apt-get install chromium)");
    }
    found
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two new fds into the array, which we then own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: both fds were just made by pipe and belong to nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    /// Starts Chromium and opens `url` in a page of `width` x `height`.
    pub fn open(program: &str, url: &str, width: u32, height: u32) -> Browser {
        let profile =
            std::env::temp_dir().join(format!("conductor-chromium-{}", std::process::id()));
        let (commands_read, commands_write) = pipe();
        let (answers_read, answers_write) = pipe();
        let mut command = Command::new(program);
        command
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-pipe",
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        {
            use std::os::fd::AsRawFd;
            let (read, write) = (commands_read.as_raw_fd(), answers_write.as_raw_fd());
            // SAFETY: between fork and exec only dup2 runs, which is async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    if libc::dup2(read, 3) < 0 || libc::dup2(write, 4) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command.spawn().expect("Chromium starts");
        drop((commands_read, answers_write));
        let mut browser = Browser {
            child,
            to_browser: std::fs::File::from(commands_write),
            from_browser: BufReader::new(std::fs::File::from(answers_read)),
            next_id: 0,
            session: String::new(),
            _profile: TempDir(profile),
        };
        let target = browser.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let target = target["targetId"]
            .as_str()
            .expect("a target id")
            .to_string();
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        browser.page(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        browser.page("Page.navigate", json!({ "url": url }));
        browser
    }

    /// Sends a command and waits for its answer; events in between are skipped.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .expect("Chromium takes the command");
        loop {
            let mut answer = Vec::new();
            let read = self
                .from_browser
                .read_until(0, &mut answer)
                .expect("Chromium answers");
            assert!(read > 0, "Chromium closed the pipe during {method}");
            answer.pop();
            let answer: Value = serde_json::from_slice(&answer).expect("JSON from Chromium");
            if answer["id"] == json!(id) {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// A command to the open page.
    pub fn page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    /// Evaluates `expression` in the page and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        self.try_eval(expression)
            .unwrap_or_else(|error| panic!("{expression}: {error}"))
    }

    /// Evaluates `expression` in the page: its value, or the exception it threw.
    fn try_eval(&mut self, expression: &str) -> Result<Value, Value> {
        let result = self.page(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        match result.get("exceptionDetails") {
            Some(exception) => Err(exception.clone()),
            None => Ok(result["result"]["value"].clone()),
        }
    }

    /// Evaluates `expression` until `ready` holds for its value (an exception is not
    /// ready), or panics after `within`.
    pub fn wait_for(
        &mut self,
        expression: &str,
        within: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            // Until the page has loaded, its elements are not there: not ready yet.
            let value = self
                .try_eval(expression)
                .unwrap_or_else(|exception| exception);
            if ready(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "`{expression}` is still {value} after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The page as a PNG.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let shot = self.page("Page.captureScreenshot", json!({ "format": "png" }));
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("base64 data"))
            .expect("a PNG in base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
