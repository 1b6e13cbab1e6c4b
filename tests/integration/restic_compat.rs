//! cista's JSON against a real restic's for the same tree: same field names, same JSON types,
//! same values where they mean the same thing (mode, permissions, type, size, uid, gid, times
//! as instants). Needs `restic` on PATH (scripts/test.sh installs Debian's when it can); without
//! it the test prints why it did not run and passes.
//!
//! restic 0.14 (Debian's) predates some fields: restic 0.17 added the snapshot `summary`,
//! `program_version`, `message_type` and `inode` in `ls`. Those are checked against the names
//! restic 0.17 documents (its cmd/restic and internal/restic sources), listed below.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::harness::{Repo, Run, hermetic, run_cmd, summary_of};

/// The fields of restic 0.17's snapshot summary (`restic.SnapshotSummary`), with their JSON
/// types: "s" an RFC 3339 string, "u" an unsigned integer.
const RESTIC_017_SUMMARY: &[(&str, &str)] = &[
    ("backup_start", "s"),
    ("backup_end", "s"),
    ("files_new", "u"),
    ("files_changed", "u"),
    ("files_unmodified", "u"),
    ("dirs_new", "u"),
    ("dirs_changed", "u"),
    ("dirs_unmodified", "u"),
    ("data_blobs", "u"),
    ("tree_blobs", "u"),
    ("data_added", "u"),
    ("data_added_packed", "u"),
    ("total_files_processed", "u"),
    ("total_bytes_processed", "u"),
];

/// The restic binary, or `None` (with the reason printed) when there is none.
fn restic() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path)
        .map(|d| d.join("restic"))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!(
            "restic_compat: SKIPPED: no `restic` on PATH (install it: apt-get install -y restic)"
        );
    }
    found
}

/// A `restic` command against `repo` with no RESTIC_* or CISTA_* variable inherited.
fn restic_cmd(bin: &Path, repo: &Path, args: &[&std::ffi::OsStr]) -> Command {
    let mut c = hermetic(bin);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("RESTIC_") {
            c.env_remove(k);
        }
    }
    c.env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", "restic-compat")
        .arg("--no-cache")
        .args(args);
    c
}

fn restic_run(bin: &Path, repo: &Path, args: &[&std::ffi::OsStr]) -> Run {
    run_cmd(restic_cmd(bin, repo, args), None).ok()
}

/// The JSON type of a value, with integers told apart from other numbers.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Asserts every field restic printed is in cista's object with the same JSON type (a float
/// in restic may be an integer in cista only if it is whole, as Go prints 1.0 as 1).
#[track_caller]
fn assert_fields_match(what: &str, restic: &Value, cista: &Value) {
    let r = restic.as_object().unwrap();
    for (k, rv) in r {
        let cv = cista
            .get(k)
            .unwrap_or_else(|| panic!("{what}: cista lacks restic's field {k:?}\ncista: {cista}"));
        assert_eq!(
            kind(rv),
            kind(cv),
            "{what}: field {k:?} is {rv} in restic, {cv} in cista"
        );
    }
}

/// Parses an RFC 3339 time to ns since the epoch.
#[track_caller]
fn instant(v: &Value) -> i128 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{v} is not a time string"));
    s.parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
        .as_nanosecond()
}

/// The tree both tools back up: a directory, a sticky directory, a file, an empty file, a
/// symlink, a named pipe and a setuid file.
fn make_tree(root: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let src = root.join("src");
    std::fs::create_dir_all(src.join("dir/sticky")).unwrap();
    std::fs::write(src.join("dir/file"), b"hello\n").unwrap();
    std::fs::write(src.join("dir/empty"), b"").unwrap();
    std::os::unix::fs::symlink("file", src.join("dir/link")).unwrap();
    nix::unistd::mkfifo(
        &src.join("dir/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    std::fs::write(src.join("dir/suid"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        src.join("dir/suid"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::set_permissions(
        src.join("dir/sticky"),
        std::fs::Permissions::from_mode(0o1777),
    )
    .unwrap();
    std::fs::set_permissions(src.join("dir"), std::fs::Permissions::from_mode(0o750)).unwrap();
    src
}

/// `ls --json`'s node lines below `src`, by path.
fn nodes_below(lines: &[Value], src: &Path) -> BTreeMap<String, Value> {
    let src = src.to_string_lossy().into_owned();
    lines[1..]
        .iter()
        .filter(|n| {
            let p = n["path"].as_str().unwrap();
            p == src || p.starts_with(&format!("{src}/"))
        })
        .map(|n| (n["path"].as_str().unwrap().to_owned(), n.clone()))
        .collect()
}

/// A cista repository and a restic one, and the tree both back up.
struct Side {
    restic: PathBuf,
    repo: Repo,
    src: PathBuf,
    rrepo: PathBuf,
}

/// The two repositories, the restic one initialised; `None` when there is no restic.
fn side_by_side() -> Option<Side> {
    let restic = restic()?;
    let repo = Repo::new();
    let src = make_tree(repo.dir.path());
    let rrepo = repo.scratch("restic-repo");
    restic_run(&restic, &rrepo, &["init".as_ref()]);
    Some(Side {
        restic,
        repo,
        src,
        rrepo,
    })
}

#[test]
fn json_matches_restic_field_by_field() {
    let Some(Side {
        restic,
        repo,
        src,
        rrepo,
    }) = side_by_side()
    else {
        return;
    };

    // backup --json: the summary line.
    let r = restic_run(
        &restic,
        &rrepo,
        &["backup".as_ref(), "--json".as_ref(), src.as_os_str()],
    );
    let r_sum = summary_of(&r);
    let c_sum = repo.backup(&[&src]);
    assert_fields_match("backup summary", &r_sum, &c_sum);
    for f in [
        "files_new",
        "files_changed",
        "files_unmodified",
        "dirs_new",
        "dirs_changed",
        "dirs_unmodified",
        "data_blobs",
        "total_files_processed",
        "total_bytes_processed",
    ] {
        assert_eq!(r_sum[f], c_sum[f], "backup summary {f}");
    }

    // ls --json: the snapshot line, then the nodes.
    let r_ls = restic_run(
        &restic,
        &rrepo,
        &["ls".as_ref(), "--json".as_ref(), "latest".as_ref()],
    )
    .json_lines();
    let c_ls = repo.run(&["ls", "--json", "latest"]).ok().json_lines();
    assert_fields_match("ls snapshot line", &r_ls[0], &c_ls[0]);
    assert_eq!(c_ls[0]["message_type"], "snapshot", "restic 0.17 adds it");
    assert_eq!(r_ls[0]["paths"], c_ls[0]["paths"]);
    let (r_nodes, c_nodes) = (nodes_below(&r_ls, &src), nodes_below(&c_ls, &src));
    assert_eq!(
        r_nodes.keys().collect::<Vec<_>>(),
        c_nodes.keys().collect::<Vec<_>>(),
        "the same entries"
    );
    assert_eq!(r_nodes.len(), 8);
    for (path, rn) in &r_nodes {
        let cn = &c_nodes[path];
        assert_fields_match(&format!("ls node {path}"), rn, cn);
        for f in ["name", "type", "path", "uid", "gid", "mode", "permissions"] {
            assert_eq!(rn[f], cn[f], "{path}: {f}");
        }
        // Size: files only, 0 included; never for other types (restic 0.16+).
        assert_eq!(rn.get("size"), cn.get("size"), "{path}: size");
        // Times: the same instants, and (same machine, same zone) the same text, since both
        // print Go's RFC 3339 with nanoseconds. atime is not compared: cista stores the
        // modification time there on purpose (docs/FORMAT.md, Trees).
        for f in ["mtime", "ctime"] {
            assert_eq!(instant(&rn[f]), instant(&cn[f]), "{path}: {f}");
            assert_eq!(rn[f], cn[f], "{path}: {f} text");
        }
        assert_eq!(cn["struct_type"], "node");
        assert_eq!(cn["message_type"], "node", "restic 0.17 adds it");
        if let Some(inode) = rn.get("inode") {
            assert_eq!(Some(inode), cn.get("inode"), "{path}: inode");
        }
    }
    // The values restic is known to print, in case both ever drifted the same way.
    let p = |rel: &str| src.join(rel).to_string_lossy().into_owned();
    assert_eq!(c_nodes[&p("dir")]["mode"], 2147484136u64); // ModeDir | 0750
    assert_eq!(c_nodes[&p("dir/sticky")]["permissions"], "dtrwxrwxrwx");
    assert_eq!(c_nodes[&p("dir/link")]["permissions"], "Lrwxrwxrwx");
    assert_eq!(c_nodes[&p("dir/suid")]["mode"], 8389101u64);
    assert_eq!(c_nodes[&p("dir/fifo")]["mode"], 33554852u64);
    assert_eq!(c_nodes[&p("dir/empty")]["size"], 0);

    // snapshots --json.
    let r_snaps = restic_run(&restic, &rrepo, &["snapshots".as_ref(), "--json".as_ref()]).json();
    let c_snaps = repo.run(&["snapshots", "--json"]).ok().json();
    let (rs, cs) = (&r_snaps[0], &c_snaps[0]);
    assert_fields_match("snapshots", rs, cs);
    for f in ["paths", "hostname", "username"] {
        assert_eq!(rs[f], cs[f], "snapshots {f}");
    }
    for s in [rs, cs] {
        assert!(
            s.get("parent").is_none(),
            "parent is omitted when none: {s}"
        );
        assert!(s.get("tags").is_none(), "tags are omitted when none: {s}");
    }
    // Both times are Go RFC 3339 with nanoseconds; the backups ran within seconds.
    assert!((instant(&rs["time"]) - instant(&cs["time"])).abs() < 600 * 1_000_000_000);
    assert!(
        cs["program_version"]
            .as_str()
            .unwrap()
            .starts_with("cista ")
    );
    // restic 0.17's summary: every field with its type (restic 0.14 has none to compare).
    let sum = &cs["summary"];
    for (f, t) in RESTIC_017_SUMMARY {
        let v = &sum[*f];
        match *t {
            "s" => assert!(instant(v) > 0, "{f}"),
            _ => assert!(v.is_u64(), "summary {f} is {v}"),
        }
    }
    assert!(instant(&sum["backup_start"]) <= instant(&sum["backup_end"]));
    assert_eq!(sum["total_bytes_processed"], r_sum["total_bytes_processed"]);
}

/// One tar entry as both tools write it: type, mode, size, link target, content, then
/// (uid, gid, mtime seconds).
type TarEntry = (u8, u32, u64, Option<String>, Vec<u8>, (u64, u64, u64));

fn tar_entries(bytes: &[u8]) -> BTreeMap<String, TarEntry> {
    use std::io::Read;
    let mut a = tar::Archive::new(bytes);
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let h = e.header().clone();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        out.insert(
            name,
            (
                h.entry_type().as_byte(),
                h.mode().unwrap(),
                h.size().unwrap(),
                link,
                body,
                (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
            ),
        );
    }
    out
}

/// `dump SNAPSHOT /` as a tar: the same names, and for files, directories and symlinks the
/// same type, mode (set-id and sticky bits included), size, link target, content, owner and
/// modification time.
#[test]
fn dump_tar_matches_restic() {
    let Some(Side {
        restic,
        repo,
        src,
        rrepo,
    }) = side_by_side()
    else {
        return;
    };
    restic_run(&restic, &rrepo, &["backup".as_ref(), src.as_os_str()]);
    repo.backup(&[&src]);
    let r = tar_entries(
        &restic_run(
            &restic,
            &rrepo,
            &["dump".as_ref(), "latest".as_ref(), "/".as_ref()],
        )
        .stdout,
    );
    let c = tar_entries(&repo.run(&["dump", "latest", "/"]).ok().stdout);
    let prefix = src.to_string_lossy().trim_start_matches('/').to_owned();
    let below = |m: &BTreeMap<String, TarEntry>| -> BTreeMap<String, TarEntry> {
        m.iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let (r, c) = (below(&r), below(&c));
    // restic 0.14 leaves named pipes out of `dump /` (and writes them as empty files when
    // dumping their directory); cista writes FIFO entries. Everything else is the same.
    let fifo = tar::EntryType::Fifo.as_byte();
    let c_rest: BTreeMap<&String, &TarEntry> = c.iter().filter(|(_, e)| e.0 != fifo).collect();
    assert_eq!(
        r.keys().collect::<Vec<_>>(),
        c_rest.keys().copied().collect::<Vec<_>>(),
        "the same entries"
    );
    assert_eq!(c.len() - c_rest.len(), 1, "the one named pipe");
    for (name, re) in &r {
        assert_eq!(re, c_rest[name], "{name}");
    }
    assert_eq!(r.len(), 7);
}
