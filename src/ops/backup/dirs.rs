//! Directories as a backup writes and compares them: [`DirWriter`] stores a directory's
//! entries as one tree blob, or as parts when it is over the budget of docs/FORMAT.md §15, and
//! [`ParentDir`] reads the parent snapshot's entries of the same directory one part at a time.
//! Both go through the entries in ascending name order, so neither ever holds more than one
//! part, whatever the size of the directory.
//!
//! Not here: reading the file system (`source.rs`) and storing blobs (`Ctx` in `mod.rs`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::Ctx;
use crate::error::{Error, Result};
use crate::format::FormatError;
use crate::format::pack::BlobType;
use crate::format::tree::{Node, NodeKind, PartWriter, Tree};
use crate::id::BlobId;

/// Entries archived in parallel at a time: enough to keep every core busy, few enough that
/// their nodes (held until they are encoded into a part) stay small.
pub(super) const BATCH: usize = 4096;

/// Builds one directory's tree blobs from its entries in ascending name order.
#[derive(Debug, Default)]
pub(super) struct DirWriter {
    w: PartWriter,
    parts: Vec<BlobId>,
}

impl DirWriter {
    /// Adds the next entry of the directory at `dir`. An entry too large for any tree blob
    /// (extended attributes past the blob cap) is stored without its extended attributes,
    /// with a warning; one still too large (a file of millions of chunks) fails the backup.
    pub(super) fn push(&mut self, ctx: &Ctx<'_>, dir: &Path, mut node: Node) -> Result<()> {
        let done = match self.w.push(&node) {
            Err(FormatError::TooLarge { len, .. }) if !node.xattrs.is_empty() => {
                ctx.error(
                    &dir.join(OsStr::from_bytes(&node.name)),
                    format!(
                        "metadata takes {len} bytes, more than a tree blob holds; stored without its extended attributes"
                    ),
                );
                node.xattrs.clear();
                self.w.push(&node)
            }
            r => r,
        };
        let done = done.map_err(|e| too_large(dir, &node, e))?;
        if let Some(bytes) = done {
            self.parts.push(ctx.store_blob(BlobType::Tree, &bytes)?);
        }
        Ok(())
    }

    /// Stores the last part: an ordinary `Dir` when everything fitted in one tree blob (so it
    /// has the bytes, and dedups with, an older backup of it), else `DirParts`.
    pub(super) fn finish(mut self, ctx: &Ctx<'_>) -> Result<NodeKind> {
        let last = ctx.store_blob(BlobType::Tree, &self.w.finish())?;
        if self.parts.is_empty() {
            return Ok(NodeKind::Dir { subtree: last });
        }
        self.parts.push(last);
        Ok(NodeKind::DirParts { parts: self.parts })
    }
}

fn too_large(dir: &Path, node: &Node, e: FormatError) -> Error {
    match e {
        FormatError::TooLarge { len, max, .. } => Error::InvalidInput(format!(
            "{}: its metadata takes {len} bytes, more than the {max}-byte cap of a tree blob (docs/FORMAT.md §20); exclude it to back up the rest",
            dir.join(OsStr::from_bytes(&node.name)).display()
        )),
        e => Error::Format(e),
    }
}

/// The parent snapshot's entries of one directory, for change detection. Names must be asked
/// in ascending order; a part that cannot be read only costs change detection.
#[derive(Debug, Default)]
pub(super) struct ParentDir {
    parts: Vec<BlobId>,
    next: usize,
    current: Option<Tree>,
}

impl ParentDir {
    /// The entries of the parent's node for this directory (none if it was no directory).
    pub(super) fn new(pnode: Option<&Node>) -> Self {
        Self::of_parts(
            pnode
                .and_then(|n| n.kind.dir_parts())
                .unwrap_or_default()
                .to_vec(),
        )
    }

    /// The entries stored in these tree blobs (a snapshot's root is one).
    pub(super) fn of_parts(parts: Vec<BlobId>) -> Self {
        Self {
            parts,
            next: 0,
            current: None,
        }
    }

    /// The parent's entry named `name`, if any.
    pub(super) fn get(&mut self, ctx: &Ctx<'_>, name: &[u8]) -> Option<Node> {
        loop {
            if let Some(t) = &self.current {
                if let Some(n) = t.get(name) {
                    return Some(n.clone());
                }
                if t.nodes.last().is_some_and(|l| l.name.as_slice() > name) {
                    return None;
                }
            }
            let id = self.parts.get(self.next)?;
            self.next += 1;
            match ctx.repo.read_tree(&ctx.index, id) {
                Ok(t) => self.current = Some(t),
                Err(_) => {
                    self.parts.clear();
                    self.current = None;
                    return None;
                }
            }
        }
    }
}
