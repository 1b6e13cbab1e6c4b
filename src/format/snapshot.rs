//! Snapshots (docs/FORMAT.md, "Snapshots"): one backup run, naming its root tree.

use serde::{Deserialize, Serialize};

use super::{FormatError, decode_capped, encode};
use crate::id::{BlobId, SnapshotId};

/// Largest snapshot plaintext accepted (after decompression).
pub const MAX_SNAPSHOT_LEN: u64 = 16 << 20;

/// What one backup run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Summary {
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files in the parent whose node (content or metadata) differs from the parent's.
    pub files_changed: u64,
    /// Files whose node equals the parent's (restic's `Node.Equals`).
    pub files_unmodified: u64,
    /// Directories not in the parent.
    pub dirs_new: u64,
    /// Directories whose tree changed.
    pub dirs_changed: u64,
    /// Directories whose tree is identical to the parent's.
    pub dirs_unmodified: u64,
    /// Data blobs this run added to the repository (restic's `data_blobs`). In snapshots
    /// written before `tree_blobs` existed this counted tree blobs too.
    pub data_blobs: u64,
    /// Bytes of plaintext this run added (before compression).
    pub data_added: u64,
    /// Bytes this run added to storage (sealed, compressed blobs).
    pub data_added_packed: u64,
    /// Files examined.
    pub total_files_processed: u64,
    /// Bytes of file content covered by this snapshot.
    pub total_bytes_processed: u64,
    /// Start, ns since the Unix epoch.
    pub backup_start_ns: i64,
    /// End, ns since the Unix epoch.
    pub backup_end_ns: i64,
    /// Source entries that could not be read, or changed while being read (the snapshot is
    /// then incomplete).
    pub errors: u64,
    /// Tree blobs this run added (restic's `tree_blobs`). Appended last so that a snapshot
    /// written before it existed is still read: see [`Snapshot::decode`].
    pub tree_blobs: u64,
}

/// The 14-field summary of snapshots written before `tree_blobs` was appended.
#[derive(Deserialize)]
struct SummaryV1 {
    files_new: u64,
    files_changed: u64,
    files_unmodified: u64,
    dirs_new: u64,
    dirs_changed: u64,
    dirs_unmodified: u64,
    blobs_added: u64,
    data_added: u64,
    data_added_packed: u64,
    total_files_processed: u64,
    total_bytes_processed: u64,
    backup_start_ns: i64,
    backup_end_ns: i64,
    errors: u64,
}

impl From<SummaryV1> for Summary {
    fn from(v: SummaryV1) -> Self {
        Self {
            files_new: v.files_new,
            files_changed: v.files_changed,
            files_unmodified: v.files_unmodified,
            dirs_new: v.dirs_new,
            dirs_changed: v.dirs_changed,
            dirs_unmodified: v.dirs_unmodified,
            data_blobs: v.blobs_added,
            data_added: v.data_added,
            data_added_packed: v.data_added_packed,
            total_files_processed: v.total_files_processed,
            total_bytes_processed: v.total_bytes_processed,
            backup_start_ns: v.backup_start_ns,
            backup_end_ns: v.backup_end_ns,
            errors: v.errors,
            tree_blobs: 0,
        }
    }
}

/// A snapshot with the 14-field summary (FORMAT §16, "Older summaries").
#[derive(Deserialize)]
struct SnapshotV1 {
    time_unix_ns: i64,
    tz_offset_s: i32,
    hostname: String,
    username: String,
    uid: u32,
    gid: u32,
    paths: Vec<String>,
    tags: Vec<String>,
    tree: BlobId,
    parent: Option<SnapshotId>,
    program_version: String,
    incomplete: bool,
    summary: SummaryV1,
}

impl From<SnapshotV1> for Snapshot {
    fn from(v: SnapshotV1) -> Self {
        Self {
            time_unix_ns: v.time_unix_ns,
            tz_offset_s: v.tz_offset_s,
            hostname: v.hostname,
            username: v.username,
            uid: v.uid,
            gid: v.gid,
            paths: v.paths,
            tags: v.tags,
            tree: v.tree,
            parent: v.parent,
            program_version: v.program_version,
            incomplete: v.incomplete,
            summary: v.summary.into(),
            original: None,
        }
    }
}

/// One snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the backup started, ns since the Unix epoch.
    pub time_unix_ns: i64,
    /// The local UTC offset then, in seconds (for display).
    pub tz_offset_s: i32,
    /// Host name (`--host` or the machine's).
    pub hostname: String,
    /// User who ran the backup.
    pub username: String,
    /// That user's uid.
    pub uid: u32,
    /// That user's gid.
    pub gid: u32,
    /// Absolute paths backed up, sorted (for stdin: `/NAME`).
    pub paths: Vec<String>,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Root tree: absolute paths are found below it, as in restic.
    pub tree: BlobId,
    /// The snapshot used for change detection, if any.
    pub parent: Option<SnapshotId>,
    /// `cista <version>`.
    pub program_version: String,
    /// True when some source entries could not be read.
    pub incomplete: bool,
    /// Statistics.
    pub summary: Summary,
    /// The snapshot this one was rewritten from by `tag` (restic's `original`), kept over
    /// every later rewrite. Encoded after `summary` only when set (FORMAT §16, "Original"),
    /// so a snapshot without it keeps the older layout.
    #[serde(skip)]
    pub original: Option<SnapshotId>,
}

impl Snapshot {
    /// Canonical plaintext: the fields in order, then `original`'s 32 bytes if it is set.
    pub fn encode(&self) -> Vec<u8> {
        match &self.original {
            // bincode writes a tuple as its members back to back, with no framing.
            Some(o) => encode(&(self, o)),
            None => encode(self),
        }
    }

    /// Decodes a snapshot plaintext. The summary has a fixed width and the fields before it
    /// decode the same in every layout, so the layouts differ only in what follows: 32 bytes
    /// of `original`, nothing, or (written before `tree_blobs` was appended) 8 bytes fewer,
    /// read with `tree_blobs` 0. Trailing or missing bytes fail a layout, so no plaintext
    /// decodes under two.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        const CAP: usize = MAX_SNAPSHOT_LEN as usize;
        super::check_len("snapshot", bytes.len() as u64, MAX_SNAPSHOT_LEN)?;
        let current = match decode_capped::<Snapshot, CAP>(bytes, "snapshot") {
            Ok(s) => return Ok(s),
            Err(e) => e,
        };
        if let Ok((mut s, o)) = decode_capped::<(Snapshot, SnapshotId), CAP>(bytes, "snapshot") {
            s.original = Some(o);
            return Ok(s);
        }
        decode_capped::<SnapshotV1, CAP>(bytes, "snapshot")
            .map(Snapshot::from)
            // The current layout's complaint is the one that describes the bytes.
            .map_err(|_| current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let s = Snapshot {
            time_unix_ns: 5,
            tz_offset_s: 3600,
            hostname: "h".into(),
            username: "u".into(),
            uid: 1,
            gid: 2,
            paths: vec!["/srv".into()],
            tags: vec!["t".into()],
            tree: BlobId(Id([1; 32])),
            parent: Some(SnapshotId(Id([2; 32]))),
            program_version: "cista 0.1.0".into(),
            incomplete: false,
            original: None,
            summary: Summary {
                files_new: 3,
                ..Summary::default()
            },
        };
        assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
    }

    /// A snapshot written with the 14-field summary still opens: `tree_blobs` reads as 0.
    #[test]
    fn older_summary_without_tree_blobs_decodes() {
        let mut s = Snapshot {
            time_unix_ns: 5,
            tz_offset_s: 0,
            hostname: "h".into(),
            username: "u".into(),
            uid: 1,
            gid: 2,
            paths: vec!["/srv".into()],
            tags: vec![],
            tree: BlobId(Id([1; 32])),
            parent: None,
            program_version: "cista 0.1.0".into(),
            incomplete: false,
            original: None,
            summary: Summary {
                data_blobs: 9,
                tree_blobs: 4,
                ..Summary::default()
            },
        };
        let bytes = s.encode();
        let old = &bytes[..bytes.len() - 8];
        s.summary.tree_blobs = 0;
        assert_eq!(Snapshot::decode(old).unwrap(), s);
        assert!(Snapshot::decode(&bytes[..bytes.len() - 4]).is_err());
    }

    /// `original` is appended only when set: without it the bytes are the older layout, with
    /// it exactly 32 more; anything in between is refused.
    #[test]
    fn original_is_appended_only_when_set() {
        let mut s = Snapshot::decode(&crate::format::encode(&Snapshot {
            time_unix_ns: 1,
            tz_offset_s: 0,
            hostname: "h".into(),
            username: "u".into(),
            uid: 0,
            gid: 0,
            paths: vec![],
            tags: vec![],
            tree: BlobId(Id([1; 32])),
            parent: None,
            program_version: "cista".into(),
            incomplete: false,
            summary: Summary::default(),
            original: None,
        }))
        .unwrap();
        assert_eq!(s.original, None);
        let plain = s.encode();
        s.original = Some(SnapshotId(Id([7; 32])));
        let with = s.encode();
        assert_eq!(with.len(), plain.len() + 32);
        assert_eq!(with[..plain.len()], plain[..]);
        assert_eq!(Snapshot::decode(&with).unwrap(), s);
        assert!(Snapshot::decode(&with[..with.len() - 16]).is_err());
    }

    proptest! {
        #[test]
        fn decode_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Snapshot::decode(&bytes);
        }
    }
}
