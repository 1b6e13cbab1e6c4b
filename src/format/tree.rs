//! Trees (docs/FORMAT.md, "Trees"): one directory's entries, stored as a blob of type Tree.
//!
//! Subdirectories are referenced by the id of their own tree blob, so trees form a Merkle tree:
//! an unchanged directory encodes to the same bytes, gets the same id and is stored once, and
//! one path is found by reading only the trees along it.

use serde::{Deserialize, Serialize};

use super::{FormatError, decode, encode};
use crate::id::BlobId;

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

    proptest! {
        #[test]
        fn decode_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Tree::decode(&bytes);
        }
    }
}
