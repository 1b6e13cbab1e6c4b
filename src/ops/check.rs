//! Check: is the repository whole? Structure (every index, snapshot and tree readable, every
//! referenced blob indexed, every indexed pack present) and, with `read_data`, every pack read
//! back: name matches content, header matches index, every blob opens and matches its id.
//!
//! Findings are collected, not raised, so one damaged object does not hide the others.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::backend::FileType;
use crate::error::Result;
use crate::format::tree::NodeKind;
use crate::id::{BlobId, Id, PackId};
use crate::repo::{Index, Repository};

/// Options of a check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Read and verify every pack.
    pub read_data: bool,
}

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Damage: the repository cannot restore everything it claims to hold.
    pub errors: Vec<String>,
    /// Harmless findings (unreferenced packs left by interrupted backups, stale locks).
    pub warnings: Vec<String>,
    /// Snapshots examined.
    pub snapshots: usize,
    /// Packs present.
    pub packs: usize,
    /// Blobs in the index.
    pub blobs: usize,
    /// Packs read back (with `read_data`).
    pub packs_read: usize,
}

impl CheckReport {
    /// Whether nothing is damaged.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Runs a check.
pub fn run(repo: &Repository, opts: &CheckOptions) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    let mut index = Index::new();
    for (id, _) in repo.backend().list(FileType::Index)? {
        match repo.load_index_file(&id) {
            Ok(f) => f.packs.iter().for_each(|p| index.add_pack(p)),
            Err(e) => r.errors.push(format!("index {}: {e}", id)),
        }
    }
    r.blobs = index.len();
    let packs: HashMap<PackId, u64> = repo
        .backend()
        .list(FileType::Pack)?
        .into_iter()
        .map(|(id, n)| (PackId(id), n))
        .collect();
    r.packs = packs.len();
    for p in index.packs() {
        if !packs.contains_key(p) {
            r.errors.push(format!(
                "pack {p} is named by an index but missing from storage"
            ));
        }
    }
    for p in packs.keys() {
        if !index.has_pack(p) {
            r.warnings.push(format!(
                "pack {p} is not indexed (left by an interrupted backup; the next backup adopts it)"
            ));
        }
    }

    // Walk every snapshot's trees once each.
    let mut seen_trees: HashSet<BlobId> = HashSet::new();
    for (id, _) in repo.backend().list(FileType::Snapshot)? {
        let sid = crate::id::SnapshotId(id);
        let snap = match repo.load_snapshot(&sid) {
            Ok(s) => s,
            Err(e) => {
                r.errors.push(format!("snapshot {sid}: {e}"));
                continue;
            }
        };
        r.snapshots += 1;
        // Iterative, each tree scanned once; a split directory's parts are all read (even
        // if seen) to check their order across parts.
        // Depth is that of the first path reaching a tree: exact for a crafted chain, which
        // readers would refuse (FORMAT §20), so check says so too.
        let mut stack: Vec<(NodeKind, usize)> = vec![(NodeKind::Dir { subtree: snap.tree }, 0)];
        while let Some((dir, depth)) = stack.pop() {
            if depth > crate::format::tree::MAX_DEPTH {
                r.errors.push(format!(
                    "snapshot {sid}: directories nest deeper than {} levels; readers refuse it",
                    crate::format::tree::MAX_DEPTH
                ));
                continue;
            }
            let split = matches!(dir, NodeKind::DirParts { .. });
            let parts = dir.dir_parts().unwrap_or_default();
            if split && parts.is_empty() {
                r.errors
                    .push(format!("snapshot {sid}: a split directory has no parts"));
            }
            let mut last: Option<Vec<u8>> = None;
            for t in parts {
                if !split && seen_trees.contains(t) {
                    continue;
                }
                let tree = match repo.read_tree(&index, t) {
                    Ok(tree) => tree,
                    Err(e) => {
                        r.errors.push(format!("snapshot {sid}: tree {t}: {e}"));
                        break;
                    }
                };
                if split && let Err(e) = tree.check_follows(last.as_deref()) {
                    r.errors.push(format!("snapshot {sid}: tree {t}: {e}"));
                }
                last = tree.nodes.last().map(|n| n.name.clone());
                if !seen_trees.insert(*t) {
                    continue;
                }
                for n in &tree.nodes {
                    match &n.kind {
                        NodeKind::Dir { .. } | NodeKind::DirParts { .. } => {
                            stack.push((n.kind.clone(), depth + 1))
                        }
                        NodeKind::File { content, .. } => {
                            for c in content {
                                if !index.contains(c) {
                                    r.errors.push(format!(
                                        "snapshot {sid}: file {:?}: chunk {c} is in no index",
                                        String::from_utf8_lossy(&n.name)
                                    ));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    if opts.read_data {
        let mut by_pack: HashMap<PackId, Vec<crate::format::pack::PackEntry>> = HashMap::new();
        for loc in index.iter() {
            by_pack.entry(loc.pack).or_default().push(loc.entry);
        }
        let present: Vec<(PackId, u64)> = packs
            .iter()
            .filter(|(p, _)| index.has_pack(p))
            .map(|(p, n)| (*p, *n))
            .collect();
        let found: Vec<Vec<String>> = present
            .par_iter()
            .map(|(p, len)| {
                read_pack(
                    repo,
                    p,
                    *len,
                    by_pack.get(p).map(Vec::as_slice).unwrap_or(&[]),
                )
            })
            .collect();
        r.packs_read = present.len();
        r.errors.extend(found.into_iter().flatten());
    }
    Ok(r)
}

/// Reads one pack whole and verifies it; returns the problems found.
fn read_pack(
    repo: &Repository,
    id: &PackId,
    len: u64,
    indexed: &[crate::format::pack::PackEntry],
) -> Vec<String> {
    let mut errs = Vec::new();
    let bytes = match repo.backend().read(FileType::Pack, &id.0) {
        Ok(b) => b,
        Err(e) => return vec![format!("pack {id}: {e}")],
    };
    if bytes.len() as u64 != len || Id::of_stored(&bytes) != id.0 {
        return vec![format!(
            "pack {id}: contents do not match its name (bit rot or tampering)"
        )];
    }
    let header = match repo.pack_header_from_bytes(id, &bytes) {
        Ok(h) => h,
        Err(e) => return vec![format!("pack {id}: {e}")],
    };
    for e in indexed {
        if !header.entries.contains(e) {
            errs.push(format!(
                "pack {id}: blob {} is indexed but not in the pack header",
                e.id
            ));
        }
    }
    for e in &header.entries {
        let Some(sealed) = bytes.get(e.offset as usize..e.end() as usize) else {
            errs.push(format!("pack {id}: blob {} lies outside the pack", e.id));
            continue;
        };
        if let Err(err) = repo.open_blob(e, sealed) {
            errs.push(format!("pack {id}: {err}"));
        }
    }
    errs
}
