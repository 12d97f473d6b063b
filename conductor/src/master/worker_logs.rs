//! Logs from workers, replayed into the master's subscriber.
//!
//! A worker sends each `tracing` event or `log` record as a [`LogRecord`]
//! (`worker/logs.rs`). Here it becomes an event of the master's own subscriber, as if
//! job code had run in the master: with its target, level, file, line and fields, so
//! the user's filters and formatters treat it like any other event. It happens inside
//! one span per job, `job{worker job attempt}` (`worker{worker}` outside jobs); where
//! the subscriber takes no such span, the event carries those fields itself.
//!
//! `tracing` wants every event's metadata to live forever, and a worker's events come
//! from its own binary's call sites: each distinct one is made once, kept, and
//! registered like a macro's. Their number and size are bounded, so a worker that
//! sends endless new ones cannot grow the master without end.
//!
//! A master without any subscriber still shows its workers' warnings and errors, on
//! stderr above the bar, as their `eprintln!` once did.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use tracing::field::{display, DisplayValue, Value};
use tracing::{Level, Metadata, Span};
use tracing_core::callsite::{Callsite, Identifier};
use tracing_core::field::FieldSet;
use tracing_core::metadata::Kind;
use tracing_core::subscriber::Interest;

use crate::wire::{level_of_number, LogRecord, LogValue};

/// How many distinct worker call sites the master keeps; past that, events are
/// replayed through one generic call site per level, their fields in the message.
const MAX_CALLSITES: usize = 4096;
/// The fields every replayed event may carry besides its own.
const EXTRA_FIELDS: [&str; 4] = ["worker", "job", "attempt", "spans"];
/// The target of replayed events whose own call site could not be kept.
const GENERIC_TARGET: &str = "conductor::worker";
/// A call site's target, file or module longer than this is not kept as such.
const MAX_NAME_BYTES: usize = 256;
/// A call site with more fields than this is not kept as such.
const MAX_FIELDS: usize = 32;

/// The span of what each worker is doing, for the events it sends.
#[derive(Default)]
pub(in crate::master) struct WorkerLogs {
    current: HashMap<u64, Current>,
}

struct Current {
    job: Option<u64>,
    attempt: Option<u32>,
    span: Span,
}

impl WorkerLogs {
    /// Replays `record` from `worker`; `attempt_of` says which attempt of a job this is.
    pub fn replay(
        &mut self,
        worker: u64,
        record: LogRecord,
        attempt_of: impl FnOnce(u64) -> Option<u32>,
    ) {
        let Some(level) = level_of_number(record.level) else {
            return;
        };
        if no_subscriber() {
            // A program that logs with the `log` crate (env_logger, say) hears its
            // workers there; one with no logger at all, on stderr.
            return match to_log_crate(worker, level, &record) {
                true => {}
                false => show_on_stderr(worker, level, &record),
            };
        }
        // A job run again on the same worker is a new attempt: a span of its own.
        let attempt = record.job.and_then(attempt_of);
        let current = match self.current.get(&worker) {
            Some(current) if current.job == record.job && current.attempt == attempt => current,
            _ => {
                let span = match record.job {
                    Some(job) => tracing::info_span!(
                        target: "conductor",
                        "job",
                        worker,
                        job,
                        attempt
                    ),
                    None => tracing::info_span!(target: "conductor", "worker", worker),
                };
                let current = Current {
                    job: record.job,
                    attempt,
                    span,
                };
                self.current.entry(worker).insert_entry(current).into_mut()
            }
        };
        replay_event(level, record, worker, current);
    }

    /// `worker` is gone: its span closes.
    pub fn forget(&mut self, worker: u64) {
        self.current.remove(&worker);
    }
}

/// Whether the program has installed no `tracing` subscriber (here, or for all).
pub(in crate::master) fn no_subscriber() -> bool {
    tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>())
}

/// Hands `record` to the program's `log` logger, if it has one that takes its level;
/// says whether it did.
fn to_log_crate(worker: u64, level: Level, record: &LogRecord) -> bool {
    let level = match level {
        Level::ERROR => log::Level::Error,
        Level::WARN => log::Level::Warn,
        Level::INFO => log::Level::Info,
        Level::DEBUG => log::Level::Debug,
        Level::TRACE => log::Level::Trace,
    };
    if level > log::max_level() {
        return log::max_level() != log::LevelFilter::Off;
    }
    let message = record.fields_text();
    let job = record
        .job
        .map(|job| format!(" job={job}"))
        .unwrap_or_default();
    log::logger().log(
        &log::Record::builder()
            .level(level)
            .target(&record.target)
            .module_path(record.module_path.as_deref())
            .file(record.file.as_deref())
            .line(record.line)
            .args(format_args!("{message} worker={worker}{job}"))
            .build(),
    );
    true
}

/// A warning or error of a worker, for a program without a subscriber.
fn show_on_stderr(worker: u64, level: Level, record: &LogRecord) {
    if level > Level::WARN {
        return;
    }
    let line = match generic(record.clone()).fields.first() {
        Some((_, LogValue::Shown(text))) => format!("{level} worker {worker}: {text}"),
        _ => return,
    };
    crate::progress::above_bars(|| {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{line}");
    });
}

/// Hands `record` to the subscriber as an event of its own call site.
fn replay_event(level: Level, record: LogRecord, worker: u64, current: &Current) {
    let (record, callsite) = match callsite(level, &record) {
        Some(callsite) => (record, callsite),
        None => {
            let record = generic(record);
            match callsite(level, &record) {
                Some(callsite) => (record, callsite),
                None => return,
            }
        }
    };
    let metadata = callsite.metadata();
    if callsite.interest.load(Ordering::Relaxed) == NEVER
        || !tracing::dispatcher::get_default(|d| d.enabled(metadata))
    {
        return;
    }
    // The span says who and which job, where the subscriber keeps it.
    let in_span = !current.span.is_disabled();
    let spans = (!record.spans.is_empty()).then(|| record.spans.join(":"));
    let fields = metadata.fields();
    let values: Vec<Replayed> = fields
        .iter()
        .map(|field| match field.name() {
            "worker" if !in_span => Replayed::U64(worker),
            "job" if !in_span => current.job.map_or(Replayed::Absent, Replayed::U64),
            "attempt" if !in_span => current
                .attempt
                .map_or(Replayed::Absent, |a| Replayed::U64(a as u64)),
            "spans" => spans.clone().map_or(Replayed::Absent, Replayed::Str),
            name => record
                .fields
                .iter()
                .find(|(n, _)| n == name)
                .map_or(Replayed::Absent, |(_, v)| Replayed::from(v)),
        })
        .collect();
    let values: Vec<Option<&dyn Value>> = values.iter().map(Replayed::as_value).collect();
    let values = fields.value_set_all(&values);
    tracing::Event::child_of(current.span.id(), metadata, &values);
}

/// A field's value, in a form `tracing` can record.
enum Replayed {
    Absent,
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Str(String),
    Shown(DisplayValue<String>),
}

impl From<&LogValue> for Replayed {
    fn from(value: &LogValue) -> Self {
        match value {
            LogValue::I64(v) => Replayed::I64(*v),
            LogValue::U64(v) => Replayed::U64(*v),
            LogValue::F64(v) => Replayed::F64(*v),
            LogValue::Bool(v) => Replayed::Bool(*v),
            LogValue::Str(v) => Replayed::Str(v.clone()),
            LogValue::Shown(v) => Replayed::Shown(display(v.clone())),
        }
    }
}

impl Replayed {
    fn as_value(&self) -> Option<&dyn Value> {
        Some(match self {
            Replayed::Absent => return None,
            Replayed::I64(v) => v,
            Replayed::U64(v) => v,
            Replayed::F64(v) => v,
            Replayed::Bool(v) => v,
            Replayed::Str(v) => v,
            Replayed::Shown(v) => v,
        })
    }
}

/// `record` with its fields written into its message, for the generic call site.
fn generic(record: LogRecord) -> LogRecord {
    let message = format!("{}: {}", record.target, record.fields_text());
    LogRecord {
        level: record.level,
        target: GENERIC_TARGET.to_string(),
        module_path: None,
        file: None,
        line: None,
        fields: vec![("message".to_string(), LogValue::Shown(message))],
        spans: record.spans,
        job: record.job,
    }
}

const NEVER: u8 = 0;
const SOMETIMES: u8 = 1;
const ALWAYS: u8 = 2;

/// A worker's call site, made at run time and kept for the life of the program.
struct WorkerCallsite {
    metadata: OnceLock<Metadata<'static>>,
    interest: AtomicU8,
}

impl Callsite for WorkerCallsite {
    fn set_interest(&self, interest: Interest) {
        let interest = match () {
            _ if interest.is_never() => NEVER,
            _ if interest.is_always() => ALWAYS,
            _ => SOMETIMES,
        };
        self.interest.store(interest, Ordering::Relaxed);
    }

    fn metadata(&self) -> &Metadata<'_> {
        self.metadata
            .get()
            .expect("a worker call site is registered once it has metadata")
    }
}

/// What tells two worker call sites apart.
#[derive(PartialEq, Eq, Hash)]
struct CallsiteKey {
    level: u8,
    target: String,
    module_path: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    fields: Vec<String>,
}

static CALLSITES: Mutex<Option<HashMap<CallsiteKey, &'static WorkerCallsite>>> = Mutex::new(None);

/// The call site of `record`, made on first sight; `None` once [`MAX_CALLSITES`] are
/// kept and this one is new (the generic ones are always made).
fn callsite(level: Level, record: &LogRecord) -> Option<&'static WorkerCallsite> {
    let key = CallsiteKey {
        level: record.level,
        target: record.target.clone(),
        module_path: record.module_path.clone(),
        file: record.file.clone(),
        line: record.line,
        fields: record.fields.iter().map(|(name, _)| name.clone()).collect(),
    };
    let mut callsites = CALLSITES.lock().unwrap_or_else(|p| p.into_inner());
    let callsites = callsites.get_or_insert_with(HashMap::new);
    if let Some(callsite) = callsites.get(&key) {
        return Some(callsite);
    }
    let generic = key.target == GENERIC_TARGET && key.file.is_none() && key.fields == ["message"];
    let oversized = key.fields.len() > MAX_FIELDS
        || [
            Some(&key.target),
            key.file.as_ref(),
            key.module_path.as_ref(),
        ]
        .into_iter()
        .flatten()
        .chain(&key.fields)
        .any(|name| name.len() > MAX_NAME_BYTES);
    if !generic && (oversized || callsites.len() >= MAX_CALLSITES) {
        return None;
    }
    let callsite = make_callsite(level, &key);
    callsites.insert(key, callsite);
    Some(callsite)
}

/// Makes, keeps and registers a call site for `key`.
fn make_callsite(level: Level, key: &CallsiteKey) -> &'static WorkerCallsite {
    let keep = |text: &str| -> &'static str { Box::leak(text.to_string().into_boxed_str()) };
    let mut names: Vec<&'static str> = Vec::with_capacity(key.fields.len() + EXTRA_FIELDS.len());
    for name in &key.fields {
        if !names.contains(&name.as_str()) {
            names.push(keep(name));
        }
    }
    for extra in EXTRA_FIELDS {
        if !names.contains(&extra) {
            names.push(extra);
        }
    }
    let names: &'static [&'static str] = Box::leak(names.into_boxed_slice());
    let callsite: &'static WorkerCallsite = Box::leak(Box::new(WorkerCallsite {
        metadata: OnceLock::new(),
        interest: AtomicU8::new(SOMETIMES),
    }));
    let name = match (&key.file, key.line) {
        (Some(file), Some(line)) => keep(&format!("event {file}:{line}")),
        _ => "event",
    };
    let metadata = Metadata::new(
        name,
        keep(&key.target),
        level,
        key.file.as_deref().map(keep),
        key.line,
        key.module_path.as_deref().map(keep),
        FieldSet::new(names, Identifier(callsite)),
        Kind::EVENT,
    );
    let _ = callsite.metadata.set(metadata);
    tracing_core::callsite::register(callsite);
    callsite
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(target: &str, line: u32) -> LogRecord {
        LogRecord {
            level: 3,
            target: target.to_string(),
            module_path: None,
            file: Some("src/main.rs".into()),
            line: Some(line),
            fields: vec![
                ("message".into(), LogValue::Shown("hello".into())),
                ("rows".into(), LogValue::U64(3)),
            ],
            spans: vec![],
            job: Some(7),
        }
    }

    #[test]
    fn one_call_site_per_place_in_the_worker() {
        let a = callsite(Level::INFO, &record("app::a", 1)).unwrap();
        let again = callsite(Level::INFO, &record("app::a", 1)).unwrap();
        let other = callsite(Level::INFO, &record("app::a", 2)).unwrap();
        assert!(std::ptr::eq(a, again));
        assert!(!std::ptr::eq(a, other));
        let names: Vec<_> = a.metadata().fields().iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            ["message", "rows", "worker", "job", "attempt", "spans"]
        );
        assert_eq!(a.metadata().target(), "app::a");
        assert_eq!(a.metadata().line(), Some(1));
    }

    #[test]
    fn generic_records_keep_every_field_in_the_message() {
        let record = generic(record("app::b", 3));
        assert_eq!(record.target, GENERIC_TARGET);
        assert_eq!(
            record.fields,
            vec![(
                "message".to_string(),
                LogValue::Shown("app::b: hello rows=3".into())
            )]
        );
    }
}
