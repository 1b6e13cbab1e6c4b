//! Copying without shared content keys: blob ids and chunk boundaries differ between the two
//! repositories, so each file's content is read from the source, cut again with the target's
//! chunker and named with the target's id key, and every directory is written again as new
//! tree blobs (bottom-up, through [`find::walk_events`], the capped walk every reader uses).
//! Still incremental: a chunk the target has is not stored again, so a file copied before
//! costs its reading and chunking, never its upload.
//!
//! Memory: one file's window of source blobs ([`WINDOW`], or one blob when larger) and its
//! pending bytes (at most the target's largest chunk plus the window), one part of encoded entries per open directory, the walk's own bound, and a memo of
//! directories already rewritten in this run (cleared past [`MEMO_DIRS`] entries), so a
//! directory unchanged between two copied snapshots is rewritten once.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;

use super::{Counters, ranges};
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::pack::BlobType;
use crate::format::tree::{Node, NodeKind, PartWriter};
use crate::id::BlobId;
use crate::ops::find::{self, Visit};
use crate::ops::{CancelFlag, Progress};
use crate::repo::packer::{Packer, SealedBlob};
use crate::repo::{BlobLocation, Index, Repository};

/// Directories remembered as already rewritten, at most.
pub const MEMO_DIRS: usize = 100_000;
/// Source bytes of one file read at once, about: bounds the blobs one file holds open.
pub const WINDOW: u64 = 8 << 20;

/// The two repositories, what this run stored, and the directory memo.
pub(crate) struct Rechunker<'a> {
    source: &'a Repository,
    src_index: &'a Index,
    target: &'a Repository,
    dst_index: &'a Index,
    claimed: HashSet<BlobId>,
    dirs: HashMap<Vec<BlobId>, NodeKind>,
}

/// One directory being rewritten: its source node (none for the root), its source parts
/// (the memo's key), and the new entries so far.
struct Frame {
    node: Option<Node>,
    key: Vec<BlobId>,
    writer: PartWriter,
    parts: Vec<BlobId>,
}

impl<'a> Rechunker<'a> {
    pub fn new(
        source: &'a Repository,
        src_index: &'a Index,
        target: &'a Repository,
        dst_index: &'a Index,
    ) -> Self {
        Self {
            source,
            src_index,
            target,
            dst_index,
            claimed: HashSet::new(),
            dirs: HashMap::new(),
        }
    }

    /// Names `data` in the target and stores it unless the target or this run has it
    /// (`packer` is `None` in a dry run: only counted).
    fn store(
        &mut self,
        t: BlobType,
        data: &[u8],
        packer: Option<&Packer>,
        c: &Counters,
    ) -> Result<BlobId> {
        let id = self.target.blob_id(data);
        if self.dst_index.contains(&id) || !self.claimed.insert(id) {
            return Ok(id);
        }
        let raw_len =
            u32::try_from(data.len()).map_err(|_| Error::InvalidInput("blob too large".into()))?;
        let sealed = self.target.seal_blob(t, &id, data)?;
        c.add_blob(t, data.len() as u64, sealed.len() as u64);
        if let Some(p) = packer {
            p.add(SealedBlob {
                blob_type: t,
                id,
                raw_len,
                sealed,
            })?;
        }
        Ok(id)
    }

    /// A file's content cut and named for the target. The source chunks are read a window
    /// of about [`WINDOW`] bytes at a time, neighbours of one pack in one ranged read
    /// ([`super::ranges`]), so a file costs a few requests, not one per chunk.
    fn rechunk_file(
        &mut self,
        content: &[BlobId],
        packer: Option<&Packer>,
        c: &Counters,
        progress: &dyn Progress,
    ) -> Result<Vec<BlobId>> {
        let mut pending: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let mut i = 0;
        while i < content.len() {
            let mut locations = Vec::new();
            let mut raw = 0u64;
            let mut j = i;
            while j < content.len() && (j == i || raw < WINDOW) {
                let l = self.src_index.get(&content[j]).ok_or_else(|| {
                    Error::corrupt("blob", content[j], "not in any index of the source")
                })?;
                raw += u64::from(l.entry.raw_len);
                locations.push(l);
                j += 1;
            }
            let mut uses: HashMap<BlobId, usize> = HashMap::new();
            for id in &content[i..j] {
                *uses.entry(*id).or_default() += 1;
            }
            let mut blobs = self.read_window(locations, c, progress)?;
            for (k, id) in content[i..j].iter().enumerate() {
                // A chunk repeated in the window (runs of zeros) is cloned until its last use.
                let last_use = uses.get_mut(id).is_some_and(|n| {
                    *n -= 1;
                    *n == 0
                });
                let data = match (last_use, blobs.get(id)) {
                    (true, Some(_)) => blobs.remove(id).unwrap_or_default(),
                    (false, Some(d)) => d.clone(),
                    (_, None) => {
                        return Err(Error::corrupt("blob", id, "not read from the source"));
                    }
                };
                pending.extend_from_slice(&data);
                drop(data);
                let eof = i + k + 1 == content.len();
                let mut pos = 0;
                while let Some(n) = self.target.chunker().next_cut(&pending[pos..], eof) {
                    let chunk_end = pos + n;
                    let chunk = pending
                        .get(pos..chunk_end)
                        .ok_or_else(|| Error::InvalidInput("chunker cut past its input".into()))?;
                    out.push(self.store(BlobType::Data, chunk, packer, c)?);
                    pos = chunk_end;
                }
                pending.drain(..pos);
            }
            i = j;
        }
        c.files_rechunked.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// Reads, opens and verifies the blobs at `locations` (coalesced reads); a blob whose
    /// copy there is damaged is read from any other copy the source holds.
    fn read_window(
        &self,
        locations: Vec<BlobLocation>,
        c: &Counters,
        progress: &dyn Progress,
    ) -> Result<HashMap<BlobId, Vec<u8>>> {
        let mut out = HashMap::new();
        for g in ranges::group(locations) {
            let bytes =
                self.source
                    .backend()
                    .read_range(FileType::Pack, &g.pack.0, g.offset, g.len)?;
            c.read_requests.fetch_add(1, Ordering::Relaxed);
            c.bytes_read.fetch_add(g.len, Ordering::Relaxed);
            progress.bytes(g.len);
            for e in &g.entries {
                let start = (u64::from(e.offset) - g.offset) as usize;
                let opened = match bytes.get(start..start + e.length as usize) {
                    Some(b) => self.source.open_blob(e, b),
                    None => Err(Error::corrupt("pack", g.pack, "a read came back short")),
                };
                let data = match opened {
                    Ok(d) => d,
                    Err(Error::Corrupt { .. }) => {
                        c.read_requests.fetch_add(1, Ordering::Relaxed);
                        self.source.read_blob(self.src_index, &e.id)?
                    }
                    Err(e) => return Err(e),
                };
                out.insert(e.id, data);
            }
        }
        Ok(out)
    }

    fn push(
        &mut self,
        frame: &mut Frame,
        path: &Path,
        node: &Node,
        packer: Option<&Packer>,
        c: &Counters,
    ) -> Result<()> {
        let done = frame.writer.push(node).map_err(|e| {
            Error::InvalidInput(format!(
                "{}: a copied entry does not fit in a tree blob: {e}",
                path.display()
            ))
        })?;
        if let Some(bytes) = done {
            frame
                .parts
                .push(self.store(BlobType::Tree, &bytes, packer, c)?);
        }
        Ok(())
    }

    fn finish(
        &mut self,
        mut frame: Frame,
        packer: Option<&Packer>,
        c: &Counters,
    ) -> Result<NodeKind> {
        let writer = std::mem::take(&mut frame.writer);
        let last = self.store(BlobType::Tree, &writer.finish(), packer, c)?;
        let kind = if frame.parts.is_empty() {
            NodeKind::Dir { subtree: last }
        } else {
            frame.parts.push(last);
            NodeKind::DirParts { parts: frame.parts }
        };
        if self.dirs.len() >= MEMO_DIRS {
            self.dirs.clear();
        }
        self.dirs.insert(frame.key, kind.clone());
        Ok(kind)
    }

    /// The target's root tree for the source tree `root`, every tree and chunk below it
    /// stored in the target (or, with no packer, counted).
    pub fn copy_tree(
        &mut self,
        root: &BlobId,
        packer: Option<&Packer>,
        c: &Counters,
        progress: &dyn Progress,
        cancel: &CancelFlag,
    ) -> Result<BlobId> {
        if let Some(NodeKind::Dir { subtree }) = self.dirs.get(std::slice::from_ref(root)) {
            return Ok(*subtree);
        }
        let (source, src_index) = (self.source, self.src_index);
        let mut stack = vec![Frame {
            node: None,
            key: vec![*root],
            writer: PartWriter::default(),
            parts: Vec::new(),
        }];
        let broken = || Error::InvalidInput("copy walk left its root".into());
        let mut visit = |v: Visit<'_>| -> Result<bool> {
            match v {
                Visit::Entry(path, node) => {
                    if cancel.load(Ordering::Relaxed) {
                        return Err(Error::Interrupted);
                    }
                    let new = match &node.kind {
                        k @ (NodeKind::Dir { .. } | NodeKind::DirParts { .. }) => {
                            let key = k.dir_parts().unwrap_or(&[]).to_vec();
                            match self.dirs.get(&key) {
                                Some(kind) => Node {
                                    kind: kind.clone(),
                                    ..node.clone()
                                },
                                None => {
                                    stack.push(Frame {
                                        node: Some(node.clone()),
                                        key,
                                        writer: PartWriter::default(),
                                        parts: Vec::new(),
                                    });
                                    return Ok(true);
                                }
                            }
                        }
                        NodeKind::File { size, content } => Node {
                            kind: NodeKind::File {
                                size: *size,
                                content: self.rechunk_file(content, packer, c, progress)?,
                            },
                            ..node.clone()
                        },
                        NodeKind::Symlink { .. } | NodeKind::Fifo => node.clone(),
                    };
                    let mut top = stack.pop().ok_or_else(broken)?;
                    let r = self.push(&mut top, path, &new, packer, c);
                    stack.push(top);
                    r?;
                    Ok(false)
                }
                Visit::Leave(path) => {
                    let done = stack.pop().ok_or_else(broken)?;
                    let node = done.node.clone().ok_or_else(broken)?;
                    let kind = self.finish(done, packer, c)?;
                    let mut parent = stack.pop().ok_or_else(broken)?;
                    let r = self.push(&mut parent, path, &Node { kind, ..node }, packer, c);
                    stack.push(parent);
                    r?;
                    Ok(false)
                }
                // Only the walk past damage reports damage; this one fails instead.
                Visit::Damaged(path, e) => {
                    Err(Error::InvalidInput(format!("{}: {e}", path.display())))
                }
            }
        };
        find::walk_events(
            source,
            src_index,
            &NodeKind::Dir { subtree: *root },
            Path::new("/"),
            &mut visit,
        )?;
        let root_frame = match stack.pop() {
            Some(f) if stack.is_empty() => f,
            _ => return Err(broken()),
        };
        match self.finish(root_frame, packer, c)? {
            NodeKind::Dir { subtree } => Ok(subtree),
            _ => Err(Error::InvalidInput(
                "the copied snapshot's root has too many entries for one tree blob in the target"
                    .into(),
            )),
        }
    }
}
