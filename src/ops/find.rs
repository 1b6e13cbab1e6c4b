//! Finding things: snapshots by id prefix or `latest` with filters, and nodes by path inside
//! a snapshot's tree.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::{BlobId, SnapshotId};
use crate::repo::{Index, Repository};

/// Which snapshots a command considers (restic's `--host`, `--tag`, `--path`).
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// Any of these hosts (empty: all).
    pub hosts: Vec<String>,
    /// Each entry is a comma-separated set of tags that must all be present; any entry may
    /// match (empty: all).
    pub tags: Vec<String>,
    /// Snapshots whose paths include all of these (empty: all).
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// Whether a snapshot passes.
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && (self.tags.is_empty()
                || self.tags.iter().any(|set| {
                    set.split(',')
                        .filter(|t| !t.is_empty())
                        .all(|t| s.tags.iter().any(|x| x == t))
                }))
            && self.paths.iter().all(|p| s.paths.iter().any(|x| x == p))
    }
}

/// Snapshots passing the filter, oldest first (damaged snapshots are skipped; see
/// [`Repository::scan_snapshots`]).
pub fn snapshots(
    repo: &Repository,
    filter: &SnapshotFilter,
) -> Result<Vec<(SnapshotId, Snapshot)>> {
    Ok(repo
        .list_snapshots()?
        .into_iter()
        .filter(|(_, s)| filter.matches(s))
        .collect())
}

/// Resolves `latest` (newest passing the filter) or a unique id prefix.
pub fn snapshot(
    repo: &Repository,
    spec: &str,
    filter: &SnapshotFilter,
) -> Result<(SnapshotId, Snapshot)> {
    if spec == "latest" {
        return snapshots(repo, filter)?
            .pop()
            .ok_or_else(|| Error::SnapshotNotFound { spec: spec.into() });
    }
    if spec.is_empty() || !spec.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::InvalidInput(format!(
            "{spec:?} is neither `latest` nor a snapshot id"
        )));
    }
    let ids: Vec<_> = repo
        .backend()
        .list(crate::backend::FileType::Snapshot)?
        .into_iter()
        .filter(|(id, _)| id.hex_starts_with(spec))
        .collect();
    match ids.as_slice() {
        [] => Err(Error::SnapshotNotFound { spec: spec.into() }),
        [(id, _)] => {
            let id = SnapshotId(*id);
            Ok((id, repo.load_snapshot(&id)?))
        }
        _ => Err(Error::AmbiguousSnapshot { spec: spec.into() }),
    }
}

/// Splits `SNAPSHOT[:PATH]` at the first `:`. The path is raw bytes: Unix names need not
/// be UTF-8.
pub fn split_spec(spec: &OsStr) -> (&OsStr, Option<&Path>) {
    use std::os::unix::ffi::OsStrExt;
    let b = spec.as_bytes();
    match b.iter().position(|&c| c == b':') {
        Some(i) => (
            OsStr::from_bytes(&b[..i]),
            Some(Path::new(OsStr::from_bytes(&b[i + 1..]))),
        ),
        None => (spec, None),
    }
}

/// A located entry: the snapshot root, or a node with its absolute path.
#[derive(Debug, Clone)]
pub enum Located {
    /// The root of the snapshot (`/`).
    Root(BlobId),
    /// A named entry.
    Node(PathBuf, Node),
}

/// The components of an absolute path in a snapshot; `..` is refused.
fn components(path: &Path) -> Result<Vec<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.as_bytes().to_vec()),
            Component::RootDir | Component::CurDir => {}
            _ => {
                return Err(Error::InvalidInput(format!(
                    "path {path:?} must not contain `..`"
                )));
            }
        }
    }
    Ok(out)
}

/// Finds a path below a root tree.
pub fn locate(
    repo: &Repository,
    index: &Index,
    root: &BlobId,
    path: &Path,
    snapshot: &str,
) -> Result<Located> {
    let comps = components(path)?;
    let mut tree_id = *root;
    let mut at = PathBuf::from("/");
    let not_found = || Error::PathNotFound {
        path: path.display().to_string(),
        snapshot: snapshot.to_owned(),
    };
    let mut found: Option<Node> = None;
    for (i, c) in comps.iter().enumerate() {
        let tree = repo.read_tree(index, &tree_id)?;
        let node = tree.get(c).cloned().ok_or_else(not_found)?;
        at.push(std::ffi::OsStr::from_bytes_compat(c));
        if i + 1 < comps.len() {
            match &node.kind {
                NodeKind::Dir { subtree } => tree_id = *subtree,
                _ => return Err(not_found()),
            }
        }
        found = Some(node);
    }
    Ok(match found {
        None => Located::Root(*root),
        Some(n) => Located::Node(at, n),
    })
}

/// Byte-string path helpers (Unix paths are bytes).
trait FromBytesCompat {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr;
}
impl FromBytesCompat for std::ffi::OsStr {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(b)
    }
}

/// Visits every node below `tree` in name order, depth first, with its absolute path.
/// The visitor returns whether to descend into a directory.
pub fn walk(
    repo: &Repository,
    index: &Index,
    tree: &BlobId,
    prefix: &Path,
    visit: &mut dyn FnMut(&Path, &Node) -> Result<bool>,
) -> Result<()> {
    let t: Tree = repo.read_tree(index, tree)?;
    for n in &t.nodes {
        let p = prefix.join(std::ffi::OsStr::from_bytes_compat(&n.name));
        let descend = visit(&p, n)?;
        if descend && let NodeKind::Dir { subtree } = &n.kind {
            walk(repo, index, subtree, &p, visit)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_and_components() {
        let os = OsStr::new;
        assert_eq!(
            split_spec(os("latest:/srv/app")),
            (os("latest"), Some(Path::new("/srv/app")))
        );
        assert_eq!(split_spec(os("abc")), (os("abc"), None));
        assert_eq!(
            components(Path::new("/a/./b/")).unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert!(components(Path::new("/a/../b")).is_err());
        assert!(components(Path::new("/")).unwrap().is_empty());
    }

    #[test]
    fn filter_tags_hosts_paths() {
        let s = Snapshot {
            time_unix_ns: 0,
            tz_offset_s: 0,
            hostname: "h1".into(),
            username: "u".into(),
            uid: 0,
            gid: 0,
            paths: vec!["/srv".into(), "/etc".into()],
            tags: vec!["db".into(), "nightly".into()],
            tree: BlobId::default(),
            parent: None,
            program_version: String::new(),
            incomplete: false,
            summary: Default::default(),
        };
        let f = |h: &[&str], t: &[&str], p: &[&str]| SnapshotFilter {
            hosts: h.iter().map(|x| x.to_string()).collect(),
            tags: t.iter().map(|x| x.to_string()).collect(),
            paths: p.iter().map(|x| x.to_string()).collect(),
        };
        assert!(f(&[], &[], &[]).matches(&s));
        assert!(f(&["h1"], &["db,nightly"], &["/srv"]).matches(&s));
        assert!(!f(&["h2"], &[], &[]).matches(&s));
        assert!(!f(&[], &["db,weekly"], &[]).matches(&s));
        assert!(f(&[], &["weekly", "db"], &[]).matches(&s));
        assert!(!f(&[], &[], &["/var"]).matches(&s));
    }
}
