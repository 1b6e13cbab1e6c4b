//! `repair snapshots`: rewrites snapshots whose data is partly lost, keeping what is
//! readable. A file whose content is missing or unreadable becomes an empty file; a
//! directory whose tree is missing becomes an empty directory, and one whose tree (or a part
//! of a split one) is damaged keeps the entries that could be read before it. Every lost item
//! is reported and recorded in the new snapshot's `lost` (FORMAT §16), which is also marked
//! incomplete; the old snapshot is deleted only with `forget`.
//!
//! Unlike restic, which keeps the chunks of a damaged file that are still there (so the bytes
//! after a lost chunk move to the wrong offsets), a file missing any chunk is emptied: a
//! repaired snapshot never restores a file with wrong contents.
//!
//! A storage error that is not damage (a failing disk read, a timeout) stops the repair: it
//! must never turn into "lost". Not here: rebuilding the index (`repair index`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::{Decision, NodeFilter, TreeStore, commit, replacement, rewrite_tree, select};
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::snapshot::{Lost, MAX_LOST_PATHS, MAX_SNAPSHOT_LEN, Snapshot};
use crate::format::tree::{Node, NodeKind};
use crate::id::{BlobId, PackId, SnapshotId};
use crate::ops::CancelFlag;
use crate::ops::find::SnapshotFilter;
use crate::ops::session::Session;
use crate::repo::{Index, Repository};

/// The tag restic adds to a repaired snapshot when the old one is kept.
pub const REPAIRED_TAG: &str = "repaired";

/// Most lost items kept per snapshot for the report (the counts stay exact).
pub const MAX_LISTED: usize = 100_000;

/// What to repair and how.
#[derive(Debug, Clone, Default)]
pub struct RepairOptions {
    /// Snapshot id prefixes or `latest`; empty: every snapshot passing `filter`.
    pub snapshots: Vec<String>,
    /// `--host`, `--tag`, `--path`.
    pub filter: SnapshotFilter,
    /// Delete each old snapshot once its replacement is saved (else tag the new one).
    pub forget: bool,
    /// Walk and report, write nothing.
    pub dry_run: bool,
    /// Also read and verify every data blob the snapshots reference (cista's own flag: a
    /// flipped byte inside a pack is found only by reading it), not only check that it is
    /// indexed and inside a stored pack.
    pub read_data: bool,
}

/// What kind of item was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostKind {
    /// A file, now empty.
    File,
    /// A directory, now empty or holding only the entries read before the damage.
    Dir,
}

/// One lost item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostItem {
    /// Absolute path in the snapshot.
    pub path: PathBuf,
    /// File or directory.
    pub kind: LostKind,
    /// Why: which blob or pack is missing or damaged.
    pub reason: String,
}

/// What happened to one snapshot.
#[derive(Debug, Clone)]
pub struct Repaired {
    /// The snapshot as it was.
    pub old_id: SnapshotId,
    /// Its contents.
    pub old: Snapshot,
    /// What was lost, in walk order, the first [`MAX_LISTED`] items.
    pub lost: Vec<LostItem>,
    /// Its root tree cannot be read: nothing to keep, the snapshot is left as it is.
    pub unreadable_root: Option<String>,
    /// The replacement (as it would be in a dry run); `None` when nothing was lost.
    pub new: Option<Snapshot>,
    /// The replacement's id, once saved.
    pub new_id: Option<SnapshotId>,
}

/// The outcome of a repair run, snapshot by snapshot (oldest first).
#[derive(Debug, Clone, Default)]
pub struct RepairOutcome {
    /// Every snapshot considered.
    pub snapshots: Vec<Repaired>,
    /// Tree blobs written (or that would be).
    pub tree_blobs: u64,
}

impl RepairOutcome {
    /// Snapshots that were (or would be) replaced.
    pub fn modified(&self) -> usize {
        self.snapshots.iter().filter(|s| s.new.is_some()).count()
    }

    /// Snapshots whose root tree is unreadable (left alone).
    pub fn unrepairable(&self) -> usize {
        self.snapshots
            .iter()
            .filter(|s| s.unreadable_root.is_some())
            .count()
    }
}

/// Decides whether blobs can be read: indexed, in a pack that is stored and long enough, and
/// with `read_data` opened and verified (each blob once).
struct Availability<'a> {
    repo: &'a Repository,
    index: &'a Index,
    packs: HashMap<PackId, u64>,
    read_data: bool,
    verified: HashSet<BlobId>,
    bad: HashMap<BlobId, String>,
}

impl Availability<'_> {
    /// Why the blob cannot be read, or `None` when it can. `read` says whether to open it.
    fn problem(&mut self, id: &BlobId, read: bool) -> Result<Option<String>> {
        let Some(loc) = self.index.get(id) else {
            return Ok(Some(format!("blob {id} is in no index")));
        };
        let Some(&size) = self.packs.get(&loc.pack) else {
            return Ok(Some(format!(
                "pack {} holding blob {id} is missing",
                loc.pack
            )));
        };
        if loc.entry.end() > size {
            return Ok(Some(format!(
                "pack {} holding blob {id} is truncated",
                loc.pack
            )));
        }
        if !read || self.verified.contains(id) {
            return Ok(None);
        }
        if let Some(why) = self.bad.get(id) {
            return Ok(Some(why.clone()));
        }
        match self.repo.read_blob(self.index, id) {
            Ok(_) => {
                self.verified.insert(*id);
                Ok(None)
            }
            Err(e) => {
                let why = damage(&e).ok_or(e)?;
                self.bad.insert(*id, why.clone());
                Ok(Some(why))
            }
        }
    }
}

/// A short reason when `e` is damage (or a vanished object); `None` for other errors, which
/// must stop the repair instead of being recorded as loss.
fn damage(e: &Error) -> Option<String> {
    match e {
        Error::Corrupt { what, id, reason } => Some(format!("{what} {id} is damaged: {reason}")),
        e if e.is_not_found() => Some(format!("missing from storage: {e}")),
        _ => None,
    }
}

struct RepairFilter<'a, 'b> {
    avail: &'b mut Availability<'a>,
    files: u64,
    dirs: u64,
    items: Vec<LostItem>,
}

impl RepairFilter<'_, '_> {
    fn lose(&mut self, path: &Path, kind: LostKind, reason: String) {
        match kind {
            LostKind::File => self.files += 1,
            LostKind::Dir => self.dirs += 1,
        }
        if self.items.len() < MAX_LISTED {
            self.items.push(LostItem {
                path: path.to_path_buf(),
                kind,
                reason,
            });
        }
    }
}

impl NodeFilter for RepairFilter<'_, '_> {
    fn entry(&mut self, path: &Path, node: &Node) -> Result<Decision> {
        let (ids, kind, read) = match &node.kind {
            NodeKind::File { content, .. } => (&content[..], LostKind::File, self.avail.read_data),
            // The walk reads a directory's trees itself and reports damage; here only what
            // can be known without reading (a part missing from the index or from storage).
            k => match k.dir_parts() {
                Some(parts) => (parts, LostKind::Dir, false),
                None => return Ok(Decision::Keep),
            },
        };
        for id in ids {
            if let Some(why) = self.avail.problem(id, read)? {
                self.lose(path, kind, why);
                return Ok(Decision::Empty);
            }
        }
        Ok(Decision::Keep)
    }

    fn goes_past_damage(&self) -> bool {
        true
    }

    fn damaged(&mut self, path: &Path, error: &Error) -> Result<()> {
        let why = damage(error).unwrap_or_else(|| error.to_string());
        self.lose(path, LostKind::Dir, why);
        Ok(())
    }
}

/// The `lost` record of a repaired snapshot: what an earlier repair recorded, then this one.
fn merged_lost(old: Option<&Lost>, files: u64, dirs: u64, items: &[LostItem]) -> Lost {
    let mut l = old.cloned().unwrap_or_default();
    l.files = l.files.saturating_add(files);
    l.dirs = l.dirs.saturating_add(dirs);
    let room = MAX_LOST_PATHS.saturating_sub(l.paths.len());
    l.paths.extend(
        items
            .iter()
            .take(room)
            .map(|i| i.path.to_string_lossy().into_owned()),
    );
    l
}

/// Drops recorded lost paths (the last first) until the snapshot is within its cap: the
/// counts stay, and a snapshot that could not be read back must never be written.
fn fit_lost_paths(s: &mut Snapshot) {
    while s.encode().len() as u64 > MAX_SNAPSHOT_LEN {
        match &mut s.lost {
            Some(l) if !l.paths.is_empty() => {
                let keep = l.paths.len() / 2;
                l.paths.truncate(keep);
            }
            _ => return,
        }
    }
}

/// Repairs the chosen snapshots. Plans every snapshot first (new trees stored and indexed),
/// then saves the new snapshots, then forgets the old ones.
///
/// `session` holds the maintenance lock (none for a dry run, which writes nothing).
pub fn run(session: &Session, opts: &RepairOptions, cancel: &CancelFlag) -> Result<RepairOutcome> {
    let repo = session.repo();
    let chosen = select(repo, &opts.snapshots, &opts.filter)?;
    // Index files and, in memory, packs no readable index names: whatever can be read is kept.
    let index = repo.load_index()?;
    let packs = repo
        .backend()
        .list(FileType::Pack)?
        .into_iter()
        .map(|(id, len)| (PackId(id), len))
        .collect();
    let mut avail = Availability {
        repo,
        index: &index,
        packs,
        read_data: opts.read_data,
        verified: HashSet::new(),
        bad: HashMap::new(),
    };
    let mut store = TreeStore::new(repo, &index, opts.dry_run, cancel)?;
    let mut out = RepairOutcome::default();
    for (old_id, old) in chosen {
        let mut rep = Repaired {
            old_id,
            old: old.clone(),
            lost: Vec::new(),
            unreadable_root: None,
            new: None,
            new_id: None,
        };
        if let Some(why) = avail.problem(&old.tree, false)? {
            rep.unreadable_root = Some(why);
            out.snapshots.push(rep);
            continue;
        }
        let mut f = RepairFilter {
            avail: &mut avail,
            files: 0,
            dirs: 0,
            items: Vec::new(),
        };
        match rewrite_tree(repo, &index, &mut store, &old.tree, &mut f) {
            Ok(Some(t)) => {
                let tag = (!opts.forget).then_some(REPAIRED_TAG);
                let mut s = replacement(old_id, &old, t.tree, tag);
                s.lost = Some(merged_lost(old.lost.as_ref(), f.files, f.dirs, &f.items));
                s.incomplete = true;
                fit_lost_paths(&mut s);
                rep.new = Some(s);
            }
            Ok(None) => {}
            // Damage the walk could not go past is the root tree's own.
            Err(e) => match damage(&e) {
                Some(why) => rep.unreadable_root = Some(why),
                None => return Err(e),
            },
        }
        rep.lost = f.items;
        out.snapshots.push(rep);
    }
    out.tree_blobs = store.tree_blobs;
    store.finish()?;
    if opts.dry_run {
        return Ok(out);
    }
    let planned = out
        .snapshots
        .iter()
        .filter_map(|r| r.new.clone().map(|s| (r.old_id, s)))
        .collect();
    for (old, new) in commit(session, planned, opts.forget, cancel)? {
        if let Some(r) = out.snapshots.iter_mut().find(|r| r.old_id == old) {
            r.new_id = Some(new);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::Tree;
    use crate::format::tree::tests::node;
    use crate::ops::rewrite::{Decision, TreeStore};
    use crate::repo::packer::{Packer, SealedBlob};
    use crate::repo::tests::repo;

    fn put(r: &Repository, p: &Packer, t: crate::format::pack::BlobType, bytes: &[u8]) -> BlobId {
        let id = r.blob_id(bytes);
        let sealed = r.seal_blob(t, &id, bytes).unwrap();
        p.add(SealedBlob {
            blob_type: t,
            id,
            raw_len: bytes.len() as u32,
            sealed,
        })
        .unwrap();
        id
    }

    /// A file missing a chunk is emptied (not shortened), a directory whose tree is missing
    /// is emptied, what is intact is kept, and each loss is recorded with its path.
    #[test]
    fn lost_content_and_trees_are_emptied_and_recorded() {
        use crate::format::pack::BlobType;
        let r = repo();
        let p = Packer::new(&r).unwrap();
        let chunk = put(&r, &p, BlobType::Data, b"intact");
        let gone = BlobId(crate::id::Id([5; 32]));
        let file = |name: &[u8], content: Vec<BlobId>| {
            node(
                name,
                NodeKind::File {
                    size: 6 * content.len() as u64,
                    content,
                },
            )
        };
        let good = file(b"good", vec![chunk]);
        let root_nodes = vec![
            file(b"bad", vec![chunk, gone]),
            good.clone(),
            node(b"sub", NodeKind::Dir { subtree: gone }),
        ];
        let root = put(&r, &p, BlobType::Tree, &Tree { nodes: root_nodes }.encode());
        p.finish().unwrap();
        let index = r.load_index().unwrap();
        let packs = r
            .backend()
            .list(FileType::Pack)
            .unwrap()
            .into_iter()
            .map(|(id, len)| (PackId(id), len))
            .collect();
        let mut avail = Availability {
            repo: &r,
            index: &index,
            packs,
            read_data: true,
            verified: HashSet::new(),
            bad: HashMap::new(),
        };
        let mut f = RepairFilter {
            avail: &mut avail,
            files: 0,
            dirs: 0,
            items: Vec::new(),
        };
        assert_eq!(f.entry(Path::new("/good"), &good).unwrap(), Decision::Keep);
        let mut store =
            TreeStore::new(&r, &index, false, &crate::ops::CancelFlag::default()).unwrap();
        let t = rewrite_tree(&r, &index, &mut store, &root, &mut f)
            .unwrap()
            .unwrap();
        assert_eq!((f.files, f.dirs), (1, 1));
        let paths: Vec<_> = f.items.iter().map(|i| i.path.clone()).collect();
        assert_eq!(paths, [PathBuf::from("/bad"), PathBuf::from("/sub")]);
        assert!(
            f.items[0].reason.contains("in no index"),
            "{:?}",
            f.items[0]
        );
        store.finish().unwrap();
        let index = r.load_index().unwrap();
        let new = r.read_tree(&index, &t.tree).unwrap();
        assert_eq!(
            new.nodes[0].kind,
            NodeKind::File {
                size: 0,
                content: vec![]
            }
        );
        assert_eq!(new.nodes[1], good);
        let NodeKind::Dir { subtree } = &new.nodes[2].kind else {
            panic!("{:?}", new.nodes[2]);
        };
        assert!(r.read_tree(&index, subtree).unwrap().nodes.is_empty());
        assert_eq!((t.files, t.bytes), (2, 6));
    }

    /// A snapshot already near its cap keeps its counts but sheds recorded paths.
    #[test]
    fn lost_paths_are_cut_to_fit_the_snapshot_cap() {
        let mut s = Snapshot {
            time_unix_ns: 1,
            tz_offset_s: 0,
            hostname: "h".into(),
            username: "u".into(),
            uid: 0,
            gid: 0,
            paths: vec!["/p".repeat(((MAX_SNAPSHOT_LEN - 40_000) / 2) as usize)],
            tags: Vec::new(),
            tree: BlobId::default(),
            parent: None,
            program_version: "cista".into(),
            incomplete: true,
            summary: Default::default(),
            original: Some(SnapshotId(crate::id::Id([1; 32]))),
            lost: None,
        };
        s.lost = Some(Lost {
            files: 1000,
            dirs: 0,
            paths: (0..1000)
                .map(|i| format!("/{i:04}{}", "x".repeat(100)))
                .collect(),
        });
        fit_lost_paths(&mut s);
        assert!(s.encode().len() as u64 <= MAX_SNAPSHOT_LEN);
        let l = s.lost.as_ref().unwrap();
        assert_eq!(l.files, 1000);
        assert!(
            !l.paths.is_empty() && l.paths.len() < 1000,
            "{}",
            l.paths.len()
        );
        assert!(Snapshot::decode(&s.encode()).is_ok());
    }

    #[test]
    fn lost_records_add_up_and_stay_capped() {
        let item = |i: usize| LostItem {
            path: PathBuf::from(format!("/f{i}")),
            kind: LostKind::File,
            reason: String::new(),
        };
        let items: Vec<_> = (0..MAX_LOST_PATHS + 5).map(item).collect();
        let first = merged_lost(None, 3, 1, &items[..4]);
        assert_eq!((first.files, first.dirs, first.paths.len()), (3, 1, 4));
        let all = merged_lost(Some(&first), items.len() as u64, 0, &items);
        assert_eq!(all.files, 3 + items.len() as u64);
        assert_eq!(all.paths.len(), MAX_LOST_PATHS);
        assert_eq!(all.paths[..4], first.paths[..]);
    }
}
