//! What `check` finds, as typed values carrying the ids of the objects concerned, so a repair
//! or prune plan can be computed from them and the CLI can print them without parsing text.
//!
//! Each finding has a [`Severity`], a one-line [`Display`](std::fmt::Display) naming the object
//! and what is wrong (and what to run about it), and a stable JSON form ([`Finding::to_json`]:
//! field names are part of the CLI's interface, docs/CLI.md "check"). An object a newer cista
//! wrote is [`Finding::NewerFormat`], never "damaged": no repair may delete it.

use std::fmt;

use serde_json::{Value, json};

use crate::id::{BlobId, Id, IndexId, KeyId, PackId, SnapshotId};

/// How bad a finding is. Errors make `check` fail; warnings and infos do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The repository cannot restore everything it claims to hold, or cannot be verified.
    Error,
    /// Harmless for the data, but worth knowing (left over by a crash, fixed by the next run).
    Warning,
    /// Informational.
    Info,
}

impl Severity {
    /// The lower-case name used in text and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Info => "info",
        }
    }
}

/// The kind of a stored object, for findings about any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    /// A key file (`keys/`).
    Key,
    /// A snapshot (`snapshots/`).
    Snapshot,
    /// An index file (`index/`).
    Index,
    /// A lock (`locks/`).
    Lock,
    /// A pack (`data/`).
    Pack,
}

impl ObjectType {
    /// The name used in messages and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key file",
            Self::Snapshot => "snapshot",
            Self::Index => "index file",
            Self::Lock => "lock",
            Self::Pack => "pack",
        }
    }
}

/// One problem (or notable state) `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A newer cista wrote this object; this build cannot verify it and must not touch it.
    NewerFormat {
        object: ObjectType,
        id: Id,
        reason: String,
    },
    /// A key file does not decode (the passphrases it wraps are lost).
    KeyDamaged { key: KeyId, reason: String },
    /// A snapshot does not open or decode.
    SnapshotDamaged {
        snapshot: SnapshotId,
        reason: String,
    },
    /// An index file does not open or decode; it was skipped.
    IndexDamaged { index: IndexId, reason: String },
    /// A pack is named by no readable index file, only by a damaged one; its header was read.
    PackRecovered { pack: PackId },
    /// A pack named by an index is not in storage.
    PackMissing { pack: PackId },
    /// A pack in storage that no index names (left by an interrupted backup).
    PackUnindexed { pack: PackId, len: u64 },
    /// An index entry points past the end of its pack (the pack is truncated or the index wrong).
    IndexEntryOutOfRange {
        pack: PackId,
        blobs: usize,
        end: u64,
        len: u64,
    },
    /// A pack's bytes do not hash to its name.
    PackHashMismatch { pack: PackId },
    /// A pack cannot be read or its header does not open or decode.
    PackDamaged { pack: PackId, reason: String },
    /// An index lists a blob in a pack whose header does not list it so.
    HeaderIndexMismatch { pack: PackId, blob: BlobId },
    /// A blob in a pack does not open, decompress or match its id.
    BlobDamaged {
        pack: PackId,
        blob: BlobId,
        reason: String,
    },
    /// A snapshot's tree cannot be read or decoded, or breaks a tree rule.
    TreeDamaged {
        snapshot: SnapshotId,
        tree: BlobId,
        reason: String,
    },
    /// A snapshot's directories break a reader's cap (too deep, an empty split directory).
    TreeInvalid {
        snapshot: SnapshotId,
        reason: String,
    },
    /// Chunks of a file are in no index: `blob` is the first of them, `missing` how many
    /// (one finding per file, so a large lost file is one line, not thousands).
    BlobMissing {
        snapshot: SnapshotId,
        blob: BlobId,
        missing: usize,
        path: String,
    },
    /// A file in `tmp/`: a write in progress, or one a crash interrupted.
    TempFile {
        name: String,
        len: u64,
        age_secs: u64,
    },
    /// A lock whose holder is gone (not refreshed, or its process no longer exists).
    StaleLock {
        lock: Id,
        holder: String,
        age_secs: u64,
    },
    /// A lock that cannot be read (it blocks no one).
    LockUnreadable { lock: Id, reason: String },
    /// A pack pending deletion is already gone: a prune deleted it and stopped before it
    /// rewrote the index (FORMAT §14); the next prune drops it.
    ObsoletePackDeleted { pack: PackId },
    /// Packs pending deletion (retired by a prune, waiting for processes that may read them).
    PacksRetired { packs: usize, bytes: u64 },
    /// A snapshot's blob is held only by packs pending deletion: readable, and the next prune
    /// keeps it (FORMAT §18, "Retiring and deleting packs").
    BlobOnlyRetired {
        snapshot: SnapshotId,
        blob: BlobId,
        path: String,
    },
}

impl Finding {
    /// How bad it is.
    pub fn severity(&self) -> Severity {
        match self {
            Self::PackRecovered { .. }
            | Self::PackUnindexed { .. }
            | Self::TempFile { .. }
            | Self::LockUnreadable { .. }
            | Self::BlobOnlyRetired { .. } => Severity::Warning,
            Self::StaleLock { .. }
            | Self::ObsoletePackDeleted { .. }
            | Self::PacksRetired { .. } => Severity::Info,
            _ => Severity::Error,
        }
    }

    /// A stable snake_case name of the kind, the `kind` field of the JSON form.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NewerFormat { .. } => "newer_format",
            Self::KeyDamaged { .. } => "key_damaged",
            Self::SnapshotDamaged { .. } => "snapshot_damaged",
            Self::IndexDamaged { .. } => "index_damaged",
            Self::PackRecovered { .. } => "pack_recovered",
            Self::PackMissing { .. } => "pack_missing",
            Self::PackUnindexed { .. } => "pack_unindexed",
            Self::IndexEntryOutOfRange { .. } => "index_entry_out_of_range",
            Self::PackHashMismatch { .. } => "pack_hash_mismatch",
            Self::PackDamaged { .. } => "pack_damaged",
            Self::HeaderIndexMismatch { .. } => "header_index_mismatch",
            Self::BlobDamaged { .. } => "blob_damaged",
            Self::TreeDamaged { .. } => "tree_damaged",
            Self::TreeInvalid { .. } => "tree_invalid",
            Self::BlobMissing { .. } => "blob_missing",
            Self::TempFile { .. } => "temp_file",
            Self::StaleLock { .. } => "stale_lock",
            Self::LockUnreadable { .. } => "lock_unreadable",
            Self::ObsoletePackDeleted { .. } => "obsolete_pack_deleted",
            Self::PacksRetired { .. } => "packs_retired",
            Self::BlobOnlyRetired { .. } => "blob_only_retired",
        }
    }

    /// The pack this finding says is damaged in storage (restic's `broken_packs`): its bytes
    /// are wrong, so only removing it (and the snapshots' references) repairs it.
    pub fn broken_pack(&self) -> Option<PackId> {
        match self {
            Self::PackHashMismatch { pack }
            | Self::PackDamaged { pack, .. }
            | Self::BlobDamaged { pack, .. } => Some(*pack),
            _ => None,
        }
    }

    /// Whether `cista repair index` addresses this finding (restic's `suggest_repair_index`).
    pub fn suggests_repair_index(&self) -> bool {
        matches!(
            self,
            Self::IndexDamaged { .. }
                | Self::PackRecovered { .. }
                | Self::PackMissing { .. }
                | Self::PackUnindexed { .. }
                | Self::IndexEntryOutOfRange { .. }
                | Self::HeaderIndexMismatch { .. }
        )
    }

    /// The stable JSON form: `kind`, `severity`, the ids concerned in full hex, the details,
    /// and `message` (the Display text).
    pub fn to_json(&self) -> Value {
        let mut v = match self {
            Self::NewerFormat { object, id, reason } => {
                json!({"object": object.as_str(), "id": id.to_hex(), "reason": reason})
            }
            Self::KeyDamaged { key, reason } => json!({"key": key.to_hex(), "reason": reason}),
            Self::SnapshotDamaged { snapshot, reason } => {
                json!({"snapshot": snapshot.to_hex(), "reason": reason})
            }
            Self::IndexDamaged { index, reason } => {
                json!({"index": index.to_hex(), "reason": reason})
            }
            Self::PackRecovered { pack }
            | Self::PackMissing { pack }
            | Self::PackHashMismatch { pack }
            | Self::ObsoletePackDeleted { pack } => json!({"pack": pack.to_hex()}),
            Self::PacksRetired { packs, bytes } => json!({"packs": packs, "size": bytes}),
            Self::BlobOnlyRetired {
                snapshot,
                blob,
                path,
            } => json!({"snapshot": snapshot.to_hex(), "blob": blob.to_hex(), "path": path}),
            Self::PackUnindexed { pack, len } => json!({"pack": pack.to_hex(), "size": len}),
            Self::IndexEntryOutOfRange {
                pack,
                blobs,
                end,
                len,
            } => json!({"pack": pack.to_hex(), "blobs": blobs, "end": end, "size": len}),
            Self::PackDamaged { pack, reason } => {
                json!({"pack": pack.to_hex(), "reason": reason})
            }
            Self::HeaderIndexMismatch { pack, blob } => {
                json!({"pack": pack.to_hex(), "blob": blob.to_hex()})
            }
            Self::BlobDamaged { pack, blob, reason } => {
                json!({"pack": pack.to_hex(), "blob": blob.to_hex(), "reason": reason})
            }
            Self::TreeDamaged {
                snapshot,
                tree,
                reason,
            } => json!({"snapshot": snapshot.to_hex(), "tree": tree.to_hex(), "reason": reason}),
            Self::TreeInvalid { snapshot, reason } => {
                json!({"snapshot": snapshot.to_hex(), "reason": reason})
            }
            Self::BlobMissing {
                snapshot,
                blob,
                missing,
                path,
            } => {
                json!({"snapshot": snapshot.to_hex(), "blob": blob.to_hex(), "missing": missing, "path": path})
            }
            Self::TempFile {
                name,
                len,
                age_secs,
            } => json!({"name": name, "size": len, "age_secs": age_secs}),
            Self::StaleLock {
                lock,
                holder,
                age_secs,
            } => json!({"lock": lock.to_hex(), "holder": holder, "age_secs": age_secs}),
            Self::LockUnreadable { lock, reason } => {
                json!({"lock": lock.to_hex(), "reason": reason})
            }
        };
        if let Value::Object(m) = &mut v {
            m.insert("kind".into(), self.kind().into());
            m.insert("severity".into(), self.severity().as_str().into());
            m.insert("message".into(), self.to_string().into());
        }
        v
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NewerFormat { object, id, .. } => write!(
                f,
                "{} {id} was written by a newer version of cista: upgrade cista to check it (it was not verified, and no repair touches it)",
                object.as_str()
            ),
            Self::KeyDamaged { key, reason } => write!(
                f,
                "key file {key} is damaged ({reason}); its passphrase no longer opens the repository: add another with `cista key add`, or restore keys/ from a copy"
            ),
            Self::SnapshotDamaged { snapshot, reason } => write!(
                f,
                "snapshot {snapshot} is damaged ({reason}); nothing can be restored from it: remove it with `cista forget {}`, and back up again what still exists",
                snapshot.to_hex()
            ),
            Self::IndexDamaged { index, reason } => write!(
                f,
                "index file {index} is damaged ({reason}); it was skipped and its packs' headers read instead: run `cista repair index`"
            ),
            Self::PackRecovered { pack } => write!(
                f,
                "pack {pack} is named by no readable index file; its header was read instead: run `cista repair index`"
            ),
            Self::ObsoletePackDeleted { pack } => write!(
                f,
                "pack {pack} is pending deletion and already deleted: the next prune drops it from the index"
            ),
            Self::PacksRetired { packs, bytes } => write!(
                f,
                "{packs} packs ({bytes} bytes) are retired by a prune and wait for processes that may still read them: the next prune deletes them"
            ),
            Self::BlobOnlyRetired {
                snapshot,
                blob,
                path,
            } => write!(
                f,
                "snapshot {snapshot}: {path:?}: blob {blob} is only in packs pending deletion; it is readable, and the next prune keeps it"
            ),
            Self::PackMissing { pack } => write!(
                f,
                "pack {pack} is named by an index but missing from storage; the blobs only it held are lost: run `cista repair index`, then back up again what still exists"
            ),
            Self::PackUnindexed { pack, len } => write!(
                f,
                "pack {pack} ({len} bytes) is not indexed (left by an interrupted backup): the next backup or `cista repair index` indexes it"
            ),
            Self::IndexEntryOutOfRange {
                pack,
                blobs,
                end,
                len,
            } => write!(
                f,
                "pack {pack} is {len} bytes, but {blobs} indexed blobs end past it (up to byte {end}): the pack is truncated or the index is wrong; run `cista repair index`"
            ),
            Self::PackHashMismatch { pack } => write!(
                f,
                "pack {pack}: contents do not match its name (bit rot or tampering); the blobs only it holds are damaged"
            ),
            Self::PackDamaged { pack, reason } => write!(
                f,
                "pack {pack} is damaged ({reason}); the blobs only it holds are lost"
            ),
            Self::HeaderIndexMismatch { pack, blob } => write!(
                f,
                "pack {pack}: blob {blob} is indexed but not in the pack header: run `cista repair index`"
            ),
            Self::BlobDamaged { pack, blob, reason } => write!(
                f,
                "pack {pack}: blob {blob} is damaged ({reason}); the files using it cannot be restored from this copy"
            ),
            Self::TreeDamaged {
                snapshot,
                tree,
                reason,
            } => write!(
                f,
                "snapshot {snapshot}: tree {tree} cannot be read ({reason}); what that directory held is lost from this snapshot"
            ),
            Self::TreeInvalid { snapshot, reason } => {
                write!(f, "snapshot {snapshot}: {reason}; readers refuse it")
            }
            Self::BlobMissing {
                snapshot,
                blob,
                missing,
                path,
            } => {
                write!(f, "snapshot {snapshot}: file {path:?}: chunk {blob}")?;
                if *missing > 1 {
                    write!(f, " and {} more are", missing - 1)?;
                } else {
                    f.write_str(" is")?;
                }
                f.write_str(" in no index; the file cannot be restored")
            }
            Self::TempFile {
                name,
                len,
                age_secs,
            } => write!(
                f,
                "tmp/{name} ({len} bytes, modified {} min ago) is a write in progress or one a crash interrupted; files older than 24 h are removed when the repository is next opened",
                age_secs / 60
            ),
            Self::StaleLock {
                lock,
                holder,
                age_secs,
            } => write!(
                f,
                "lock {lock} of {holder} is stale (refreshed {} min ago, or its process is gone) and blocks no one; `cista unlock` removes it",
                age_secs / 60
            ),
            Self::LockUnreadable { lock, reason } => write!(
                f,
                "lock {lock} cannot be read ({reason}) and blocks no one; `cista unlock` removes it"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack() -> PackId {
        PackId(Id([0xab; 32]))
    }

    #[test]
    fn severities_and_hints() {
        let missing = Finding::PackMissing { pack: pack() };
        assert_eq!(missing.severity(), Severity::Error);
        assert!(missing.suggests_repair_index());
        assert_eq!(missing.broken_pack(), None);
        let unindexed = Finding::PackUnindexed {
            pack: pack(),
            len: 10,
        };
        assert_eq!(unindexed.severity(), Severity::Warning);
        let bad = Finding::PackHashMismatch { pack: pack() };
        assert_eq!(bad.broken_pack(), Some(pack()));
        assert!(!bad.suggests_repair_index());
        let newer = Finding::NewerFormat {
            object: ObjectType::Index,
            id: Id([1; 32]),
            reason: "index file was written by a newer version of cista".into(),
        };
        assert_eq!(newer.severity(), Severity::Error);
        assert!(
            !newer.suggests_repair_index() && newer.broken_pack().is_none(),
            "a newer object is never a repair's to touch"
        );
        assert!(!newer.to_string().contains("damaged"), "{newer}");
    }

    #[test]
    fn json_form_is_stable() {
        let f = Finding::BlobMissing {
            snapshot: SnapshotId(Id([2; 32])),
            blob: BlobId(Id([3; 32])),
            missing: 4,
            path: "/srv/a".into(),
        };
        assert!(
            f.to_string()
                .contains("chunk 03030303 and 3 more are in no index"),
            "{f}"
        );
        let v = f.to_json();
        assert_eq!(v["kind"], "blob_missing");
        assert_eq!(v["severity"], "error");
        assert_eq!(v["snapshot"], "02".repeat(32));
        assert_eq!(v["blob"], "03".repeat(32));
        assert_eq!(v["path"], "/srv/a");
        assert_eq!(v["missing"], 4);
        assert_eq!(v["message"], f.to_string());
    }

    #[test]
    fn display_is_one_line_naming_the_object() {
        let f = Finding::IndexDamaged {
            index: IndexId(Id([0xcd; 32])),
            reason: "authentication failed".into(),
        };
        let s = f.to_string();
        assert!(!s.contains('\n'));
        assert!(s.starts_with("index file cdcdcdcd"), "{s}");
        assert!(s.contains("cista repair index"), "{s}");
    }
}
