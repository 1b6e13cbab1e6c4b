//! Rewriting snapshots: the seam `rewrite` (excluding files) and `repair snapshots` (emptying
//! what was lost) stand on. One walk of a snapshot's trees ([`crate::ops::find`]'s iterative,
//! capped walk) asks a [`NodeFilter`] what to do with each entry, and writes the changed
//! directories bottom-up as new tree blobs through the [`Packer`]: a directory in which
//! nothing changed keeps its node and tree ids, so only the path from the root to a change is
//! written again. The new snapshot copies the old one's time, host, paths and tags, records
//! it as `original`, and is saved after its trees' index files (FORMAT §18).
//!
//! Not here: choosing snapshots and what to exclude ([`exclude`]), deciding what is lost
//! ([`repair`]), and deleting anything but the rewritten snapshots (`--forget`): the old data
//! is freed by a later prune.
//!
//! Memory: one part of encoded entries per open directory for the new trees, beside the
//! walk's own bound (docs/FORMAT.md §20), plus the ids of the tree blobs this run stored.

pub mod exclude;
pub mod repair;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::format::FormatError;
use crate::format::pack::{BlobType, MAX_BLOB_LEN};
use crate::format::snapshot::{MAX_SNAPSHOT_LEN, Snapshot};
use crate::format::tree::{Node, NodeKind, PartWriter, Tree};
use crate::id::{BlobId, PackId, SnapshotId};
use crate::ops::CancelFlag;
use crate::ops::find::{self, Visit};
use crate::repo::packer::{Packer, SealedBlob};
use crate::repo::{Index, Repository};

/// What to do with one entry of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Keep it; a directory is walked, and rewritten if something below it changes.
    Keep,
    /// Leave it out, with everything below it.
    Drop,
    /// Keep its name and metadata but no contents: a file of 0 bytes, an empty directory
    /// (not walked).
    Empty,
}

/// Decides, entry by entry, what a rewritten snapshot keeps.
pub trait NodeFilter {
    /// Called for every entry in walk order (name order, depth first) with its absolute
    /// path in the snapshot.
    fn entry(&mut self, path: &Path, node: &Node) -> Result<Decision>;

    /// Whether a subdirectory whose tree is damaged is written with the entries that could
    /// be read (then [`NodeFilter::damaged`] is told), instead of failing the rewrite.
    fn goes_past_damage(&self) -> bool {
        false
    }

    /// A subdirectory's tree, or one part of a split one, could not be read: its entries
    /// from there on are not in the rewritten snapshot.
    fn damaged(&mut self, path: &Path, error: &Error) -> Result<()> {
        Err(Error::InvalidInput(format!("{}: {error}", path.display())))
    }
}

/// A rewritten root tree, with the totals restic records for a rewritten snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewTree {
    /// The new root tree's id.
    pub tree: BlobId,
    /// Regular files in the new tree (restic's `total_files_processed`).
    pub files: u64,
    /// Their bytes (restic's `total_bytes_processed`).
    pub bytes: u64,
}

/// Stores the new tree blobs of a rewrite run (nothing in a dry run): a blob the index
/// already has from an index file, or this run already stored, is not stored again.
#[derive(Debug)]
pub struct TreeStore<'r> {
    repo: &'r Repository,
    index: &'r Index,
    /// Packs indexed from their headers only (no index file names them): their blobs are
    /// not reused, since nothing verified them (FORMAT §18 rule 6).
    recovered: HashSet<PackId>,
    packer: Option<Packer>,
    stored: HashSet<BlobId>,
    cancel: CancelFlag,
    /// Tree blobs stored (or, in a dry run, that would be).
    pub tree_blobs: u64,
}

impl<'r> TreeStore<'r> {
    /// A store writing through a new [`Packer`], or writing nothing when `dry_run`. A walk
    /// through it stops with [`Error::Interrupted`] once `cancel` is set.
    pub fn new(
        repo: &'r Repository,
        index: &'r Index,
        dry_run: bool,
        cancel: &CancelFlag,
    ) -> Result<Self> {
        Ok(Self {
            repo,
            index,
            recovered: index.recovered().iter().copied().collect(),
            packer: if dry_run {
                None
            } else {
                Some(Packer::new(repo)?)
            },
            stored: HashSet::new(),
            cancel: cancel.clone(),
            tree_blobs: 0,
        })
    }

    fn tree(&mut self, bytes: &[u8]) -> Result<BlobId> {
        let id = self.repo.blob_id(bytes);
        let indexed = self
            .index
            .get(&id)
            .is_some_and(|l| !self.recovered.contains(&l.pack));
        if indexed || !self.stored.insert(id) {
            return Ok(id);
        }
        self.tree_blobs += 1;
        if let Some(p) = &self.packer {
            let raw_len = u32::try_from(bytes.len())
                .map_err(|_| Error::InvalidInput("tree blob too large".into()))?;
            let sealed = self.repo.seal_blob(BlobType::Tree, &id, bytes)?;
            p.add(SealedBlob {
                blob_type: BlobType::Tree,
                id,
                raw_len,
                sealed,
            })?;
        }
        Ok(id)
    }

    /// Makes every stored tree durable and indexed (FORMAT §18 rules 1–2): call before
    /// saving a snapshot that names them.
    pub fn finish(self) -> Result<()> {
        match self.packer {
            Some(p) => p.finish().map(drop),
            None => Ok(()),
        }
    }
}

/// One directory being rewritten: its old node (none for the root), the new entries so far,
/// and whether any differs from the old ones.
struct Frame {
    node: Option<Node>,
    writer: PartWriter,
    parts: Vec<BlobId>,
    changed: bool,
}

impl Frame {
    fn new(node: Option<Node>) -> Self {
        Self {
            node,
            writer: PartWriter::default(),
            parts: Vec::new(),
            changed: false,
        }
    }

    fn push(&mut self, store: &mut TreeStore<'_>, path: &Path, node: &Node) -> Result<()> {
        let done = self.writer.push(node).map_err(|e| too_large(path, e))?;
        if let Some(bytes) = done {
            self.parts.push(store.tree(&bytes)?);
        }
        Ok(())
    }

    /// The directory's new kind: one tree blob when everything fits, else parts.
    fn finish(mut self, store: &mut TreeStore<'_>) -> Result<NodeKind> {
        let last = store.tree(&self.writer.finish())?;
        if self.parts.is_empty() {
            return Ok(NodeKind::Dir { subtree: last });
        }
        self.parts.push(last);
        Ok(NodeKind::DirParts { parts: self.parts })
    }
}

fn too_large(path: &Path, e: FormatError) -> Error {
    Error::InvalidInput(format!(
        "{}: a rewritten entry does not fit in a tree blob: {e}",
        path.display()
    ))
}

/// The node with its contents removed: a 0-byte file, or an empty directory (its tree
/// stored). Other kinds have no contents and are returned as they are.
fn emptied(store: &mut TreeStore<'_>, node: &Node) -> Result<Node> {
    let mut n = node.clone();
    match n.kind {
        NodeKind::File { .. } => {
            n.kind = NodeKind::File {
                size: 0,
                content: Vec::new(),
            }
        }
        NodeKind::Dir { .. } | NodeKind::DirParts { .. } => {
            n.kind = NodeKind::Dir {
                subtree: store.tree(&Tree::default().encode())?,
            }
        }
        NodeKind::Symlink { .. } | NodeKind::Fifo => {}
    }
    Ok(n)
}

/// Rewrites the tree below `root` as `filter` decides; `None` when nothing changed (the
/// snapshot is then left alone). Damage at the root itself, a walk limit or a storage error
/// fails the rewrite; nothing of it is committed until the caller saves a snapshot.
pub fn rewrite_tree(
    repo: &Repository,
    index: &Index,
    store: &mut TreeStore<'_>,
    root: &BlobId,
    filter: &mut dyn NodeFilter,
) -> Result<Option<NewTree>> {
    let mut stack = vec![Frame::new(None)];
    let (mut files, mut bytes) = (0u64, 0u64);
    let past_damage = filter.goes_past_damage();
    let mut visit = |v: Visit<'_>| -> Result<bool> {
        let top = stack
            .last_mut()
            .ok_or_else(|| Error::InvalidInput("rewrite walk left its root".into()))?;
        match v {
            Visit::Entry(path, node) => {
                if store.cancel.load(Ordering::Relaxed) {
                    return Err(Error::Interrupted);
                }
                let decision = filter.entry(path, node)?;
                let kept = match decision {
                    Decision::Drop => {
                        top.changed = true;
                        return Ok(false);
                    }
                    Decision::Keep if node.kind.is_dir() => {
                        stack.push(Frame::new(Some(node.clone())));
                        return Ok(true);
                    }
                    Decision::Keep => node.clone(),
                    Decision::Empty => {
                        let n = emptied(store, node)?;
                        top.changed |= n != *node;
                        n
                    }
                };
                if let NodeKind::File { size, .. } = kept.kind {
                    files += 1;
                    bytes = bytes.saturating_add(size);
                }
                top.push(store, path, &kept)?;
                Ok(false)
            }
            Visit::Damaged(path, e) => {
                filter.damaged(path, e)?;
                top.changed = true;
                Ok(false)
            }
            Visit::Leave(path) => {
                let done = stack
                    .pop()
                    .ok_or_else(|| Error::InvalidInput("rewrite walk left its root".into()))?;
                let parent = stack
                    .last_mut()
                    .ok_or_else(|| Error::InvalidInput("rewrite walk left its root".into()))?;
                let changed = done.changed;
                let Some(mut node) = done.node.clone() else {
                    return Err(Error::InvalidInput("rewrite walk left its root".into()));
                };
                if changed {
                    node.kind = done.finish(store)?;
                    parent.changed = true;
                }
                parent.push(store, path, &node)?;
                Ok(false)
            }
        }
    };
    let dir = NodeKind::Dir { subtree: *root };
    let top = Path::new("/");
    if past_damage {
        find::walk_events_past_damage(repo, index, &dir, top, &mut visit)?;
    } else {
        find::walk_events(repo, index, &dir, top, &mut visit)?;
    }
    let root_frame = match stack.pop() {
        Some(f) if stack.is_empty() => f,
        _ => {
            return Err(Error::InvalidInput(
                "rewrite walk ended inside a directory".into(),
            ));
        }
    };
    if !root_frame.changed {
        return Ok(None);
    }
    match root_frame.finish(store)? {
        NodeKind::Dir { subtree } => Ok(Some(NewTree {
            tree: subtree,
            files,
            bytes,
        })),
        _ => Err(Error::InvalidInput(format!(
            "the rewritten snapshot's root would take more than one tree blob ({MAX_BLOB_LEN} bytes)"
        ))),
    }
}

/// The snapshot that replaces `old` (id `old_id`): the same time, host, paths and tags, the
/// new root tree, `original` set to the old id, and `tag` added unless the old one is
/// forgotten (restic's `rewrite` and `repaired` tags).
pub fn replacement(
    old_id: SnapshotId,
    old: &Snapshot,
    tree: BlobId,
    tag: Option<&str>,
) -> Snapshot {
    let mut s = old.clone();
    s.tree = tree;
    s.original = Some(old_id);
    if let Some(t) = tag {
        s.tags.push(t.to_owned());
        s.tags.sort();
        s.tags.dedup();
    }
    s
}

/// Resolves the snapshots a rewrite works on: each given id prefix or `latest` (with the
/// filter), else every snapshot passing the filter; oldest first, each once.
pub fn select(
    repo: &Repository,
    specs: &[String],
    filter: &find::SnapshotFilter,
) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let mut out = if specs.is_empty() {
        find::snapshots(repo, filter)?
    } else {
        specs
            .iter()
            .map(|s| find::snapshot(repo, s, filter))
            .collect::<Result<Vec<_>>>()?
    };
    out.sort_by(|a, b| a.1.time_unix_ns.cmp(&b.1.time_unix_ns).then(a.0.cmp(&b.0)));
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

/// Saves the new snapshots (their trees already durable, see [`TreeStore::finish`]), then,
/// with `forget`, deletes each old one once its replacement is durable, so a crash never
/// leaves neither. A stop asked for (`cancel`) takes effect between two snapshots.
pub fn commit(
    session: &crate::ops::session::Session,
    planned: Vec<(SnapshotId, Snapshot)>,
    forget: bool,
    cancel: &CancelFlag,
) -> Result<Vec<(SnapshotId, SnapshotId)>> {
    for (old, snap) in &planned {
        let len = snap.encode().len() as u64;
        if len > MAX_SNAPSHOT_LEN {
            return Err(Error::InvalidInput(format!(
                "the rewritten snapshot {old} would take {len} bytes, more than the {MAX_SNAPSHOT_LEN}-byte cap; nothing was changed"
            )));
        }
    }
    let mut done = Vec::with_capacity(planned.len());
    for (old, snap) in planned {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        // Commit only on a lock others still see as held (FORMAT §17).
        session.ensure_fresh()?;
        let new = session.repo().save_snapshot(&snap)?;
        if forget {
            session
                .repo()
                .backend()
                .delete(crate::backend::FileType::Snapshot, &old.0)?;
        }
        done.push((old, new));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::MAX_PART_ENTRIES;
    use crate::format::tree::tests::node;
    use crate::repo::tests::repo;

    /// Drops entries by name, wherever they are.
    struct DropNamed(&'static [u8]);
    impl NodeFilter for DropNamed {
        fn entry(&mut self, _path: &Path, node: &Node) -> Result<Decision> {
            Ok(if node.name == self.0 {
                Decision::Drop
            } else {
                Decision::Keep
            })
        }
    }

    fn fifo(name: &str) -> Node {
        node(name.as_bytes(), NodeKind::Fifo)
    }

    fn store_tree(store: &mut TreeStore<'_>, nodes: Vec<Node>) -> BlobId {
        store.tree(&Tree { nodes }.encode()).unwrap()
    }

    fn tree_of(r: &Repository, index: &Index, id: &BlobId) -> Tree {
        r.read_tree(index, id).unwrap()
    }

    /// Only the path to a change is written again: an untouched sibling keeps its tree id,
    /// and a rewrite that matches nothing leaves the snapshot alone.
    #[test]
    fn only_the_path_to_a_change_is_rewritten() {
        let r = repo();
        let empty = Index::new();
        let mut store = TreeStore::new(&r, &empty, false, &CancelFlag::default()).unwrap();
        let same = store_tree(&mut store, vec![fifo("x")]);
        let inner = store_tree(&mut store, vec![fifo("keep"), fifo("secret")]);
        let a = node(b"a", NodeKind::Dir { subtree: inner });
        let b = node(b"b", NodeKind::Dir { subtree: same });
        let root = store_tree(&mut store, vec![a, b.clone()]);
        store.finish().unwrap();
        let index = r.load_index().unwrap();

        let mut store = TreeStore::new(&r, &index, false, &CancelFlag::default()).unwrap();
        let none = rewrite_tree(&r, &index, &mut store, &root, &mut DropNamed(b"nothing")).unwrap();
        assert_eq!(none, None);
        assert_eq!(store.tree_blobs, 0);
        let new = rewrite_tree(&r, &index, &mut store, &root, &mut DropNamed(b"secret"))
            .unwrap()
            .unwrap();
        assert_eq!(store.tree_blobs, 2, "the changed directory and the root");
        store.finish().unwrap();
        let index = r.load_index().unwrap();
        let t = tree_of(&r, &index, &new.tree);
        assert_eq!(t.nodes[1], b, "untouched sibling is the same node");
        let NodeKind::Dir { subtree } = &t.nodes[0].kind else {
            panic!("{:?}", t.nodes[0]);
        };
        let names: Vec<_> = tree_of(&r, &index, subtree)
            .nodes
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(names, [b"keep".to_vec()]);
    }

    /// A split directory is rewritten part by part: a part before the change is cut at the
    /// same place, so it keeps its id; a small remainder becomes one ordinary tree.
    #[test]
    fn split_directories_are_rewritten_in_parts() {
        let r = repo();
        let empty = Index::new();
        let mut store = TreeStore::new(&r, &empty, false, &CancelFlag::default()).unwrap();
        let names: Vec<String> = (0..MAX_PART_ENTRIES + 2)
            .map(|i| format!("{i:06}"))
            .collect();
        let (first, second) = names.split_at(MAX_PART_ENTRIES);
        let p1 = store_tree(&mut store, first.iter().map(|n| fifo(n)).collect());
        let p2 = store_tree(&mut store, second.iter().map(|n| fifo(n)).collect());
        let small1 = store_tree(&mut store, vec![fifo("a"), fifo("b")]);
        let small2 = store_tree(&mut store, vec![fifo("c"), fifo("d")]);
        let big = node(
            b"big",
            NodeKind::DirParts {
                parts: vec![p1, p2],
            },
        );
        let small = node(
            b"small",
            NodeKind::DirParts {
                parts: vec![small1, small2],
            },
        );
        let root = store_tree(&mut store, vec![big, small]);
        store.finish().unwrap();
        let index = r.load_index().unwrap();

        struct DropLast(String);
        impl NodeFilter for DropLast {
            fn entry(&mut self, _p: &Path, n: &Node) -> Result<Decision> {
                let hit = n.name == self.0.as_bytes() || n.name == b"c";
                Ok(if hit { Decision::Drop } else { Decision::Keep })
            }
        }
        let mut store = TreeStore::new(&r, &index, false, &CancelFlag::default()).unwrap();
        let last = names.last().unwrap().clone();
        let new = rewrite_tree(&r, &index, &mut store, &root, &mut DropLast(last))
            .unwrap()
            .unwrap();
        store.finish().unwrap();
        let index = r.load_index().unwrap();
        let t = tree_of(&r, &index, &new.tree);
        let NodeKind::DirParts { parts } = &t.nodes[0].kind else {
            panic!("big is no longer split");
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], p1, "the part before the change keeps its id");
        assert_eq!(tree_of(&r, &index, &parts[1]).nodes.len(), 1);
        let NodeKind::Dir { subtree } = &t.nodes[1].kind else {
            panic!("the small remainder is one tree");
        };
        let left: Vec<_> = tree_of(&r, &index, subtree)
            .nodes
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(left, [b"a".to_vec(), b"b".to_vec(), b"d".to_vec()]);
    }

    /// A dry run computes the same new tree and stores nothing.
    #[test]
    fn dry_run_stores_nothing() {
        let r = repo();
        let empty = Index::new();
        let mut store = TreeStore::new(&r, &empty, false, &CancelFlag::default()).unwrap();
        let root = store_tree(&mut store, vec![fifo("a"), fifo("secret")]);
        store.finish().unwrap();
        let index = r.load_index().unwrap();
        let packs = r
            .backend()
            .list(crate::backend::FileType::Pack)
            .unwrap()
            .len();
        let mut dry = TreeStore::new(&r, &index, true, &CancelFlag::default()).unwrap();
        let t = rewrite_tree(&r, &index, &mut dry, &root, &mut DropNamed(b"secret"))
            .unwrap()
            .unwrap();
        assert_eq!(dry.tree_blobs, 1);
        dry.finish().unwrap();
        assert_eq!(
            r.backend()
                .list(crate::backend::FileType::Pack)
                .unwrap()
                .len(),
            packs
        );
        assert!(r.load_index().unwrap().get(&t.tree).is_none());
        let want = r.blob_id(
            &Tree {
                nodes: vec![fifo("a")],
            }
            .encode(),
        );
        assert_eq!(t.tree, want);
    }

    /// A stop asked for ends the walk with `Interrupted`, and `commit` saves nothing after it.
    #[test]
    fn a_stop_request_interrupts_the_walk_and_the_commit() {
        let r = repo();
        let empty = Index::new();
        let mut store = TreeStore::new(&r, &empty, false, &CancelFlag::default()).unwrap();
        let root = store_tree(&mut store, vec![fifo("a")]);
        store.finish().unwrap();
        let index = r.load_index().unwrap();
        let cancel = CancelFlag::default();
        cancel.store(true, Ordering::Relaxed);
        let mut store = TreeStore::new(&r, &index, true, &cancel).unwrap();
        let e = rewrite_tree(&r, &index, &mut store, &root, &mut DropNamed(b"a")).unwrap_err();
        assert!(matches!(e, Error::Interrupted), "{e}");
        let snap = Snapshot::decode(&crate::format::encode(&Snapshot {
            time_unix_ns: 0,
            tz_offset_s: 0,
            hostname: String::new(),
            username: String::new(),
            uid: 0,
            gid: 0,
            paths: Vec::new(),
            tags: Vec::new(),
            tree: root,
            parent: None,
            program_version: String::new(),
            incomplete: false,
            summary: Default::default(),
            original: None,
            lost: None,
        }))
        .unwrap();
        let old = SnapshotId(crate::id::Id([1; 32]));
        let e = commit(
            &crate::ops::session::Session::unlocked(&r),
            vec![(old, snap)],
            true,
            &cancel,
        )
        .unwrap_err();
        assert!(matches!(e, Error::Interrupted), "{e}");
        assert!(r.list_snapshots().unwrap().is_empty());
    }

    #[test]
    fn replacement_keeps_metadata_and_records_the_original() {
        let old = Snapshot {
            time_unix_ns: 7,
            tz_offset_s: 60,
            hostname: "h".into(),
            username: "u".into(),
            uid: 1,
            gid: 2,
            paths: vec!["/p".into()],
            tags: vec!["z".into()],
            tree: BlobId::default(),
            parent: None,
            program_version: "cista 0".into(),
            incomplete: false,
            summary: Default::default(),
            original: None,
            lost: None,
        };
        let id = SnapshotId(crate::id::Id([3; 32]));
        let tree = BlobId(crate::id::Id([4; 32]));
        let s = replacement(id, &old, tree, Some("rewrite"));
        assert_eq!(s.tags, ["rewrite", "z"]);
        assert_eq!((s.tree, s.original), (tree, Some(id)));
        assert_eq!(
            (s.time_unix_ns, &s.hostname, &s.paths),
            (7, &old.hostname, &old.paths)
        );
        assert_eq!(replacement(id, &old, tree, None).tags, ["z"]);
    }
}
