//! Sealed messages: only the run's own processes can make, read or replay them.
//!
//! Anyone who can reach the NATS server can publish on a run's subjects and read its
//! streams. So every message of a run is sealed with the run's key: encrypted and
//! authenticated with ChaCha20-Poly1305, the key derived (HKDF-SHA256) from the run's
//! secret and name. A message sealed for one purpose and context (a job of id 7, a
//! frame for worker 3 of master M) does not open as another: the purpose, the context
//! and the run are authenticated with it. Control frames carry a sequence number that
//! each receiver accepts once ([`ReplayWindow`]), so a recorded abort cannot be played
//! again; results and jobs need none, since the master settles each job once.
//!
//! A message that does not open is dropped, counted and logged once per sender
//! ([`Rejections`]); it never reaches the run.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// The first byte of every sealed message: the sealing's version.
const VERSION: u8 = 1;
/// Bytes of a run secret.
const SECRET_BYTES: usize = 32;
/// How far behind the newest sequence number a late control frame is still taken.
const REPLAY_WINDOW: u64 = 4096;

/// What a sealed message is for: a message sealed for one purpose never opens as
/// another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Job = 1,
    Results = 2,
    ToWorker = 3,
    ToMaster = 4,
    Join = 5,
    JoinReply = 6,
    OwnerQuestion = 7,
    OwnerAnswer = 8,
    Lookup = 9,
}

/// A run's secret: 32 random bytes, written as 64 hex digits.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RunSecret([u8; SECRET_BYTES]);

impl std::fmt::Debug for RunSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunSecret(..)")
    }
}

impl RunSecret {
    /// A new secret from the system's randomness.
    pub fn generate() -> Result<RunSecret, String> {
        let mut bytes = [0u8; SECRET_BYTES];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| "the system gave no randomness for the run's secret".to_string())?;
        Ok(RunSecret(bytes))
    }

    /// Reads a secret as 64 hex digits; the error never repeats what was given.
    pub fn parse(text: &str) -> Result<RunSecret, String> {
        let text = text.trim();
        let invalid = || {
            format!(
                "a run secret is {} hex digits (the master prints one it makes; \
                 the one given has {} characters)",
                SECRET_BYTES * 2,
                text.len()
            )
        };
        if text.len() != SECRET_BYTES * 2 {
            return Err(invalid());
        }
        let mut bytes = [0u8; SECRET_BYTES];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2).ok_or_else(invalid)?, 16)
                .map_err(|_| invalid())?;
        }
        Ok(RunSecret(bytes))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The key of one run, derived from its secret and its name.
pub(crate) struct RunKey {
    key: LessSafeKey,
    run: String,
    /// Tells whether a stream was made with the same secret, without showing it.
    check: String,
    random: SystemRandom,
}

impl RunKey {
    pub fn new(secret: &RunSecret, run: &str) -> RunKey {
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"conductor run key v1");
        let prk = salt.extract(&secret.0);
        let mut key = [0u8; 32];
        let mut check = [0u8; 32];
        let info = [run.as_bytes()];
        // Expanding 32 bytes of SHA-256 output cannot fail.
        prk.expand(&info, Len32)
            .and_then(|okm| okm.fill(&mut key))
            .expect("HKDF gives 32 bytes");
        let check_info = [run.as_bytes(), b"/check"];
        prk.expand(&check_info, Len32)
            .and_then(|okm| okm.fill(&mut check))
            .expect("HKDF gives 32 bytes");
        let key = UnboundKey::new(&CHACHA20_POLY1305, &key).expect("a 32-byte key");
        RunKey {
            key: LessSafeKey::new(key),
            run: run.to_string(),
            check: check[..8].iter().map(|b| format!("{b:02x}")).collect(),
            random: SystemRandom::new(),
        }
    }

    /// A short value that two keys share only if they come from the same secret:
    /// kept with the run's streams, so that a master given another secret says so.
    pub fn check(&self) -> &str {
        &self.check
    }

    fn aad(&self, purpose: Purpose, context: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(16 + self.run.len() + context.len());
        aad.extend_from_slice(b"conductor/1/");
        aad.extend_from_slice(self.run.as_bytes());
        aad.push(0);
        aad.push(purpose as u8);
        aad.extend_from_slice(context.as_bytes());
        aad
    }

    /// Seals `plaintext` for `purpose` in `context`.
    pub fn seal(&self, purpose: Purpose, context: &str, plaintext: &[u8]) -> Bytes {
        let mut nonce = [0u8; NONCE_LEN];
        // The system's randomness does not fail once it has worked (a secret exists).
        self.random
            .fill(&mut nonce)
            .expect("randomness for a nonce");
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + 16);
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(purpose, context)),
                &mut sealed[1 + NONCE_LEN..],
            )
            .expect("a message within ChaCha20-Poly1305's limits");
        sealed.extend_from_slice(tag.as_ref());
        Bytes::from(sealed)
    }

    /// Opens a message sealed for `purpose` in `context`; `None` if it was not sealed
    /// with this run's key for exactly that.
    pub fn open(&self, purpose: Purpose, context: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let (&version, rest) = sealed.split_first()?;
        if version != VERSION || rest.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = ciphertext.to_vec();
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(self.aad(purpose, context)), &mut buffer)
            .ok()?;
        let len = plaintext.len();
        buffer.truncate(len);
        Some(buffer)
    }

    /// Seals a control frame with the sender's next sequence number.
    pub fn seal_numbered(
        &self,
        purpose: Purpose,
        context: &str,
        sequence: u64,
        body: &[u8],
    ) -> Bytes {
        let mut plaintext = Vec::with_capacity(8 + body.len());
        plaintext.extend_from_slice(&sequence.to_le_bytes());
        plaintext.extend_from_slice(body);
        self.seal(purpose, context, &plaintext)
    }

    /// Opens a control frame: its sequence number and body.
    pub fn open_numbered(
        &self,
        purpose: Purpose,
        context: &str,
        sealed: &[u8],
    ) -> Option<(u64, Vec<u8>)> {
        let mut plaintext = self.open(purpose, context, sealed)?;
        let head: [u8; 8] = plaintext.get(..8)?.try_into().ok()?;
        plaintext.drain(..8);
        Some((u64::from_le_bytes(head), plaintext))
    }
}

struct Len32;

impl ring::hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// What one process of a run seals and opens with: the run's key, its own sequence
/// numbers, and the count of what it rejected.
pub(crate) struct Sealer {
    pub key: RunKey,
    pub sequence: Sequence,
    pub rejections: Rejections,
}

impl Sealer {
    pub fn new(key: RunKey) -> Sealer {
        Sealer {
            key,
            sequence: Sequence::default(),
            rejections: Rejections::default(),
        }
    }

    /// Seals a control frame with this process's next sequence number.
    pub fn seal_frame(&self, purpose: Purpose, context: &str, body: &[u8]) -> Bytes {
        self.key
            .seal_numbered(purpose, context, self.sequence.next(), body)
    }
}

/// The context of control frames between master `master_id` and its worker
/// `worker` (a number, or `all` for every worker of that master).
pub(crate) fn frame_context(master_id: &str, worker: impl std::fmt::Display) -> String {
    format!("{master_id}/{worker}")
}

/// A sender's sequence numbers, for its numbered control frames.
#[derive(Default)]
pub(crate) struct Sequence(AtomicU64);

impl Sequence {
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The last number given: a receiver that starts now takes only later ones.
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The sequence numbers a receiver has taken from one sender: each is taken once,
/// in any order within [`REPLAY_WINDOW`] of the newest.
#[derive(Debug, Default)]
pub(crate) struct ReplayWindow {
    /// Nothing at or below this is taken.
    floor: u64,
    seen: BTreeSet<u64>,
}

impl ReplayWindow {
    /// A window that takes only numbers above `floor`.
    pub fn above(floor: u64) -> Self {
        ReplayWindow {
            floor,
            seen: BTreeSet::new(),
        }
    }

    /// Whether `sequence` is new; if so, it is taken.
    pub fn take(&mut self, sequence: u64) -> bool {
        if sequence <= self.floor || !self.seen.insert(sequence) {
            return false;
        }
        let newest = self.seen.last().copied().unwrap_or(0);
        let floor = newest.saturating_sub(REPLAY_WINDOW);
        if floor > self.floor {
            self.floor = floor;
            self.seen = self.seen.split_off(&(floor + 1));
        }
        true
    }
}

/// Messages that did not open: counted, and logged once per sender.
#[derive(Default)]
pub(crate) struct Rejections {
    count: AtomicU64,
    senders: Mutex<HashSet<String>>,
}

impl Rejections {
    /// Notes a rejected message from `sender` (as far as it can be told) on `subject`;
    /// says whether it was logged (the first from that sender).
    pub fn note(&self, sender: &str, subject: &str, why: &str) -> bool {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: a forger inventing senders fills this once, then is only counted.
        let first = senders.len() < 1024 && senders.insert(sender.to_string());
        if first {
            tracing::warn!(
                sender,
                subject,
                "a message that does not carry this run's seal was dropped ({why}); \
                 further ones from this sender are only counted"
            );
        }
        first
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(run: &str) -> RunKey {
        RunKey::new(&RunSecret::parse(&"ab".repeat(32)).unwrap(), run)
    }

    #[test]
    fn a_sealed_message_opens_only_as_what_it_was_sealed_for() {
        let k = key("r");
        let sealed = k.seal(Purpose::Job, "7", b"payload");
        assert!(!sealed.windows(7).any(|w| w == b"payload"), "encrypted");
        assert_eq!(
            k.open(Purpose::Job, "7", &sealed).as_deref(),
            Some(&b"payload"[..])
        );
        assert_eq!(k.open(Purpose::Job, "8", &sealed), None, "another context");
        assert_eq!(
            k.open(Purpose::Results, "7", &sealed),
            None,
            "another purpose"
        );
        assert_eq!(
            key("other").open(Purpose::Job, "7", &sealed),
            None,
            "another run"
        );
        let other = RunKey::new(&RunSecret::generate().unwrap(), "r");
        assert_eq!(
            other.open(Purpose::Job, "7", &sealed),
            None,
            "another secret"
        );
        let mut flipped = sealed.to_vec();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(k.open(Purpose::Job, "7", &flipped), None, "tampered");
        for short in [&b""[..], &[1], &sealed[..20]] {
            assert_eq!(k.open(Purpose::Job, "7", short), None);
        }
    }

    #[test]
    fn numbered_frames_carry_their_number() {
        let k = key("r");
        let sealed = k.seal_numbered(Purpose::ToMaster, "m/1", 42, b"frame");
        assert_eq!(
            k.open_numbered(Purpose::ToMaster, "m/1", &sealed),
            Some((42, b"frame".to_vec()))
        );
    }

    #[test]
    fn each_number_is_taken_once_and_old_ones_never() {
        let mut window = ReplayWindow::above(10);
        assert!(!window.take(10));
        assert!(window.take(12));
        assert!(window.take(11), "late but new");
        assert!(!window.take(12), "again");
        assert!(window.take(20_000));
        assert!(!window.take(13), "far behind the newest");
    }

    #[test]
    fn secrets_read_back_and_bad_ones_are_refused_without_being_repeated() {
        let secret = RunSecret::generate().unwrap();
        assert_eq!(RunSecret::parse(&secret.to_hex()).unwrap(), secret);
        let error = RunSecret::parse("hunter2").unwrap_err();
        assert!(
            error.contains("64 hex digits") && !error.contains("hunter2"),
            "{error}"
        );
        assert!(RunSecret::parse(&"zz".repeat(32)).is_err());
        assert_eq!(format!("{secret:?}"), "RunSecret(..)");
    }

    #[test]
    fn rejections_are_all_counted_and_logged_once_per_sender() {
        let rejections = Rejections::default();
        assert!(rejections.note("worker 1", "s", "x"));
        assert!(!rejections.note("worker 1", "s", "x"));
        assert!(rejections.note("worker 2", "s", "x"));
        for i in 0..5000 {
            rejections.note(&format!("forger {i}"), "s", "x");
        }
        assert_eq!(rejections.count(), 5003);
        assert!(rejections.senders.lock().unwrap().len() <= 1024, "bounded");
    }

    #[test]
    fn the_check_tells_secrets_apart() {
        let a = RunSecret::generate().unwrap();
        let b = RunSecret::generate().unwrap();
        assert_eq!(RunKey::new(&a, "r").check(), RunKey::new(&a, "r").check());
        assert_ne!(RunKey::new(&a, "r").check(), RunKey::new(&b, "r").check());
    }
}
