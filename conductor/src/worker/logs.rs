//! Logs from a worker process, sent to its master.
//!
//! A worker's stderr is the master's terminal at best (interleaved, without saying
//! which worker or job spoke) and nowhere at all on another machine. So a worker
//! installs this subscriber and a `log` logger first thing at boot: every `tracing`
//! event or `log` record that passes the master's level travels to the master as a
//! [`LogRecord`], with the job it happened in and the spans around it, and the master
//! replays it into its own subscriber (`master/worker_logs.rs`).
//!
//! Warnings and errors always travel, whatever the master's level: the master shows
//! them on stderr if it has no subscriber, as a worker's `eprintln!` once did. Until
//! the channel to the master is up, once it fails, and on threads that carry the
//! channel's traffic themselves (the NATS bridge: its events would wait for room it
//! alone makes), they go to this process's stderr instead.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

use crate::wire::{control_frame, level_number, level_of_number, LogRecord, LogValue, ToMaster};

/// What is sent whatever the master's level: warnings and errors.
const ALWAYS_SENT: u8 = 2;
/// A field value longer than this is cut: a log line must never fill a frame.
const MAX_VALUE_BYTES: usize = 16 << 10;
/// An event's fields and spans beyond this many bytes in all are left out.
const MAX_RECORD_BYTES: usize = 64 << 10;
/// A span keeps at most this many fields.
const MAX_SPAN_FIELDS: usize = 32;
/// Targets of the libraries the worker itself talks through: their finer events are
/// not sent, or sending one would make more of them.
const TRANSPORT_TARGETS: &[&str] = &["async_nats", "rustls", "tokio", "mio"];

/// The worker's logging state: one per process.
struct Forwarding {
    /// The most verbose level sent ([`level_number`]).
    level: AtomicU8,
    /// Where records go once the worker has a channel.
    sink: OnceLock<Sink>,
    spans: Mutex<BTreeMap<u64, SpanEntry>>,
    next_span: AtomicU64,
}

struct SpanEntry {
    name: &'static str,
    /// Its fields; a field recorded again replaces its value.
    fields: Vec<(String, LogValue)>,
    references: usize,
}

impl SpanEntry {
    /// `name{field=value ...}`, as sent with each event inside the span.
    fn text(&self) -> String {
        let mut text = self.name.to_string();
        append_fields(&mut text, &self.fields);
        text
    }

    fn record(&mut self, fields: Vec<(String, LogValue)>) {
        for (name, value) in fields {
            let full = self.fields.len() >= MAX_SPAN_FIELDS;
            match self.fields.iter_mut().find(|(n, _)| *n == name) {
                Some(field) => field.1 = value,
                None if !full => self.fields.push((name, value)),
                None => {}
            }
        }
    }
}

static FORWARDING: Forwarding = Forwarding {
    level: AtomicU8::new(ALWAYS_SENT),
    sink: OnceLock::new(),
    spans: Mutex::new(BTreeMap::new()),
    next_span: AtomicU64::new(1),
};

thread_local! {
    /// The spans this thread is in, innermost last.
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// Set while this thread sends a record (a record about the sending goes to
    /// stderr), and for good on threads whose events must not wait for the channel.
    static SENDING: Cell<bool> = const { Cell::new(false) };
}

/// Events of this thread go to stderr from now on, never down the channel: for the
/// thread that carries the channel's traffic, and for one that holds its writer.
pub(crate) fn keep_on_this_thread() {
    let _ = SENDING.try_with(|s| s.set(true));
}

/// Makes this process's `tracing` events and `log` records go to the master. Called
/// once, at boot, before any of the worker's threads exist.
pub(crate) fn install() {
    // Fails only if something set a subscriber before `main`: theirs stays.
    let _ = tracing::subscriber::set_global_default(Forwarder);
    if log::set_logger(&LogForwarder).is_ok() {
        log::set_max_level(log_filter(ALWAYS_SENT));
    }
}

/// Sends a whole frame down the worker's channel.
pub(super) type SendFrame = dyn Fn(&[u8]) -> std::io::Result<()> + Send + Sync;

/// Where records go once the worker has its channel: the worker's state, seen only
/// through what logging needs (so that this file and the worker's state do not
/// import each other).
pub(super) struct Sink {
    /// Sends a whole frame down the channel; an error means the master is gone.
    pub send: Box<SendFrame>,
    /// The job the job thread runs now.
    pub current_job: Box<dyn Fn() -> Option<u64> + Send + Sync>,
}

/// From now on, records go to `sink`, at `level` and coarser.
pub(super) fn connect(sink: Sink, level: u8) {
    let _ = FORWARDING.sink.set(sink);
    let level = level.clamp(ALWAYS_SENT, 5);
    FORWARDING.level.store(level, Ordering::Relaxed);
    log::set_max_level(log_filter(level));
    // Callsites decided before the handshake are decided again.
    tracing::callsite::rebuild_interest_cache();
}

fn log_filter(level: u8) -> log::LevelFilter {
    match level {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        4 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

fn passes(level: u8, target: &str) -> bool {
    level <= FORWARDING.level.load(Ordering::Relaxed)
        && (level <= 2 || !TRANSPORT_TARGETS.iter().any(|t| target.starts_with(t)))
}

/// Sends `record` to the master, or writes it to stderr when there is no master to
/// send to.
fn deliver(mut record: LogRecord) {
    // During the thread's teardown there is no flag to read: stderr it is.
    if SENDING.try_with(Cell::get).unwrap_or(true) {
        return to_stderr(&record);
    }
    let Some(sink) = FORWARDING.sink.get() else {
        return to_stderr(&record);
    };
    bound_record(&mut record);
    let _ = SENDING.try_with(|s| s.set(true));
    let message = ToMaster::Log(record);
    let sent = (sink.send)(&control_frame(&message));
    let _ = SENDING.try_with(|s| s.set(false));
    if let (Err(_), ToMaster::Log(record)) = (sent, &message) {
        to_stderr(record);
    }
}

/// Keeps a record within [`MAX_RECORD_BYTES`]: the spans go first, then the fields
/// after the first (the message).
fn bound_record(record: &mut LogRecord) {
    let size = |r: &LogRecord| {
        r.spans.iter().map(String::len).sum::<usize>()
            + r.fields
                .iter()
                .map(|(n, v)| n.len() + value_len(v))
                .sum::<usize>()
    };
    while size(record) > MAX_RECORD_BYTES && !record.spans.is_empty() {
        record.spans.remove(0);
    }
    while size(record) > MAX_RECORD_BYTES && record.fields.len() > 1 {
        record.fields.pop();
    }
}

fn value_len(value: &LogValue) -> usize {
    match value {
        LogValue::Str(s) | LogValue::Shown(s) => s.len(),
        _ => 8,
    }
}

/// The last resort: one line on stderr, for warnings and errors only.
fn to_stderr(record: &LogRecord) {
    if record.level > ALWAYS_SENT {
        return;
    }
    let level = level_of_number(record.level).map_or("?", |l| l.as_str());
    let line = format!("{level} {}: {}\n", record.target, record.fields_text());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn current_job() -> Option<u64> {
    (FORWARDING.sink.get()?.current_job)()
}

fn entered_spans() -> Vec<String> {
    let entered = ENTERED.try_with(|e| e.borrow().clone()).unwrap_or_default();
    if entered.is_empty() {
        return Vec::new();
    }
    let spans = FORWARDING.spans.lock().unwrap_or_else(|p| p.into_inner());
    entered
        .iter()
        .filter_map(|id| spans.get(id).map(SpanEntry::text))
        .collect()
}

/// The `tracing` subscriber of a worker process.
struct Forwarder;

impl Subscriber for Forwarder {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        match self.enabled(metadata) {
            true => Interest::always(),
            false => Interest::never(),
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        passes(level_number(Some(*metadata.level())), metadata.target())
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(
            match level_of_number(FORWARDING.level.load(Ordering::Relaxed)) {
                Some(level) => LevelFilter::from_level(level),
                None => LevelFilter::OFF,
            },
        )
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields::default();
        span.record(&mut fields);
        let id = FORWARDING.next_span.fetch_add(1, Ordering::Relaxed);
        let mut entry = SpanEntry {
            name: span.metadata().name(),
            fields: Vec::new(),
            references: 1,
        };
        entry.record(fields.0);
        let mut spans = FORWARDING.spans.lock().unwrap_or_else(|p| p.into_inner());
        spans.insert(id, entry);
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        let mut spans = FORWARDING.spans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = spans.get_mut(&span.into_u64()) {
            entry.record(fields.0);
        }
    }

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        deliver(LogRecord {
            level: level_number(Some(*metadata.level())),
            target: metadata.target().to_string(),
            module_path: metadata.module_path().map(str::to_string),
            file: metadata.file().map(str::to_string),
            line: metadata.line(),
            fields: fields.0,
            spans: entered_spans(),
            job: current_job(),
        });
    }

    fn enter(&self, span: &Id) {
        let _ = ENTERED.try_with(|e| e.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        let id = span.into_u64();
        let _ = ENTERED.try_with(|e| {
            let mut entered = e.borrow_mut();
            if let Some(at) = entered.iter().rposition(|&s| s == id) {
                entered.remove(at);
            }
        });
    }

    fn clone_span(&self, span: &Id) -> Id {
        let mut spans = FORWARDING.spans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = spans.get_mut(&span.into_u64()) {
            entry.references += 1;
        }
        span.clone()
    }

    fn try_close(&self, span: Id) -> bool {
        let mut spans = FORWARDING.spans.lock().unwrap_or_else(|p| p.into_inner());
        let id = span.into_u64();
        let Some(entry) = spans.get_mut(&id) else {
            return false;
        };
        entry.references = entry.references.saturating_sub(1);
        let closed = entry.references == 0;
        if closed {
            spans.remove(&id);
        }
        closed
    }
}

fn append_fields(text: &mut String, fields: &[(String, LogValue)]) {
    if fields.is_empty() {
        return;
    }
    text.push('{');
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        let _ = write!(text, "{name}={value}");
    }
    text.push('}');
}

/// An event's or span's fields, in order, with their types.
#[derive(Default)]
struct Fields(Vec<(String, LogValue)>);

impl Fields {
    fn push(&mut self, field: &Field, value: LogValue) {
        self.0.push((field.name().to_string(), value));
    }
}

/// Cuts `text` to [`MAX_VALUE_BYTES`], on a character boundary.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_VALUE_BYTES {
        let mut cut = MAX_VALUE_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

impl Visit for Fields {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, LogValue::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, LogValue::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, LogValue::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, LogValue::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, LogValue::Str(bounded(value.to_string())));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, LogValue::Shown(bounded(value.to_string())));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, LogValue::Shown(bounded(format!("{value:?}"))));
    }
}

/// The `log` logger of a worker process: records travel like `tracing` events.
struct LogForwarder;

impl log::Log for LogForwarder {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        passes(metadata.level() as u8, metadata.target())
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        deliver(LogRecord {
            // `log::Level` counts the same way: error is 1, trace is 5.
            level: record.level() as u8,
            target: record.target().to_string(),
            module_path: record.module_path().map(str::to_string),
            file: record.file().map(str::to_string),
            line: record.line(),
            fields: vec![(
                "message".to_string(),
                LogValue::Shown(bounded(record.args().to_string())),
            )],
            spans: entered_spans(),
            job: current_job(),
        });
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_recorded_again_replaces_its_value() {
        let mut span = SpanEntry {
            name: "load",
            fields: vec![("file".into(), LogValue::Str("a".into()))],
            references: 1,
        };
        assert_eq!(span.text(), "load{file=\"a\"}");
        for rows in 0..1000 {
            span.record(vec![("rows".into(), LogValue::U64(rows))]);
        }
        assert_eq!(span.text(), "load{file=\"a\" rows=999}");
        span.fields.clear();
        assert_eq!(span.text(), "load");
    }

    #[test]
    fn a_record_is_kept_within_its_bound() {
        let big = LogValue::Shown("x".repeat(MAX_VALUE_BYTES));
        let mut record = LogRecord {
            level: 3,
            target: "t".into(),
            module_path: None,
            file: None,
            line: None,
            fields: (0..10).map(|i| (format!("f{i}"), big.clone())).collect(),
            spans: vec!["s".repeat(MAX_RECORD_BYTES)],
            job: None,
        };
        bound_record(&mut record);
        assert!(record.spans.is_empty());
        assert!(!record.fields.is_empty() && record.fields.len() < 10);
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let text = bounded("é".repeat(MAX_VALUE_BYTES));
        assert!(text.len() <= MAX_VALUE_BYTES + '…'.len_utf8());
        assert!(text.ends_with('…'));
    }

    #[test]
    fn log_levels_count_like_ours() {
        assert_eq!(
            log::Level::Error as u8,
            level_number(Some(tracing::Level::ERROR))
        );
        assert_eq!(
            log::Level::Trace as u8,
            level_number(Some(tracing::Level::TRACE))
        );
    }
}
