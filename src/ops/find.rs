//! Finding things: snapshots by id prefix or `latest` with filters, nodes by path inside a
//! snapshot's tree, and the one walk of a snapshot's trees that every reader uses (ls, find,
//! restore, dump): iterative, reading a split directory one part at a time, with the caps of
//! docs/FORMAT.md §20 so a crafted tree costs neither stack nor unbounded memory.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{
    MAX_DEPTH, MAX_FANOUT, MAX_PATH_BYTES, MAX_WALK_TREE_BYTES, MIN_WALK_ENTRIES, Node, NodeKind,
    Tree,
};
use crate::id::{BlobId, SnapshotId};
use crate::repo::{Index, Repository};

/// Which snapshots a command considers (restic's `--host`, `--tag`, `--path`).
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// Any of these hosts (empty: all).
    pub hosts: Vec<String>,
    /// Each entry is a comma-separated set of tags that must all be present; any entry may
    /// match (empty: all). The entry `''` matches untagged snapshots, as restic's `--tag ''`
    /// (forget must not widen a selection restic would have kept narrow).
    pub tags: Vec<String>,
    /// Snapshots whose paths include all of these (empty: all).
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// Whether a snapshot passes.
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && (self.tags.is_empty()
                || self
                    .tags
                    .iter()
                    .any(|set| crate::ops::retention::TagList::parse(set).matches(&s.tags)))
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
    let mut dir = NodeKind::Dir { subtree: *root };
    let mut at = PathBuf::from("/");
    let not_found = || Error::PathNotFound {
        path: path.display().to_string(),
        snapshot: snapshot.to_owned(),
    };
    let mut found: Option<Node> = None;
    for c in &comps {
        let node = lookup(repo, index, &dir, c)?.ok_or_else(not_found)?;
        at.push(OsStr::from_bytes(c));
        if at.as_os_str().len() > MAX_PATH_BYTES {
            return Err(not_found());
        }
        dir = node.kind.clone();
        found = Some(node);
    }
    Ok(match found {
        None => Located::Root(*root),
        Some(n) => Located::Node(at, n),
    })
}

/// Finds one entry of a directory, reading its parts in order until the name's place is
/// passed; `None` when the directory has no such entry or `dir` is not a directory.
fn lookup(repo: &Repository, index: &Index, dir: &NodeKind, name: &[u8]) -> Result<Option<Node>> {
    let Some(parts) = dir.dir_parts() else {
        return Ok(None);
    };
    let split = matches!(dir, NodeKind::DirParts { .. });
    let mut last: Option<Vec<u8>> = None;
    for id in parts {
        let t = repo.read_tree(index, id)?;
        if split {
            t.check_follows(last.as_deref())
                .map_err(|e| Error::corrupt("tree", id, e))?;
        }
        if let Some(n) = t.get(name) {
            return Ok(Some(n.clone()));
        }
        match t.nodes.last() {
            Some(l) if l.name.as_slice() > name => return Ok(None),
            Some(l) => last = Some(l.name.clone()),
            None => {}
        }
    }
    Ok(None)
}

/// What a walk shows its visitor.
#[derive(Debug)]
pub enum Visit<'a> {
    /// An entry with its absolute path; the visitor returns whether to descend into it.
    Entry(&'a Path, &'a Node),
    /// All entries below this directory (one the visitor descended into) have been visited.
    Leave(&'a Path),
    /// Only from [`walk_events_past_damage`]: a part of this directory's tree (below the one
    /// the walk started in) is damaged or missing, so the entries it held, and any later part's,
    /// are not visited; `Leave` follows, then the walk goes on with the directory's siblings.
    Damaged(&'a Path, &'a Error),
}

/// One open directory of a walk: the part being read and the parts still to read.
struct Frame {
    parts: Vec<BlobId>,
    next_part: usize,
    split: bool,
    tree: Arc<Tree>,
    pos: usize,
    held: u64,
}

/// The caps every walk of a snapshot's trees enforces (docs/FORMAT.md §20): depth, path
/// bytes, entries visited relative to what was read, and tree bytes held at once. A walk is
/// iterative, so a hostile tree costs neither stack nor more memory than these allow.
struct Walker<'r> {
    repo: &'r Repository,
    index: &'r Index,
    stack: Vec<Frame>,
    path: PathBuf,
    visited: u64,
    distinct_entries: u64,
    read: HashSet<BlobId>,
    held: u64,
    cache: TreeCache,
    /// Report a damaged subdirectory as [`Visit::Damaged`] and go on, instead of failing.
    past_damage: bool,
}

/// Recently read trees, so a subtree met again (every empty directory shares one tree) is not
/// fetched and decrypted again. Bounded by [`TREE_CACHE_BYTES`] of encoded trees: when full it
/// is emptied, which is simple and keeps the bound exact.
#[derive(Default)]
struct TreeCache {
    trees: HashMap<BlobId, Arc<Tree>>,
    bytes: u64,
}

/// Encoded tree bytes a walk keeps cached.
const TREE_CACHE_BYTES: u64 = 32 << 20;

impl TreeCache {
    fn get(
        &mut self,
        repo: &Repository,
        index: &Index,
        id: &BlobId,
        len: u64,
    ) -> Result<Arc<Tree>> {
        if let Some(t) = self.trees.get(id) {
            return Ok(t.clone());
        }
        let t = Arc::new(repo.read_tree(index, id)?);
        if len <= TREE_CACHE_BYTES / 4 {
            if self.bytes + len > TREE_CACHE_BYTES {
                self.trees.clear();
                self.bytes = 0;
            }
            self.bytes += len;
            self.trees.insert(*id, t.clone());
        }
        Ok(t)
    }
}

impl Walker<'_> {
    fn limit(&self, reason: String) -> Error {
        Error::TreeLimit {
            path: self.path.clone(),
            reason,
        }
    }

    fn open(&mut self, dir: &NodeKind) -> Result<()> {
        let Some(parts) = dir.dir_parts() else {
            return Ok(());
        };
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.limit(format!("directories nest deeper than {MAX_DEPTH} levels")));
        }
        let split = matches!(dir, NodeKind::DirParts { .. });
        if split && parts.is_empty() {
            return Err(self.limit("a split directory has no parts".into()));
        }
        self.stack.push(Frame {
            parts: parts.to_vec(),
            next_part: 0,
            split,
            tree: Arc::new(Tree::default()),
            pos: 0,
            held: 0,
        });
        Ok(())
    }

    /// Loads the next part of the innermost directory; false when it has none left.
    fn next_part(&mut self) -> Result<bool> {
        let Some(f) = self.stack.last() else {
            return Ok(false);
        };
        let Some(id) = f.parts.get(f.next_part).copied() else {
            return Ok(false);
        };
        let len = self
            .index
            .get(&id)
            .map_or(0, |l| u64::from(l.entry.raw_len));
        let held = self.held - f.held + len;
        if held > MAX_WALK_TREE_BYTES {
            return Err(self.limit(format!(
                "the open directories' trees exceed {MAX_WALK_TREE_BYTES} bytes"
            )));
        }
        let t = self.cache.get(self.repo, self.index, &id, len)?;
        if f.split {
            let last = f.tree.nodes.last().map(|n| n.name.as_slice());
            t.check_follows(last)
                .map_err(|e| Error::corrupt("tree", id, e))?;
        }
        if self.read.insert(id) {
            self.distinct_entries += t.nodes.len() as u64;
        }
        self.held = held;
        let Some(f) = self.stack.last_mut() else {
            return Ok(false);
        };
        f.held = len;
        f.next_part += 1;
        f.tree = t;
        f.pos = 0;
        Ok(true)
    }

    fn run(&mut self, visit: &mut dyn FnMut(Visit<'_>) -> Result<bool>) -> Result<()> {
        loop {
            let Some(f) = self.stack.last_mut() else {
                return Ok(());
            };
            let tree = f.tree.clone();
            let Some(node) = tree.nodes.get(f.pos) else {
                match self.next_part() {
                    Ok(true) => continue,
                    Ok(false) => {}
                    // Damage below the walk's own directory costs that directory's entries
                    // only; a walk limit, a storage error or damage at the top still stops it.
                    Err(e @ Error::Corrupt { .. }) if self.past_damage && self.stack.len() > 1 => {
                        visit(Visit::Damaged(&self.path, &e))?;
                    }
                    Err(e) => return Err(e),
                }
                if let Some(f) = self.stack.pop() {
                    self.held -= f.held;
                }
                if !self.stack.is_empty() {
                    visit(Visit::Leave(&self.path))?;
                    self.path.pop();
                }
                continue;
            };
            f.pos += 1;
            self.visited += 1;
            let cap = MIN_WALK_ENTRIES.max(MAX_FANOUT.saturating_mul(self.distinct_entries));
            self.path.push(OsStr::from_bytes(&node.name));
            if self.visited > cap {
                return Err(self.limit(format!(
                    "more than {cap} entries from {} stored ones: trees reference the same \
                     subtrees over and over",
                    self.distinct_entries
                )));
            }
            if self.path.as_os_str().len() > MAX_PATH_BYTES {
                return Err(self.limit(format!("path is longer than {MAX_PATH_BYTES} bytes")));
            }
            if visit(Visit::Entry(&self.path, node))? && node.kind.is_dir() {
                self.open(&node.kind)?;
            } else {
                self.path.pop();
            }
        }
    }
}

/// Visits every entry below the directory `dir` (the root's `Dir` or a located node's kind) in
/// name order, depth first, with its absolute path below `prefix`, and reports each directory
/// it descended into when done. Iterative, with the caps of docs/FORMAT.md §20.
pub fn walk_events(
    repo: &Repository,
    index: &Index,
    dir: &NodeKind,
    prefix: &Path,
    visit: &mut dyn FnMut(Visit<'_>) -> Result<bool>,
) -> Result<()> {
    walker(repo, index, prefix, false).walk(dir, visit)
}

/// [`walk_events`] that reports a damaged or missing subdirectory tree as
/// [`Visit::Damaged`] and goes on with the rest (restore: one bad tree blob costs what it
/// held, not the whole restore).
pub fn walk_events_past_damage(
    repo: &Repository,
    index: &Index,
    dir: &NodeKind,
    prefix: &Path,
    visit: &mut dyn FnMut(Visit<'_>) -> Result<bool>,
) -> Result<()> {
    walker(repo, index, prefix, true).walk(dir, visit)
}

fn walker<'r>(
    repo: &'r Repository,
    index: &'r Index,
    prefix: &Path,
    past_damage: bool,
) -> Walker<'r> {
    Walker {
        repo,
        index,
        stack: Vec::new(),
        path: prefix.to_path_buf(),
        visited: 0,
        distinct_entries: 0,
        read: HashSet::new(),
        held: 0,
        cache: TreeCache::default(),
        past_damage,
    }
}

impl Walker<'_> {
    fn walk(
        mut self,
        dir: &NodeKind,
        visit: &mut dyn FnMut(Visit<'_>) -> Result<bool>,
    ) -> Result<()> {
        self.open(dir)?;
        self.run(visit)
    }
}

/// Like [`walk_events`], for visitors that need no `Leave`: the visitor returns whether to
/// descend into a directory.
pub fn walk_dir(
    repo: &Repository,
    index: &Index,
    dir: &NodeKind,
    prefix: &Path,
    visit: &mut dyn FnMut(&Path, &Node) -> Result<bool>,
) -> Result<()> {
    walk_events(repo, index, dir, prefix, &mut |v| match v {
        Visit::Entry(p, n) => visit(p, n),
        Visit::Leave(_) | Visit::Damaged(..) => Ok(false),
    })
}

/// [`walk_dir`] below one tree blob (a snapshot's root tree).
pub fn walk(
    repo: &Repository,
    index: &Index,
    tree: &BlobId,
    prefix: &Path,
    visit: &mut dyn FnMut(&Path, &Node) -> Result<bool>,
) -> Result<()> {
    walk_dir(
        repo,
        index,
        &NodeKind::Dir { subtree: *tree },
        prefix,
        visit,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::BlobType;
    use crate::format::tree::Tree;
    use crate::format::tree::tests::node;
    use crate::repo::packer::{Packer, SealedBlob};
    use crate::repo::tests::repo;

    /// Stores trees of named pipes in an in-memory repository; returns it, its index and
    /// their ids.
    fn stored(trees: &[Vec<&str>]) -> (Repository, Index, Vec<BlobId>) {
        let trees = trees
            .iter()
            .map(|names| {
                names
                    .iter()
                    .map(|n| node(n.as_bytes(), NodeKind::Fifo))
                    .collect()
            })
            .collect();
        stored_nodes(trees)
    }

    /// Stores trees of these nodes in an in-memory repository.
    fn stored_nodes(trees: Vec<Vec<Node>>) -> (Repository, Index, Vec<BlobId>) {
        let r = repo();
        let p = Packer::new(&r).unwrap();
        let mut ids = Vec::new();
        for nodes in trees {
            let bytes = Tree { nodes }.encode();
            let id = r.blob_id(&bytes);
            let sealed = r.seal_blob(BlobType::Tree, &id, &bytes).unwrap();
            let raw_len = bytes.len() as u32;
            let blob_type = BlobType::Tree;
            p.add(SealedBlob {
                blob_type,
                id,
                raw_len,
                sealed,
            })
            .unwrap();
            ids.push(id);
        }
        p.finish().unwrap();
        let index = r.load_index().unwrap();
        (r, index, ids)
    }

    fn names(r: &Repository, index: &Index, dir: &NodeKind) -> Result<Vec<String>> {
        let mut out = Vec::new();
        walk_events(r, index, dir, Path::new("/x"), &mut |v| {
            out.push(match v {
                Visit::Entry(p, _) => p.display().to_string(),
                Visit::Leave(p) => format!("leave {}", p.display()),
                Visit::Damaged(p, _) => format!("damaged {}", p.display()),
            });
            Ok(true)
        })?;
        Ok(out)
    }

    /// A subdirectory whose tree is missing costs its own entries only when the walk is asked
    /// to go past damage; the top directory's own damage, and every plain walk, still fail.
    #[test]
    fn walk_past_damage_skips_only_the_damaged_subdirectory() {
        let missing = BlobId(crate::id::Id([9; 32]));
        let (r, index, ids) = stored_nodes(vec![vec![
            node(b"a", NodeKind::Dir { subtree: missing }),
            node(b"b", NodeKind::Fifo),
        ]]);
        let top = NodeKind::Dir { subtree: ids[0] };
        let mut seen = Vec::new();
        walk_events_past_damage(&r, &index, &top, Path::new("/x"), &mut |v| {
            seen.push(match v {
                Visit::Entry(p, _) => p.display().to_string(),
                Visit::Leave(p) => format!("leave {}", p.display()),
                Visit::Damaged(p, e) => {
                    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
                    format!("damaged {}", p.display())
                }
            });
            Ok(true)
        })
        .unwrap();
        assert_eq!(seen, ["/x/a", "damaged /x/a", "leave /x/a", "/x/b"]);
        assert!(names(&r, &index, &top).is_err(), "a plain walk fails on it");
        let gone = NodeKind::Dir { subtree: missing };
        assert!(
            walk_events_past_damage(&r, &index, &gone, Path::new("/x"), &mut |_| Ok(true)).is_err(),
            "damage at the top is the whole walk"
        );
    }

    #[test]
    fn walk_reads_split_directories_part_by_part_in_order() {
        let (r, index, ids) = stored(&[vec!["a", "b"], vec!["c"], vec!["b", "d"], vec![]]);
        let split = NodeKind::DirParts {
            parts: vec![ids[0], ids[1]],
        };
        assert_eq!(names(&r, &index, &split).unwrap(), ["/x/a", "/x/b", "/x/c"]);
        // Overlapping parts, an empty part and no parts are damage.
        for parts in [vec![ids[0], ids[2]], vec![ids[0], ids[3]], vec![]] {
            let bad = NodeKind::DirParts { parts };
            assert!(names(&r, &index, &bad).is_err());
        }
        // An ordinary empty directory is fine.
        let empty = NodeKind::Dir { subtree: ids[3] };
        assert!(names(&r, &index, &empty).unwrap().is_empty());
        assert!(lookup(&r, &index, &split, b"c").unwrap().is_some());
        assert!(lookup(&r, &index, &split, b"bb").unwrap().is_none());
    }

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
            original: None,
            summary: Default::default(),
            lost: None,
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
        // `--tag ''` selects untagged snapshots only (restic's HasTags).
        assert!(!f(&[], &[""], &[]).matches(&s));
        let untagged = Snapshot {
            tags: vec![],
            ..s.clone()
        };
        assert!(f(&[], &[""], &[]).matches(&untagged));
        assert!(!f(&[], &["db"], &[]).matches(&untagged));
    }
}
