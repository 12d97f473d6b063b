//! The resumable-run journal: one line per finished job, so that running the same
//! program again with the same journal skips the jobs already done.
//!
//! A line is `ok<TAB>key` or `failed<TAB>key`, the key escaped so it never holds a tab
//! or a newline. Lines are gathered while results are settled and written with one
//! `write` per batch of results, before the run loop does anything else, so a crash
//! of the master loses at most the lines of the batch it was settling. A last line
//! without its newline (the process died while writing it) is dropped on open.
//! Failed jobs are recorded but not skipped: a rerun tries them again.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

/// Turns a job into the key that identifies it across runs.
pub(crate) type KeyFn<J> = Arc<dyn Fn(&J) -> String + Send + Sync>;

/// The journal as the run loop uses it.
pub(crate) struct Journal<J> {
    path: PathBuf,
    file: File,
    key: KeyFn<J>,
    /// Hashes of the keys of jobs already done.
    done: HashSet<u128>,
    /// Keys of jobs submitted this run and not yet settled, by job id.
    pending: HashMap<u64, String>,
    lines: Vec<u8>,
    skipped: u64,
}

impl<J> Journal<J> {
    /// Opens (or creates) the journal at `path` and reads which jobs are done.
    pub fn open(path: &Path, key: KeyFn<J>) -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)?;
        let complete = match text.iter().rposition(|&b| b == b'\n') {
            Some(end) => end + 1,
            None => 0,
        };
        if complete < text.len() {
            // The last line was cut short by a crash; appending after it would glue
            // the next line onto it.
            file.set_len(complete as u64)?;
        }
        let mut done = HashSet::new();
        for line in text[..complete].split(|&b| b == b'\n') {
            if let Some(key) = line.strip_prefix(b"ok\t") {
                done.insert(hash(key));
            }
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            key,
            done,
            pending: HashMap::new(),
            lines: Vec::new(),
            skipped: 0,
        })
    }

    /// Whether `job` was done in an earlier run; if not, remembers its key for when
    /// it settles as job `id` (the id the ledger is about to give it).
    pub fn admit(&mut self, job: &J, id: u64) -> bool {
        let key = escape(&(self.key)(job));
        if self.done.contains(&hash(key.as_bytes())) {
            self.skipped += 1;
            return false;
        }
        self.pending.insert(id, key);
        true
    }

    /// Records that job `id` finished; written at the next [`Journal::flush`].
    pub fn record(&mut self, id: u64, ok: bool) {
        let Some(key) = self.pending.remove(&id) else {
            return;
        };
        self.lines
            .extend_from_slice(if ok { b"ok\t" } else { b"failed\t" });
        self.lines.extend_from_slice(key.as_bytes());
        self.lines.push(b'\n');
        if ok {
            self.done.insert(hash(key.as_bytes()));
        }
    }

    /// Writes the recorded lines in one go.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.lines.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all(&self.lines);
        self.lines.clear();
        result
    }

    /// Jobs skipped because an earlier run did them.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The default key: a stable 128-bit hash of the job's serialized bytes, in hex.
pub(crate) fn default_key<J: Serialize>() -> KeyFn<J> {
    Arc::new(|job: &J| match crate::wire::value::to_vec(job) {
        Ok(bytes) => format!("{:032x}", hash(&bytes)),
        // Such a job cannot be sent either; it fails at dispatch with the reason.
        Err(_) => String::from("unencodable"),
    })
}

/// FNV-1a, 128 bits: stable across Rust versions and platforms, unlike std's hashers.
fn hash(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u128::from(b)).wrapping_mul(PRIME))
}

/// Keeps a key on one line and free of the field separator.
fn escape(key: &str) -> String {
    if !key.contains(['\\', '\t', '\n', '\r']) {
        return key.to_string();
    }
    let mut escaped = String::with_capacity(key.len() + 8);
    for c in key.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\t' => escaped.push_str("\\t"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of() -> KeyFn<String> {
        Arc::new(|job: &String| job.clone())
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("conductor-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn a_rerun_skips_what_was_done_and_retries_failures() {
        let path = temp_path("rerun");
        let mut journal = Journal::open(&path, key_of()).unwrap();
        for (id, job) in ["a", "b\tc", "d\ne"].iter().enumerate() {
            assert!(journal.admit(&job.to_string(), id as u64));
        }
        journal.record(0, true);
        journal.record(1, true);
        journal.record(2, false);
        journal.flush().unwrap();
        drop(journal);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "ok\ta\nok\tb\\tc\nfailed\td\\ne\n");

        let mut again = Journal::open(&path, key_of()).unwrap();
        assert!(!again.admit(&"a".to_string(), 0));
        assert!(!again.admit(&"b\tc".to_string(), 0));
        assert!(again.admit(&"d\ne".to_string(), 0));
        assert_eq!(again.skipped(), 2);
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_not_glued_to() {
        let path = temp_path("torn");
        std::fs::write(&path, "ok\tone\nok\ttw").unwrap();
        let mut journal = Journal::open(&path, key_of()).unwrap();
        assert!(!journal.admit(&"one".to_string(), 0));
        assert!(journal.admit(&"tw".to_string(), 1));
        journal.record(1, true);
        journal.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "ok\tone\nok\ttw\n");
    }

    #[test]
    fn the_default_key_is_stable() {
        let key = default_key::<(u32, String)>();
        let a = key(&(7, "seven".to_string()));
        assert_eq!(a, key(&(7, "seven".to_string())));
        assert_ne!(a, key(&(7, "Seven".to_string())));
        assert_eq!(a.len(), 32);
        // Pinned, so a change of hash or encoding that would break old journals shows.
        assert_eq!(hash(b"conductor"), 0xfff0918ffc062683db031d1beefbfd96);
    }
}
