//! Source trees for backups: one with every kind of entry and awkward metadata, and a
//! comparison that reports every difference between a source and its restore.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;

use super::harness::{Rng, SMALL_CHUNKS, is_root};

/// The 30-level chain below `deep/`.
pub const DEPTH: usize = 30;
/// Size of the sparse file; only its last bytes are data.
pub const SPARSE_LEN: u64 = 1 << 20;
/// Owner given to `owned/file` when running as root.
pub const OWNED_UID_GID: (u32, u32) = (1234, 5678);

/// A generated tree.
#[derive(Debug)]
pub struct Tree {
    pub root: PathBuf,
    /// Whether the file system stores `user.` extended attributes.
    pub xattrs: bool,
}

impl Tree {
    /// The path of the chain's leaf, relative to the root.
    pub fn deep_leaf() -> PathBuf {
        let mut p = PathBuf::from("deep");
        for i in 0..DEPTH {
            p.push(format!("d{i:02}"));
        }
        p.join("leaf.txt")
    }
}

/// Odd names, each as raw bytes: spaces, a newline, a leading dash, non-ASCII, an emoji,
/// 255 bytes (the usual NAME_MAX), and bytes that are not UTF-8.
pub fn odd_names() -> Vec<OsString> {
    let long = format!("{}z", "ü".repeat(127));
    assert_eq!(long.len(), 255);
    [
        b"with space".to_vec(),
        b"line\nbreak".to_vec(),
        b"-leading-dash".to_vec(),
        "é".as_bytes().to_vec(),
        "emoji 🦀 crab".as_bytes().to_vec(),
        long.into_bytes(),
        b"not-utf8-\xff\xfe".to_vec(),
    ]
    .into_iter()
    .map(OsString::from_vec)
    .collect()
}

fn write(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, data).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let t = FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(path, t, t).unwrap();
}

/// Repetitive text: compresses well and repeats chunks.
pub fn text(len: usize) -> Vec<u8> {
    let line = b"INSERT INTO t VALUES (42, 'the quick brown fox jumps over the lazy dog');\n";
    line.iter().copied().cycle().take(len).collect()
}

/// Builds the every-kind tree below `root` (which must not exist).
pub fn build_full(root: &Path, seed: u64) -> Tree {
    let mut rng = Rng::new(seed);
    std::fs::create_dir_all(root).unwrap();
    let f = root.join("files");
    let [min, avg, max] = SMALL_CHUNKS;
    for (name, len) in [
        ("empty", 0),
        ("one", 1),
        ("min", min),
        ("avg", avg),
        ("max", max),
        ("max_plus_1", max + 1),
        ("random_200k", 200 << 10),
        // Large enough for restore's O_DIRECT path, and not a whole number of blocks.
        ("random_1m_odd", (1 << 20) + 12_345),
    ] {
        write(&f.join(name), &rng.bytes(len));
    }
    write(&f.join("text_200k.txt"), &text(200 << 10));
    for (name, mode) in [("mode_600", 0o600), ("mode_755", 0o755), ("setuid", 0o4755)] {
        write(&f.join(name), name.as_bytes());
        chmod(&f.join(name), mode);
    }
    write(&f.join("old_mtime"), b"2001");
    set_mtime(&f.join("old_mtime"), 1_000_000_000, 123_456_789);
    write(&f.join("pre_epoch"), b"1960");
    set_mtime(&f.join("pre_epoch"), -315_619_200, 5);

    // Sparse: a hole, then a few bytes at the very end.
    let sparse = root.join("sparse");
    let sf = std::fs::File::create(&sparse).unwrap();
    sf.set_len(SPARSE_LEN).unwrap();
    sf.write_all_at(b"the end", SPARSE_LEN - 7).unwrap();
    drop(sf);

    for (i, n) in odd_names().into_iter().enumerate() {
        write(
            &root.join("names").join(n),
            format!("odd name {i}\n").as_bytes(),
        );
    }

    let leaf = root.join(Tree::deep_leaf());
    write(&leaf, b"at the bottom\n");

    let links = root.join("links");
    std::fs::create_dir_all(&links).unwrap();
    std::os::unix::fs::symlink("../files/one", links.join("relative")).unwrap();
    std::os::unix::fs::symlink(f.join("one"), links.join("absolute")).unwrap();
    std::os::unix::fs::symlink("no/such/target", links.join("dangling")).unwrap();
    set_mtime(&links.join("relative"), 1_200_000_000, 0);

    write(&root.join("hard/a"), b"one inode, two names\n");
    std::fs::hard_link(root.join("hard/a"), root.join("hard/b")).unwrap();

    std::fs::create_dir_all(root.join("special")).unwrap();
    nix::unistd::mkfifo(
        &root.join("special/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();

    std::fs::create_dir_all(root.join("empty_dir")).unwrap();
    std::fs::create_dir_all(root.join("private")).unwrap();
    write(&root.join("private/secret"), b"s3cret");
    chmod(&root.join("private/secret"), 0o400);
    chmod(&root.join("private"), 0o750);

    write(&root.join("xattr/file"), b"has attributes");
    let xattrs = xattr::set(root.join("xattr/file"), "user.cista.test", b"v\0\x01bin").is_ok();
    if xattrs {
        xattr::set(root.join("xattr"), "user.cista.dir", b"on a directory").unwrap();
    } else {
        eprintln!(
            "note: {} does not store user xattrs; not checking them",
            root.display()
        );
    }

    if is_root() {
        write(&root.join("owned/file"), b"not root's");
        let (u, g) = OWNED_UID_GID;
        std::os::unix::fs::lchown(root.join("owned/file"), Some(u), Some(g)).unwrap();
    }

    // Directory times last: creating entries above changed them.
    set_mtime(&root.join("deep"), 900_000_000, 1);
    set_mtime(&root.join("empty_dir"), 800_000_000, 999_999_999);
    Tree {
        root: root.to_path_buf(),
        xattrs,
    }
}

/// Writes `total` bytes of random data as files of `each` bytes below `root`.
pub fn build_random(root: &Path, seed: u64, total: usize, each: usize) {
    let mut rng = Rng::new(seed);
    std::fs::create_dir_all(root).unwrap();
    for i in 0..total.div_ceil(each) {
        let sub = root.join(format!("d{}", i % 4));
        write(&sub.join(format!("f{i:03}")), &rng.bytes(each));
    }
}

fn user_xattrs(p: &Path) -> BTreeMap<OsString, Vec<u8>> {
    let Ok(names) = xattr::list(p) else {
        return BTreeMap::new();
    };
    names
        .filter(|n| n.as_bytes().starts_with(b"user."))
        .map(|n| {
            let v = xattr::get(p, &n).ok().flatten().unwrap_or_default();
            (n, v)
        })
        .collect()
}

fn names_in(dir: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    v.sort();
    v
}

/// Compares `src` and `dst` recursively; returns every difference found. With `root_meta`
/// the two roots' own metadata is compared too (not for a restore into a fresh target).
pub fn diff(src: &Path, dst: &Path, root_meta: bool, xattrs: bool) -> Vec<String> {
    let mut out = Vec::new();
    diff_entry(src, dst, root_meta, xattrs, &mut out);
    out
}

fn diff_entry(src: &Path, dst: &Path, meta: bool, xattrs: bool, out: &mut Vec<String>) {
    let show = |p: &Path| p.display().to_string();
    let (s, d) = match (
        std::fs::symlink_metadata(src),
        std::fs::symlink_metadata(dst),
    ) {
        (Ok(s), Ok(d)) => (s, d),
        (_, Err(e)) => return out.push(format!("{}: missing in restore ({e})", show(dst))),
        (Err(e), _) => return out.push(format!("{}: unreadable source ({e})", show(src))),
    };
    let ty = |m: &std::fs::Metadata| m.mode() & 0o170000;
    if ty(&s) != ty(&d) {
        return out.push(format!(
            "{}: type {:o} restored as {:o}",
            show(src),
            ty(&s),
            ty(&d)
        ));
    }
    let link = s.file_type().is_symlink();
    if meta {
        if !link && s.mode() & 0o7777 != d.mode() & 0o7777 {
            out.push(format!(
                "{}: mode {:o} restored as {:o}",
                show(src),
                s.mode() & 0o7777,
                d.mode() & 0o7777
            ));
        }
        if (s.mtime(), s.mtime_nsec()) != (d.mtime(), d.mtime_nsec()) {
            out.push(format!(
                "{}: mtime {}.{:09} restored as {}.{:09}",
                show(src),
                s.mtime(),
                s.mtime_nsec(),
                d.mtime(),
                d.mtime_nsec()
            ));
        }
        if is_root() && (s.uid(), s.gid()) != (d.uid(), d.gid()) {
            out.push(format!(
                "{}: owner {}:{} restored as {}:{}",
                show(src),
                s.uid(),
                s.gid(),
                d.uid(),
                d.gid()
            ));
        }
        if xattrs && !link && user_xattrs(src) != user_xattrs(dst) {
            out.push(format!(
                "{}: xattrs {:?} restored as {:?}",
                show(src),
                user_xattrs(src),
                user_xattrs(dst)
            ));
        }
    }
    if s.is_file() {
        let (a, b) = (std::fs::read(src).unwrap(), std::fs::read(dst).unwrap());
        if a != b {
            out.push(format!(
                "{}: content differs ({} vs {} bytes)",
                show(src),
                a.len(),
                b.len()
            ));
        }
    } else if link {
        let (a, b) = (
            std::fs::read_link(src).unwrap(),
            std::fs::read_link(dst).unwrap(),
        );
        if a != b {
            out.push(format!(
                "{}: link target {a:?} restored as {b:?}",
                show(src)
            ));
        }
    } else if s.is_dir() {
        let (a, b) = (names_in(src), names_in(dst));
        if a != b {
            out.push(format!("{}: entries {a:?} restored as {b:?}", show(src)));
        }
        for n in a.iter().filter(|n| b.contains(n)) {
            diff_entry(&src.join(n), &dst.join(n), true, xattrs, out);
        }
    }
}

/// Where a full restore into `target` puts the absolute path `src`.
pub fn restored_path(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

/// `path` as bytes, for building command lines with odd names.
pub fn os(path: &Path) -> &OsStr {
    path.as_os_str()
}
