//! Restore: recreate a snapshot (or one folder or file of it) below a target directory.
//!
//! Plan, then execute. The plan walks the trees (`find::walk_events`: iterative, one part of a
//! split directory at a time, with the caps of docs/FORMAT.md §20) and lists what to create;
//! execution makes directories, then writes file contents in parallel (files in parallel, and the chunks of a
//! large file in parallel with positioned writes, bypassing the page cache: `writer.rs`), then
//! hardlinks, pipes and symlinks, then metadata, directories deepest first. Every chunk is
//! verified against its id before its bytes are written. Zero chunks are left as holes (the
//! file was sized with `set_len`).
//!
//! Safety: names come from the repository and are untrusted; `Tree::decode` rejects `..`, `/`
//! and duplicates, the target must be empty, every entry is created with `create_new`/`mkdir`
//! (never opening an existing path), and symlinks are created only after all content is
//! written, so no write can go through a link or outside the target. Hardlinks join only
//! entries with the same (device, inode) *and* the same content list, so a tree that claims one
//! inode for different files cannot give one file another's bytes.

use std::collections::HashMap;
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::id::BlobId;
use crate::ops::Progress;
use crate::ops::find::{self, Located};
use crate::ops::globs::Globs;
use crate::repo::{Index, Repository};

mod writer;

use writer::FileWriter;

/// Options of a restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Directory to restore into; must be empty or not exist.
    pub target: PathBuf,
    /// Restore only paths matching these (and what is below them).
    pub includes: Globs,
    /// Skip paths matching these (and what is below them).
    pub excludes: Globs,
}

/// What a restore did.
#[derive(Debug, Default, Clone)]
pub struct RestoreStats {
    /// Regular files written (hardlinks included).
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Other entries (symlinks, pipes).
    pub others: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

#[derive(Debug)]
struct Item {
    /// Relative to the target.
    rel: PathBuf,
    node: Node,
}

/// The planned restore.
#[derive(Debug, Default)]
struct Plan {
    /// Directories, parents before children.
    dirs: Vec<Item>,
    /// Everything else, in tree order.
    others: Vec<Item>,
}

fn os(b: &[u8]) -> &std::ffi::OsStr {
    std::ffi::OsStr::from_bytes(b)
}

/// A directory of the walk that is planned: where its item is, whether it matched the
/// includes itself, and whether anything below it was kept.
struct OpenDir {
    at: usize,
    included: bool,
    kept: bool,
}

/// Plans everything below the directory `dir` whose absolute path in the snapshot is `abs`;
/// items are placed relative to `rel`. Returns whether anything was kept.
fn plan_dir(
    repo: &Repository,
    index: &Index,
    dir: &NodeKind,
    abs: &Path,
    rel: &Path,
    opts: &RestoreOptions,
    plan: &mut Plan,
) -> Result<bool> {
    let mut open: Vec<OpenDir> = Vec::new();
    let mut any = false;
    find::walk_events(repo, index, dir, abs, &mut |v| {
        match v {
            find::Visit::Entry(path, node) => {
                let kept = plan_entry(node, path, abs, rel, opts, plan, &mut open);
                if kept && !node.kind.is_dir() {
                    mark_kept(&mut open, &mut any);
                }
                Ok(kept && node.kind.is_dir())
            }
            find::Visit::Leave(_) => {
                if let Some(d) = open.pop() {
                    if d.kept || d.included {
                        mark_kept(&mut open, &mut any);
                    } else {
                        // Nothing below was kept, so every item after this one is gone too.
                        plan.dirs.truncate(d.at);
                    }
                }
                Ok(false)
            }
        }
    })?;
    Ok(any)
}

fn mark_kept(open: &mut [OpenDir], any: &mut bool) {
    match open.last_mut() {
        Some(parent) => parent.kept = true,
        None => *any = true,
    }
}

/// Plans one entry the walk reached; for a directory returns whether to descend (it is then
/// kept or dropped when the walk leaves it), else whether the entry was kept.
fn plan_entry(
    node: &Node,
    path: &Path,
    abs: &Path,
    rel: &Path,
    opts: &RestoreOptions,
    plan: &mut Plan,
    open: &mut Vec<OpenDir>,
) -> bool {
    if opts.excludes.matches(path) {
        return false;
    }
    let included = opts.includes.is_empty() || opts.includes.matches_or_below(path);
    let rel = match path.strip_prefix(abs) {
        Ok(below) => rel.join(below),
        Err(_) => rel.to_path_buf(),
    };
    let item = Item {
        rel,
        node: node.clone(),
    };
    if node.kind.is_dir() {
        open.push(OpenDir {
            at: plan.dirs.len(),
            included,
            kept: false,
        });
        plan.dirs.push(item);
        return true;
    }
    if included {
        plan.others.push(item);
    }
    included
}

fn ensure_empty_target(target: &Path) -> Result<()> {
    match std::fs::read_dir(target) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(Error::TargetNotEmpty {
                    path: target.to_path_buf(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(target).map_err(|e| Error::io(target, e))
        }
        Err(e) => Err(Error::io(target, e)),
    }
}

/// Restores `path` of the snapshot whose root tree is `root` into `target`. A directory's
/// contents go into `target` below their absolute path when `path` is `/`, or directly into
/// `target` when a subfolder is named (restic's `SNAPSHOT:SUBFOLDER`); a file goes into
/// `target` under its name.
pub fn run(
    repo: &Repository,
    index: &Index,
    root: &BlobId,
    path: &Path,
    snapshot_label: &str,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreStats> {
    let mut plan = Plan::default();
    match find::locate(repo, index, root, path, snapshot_label)? {
        Located::Root(id) => {
            let root = NodeKind::Dir { subtree: id };
            plan_dir(
                repo,
                index,
                &root,
                Path::new("/"),
                Path::new(""),
                opts,
                &mut plan,
            )?;
        }
        Located::Node(abs, node) if node.kind.is_dir() => {
            plan_dir(
                repo,
                index,
                &node.kind,
                &abs,
                Path::new(""),
                opts,
                &mut plan,
            )?;
        }
        Located::Node(abs, node) => {
            // A single file goes into the target under its own name.
            let parent = abs.parent().unwrap_or(Path::new("/"));
            plan_entry(
                &node,
                &abs,
                parent,
                Path::new(""),
                opts,
                &mut plan,
                &mut Vec::new(),
            );
        }
    }
    ensure_empty_target(&opts.target)?;
    execute(repo, index, &opts.target, plan, progress)
}

fn execute(
    repo: &Repository,
    index: &Index,
    target: &Path,
    plan: Plan,
    progress: &dyn Progress,
) -> Result<RestoreStats> {
    let mut stats = RestoreStats::default();
    for d in &plan.dirs {
        let p = target.join(&d.rel);
        DirBuilder::new()
            .mode(0o700)
            .create(&p)
            .map_err(|e| Error::io(&p, e))?;
        stats.dirs += 1;
    }

    let (contents, links) = plan_files(&plan.others);
    let written = AtomicU64::new(0);
    let direct = writer::suits_direct(target);
    write_pool()?.install(|| {
        contents
            .par_iter()
            .map(|(it, content, size)| {
                let path = target.join(&it.rel);
                let n = write_file(repo, index, &path, content, *size, direct, progress)?;
                written.fetch_add(n, Ordering::Relaxed);
                Ok(())
            })
            .collect::<Result<()>>()
    })?;
    stats.bytes = written.into_inner();
    stats.files = contents.len() as u64;
    for (first, rel) in &links {
        let (a, b) = (target.join(first), target.join(rel));
        std::fs::hard_link(&a, &b).map_err(|e| Error::io(&b, e))?;
        stats.files += 1;
    }
    for it in &plan.others {
        let p = target.join(&it.rel);
        if let NodeKind::Fifo = it.node.kind {
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| Error::io(&p, std::io::Error::from(e)))?;
            stats.others += 1;
        }
    }
    // Symlinks last: from here on no content is written, so no write can follow one.
    for it in &plan.others {
        if let NodeKind::Symlink { target: t } = &it.node.kind {
            let p = target.join(&it.rel);
            std::os::unix::fs::symlink(os(t), &p).map_err(|e| Error::io(&p, e))?;
            stats.others += 1;
        }
    }
    let is_root = nix::unistd::geteuid().is_root();
    for it in &plan.others {
        apply_metadata(&target.join(&it.rel), &it.node, is_root)?;
    }
    for d in plan.dirs.iter().rev() {
        apply_metadata(&target.join(&d.rel), &d.node, is_root)?;
    }
    Ok(stats)
}

/// A regular file whose content is written: its item, chunks and size.
type FileToWrite<'a> = (&'a Item, &'a [BlobId], u64);

/// Regular files to write, and hardlinks `(existing, new)` to make. The first path of each
/// (device, inode) with several links gets the content; a later one becomes a link to it only
/// if its size and content list are the same, since the pair alone is just what a (possibly
/// crafted or merged) tree claims, and linking on it would give one file the other's bytes.
fn plan_files(others: &[Item]) -> (Vec<FileToWrite<'_>>, Vec<(PathBuf, PathBuf)>) {
    // Keyed by content too, so a hostile tree of many entries claiming one inode costs one
    // lookup each, not a comparison with every earlier one.
    let mut first_link: HashMap<(u64, u64, u64, &[BlobId]), &Path> = HashMap::new();
    let mut contents: Vec<FileToWrite<'_>> = Vec::new();
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    for it in others {
        let NodeKind::File { size, content } = &it.node.kind else {
            continue;
        };
        if it.node.links > 1 && it.node.inode != 0 {
            let key = (it.node.device, it.node.inode, *size, content.as_slice());
            if let Some(first) = first_link.get(&key) {
                links.push((first.to_path_buf(), it.rel.clone()));
                continue;
            }
            first_link.insert(key, &it.rel);
        }
        contents.push((it, content, *size));
    }
    (contents, links)
}

/// The threads that fetch, verify and write file contents: twice the cores, because
/// `O_DIRECT` writes block their thread until the device has the data (measured on the 2-core
/// VM: 3.0 s with 2 threads, 2.4 s with 4 or 6, for 1.27 GB).
fn write_pool() -> Result<rayon::ThreadPool> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    rayon::ThreadPoolBuilder::new()
        .num_threads(2 * cores)
        .thread_name(|i| format!("cista-restore-{i}"))
        .build()
        .map_err(|e| Error::Io {
            path: "restore threads".into(),
            source: std::io::Error::other(e),
        })
}

/// Writes one file's chunks in parallel at their offsets; zero chunks stay holes.
fn write_file(
    repo: &Repository,
    index: &Index,
    path: &Path,
    content: &[BlobId],
    size: u64,
    direct: bool,
    progress: &dyn Progress,
) -> Result<u64> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    // Offsets come from the index's lengths; a lying index is caught by the size check below.
    let mut offsets = Vec::with_capacity(content.len());
    let mut off = 0u64;
    for id in content {
        let loc = index.get(id).ok_or_else(|| Error::RestoreVerify {
            path: path.to_path_buf(),
            chunk: id.to_string(),
            reason: "chunk is in no index".into(),
        })?;
        offsets.push(off);
        off += u64::from(loc.entry.raw_len);
    }
    if off != size {
        return Err(Error::RestoreVerify {
            path: path.to_path_buf(),
            chunk: "-".into(),
            reason: format!("chunks add up to {off} bytes, the file had {size}"),
        });
    }
    let w = FileWriter::new(f, size, direct).map_err(|e| Error::io(path, e))?;
    content
        .par_iter()
        .zip(offsets.par_iter())
        .map(|(id, off)| {
            let data = repo
                .read_blob(index, id)
                .map_err(|e| Error::RestoreVerify {
                    path: path.to_path_buf(),
                    chunk: id.to_string(),
                    reason: e.to_string(),
                })?;
            w.write_at(&data, *off).map_err(|e| Error::io(path, e))?;
            progress.bytes(data.len() as u64);
            Ok(())
        })
        .collect::<Result<()>>()?;
    w.finish().map_err(|e| Error::io(path, e))?;
    progress.file_done(size);
    Ok(size)
}

fn ns_to_filetime(ns: i64) -> filetime::FileTime {
    filetime::FileTime::from_unix_time(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

fn apply_metadata(path: &Path, node: &Node, is_root: bool) -> Result<()> {
    let symlink = matches!(node.kind, NodeKind::Symlink { .. });
    for x in &node.xattrs {
        // Linux refuses user.* attributes on symlinks; other failures are real.
        if let Err(e) = xattr::set(path, os(&x.name), &x.value)
            && !symlink
        {
            return Err(Error::io(path, e));
        }
    }
    if is_root {
        std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid))
            .map_err(|e| Error::io(path, e))?;
    }
    if !symlink {
        let perms = std::fs::Permissions::from_mode(node.mode & 0o7777);
        std::fs::set_permissions(path, perms).map_err(|e| Error::io(path, e))?;
    }
    let (a, m) = (ns_to_filetime(node.atime_ns), ns_to_filetime(node.mtime_ns));
    filetime::set_symlink_file_times(path, a, m).map_err(|e| Error::io(path, e))?;
    Ok(())
}

/// Writes one file of a snapshot to `out` (`cista dump`), verifying every chunk.
pub fn dump_file(
    repo: &Repository,
    index: &Index,
    node: &Node,
    out: &mut dyn std::io::Write,
) -> Result<u64> {
    let NodeKind::File { content, .. } = &node.kind else {
        return Err(Error::InvalidInput(
            "only files can be dumped; use `cista restore` for directories".into(),
        ));
    };
    let mut n = 0u64;
    // Fetch a few chunks ahead in parallel, write them in order.
    for group in content.chunks(8) {
        let blobs: Vec<Result<Vec<u8>>> = group
            .par_iter()
            .map(|id| repo.read_blob(index, id))
            .collect();
        for b in blobs {
            let b = b?;
            out.write_all(&b)
                .map_err(|e| Error::io("standard output", e))?;
            n += b.len() as u64;
        }
    }
    out.flush().map_err(|e| Error::io("standard output", e))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::tests::node;
    use crate::id::Id;

    fn file(name: &str, inode: u64, content: &[u8]) -> Item {
        let content: Vec<BlobId> = content.iter().map(|b| BlobId(Id([*b; 32]))).collect();
        let mut n = node(
            name.as_bytes(),
            NodeKind::File {
                size: content.len() as u64,
                content,
            },
        );
        n.inode = inode;
        n.links = 2;
        Item {
            rel: PathBuf::from(name),
            node: n,
        }
    }

    #[test]
    fn hardlinks_only_between_identical_contents() {
        let items = vec![
            file("a", 7, &[1]),
            file("b", 7, &[2]),
            file("c", 7, &[1]),
            file("d", 8, &[1]),
            file("e", 7, &[2]),
        ];
        let (contents, links) = plan_files(&items);
        let written: Vec<&Path> = contents.iter().map(|(it, ..)| it.rel.as_path()).collect();
        assert_eq!(written, [Path::new("a"), Path::new("b"), Path::new("d")]);
        assert_eq!(
            links,
            [
                (PathBuf::from("a"), PathBuf::from("c")),
                (PathBuf::from("b"), PathBuf::from("e"))
            ]
        );
    }
}
