//! Check: is the repository whole? Structure (config and keys readable, every index,
//! snapshot and tree readable, every referenced blob indexed, every index entry inside an
//! existing pack) and, with a [`ReadSelection`], packs read back: name matches content, header
//! matches index, every blob opens and matches its id.
//!
//! Findings are collected as typed [`Finding`]s, not raised, so one damaged object does not
//! hide the others, and a repair can be planned from them. Check never changes the repository.

mod finding;
mod packs;
mod subset;

use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;

pub use finding::{Finding, ObjectType, Severity};
pub use subset::{MAX_BUCKETS, ReadSelection, random_seed};

use crate::backend::{ErrorKind, FileType};
use crate::error::{Error, Result};
use crate::format::lock::{Lock, MAX_LOCK_LEN};
use crate::format::tree::NodeKind;
use crate::format::{FormatError, ObjectKind};
use crate::id::{BlobId, Id, KeyId, PackId, SnapshotId};
use crate::repo::index::PackState;
use crate::repo::{Index, Repository, keys};

/// Options of a check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Which packs to read back whole and verify (none when `None`).
    pub read_data: Option<ReadSelection>,
    /// Seed of a random [`ReadSelection`]; a fresh random one when `None`.
    pub seed: Option<u64>,
    /// Packs read at once with `read_data` (0: the default, twice the cores and at least 4);
    /// each holds at most one piece of a pack in memory (`packs.rs`).
    pub reads_in_flight: usize,
}

impl CheckOptions {
    /// Structure and every pack read back (`check --read-data`).
    pub fn read_all() -> Self {
        Self {
            read_data: Some(ReadSelection::All),
            ..Self::default()
        }
    }
}

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Every finding, in the order the check met them.
    pub findings: Vec<Finding>,
    /// Snapshots examined.
    pub snapshots: usize,
    /// Packs present.
    pub packs: usize,
    /// Blobs in the index.
    pub blobs: usize,
    /// Packs read back.
    pub packs_read: usize,
    /// Bytes of the packs read back.
    pub bytes_read: u64,
    /// Whether the check stopped early (it met an object it cannot go past, such as an
    /// index file written by a newer cista).
    pub stopped: bool,
}

impl CheckReport {
    /// Whether nothing is damaged (warnings and infos allowed).
    pub fn is_ok(&self) -> bool {
        self.count(Severity::Error) == 0
    }

    /// How many findings have `severity`.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity() == severity)
            .count()
    }

    /// The packs whose stored bytes are wrong (restic's `broken_packs`), each once, sorted.
    pub fn broken_packs(&self) -> Vec<PackId> {
        let mut v: Vec<PackId> = self
            .findings
            .iter()
            .filter_map(Finding::broken_pack)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn push(&mut self, f: Finding) {
        self.findings.push(f);
    }
}

/// How an error reading one stored object is reported.
enum Failure {
    /// The object is damaged (or unreadable for good): this reason.
    Damaged(String),
    /// A newer cista wrote it: this reason.
    Newer(String),
    /// It vanished since the listing (a concurrent writer superseded or removed it).
    Gone,
}

/// Classifies a per-object error; errors that are not about the object (a transient storage
/// failure) are returned, so the check fails instead of reporting false damage.
fn classify(e: Error) -> Result<Failure> {
    match e {
        Error::Corrupt { reason, .. } => Ok(Failure::Damaged(reason)),
        Error::Format(
            e @ (FormatError::NewerVersion { .. } | FormatError::NewerRepository { .. }),
        ) => Ok(Failure::Newer(e.to_string())),
        Error::Format(e) => Ok(Failure::Damaged(e.to_string())),
        e if e.is_not_found() => Ok(Failure::Gone),
        Error::Backend(b) if b.kind == ErrorKind::Permanent => {
            Ok(Failure::Damaged(format!("unreadable: {b}")))
        }
        e => Err(e),
    }
}

/// Runs a check.
///
/// Order matters when a backup runs beside the check (FORMAT §18 rule 9): snapshots are
/// listed first, then the index is loaded, then packs are listed. A snapshot is written only
/// after the index files naming its blobs, and a pack before any index file naming it, so
/// every object a listed snapshot needs is already visible when it is looked for; a check
/// never reports as missing what a concurrent backup wrote meanwhile.
pub fn run(repo: &Repository, opts: &CheckOptions) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    let snapshots = check_snapshots(repo, &mut r)?;
    check_keys(repo, &mut r)?;
    check_locks(repo, &mut r)?;
    let index = match repo.load_index() {
        Ok(index) => index,
        Err(Error::Format(e @ FormatError::NewerVersion { .. })) => {
            // Which index file it was: name it, and stop (without it, every other finding
            // about packs and blobs could be false).
            newer_index_files(repo, &mut r, e.to_string())?;
            r.stopped = true;
            return Ok(r);
        }
        Err(e) => return Err(e),
    };
    for (id, why) in index.damaged() {
        r.push(Finding::IndexDamaged {
            index: *id,
            reason: why.clone(),
        });
    }
    for p in index.recovered() {
        r.push(Finding::PackRecovered { pack: *p });
    }
    r.blobs = index.len();
    let packs: BTreeMap<PackId, u64> = repo
        .backend()
        .list(FileType::Pack)?
        .into_iter()
        .map(|(id, n)| (PackId(id), n))
        .collect();
    r.packs = packs.len();
    let mut missing: Vec<(PackId, PackState)> = index
        .packs()
        .iter()
        .filter(|p| !packs.contains_key(&p.id))
        .map(|p| (p.id, p.state))
        .collect();
    missing.sort_by_key(|(p, _)| *p);
    for (pack, state) in missing {
        match state {
            PackState::Live => r.push(Finding::PackMissing { pack }),
            // A prune deleted it and stopped before dropping it from the index (FORMAT §14).
            PackState::Obsolete => r.push(Finding::ObsoletePackDeleted { pack }),
        }
    }
    let retired: Vec<&crate::repo::index::PackInfo> = index
        .packs()
        .iter()
        .filter(|p| p.state == PackState::Obsolete && packs.contains_key(&p.id))
        .collect();
    if !retired.is_empty() {
        r.push(Finding::PacksRetired {
            packs: retired.len(),
            bytes: retired
                .iter()
                .map(|p| packs.get(&p.id).copied().unwrap_or(0))
                .sum(),
        });
    }
    for (p, len) in &packs {
        if !index.has_pack(p) {
            r.push(Finding::PackUnindexed {
                pack: *p,
                len: *len,
            });
        }
    }
    check_ranges(&index, &packs, &mut r);

    for f in repo.backend().temp_files()? {
        r.push(Finding::TempFile {
            name: f.name,
            len: f.len,
            age_secs: f.age.as_secs(),
        });
    }

    let readers = packs::reader_pool(opts.reads_in_flight)?;
    walk_snapshots(repo, &index, &snapshots, &readers, &mut r);

    if let Some(sel) = &opts.read_data {
        let present: Vec<(PackId, u64)> = packs
            .iter()
            .filter(|(p, _)| index.has_pack(p))
            .map(|(p, n)| (*p, *n))
            .collect();
        let chosen = sel.select(&present, opts.seed.unwrap_or_else(random_seed));
        let wanted: HashMap<PackId, u64> = chosen.iter().copied().collect();
        // A batch of whole packs at a time: the entries grouped by pack are never all in
        // memory beside the index itself.
        let mut found: Vec<(PackId, Vec<Finding>)> = Vec::new();
        for batch in index.pack_batches(crate::repo::PACK_BATCH_BLOBS) {
            let part: Vec<(PackId, Vec<Finding>)> = readers.install(|| {
                batch
                    .par_iter()
                    .filter_map(|p| wanted.get(&p.id).map(|len| (p, *len)))
                    .map(|(p, len)| Ok((p.id, packs::read_pack(repo, &p.id, len, &p.entries)?)))
                    .collect::<Result<_>>()
            })?;
            found.extend(part);
        }
        // Reported in pack order, whatever order the batches came in.
        found.sort_by_key(|(p, _)| *p);
        r.packs_read = chosen.len();
        r.bytes_read = chosen.iter().map(|(_, n)| n).sum();
        r.findings.extend(found.into_iter().flat_map(|(_, f)| f));
    }
    Ok(r)
}

/// Lists and loads every snapshot; the damaged and newer ones become findings.
fn check_snapshots(
    repo: &Repository,
    r: &mut CheckReport,
) -> Result<Vec<(SnapshotId, crate::format::snapshot::Snapshot)>> {
    let listed = repo.backend().list(FileType::Snapshot)?;
    let loaded: Vec<_> = listed
        .par_iter()
        .map(|(id, len)| {
            let id = SnapshotId(*id);
            (id, repo.load_snapshot_listed(&id, Some(*len)))
        })
        .collect();
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for (id, res) in loaded {
        match res {
            Ok(s) => ok.push((id, s)),
            Err(e) => match classify(e)? {
                Failure::Damaged(reason) => bad.push(Finding::SnapshotDamaged {
                    snapshot: id,
                    reason,
                }),
                Failure::Newer(reason) => bad.push(Finding::NewerFormat {
                    object: ObjectType::Snapshot,
                    id: id.0,
                    reason,
                }),
                Failure::Gone => {}
            },
        }
    }
    bad.sort_by_key(|f| f.to_string());
    r.findings.extend(bad);
    ok.sort_by(|a, b| a.1.time_unix_ns.cmp(&b.1.time_unix_ns).then(a.0.cmp(&b.0)));
    r.snapshots = ok.len();
    Ok(ok)
}

/// Reads every key file, so a damaged one (perhaps the recovery key) is noticed before the
/// day it is needed. Only the file is checked (name, caps, decoding): no passphrase is tried.
fn check_keys(repo: &Repository, r: &mut CheckReport) -> Result<()> {
    let mut listed = repo.backend().list(FileType::Key)?;
    listed.sort();
    for (id, len) in listed {
        let Err(e) = keys::read_key_file(repo.backend(), &id, Some(len)) else {
            continue;
        };
        match classify(e)? {
            Failure::Damaged(reason) => r.push(Finding::KeyDamaged {
                key: KeyId(id),
                reason,
            }),
            Failure::Newer(reason) => r.push(Finding::NewerFormat {
                object: ObjectType::Key,
                id,
                reason,
            }),
            Failure::Gone => {}
        }
    }
    Ok(())
}

/// Reports locks whose holder is gone (they block no one, `unlock` removes them) and locks
/// that cannot be read. Live locks are normal (check itself holds one) and not reported.
fn check_locks(repo: &Repository, r: &mut CheckReport) -> Result<()> {
    let host = crate::host::Host::this_process();
    let now = host.now_unix_ns();
    let mut listed = repo.backend().list(FileType::Lock)?;
    listed.sort();
    for (id, len) in listed {
        let lock = repo
            .read_metadata_object(FileType::Lock, &id, Some(len), MAX_LOCK_LEN)
            .and_then(|b| repo.open_object(ObjectKind::Lock, &id, &b))
            .and_then(|plain| Lock::decode(&plain).map_err(|e| Error::corrupt("lock", id, e)));
        match lock {
            Ok(l) if crate::repo::lock::is_stale(&l, &host) => r.push(Finding::StaleLock {
                lock: id,
                holder: format!("pid {} of {}@{}", l.pid, l.username, l.hostname),
                age_secs: u64::try_from(now.saturating_sub(l.time_unix_ns) / 1_000_000_000)
                    .unwrap_or(0),
            }),
            Ok(_) => {}
            Err(e) => match classify(e)? {
                Failure::Damaged(reason) => r.push(Finding::LockUnreadable { lock: id, reason }),
                Failure::Newer(reason) => r.push(Finding::NewerFormat {
                    object: ObjectType::Lock,
                    id,
                    reason,
                }),
                Failure::Gone => {}
            },
        }
    }
    Ok(())
}

/// Names the index files a newer cista wrote (the loader refused the index because of one).
fn newer_index_files(repo: &Repository, r: &mut CheckReport, fallback: String) -> Result<()> {
    let mut listed = repo.backend().list(FileType::Index)?;
    listed.sort();
    let before = r.findings.len();
    for (id, len) in listed {
        if let Err(e) = repo.load_index_file(&id, Some(len))
            && let Failure::Newer(reason) = classify(e)?
        {
            r.push(Finding::NewerFormat {
                object: ObjectType::Index,
                id,
                reason,
            });
        }
    }
    if r.findings.len() == before {
        // Gone meanwhile; still say why the check stopped.
        r.push(Finding::NewerFormat {
            object: ObjectType::Index,
            id: Id::default(),
            reason: fallback,
        });
    }
    Ok(())
}

/// Every index entry must lie inside its pack as listed: a truncated pack (or a wrong index)
/// is found without reading any data. One finding per pack.
fn check_ranges(index: &Index, packs: &BTreeMap<PackId, u64>, r: &mut CheckReport) {
    let mut past: BTreeMap<PackId, (usize, u64)> = BTreeMap::new();
    for loc in index.iter() {
        let Some(&len) = packs.get(&loc.pack) else {
            continue;
        };
        let end = loc.entry.end();
        if end > len {
            let e = past.entry(loc.pack).or_insert((0, 0));
            e.0 += 1;
            e.1 = e.1.max(end);
        }
    }
    for (pack, (blobs, end)) in past {
        r.push(Finding::IndexEntryOutOfRange {
            pack,
            blobs,
            end,
            len: packs.get(&pack).copied().unwrap_or(0),
        });
    }
}

/// Trees the walk reads ahead: when a directory's tree is not at hand, it and those of the
/// directories next on the stack are read in parallel (on a remote store each tree is a round
/// trip), then walked in order exactly as if read one by one. At most [`TREES_AHEAD`] trees
/// and [`AHEAD_BYTES`] of them (by the index's raw lengths) are held besides the one walked,
/// whatever the latency.
const TREES_AHEAD: usize = 256;
/// See [`TREES_AHEAD`].
const AHEAD_BYTES: u64 = 32 << 20;

#[derive(Default)]
struct ReadAhead {
    trees: HashMap<BlobId, (u64, Result<crate::format::tree::Tree>)>,
    bytes: u64,
}

impl ReadAhead {
    /// The tree `t`: read ahead, or read now.
    fn take(
        &mut self,
        repo: &Repository,
        index: &Index,
        t: &BlobId,
    ) -> Result<crate::format::tree::Tree> {
        match self.trees.remove(t) {
            Some((len, tree)) => {
                self.bytes -= len;
                tree
            }
            None => repo.read_tree(index, t),
        }
    }

    /// Unless every tree of `first` is at hand or walked, reads in parallel those of `first`
    /// and then of `rest`, in order, within the bounds.
    fn fill<'a>(
        &mut self,
        (repo, index, readers): (&Repository, &Index, &rayon::ThreadPool),
        first: &'a [BlobId],
        rest: impl Iterator<Item = &'a [BlobId]>,
        seen: &HashSet<BlobId>,
    ) {
        let wanted = |t: &BlobId| !seen.contains(t) && !self.trees.contains_key(t);
        if !first.iter().any(wanted) {
            return;
        }
        // A tree the index does not know is left to `take`, which reports it.
        let mut chosen: HashSet<BlobId> = HashSet::new();
        let mut locations = Vec::new();
        let mut bytes = self.bytes;
        'dirs: for parts in std::iter::once(first).chain(rest) {
            for t in parts.iter().filter(|t| wanted(t)) {
                let Some(loc) = index.get(t) else { continue };
                let len = u64::from(loc.entry.raw_len);
                let full =
                    self.trees.len() + chosen.len() >= TREES_AHEAD || bytes + len > AHEAD_BYTES;
                if full && !chosen.is_empty() {
                    break 'dirs;
                }
                if chosen.insert(*t) {
                    locations.push(loc);
                    bytes += len;
                }
            }
        }
        // Neighbouring trees of one pack share a ranged read (restic reads tree packs whole;
        // one request per tree would cost a round trip each).
        let groups = crate::ops::copy::ranges::group(locations);
        let read: Vec<(BlobId, u64, Result<crate::format::tree::Tree>)> = readers.install(|| {
            groups
                .par_iter()
                .flat_map_iter(|g| read_trees(repo, index, g))
                .collect()
        });
        for (t, len, tree) in read {
            self.bytes += len;
            self.trees.insert(t, (len, tree));
        }
    }
}

/// The trees of one coalesced read, with their raw lengths. A tree that fails from the shared bytes (or a read that
/// fails) is read again alone with [`Repository::read_tree`], which tries every location and
/// says what is wrong, so a finding is the same as without the read-ahead.
fn read_trees(
    repo: &Repository,
    index: &Index,
    g: &crate::ops::copy::ranges::ReadGroup,
) -> Vec<(BlobId, u64, Result<crate::format::tree::Tree>)> {
    let alone = |e: &crate::format::pack::PackEntry| {
        (e.id, u64::from(e.raw_len), repo.read_tree(index, &e.id))
    };
    let Ok(mut bytes) = repo
        .backend()
        .read_range(FileType::Pack, &g.pack.0, g.offset, g.len)
    else {
        return g.entries.iter().map(alone).collect();
    };
    let mut plain = Vec::new();
    g.entries
        .iter()
        .map(|e| {
            let at = u64::from(e.offset).saturating_sub(g.offset) as usize;
            let tree = bytes
                .get_mut(at..at + e.length as usize)
                .and_then(|sealed| repo.open_blob_into(e, sealed, &mut plain).ok())
                .and_then(|data| crate::format::tree::Tree::decode(data).ok());
            match tree {
                Some(t) => (e.id, u64::from(e.raw_len), Ok(t)),
                None => alone(e),
            }
        })
        .collect()
}

/// Walks every snapshot's trees, each tree once, reporting unreadable trees and file chunks
/// in no index with the path of the file.
fn walk_snapshots(
    repo: &Repository,
    index: &Index,
    snapshots: &[(SnapshotId, crate::format::snapshot::Snapshot)],
    readers: &rayon::ThreadPool,
    r: &mut CheckReport,
) {
    let mut seen_trees: HashSet<BlobId> = HashSet::new();
    for (sid, snap) in snapshots {
        let sid = *sid;
        // Iterative, each tree scanned once; a split directory's parts are all read (even
        // if seen) to check their order across parts.
        // Depth is that of the first path reaching a tree: exact for a crafted chain, which
        // readers would refuse (FORMAT §20), so check says so too.
        let mut stack: Vec<(NodeKind, usize, String)> =
            vec![(NodeKind::Dir { subtree: snap.tree }, 0, String::new())];
        let mut ahead = ReadAhead::default();
        while let Some((dir, depth, path)) = stack.pop() {
            if depth > crate::format::tree::MAX_DEPTH {
                r.push(Finding::TreeInvalid {
                    snapshot: sid,
                    reason: format!(
                        "directories nest deeper than {} levels",
                        crate::format::tree::MAX_DEPTH
                    ),
                });
                continue;
            }
            let split = matches!(dir, NodeKind::DirParts { .. });
            let parts = dir.dir_parts().unwrap_or_default();
            if split && parts.is_empty() {
                r.push(Finding::TreeInvalid {
                    snapshot: sid,
                    reason: format!("split directory {:?} has no parts", display_dir(&path)),
                });
            }
            let next = stack
                .iter()
                .rev()
                .map(|(d, _, _)| d.dir_parts().unwrap_or_default());
            ahead.fill((repo, index, readers), parts, next, &seen_trees);
            let mut last: Option<Vec<u8>> = None;
            for t in parts {
                if !split && seen_trees.contains(t) {
                    continue;
                }
                let tree = match ahead.take(repo, index, t) {
                    Ok(tree) => tree,
                    Err(e) => {
                        r.push(Finding::TreeDamaged {
                            snapshot: sid,
                            tree: *t,
                            reason: reason_of(&e),
                        });
                        break;
                    }
                };
                if split && let Err(e) = tree.check_follows(last.as_deref()) {
                    r.push(Finding::TreeDamaged {
                        snapshot: sid,
                        tree: *t,
                        reason: e.to_string(),
                    });
                }
                last = tree.nodes.last().map(|n| n.name.clone());
                if !seen_trees.insert(*t) {
                    continue;
                }
                if !index.contains(t) {
                    r.push(Finding::BlobOnlyRetired {
                        snapshot: sid,
                        blob: *t,
                        path: display_dir(&path).to_owned(),
                    });
                }
                for n in &tree.nodes {
                    let child = || format!("{path}/{}", String::from_utf8_lossy(&n.name));
                    match &n.kind {
                        NodeKind::Dir { .. } | NodeKind::DirParts { .. } => {
                            stack.push((n.kind.clone(), depth + 1, child()))
                        }
                        NodeKind::File { content, .. } => {
                            let mut lost = content.iter().filter(|c| !index.contains_any(c));
                            if let Some(first) = lost.next() {
                                r.push(Finding::BlobMissing {
                                    snapshot: sid,
                                    blob: *first,
                                    missing: 1 + lost.count(),
                                    path: child(),
                                });
                            } else if let Some(c) = content.iter().find(|c| !index.contains(c)) {
                                r.push(Finding::BlobOnlyRetired {
                                    snapshot: sid,
                                    blob: *c,
                                    path: child(),
                                });
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

fn display_dir(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

/// The reason inside a damage error, without the advice the error adds for other commands.
fn reason_of(e: &Error) -> String {
    match e {
        Error::Corrupt { reason, .. } => reason.clone(),
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::backend::local::LocalBackend;
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
        let local: Arc<dyn Backend> = Arc::new(LocalBackend::open(d.path().join("repo")).unwrap());
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
        assert!(r.is_ok(), "false damage: {:?}", r.findings);
    }

    /// An index file a newer cista wrote is named as such and stops the check; it is never
    /// "damaged" (which would invite a repair to replace it).
    #[test]
    fn newer_index_file_is_its_own_finding_and_stops_the_check() {
        let r = crate::repo::tests::repo();
        let mut bytes = crate::format::header(ObjectKind::Index).to_vec();
        bytes[5] = 9;
        bytes.extend_from_slice(&[7u8; 64]);
        let id = Id::of_stored(&bytes);
        r.backend().write(FileType::Index, &id, bytes).unwrap();
        let report = run(&r, &CheckOptions::read_all()).unwrap();
        assert!(report.stopped);
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        match &report.findings[0] {
            Finding::NewerFormat {
                object, id: got, ..
            } => {
                assert_eq!((*object, *got), (ObjectType::Index, id));
            }
            other => panic!("{other:?}"),
        }
        assert!(!report.is_ok());
        assert!(report.broken_packs().is_empty());
    }
}
