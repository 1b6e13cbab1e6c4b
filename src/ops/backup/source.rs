//! The file-system side of a backup: which paths are included, how each entry becomes a
//! tree node, and change detection against the parent snapshot.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::Ctx;
use super::dirs::{BATCH, DirWriter, ParentDir};
use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind, Xattr};
use crate::id::BlobId;

/// The source paths arranged as the tree they will have in the snapshot: intermediate
/// directories down to each source path (whose metadata is taken from the real directories).
#[derive(Debug)]
pub struct VirtualRoot {
    paths: Vec<PathBuf>,
    children: BTreeMap<Vec<u8>, VEntry>,
    missing: Vec<PathBuf>,
}

#[derive(Debug)]
enum VEntry {
    /// A source path: archived with everything below it.
    Source(PathBuf),
    /// A directory above a source path: only the named children are archived.
    Between(PathBuf, BTreeMap<Vec<u8>, VEntry>),
}

/// An absolute, lexically clean path whose last component is not resolved (so a symlink given
/// as a source is stored as a symlink), with its parent resolved like restic does; `None`
/// when it does not exist.
fn clean_source(p: &Path) -> Result<Option<PathBuf>> {
    let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    match std::fs::symlink_metadata(&out) {
        Ok(_) => Ok(Some(out)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // Another failure (a parent without search permission) is the archiver's to
        // report as an unreadable source, as restic does.
        Err(_) => Ok(Some(out)),
    }
}

impl VirtualRoot {
    /// Arranges source paths; a path below another source path is covered by it. Paths that
    /// do not exist are left out and listed by [`VirtualRoot::missing`] (restic skips them
    /// with a warning); when every path is missing there is nothing to back up.
    pub fn new(paths: &[PathBuf]) -> Result<Self> {
        if paths.is_empty() {
            return Err(Error::InvalidInput(
                "nothing to back up: give at least one path".into(),
            ));
        }
        let mut clean = Vec::new();
        let mut missing = Vec::new();
        for p in paths {
            match clean_source(p)? {
                Some(c) => clean.push(c),
                None => missing.push(p.clone()),
            }
        }
        if clean.is_empty() {
            let list: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
            return Err(Error::InvalidInput(format!(
                "no source path exists ({}): check the paths; no snapshot was written",
                list.join(", ")
            )));
        }
        clean.sort();
        clean.dedup();
        let mut kept: Vec<PathBuf> = Vec::new();
        for p in clean {
            if !kept.iter().any(|k| p.starts_with(k)) {
                kept.push(p);
            }
        }
        let mut children = BTreeMap::new();
        for p in &kept {
            if p == Path::new("/") {
                // Backing up `/` makes the root itself the source: every top entry is one.
                let rd = std::fs::read_dir("/").map_err(|e| Error::io("/", e))?;
                for e in rd {
                    let e = e.map_err(|e| Error::io("/", e))?;
                    children.insert(e.file_name().as_bytes().to_vec(), VEntry::Source(e.path()));
                }
                continue;
            }
            let comps: Vec<&OsStr> = p.iter().skip(1).collect();
            let mut level = &mut children;
            let mut real = PathBuf::from("/");
            for (i, c) in comps.iter().enumerate() {
                real.push(c);
                let key = c.as_bytes().to_vec();
                if i + 1 == comps.len() {
                    level.insert(key, VEntry::Source(real.clone()));
                    break;
                }
                let entry = level
                    .entry(key)
                    .or_insert_with(|| VEntry::Between(real.clone(), BTreeMap::new()));
                match entry {
                    VEntry::Between(_, next) => level = next,
                    VEntry::Source(_) => break,
                }
            }
        }
        Ok(Self {
            paths: kept,
            children,
            missing,
        })
    }

    /// Source paths that did not exist, as given.
    pub fn missing(&self) -> &[PathBuf] {
        &self.missing
    }

    /// The cleaned source paths (raw bytes; [`VirtualRoot::paths`] is their text form).
    pub fn sources(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The cleaned source paths, sorted, as recorded in the snapshot: a path that is not
    /// valid UTF-8 is recorded lossily (U+FFFD for each invalid sequence); the tree keeps its
    /// exact bytes (FORMAT §16).
    pub fn paths(&self) -> Vec<String> {
        self.paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }
}

/// The top-level nodes of `root`'s trees, compared against the parent's root tree `parent`.
pub(super) fn archive_roots(
    ctx: &Ctx<'_>,
    root: &VirtualRoot,
    parent: Option<&BlobId>,
) -> Result<Vec<Node>> {
    let mut pdir = ParentDir::of_parts(parent.into_iter().copied().collect());
    archive_between(ctx, &root.children, &mut pdir)
}

fn archive_between(
    ctx: &Ctx<'_>,
    children: &BTreeMap<Vec<u8>, VEntry>,
    parent: &mut ParentDir,
) -> Result<Vec<Node>> {
    // Names ascend (a BTreeMap), as the parent lookup requires.
    let items: Vec<(&Vec<u8>, &VEntry, Option<Node>)> = children
        .iter()
        .map(|(name, entry)| (name, entry, parent.get(ctx, name)))
        .collect();
    let results: Vec<Result<Option<Node>>> = items
        .par_iter()
        .map(|(name, entry, pnode)| {
            let pnode = pnode.as_ref();
            match entry {
                VEntry::Source(path) => {
                    let meta = match std::fs::symlink_metadata(path) {
                        Ok(m) => m,
                        Err(e) => {
                            ctx.error(path, e);
                            return Ok(None);
                        }
                    };
                    archive_entry(ctx, path, name, &meta, pnode, meta.dev())
                }
                VEntry::Between(path, next) => {
                    let mut pdir = ParentDir::new(pnode);
                    let nodes = archive_between(ctx, next, &mut pdir)?;
                    let mut w = DirWriter::default();
                    for n in nodes {
                        w.push(ctx, path, n)?;
                    }
                    let kind = w.finish(ctx)?;
                    let node = between_node(ctx, path, name, kind);
                    ctx.count_dir(pnode, &node);
                    Ok(Some(node))
                }
            }
        })
        .collect();
    results.into_iter().filter_map(Result::transpose).collect()
}

/// The node of a directory above a source path. It carries the metadata of the directory the
/// path really passes through: a symlinked parent (`/via -> /real`) is followed, so it
/// restores as `/real` is (mode, owner, times), never with the link's 0777. When that cannot
/// be read it is a directory 0700 of the current user, with the backup's start as times.
fn between_node(ctx: &Ctx<'_>, path: &Path, name: &[u8], kind: NodeKind) -> Node {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => ctx.node(name, kind, &m, Vec::new()),
        _ => ctx.made_dir(name, kind),
    }
}

fn mtime_ns(m: &Metadata) -> i64 {
    m.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(m.mtime_nsec())
}

fn ctime_ns(m: &Metadata) -> i64 {
    m.ctime()
        .saturating_mul(1_000_000_000)
        .saturating_add(m.ctime_nsec())
}

fn atime_ns(m: &Metadata) -> i64 {
    m.atime()
        .saturating_mul(1_000_000_000)
        .saturating_add(m.atime_nsec())
}

/// A node from an entry's metadata. The access time stored is the modification time unless
/// `with_atime` (restic's `--with-atime`) asks for the real one.
pub(super) fn node_from_meta(
    name: &[u8],
    kind: NodeKind,
    m: &Metadata,
    xattrs: Vec<Xattr>,
    with_atime: bool,
) -> Node {
    let mtime_ns = mtime_ns(m);
    Node {
        name: name.to_vec(),
        kind,
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        mtime_ns,
        // Not the access time: every read changes it (this backup's own reads included), so
        // recording it would make every unchanged directory a new tree (borg 1.2 made the
        // same choice). Restores set the access time to the modification time.
        atime_ns: if with_atime { atime_ns(m) } else { mtime_ns },
        ctime_ns: ctime_ns(m),
        inode: m.ino(),
        device: m.dev(),
        links: m.nlink(),
        xattrs,
    }
}

fn read_xattrs(ctx: &Ctx<'_>, path: &Path) -> Vec<Xattr> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        // File systems without xattr support are normal, not an error.
        Err(_) => return Vec::new(),
    };
    let mut out: Vec<Xattr> = names
        .filter_map(|n| match xattr::get(path, &n) {
            Ok(v) => Some(Xattr {
                name: n.as_bytes().to_vec(),
                value: v.unwrap_or_default(),
            }),
            Err(e) => {
                ctx.error(path, format_args!("extended attribute {n:?}: {e}"));
                None
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Which metadata change detection ignores (restic's `--ignore-ctime`, `--ignore-inode`).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Ignore {
    pub ctime: bool,
    pub inode: bool,
}

/// Whether the parent's node lets us reuse its content without reading the file: same size
/// and modification time, and (unless ignored) same status change time and inode.
/// `--ignore-inode` implies `--ignore-ctime`, as in restic (on FUSE neither is stable).
fn unchanged(p: &Node, m: &Metadata, ignore: Ignore) -> bool {
    let NodeKind::File { size, .. } = &p.kind else {
        return false;
    };
    *size == m.size()
        && p.mtime_ns == mtime_ns(m)
        && (ignore.ctime || ignore.inode || p.ctime_ns == ctime_ns(m))
        && (ignore.inode || p.inode == m.ino())
}

/// The fields whose change between two `fstat`s means a file changed while it was read.
fn version(m: &Metadata) -> (u64, i64, i64, u64) {
    (m.size(), mtime_ns(m), ctime_ns(m), m.ino())
}

/// What was stored for a regular file.
struct Stored {
    content: Vec<BlobId>,
    size: u64,
    /// `fstat` taken just before the read whose bytes were kept: the node carries it, so a
    /// file that changed during that read is seen as changed by the next backup.
    meta: Metadata,
}

/// Reads and stores a regular file. If it changed while being read (size, modification or
/// status change time or inode differ between the `fstat`s before and after, or fewer or
/// more bytes than its size were read), it is read once more; if it changes again, the second
/// read is kept and reported as an error, so the snapshot is marked incomplete. `None` when
/// it could not be read (reported).
fn store_file(ctx: &Ctx<'_>, path: &Path) -> Result<Option<Stored>> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            ctx.error(path, e);
            return Ok(None);
        }
    };
    // An I/O error is this file's problem (reported, the backup goes on); others stop it.
    let failed = |e: Error| match e {
        Error::Io { path, source } => {
            ctx.error(&path, source);
            Ok(None)
        }
        e => Err(e),
    };
    match read_once(ctx, &mut f, path) {
        Ok((stored, true)) => return Ok(Some(stored)),
        Ok((_, false)) => {}
        Err(e) => return failed(e),
    }
    match read_once(ctx, &mut f, path) {
        Ok((stored, stable)) => {
            if !stable {
                ctx.error(
                    path,
                    "file changed while being read (twice); stored as read the second time, \
                     its content may be inconsistent",
                );
            }
            Ok(Some(stored))
        }
        Err(e) => failed(e),
    }
}

/// One read of an open file from its start: what was stored, and whether the file stayed
/// the same throughout (its `fstat` before and after agree, and its size was what was read).
fn read_once(ctx: &Ctx<'_>, f: &mut std::fs::File, path: &Path) -> Result<(Stored, bool)> {
    use std::io::Seek;
    let before = f.metadata().map_err(|e| Error::io(path, e))?;
    f.rewind().map_err(|e| Error::io(path, e))?;
    let (content, size) = ctx.store_stream(f, path)?;
    let after = f.metadata().map_err(|e| Error::io(path, e))?;
    let stable = version(&before) == version(&after) && size == before.size();
    Ok((
        Stored {
            content,
            size,
            meta: before,
        },
        stable,
    ))
}

fn archive_entry(
    ctx: &Ctx<'_>,
    path: &Path,
    name: &[u8],
    meta: &Metadata,
    pnode: Option<&Node>,
    top_dev: u64,
) -> Result<Option<Node>> {
    ctx.check_cancel()?;
    if ctx.opts.excludes.rejects(path, meta) {
        return Ok(None);
    }
    let ft = meta.file_type();
    if ft.is_file() {
        let xattrs = read_xattrs(ctx, path);
        if let Some(p) = pnode.filter(|p| unchanged(p, meta, ctx.ignore()))
            && let NodeKind::File { content, size } = &p.kind
            && content.iter().all(|id| ctx.index.contains(id))
        {
            let size = *size;
            let node = ctx.node(name, p.kind.clone(), meta, xattrs);
            ctx.count_file(pnode, &node, size);
            ctx.progress.bytes(size);
            return Ok(Some(node));
        }
        ctx.progress.file_started(path);
        let stored = store_file(ctx, path);
        ctx.progress.file_finished(path);
        let Some(Stored {
            content,
            size,
            meta,
        }) = stored?
        else {
            return Ok(None);
        };
        let node = ctx.node(name, NodeKind::File { size, content }, &meta, xattrs);
        ctx.count_file(pnode, &node, size);
        return Ok(Some(node));
    }
    if ft.is_dir() {
        return archive_dir(ctx, path, name, meta, pnode, top_dev);
    }
    if ft.is_symlink() {
        let target = match std::fs::read_link(path) {
            Ok(t) => t,
            Err(e) => {
                ctx.error(path, e);
                return Ok(None);
            }
        };
        let kind = NodeKind::Symlink {
            target: target.as_os_str().as_bytes().to_vec(),
        };
        return Ok(Some(ctx.node(name, kind, meta, read_xattrs(ctx, path))));
    }
    if ft.is_fifo() {
        return Ok(Some(ctx.node(
            name,
            NodeKind::Fifo,
            meta,
            read_xattrs(ctx, path),
        )));
    }
    // Sockets and device nodes cannot be meaningfully restored from a backup.
    let what = if ft.is_socket() {
        "socket"
    } else {
        "device node"
    };
    ctx.progress
        .warn(&format!("{}: skipping {what}", path.display()));
    Ok(None)
}

fn archive_dir(
    ctx: &Ctx<'_>,
    path: &Path,
    name: &[u8],
    meta: &Metadata,
    pnode: Option<&Node>,
    top_dev: u64,
) -> Result<Option<Node>> {
    // Only the names are held for the whole directory (sorted, as trees are); entries are
    // archived and encoded a batch at a time (`dirs.rs`).
    let entries: Vec<Vec<u8>> = match std::fs::read_dir(path) {
        Ok(rd) => {
            let mut v = Vec::new();
            for e in rd {
                match e {
                    Ok(e) => v.push(e.file_name().as_bytes().to_vec()),
                    Err(e) => ctx.error(path, e),
                }
            }
            v
        }
        Err(e) => {
            ctx.error(path, e);
            return Ok(None);
        }
    };
    let mut entries = keep_tag_file_only(ctx, path, entries);
    entries.sort_unstable();
    let crosses = ctx.opts.one_file_system && meta.dev() != top_dev;
    let mut parent = ParentDir::new(pnode);
    let mut dir = DirWriter::default();
    if !crosses {
        for batch in entries.chunks(BATCH) {
            let pnodes: Vec<Option<Node>> = batch.iter().map(|n| parent.get(ctx, n)).collect();
            let results: Vec<Result<Option<Node>>> = batch
                .par_iter()
                .zip(pnodes.par_iter())
                .map(|(n, pn)| {
                    let p = path.join(OsStr::from_bytes(n));
                    let m = match std::fs::symlink_metadata(&p) {
                        Ok(m) => m,
                        Err(e) => {
                            ctx.error(&p, e);
                            return Ok(None);
                        }
                    };
                    archive_entry(ctx, &p, n, &m, pn.as_ref(), top_dev)
                })
                .collect();
            for r in results {
                if let Some(node) = r? {
                    dir.push(ctx, path, node)?;
                }
            }
        }
    }
    let kind = dir.finish(ctx)?;
    let xattrs = read_xattrs(ctx, path);
    let node = ctx.node(name, kind, meta, xattrs);
    ctx.count_dir(pnode, &node);
    Ok(Some(node))
}

/// restic's `--exclude-if-present`/`--exclude-caches`: a directory holding a matching tag
/// file is kept with the tag file alone, so the snapshot shows why it is empty.
fn keep_tag_file_only(ctx: &Ctx<'_>, dir: &Path, mut entries: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let ex = &ctx.opts.excludes;
    if ex.if_present.is_empty() {
        return entries;
    }
    let tag = ex.tag_of(
        dir,
        |name| entries.iter().any(|n| n.as_slice() == name),
        |msg| ctx.progress.warn(&msg),
    );
    if let Some(tag) = tag {
        entries.retain(|n| n.as_slice() == tag.name.as_bytes());
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_detection_honours_ignore_flags() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"abc").unwrap();
        let m = std::fs::metadata(&f).unwrap();
        let node = node_from_meta(
            b"f",
            NodeKind::File {
                size: 3,
                content: Vec::new(),
            },
            &m,
            Vec::new(),
            false,
        );
        let all = Ignore::default();
        assert!(unchanged(&node, &m, all));
        let mut n = node.clone();
        n.ctime_ns += 1;
        assert!(!unchanged(&n, &m, all));
        assert!(unchanged(
            &n,
            &m,
            Ignore {
                ctime: true,
                inode: false
            }
        ));
        n.inode += 1;
        assert!(!unchanged(
            &n,
            &m,
            Ignore {
                ctime: true,
                inode: false
            }
        ));
        // --ignore-inode implies --ignore-ctime, as in restic.
        assert!(unchanged(
            &n,
            &m,
            Ignore {
                ctime: false,
                inode: true
            }
        ));
        let mut n = node.clone();
        n.mtime_ns += 1;
        assert!(
            !unchanged(
                &n,
                &m,
                Ignore {
                    ctime: true,
                    inode: true
                }
            ),
            "mtime always counts"
        );
        let mut n = node;
        n.kind = NodeKind::File {
            size: 4,
            content: Vec::new(),
        };
        assert!(
            !unchanged(
                &n,
                &m,
                Ignore {
                    ctime: true,
                    inode: true
                }
            ),
            "size always counts"
        );
    }

    #[test]
    fn missing_sources_are_listed_unless_all_are_missing() {
        let d = tempfile::tempdir().unwrap();
        let (here, gone) = (d.path().join("here"), d.path().join("gone"));
        std::fs::create_dir(&here).unwrap();
        let r = VirtualRoot::new(&[here.clone(), gone.clone()]).unwrap();
        assert_eq!(r.missing(), std::slice::from_ref(&gone));
        assert_eq!(r.sources(), &[here]);
        let e = VirtualRoot::new(&[gone]).unwrap_err().to_string();
        assert!(e.contains("no source path exists"), "{e}");
    }

    #[test]
    fn virtual_root_nests_and_dedups() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::create_dir_all(a.join("b")).unwrap();
        let r = VirtualRoot::new(&[a.join("b"), a.clone(), a.join("b/../b")]).unwrap();
        assert_eq!(r.paths(), vec![a.to_string_lossy().into_owned()]);
        assert!(VirtualRoot::new(&[d.path().join("missing")]).is_err());
        assert!(VirtualRoot::new(&[]).is_err());
    }
}
