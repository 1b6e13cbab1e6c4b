//! What prune needs to know before deciding: which blobs every snapshot reaches (the index's
//! used bit, one per location, set on the copy that is kept), and per pack how many bytes
//! are used.
//!
//! Listing order is FORMAT §18's: snapshots, then the index, then the packs. Any doubt about
//! what a snapshot references (a snapshot or tree that cannot be read, a used blob in no
//! pack, a needed pack missing) stops the prune here, before anything is written.

use std::collections::{HashMap, HashSet};

use super::plan::{ObsoleteUse, PackKind, PackUse};
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::pack::PackEntry;
use crate::format::tree::NodeKind;
use crate::id::{BlobId, IndexId, PackId, SnapshotId};
use crate::ops::CancelFlag;
use crate::repo::index::PackState;
use crate::repo::{Index, Repository};

/// A pack in storage that no index file names, with its header's entries.
#[derive(Debug, Clone)]
pub struct Orphan {
    /// The pack.
    pub id: PackId,
    /// Its header's entries.
    pub blobs: Vec<PackEntry>,
}

/// Everything measured.
#[derive(Debug)]
pub struct Usage {
    /// Snapshots walked.
    pub snapshots: usize,
    /// Their ids (to tell whether any was written beside the prune).
    pub snapshot_ids: HashSet<SnapshotId>,
    /// The index as loaded, with the used bit of the kept copy of every used blob set.
    pub index: Index,
    /// Index files listed before the index was loaded: what the new index supersedes. A
    /// file written later (by a backup running beside) is not superseded and stays.
    pub index_files: Vec<IndexId>,
    /// Per live pack present in storage.
    pub live: Vec<PackUse>,
    /// Per obsolete pack.
    pub obsolete: Vec<ObsoleteUse>,
    /// Orphans with readable headers.
    pub orphans: Vec<Orphan>,
    /// Orphans whose header could not be read (left alone).
    pub orphans_unreadable: Vec<(PackId, String)>,
    /// Live packs missing from storage that hold nothing needed.
    pub missing_unneeded: Vec<PackId>,
    /// Stored sizes of the packs listed.
    pub sizes: HashMap<PackId, u64>,
}

/// Gathers the usage (module doc).
pub fn measure(repo: &Repository, cancel: &CancelFlag) -> Result<Usage> {
    let (snapshots, damaged) = repo.scan_snapshots()?;
    if let Some((id, e)) = damaged.first() {
        return Err(Error::PruneRefused {
            reason: format!("snapshot {id} cannot be read ({e})"),
        });
    }
    let index_files: Vec<IndexId> = repo
        .backend()
        .list(FileType::Index)?
        .into_iter()
        .map(|(id, _)| IndexId(id))
        .collect();
    let index = repo.load_index()?;
    if let Some((id, why)) = index.damaged().first() {
        return Err(Error::PruneRefused {
            reason: format!("index file {id} is damaged ({why}); run `cista repair index`"),
        });
    }
    let sizes: HashMap<PackId, u64> = repo
        .backend()
        .list(FileType::Pack)?
        .into_iter()
        .map(|(id, n)| (PackId(id), n))
        .collect();

    // `mark_used` marks one copy of each blob (a live one when there is one), so duplicates
    // elsewhere count as unused and an obsolete pack counts as used only when it alone
    // holds a blob a snapshot needs.
    mark_reachable(repo, &index, &snapshots, cancel)?;
    let kinds = pack_kinds(&index);

    let mut live = Vec::new();
    let mut missing_unneeded = Vec::new();
    let mut needed_in_obsolete: HashSet<PackId> = HashSet::new();
    for u in index.usage() {
        let present = sizes.contains_key(&u.id);
        if u.used_blobs > 0 && !present {
            return Err(Error::PruneRefused {
                reason: format!(
                    "pack {} holds {} blobs that snapshots need but is missing from storage; run `cista check`, then `cista repair index` and `cista repair snapshots`",
                    u.id, u.used_blobs
                ),
            });
        }
        match u.state {
            PackState::Live if !present => missing_unneeded.push(u.id),
            PackState::Live => live.push(PackUse {
                id: u.id,
                size: sizes.get(&u.id).copied().unwrap_or(0),
                used_bytes: u.used_bytes,
                unused_bytes: u.unused_bytes,
                used_blobs: u64::from(u.used_blobs),
                unused_blobs: u64::from(u.unused_blobs),
                kind: kinds.get(&u.id).copied().unwrap_or(PackKind::Data),
            }),
            PackState::Obsolete => {
                if u.used_blobs > 0 {
                    needed_in_obsolete.insert(u.id);
                }
            }
        }
    }

    let obsolete = index
        .obsolete_packs()
        .map(|(p, o)| ObsoleteUse {
            id: p.id,
            present: sizes.contains_key(&p.id),
            armed: o.armed,
            waiting_for: o.waiting_for.clone(),
            holds_needed_blob: needed_in_obsolete.contains(&p.id),
            size: sizes.get(&p.id).copied().unwrap_or(0),
        })
        .collect();

    let mut orphans = Vec::new();
    let mut orphans_unreadable = Vec::new();
    let mut unnamed: Vec<(&PackId, &u64)> =
        sizes.iter().filter(|(p, _)| !index.has_pack(p)).collect();
    unnamed.sort();
    for (pack, len) in unnamed {
        super::cancelled(cancel)?;
        match repo.read_pack_header(pack, *len) {
            Ok(h) => orphans.push(Orphan {
                id: *pack,
                blobs: h.entries,
            }),
            Err(e) => orphans_unreadable.push((*pack, e.to_string())),
        }
    }

    Ok(Usage {
        snapshots: snapshots.len(),
        snapshot_ids: snapshots.iter().map(|(id, _)| *id).collect(),
        index,
        index_files,
        live,
        obsolete,
        orphans,
        orphans_unreadable,
        missing_unneeded,
        sizes,
    })
}

/// What kind of blobs each pack holds, from the pack table (no pass over the entries, so
/// no batch of entries grouped by pack beside the index).
fn pack_kinds(index: &Index) -> HashMap<PackId, PackKind> {
    index
        .packs()
        .iter()
        .map(|p| {
            let kind = match (p.trees_only, p.has_trees) {
                (true, _) => PackKind::Tree,
                (false, true) => PackKind::Mixed,
                (false, false) => PackKind::Data,
            };
            (p.id, kind)
        })
        .collect()
}

/// Marks every blob reachable from the snapshots, each tree read once (a tree already marked
/// is not read again, so the walk is bounded by the number of distinct trees). Iterative: the
/// stack holds tree ids, never a recursion.
fn mark_reachable(
    repo: &Repository,
    index: &Index,
    snapshots: &[(SnapshotId, crate::format::snapshot::Snapshot)],
    cancel: &CancelFlag,
) -> Result<()> {
    // Marks a blob; true when it was not marked before (a tree seen first now).
    let mark = |id: &BlobId| -> Result<bool> {
        let fresh = !index.is_used(id);
        if !index.mark_used(id) {
            return Err(Error::PruneRefused {
                reason: format!(
                    "blob {id} is referenced by a snapshot but is in no index; run `cista check`, then `cista repair index` and `cista repair snapshots`"
                ),
            });
        }
        Ok(fresh)
    };
    let mut stack: Vec<BlobId> = Vec::new();
    for (sid, snap) in snapshots {
        super::cancelled(cancel)?;
        if mark(&snap.tree)? {
            stack.push(snap.tree);
        }
        while let Some(t) = stack.pop() {
            let tree = repo.read_tree(index, &t).map_err(|e| Error::PruneRefused {
                reason: format!("snapshot {sid}: tree {t} cannot be read ({e})"),
            })?;
            for node in &tree.nodes {
                match &node.kind {
                    NodeKind::Dir { subtree } if mark(subtree)? => stack.push(*subtree),
                    NodeKind::DirParts { parts } => {
                        for p in parts {
                            if mark(p)? {
                                stack.push(*p);
                            }
                        }
                    }
                    NodeKind::File { content, .. } => {
                        for c in content {
                            mark(c)?;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}
