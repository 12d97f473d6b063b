//! The dashboard's HTTP server: a few routes over plain HTTP/1.1, written here rather
//! than pulled in with a web framework, because one page, one event stream and two
//! buttons are all it serves.
//!
//! | Route | Token | What |
//! |---|---|---|
//! | `GET /` | no | the page (it holds no data of the run) |
//! | `GET /events?token=` | yes | server-sent events: the throughput history, then a snapshot each time the master makes one |
//! | `GET /state?token=` | yes | the latest snapshot, as JSON |
//! | `POST /stop` | yes, as a header | no new job starts; jobs in flight finish (like Ctrl-C) |
//! | `POST /abort` | yes, as a header | workers are killed now (like a second Ctrl-C) |
//!
//! Buttons send the token in a header (`Authorization: Bearer`), which another site's
//! page cannot make a browser send: a link or a form elsewhere cannot stop the run.

use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::Snapshot;
use crate::error::Error;
use crate::handle::{Command, Shared};

/// The page, embedded: no build step, nothing fetched from elsewhere.
const PAGE: &str = include_str!("page.html");
/// A request's head larger than this is refused.
const MAX_HEAD_BYTES: usize = 8 << 10;
/// A client that has not sent its request's head within this is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait for their turn.
const MAX_CONNECTIONS: usize = 32;
/// How long writing an answer or an event may take: a page that stops reading is
/// dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Points of the throughput history kept for a page that opens mid-run: one a second.
const HISTORY_POINTS: usize = 3600;

/// The dashboard's socket and token, before the run serves them.
pub(crate) struct Bound {
    listener: std::net::TcpListener,
    address: SocketAddr,
    token: String,
}

impl Bound {
    /// Binds `address`: `host:port`, or a bare port of 127.0.0.1.
    pub fn new(address: &str) -> Result<Bound, Error> {
        let cannot =
            |why: String| Error::usage(format!("cannot serve the dashboard on `{address}`: {why}"));
        let text = match address.trim().parse::<u16>() {
            Ok(port) => format!("127.0.0.1:{port}"),
            Err(_) => address.trim().to_string(),
        };
        let addresses: Vec<SocketAddr> = text
            .to_socket_addrs()
            .map_err(|e| cannot(format!("{e} (give host:port, or a port)")))?
            .collect();
        let listener =
            std::net::TcpListener::bind(&addresses[..]).map_err(|e| cannot(e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| cannot(e.to_string()))?;
        let address = listener.local_addr().map_err(|e| cannot(e.to_string()))?;
        let token = new_token().map_err(|e| cannot(format!("no randomness for its token: {e}")))?;
        Ok(Bound {
            listener,
            address,
            token,
        })
    }

    /// Where to open the page; the token rides in the fragment, which the browser
    /// never sends to a server, and the page reads it from there.
    pub fn url(&self) -> String {
        let mut shown = self.address;
        if shown.ip().is_unspecified() {
            shown.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{shown}/#token={}", self.token)
    }
}

/// 128 random bits, in hex.
fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What the pages watching see: the latest snapshot and the throughput so far.
pub(crate) struct State {
    token: String,
    shared: Arc<Shared>,
    latest: watch::Sender<Arc<Published>>,
    history: Mutex<VecDeque<(f64, u64)>>,
    /// For each page on the event stream, the last version it was sent.
    watchers: Mutex<Vec<Weak<AtomicU64>>>,
    /// The task that takes connections: stopped at the run's end.
    accepting: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A snapshot as JSON, numbered.
struct Published {
    version: u64,
    json: String,
    ended: bool,
}

/// Serves `bound` on the current runtime until the runtime ends (the run's end).
pub(crate) fn serve(bound: Bound, shared: Arc<Shared>) -> Arc<State> {
    let state = Arc::new(State {
        token: bound.token,
        shared,
        latest: watch::Sender::new(Arc::new(Published {
            version: 0,
            json: "null".into(),
            ended: false,
        })),
        history: Mutex::new(VecDeque::new()),
        watchers: Mutex::new(Vec::new()),
        accepting: Mutex::new(None),
    });
    match TcpListener::from_std(bound.listener) {
        Ok(listener) => {
            let task = tokio::spawn(accept(listener, Arc::downgrade(&state)));
            *state.accepting.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
        Err(e) => tracing::warn!("the dashboard cannot serve: {e}"),
    }
    state
}

impl State {
    pub fn publish(&self, snapshot: &Snapshot) {
        {
            let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
            let done = snapshot.completed + snapshot.failed;
            if history
                .back()
                .is_none_or(|(t, _)| snapshot.elapsed >= t + 1.0)
            {
                if history.len() == HISTORY_POINTS {
                    history.pop_front();
                }
                history.push_back((snapshot.elapsed, done));
            }
        }
        let json = serde_json::to_string(snapshot).unwrap_or_else(|_| "null".into());
        let version = self.latest.borrow().version + 1;
        self.latest.send_replace(Arc::new(Published {
            version,
            json,
            ended: snapshot.state == "ended",
        }));
    }

    /// Stops taking connections and closes the port, once every watching page was
    /// sent the latest snapshot (or `timeout` passed).
    pub async fn close(&self, timeout: Duration) {
        self.flush(timeout).await;
        let accepting = self
            .accepting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = accepting {
            task.abort();
            // Its end drops the listener: the port is free when this returns.
            let _ = task.await;
        }
    }

    /// Waits, up to `timeout`, until every watching page was sent the latest snapshot.
    async fn flush(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let version = self.latest.borrow().version;
        while tokio::time::Instant::now() < deadline {
            let behind = {
                let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
                watchers.retain(|w| w.strong_count() > 0);
                watchers
                    .iter()
                    .filter_map(Weak::upgrade)
                    .any(|sent| sent.load(Ordering::Relaxed) < version)
            };
            if !behind {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn token_matches(&self, given: Option<&str>) -> bool {
        // Compared in constant time: how far a guess matched must not show.
        given.is_some_and(|given| {
            given.len() == self.token.len()
                && given
                    .bytes()
                    .zip(self.token.bytes())
                    .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                    == 0
        })
    }
}

async fn accept(listener: TcpListener, state: Weak<State>) {
    let turns = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of files, say: wait and go on, the run matters more than its page.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // When every slot is taken, a newcomer is turned away at once: waiting with
        // its socket open would let idle clients pile up.
        let Ok(turn) = turns.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let Some(state) = state.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let _ = connection(stream, &state).await;
            drop(turn);
        });
    }
}

/// A request's head: what the routes look at.
struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The token, from `Authorization: Bearer` or, where `from_query`, `?token=`.
    fn token(&self, from_query: bool) -> Option<&str> {
        let bearer = self.header("authorization").and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        if bearer.is_some() {
            return bearer;
        }
        if !from_query {
            return None;
        }
        self.query
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
    }
}

async fn connection(mut stream: TcpStream, state: &State) -> std::io::Result<()> {
    let request = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(request))) => request,
        Ok(Ok(None)) => {
            return respond(
                &mut stream,
                "400 Bad Request",
                "text/plain",
                "a malformed request\n",
            )
            .await
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "too large\n",
            )
            .await
        }
        _ => return Ok(()),
    };
    let authorized = |from_query| state.token_matches(request.token(from_query));
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/" | "/index.html") => {
            respond(&mut stream, "200 OK", "text/html; charset=utf-8", PAGE).await
        }
        ("GET", "/events" | "/state") if !authorized(true) => unauthorized(&mut stream).await,
        ("GET", "/events") => events(stream, state).await,
        ("GET", "/state") => {
            let json = state.latest.borrow().json.clone();
            respond(&mut stream, "200 OK", "application/json", &json).await
        }
        ("POST", "/stop" | "/abort") if !authorized(false) => unauthorized(&mut stream).await,
        ("POST", path @ ("/stop" | "/abort")) => {
            let (command, what) = match path {
                "/stop" => (Command::Shutdown, "asked the run to stop"),
                _ => (Command::Abort, "aborted the run"),
            };
            tracing::info!(conductor = %state.shared.id, "the dashboard {what}");
            let _ = state.shared.commands.send(command);
            respond(
                &mut stream,
                "202 Accepted",
                "application/json",
                "{\"ok\":true}",
            )
            .await
        }
        (_, "/" | "/index.html" | "/events" | "/state" | "/stop" | "/abort") => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                "method not allowed\n",
            )
            .await
        }
        _ => respond(&mut stream, "404 Not Found", "text/plain", "not found\n").await,
    }
}

async fn unauthorized(stream: &mut TcpStream) -> std::io::Result<()> {
    respond(
        stream,
        "401 Unauthorized",
        "text/plain",
        "a wrong or missing token: use the address the run printed at start\n",
    )
    .await
}

/// Reads a request's head; `None` if it is not HTTP, an `InvalidData` error if it is
/// too large.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..read]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    };
    let Ok(head) = std::str::from_utf8(&head[..end]) else {
        return Ok(None);
    };
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version)) = (first.next(), first.next(), first.next())
    else {
        return Ok(None);
    };
    if !version.starts_with("HTTP/1.") {
        return Ok(None);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    Ok(Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
    }))
}

/// Headers every answer carries: nothing is cached, framed, sniffed or referred.
const COMMON_HEADERS: &str = "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
    X-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n\
    Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'\r\n";

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{COMMON_HEADERS}Connection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    // A client that does not read its answer does not keep its slot.
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// The event stream: the history first, then each snapshot, until the run ends or the
/// page goes away.
async fn events(mut stream: TcpStream, state: &State) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n{COMMON_HEADERS}Connection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let history = {
        let history = state.history.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::to_string(&*history).unwrap_or_else(|_| "[]".into())
    };
    stream
        .write_all(format!("event: history\ndata: {history}\n\n").as_bytes())
        .await?;
    let sent = Arc::new(AtomicU64::new(0));
    state
        .watchers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Arc::downgrade(&sent));
    let mut latest = state.latest.subscribe();
    loop {
        let published = latest.borrow_and_update().clone();
        if published.version > 0 {
            let event = format!("data: {}\n\n", published.json);
            tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(event.as_bytes()))
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))?;
        }
        sent.store(published.version, Ordering::Relaxed);
        if published.ended || latest.changed().await.is_err() {
            return stream.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_binds_to_the_loopback_and_the_url_carries_the_token() {
        let bound = Bound::new("0").unwrap();
        assert!(bound.address.ip().is_loopback());
        assert_eq!(bound.token.len(), 32);
        let url = bound.url();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert!(url.ends_with(&format!("/#token={}", bound.token)), "{url}");
    }

    #[test]
    fn a_bad_address_is_a_clear_error() {
        let error = Bound::new("nowhere:port").err().unwrap().to_string();
        assert!(
            error.contains("cannot serve the dashboard on `nowhere:port`"),
            "{error}"
        );
    }
}
