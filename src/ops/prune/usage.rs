//! What prune needs to know before deciding: which blobs every snapshot reaches (one bit per
//! index entry), which copy of each used blob is kept, and per pack how many bytes are used.
//!
//! Listing order is FORMAT §18's: snapshots, then the index, then the packs. Any doubt about
//! what a snapshot references (a snapshot or tree that cannot be read, a used blob in no
//! pack, a needed pack missing) stops the prune here, before anything is written.

use std::collections::{HashMap, HashSet};

use super::plan::{ObsoleteUse, PackKind, PackUse};
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::index::ObsoletePack;
use crate::format::pack::{BlobType, PackEntry};
use crate::format::tree::NodeKind;
use crate::id::{BlobId, IndexId, PackId};
use crate::ops::CancelFlag;
use crate::repo::{Index, Repository};

/// A pack in storage that no index file names, with its header's entries.
#[derive(Debug, Clone)]
pub struct Orphan {
    /// The pack.
    pub id: PackId,
    /// Its header's entries.
    pub blobs: Vec<PackEntry>,
}

/// Bits over index entries.
#[derive(Debug, Clone, Default)]
pub struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Self(vec![0; n.div_ceil(64)])
    }
    /// Whether bit `i` is set.
    pub fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    fn set(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }
}

/// Everything measured.
#[derive(Debug)]
pub struct Usage {
    /// Snapshots walked.
    pub snapshots: usize,
    /// The index as loaded.
    pub index: Index,
    /// Index files loaded (to be superseded).
    pub index_files: Vec<IndexId>,
    /// Per live pack present in storage.
    pub live: Vec<PackUse>,
    /// Per obsolete pack.
    pub obsolete: Vec<ObsoleteUse>,
    /// The obsolete records as loaded.
    pub obsolete_records: Vec<ObsoletePack>,
    /// Orphans with readable headers.
    pub orphans: Vec<Orphan>,
    /// Orphans whose header could not be read (left alone).
    pub orphans_unreadable: Vec<(PackId, String)>,
    /// Live packs missing from storage that hold nothing needed.
    pub missing_unneeded: Vec<PackId>,
    /// Per index entry: this copy is the one kept of a used blob.
    pub keep: Bits,
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

    let n = index.entries_len();
    let mut used = Bits::new(n);
    mark_reachable(repo, &index, &snapshots, &mut used, cancel)?;

    // Which copy of each used blob is kept: a copy in a live pack present in storage, the one
    // in the pack with the fewest unreferenced bytes (so a pack an interrupted prune already
    // rewrote wins over the pack it was copied from), ties to the lowest entry.
    let present_live = |p: &PackId| index.is_live(p) && sizes.contains_key(p);
    let mut unref: HashMap<PackId, u64> = HashMap::new();
    for i in 0..n {
        if !used.get(i) {
            let (_, pack, e) = index.entry(i);
            *unref.entry(pack).or_default() += u64::from(e.length);
        }
    }
    let mut keep = Bits::new(n);
    let mut needs_obsolete: HashSet<PackId> = HashSet::new();
    let mut needed_missing: Vec<(BlobId, PackId)> = Vec::new();
    let mut i = 0;
    while i < n {
        let (id, _, _) = index.entry(i);
        let range = index.positions(&id);
        let end = range.end.max(i + 1);
        if used.get(i) {
            let best = range
                .clone()
                .filter(|&j| present_live(&index.entry(j).1))
                .min_by_key(|&j| (unref.get(&index.entry(j).1).copied().unwrap_or(0), j));
            match best {
                Some(j) => keep.set(j),
                None => {
                    let obsolete = range
                        .clone()
                        .map(|j| index.entry(j).1)
                        .find(|p| !index.is_live(p) && sizes.contains_key(p));
                    match obsolete {
                        Some(p) => {
                            needs_obsolete.insert(p);
                        }
                        None => needed_missing.push((id, index.entry(i).1)),
                    }
                }
            }
        }
        i = end;
    }
    if let Some((blob, pack)) = needed_missing.first() {
        return Err(Error::PruneRefused {
            reason: format!(
                "blob {blob} is needed by a snapshot but its pack {pack} is missing from storage ({} such blobs); run `cista check`, then `cista repair index` and `cista repair snapshots`",
                needed_missing.len()
            ),
        });
    }

    let mut acc: HashMap<PackId, PackUse> = HashMap::new();
    for i in 0..n {
        let (_, pack, e) = index.entry(i);
        if !index.is_live(&pack) {
            continue;
        }
        let p = acc.entry(pack).or_insert_with(|| PackUse {
            id: pack,
            size: sizes.get(&pack).copied().unwrap_or(0),
            used_bytes: 0,
            unused_bytes: 0,
            used_blobs: 0,
            unused_blobs: 0,
            kind: kind_of(e.blob_type),
        });
        if p.kind != kind_of(e.blob_type) {
            p.kind = PackKind::Mixed;
        }
        if keep.get(i) {
            p.used_bytes += u64::from(e.length);
            p.used_blobs += 1;
        } else {
            p.unused_bytes += u64::from(e.length);
            p.unused_blobs += 1;
        }
    }
    let mut live = Vec::new();
    let mut missing_unneeded = Vec::new();
    for pack in index.live_packs() {
        match (acc.remove(&pack), sizes.contains_key(&pack)) {
            (Some(p), true) => live.push(p),
            // Named live, gone from storage, and nothing kept is in it (checked above).
            (_, false) => missing_unneeded.push(pack),
            // A live pack with no entries: nothing in it.
            (None, true) => live.push(PackUse {
                id: pack,
                size: sizes.get(&pack).copied().unwrap_or(0),
                used_bytes: 0,
                unused_bytes: 0,
                used_blobs: 0,
                unused_blobs: 0,
                kind: PackKind::Data,
            }),
        }
    }

    // A pack named live by some file is live (live wins), whatever else names it obsolete.
    // Named obsolete twice (two files a crash left side by side): kept once, unarmed, so
    // this run arms it again with the sessions live now (always safe, only later).
    let mut obsolete_records: Vec<ObsoletePack> = Vec::new();
    let mut seen: HashMap<PackId, usize> = HashMap::new();
    for o in index.obsolete_records() {
        if index.is_live(&o.id) {
            continue;
        }
        match seen.get(&o.id) {
            Some(&k) => obsolete_records[k].armed = false,
            None => {
                seen.insert(o.id, obsolete_records.len());
                obsolete_records.push(o.clone());
            }
        }
    }
    let obsolete = obsolete_records
        .iter()
        .map(|o| ObsoleteUse {
            id: o.id,
            present: sizes.contains_key(&o.id),
            armed: o.armed,
            waiting_for: o.waiting_for.clone(),
            holds_needed_blob: needs_obsolete.contains(&o.id),
            size: sizes.get(&o.id).copied().unwrap_or(0),
        })
        .collect();

    let mut orphans = Vec::new();
    let mut orphans_unreadable = Vec::new();
    for (pack, len) in &sizes {
        if index.is_live(pack) || index.is_obsolete(pack) {
            continue;
        }
        match repo.read_pack_header(pack, *len) {
            Ok(h) => orphans.push(Orphan {
                id: *pack,
                blobs: h.entries,
            }),
            Err(e) => orphans_unreadable.push((*pack, e.to_string())),
        }
    }
    orphans.sort_by_key(|o| o.id.0.0);

    Ok(Usage {
        snapshots: snapshots.len(),
        index_files: index.loaded_files().to_vec(),
        index,
        live,
        obsolete,
        obsolete_records,
        orphans,
        orphans_unreadable,
        missing_unneeded,
        keep,
        sizes,
    })
}

fn kind_of(t: BlobType) -> PackKind {
    match t {
        BlobType::Data => PackKind::Data,
        BlobType::Tree => PackKind::Tree,
    }
}

/// Marks every blob reachable from the snapshots, each tree read once (a tree already marked
/// is not read again, so the walk is bounded by the number of distinct trees). Iterative: the
/// stack holds tree ids, never a recursion.
fn mark_reachable(
    repo: &Repository,
    index: &Index,
    snapshots: &[(crate::id::SnapshotId, crate::format::snapshot::Snapshot)],
    used: &mut Bits,
    cancel: &CancelFlag,
) -> Result<()> {
    let mut mark = |id: &BlobId, used: &mut Bits| -> Result<bool> {
        let r = index.positions(id);
        if r.is_empty() {
            return Err(Error::PruneRefused {
                reason: format!(
                    "blob {id} is referenced by a snapshot but is in no index; run `cista check`, then `cista repair index` and `cista repair snapshots`"
                ),
            });
        }
        let fresh = !used.get(r.start);
        for j in r {
            used.set(j);
        }
        Ok(fresh)
    };
    let mut stack: Vec<BlobId> = Vec::new();
    for (sid, snap) in snapshots {
        super::cancelled(cancel)?;
        if mark(&snap.tree, used)? {
            stack.push(snap.tree);
        }
        while let Some(t) = stack.pop() {
            let tree = repo.read_tree(index, &t).map_err(|e| Error::PruneRefused {
                reason: format!("snapshot {sid}: tree {t} cannot be read ({e})"),
            })?;
            for node in &tree.nodes {
                match &node.kind {
                    NodeKind::Dir { subtree } => {
                        if mark(subtree, used)? {
                            stack.push(*subtree);
                        }
                    }
                    NodeKind::DirParts { parts } => {
                        for p in parts {
                            if mark(p, used)? {
                                stack.push(*p);
                            }
                        }
                    }
                    NodeKind::File { content, .. } => {
                        for c in content {
                            mark(c, used)?;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}
