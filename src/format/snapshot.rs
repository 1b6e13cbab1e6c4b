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
    /// Files in the parent whose metadata changed, so they were read again.
    pub files_changed: u64,
    /// Files whose content was reused from the parent without reading them.
    pub files_unmodified: u64,
    /// Directories not in the parent.
    pub dirs_new: u64,
    /// Directories whose tree changed.
    pub dirs_changed: u64,
    /// Directories whose tree is identical to the parent's.
    pub dirs_unmodified: u64,
    /// Blobs (data and tree) this run added to the repository.
    pub blobs_added: u64,
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
    /// Source entries that could not be read (the snapshot is then incomplete).
    pub errors: u64,
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
}

impl Snapshot {
    /// Canonical plaintext.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes a snapshot plaintext.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        super::check_len("snapshot", bytes.len() as u64, MAX_SNAPSHOT_LEN)?;
        decode_capped::<_, { MAX_SNAPSHOT_LEN as usize }>(bytes, "snapshot")
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
        };
        assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
    }

    proptest! {
        #[test]
        fn decode_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Snapshot::decode(&bytes);
        }
    }
}
