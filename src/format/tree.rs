//! Trees (docs/FORMAT.md, "Trees"): one directory's entries, stored as a blob of type Tree.
//!
//! Subdirectories are referenced by the id of their own tree blob, so trees form a Merkle tree:
//! an unchanged directory encodes to the same bytes, gets the same id and is stored once, and
//! one path is found by reading only the trees along it.

use serde::{Deserialize, Serialize};

use super::{FormatError, decode, encode};
use crate::id::BlobId;

/// Most entries a writer puts in one part of a split directory (docs/FORMAT.md §15, §20).
pub const MAX_PART_ENTRIES: usize = 65_536;
/// Most encoded bytes a writer puts in one part of a split directory, unless a single entry is
/// larger on its own. Well under the 64 MiB blob cap, so a reader holds little per directory.
pub const PART_BUDGET: usize = 8 << 20;
/// Longest path (bytes, `/`-separated, from the snapshot root) a reader follows: Linux's
/// `PATH_MAX`, so no snapshot a backup can write exceeds it.
pub const MAX_PATH_BYTES: usize = 4096;
/// Deepest directory nesting a reader follows (every level takes at least two path bytes).
pub const MAX_DEPTH: usize = MAX_PATH_BYTES / 2;
/// A walk may visit at most this many entries, or [`MAX_FANOUT`] times the entries of the
/// distinct tree blobs it has read, whichever is larger (docs/FORMAT.md §20).
pub const MIN_WALK_ENTRIES: u64 = 1 << 18;
/// How many times a walk may revisit what the repository stores before it is refused: identical
/// subdirectories legitimately share one tree, but a tree referencing one subtree twice per
/// level would otherwise make 2^depth entries from a handful of blobs.
pub const MAX_FANOUT: u64 = 4096;
/// Most encoded tree bytes one walk holds at once (one part per open directory).
pub const MAX_WALK_TREE_BYTES: u64 = 256 << 20;

/// An extended attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Attribute name, raw bytes.
    pub name: Vec<u8>,
    /// Attribute value, raw bytes.
    pub value: Vec<u8>,
}

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// A regular file: its length and its chunks in order.
    File {
        /// Total length; equals the sum of the chunks' lengths.
        size: u64,
        /// Data blob ids, in file order.
        content: Vec<BlobId>,
    },
    /// A directory and the tree blob of its entries.
    Dir {
        /// Tree blob id.
        subtree: BlobId,
    },
    /// A symbolic link and its target, raw bytes, never followed by cista.
    Symlink {
        /// Link target.
        target: Vec<u8>,
    },
    /// A named pipe.
    Fifo,
    /// A directory too large for one tree blob, stored as several: each part is an ordinary
    /// tree blob, the parts in ascending name order without overlap (format version 2).
    DirParts {
        /// Tree blob ids of the parts, in name order.
        parts: Vec<BlobId>,
    },
}

impl NodeKind {
    /// The tree blobs holding a directory's entries, in name order; `None` for non-directories.
    /// An ordinary directory is one part, so readers handle both kinds with one loop.
    pub fn dir_parts(&self) -> Option<&[BlobId]> {
        match self {
            Self::Dir { subtree } => Some(std::slice::from_ref(subtree)),
            Self::DirParts { parts } => Some(parts),
            _ => None,
        }
    }

    /// Whether this is a directory of either kind.
    pub fn is_dir(&self) -> bool {
        self.dir_parts().is_some()
    }
}

/// One directory entry with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name, raw bytes: non-empty, not `.` or `..`, no `/` or NUL.
    pub name: Vec<u8>,
    /// Kind and kind-specific data.
    pub kind: NodeKind,
    /// `st_mode` (file type and permission bits).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, ns since the Unix epoch.
    pub mtime_ns: i64,
    /// Access time, ns since the Unix epoch. Backups store the modification time here (an
    /// access time changes on every read and would churn trees); restore applies it.
    pub atime_ns: i64,
    /// Status change time, ns since the Unix epoch.
    pub ctime_ns: i64,
    /// Inode number (change detection and hardlinks).
    pub inode: u64,
    /// Device number (hardlinks, `--one-file-system`).
    pub device: u64,
    /// Hard link count.
    pub links: u64,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<Xattr>,
}

impl Node {
    /// Whether a restored name is safe to join to a directory path.
    pub fn name_is_safe(name: &[u8]) -> bool {
        !name.is_empty()
            && name != b"."
            && name != b".."
            && !name.contains(&b'/')
            && !name.contains(&0)
    }
}

/// One directory: its entries sorted by name, names unique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Tree {
    /// Entries, strictly ascending by name bytes.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Canonical plaintext (callers sort nodes; [`Tree::decode`] rejects unsorted trees).
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes and checks the invariants every reader relies on: sorted unique safe names.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let what = "tree";
        let t: Self = decode(bytes, what)?;
        for n in &t.nodes {
            if !Node::name_is_safe(&n.name) {
                return Err(FormatError::malformed(what, "unsafe entry name"));
            }
        }
        if t.nodes.windows(2).any(|w| w[0].name >= w[1].name) {
            return Err(FormatError::malformed(
                what,
                "entries not sorted or not unique",
            ));
        }
        Ok(t)
    }

    /// Finds an entry by name.
    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }

    /// Checks that this tree may follow a previous part of the same directory whose last name
    /// was `prev_last`: a part is never empty, and its names all sort after the previous part's.
    pub fn check_follows(&self, prev_last: Option<&[u8]>) -> Result<(), FormatError> {
        let what = "directory part";
        let Some(first) = self.nodes.first() else {
            return Err(FormatError::malformed(what, "empty part"));
        };
        match prev_last {
            Some(last) if first.name.as_slice() <= last => Err(FormatError::malformed(
                what,
                "parts not in ascending name order or overlapping",
            )),
            _ => Ok(()),
        }
    }
}

/// Length of the count prefix that starts an encoded tree (a fixed-width `u64`, §5).
const COUNT_LEN: usize = 8;

/// Cuts a directory's entries, given in ascending name order, into tree blobs of at most
/// [`MAX_PART_ENTRIES`] entries and [`PART_BUDGET`] bytes. Entries are kept encoded, so a
/// writer holds at most one part's bytes however many entries the directory has.
#[derive(Debug, Default)]
pub struct PartWriter {
    /// The count prefix (patched when the part is taken) and the encoded entries.
    buf: Vec<u8>,
    count: usize,
    last: Option<Vec<u8>>,
}

impl PartWriter {
    /// Adds the next entry; returns a finished part's encoded bytes when this entry does not
    /// fit in the current one. An entry larger than the budget gets a part of its own.
    pub fn push(&mut self, node: &Node) -> Result<Option<Vec<u8>>, FormatError> {
        if let Some(last) = &self.last
            && node.name.as_slice() <= last.as_slice()
        {
            return Err(FormatError::malformed(
                "tree",
                "entries not sorted or not unique",
            ));
        }
        let bytes = encode(node);
        let max = super::pack::MAX_BLOB_LEN as usize - COUNT_LEN;
        if bytes.len() > max {
            return Err(FormatError::TooLarge {
                what: "tree entry",
                len: bytes.len() as u64,
                max: max as u64,
            });
        }
        let full = self.count > 0
            && (self.count >= MAX_PART_ENTRIES || self.buf.len() + bytes.len() > PART_BUDGET);
        let done = if full { self.take() } else { None };
        if self.buf.is_empty() {
            self.buf.extend_from_slice(&[0; COUNT_LEN]);
        }
        self.buf.extend_from_slice(&bytes);
        self.count += 1;
        self.last = Some(node.name.clone());
        Ok(done)
    }

    /// The last (or only) part; an empty directory is one empty tree.
    pub fn finish(mut self) -> Vec<u8> {
        self.take().unwrap_or_else(|| Tree::default().encode())
    }

    fn take(&mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        let mut b = std::mem::take(&mut self.buf);
        b[..COUNT_LEN].copy_from_slice(&(self.count as u64).to_le_bytes());
        self.count = 0;
        Some(b)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::id::Id;
    use proptest::prelude::*;

    pub(crate) fn node(name: &[u8], kind: NodeKind) -> Node {
        Node {
            name: name.to_vec(),
            kind,
            mode: 0o100644,
            uid: 1000,
            gid: 1000,
            mtime_ns: 1,
            atime_ns: 2,
            ctime_ns: 3,
            inode: 4,
            device: 5,
            links: 1,
            xattrs: vec![Xattr {
                name: b"user.a".to_vec(),
                value: b"v".to_vec(),
            }],
        }
    }

    #[test]
    fn round_trip_and_lookup() {
        let t = Tree {
            nodes: vec![
                node(
                    b"a",
                    NodeKind::File {
                        size: 3,
                        content: vec![BlobId(Id([1; 32]))],
                    },
                ),
                node(
                    b"b",
                    NodeKind::Dir {
                        subtree: BlobId(Id([2; 32])),
                    },
                ),
                node(
                    b"c",
                    NodeKind::Symlink {
                        target: b"../x".to_vec(),
                    },
                ),
                node(b"d", NodeKind::Fifo),
            ],
        };
        let d = Tree::decode(&t.encode()).unwrap();
        assert_eq!(d, t);
        assert!(d.get(b"c").is_some());
        assert!(d.get(b"e").is_none());
    }

    #[test]
    fn fail_unsafe_or_unsorted_names() {
        for bad in [&b".."[..], b".", b"", b"a/b", b"a\0"] {
            let t = Tree {
                nodes: vec![node(bad, NodeKind::Fifo)],
            };
            assert!(Tree::decode(&t.encode()).is_err(), "{bad:?}");
        }
        let t = Tree {
            nodes: vec![node(b"b", NodeKind::Fifo), node(b"a", NodeKind::Fifo)],
        };
        assert!(Tree::decode(&t.encode()).is_err());
        let t = Tree {
            nodes: vec![node(b"a", NodeKind::Fifo), node(b"a", NodeKind::Fifo)],
        };
        assert!(Tree::decode(&t.encode()).is_err());
    }

    fn fifo(name: &str) -> Node {
        node(name.as_bytes(), NodeKind::Fifo)
    }

    #[test]
    fn part_writer_matches_the_encoder_and_splits_on_entry_count() {
        let nodes: Vec<Node> = (0..MAX_PART_ENTRIES + 3)
            .map(|i| fifo(&format!("{i:07}")))
            .collect();
        let mut w = PartWriter::default();
        let mut parts = Vec::new();
        for n in &nodes {
            parts.extend(w.push(n).unwrap());
        }
        parts.push(w.finish());
        assert_eq!(parts.len(), 2);
        let (a, b) = nodes.split_at(MAX_PART_ENTRIES);
        assert_eq!(parts[0], Tree { nodes: a.to_vec() }.encode());
        assert_eq!(parts[1], Tree { nodes: b.to_vec() }.encode());
        let first = Tree::decode(&parts[0]).unwrap();
        let second = Tree::decode(&parts[1]).unwrap();
        first.check_follows(None).unwrap();
        let last = first.nodes.last().map(|n| n.name.as_slice());
        second.check_follows(last).unwrap();
        // The other order overlaps.
        let last = second.nodes.last().map(|n| n.name.as_slice());
        assert!(first.check_follows(last).is_err());
    }

    #[test]
    fn part_writer_splits_on_bytes_and_isolates_a_huge_entry() {
        let big = |name: &str, len: usize| {
            let mut n = fifo(name);
            n.xattrs = vec![Xattr {
                name: b"user.big".to_vec(),
                value: vec![7; len],
            }];
            n
        };
        let mut w = PartWriter::default();
        let mut parts = Vec::new();
        for n in [
            big("a", PART_BUDGET / 2),
            big("b", PART_BUDGET / 2),
            big("c", PART_BUDGET * 2),
            fifo("d"),
        ] {
            parts.extend(w.push(&n).unwrap());
        }
        parts.push(w.finish());
        let counts: Vec<usize> = parts
            .iter()
            .map(|p| Tree::decode(p).unwrap().nodes.len())
            .collect();
        assert_eq!(counts, [1, 1, 1, 1]);
        assert!(
            parts
                .iter()
                .all(|p| p.len() <= PART_BUDGET || p.len() > 2 * PART_BUDGET)
        );
    }

    #[test]
    fn part_writer_small_dir_is_one_ordinary_tree() {
        let mut w = PartWriter::default();
        assert!(w.push(&fifo("a")).unwrap().is_none());
        assert!(w.push(&fifo("b")).unwrap().is_none());
        assert!(w.push(&fifo("b")).is_err());
        let t = Tree {
            nodes: vec![fifo("a"), fifo("b")],
        };
        assert_eq!(w.finish(), t.encode());
        assert_eq!(PartWriter::default().finish(), Tree::default().encode());
    }

    #[test]
    fn fail_entry_over_the_blob_cap_without_touching_the_part() {
        let mut w = PartWriter::default();
        w.push(&fifo("a")).unwrap();
        let mut huge = fifo("b");
        huge.xattrs[0].value = vec![0; super::super::pack::MAX_BLOB_LEN as usize];
        assert!(matches!(w.push(&huge), Err(FormatError::TooLarge { .. })));
        // The writer is unchanged: the entry can be retried without its attributes.
        huge.xattrs.clear();
        assert!(w.push(&huge).unwrap().is_none());
        let t = Tree {
            nodes: vec![fifo("a"), huge],
        };
        assert_eq!(w.finish(), t.encode());
    }

    #[test]
    fn fail_empty_part() {
        assert!(Tree::default().check_follows(None).is_err());
        let parts = NodeKind::DirParts { parts: vec![] };
        assert_eq!(parts.dir_parts(), Some(&[][..]));
        assert!(NodeKind::Fifo.dir_parts().is_none());
    }

    proptest! {
        #[test]
        fn decode_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Tree::decode(&bytes);
        }
    }
}
