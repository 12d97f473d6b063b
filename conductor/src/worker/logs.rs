//! Logs from a worker process, sent to its master.
//!
//! A worker's stderr is the master's terminal at best (interleaved, without saying
//! which worker or job spoke) and nowhere at all on another machine. So a worker
//! installs this subscriber and a `log` logger first thing at boot: every `tracing`
//! event or `log` record that passes the master's level travels to the master as a
//! [`LogRecord`], with the job it happened in and the spans around it, and the master
//! replays it into its own subscriber (`master/worker_logs.rs`).
//!
//! Until the channel to the master is up, and once it fails, warnings and errors go to
//! stderr instead: a worker that cannot start must still say why.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

use super::shared::{WorkerShared, NO_JOB};
use crate::wire::{control_frame, level_number, level_of_number, LogRecord, LogValue, ToMaster};

/// What is sent before the master has said its level: warnings and errors.
const LEVEL_BEFORE_HANDSHAKE: u8 = 2;
/// A field value longer than this is cut: a log line must never fill a frame.
const MAX_VALUE_BYTES: usize = 16 << 10;
/// Targets of the libraries the worker itself talks through: their finer events are
/// not sent, or sending one would make more of them.
const TRANSPORT_TARGETS: &[&str] = &["async_nats", "rustls", "tokio", "mio"];

/// The worker's logging state: one per process.
struct Forwarding {
    /// The most verbose level sent ([`level_number`]).
    level: AtomicU8,
    /// Where records go once the worker has a channel.
    sink: OnceLock<Arc<WorkerShared>>,
    spans: Mutex<BTreeMap<u64, SpanEntry>>,
    next_span: AtomicU64,
}

struct SpanEntry {
    /// `name{field=value ...}`, as sent with each event inside the span.
    text: String,
    references: usize,
}

static FORWARDING: Forwarding = Forwarding {
    level: AtomicU8::new(LEVEL_BEFORE_HANDSHAKE),
    sink: OnceLock::new(),
    spans: Mutex::new(BTreeMap::new()),
    next_span: AtomicU64::new(1),
};

thread_local! {
    /// The spans this thread is in, innermost last.
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// Set while this thread sends a record: a record about the sending goes to stderr.
    static SENDING: Cell<bool> = const { Cell::new(false) };
}

/// Makes this process's `tracing` events and `log` records go to the master. Called
/// once, at boot, before any of the worker's threads exist.
pub(crate) fn install() {
    // Fails only if something set a subscriber before `main`: theirs stays.
    let _ = tracing::subscriber::set_global_default(Forwarder);
    if log::set_logger(&LogForwarder).is_ok() {
        log::set_max_level(log_filter(LEVEL_BEFORE_HANDSHAKE));
    }
}

/// From now on, records go down `shared`'s channel, at `level` and coarser.
pub(super) fn connect(shared: &Arc<WorkerShared>, level: u8) {
    let _ = FORWARDING.sink.set(shared.clone());
    FORWARDING.level.store(level.min(5), Ordering::Relaxed);
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
fn deliver(record: LogRecord) {
    if SENDING.with(Cell::get) {
        return to_stderr(&record);
    }
    let Some(shared) = FORWARDING.sink.get() else {
        return to_stderr(&record);
    };
    SENDING.with(|s| s.set(true));
    let message = ToMaster::Log(record);
    let sent = shared.try_send_frame(&control_frame(&message));
    SENDING.with(|s| s.set(false));
    if let (Err(_), ToMaster::Log(record)) = (sent, &message) {
        to_stderr(record);
    }
}

/// The last resort: one line on stderr, for warnings and errors only.
fn to_stderr(record: &LogRecord) {
    if record.level > LEVEL_BEFORE_HANDSHAKE {
        return;
    }
    let level = level_of_number(record.level).map_or("?", |l| l.as_str());
    let mut line = format!("{level} {}: ", record.target);
    for (name, value) in &record.fields {
        let _ = match (name.as_str(), value) {
            ("message", LogValue::Shown(text)) => write!(line, "{text} "),
            (_, value) => write!(line, "{name}={} ", shown(value)),
        };
    }
    line.pop();
    line.push('\n');
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn shown(value: &LogValue) -> String {
    match value {
        LogValue::I64(v) => v.to_string(),
        LogValue::U64(v) => v.to_string(),
        LogValue::F64(v) => v.to_string(),
        LogValue::Bool(v) => v.to_string(),
        LogValue::Str(v) => format!("{v:?}"),
        LogValue::Shown(v) => v.clone(),
    }
}

fn current_job() -> Option<u64> {
    let job = FORWARDING.sink.get()?.current_job.load(Ordering::Relaxed);
    (job != NO_JOB).then_some(job)
}

fn entered_spans() -> Vec<String> {
    let entered = ENTERED.with(|e| e.borrow().clone());
    if entered.is_empty() {
        return Vec::new();
    }
    let spans = FORWARDING.spans.lock().unwrap_or_else(|p| p.into_inner());
    entered
        .iter()
        .filter_map(|id| spans.get(id).map(|s| s.text.clone()))
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
        let mut text = span.metadata().name().to_string();
        append_fields(&mut text, &fields.0);
        let id = FORWARDING.next_span.fetch_add(1, Ordering::Relaxed);
        let entry = SpanEntry {
            text,
            references: 1,
        };
        let mut spans = FORWARDING.spans.lock().unwrap_or_else(|p| p.into_inner());
        spans.insert(id, entry);
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        let mut spans = FORWARDING.spans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = spans.get_mut(&span.into_u64()) {
            let text = std::mem::take(&mut entry.text);
            entry.text = with_more_fields(text, &fields.0);
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
        ENTERED.with(|e| e.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        let id = span.into_u64();
        ENTERED.with(|e| {
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

/// `name{a=1}` with `b=2` added: `name{a=1 b=2}`.
fn with_more_fields(mut text: String, fields: &[(String, LogValue)]) -> String {
    if fields.is_empty() {
        return text;
    }
    if text.ends_with('}') {
        text.pop();
        text.push(' ');
        let mut more = String::new();
        append_fields(&mut more, fields);
        text.push_str(&more[1..]);
    } else {
        append_fields(&mut text, fields);
    }
    text
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
        let _ = write!(text, "{name}={}", shown(value));
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
    fn span_text_grows_with_recorded_fields() {
        let text = with_more_fields(
            "load{file=\"a\"}".into(),
            &[("rows".into(), LogValue::U64(3))],
        );
        assert_eq!(text, "load{file=\"a\" rows=3}");
        let text = with_more_fields("load".into(), &[("rows".into(), LogValue::U64(3))]);
        assert_eq!(text, "load{rows=3}");
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
