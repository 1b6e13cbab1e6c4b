//! Applying a node's metadata (extended attributes, owner when root, mode, times) to the entry
//! a restore made or kept.
//!
//! Every step is attempted and every failure returned, rather than the first one stopping the
//! restore: one attribute the target file system refuses (a `trusted.*` name as non-root, a
//! value too large for ext4's inline space, a namespace tmpfs does not know) must not leave
//! the remaining files with the temporary 0600/0700 modes and the restore's own times.
//! Order matters: the owner before the mode (`chown` clears set-id bits), the times last
//! (setting attributes or the mode does not touch mtime, but writing xattrs can touch ctime).

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::format::tree::{Node, NodeKind};

/// One piece of metadata that could not be applied; the restore goes on.
#[derive(Debug)]
pub struct MetadataWarning {
    pub path: PathBuf,
    /// What was being set, e.g. `extended attribute "trusted.x"`.
    pub what: String,
    pub source: std::io::Error,
}

impl fmt::Display for MetadataWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: cannot set {}: {}",
            self.path.display(),
            self.what,
            self.source
        )
    }
}

fn ns_to_filetime(ns: i64) -> filetime::FileTime {
    filetime::FileTime::from_unix_time(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// Applies `node`'s metadata to `path`; returns what could not be applied. Never follows a
/// symlink: attributes use `lsetxattr`, the owner `lchown`, times `utimensat` with
/// `AT_SYMLINK_NOFOLLOW`, and a symlink's mode is not set (Linux has none).
pub fn apply(path: &Path, node: &Node, is_root: bool) -> Vec<MetadataWarning> {
    let symlink = matches!(node.kind, NodeKind::Symlink { .. });
    let mut warnings = Vec::new();
    let mut warn = |what: String, source: std::io::Error| {
        warnings.push(MetadataWarning {
            path: path.to_path_buf(),
            what,
            source,
        })
    };
    for x in &node.xattrs {
        // Linux refuses user.* attributes on symlinks, and backups of symlinks can only have
        // come from systems that allow them elsewhere: not worth a warning.
        if let Err(e) = xattr::set(path, super::os(&x.name), &x.value)
            && !symlink
        {
            warn(
                format!("extended attribute {:?}", String::from_utf8_lossy(&x.name)),
                e,
            );
        }
    }
    if is_root && let Err(e) = std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid)) {
        warn(format!("owner {}:{}", node.uid, node.gid), e);
    }
    if !symlink {
        let perms = std::fs::Permissions::from_mode(node.mode & 0o7777);
        if let Err(e) = std::fs::set_permissions(path, perms) {
            warn(format!("mode {:o}", node.mode & 0o7777), e);
        }
    }
    let (a, m) = (ns_to_filetime(node.atime_ns), ns_to_filetime(node.mtime_ns));
    if let Err(e) = filetime::set_symlink_file_times(path, a, m) {
        warn("modification time".into(), e);
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::Xattr;
    use std::os::unix::fs::MetadataExt;

    fn file_node(xattrs: Vec<Xattr>) -> Node {
        Node {
            name: b"f".to_vec(),
            kind: NodeKind::File {
                size: 0,
                content: vec![],
            },
            mode: 0o100_640,
            uid: 0,
            gid: 0,
            mtime_ns: 1_000_000_123,
            atime_ns: 1_000_000_123,
            ctime_ns: 0,
            inode: 0,
            device: 0,
            links: 1,
            xattrs,
        }
    }

    #[test]
    fn a_refused_xattr_is_a_warning_and_the_rest_is_still_applied() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        std::fs::write(&p, b"").unwrap();
        // No Linux file system knows the `bogus` namespace: EOPNOTSUPP everywhere.
        let node = file_node(vec![Xattr {
            name: b"bogus.attribute".to_vec(),
            value: b"v".to_vec(),
        }]);
        let w = apply(&p, &node, false);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].to_string().contains("bogus.attribute"), "{}", w[0]);
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(
            m.mode() & 0o7777,
            0o640,
            "mode not applied after the failure"
        );
        assert_eq!((m.mtime(), m.mtime_nsec()), (1, 123), "times not applied");
    }
}
