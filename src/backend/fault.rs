//! Fault injection, a test tool: a [`Backend`] wrapper that fails or corrupts on command.
//!
//! Built only with the `testing` feature (and in unit tests), so integration tests can stage
//! crashes, full disks, flaky networks and bit rot through the library's API, and the CLI can
//! be run through it with `CISTA_TEST_FAULTS` ([`FaultSpec`]); it has no place in front of a
//! real repository and is never in a release build. Faults are set
//! with builder methods before the wrapper is shared; the budgets they consume and the call
//! counters are atomics, so one wrapper can serve many threads. Owns no storage: every call
//! that is not failed before reaching it goes to the inner backend unchanged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Backend, BackendError, ErrorKind, FileType};
use crate::id::Id;

/// A [`Backend`] operation, for choosing which calls a fault hits and for counting calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`Backend::create`].
    Create,
    /// [`Backend::list`].
    List,
    /// [`Backend::read`].
    Read,
    /// [`Backend::read_range`].
    ReadRange,
    /// [`Backend::size`].
    Size,
    /// [`Backend::write`].
    Write,
    /// [`Backend::delete`].
    Delete,
}

impl Op {
    const COUNT: usize = 7;

    fn index(self) -> usize {
        self as usize
    }
}

/// One bit flipped in the bytes read back from objects of one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Corruption {
    file_type: FileType,
    /// Offset within the object.
    at: u64,
    mask: u8,
}

/// Wraps a backend and injects the faults configured with its builder methods.
///
/// ```
/// use std::sync::Arc;
/// use cista::backend::{Backend, ErrorKind, FileType};
/// use cista::backend::fault::FaultBackend;
/// use cista::backend::opendal::OpendalBackend;
/// use cista::id::Id;
///
/// let inner = Arc::new(OpendalBackend::memory()?);
/// // A disk that fills up after two objects.
/// let b = FaultBackend::new(inner).fail_writes_after(2);
/// for seed in 0..2u8 {
///     b.write(FileType::Pack, &Id::of_stored(&[seed]), vec![seed])?;
/// }
/// let err = b.write(FileType::Pack, &Id::of_stored(&[9]), vec![9]).unwrap_err();
/// assert_eq!(err.kind, ErrorKind::Permanent);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FaultBackend {
    inner: Arc<dyn Backend>,
    /// Writes let through before every later write fails.
    write_limit: Option<u64>,
    failing_types: Vec<FileType>,
    /// Writes of one type let through before every later write of that type fails.
    type_limit: Option<(FileType, u64)>,
    /// Writes of `type_limit`'s type counted so far.
    type_writes: AtomicU64,
    corruptions: Vec<Corruption>,
    /// Per operation: calls still to fail with `Transient` before reaching the inner backend.
    transient: [AtomicU64; Op::COUNT],
    /// Per operation: calls still to perform and then report as `Transient`.
    lost_replies: [AtomicU64; Op::COUNT],
    /// Writes that reached the write limit check.
    writes_counted: AtomicU64,
    calls: [AtomicU64; Op::COUNT],
    injected: AtomicU64,
    /// Reads still to corrupt (`u64::MAX`: every one).
    corrupt_budget: AtomicU64,
    /// Ranged reads still to return one byte short.
    truncate: AtomicU64,
    /// Random faults, if any.
    random: Option<Random>,
}

/// Faults injected at random, at fixed rates, from a seeded generator (reproducible).
#[derive(Debug)]
struct Random {
    spec: FaultSpec,
    state: AtomicU64,
}

impl Random {
    /// A uniform number in [0, 1) (splitmix64 over a shared counter).
    fn next(&self) -> f64 {
        let mut z = self
            .state
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Random faults for a whole run, as `CISTA_TEST_FAULTS` gives them:
/// `errors=0.1,timeouts=0.02,truncate=0.05,latency=50ms,seed=7` (every key optional).
///
/// - `errors`: share of calls failing with `Transient`; half of them before the call reaches
///   storage, half after it landed (a lost reply).
/// - `timeouts`: share of calls that hang for `timeout` (default 200ms), then fail with
///   `Transient` after landing, as a request whose client-side timeout fired.
/// - `truncate`: share of reads returning their bytes one short (a connection cut mid-body).
/// - `latency`: added to every call (a distant server).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultSpec {
    /// Share of calls failed with `Transient`.
    pub errors: f64,
    /// Share of calls that time out.
    pub timeouts: f64,
    /// How long a timed-out call hangs first.
    pub timeout: Duration,
    /// Share of reads cut short.
    pub truncate: f64,
    /// Added to every call.
    pub latency: Duration,
    /// Seed of the generator.
    pub seed: u64,
}

impl FaultSpec {
    /// Parses `key=value,...` (see the type's doc).
    pub fn parse(s: &str) -> Result<FaultSpec, BackendError> {
        let bad = |m: String| BackendError {
            kind: ErrorKind::Permanent,
            op: "option",
            path: "CISTA_TEST_FAULTS".into(),
            message: m,
        };
        let mut spec = FaultSpec {
            errors: 0.0,
            timeouts: 0.0,
            timeout: Duration::from_millis(200),
            truncate: 0.0,
            latency: Duration::ZERO,
            seed: 1,
        };
        let rate = |v: &str| -> Result<f64, BackendError> {
            match v.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(bad(format!("{v} is not a rate from 0 to 1"))),
            }
        };
        let millis = |v: &str| -> Result<Duration, BackendError> {
            v.strip_suffix("ms")
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n <= 60_000)
                .map(Duration::from_millis)
                .ok_or_else(|| bad(format!("{v} is not a duration like 50ms")))
        };
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("{part}: expected key=value")))?;
            match k {
                "errors" => spec.errors = rate(v)?,
                "timeouts" => spec.timeouts = rate(v)?,
                "timeout" => spec.timeout = millis(v)?,
                "truncate" => spec.truncate = rate(v)?,
                "latency" => spec.latency = millis(v)?,
                "seed" => {
                    spec.seed = v
                        .parse()
                        .map_err(|_| bad(format!("seed {v} is not a number")))?;
                }
                _ => return Err(bad(format!("unknown key {k}"))),
            }
        }
        Ok(spec)
    }

    /// `inner` behind a [`FaultBackend`] injecting these faults.
    pub fn wrap(self, inner: Arc<dyn Backend>) -> FaultBackend {
        let mut f = FaultBackend::new(inner);
        f.random = Some(Random {
            spec: self,
            state: AtomicU64::new(self.seed),
        });
        f
    }
}

/// What a random draw decided for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Draw {
    Pass,
    FailBefore,
    LoseReply,
    TimeOut,
    Truncate,
}

/// Takes one unit from a budget; false once it is spent.
fn take(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl FaultBackend {
    /// A wrapper that injects nothing until faults are added.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self {
            inner,
            write_limit: None,
            failing_types: Vec::new(),
            type_limit: None,
            type_writes: AtomicU64::new(0),
            corruptions: Vec::new(),
            transient: Default::default(),
            lost_replies: Default::default(),
            writes_counted: AtomicU64::new(0),
            calls: Default::default(),
            injected: AtomicU64::new(0),
            corrupt_budget: AtomicU64::new(u64::MAX),
            truncate: AtomicU64::new(0),
            random: None,
        }
    }

    /// Like [`FaultBackend::corrupt_reads`], for the next `n` reads only: damage in transit,
    /// gone when the object is read again.
    pub fn corrupt_reads_n(self, t: FileType, at: u64, bit: u8, n: u64) -> Self {
        let s = self.corrupt_reads(t, at, bit);
        s.corrupt_budget.store(n, Ordering::SeqCst);
        s
    }

    /// Makes the next `n` ranged reads return one byte fewer than asked for.
    pub fn truncate_reads(self, n: u64) -> Self {
        self.truncate.fetch_add(n, Ordering::SeqCst);
        self
    }

    /// Sleeps the configured latency, then draws this call's random fault.
    fn draw(&self, read: bool) -> Draw {
        let Some(r) = &self.random else {
            return Draw::Pass;
        };
        if !r.spec.latency.is_zero() {
            std::thread::sleep(r.spec.latency);
        }
        let x = r.next();
        let e = r.spec.errors;
        let t = r.spec.timeouts;
        if x < e / 2.0 {
            Draw::FailBefore
        } else if x < e {
            Draw::LoseReply
        } else if x < e + t {
            Draw::TimeOut
        } else if read && x < e + t + r.spec.truncate {
            Draw::Truncate
        } else {
            Draw::Pass
        }
    }

    /// Runs `call` under the random fault drawn for it.
    fn randomly<T>(
        &self,
        name: &'static str,
        path: impl Fn() -> String,
        read: bool,
        call: impl FnOnce() -> Result<T, BackendError>,
        cut: impl FnOnce(&mut T),
    ) -> Result<T, BackendError> {
        match self.draw(read) {
            Draw::Pass => call(),
            Draw::FailBefore => Err(self.fault(
                ErrorKind::Transient,
                name,
                path(),
                "random transient failure",
            )),
            Draw::LoseReply => {
                let _ = call();
                Err(self.fault(ErrorKind::Transient, name, path(), "random lost reply"))
            }
            Draw::TimeOut => {
                let _ = call();
                if let Some(r) = &self.random {
                    std::thread::sleep(r.spec.timeout);
                }
                Err(self.fault(ErrorKind::Transient, name, path(), "random timeout"))
            }
            Draw::Truncate => {
                let mut v = call()?;
                cut(&mut v);
                self.injected.fetch_add(1, Ordering::SeqCst);
                Ok(v)
            }
        }
    }

    /// The write checks of the deterministic faults (failing types, limits).
    fn check_write(&self, t: FileType, path: &dyn Fn() -> String) -> Result<(), BackendError> {
        if self.failing_types.contains(&t) {
            let what = format!("writes of {t:?} fail");
            return Err(self.fault(ErrorKind::Permanent, "write", path(), &what));
        }
        if let Some((lt, limit)) = self.type_limit
            && lt == t
            && self.type_writes.fetch_add(1, Ordering::SeqCst) >= limit
        {
            let what = format!("writes of {t:?} fail after {limit}");
            return Err(self.fault(ErrorKind::Permanent, "write", path(), &what));
        }
        if let Some(limit) = self.write_limit
            && self.writes_counted.fetch_add(1, Ordering::SeqCst) >= limit
        {
            let what = format!("no space left after {limit} writes");
            return Err(self.fault(ErrorKind::Permanent, "write", path(), &what));
        }
        Ok(())
    }

    /// Lets `n` writes through, then fails every later write with `Permanent`, storing
    /// nothing: a full disk, or a process killed part-way through a backup.
    pub fn fail_writes_after(mut self, n: u64) -> Self {
        self.write_limit = Some(n);
        self
    }

    /// Lets `n` writes of type `t` through, then fails every later write of that type with
    /// `Permanent`; other types are unaffected (a data folder that stops accepting files).
    pub fn fail_writes_of_after(mut self, t: FileType, n: u64) -> Self {
        self.type_limit = Some((t, n));
        self
    }

    /// Fails every write of type `t` with `Permanent`, storing nothing.
    pub fn fail_writes_of(mut self, t: FileType) -> Self {
        self.failing_types.push(t);
        self
    }

    /// Fails the next `n` calls of `op` with `Transient` before they reach the inner backend:
    /// a flaky connection. Adds to any budget already set.
    pub fn transient(self, op: Op, n: u64) -> Self {
        self.transient[op.index()].fetch_add(n, Ordering::SeqCst);
        self
    }

    /// Performs the next `n` calls of `op` on the inner backend, then reports `Transient`
    /// anyway: the reply was lost after the request landed. Adds to any budget already set.
    pub fn lose_replies(self, op: Op, n: u64) -> Self {
        self.lost_replies[op.index()].fetch_add(n, Ordering::SeqCst);
        self
    }

    /// Flips bit `bit` (0-7) of the byte at offset `at` of every object of type `t`, in what
    /// `read` and `read_range` return; the stored object is untouched.
    pub fn corrupt_reads(mut self, t: FileType, at: u64, bit: u8) -> Self {
        self.corruptions.push(Corruption {
            file_type: t,
            at,
            mask: 1 << (bit & 7),
        });
        self
    }

    /// Calls of `op` made so far, failed ones included.
    pub fn calls(&self, op: Op) -> u64 {
        self.calls[op.index()].load(Ordering::SeqCst)
    }

    /// Faults injected so far (failed calls, lost replies and corrupted reads).
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn fault(&self, kind: ErrorKind, op: &'static str, path: String, what: &str) -> BackendError {
        self.injected.fetch_add(1, Ordering::SeqCst);
        BackendError {
            kind,
            op,
            path,
            message: format!("injected fault: {what}"),
        }
    }

    /// Counts the call and fails it if a transient budget says so.
    fn enter(
        &self,
        op: Op,
        name: &'static str,
        path: impl FnOnce() -> String,
    ) -> Result<(), BackendError> {
        self.calls[op.index()].fetch_add(1, Ordering::SeqCst);
        if take(&self.transient[op.index()]) {
            return Err(self.fault(ErrorKind::Transient, name, path(), "transient failure"));
        }
        Ok(())
    }

    /// Passes a completed call's result on, or loses its reply if a budget says so.
    fn leave<T>(
        &self,
        op: Op,
        name: &'static str,
        path: impl FnOnce() -> String,
        r: Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        match r {
            Ok(_) if take(&self.lost_replies[op.index()]) => Err(self.fault(
                ErrorKind::Transient,
                name,
                path(),
                "reply lost after the call landed",
            )),
            r => r,
        }
    }

    /// Applies the corruptions for `t` to `bytes`, which start at `offset` in the object.
    fn corrupt(&self, t: FileType, offset: u64, bytes: &mut [u8]) {
        if !self.corruptions.iter().any(|c| c.file_type == t) {
            return;
        }
        let budget = &self.corrupt_budget;
        if budget.load(Ordering::SeqCst) != u64::MAX && !take(budget) {
            return;
        }
        for c in self.corruptions.iter().filter(|c| c.file_type == t) {
            let Some(rel) = c.at.checked_sub(offset) else {
                continue;
            };
            if let Some(b) = usize::try_from(rel).ok().and_then(|i| bytes.get_mut(i)) {
                *b ^= c.mask;
                self.injected.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

impl Backend for FaultBackend {
    fn location(&self) -> String {
        format!("fault:{}", self.inner.location())
    }

    fn create(&self) -> Result<(), BackendError> {
        let path = || self.inner.location();
        self.enter(Op::Create, "create", path)?;
        self.leave(Op::Create, "create", path, self.inner.create())
    }

    fn list(&self, t: FileType) -> Result<Vec<(Id, u64)>, BackendError> {
        let path = || t.dir().to_owned();
        self.enter(Op::List, "list", path)?;
        let r = self.randomly("list", path, false, || self.inner.list(t), |_| {});
        self.leave(Op::List, "list", path, r)
    }

    fn read(&self, t: FileType, id: &Id) -> Result<Vec<u8>, BackendError> {
        let path = || t.path(id);
        self.enter(Op::Read, "read", path)?;
        let r = self.randomly(
            "read",
            path,
            true,
            || self.inner.read(t, id),
            |v| {
                v.truncate(v.len().saturating_sub(1));
            },
        );
        let mut bytes = self.leave(Op::Read, "read", path, r)?;
        self.corrupt(t, 0, &mut bytes);
        Ok(bytes)
    }

    fn read_range(
        &self,
        t: FileType,
        id: &Id,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, BackendError> {
        let path = || t.path(id);
        self.enter(Op::ReadRange, "read", path)?;
        let r = self.randomly(
            "read",
            path,
            true,
            || self.inner.read_range(t, id, offset, len),
            |v| v.truncate(v.len().saturating_sub(1)),
        );
        let mut bytes = self.leave(Op::ReadRange, "read", path, r)?;
        if take(&self.truncate) {
            bytes.truncate(bytes.len().saturating_sub(1));
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        self.corrupt(t, offset, &mut bytes);
        Ok(bytes)
    }

    fn size(&self, t: FileType, id: &Id) -> Result<u64, BackendError> {
        let path = || t.path(id);
        self.enter(Op::Size, "stat", path)?;
        let r = self.randomly("stat", path, false, || self.inner.size(t, id), |_| {});
        self.leave(Op::Size, "stat", path, r)
    }

    fn write(&self, t: FileType, id: &Id, bytes: Vec<u8>) -> Result<(), BackendError> {
        let path = || t.path(id);
        self.enter(Op::Write, "write", path)?;
        self.check_write(t, &path)?;
        let r = self.randomly(
            "write",
            path,
            false,
            || self.inner.write(t, id, bytes),
            |_| {},
        );
        self.leave(Op::Write, "write", path, r)
    }

    fn write_parts(&self, t: FileType, id: &Id, parts: Vec<Vec<u8>>) -> Result<(), BackendError> {
        let path = || t.path(id);
        self.enter(Op::Write, "write", path)?;
        self.check_write(t, &path)?;
        let r = self.randomly(
            "write",
            path,
            false,
            || self.inner.write_parts(t, id, parts),
            |_| {},
        );
        self.leave(Op::Write, "write", path, r)
    }

    fn replace_config(&self, bytes: Vec<u8>) -> Result<(), BackendError> {
        let path = || FileType::Config.path(&Id::default());
        self.enter(Op::Write, "replace", path)?;
        if self.failing_types.contains(&FileType::Config) {
            return Err(self.fault(
                ErrorKind::Permanent,
                "replace",
                path(),
                "writes of Config fail",
            ));
        }
        let r = self.randomly(
            "replace",
            path,
            false,
            || self.inner.replace_config(bytes),
            |_| {},
        );
        self.leave(Op::Write, "replace", path, r)
    }

    fn delete(&self, t: FileType, id: &Id) -> Result<(), BackendError> {
        let path = || t.path(id);
        self.enter(Op::Delete, "delete", path)?;
        let r = self.randomly("delete", path, false, || self.inner.delete(t, id), |_| {});
        self.leave(Op::Delete, "delete", path, r)
    }

    fn temp_files(&self) -> Result<Vec<super::TempFile>, BackendError> {
        self.inner.temp_files()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::opendal::OpendalBackend;

    fn setup() -> (Arc<dyn Backend>, FaultBackend) {
        let inner: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
        inner.create().unwrap();
        let fb = FaultBackend::new(Arc::clone(&inner));
        (inner, fb)
    }

    fn obj(seed: u8) -> (Id, Vec<u8>) {
        let bytes: Vec<u8> = (0..64).map(|i| seed.wrapping_add(i)).collect();
        (Id::of_stored(&bytes), bytes)
    }

    #[test]
    fn without_faults_everything_passes_through() {
        let (inner, fb) = setup();
        let (id, bytes) = obj(1);
        fb.write(FileType::Pack, &id, bytes.clone()).unwrap();
        assert_eq!(inner.read(FileType::Pack, &id).unwrap(), bytes);
        assert_eq!(fb.read(FileType::Pack, &id).unwrap(), bytes);
        assert_eq!(
            fb.read_range(FileType::Pack, &id, 3, 5).unwrap(),
            bytes[3..8]
        );
        assert_eq!(fb.size(FileType::Pack, &id).unwrap(), 64);
        assert_eq!(fb.list(FileType::Pack).unwrap(), vec![(id, 64)]);
        fb.delete(FileType::Pack, &id).unwrap();
        assert_eq!(inner.list(FileType::Pack).unwrap(), vec![]);
        assert_eq!(fb.injected(), 0);
        assert_eq!(fb.calls(Op::Write), 1);
        assert_eq!(fb.calls(Op::Read), 1);
        assert_eq!(fb.location(), format!("fault:{}", inner.location()));
    }

    #[test]
    fn writes_fail_after_the_limit_and_store_nothing() {
        let (inner, fb) = setup();
        let fb = fb.fail_writes_after(2);
        let ids: Vec<_> = (0..5u8).map(obj).collect();
        for (id, bytes) in &ids[..2] {
            fb.write(FileType::Pack, id, bytes.clone()).unwrap();
        }
        for (id, bytes) in &ids[2..] {
            let err = fb.write(FileType::Pack, id, bytes.clone()).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Permanent);
            assert!(err.message.contains("injected"), "{err}");
            assert_eq!(
                inner.read(FileType::Pack, id).unwrap_err().kind,
                ErrorKind::NotFound
            );
        }
        assert_eq!(inner.list(FileType::Pack).unwrap().len(), 2);
        assert_eq!(fb.injected(), 3);
        // Reads still work: only the disk is full.
        assert_eq!(fb.read(FileType::Pack, &ids[0].0).unwrap(), ids[0].1);
    }

    #[test]
    fn writes_of_one_type_fail() {
        let (inner, fb) = setup();
        let fb = fb.fail_writes_of(FileType::Snapshot);
        let (id, bytes) = obj(2);
        let err = fb
            .write(FileType::Snapshot, &id, bytes.clone())
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Permanent);
        assert_eq!(inner.list(FileType::Snapshot).unwrap(), vec![]);
        fb.write(FileType::Index, &id, bytes).unwrap();
        assert_eq!(inner.list(FileType::Index).unwrap(), vec![(id, 64)]);
    }

    #[test]
    fn transient_budget_is_per_operation_and_runs_out() {
        let (inner, fb) = setup();
        let (id, bytes) = obj(3);
        inner.write(FileType::Key, &id, bytes.clone()).unwrap();
        let fb = fb.transient(Op::Read, 2).transient(Op::List, 1);
        for _ in 0..2 {
            let err = fb.read(FileType::Key, &id).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Transient);
        }
        assert_eq!(fb.read(FileType::Key, &id).unwrap(), bytes);
        assert_eq!(fb.size(FileType::Key, &id).unwrap(), 64);
        assert_eq!(
            fb.list(FileType::Key).unwrap_err().kind,
            ErrorKind::Transient
        );
        assert_eq!(fb.list(FileType::Key).unwrap(), vec![(id, 64)]);
        assert_eq!(fb.calls(Op::Read), 3);
        assert_eq!(fb.injected(), 3);
    }

    #[test]
    fn transient_write_stores_nothing() {
        let (inner, fb) = setup();
        let fb = fb.transient(Op::Write, 1);
        let (id, bytes) = obj(4);
        let err = fb.write(FileType::Lock, &id, bytes.clone()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Transient);
        assert_eq!(inner.list(FileType::Lock).unwrap(), vec![]);
        fb.write(FileType::Lock, &id, bytes).unwrap();
        assert_eq!(inner.list(FileType::Lock).unwrap(), vec![(id, 64)]);
    }

    #[test]
    fn lost_reply_still_performs_the_call() {
        let (inner, fb) = setup();
        let fb = fb.lose_replies(Op::Write, 1).lose_replies(Op::Delete, 1);
        let (id, bytes) = obj(5);
        let err = fb.write(FileType::Pack, &id, bytes.clone()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Transient);
        assert_eq!(inner.read(FileType::Pack, &id).unwrap(), bytes);
        assert_eq!(
            fb.write(FileType::Pack, &id, bytes).unwrap_err().kind,
            ErrorKind::AlreadyExists
        );
        let err = fb.delete(FileType::Pack, &id).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Transient);
        assert_eq!(inner.list(FileType::Pack).unwrap(), vec![]);
        // A failed call has no reply to lose: the budget is not spent on it.
        let fb = fb.lose_replies(Op::Read, 1);
        assert_eq!(
            fb.read(FileType::Pack, &id).unwrap_err().kind,
            ErrorKind::NotFound
        );
        inner.write(FileType::Pack, &id, vec![1]).unwrap();
        assert_eq!(
            fb.read(FileType::Pack, &id).unwrap_err().kind,
            ErrorKind::Transient
        );
        assert_eq!(fb.read(FileType::Pack, &id).unwrap(), vec![1]);
    }

    #[test]
    fn corrupt_reads_flip_one_bit_and_leave_storage_alone() {
        let (inner, fb) = setup();
        let fb = fb.corrupt_reads(FileType::Pack, 10, 3);
        let (id, bytes) = obj(6);
        fb.write(FileType::Pack, &id, bytes.clone()).unwrap();
        fb.write(FileType::Index, &id, bytes.clone()).unwrap();

        let read = fb.read(FileType::Pack, &id).unwrap();
        let differ: Vec<usize> = (0..64).filter(|&i| read[i] != bytes[i]).collect();
        assert_eq!(differ, vec![10]);
        assert_eq!(read[10] ^ bytes[10], 0b1000);

        // A range covering offset 10 is corrupted at the matching position.
        let range = fb.read_range(FileType::Pack, &id, 8, 4).unwrap();
        assert_eq!(range[2], bytes[10] ^ 0b1000);
        assert_eq!(range[..2], bytes[8..10]);
        assert_eq!(range[3], bytes[11]);
        // Ranges that miss it, other types, and the stored bytes are untouched.
        assert_eq!(
            fb.read_range(FileType::Pack, &id, 0, 10).unwrap(),
            bytes[..10]
        );
        assert_eq!(
            fb.read_range(FileType::Pack, &id, 11, 20).unwrap(),
            bytes[11..31]
        );
        assert_eq!(fb.read(FileType::Index, &id).unwrap(), bytes);
        assert_eq!(inner.read(FileType::Pack, &id).unwrap(), bytes);
        assert_eq!(fb.injected(), 2);
    }

    #[test]
    fn budgets_are_shared_between_threads() {
        let (inner, fb) = setup();
        let fb = fb.fail_writes_after(10);
        let results: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4u8)
                .map(|t| {
                    let fb = &fb;
                    s.spawn(move || {
                        (0..8u8)
                            .map(|k| {
                                let (id, bytes) = obj(t * 8 + k);
                                fb.write(FileType::Pack, &id, bytes).is_ok()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(results.iter().filter(|ok| **ok).count(), 10);
        assert_eq!(inner.list(FileType::Pack).unwrap().len(), 10);
        assert_eq!(fb.calls(Op::Write), 32);
        assert_eq!(fb.injected(), 22);
    }
}
