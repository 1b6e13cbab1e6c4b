//! Check: is the repository whole? Structure (every index, snapshot and tree readable, every
//! referenced blob indexed, every indexed pack present) and, with `read_data`, every pack read
//! back: name matches content, header matches index, every blob opens and matches its id.
//!
//! Findings are collected, not raised, so one damaged object does not hide the others.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::backend::FileType;
use crate::error::Result;
use crate::format::pack::MAX_PACK_LEN;
use crate::format::tree::NodeKind;
use crate::id::{BlobId, Id, PackId};
use crate::repo::index::PackState;
use crate::repo::{Repository, keys};

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
///
/// Order matters when a backup runs beside the check (FORMAT §18): snapshots are listed
/// first, then the index is loaded, then packs are listed. A snapshot is written only after
/// the index files naming its blobs, and a pack before any index file naming it, so every
/// object a listed snapshot needs is already visible when it is looked for; a check never
/// reports as missing what a concurrent backup wrote meanwhile.
pub fn run(repo: &Repository, opts: &CheckOptions) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    let (snapshots, damaged_snapshots) = repo.scan_snapshots()?;
    for (sid, e) in &damaged_snapshots {
        r.errors.push(format!("snapshot {sid}: {e}"));
    }
    check_keys(repo, &mut r)?;
    let index = repo.load_index()?;
    for (id, why) in index.damaged() {
        r.errors.push(format!(
            "index file {id} is damaged ({why}); it was skipped and its packs' headers read instead"
        ));
    }
    for p in index.recovered() {
        r.warnings.push(format!(
            "pack {p} is named by no readable index file; its header was read instead (the next backup indexes it again)"
        ));
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
        let id = p.id;
        match (packs.contains_key(&id), p.state) {
            (true, _) => {}
            (false, PackState::Live) => r.errors.push(format!(
                "pack {id} is named by an index but missing from storage"
            )),
            // A prune deleted it and stopped before dropping it from the index (FORMAT §14).
            (false, PackState::Obsolete) => r.warnings.push(format!(
                "pack {id} is pending deletion and already deleted (information: the next prune drops it from the index)"
            )),
        }
    }
    for p in packs.keys() {
        if !index.has_pack(p) {
            r.warnings.push(format!(
                "pack {p} is not indexed (left by an interrupted backup; the next backup adopts it)"
            ));
        }
    }

    for f in repo.backend().temp_files()? {
        r.warnings.push(format!(
            "tmp/{} ({} bytes, modified {} min ago) is a write in progress or one a crash interrupted; files older than 24 h are removed when the repository is next opened",
            f.name,
            f.len,
            f.age.as_secs() / 60
        ));
    }

    // Walk every snapshot's trees once each.
    let mut seen_trees: HashSet<BlobId> = HashSet::new();
    for (sid, snap) in &snapshots {
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
                if !index.contains(t) {
                    r.warnings.push(only_obsolete(sid, "tree", t));
                }
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
                                if !index.contains_any(c) {
                                    r.errors.push(format!(
                                        "snapshot {sid}: file {:?}: chunk {c} is in no index",
                                        String::from_utf8_lossy(&n.name)
                                    ));
                                } else if !index.contains(c) {
                                    r.warnings.push(only_obsolete(sid, "chunk", c));
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
        // Indexed packs, live and obsolete, a batch at a time: the index's entries grouped
        // by pack are never all in memory at once beside the index itself.
        for batch in index.pack_batches(crate::repo::INDEX_FILE_BLOBS) {
            let found: Vec<Vec<String>> = batch
                .par_iter()
                .filter_map(|p| packs.get(&p.id).map(|len| (p, *len)))
                .map(|(p, len)| read_pack(repo, &p.id, len, &p.entries))
                .collect();
            r.packs_read += found.len();
            r.errors.extend(found.into_iter().flatten());
        }
    }
    Ok(r)
}

/// A snapshot's blob held only by packs pending deletion: readable, and a later prune's
/// sweep resurrects it (FORMAT §14), so a warning, not damage.
fn only_obsolete(sid: &impl std::fmt::Display, what: &str, id: &BlobId) -> String {
    format!(
        "snapshot {sid}: {what} {id} is only in packs pending deletion (the next prune keeps it)"
    )
}

/// Reads every key file, so a damaged one (perhaps the recovery key) is noticed before the
/// day it is needed. Only the file is checked (name, caps, decoding): no passphrase is tried.
fn check_keys(repo: &Repository, r: &mut CheckReport) -> Result<()> {
    for k in keys::scan_keys(repo.backend())? {
        if let Err(why) = &k.state {
            r.errors.push(format!("key file {}: {why}", k.id));
        }
    }
    Ok(())
}

/// Reads one pack whole and verifies it; returns the problems found.
fn read_pack(
    repo: &Repository,
    id: &PackId,
    len: u64,
    indexed: &[crate::format::pack::PackEntry],
) -> Vec<String> {
    let mut errs = Vec::new();
    // The listed size against the cap before reading the pack whole (FORMAT §20).
    if len > MAX_PACK_LEN {
        return vec![format!(
            "pack {id}: {len} bytes, more than the {MAX_PACK_LEN}-byte cap"
        )];
    }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::backend::opendal::OpendalBackend;
    use crate::backend::{Backend, BackendError};
    use crate::ops::NoProgress;
    use crate::ops::backup::{self, BackupOptions, Source};

    type Hook = Box<dyn FnOnce() + Send>;

    /// Runs `hook` once, right after the first listing of index files or snapshots returns:
    /// a backup finishing between check's two listings.
    struct Between {
        inner: Arc<dyn Backend>,
        hook: Mutex<Option<Hook>>,
    }

    impl std::fmt::Debug for Between {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Between")
        }
    }

    impl Backend for Between {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn create(&self) -> Result<(), BackendError> {
            self.inner.create()
        }
        fn list(&self, t: FileType) -> Result<Vec<(Id, u64)>, BackendError> {
            let out = self.inner.list(t)?;
            if matches!(t, FileType::Index | FileType::Snapshot)
                && let Some(h) = self.hook.lock().unwrap().take()
            {
                h();
            }
            Ok(out)
        }
        fn read(&self, t: FileType, id: &Id) -> Result<Vec<u8>, BackendError> {
            self.inner.read(t, id)
        }
        fn read_range(
            &self,
            t: FileType,
            id: &Id,
            offset: u64,
            len: u64,
        ) -> Result<Vec<u8>, BackendError> {
            self.inner.read_range(t, id, offset, len)
        }
        fn size(&self, t: FileType, id: &Id) -> Result<u64, BackendError> {
            self.inner.size(t, id)
        }
        fn write(&self, t: FileType, id: &Id, bytes: Vec<u8>) -> Result<(), BackendError> {
            self.inner.write(t, id, bytes)
        }
        fn delete(&self, t: FileType, id: &Id) -> Result<(), BackendError> {
            self.inner.delete(t, id)
        }
    }

    /// Regression: check loaded the index before listing snapshots, so a backup finishing in
    /// between left a snapshot whose blobs check's index lacked, reported as damage.
    #[test]
    fn backup_beside_check_is_never_reported_as_damage() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("f"), b"written while check runs").unwrap();
        let local: Arc<dyn Backend> =
            Arc::new(OpendalBackend::local(d.path().join("repo")).unwrap());
        let writer = crate::repo::tests::repo_on(local.clone());
        let hook: Hook = Box::new(move || {
            let cancel = Arc::new(AtomicBool::new(false));
            backup::run(
                &writer,
                Source::Paths(vec![src]),
                None,
                &BackupOptions::default(),
                &NoProgress,
                &cancel,
            )
            .unwrap();
        });
        let between: Arc<dyn Backend> = Arc::new(Between {
            inner: local,
            hook: Mutex::new(Some(hook)),
        });
        let checker = Repository::open(between, b"pw").unwrap();
        let r = run(&checker, &CheckOptions::default()).unwrap();
        assert!(r.is_ok(), "false damage: {:?}", r.errors);
    }
}
