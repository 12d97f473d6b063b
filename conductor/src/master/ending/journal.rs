//! The resumable-run journal: one line per finished job, so that running the same
//! program again with the same journal skips the jobs already done and hands back
//! their outputs.
//!
//! A line is `ok<TAB>key<TAB>output` or `failed<TAB>key<TAB>error`: the output is the
//! job's encoded output in base64 (left out when the run keeps keys only), the key and
//! the error escaped so they never hold a tab or a newline. Lines are gathered while
//! results are settled and written with one `write` per batch of results, before the
//! run loop does anything else, so a crash of the master loses at most the lines of
//! the batch it was settling; how often they reach the disk is [`JournalSync`]. A last
//! line without its newline (the process died while writing it) is dropped on open.
//! Failed jobs are recorded but not skipped: a rerun tries them again.
//!
//! The file is locked (`flock`) while a run has it open, so a second master given the
//! same journal refuses to start instead of running every job twice.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use bytes::Bytes;
use serde::Serialize;

use crate::settings::JournalSync;

/// Turns a job into the key that identifies it across runs.
pub(crate) type KeyFn<J> = Arc<dyn Fn(&J) -> String + Send + Sync>;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The journal as the run loop uses it.
pub(crate) struct Journal<J> {
    path: PathBuf,
    file: File,
    key: KeyFn<J>,
    /// Hashes of the keys of jobs already done, with where the file holds their
    /// output (the base64 column: offset and length) when it kept it. Outputs are
    /// read when a rerun reaches their job, so memory stays small however long the
    /// journal is.
    done: HashMap<u128, Option<(u64, usize)>>,
    /// Keys of jobs submitted this run and not yet settled, by job id.
    pending: HashMap<u64, String>,
    lines: Vec<u8>,
    skipped: u64,
    keep_outputs: bool,
    sync: JournalSync,
    /// Lines written but perhaps not on the disk yet, since when.
    unsynced_since: Option<Instant>,
}

impl<J> Journal<J> {
    /// Opens (or creates) the journal at `path`, locks it, and reads which jobs are
    /// done.
    pub fn open(
        path: &Path,
        key: KeyFn<J>,
        keep_outputs: bool,
        sync: JournalSync,
    ) -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        lock(&file)?;
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
        let mut done = HashMap::new();
        let mut at = 0;
        for line in text[..complete].split_inclusive(|&b| b == b'\n') {
            let start = at;
            at += line.len();
            let line = &line[..line.len() - 1];
            let mut fields = line.splitn(3, |&b| b == b'\t');
            if fields.next() != Some(b"ok") {
                continue;
            }
            let Some(key) = fields.next() else { continue };
            let output = fields.next().map(|column| {
                let offset = start + (line.len() - column.len());
                (offset as u64, column.len())
            });
            done.insert(hash(key), output);
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            key,
            done,
            pending: HashMap::new(),
            lines: Vec::new(),
            skipped: 0,
            keep_outputs,
            sync,
            unsynced_since: None,
        })
    }

    /// Whether `job` was done in an earlier run: `Some` with its encoded output if the
    /// journal kept it. If not done, remembers its key for when it settles as job
    /// `id` (the id the ledger is about to give it).
    pub fn admit(&mut self, job: &J, id: u64) -> Option<Option<Bytes>> {
        let key = escape(&(self.key)(job));
        if let Some(&output) = self.done.get(&hash(key.as_bytes())) {
            self.skipped += 1;
            // An output that cannot be read back counts as no output kept.
            return Some(output.and_then(|place| self.read_output(place)));
        }
        self.pending.insert(id, key);
        None
    }

    fn read_output(&self, (offset, len): (u64, usize)) -> Option<Bytes> {
        let mut text = vec![0; len];
        self.file.read_exact_at(&mut text, offset).ok()?;
        BASE64.decode(text).ok().map(Bytes::from)
    }

    /// A job passed over as done whose output can no longer be read (the program's
    /// output type changed): it runs again after all, as job `id`.
    pub fn readmit(&mut self, job: &J, id: u64) {
        self.skipped -= 1;
        self.pending.insert(id, escape(&(self.key)(job)));
    }

    /// Records that job `id` completed with `output` (encoded); written at the next
    /// [`Journal::flush`].
    pub fn record_completed(&mut self, id: u64, output: &[u8]) {
        let Some(key) = self.pending.remove(&id) else {
            return;
        };
        self.lines.extend_from_slice(b"ok\t");
        self.lines.extend_from_slice(key.as_bytes());
        if self.keep_outputs {
            self.lines.push(b'\t');
            let start = self.lines.len();
            let len = base64::encoded_len(output.len(), true).unwrap_or(0);
            self.lines.resize(start + len, 0);
            let written = BASE64.encode_slice(output, &mut self.lines[start..]);
            self.lines.truncate(start + written.unwrap_or(0));
        }
        self.lines.push(b'\n');
        // The same job twice in one run is passed over the second time, without
        // its output.
        self.done.insert(hash(key.as_bytes()), None);
    }

    /// Records that job `id` failed for good, with its error.
    pub fn record_failed(&mut self, id: u64, error: &str) {
        let Some(key) = self.pending.remove(&id) else {
            return;
        };
        self.lines.extend_from_slice(b"failed\t");
        self.lines.extend_from_slice(key.as_bytes());
        if self.keep_outputs {
            self.lines.push(b'\t');
            self.lines.extend_from_slice(escape(error).as_bytes());
        }
        self.lines.push(b'\n');
    }

    /// Writes the recorded lines in one go, and has them reach the disk as often as
    /// the sync policy says.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.lines.is_empty() {
            let result = self.file.write_all(&self.lines);
            self.lines.clear();
            result?;
            self.unsynced_since.get_or_insert_with(Instant::now);
        }
        let due = match (self.sync, self.unsynced_since) {
            (_, None) | (JournalSync::Never, _) => false,
            (JournalSync::Always, Some(_)) => true,
            (JournalSync::Every(period), Some(since)) => since.elapsed() >= period,
        };
        if due {
            self.sync_now()?;
        }
        Ok(())
    }

    /// Writes what is left and has it reach the disk (unless the policy is `Never`):
    /// the end of a run.
    pub fn close(&mut self) -> io::Result<()> {
        self.flush()?;
        if self.sync != JournalSync::Never && self.unsynced_since.is_some() {
            self.sync_now()?;
        }
        Ok(())
    }

    fn sync_now(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.unsynced_since = None;
        Ok(())
    }

    /// Jobs skipped because an earlier run did them.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the journal for this run alone; the lock goes with the file.
fn lock(file: &File) -> io::Result<()> {
    // SAFETY: `flock` on a descriptor this function borrows, with constant flags.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.kind() == io::ErrorKind::WouldBlock {
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "another run is using this journal (its master holds the lock); wait for it to \
             end, or give this run a journal of its own",
        ));
    }
    Err(error)
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

    fn open(path: &Path) -> Journal<String> {
        Journal::open(path, key_of(), true, JournalSync::Always).unwrap()
    }

    #[test]
    fn a_rerun_skips_what_was_done_with_its_output_and_retries_failures() {
        let path = temp_path("rerun");
        let mut journal = open(&path);
        for (id, job) in ["a", "b\tc", "d\ne"].iter().enumerate() {
            assert!(journal.admit(&job.to_string(), id as u64).is_none());
        }
        journal.record_completed(0, b"out");
        journal.record_completed(1, b"");
        journal.record_failed(2, "no\tway");
        journal.close().unwrap();
        drop(journal);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "ok\ta\tb3V0\nok\tb\\tc\t\nfailed\td\\ne\tno\\tway\n");

        let mut again = open(&path);
        let out = again.admit(&"a".to_string(), 0).unwrap();
        assert_eq!(out.as_deref(), Some(&b"out"[..]));
        assert_eq!(
            again.admit(&"b\tc".to_string(), 0).unwrap().as_deref(),
            Some(&b""[..])
        );
        assert!(again.admit(&"d\ne".to_string(), 0).is_none());
        assert_eq!(again.skipped(), 2);
    }

    #[test]
    fn keys_only_and_older_journals_pass_over_without_an_output() {
        let path = temp_path("keys");
        std::fs::write(&path, "ok\told\n").unwrap();
        let mut journal = Journal::open(&path, key_of(), false, JournalSync::Never).unwrap();
        assert_eq!(journal.admit(&"old".to_string(), 0), Some(None));
        assert!(journal.admit(&"new".to_string(), 1).is_none());
        journal.record_completed(1, b"output");
        journal.close().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "ok\told\nok\tnew\n"
        );
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_not_glued_to() {
        let path = temp_path("torn");
        std::fs::write(&path, "ok\tone\nok\ttw").unwrap();
        let mut journal = open(&path);
        assert!(journal.admit(&"one".to_string(), 0).is_some());
        assert!(journal.admit(&"tw".to_string(), 1).is_none());
        journal.record_completed(1, b"x");
        journal.flush().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "ok\tone\nok\ttw\teA==\n"
        );
    }

    #[test]
    fn a_second_run_on_the_same_journal_is_refused_until_the_first_ends() {
        let path = temp_path("locked");
        let first = open(&path);
        let refused = Journal::open(&path, key_of(), true, JournalSync::Never)
            .err()
            .expect("locked");
        assert_eq!(refused.kind(), io::ErrorKind::WouldBlock);
        assert!(refused
            .to_string()
            .contains("another run is using this journal"));
        drop(first);
        open(&path);
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
        assert_eq!(a, "6f938992b4659719cc45c0836e5136c2");
    }
}
