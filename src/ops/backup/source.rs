//! The file-system side of a backup: which paths are included, how each entry becomes a
//! tree node, and change detection against the parent snapshot.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use rayon::prelude::*;

use super::Ctx;
use super::dirs::{BATCH, DirWriter, ParentDir};
use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind, Xattr};
use crate::id::BlobId;
use crate::ops::globs::Globs;

/// Exclusion rules of a backup.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    /// Paths matching these are skipped with everything below them.
    pub globs: Globs,
    /// Directories containing an entry with one of these names are skipped.
    pub if_present: Vec<String>,
}

impl Excludes {
    /// Whether an absolute path is excluded.
    pub fn is_excluded(&self, path: &Path) -> bool {
        self.globs.matches(path)
    }
}

/// The source paths arranged as the tree they will have in the snapshot: intermediate
/// directories down to each source path (whose metadata is taken from the real directories).
#[derive(Debug)]
pub struct VirtualRoot {
    paths: Vec<PathBuf>,
    children: BTreeMap<Vec<u8>, VEntry>,
}

#[derive(Debug)]
enum VEntry {
    /// A source path: archived with everything below it.
    Source(PathBuf),
    /// A directory above a source path: only the named children are archived.
    Between(PathBuf, BTreeMap<Vec<u8>, VEntry>),
}

/// An absolute, lexically clean path whose last component is not resolved (so a symlink given
/// as a source is stored as a symlink), with its parent resolved like restic does.
fn clean_source(p: &Path) -> Result<PathBuf> {
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
    std::fs::symlink_metadata(&out).map_err(|e| Error::io(&out, e))?;
    Ok(out)
}

impl VirtualRoot {
    /// Arranges source paths; a path below another source path is covered by it.
    pub fn new(paths: &[PathBuf]) -> Result<Self> {
        if paths.is_empty() {
            return Err(Error::InvalidInput(
                "nothing to back up: give at least one path".into(),
            ));
        }
        let mut clean = paths
            .iter()
            .map(|p| clean_source(p))
            .collect::<Result<Vec<_>>>()?;
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
        })
    }

    /// The cleaned source paths, sorted, as recorded in the snapshot.
    pub fn paths(&self) -> Vec<String> {
        self.paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }
}

pub(super) fn archive_root(
    ctx: &Ctx<'_>,
    root: &VirtualRoot,
    parent: Option<&BlobId>,
) -> Result<BlobId> {
    let mut pdir = ParentDir::of_parts(parent.into_iter().copied().collect());
    let nodes = archive_between(ctx, &root.children, &mut pdir)?;
    // A snapshot names one root tree blob, so the root is never split.
    ctx.store_tree(nodes)
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
                            ctx.warn(format!("{}: {e}", path.display()));
                            return Ok(None);
                        }
                    };
                    archive_entry(ctx, path, name, &meta, pnode, meta.dev())
                }
                VEntry::Between(path, next) => {
                    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
                    let mut pdir = ParentDir::new(pnode);
                    let nodes = archive_between(ctx, next, &mut pdir)?;
                    let mut w = DirWriter::default();
                    for n in nodes {
                        w.push(ctx, path, n)?;
                    }
                    let kind = w.finish(ctx)?;
                    Ok(Some(node_from_meta(name, kind, &meta, Vec::new())))
                }
            }
        })
        .collect();
    results.into_iter().filter_map(Result::transpose).collect()
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

fn node_from_meta(name: &[u8], kind: NodeKind, m: &Metadata, xattrs: Vec<Xattr>) -> Node {
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
        atime_ns: mtime_ns,
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
                ctx.warn(format!(
                    "{}: extended attribute {:?}: {e}",
                    path.display(),
                    n
                ));
                None
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Whether the parent's node lets us reuse its content without reading the file.
fn unchanged(p: &Node, m: &Metadata) -> bool {
    let NodeKind::File { size, .. } = &p.kind else {
        return false;
    };
    *size == m.size()
        && p.mtime_ns == mtime_ns(m)
        && p.ctime_ns == ctime_ns(m)
        && p.inode == m.ino()
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
    if ctx.opts.excludes.is_excluded(path) {
        return Ok(None);
    }
    let ft = meta.file_type();
    let c = &ctx.counters;
    if ft.is_file() {
        c.total_files.fetch_add(1, Ordering::Relaxed);
        c.total_bytes.fetch_add(meta.size(), Ordering::Relaxed);
        let xattrs = read_xattrs(ctx, path);
        if let Some(p) = pnode.filter(|p| unchanged(p, meta))
            && let NodeKind::File { content, .. } = &p.kind
            && content.iter().all(|id| ctx.index.contains(id))
        {
            c.files_unmodified.fetch_add(1, Ordering::Relaxed);
            ctx.progress.file_done(meta.size());
            return Ok(Some(node_from_meta(name, p.kind.clone(), meta, xattrs)));
        }
        let mut f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                ctx.warn(format!("{}: {e}", path.display()));
                return Ok(None);
            }
        };
        let (content, size) = match ctx.store_stream(&mut f, path) {
            Ok(r) => r,
            Err(Error::Io { path, source }) => {
                ctx.warn(format!("{}: {source}", path.display()));
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if pnode.is_some() {
            &c.files_changed
        } else {
            &c.files_new
        }
        .fetch_add(1, Ordering::Relaxed);
        ctx.progress.file_done(size);
        return Ok(Some(node_from_meta(
            name,
            NodeKind::File { size, content },
            meta,
            xattrs,
        )));
    }
    if ft.is_dir() {
        return archive_dir(ctx, path, name, meta, pnode, top_dev);
    }
    if ft.is_symlink() {
        let target = match std::fs::read_link(path) {
            Ok(t) => t,
            Err(e) => {
                ctx.warn(format!("{}: {e}", path.display()));
                return Ok(None);
            }
        };
        let kind = NodeKind::Symlink {
            target: target.as_os_str().as_bytes().to_vec(),
        };
        return Ok(Some(node_from_meta(
            name,
            kind,
            meta,
            read_xattrs(ctx, path),
        )));
    }
    if ft.is_fifo() {
        return Ok(Some(node_from_meta(
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
    let c = &ctx.counters;
    // Only the names are held for the whole directory (sorted, as trees are); entries are
    // archived and encoded a batch at a time (`dirs.rs`).
    let mut entries: Vec<Vec<u8>> = match std::fs::read_dir(path) {
        Ok(rd) => {
            let mut v = Vec::new();
            for e in rd {
                match e {
                    Ok(e) => v.push(e.file_name().as_bytes().to_vec()),
                    Err(e) => ctx.warn(format!("{}: {e}", path.display())),
                }
            }
            v
        }
        Err(e) => {
            ctx.warn(format!("{}: {e}", path.display()));
            return Ok(None);
        }
    };
    let ex = &ctx.opts.excludes;
    if !ex.if_present.is_empty()
        && entries
            .iter()
            .any(|n| ex.if_present.iter().any(|p| p.as_bytes() == n.as_slice()))
    {
        return Ok(None);
    }
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
                            ctx.warn(format!("{}: {e}", p.display()));
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
    match pnode.map(|p| &p.kind) {
        Some(old) if *old == kind => &c.dirs_unmodified,
        Some(_) => &c.dirs_changed,
        None => &c.dirs_new,
    }
    .fetch_add(1, Ordering::Relaxed);
    let xattrs = read_xattrs(ctx, path);
    Ok(Some(node_from_meta(name, kind, meta, xattrs)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
