//! Rendering for humans and for scripts, and the one way to write to standard output. JSON
//! field names follow restic's where restic has one, so scripts written for restic keep
//! working.
//!
//! Every byte for standard output goes through [`Out`], whose writes return errors instead of
//! panicking the way `println!` does. A reader that went away (`cista ls | head -1`) turns into
//! a [`StdoutClosed`] error, which `main` ends quietly with exit code 141
//! ([`super::code::STDOUT_CLOSED`]), the status a shell reports for a program killed by SIGPIPE
//! (what restic, a Go program, dies of). Messages for standard error go through [`warn`],
//! which never fails: if standard error is gone too there is nobody left to tell.

use cista::format::snapshot::{Snapshot, Summary};
use cista::format::tree::{Node, NodeKind};
use cista::id::SnapshotId;
use serde_json::{Value, json};
use std::io::Write;

/// Standard output's reader went away (EPIPE): the command stops, quietly.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

/// Whether an error chain ends in a closed standard output.
pub fn is_stdout_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.is::<StdoutClosed>()
            || c.downcast_ref::<std::io::Error>()
                .and_then(|e| e.get_ref())
                .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

/// Buffered standard output whose every write returns its error. Call [`Out::finish`] at the
/// end so the last buffered bytes' error is seen too.
#[derive(Debug)]
pub struct Out {
    w: std::io::BufWriter<std::io::Stdout>,
}

impl Default for Out {
    fn default() -> Self {
        Self::new()
    }
}

impl Out {
    /// Standard output with a 64 KiB buffer.
    pub fn new() -> Self {
        Self {
            w: std::io::BufWriter::with_capacity(64 << 10, std::io::stdout()),
        }
    }

    /// Writes one line.
    pub fn line(&mut self, line: impl std::fmt::Display) -> std::io::Result<()> {
        writeln!(self, "{line}")
    }

    /// Flushes what is buffered.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.flush()
    }
}

/// Marks a broken pipe as "standard output closed" so only that error exits quietly (an EPIPE
/// from anything else, a password command say, is still reported).
fn mark(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        e
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.w.write(buf).map_err(mark)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.w.write_all(buf).map_err(mark)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush().map_err(mark)
    }
}

/// One line on standard error (`warning: ...`, the final error). Failures are ignored: there
/// is no other place to report them.
pub fn warn(line: impl std::fmt::Display) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{line}");
}

/// A time as Go's `time.Time` marshals to JSON (RFC 3339 with nanoseconds, what restic
/// prints): trailing zeros of the fraction dropped (no dot at all for whole seconds), and `Z`
/// for a zero offset, else `+hh:mm`.
fn go_time(ns: i64, tz: &jiff::tz::TimeZone) -> String {
    let ts =
        jiff::Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let z = ts.to_zoned(tz.clone());
    let mut out = z.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let frac = z.subsec_nanosecond();
    if frac > 0 {
        let digits = format!("{frac:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    let off = z.offset().seconds();
    if off == 0 {
        out.push('Z');
    } else {
        let sign = if off < 0 { '-' } else { '+' };
        let a = off.unsigned_abs();
        out.push_str(&format!("{sign}{:02}:{:02}", a / 3600, a / 60 % 60));
    }
    out
}

/// RFC 3339 time in a fixed UTC offset (a snapshot's recorded one), as restic prints a
/// snapshot's `time`: restic keeps the zone the backup ran in.
pub fn rfc3339(ns: i64, offset_s: i32) -> String {
    let off = jiff::tz::Offset::from_seconds(offset_s).unwrap_or(jiff::tz::Offset::UTC);
    go_time(ns, &jiff::tz::TimeZone::fixed(off))
}

/// RFC 3339 time in this machine's time zone at that instant, as restic prints a node's
/// `mtime`/`atime`/`ctime` (Go's `time.Unix` gives local time; the offset follows daylight
/// saving per instant). cista stores no zone per node, so the reader's zone stands in for the
/// writer's, which is the same machine in the common case.
pub fn local_time(ns: i64) -> String {
    go_time(ns, &jiff::tz::TimeZone::system())
}

/// `YYYY-MM-DD HH:MM:SS` in this machine's time zone: restic's `TimeFormat` as `key list`
/// prints a key's creation time (`Created.Local()`).
pub fn local_short_time(ns: i64) -> String {
    let ts =
        jiff::Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.to_zoned(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// `YYYY-MM-DD HH:MM:SS` in the recorded offset.
pub fn short_time(ns: i64, offset_s: i32) -> String {
    let ts =
        jiff::Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let off = jiff::tz::Offset::from_seconds(offset_s).unwrap_or(jiff::tz::Offset::UTC);
    ts.to_zoned(jiff::tz::TimeZone::fixed(off))
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A count and its noun: `1 file`, `2 files`.
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `1.234 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.3} {}", UNITS[u])
    }
}

/// A snapshot as restic's `snapshots --json` prints it: restic's `omitempty` fields (`parent`,
/// `tags`, `uid`, `gid`) are left out when empty or zero, as restic leaves them out; cista's
/// own `incomplete` is extra.
pub fn snapshot_json(id: &SnapshotId, s: &Snapshot) -> Value {
    let mut v = json!({
        "id": id.to_hex(),
        "short_id": id.to_string(),
        "time": rfc3339(s.time_unix_ns, s.tz_offset_s),
        "hostname": s.hostname,
        "username": s.username,
        "paths": s.paths,
        "tree": s.tree.to_hex(),
        "program_version": s.program_version,
        "incomplete": s.incomplete,
        "summary": summary_json(&s.summary, s.tz_offset_s),
    });
    if let Some(p) = &s.parent {
        v["parent"] = json!(p.to_hex());
    }
    if let Some(o) = &s.original {
        v["original"] = json!(o.to_hex());
    }
    if !s.tags.is_empty() {
        v["tags"] = json!(s.tags);
    }
    if s.uid != 0 {
        v["uid"] = json!(s.uid);
    }
    if s.gid != 0 {
        v["gid"] = json!(s.gid);
    }
    v
}

/// A snapshot's `summary` with restic 0.17's field names (`errors` is cista's own).
///
pub fn summary_json(sum: &Summary, offset_s: i32) -> Value {
    json!({
        "backup_start": rfc3339(sum.backup_start_ns, offset_s),
        "backup_end": rfc3339(sum.backup_end_ns, offset_s),
        "files_new": sum.files_new,
        "files_changed": sum.files_changed,
        "files_unmodified": sum.files_unmodified,
        "dirs_new": sum.dirs_new,
        "dirs_changed": sum.dirs_changed,
        "dirs_unmodified": sum.dirs_unmodified,
        "data_blobs": sum.data_blobs,
        "tree_blobs": sum.tree_blobs,
        "data_added": sum.data_added,
        "data_added_packed": sum.data_added_packed,
        "total_files_processed": sum.total_files_processed,
        "total_bytes_processed": sum.total_bytes_processed,
        "errors": sum.errors,
    })
}

/// The first line of `ls --json`: the snapshot, marked as restic marks it.
pub fn ls_snapshot_json(id: &SnapshotId, s: &Snapshot) -> Value {
    let mut head = snapshot_json(id, s);
    head["struct_type"] = "snapshot".into();
    head["message_type"] = "snapshot".into();
    head
}

/// One node as restic's `ls --json` prints it: `size` for files only (0 included), `mode` as
/// Go's `os.FileMode`, `permissions` as its `String()`, times in the local zone. `linktarget`
/// is cista's own (restic stores it in the tree but does not print it here).
pub fn node_json(path: &str, n: &Node) -> Value {
    let mut v = json!({
        "name": String::from_utf8_lossy(&n.name),
        "type": node_type(n),
        "path": path,
        "uid": n.uid,
        "gid": n.gid,
        "mode": go_file_mode(n),
        "permissions": mode_string(n),
        "mtime": local_time(n.mtime_ns),
        "atime": local_time(n.atime_ns),
        "ctime": local_time(n.ctime_ns),
        "struct_type": "node",
        "message_type": "node",
    });
    if n.inode != 0 {
        v["inode"] = json!(n.inode);
    }
    match &n.kind {
        NodeKind::File { size, .. } => v["size"] = json!(size),
        NodeKind::Symlink { target } => {
            v["linktarget"] = json!(String::from_utf8_lossy(target));
        }
        NodeKind::Dir { .. } | NodeKind::DirParts { .. } | NodeKind::Fifo => {}
    }
    v
}

/// restic's node type name.
pub fn node_type(n: &Node) -> &'static str {
    match n.kind {
        NodeKind::File { .. } => "file",
        NodeKind::Dir { .. } | NodeKind::DirParts { .. } => "dir",
        NodeKind::Symlink { .. } => "symlink",
        NodeKind::Fifo => "fifo",
    }
}

/// Go's `os.FileMode` bits, which restic writes as `mode` (Go's io/fs constants). Device and
/// socket bits are here for completeness: cista stores no such nodes yet.
#[allow(dead_code)]
mod go_mode {
    pub const DIR: u32 = 1 << 31;
    pub const SYMLINK: u32 = 1 << 27;
    pub const DEVICE: u32 = 1 << 26;
    pub const NAMED_PIPE: u32 = 1 << 25;
    pub const SOCKET: u32 = 1 << 24;
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const CHAR_DEVICE: u32 = 1 << 21;
    pub const STICKY: u32 = 1 << 20;
}

/// A node's mode as Go's `os.FileMode`: the type from the node's kind, the set-id and sticky
/// bits and permissions from the stored `st_mode`.
pub fn go_file_mode(n: &Node) -> u32 {
    let kind = match n.kind {
        NodeKind::File { .. } => 0,
        NodeKind::Dir { .. } | NodeKind::DirParts { .. } => go_mode::DIR,
        NodeKind::Symlink { .. } => go_mode::SYMLINK,
        NodeKind::Fifo => go_mode::NAMED_PIPE,
    };
    go_file_mode_of(kind, n.mode)
}

/// Go's mode from a type bit and a Unix `st_mode` (whose type bits are ignored).
fn go_file_mode_of(kind: u32, st_mode: u32) -> u32 {
    let mut m = kind | (st_mode & 0o777);
    if st_mode & 0o4000 != 0 {
        m |= go_mode::SETUID;
    }
    if st_mode & 0o2000 != 0 {
        m |= go_mode::SETGID;
    }
    if st_mode & 0o1000 != 0 {
        m |= go_mode::STICKY;
    }
    m
}

/// Go's `os.FileMode.String()`, which restic prints as `permissions` and in `ls -l`:
/// `drwxr-xr-x`, `Lrwxrwxrwx`, `urwxr-xr-x` (setuid), `dtrwxrwxrwx` (sticky directory).
pub fn mode_string(n: &Node) -> String {
    go_mode_string(go_file_mode(n))
}

fn go_mode_string(m: u32) -> String {
    // Go's letters for bits 31 down to 19, in this order.
    const LETTERS: &[u8; 13] = b"dalTLDpSugct?";
    let mut s = String::with_capacity(20);
    for (i, c) in LETTERS.iter().enumerate() {
        if m & (1 << (31 - i)) != 0 {
            s.push(char::from(*c));
        }
    }
    if s.is_empty() {
        s.push('-');
    }
    for (i, c) in b"rwxrwxrwx".iter().enumerate() {
        s.push(if m & (1 << (8 - i)) != 0 {
            char::from(*c)
        } else {
            '-'
        });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(10), "10 B");
        assert_eq!(bytes(1536), "1.500 KiB");
        assert_eq!(rfc3339(0, 3600), "1970-01-01T01:00:00+01:00");
        // Go's RFC3339Nano: Z for UTC, fraction without trailing zeros, none when whole.
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500_000_000, 0), "1970-01-01T00:00:01.5Z");
        assert_eq!(
            rfc3339(123_456_789, -5400),
            "1969-12-31T22:30:00.123456789-01:30"
        );
        assert_eq!(rfc3339(-1, 0), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(short_time(1_500_000_000, 0), "1970-01-01 00:00:01");
    }

    /// The values restic 0.14 printed for the same modes (tests/integration/restic_compat.rs
    /// checks them against a live restic when one is installed).
    #[test]
    fn go_file_modes_match_restic() {
        let cases = [
            (go_mode::DIR, 0o040755, 2147484141, "drwxr-xr-x"),
            (go_mode::DIR, 0o041777, 2148532735, "dtrwxrwxrwx"),
            (0, 0o100644, 420, "-rw-r--r--"),
            (0, 0o104755, 8389101, "urwxr-xr-x"),
            (0, 0o102755, 4194797, "grwxr-xr-x"),
            (go_mode::NAMED_PIPE, 0o010644, 33554852, "prw-r--r--"),
            (go_mode::SYMLINK, 0o120777, 134218239, "Lrwxrwxrwx"),
        ];
        for (kind, st, go, text) in cases {
            let m = go_file_mode_of(kind, st);
            assert_eq!(m, go, "{st:o}");
            assert_eq!(go_mode_string(m), text, "{st:o}");
        }
        // Types cista does not store yet still render as Go does.
        assert_eq!(
            go_mode_string(go_mode::DEVICE | go_mode::CHAR_DEVICE | 0o666),
            "Dcrw-rw-rw-"
        );
        assert_eq!(go_mode_string(go_mode::SOCKET | 0o755), "Srwxr-xr-x");
    }
}
