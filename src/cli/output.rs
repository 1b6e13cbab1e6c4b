//! Rendering for humans and for scripts. JSON field names follow restic's where restic has
//! one, so scripts written for restic keep working.

use cista::format::snapshot::Snapshot;
use cista::format::tree::{Node, NodeKind};
use cista::id::SnapshotId;
use serde_json::{Value, json};

/// RFC 3339 time with the offset recorded in the snapshot.
pub fn rfc3339(ns: i64, offset_s: i32) -> String {
    let ts =
        jiff::Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let off = jiff::tz::Offset::from_seconds(offset_s).unwrap_or(jiff::tz::Offset::UTC);
    ts.to_zoned(jiff::tz::TimeZone::fixed(off))
        .strftime("%Y-%m-%dT%H:%M:%S%.f%:z")
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

/// A snapshot as restic's `snapshots --json` prints it (plus cista's summary fields).
pub fn snapshot_json(id: &SnapshotId, s: &Snapshot) -> Value {
    let sum = &s.summary;
    json!({
        "id": id.to_hex(),
        "short_id": id.to_string(),
        "time": rfc3339(s.time_unix_ns, s.tz_offset_s),
        "hostname": s.hostname,
        "username": s.username,
        "uid": s.uid,
        "gid": s.gid,
        "paths": s.paths,
        "tags": s.tags,
        "tree": s.tree.to_hex(),
        "parent": s.parent.map(|p| p.to_hex()),
        "program_version": s.program_version,
        "incomplete": s.incomplete,
        "summary": {
            "backup_start": rfc3339(sum.backup_start_ns, s.tz_offset_s),
            "backup_end": rfc3339(sum.backup_end_ns, s.tz_offset_s),
            "files_new": sum.files_new,
            "files_changed": sum.files_changed,
            "files_unmodified": sum.files_unmodified,
            "dirs_new": sum.dirs_new,
            "dirs_changed": sum.dirs_changed,
            "dirs_unmodified": sum.dirs_unmodified,
            "data_blobs_added": sum.blobs_added,
            "data_added": sum.data_added,
            "data_added_packed": sum.data_added_packed,
            "total_files_processed": sum.total_files_processed,
            "total_bytes_processed": sum.total_bytes_processed,
            "errors": sum.errors,
        },
    })
}

/// One node as restic's `ls --json` prints it.
pub fn node_json(path: &str, n: &Node) -> Value {
    let (kind, size, target) = match &n.kind {
        NodeKind::File { size, .. } => ("file", Some(*size), None),
        NodeKind::Dir { .. } | NodeKind::DirParts { .. } => ("dir", None, None),
        NodeKind::Symlink { target } => (
            "symlink",
            None,
            Some(String::from_utf8_lossy(target).into_owned()),
        ),
        NodeKind::Fifo => ("fifo", None, None),
    };
    let mut v = json!({
        "name": String::from_utf8_lossy(&n.name),
        "type": kind,
        "path": path,
        "uid": n.uid,
        "gid": n.gid,
        "mode": n.mode,
        "permissions": mode_string(n),
        "mtime": rfc3339(n.mtime_ns, 0),
        "atime": rfc3339(n.atime_ns, 0),
        "ctime": rfc3339(n.ctime_ns, 0),
        "inode": n.inode,
        "struct_type": "node",
        "message_type": "node",
    });
    if let Some(s) = size {
        v["size"] = json!(s);
    }
    if let Some(t) = target {
        v["linktarget"] = json!(t);
    }
    v
}

/// `drwxr-xr-x`-style mode.
pub fn mode_string(n: &Node) -> String {
    let t = match n.kind {
        NodeKind::File { .. } => '-',
        NodeKind::Dir { .. } | NodeKind::DirParts { .. } => 'd',
        NodeKind::Symlink { .. } => 'l',
        NodeKind::Fifo => 'p',
    };
    let mut s = String::from(t);
    for shift in [6, 3, 0] {
        let bits = (n.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
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
        assert_eq!(short_time(1_500_000_000, 0), "1970-01-01 00:00:01");
    }
}
