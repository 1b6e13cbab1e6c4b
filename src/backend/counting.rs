//! Request counting: a [`Backend`] wrapper that counts each call per operation and file
//! type, and the bytes read and written, with relaxed atomics (a few nanoseconds a call, so
//! the CLI always builds it).
//!
//! Owns the counters and their one-line rendering ([`Stats`]'s `Display`), nothing else: it
//! changes no result and retries nothing. Placed right above the retry wrapper, it counts
//! what the repository asked of storage after the cache answered what it could, so "the
//! second `snapshots` read no snapshot" is a number (docs/CLI.md, "Diagnostics"). A retried
//! call counts once: the attempts below it are the retry wrapper's business.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Backend, BackendError, FileType, PackHint, TempFile};
use crate::id::Id;

/// The operations counted, in the order [`Stats`] prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `list`.
    List,
    /// `read` (whole object).
    Read,
    /// `read_range`.
    ReadRange,
    /// `size` (a stat).
    Size,
    /// `write` and `write_parts`.
    Write,
    /// `delete`.
    Delete,
    /// `replace_config`.
    Replace,
    /// `create` (counted under the config's type).
    Create,
}

impl Op {
    /// Every operation, in print order.
    pub const ALL: [Op; 8] = [
        Self::List,
        Self::Read,
        Self::ReadRange,
        Self::Size,
        Self::Write,
        Self::Delete,
        Self::Replace,
        Self::Create,
    ];

    /// The name used in the stats line.
    pub fn name(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Read => "read",
            Self::ReadRange => "read_range",
            Self::Size => "size",
            Self::Write => "write",
            Self::Delete => "delete",
            Self::Replace => "replace",
            Self::Create => "create",
        }
    }
}

/// The name of a file type in the stats line.
pub fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::Config => "config",
        FileType::Key => "key",
        FileType::Pack => "pack",
        FileType::Index => "index",
        FileType::Snapshot => "snapshot",
        FileType::Lock => "lock",
    }
}

fn type_slot(t: FileType) -> usize {
    match t {
        FileType::Config => 0,
        FileType::Key => 1,
        FileType::Pack => 2,
        FileType::Index => 3,
        FileType::Snapshot => 4,
        FileType::Lock => 5,
    }
}

fn op_slot(op: Op) -> usize {
    match op {
        Op::List => 0,
        Op::Read => 1,
        Op::ReadRange => 2,
        Op::Size => 3,
        Op::Write => 4,
        Op::Delete => 5,
        Op::Replace => 6,
        Op::Create => 7,
    }
}

const TYPES: usize = FileType::ALL.len();
const OPS: usize = Op::ALL.len();

/// A copy of the counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    calls: [[u64; OPS]; TYPES],
    /// Bytes returned by `read` and `read_range`.
    pub bytes_read: u64,
    /// Bytes passed to `write`, `write_parts` and `replace_config`.
    pub bytes_written: u64,
}

impl Stats {
    /// Calls of `op` on objects of type `t`.
    pub fn calls(&self, op: Op, t: FileType) -> u64 {
        self.calls[type_slot(t)][op_slot(op)]
    }

    /// Calls of any operation that fetch object bytes (`read` and `read_range`) of type `t`.
    pub fn reads(&self, t: FileType) -> u64 {
        self.calls(Op::Read, t) + self.calls(Op::ReadRange, t)
    }

    /// Every call counted.
    pub fn requests(&self) -> u64 {
        self.calls.iter().flatten().sum()
    }
}

/// `requests=N bytes_read=N bytes_written=N` then `type.op=N` for every non-zero counter,
/// in a fixed order: one line, easy to read and to parse.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "requests={} bytes_read={} bytes_written={}",
            self.requests(),
            self.bytes_read,
            self.bytes_written
        )?;
        for t in FileType::ALL {
            for op in Op::ALL {
                let n = self.calls(op, t);
                if n > 0 {
                    write!(f, " {}.{}={n}", type_name(t), op.name())?;
                }
            }
        }
        Ok(())
    }
}

/// Counts every call made through it; see the module header.
#[derive(Debug)]
pub struct CountingBackend {
    inner: Arc<dyn Backend>,
    calls: [[AtomicU64; OPS]; TYPES],
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

impl CountingBackend {
    /// Wraps `inner` with every counter at zero.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self {
            inner,
            calls: Default::default(),
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
        }
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        let mut s = Stats {
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            ..Stats::default()
        };
        for (row, counters) in s.calls.iter_mut().zip(&self.calls) {
            for (n, c) in row.iter_mut().zip(counters) {
                *n = c.load(Ordering::Relaxed);
            }
        }
        s
    }

    fn count(&self, op: Op, t: FileType) {
        self.calls[type_slot(t)][op_slot(op)].fetch_add(1, Ordering::Relaxed);
    }

    fn count_read(&self, r: &Result<Vec<u8>, BackendError>) {
        if let Ok(b) = r {
            self.count_bytes_read(b);
        }
    }

    fn count_bytes_read(&self, b: &[u8]) {
        self.bytes_read.fetch_add(b.len() as u64, Ordering::Relaxed);
    }

    fn count_written(&self, n: usize) {
        self.bytes_written.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Backend for CountingBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<(), BackendError> {
        self.count(Op::Create, FileType::Config);
        self.inner.create()
    }

    fn list(&self, t: FileType) -> Result<Vec<(Id, u64)>, BackendError> {
        self.count(Op::List, t);
        self.inner.list(t)
    }

    fn read(&self, t: FileType, id: &Id) -> Result<Vec<u8>, BackendError> {
        self.count(Op::Read, t);
        let r = self.inner.read(t, id);
        self.count_read(&r);
        r
    }

    fn read_range(
        &self,
        t: FileType,
        id: &Id,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, BackendError> {
        self.count(Op::ReadRange, t);
        let r = self.inner.read_range(t, id, offset, len);
        self.count_read(&r);
        r
    }

    fn read_range_into(
        &self,
        t: FileType,
        id: &Id,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        self.count(Op::ReadRange, t);
        let r = self.inner.read_range_into(t, id, offset, len, buf);
        if r.is_ok() {
            self.count_bytes_read(buf);
        }
        r
    }

    fn size(&self, t: FileType, id: &Id) -> Result<u64, BackendError> {
        self.count(Op::Size, t);
        self.inner.size(t, id)
    }

    fn write(&self, t: FileType, id: &Id, bytes: Vec<u8>) -> Result<(), BackendError> {
        self.count(Op::Write, t);
        self.count_written(bytes.len());
        self.inner.write(t, id, bytes)
    }

    fn write_parts(&self, t: FileType, id: &Id, parts: Vec<Vec<u8>>) -> Result<(), BackendError> {
        self.count(Op::Write, t);
        self.count_written(parts.iter().map(Vec::len).sum());
        self.inner.write_parts(t, id, parts)
    }

    fn replace_config(&self, bytes: Vec<u8>) -> Result<(), BackendError> {
        self.count(Op::Replace, FileType::Config);
        self.count_written(bytes.len());
        self.inner.replace_config(bytes)
    }

    fn delete(&self, t: FileType, id: &Id) -> Result<(), BackendError> {
        self.count(Op::Delete, t);
        self.inner.delete(t, id)
    }

    fn temp_files(&self) -> Result<Vec<TempFile>, BackendError> {
        self.inner.temp_files()
    }

    fn hint(&self, hint: PackHint<'_>) {
        self.inner.hint(hint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::opendal::OpendalBackend;

    #[test]
    fn counts_calls_per_type_and_bytes() {
        let mem: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
        let c = CountingBackend::new(mem);
        c.create().unwrap();
        let bytes = b"snapshot bytes".to_vec();
        let id = Id::of_stored(&bytes);
        c.write(FileType::Snapshot, &id, bytes.clone()).unwrap();
        c.write_parts(FileType::Pack, &id, vec![b"ab".to_vec(), b"c".to_vec()])
            .unwrap();
        assert_eq!(c.read(FileType::Snapshot, &id).unwrap(), bytes);
        assert_eq!(c.read_range(FileType::Pack, &id, 1, 2).unwrap(), b"bc");
        // A failed call is still a request.
        assert!(c.read(FileType::Index, &id).is_err());
        c.list(FileType::Snapshot).unwrap();
        c.size(FileType::Snapshot, &id).unwrap();
        c.delete(FileType::Snapshot, &id).unwrap();
        let s = c.stats();
        assert_eq!(s.calls(Op::Write, FileType::Snapshot), 1);
        assert_eq!(s.calls(Op::Write, FileType::Pack), 1);
        assert_eq!(s.reads(FileType::Snapshot), 1);
        assert_eq!(s.reads(FileType::Pack), 1);
        assert_eq!(s.reads(FileType::Index), 1);
        assert_eq!(s.calls(Op::Create, FileType::Config), 1);
        assert_eq!(s.requests(), 9);
        assert_eq!(s.bytes_read, bytes.len() as u64 + 2);
        assert_eq!(s.bytes_written, bytes.len() as u64 + 3);
        assert_eq!(
            s.to_string(),
            "requests=9 bytes_read=16 bytes_written=17 config.create=1 pack.read_range=1 \
             pack.write=1 index.read=1 snapshot.list=1 snapshot.read=1 snapshot.size=1 \
             snapshot.write=1 snapshot.delete=1"
        );
    }

    #[test]
    fn nothing_counted_prints_zeros_only() {
        assert_eq!(
            Stats::default().to_string(),
            "requests=0 bytes_read=0 bytes_written=0"
        );
    }

    #[test]
    fn conformance_through_the_counter() {
        let mem: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
        crate::backend::conformance::run_all(&CountingBackend::new(mem));
    }
}
