//! Retries: a [`Backend`] wrapper that repeats calls failing with `Transient`.
//!
//! Owns the retry policy (bounded attempts, exponential backoff with full jitter and a cap)
//! and nothing else. A download that comes back damaged is a transient failure too: a ranged
//! read shorter than asked for, or a whole object whose bytes do not hash to its name (every
//! object but the config is named by the BLAKE3 of its bytes, docs/FORMAT.md §3), is read
//! again; if every attempt gives the same damage, the bytes are handed up as they are and the
//! repository layer reports the corruption as it would have.
//! `NotFound`, `AlreadyExists` and `Permanent` are answers, not hiccups: they are returned at
//! once. A retried call may find that its earlier attempt landed even though its reply was
//! lost; for `write` that shows up as `AlreadyExists` and for `delete` as `NotFound`, and both
//! are reported as success because the state the caller asked for holds. That is sound for
//! writes because every object but the config is named by the hash of its bytes; the config is
//! read back and compared instead.

use std::sync::Arc;
use std::time::Duration;

use super::{Backend, BackendError, ErrorKind, FileType};
use crate::id::Id;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls made in all, the first included (0 is taken as 1).
    pub attempts: u32,
    /// Wait before the first retry; each later wait doubles it.
    pub base_delay: Duration,
    /// Upper bound on a single wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Five attempts waiting 0.1, 0.2, 0.4 and 0.8 s: about 1.5 s before giving up.
    fn default() -> Self {
        Self {
            attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The longest wait after failed attempt number `attempt` (counting from 0).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The wait actually taken: uniformly random up to [`RetryPolicy::delay`] ("full
    /// jitter"), so many clients that failed together do not retry together.
    pub fn jittered(&self, attempt: u32) -> Duration {
        let max = self.delay(attempt);
        let mut r = [0u8; 8];
        if crate::crypto::random_bytes(&mut r).is_err() {
            return max;
        }
        let unit = u64::from_le_bytes(r) as f64 / u64::MAX as f64;
        max.mul_f64(unit)
    }

    fn attempts(&self) -> u32 {
        self.attempts.max(1)
    }
}

/// Wraps a backend and retries its transient failures.
#[derive(Debug)]
pub struct RetryBackend {
    inner: Arc<dyn Backend>,
    policy: RetryPolicy,
}

impl RetryBackend {
    /// Retries with the default policy.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self::with_policy(inner, RetryPolicy::default())
    }

    /// Retries with `policy`.
    pub fn with_policy(inner: Arc<dyn Backend>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    /// Calls `f` until it returns anything but a `Transient` error or attempts run out.
    /// `f` is told whether an earlier attempt failed transiently (and so may have landed).
    fn retry<T>(
        &self,
        mut f: impl FnMut(bool) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut attempt = 0;
        loop {
            match f(attempt > 0) {
                Err(e)
                    if e.kind == ErrorKind::Transient && attempt + 1 < self.policy.attempts() =>
                {
                    std::thread::sleep(self.policy.jittered(attempt));
                    attempt += 1;
                }
                r => return r,
            }
        }
    }
}

impl Backend for RetryBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<(), BackendError> {
        self.retry(|_| self.inner.create())
    }

    fn list(&self, t: FileType) -> Result<Vec<(Id, u64)>, BackendError> {
        self.retry(|_| self.inner.list(t))
    }

    fn read(&self, t: FileType, id: &Id) -> Result<Vec<u8>, BackendError> {
        if t == FileType::Config {
            // Not named by its hash: nothing to check it against.
            return self.retry(|_| self.inner.read(t, id));
        }
        let attempts = self.policy.attempts();
        let mut attempt = 0;
        self.retry(|_| {
            attempt += 1;
            let bytes = self.inner.read(t, id)?;
            if attempt < attempts && Id::of_stored(&bytes) != *id {
                return Err(BackendError {
                    kind: ErrorKind::Transient,
                    op: "read",
                    path: t.path(id),
                    message: "downloaded bytes do not match the object's name".into(),
                });
            }
            Ok(bytes)
        })
    }

    fn read_range(
        &self,
        t: FileType,
        id: &Id,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, BackendError> {
        crate::backend::range_through_into(self, t, id, offset, len)
    }

    fn read_range_into(
        &self,
        t: FileType,
        id: &Id,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        self.retry(|_| {
            self.inner.read_range_into(t, id, offset, len, buf)?;
            if buf.len() as u64 != len {
                return Err(BackendError {
                    kind: ErrorKind::Transient,
                    op: "read",
                    path: t.path(id),
                    message: format!(
                        "short read: {} of {len} bytes at offset {offset}",
                        buf.len()
                    ),
                });
            }
            Ok(())
        })
    }

    fn size(&self, t: FileType, id: &Id) -> Result<u64, BackendError> {
        self.retry(|_| self.inner.size(t, id))
    }

    fn replace_config(&self, bytes: Vec<u8>) -> Result<(), BackendError> {
        // Replacing with the same bytes again is harmless: retry freely.
        self.retry(|_| self.inner.replace_config(bytes.clone()))
    }

    fn write(&self, t: FileType, id: &Id, bytes: Vec<u8>) -> Result<(), BackendError> {
        // The config is not named by its hash: keep its digest to recognise our own bytes.
        let config_digest = (t == FileType::Config).then(|| Id::of_stored(&bytes));
        let attempts = self.policy.attempts();
        let mut bytes = bytes;
        let mut attempt = 0;
        self.retry(|retried| {
            attempt += 1;
            // Keep a copy for the next attempt only while there can be one.
            let payload = if attempt < attempts {
                bytes.clone()
            } else {
                std::mem::take(&mut bytes)
            };
            match self.inner.write(t, id, payload) {
                Err(e) if e.kind == ErrorKind::AlreadyExists && retried => match config_digest {
                    None => Ok(()),
                    // Read back through `self`, so a flaky read does not hide our own config.
                    Some(digest) => match self.read(t, id) {
                        Ok(stored) if Id::of_stored(&stored) == digest => Ok(()),
                        _ => Err(e),
                    },
                },
                r => r,
            }
        })
    }

    fn write_parts(&self, t: FileType, id: &Id, parts: Vec<Vec<u8>>) -> Result<(), BackendError> {
        if t == FileType::Config {
            return self.write(t, id, parts.concat());
        }
        // Forwarded as parts (never joined); a copy is kept only while another attempt may
        // need it, as in `write`.
        let attempts = self.policy.attempts();
        let mut parts = parts;
        let mut attempt = 0;
        self.retry(|retried| {
            attempt += 1;
            let payload = if attempt < attempts {
                parts.clone()
            } else {
                std::mem::take(&mut parts)
            };
            match self.inner.write_parts(t, id, payload) {
                // Content-named: what is there is what we wrote.
                Err(e) if e.kind == ErrorKind::AlreadyExists && retried => Ok(()),
                r => r,
            }
        })
    }

    fn delete(&self, t: FileType, id: &Id) -> Result<(), BackendError> {
        self.retry(|retried| match self.inner.delete(t, id) {
            Err(e) if e.kind == ErrorKind::NotFound && retried => Ok(()),
            r => r,
        })
    }

    fn temp_files(&self) -> Result<Vec<super::TempFile>, BackendError> {
        self.retry(|_| self.inner.temp_files())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fault::{FaultBackend, Op};
    use crate::backend::opendal::OpendalBackend;

    const FAST: RetryPolicy = RetryPolicy {
        attempts: 5,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
    };

    /// A created memory backend, a fault wrapper over it and a retry wrapper over that.
    fn stack(
        faults: impl FnOnce(FaultBackend) -> FaultBackend,
    ) -> (Arc<dyn Backend>, Arc<FaultBackend>, RetryBackend) {
        let inner: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
        inner.create().unwrap();
        let fb = Arc::new(faults(FaultBackend::new(Arc::clone(&inner))));
        let rb = RetryBackend::with_policy(Arc::clone(&fb) as Arc<dyn Backend>, FAST);
        (inner, fb, rb)
    }

    fn obj(seed: u8) -> (Id, Vec<u8>) {
        let bytes = vec![seed; 100];
        (Id::of_stored(&bytes), bytes)
    }

    #[test]
    fn delays_double_and_are_capped() {
        let p = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let ms: Vec<u128> = (0..5).map(|a| p.delay(a).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 500, 500]);
        assert_eq!(p.delay(40), Duration::from_millis(500), "no overflow");
        assert_eq!(RetryPolicy::default().delay(3), Duration::from_millis(800));
    }

    #[test]
    fn transient_failures_are_retried_until_success() {
        let (inner, fb, rb) = stack(|f| f.transient(Op::Read, 3).transient(Op::List, 4));
        let (id, bytes) = obj(1);
        inner.write(FileType::Pack, &id, bytes.clone()).unwrap();
        assert_eq!(rb.read(FileType::Pack, &id).unwrap(), bytes);
        assert_eq!(fb.calls(Op::Read), 4);
        // The fifth and last attempt of a list succeeds.
        assert_eq!(rb.list(FileType::Pack).unwrap(), vec![(id, 100)]);
        assert_eq!(fb.calls(Op::List), 5);
    }

    #[test]
    fn gives_up_after_the_last_attempt() {
        let (inner, fb, rb) = stack(|f| f.transient(Op::ReadRange, 100).transient(Op::Write, 100));
        let (id, bytes) = obj(2);
        inner.write(FileType::Pack, &id, bytes.clone()).unwrap();
        let err = rb.read_range(FileType::Pack, &id, 0, 10).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Transient);
        assert_eq!(fb.calls(Op::ReadRange), 5);
        let (other, bytes) = obj(3);
        let err = rb.write(FileType::Pack, &other, bytes).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Transient);
        assert_eq!(fb.calls(Op::Write), 5);
        assert_eq!(inner.list(FileType::Pack).unwrap(), vec![(id, 100)]);
    }

    #[test]
    fn zero_attempts_means_one() {
        let (inner, fb) = {
            let inner: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
            let fb = Arc::new(FaultBackend::new(Arc::clone(&inner)).transient(Op::Size, 1));
            (inner, fb)
        };
        let policy = RetryPolicy {
            attempts: 0,
            ..FAST
        };
        let rb = RetryBackend::with_policy(Arc::clone(&fb) as Arc<dyn Backend>, policy);
        let (id, bytes) = obj(4);
        inner.write(FileType::Key, &id, bytes).unwrap();
        assert_eq!(
            rb.size(FileType::Key, &id).unwrap_err().kind,
            ErrorKind::Transient
        );
        assert_eq!(fb.calls(Op::Size), 1);
    }

    #[test]
    fn answers_are_never_retried() {
        let (inner, fb, rb) = stack(|f| f.fail_writes_of(FileType::Lock));
        let (id, bytes) = obj(5);
        assert_eq!(
            rb.read(FileType::Pack, &id).unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            rb.delete(FileType::Pack, &id).unwrap_err().kind,
            ErrorKind::NotFound
        );
        inner.write(FileType::Pack, &id, bytes.clone()).unwrap();
        assert_eq!(
            rb.write(FileType::Pack, &id, bytes.clone())
                .unwrap_err()
                .kind,
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            rb.write(FileType::Lock, &id, bytes).unwrap_err().kind,
            ErrorKind::Permanent
        );
        assert_eq!(fb.calls(Op::Read), 1);
        assert_eq!(fb.calls(Op::Delete), 1);
        assert_eq!(fb.calls(Op::Write), 2);
    }

    #[test]
    fn write_whose_reply_was_lost_succeeds() {
        let (inner, fb, rb) = stack(|f| f.lose_replies(Op::Write, 1));
        let (id, bytes) = obj(6);
        rb.write(FileType::Snapshot, &id, bytes.clone()).unwrap();
        assert_eq!(fb.calls(Op::Write), 2);
        assert_eq!(inner.read(FileType::Snapshot, &id).unwrap(), bytes);
    }

    #[test]
    fn delete_whose_reply_was_lost_succeeds() {
        let (inner, fb, rb) = stack(|f| f.lose_replies(Op::Delete, 1));
        let (id, bytes) = obj(7);
        inner.write(FileType::Index, &id, bytes).unwrap();
        rb.delete(FileType::Index, &id).unwrap();
        assert_eq!(fb.calls(Op::Delete), 2);
        assert_eq!(inner.list(FileType::Index).unwrap(), vec![]);
    }

    #[test]
    fn config_after_a_transient_failure_must_be_ours() {
        // Our first attempt landed and its reply was lost: the config found is ours, even when
        // reading it back is flaky too.
        let (inner, _, rb) = stack(|f| f.lose_replies(Op::Write, 1).transient(Op::Read, 2));
        rb.write(FileType::Config, &Id::default(), b"ours".to_vec())
            .unwrap();
        assert_eq!(
            inner.read(FileType::Config, &Id::default()).unwrap(),
            b"ours"
        );

        // Our first attempt failed and another writer's config is there: not a success.
        let (inner, fb, rb) = stack(|f| f.transient(Op::Write, 1));
        inner
            .write(FileType::Config, &Id::default(), b"theirs".to_vec())
            .unwrap();
        let err = rb
            .write(FileType::Config, &Id::default(), b"ours".to_vec())
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::AlreadyExists);
        assert_eq!(fb.calls(Op::Write), 2);
        assert_eq!(
            inner.read(FileType::Config, &Id::default()).unwrap(),
            b"theirs"
        );
    }

    #[test]
    fn last_attempt_writes_the_whole_object() {
        // The payload is moved, not cloned, into the last attempt; it must still be complete.
        let (inner, fb, rb) = stack(|f| f.transient(Op::Write, 4));
        let (id, bytes) = obj(8);
        rb.write(FileType::Pack, &id, bytes.clone()).unwrap();
        assert_eq!(fb.calls(Op::Write), 5);
        assert_eq!(inner.read(FileType::Pack, &id).unwrap(), bytes);
    }

    #[test]
    fn jitter_stays_within_the_backoff() {
        let p = RetryPolicy::default();
        for a in 0..8 {
            for _ in 0..50 {
                assert!(p.jittered(a) <= p.delay(a));
            }
        }
        // Not all the same: the point of jitter.
        let waits: std::collections::BTreeSet<Duration> = (0..20).map(|_| p.jittered(3)).collect();
        assert!(waits.len() > 1);
    }

    #[test]
    fn parts_are_forwarded_and_retried_whole() {
        let (inner, fb, rb) = stack(|f| f.transient(Op::Write, 2).lose_replies(Op::Write, 1));
        let bytes = vec![7u8; 300];
        let id = Id::of_stored(&bytes);
        rb.write_parts(
            FileType::Pack,
            &id,
            vec![bytes[..100].to_vec(), Vec::new(), bytes[100..].to_vec()],
        )
        .unwrap();
        assert_eq!(fb.calls(Op::Write), 4);
        assert_eq!(inner.read(FileType::Pack, &id).unwrap(), bytes);
    }

    #[test]
    fn damaged_downloads_are_read_again() {
        let (inner, fb, rb) = stack(|f| f.corrupt_reads_n(FileType::Index, 0, 1, 2));
        let bytes = vec![3u8; 64];
        let id = Id::of_stored(&bytes);
        inner.write(FileType::Index, &id, bytes.clone()).unwrap();
        assert_eq!(rb.read(FileType::Index, &id).unwrap(), bytes);
        assert_eq!(fb.calls(Op::Read), 3);
        // Damage on storage itself: every attempt sees it, and the bytes are handed up as
        // they are for the repository layer to report.
        let (inner, fb, rb) = stack(|f| f.corrupt_reads(FileType::Index, 0, 1));
        inner.write(FileType::Index, &id, bytes.clone()).unwrap();
        let got = rb.read(FileType::Index, &id).unwrap();
        assert_ne!(got, bytes);
        assert_eq!(fb.calls(Op::Read), 5);
    }

    #[test]
    fn short_ranges_are_read_again() {
        let (inner, fb, rb) = stack(|f| f.truncate_reads(2));
        let (id, bytes) = obj(9);
        inner.write(FileType::Pack, &id, bytes.clone()).unwrap();
        assert_eq!(
            rb.read_range(FileType::Pack, &id, 10, 50).unwrap(),
            bytes[10..60]
        );
        assert_eq!(fb.calls(Op::ReadRange), 3);
    }

    #[test]
    fn retrying_backend_conforms() {
        let inner: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
        let flaky = FaultBackend::new(inner)
            .transient(Op::Write, 3)
            .transient(Op::Read, 3)
            .transient(Op::List, 3)
            .lose_replies(Op::Write, 2)
            .lose_replies(Op::Delete, 2);
        let flaky = Arc::new(flaky);
        let rb = RetryBackend::with_policy(Arc::clone(&flaky) as Arc<dyn Backend>, FAST);
        crate::backend::conformance::run_all(&rb);
        assert!(flaky.injected() >= 13, "{}", flaky.injected());
    }
}
