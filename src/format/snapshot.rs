//! Snapshots (docs/FORMAT.md, "Snapshots"): one backup run, naming its root tree.

use serde::{Deserialize, Serialize};

use super::{FormatError, decode_capped, decode_prefix_capped, encode};
use crate::id::{BlobId, SnapshotId};

/// Largest snapshot plaintext accepted (after decompression).
pub const MAX_SNAPSHOT_LEN: u64 = 16 << 20;
/// Most paths a repaired snapshot records in [`Lost::paths`] (the counts stay exact): with
/// paths of at most 4096 bytes this keeps the record under a quarter of the snapshot cap.
pub const MAX_LOST_PATHS: usize = 1000;

/// What `repair snapshots` could not recover when it wrote this snapshot (format version 3),
/// so a repaired snapshot says what it lacks, never silently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Lost {
    /// Files whose content was missing or unreadable: they are empty in this snapshot.
    pub files: u64,
    /// Directories whose tree was missing or damaged: they are empty in this snapshot.
    pub dirs: u64,
    /// The paths of those files and directories, in walk order, at most [`MAX_LOST_PATHS`]
    /// (names that are not UTF-8 are recorded lossily; the tree keeps the exact bytes).
    pub paths: Vec<String>,
}

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
            lost: None,
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
    /// restic's `original`: the snapshot this one was rewritten from (`rewrite`, `tag`,
    /// `repair snapshots`). Format version 3: encoded after the summary only when set, so a
    /// snapshot that was never rewritten keeps the version 2 bytes (see [`Snapshot::decode`]).
    #[serde(skip)]
    pub original: Option<SnapshotId>,
    /// What was lost when `repair snapshots` wrote this snapshot. Format version 3: encoded
    /// after `original` only when set; a writer that sets it MUST set `original` too (a
    /// repaired snapshot is always rewritten from one), else it is not written.
    #[serde(skip)]
    pub lost: Option<Lost>,
}

impl Snapshot {
    /// Canonical plaintext: the version 2 fields, then `original` (32 bytes) only when set,
    /// then `lost` only when set.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = encode(self);
        if let Some(o) = &self.original {
            b.extend_from_slice(o.as_bytes());
            if let Some(l) = &self.lost {
                b.extend_from_slice(&encode(l));
            }
        }
        b
    }

    /// Decodes a snapshot plaintext. The fields up to the summary are read first; what
    /// follows them decides the layout: nothing (version 2), exactly the 32 bytes of
    /// `original`, or `original` followed by exactly one encoded [`Lost`] (version 3). The summary has fixed width, so a snapshot whose summary ends
    /// after `errors` (written before `tree_blobs` was appended) is exactly 8 bytes short of
    /// the version 2 layout and fails it: it is read with the older layout and its
    /// `tree_blobs` is 0. Every field before the tail is parsed the same way under each
    /// layout, so no plaintext decodes under two.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        super::check_len("snapshot", bytes.len() as u64, MAX_SNAPSHOT_LEN)?;
        match decode_prefix_capped::<Self, { MAX_SNAPSHOT_LEN as usize }>(bytes, "snapshot") {
            Ok((mut s, used)) => {
                (s.original, s.lost) = Self::decode_tail(&bytes[used..])?;
                Ok(s)
            }
            Err(current) => {
                decode_capped::<SnapshotV1, { MAX_SNAPSHOT_LEN as usize }>(bytes, "snapshot")
                    .map(Snapshot::from)
                    // The current layout's complaint is the one that describes the bytes.
                    .map_err(|_| current)
            }
        }
    }

    /// The version 3 fields after the summary: none, `original`, or `original` and `lost`.
    #[allow(clippy::type_complexity)]
    fn decode_tail(tail: &[u8]) -> Result<(Option<SnapshotId>, Option<Lost>), FormatError> {
        if tail.is_empty() {
            return Ok((None, None));
        }
        let Some((id, rest)) = tail.split_first_chunk::<32>() else {
            return Err(FormatError::malformed(
                "snapshot",
                format!(
                    "{} bytes after the summary (expected 0, or 32 for `original`)",
                    tail.len()
                ),
            ));
        };
        let original = Some(SnapshotId(crate::id::Id(*id)));
        if rest.is_empty() {
            return Ok((original, None));
        }
        let lost = decode_capped::<Lost, { MAX_SNAPSHOT_LEN as usize }>(rest, "snapshot")?;
        Ok((original, Some(lost)))
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
            summary: Summary {
                files_new: 3,
                ..Summary::default()
            },
            original: None,
            lost: None,
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
            summary: Summary {
                data_blobs: 9,
                tree_blobs: 4,
                ..Summary::default()
            },
            original: None,
            lost: None,
        };
        let bytes = s.encode();
        let old = &bytes[..bytes.len() - 8];
        s.summary.tree_blobs = 0;
        assert_eq!(Snapshot::decode(old).unwrap(), s);
        assert!(Snapshot::decode(&bytes[..bytes.len() - 4]).is_err());
    }

    /// `original` is appended only when set: an unrewritten snapshot keeps its version 2
    /// bytes, a rewritten one is exactly 32 bytes longer, and any other tail is refused.
    #[test]
    fn original_is_a_tail_present_only_when_set() {
        let mut s = Snapshot::decode(&sample_bytes()).unwrap();
        let v2 = s.encode();
        assert_eq!(v2, sample_bytes());
        s.original = Some(SnapshotId(Id([9; 32])));
        let v3 = s.encode();
        assert_eq!(v3.len(), v2.len() + 32);
        assert_eq!(&v3[..v2.len()], &v2[..]);
        assert_eq!(Snapshot::decode(&v3).unwrap(), s);
        for cut in [1, 31, 33] {
            let mut bad = v2.clone();
            bad.extend(std::iter::repeat_n(7u8, cut));
            assert!(Snapshot::decode(&bad).is_err(), "{cut} trailing bytes");
        }
        // `lost` follows `original`; it is never written without it.
        s.lost = Some(Lost {
            files: 2,
            dirs: 1,
            paths: vec!["/a".into(), "/b/c".into()],
        });
        let repaired = s.encode();
        assert_eq!(&repaired[..v3.len()], &v3[..]);
        assert_eq!(Snapshot::decode(&repaired).unwrap(), s);
        assert!(Snapshot::decode(&repaired[..repaired.len() - 1]).is_err());
        let mut long = repaired.clone();
        long.push(0);
        assert!(Snapshot::decode(&long).is_err());
        s.original = None;
        assert_eq!(s.encode(), v2, "no `lost` without `original`");
    }

    fn sample_bytes() -> Vec<u8> {
        Snapshot {
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
            summary: Summary::default(),
            original: None,
            lost: None,
        }
        .encode()
    }

    proptest! {
        /// The layouts are unambiguous and canonical: whatever a cut or extended version 3
        /// snapshot decodes to encodes back to exactly those bytes, except bytes read with
        /// the 14-field summary, which are written back with `tree_blobs` (8 more bytes).
        #[test]
        fn decoded_tails_encode_to_the_same_bytes(
            cut in 0usize..120,
            extra in proptest::collection::vec(any::<u8>(), 0..48),
        ) {
            let mut s = Snapshot::decode(&sample_bytes()).unwrap();
            s.original = Some(SnapshotId(Id([9; 32])));
            s.lost = Some(Lost { files: 1, dirs: 0, paths: vec!["/a".into()] });
            let mut b = s.encode();
            b.truncate(b.len().saturating_sub(cut));
            b.extend(extra);
            if let Ok(d) = Snapshot::decode(&b) {
                let e = d.encode();
                let older = d.original.is_none()
                    && d.summary.tree_blobs == 0
                    && e.len() == b.len() + 8
                    && e[..b.len()] == b[..];
                prop_assert!(e == b || older);
            }
        }

        #[test]
        fn decode_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Snapshot::decode(&bytes);
        }
    }
}
