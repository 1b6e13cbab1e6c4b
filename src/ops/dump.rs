//! `dump` of a directory or a whole snapshot as an archive stream (tar, or zip), the way
//! restic's `dump` writes one: entry names are the snapshot paths without the leading `/`
//! (`srv/app/file`), directories end in `/`, each entry carries the node's mode, owner and
//! modification time; symlinks are links, named pipes are FIFO entries (tar) or empty entries
//! with the FIFO mode (zip). Extended attributes and hardlinks are not carried (each hardlinked
//! name is written as its own file).
//!
//! Writes to any `Write` and never prints. File content is read one blob at a time and must
//! add up to the size the node records (a shorter or longer content list would corrupt the
//! archive's framing, so it is refused as damage).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::id::BlobId;
use crate::ops::find;
use crate::repo::{Index, Repository};

/// Archive formats of `dump --archive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archive {
    /// POSIX ustar with GNU long names (restic's default).
    Tar,
    /// Zip, deflated.
    Zip,
}

/// What an archive dump wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// Entries written (files, directories, links, pipes).
    pub entries: u64,
    /// File content bytes written.
    pub bytes: u64,
}

/// Writes `top` (a node with its absolute path, and everything below it when it is a
/// directory) or, with `top = None`, everything below the snapshot's `root` tree.
pub fn archive(
    repo: &Repository,
    index: &Index,
    root: &BlobId,
    top: Option<(&Path, &Node)>,
    format: Archive,
    out: &mut dyn Write,
) -> Result<DumpStats> {
    let mut sink: Box<dyn Sink + '_> = match format {
        Archive::Tar => Box::new(TarSink::new(out)),
        Archive::Zip => Box::new(super::dump_zip::ZipSink::new(out)),
    };
    let mut stats = DumpStats::default();
    let mut put = |p: &Path, n: &Node| -> Result<()> {
        let name = entry_name(p, n);
        let mut content = match &n.kind {
            NodeKind::File { size, content } => Some(BlobReader::new(repo, index, content, *size)),
            _ => None,
        };
        sink.entry(&name, n, content.as_mut().map(|c| c as &mut dyn Read))
            .map_err(|e| Error::io("archive output", e))?;
        stats.entries += 1;
        if let Some(c) = content {
            stats.bytes += c.done;
        }
        Ok(())
    };
    match top {
        None => find::walk(repo, index, root, Path::new("/"), &mut |p, n| {
            put(p, n)?;
            Ok(true)
        })?,
        Some((path, node)) => {
            put(path, node)?;
            find::walk_dir(repo, index, &node.kind, path, &mut |p, n| {
                put(p, n)?;
                Ok(true)
            })?;
        }
    }
    sink.finish().map_err(|e| Error::io("archive output", e))?;
    Ok(stats)
}

/// The archive name of a snapshot path: no leading `/`, a trailing `/` for directories.
fn entry_name(p: &Path, n: &Node) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let b = p.as_os_str().as_bytes();
    let mut v = b.strip_prefix(b"/").unwrap_or(b).to_vec();
    if n.kind.is_dir() {
        v.push(b'/');
    }
    PathBuf::from(std::ffi::OsString::from_vec(v))
}

/// One archive format's writer.
pub(crate) trait Sink {
    /// Appends one entry; `content` is given for files and yields exactly the node's size.
    fn entry(
        &mut self,
        name: &Path,
        node: &Node,
        content: Option<&mut dyn Read>,
    ) -> std::io::Result<()>;
    /// Writes the trailer.
    fn finish(&mut self) -> std::io::Result<()>;
}

/// A file's content as a reader, one blob at a time, checked against the recorded size.
pub(crate) struct BlobReader<'a> {
    repo: &'a Repository,
    index: &'a Index,
    ids: std::slice::Iter<'a, BlobId>,
    buf: Vec<u8>,
    at: usize,
    size: u64,
    done: u64,
}

impl<'a> BlobReader<'a> {
    fn new(repo: &'a Repository, index: &'a Index, ids: &'a [BlobId], size: u64) -> Self {
        Self {
            repo,
            index,
            ids: ids.iter(),
            buf: Vec::new(),
            at: 0,
            size,
            done: 0,
        }
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.buf.len() {
            match self.ids.next() {
                Some(id) => {
                    self.buf = self
                        .repo
                        .read_blob(self.index, id)
                        .map_err(std::io::Error::other)?;
                    self.at = 0;
                }
                None if self.done == self.size => return Ok(0),
                None => {
                    return Err(std::io::Error::other(format!(
                        "file content is {} bytes, its tree says {}: the repository is damaged",
                        self.done, self.size
                    )));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        let n64 = n as u64;
        if self.done + n64 > self.size {
            return Err(std::io::Error::other(format!(
                "file content is longer than the {} bytes its tree says: the repository is damaged",
                self.size
            )));
        }
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        self.done += n64;
        Ok(n)
    }
}

/// Seconds since the epoch for archive headers (before 1970: 0), rounded to the nearest second
/// as restic's tar writer (Go's archive/tar with no explicit format) rounds them.
pub(crate) fn mtime_secs(n: &Node) -> u64 {
    let ns = n.mtime_ns.saturating_add(500_000_000);
    u64::try_from(ns.div_euclid(1_000_000_000)).unwrap_or(0)
}

struct TarSink<'w> {
    b: tar::Builder<&'w mut dyn Write>,
}

impl<'w> TarSink<'w> {
    fn new(out: &'w mut dyn Write) -> Self {
        let mut b = tar::Builder::new(out);
        // Entries come from the snapshot, never from this machine's file system.
        b.follow_symlinks(false);
        Self { b }
    }
}

impl Sink for TarSink<'_> {
    fn entry(
        &mut self,
        name: &Path,
        node: &Node,
        content: Option<&mut dyn Read>,
    ) -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(node.mode & 0o7777);
        h.set_uid(u64::from(node.uid));
        h.set_gid(u64::from(node.gid));
        h.set_mtime(mtime_secs(node));
        h.set_size(0);
        match &node.kind {
            NodeKind::File { size, .. } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(*size);
                let mut empty = std::io::empty();
                let data: &mut dyn Read = match content {
                    Some(c) => c,
                    None => &mut empty,
                };
                self.b.append_data(&mut h, name, data)
            }
            NodeKind::Dir { .. } | NodeKind::DirParts { .. } => {
                h.set_entry_type(tar::EntryType::Directory);
                self.b.append_data(&mut h, name, std::io::empty())
            }
            NodeKind::Symlink { target } => {
                use std::os::unix::ffi::OsStrExt;
                h.set_entry_type(tar::EntryType::Symlink);
                self.b
                    .append_link(&mut h, name, std::ffi::OsStr::from_bytes(target))
            }
            NodeKind::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                self.b.append_data(&mut h, name, std::io::empty())
            }
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.b.finish()?;
        self.b.get_mut().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_relative_and_dirs_end_in_slash() {
        let file = crate::format::tree::tests::node(
            b"f",
            NodeKind::File {
                size: 0,
                content: vec![],
            },
        );
        let mut dir = file.clone();
        dir.kind = NodeKind::Dir {
            subtree: BlobId(crate::id::Id([0; 32])),
        };
        assert_eq!(
            entry_name(Path::new("/srv/a/f"), &file),
            Path::new("srv/a/f")
        );
        assert_eq!(
            entry_name(Path::new("/srv/a"), &dir).as_os_str(),
            std::ffi::OsStr::new("srv/a/")
        );
        let mut old = file;
        old.mtime_ns = -5;
        assert_eq!(mtime_secs(&old), 0);
        // Rounded to the nearest second, as Go's archive/tar does for restic.
        old.mtime_ns = 1_499_999_999;
        assert_eq!(mtime_secs(&old), 1);
        old.mtime_ns = 1_500_000_000;
        assert_eq!(mtime_secs(&old), 2);
    }
}
