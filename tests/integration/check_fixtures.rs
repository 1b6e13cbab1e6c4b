//! Broken repositories built by the test, with `check`'s output pinned line by line (text and
//! JSON, ids replaced by labels) and its exit code; then `repair index` recovering what is
//! recoverable and `check` after it.

use std::collections::HashSet;
use std::path::PathBuf;

use cista::format::ObjectKind;
use cista::format::pack::BlobType;
use cista::id::{Id, PackId};
use serde_json::Value;

use super::harness::{Repo, Rng};

/// A repository with one snapshot of three files in two folders: one data pack, one tree pack.
struct Fixture {
    repo: Repo,
    src: PathBuf,
    data_pack: PackId,
    tree_pack: PackId,
    snapshot: String,
    /// Every blob id (full hex) with its label, `BLOB` for data and `TREE` for trees.
    blobs: Vec<(String, &'static str)>,
}

impl Fixture {
    fn new() -> Self {
        let repo = Repo::new();
        let src = repo.scratch("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        // Below the minimum chunk size and incompressible: one chunk each, all sealed to the
        // same length, so counts and offsets do not depend on the repository's secret chunker.
        std::fs::write(src.join("a"), Rng::new(1).bytes(900)).unwrap();
        std::fs::write(src.join("b"), Rng::new(2).bytes(900)).unwrap();
        std::fs::write(src.join("sub/c"), Rng::new(3).bytes(900)).unwrap();
        let summary = repo.backup(&[&src]);
        let snapshot = summary["snapshot_id"].as_str().unwrap().to_owned();
        let lib = repo.open();
        let index = lib.load_index().unwrap();
        let mut data = HashSet::new();
        let mut tree = HashSet::new();
        let mut blobs = Vec::new();
        for loc in index.iter() {
            let label = match loc.entry.blob_type {
                BlobType::Data => {
                    data.insert(loc.pack);
                    "BLOB"
                }
                BlobType::Tree => {
                    tree.insert(loc.pack);
                    "TREE"
                }
            };
            blobs.push((loc.entry.id.to_hex(), label));
        }
        assert_eq!((data.len(), tree.len()), (1, 1), "one pack of each type");
        let data_pack = *data.iter().next().unwrap();
        let tree_pack = *tree.iter().next().unwrap();
        assert_ne!(data_pack, tree_pack);
        Self {
            repo,
            src,
            data_pack,
            tree_pack,
            snapshot,
            blobs,
        }
    }

    fn pack_path(&self, p: &PackId) -> PathBuf {
        let h = p.to_hex();
        self.repo.path.join("data").join(&h[..2]).join(&h)
    }

    fn labels(&self) -> Vec<(String, &'static str)> {
        vec![
            (self.src.to_string_lossy().into_owned(), "SRC"),
            (self.data_pack.to_hex(), "DATAPACK"),
            (self.tree_pack.to_hex(), "TREEPACK"),
            (self.snapshot.clone(), "SNAP"),
        ]
        .into_iter()
        .chain(self.blobs.iter().cloned())
        .collect()
    }

    /// `check ARGS`: the exit code and every line (stderr, then stdout), ids normalised.
    fn check(&self, args: &[&str], extra: &[(String, &'static str)]) -> (i32, Vec<String>) {
        let mut full = vec!["check"];
        full.extend_from_slice(args);
        let r = self.repo.run(&full);
        let mut labels = self.labels();
        labels.extend(extra.iter().cloned());
        let text = format!("{}{}", r.stderr, r.stdout_str());
        (
            r.code.unwrap(),
            text.lines().map(|l| normalise(l, &labels)).collect(),
        )
    }

    /// `check --json ARGS`: the exit code and the findings as (severity, kind, ids normalised).
    fn check_json(
        &self,
        args: &[&str],
        extra: &[(String, &'static str)],
    ) -> (i32, Vec<String>, Value) {
        let mut full = vec!["check", "--json"];
        full.extend_from_slice(args);
        let r = self.repo.run(&full);
        let lines = r.json_lines();
        let mut labels = self.labels();
        labels.extend(extra.iter().cloned());
        let (summary, findings) = lines.split_last().unwrap();
        assert_eq!(summary["message_type"], "summary", "{summary}");
        let findings = findings
            .iter()
            .map(|f| {
                assert_eq!(f["message_type"], "finding", "{f}");
                let ids: Vec<String> = ["snapshot", "pack", "blob", "tree", "index", "lock", "id"]
                    .iter()
                    .filter_map(|k| {
                        f[*k]
                            .as_str()
                            .map(|v| format!("{k}={}", normalise(v, &labels)))
                    })
                    .collect();
                format!(
                    "{} {} {}",
                    f["severity"].as_str().unwrap(),
                    f["kind"].as_str().unwrap(),
                    ids.join(" ")
                )
            })
            .collect();
        (r.code.unwrap(), findings, summary.clone())
    }

    fn repair_index(&self) -> Vec<String> {
        let r = self.repo.run(&["repair", "index"]).ok();
        let text = format!("{}{}", r.stderr, r.stdout_str());
        text.lines().map(|l| normalise(l, &self.labels())).collect()
    }

    /// Restores the latest snapshot and asserts every file is byte-identical to the source.
    fn assert_restores(&self) {
        let target = self
            .repo
            .scratch(&format!("restore-{}", Rng::new(0).next_u64() % 1000));
        let _ = std::fs::remove_dir_all(&target);
        self.repo.restore_latest(&target);
        let out = super::fixture::restored_path(&target, &self.src);
        for f in ["a", "b", "sub/c"] {
            assert_eq!(
                std::fs::read(out.join(f)).unwrap(),
                std::fs::read(self.src.join(f)).unwrap(),
                "{f}"
            );
        }
    }
}

/// Replaces known ids (full, or their 8-digit short form) and the source path by labels, then
/// numbers of 3 digits or more by `N` and any other id (8 or 64 hex digits) by `<ID>`. Every
/// id a test expects is labelled, so an id made of digits only cannot turn into `N`.
fn normalise(line: &str, labels: &[(String, &'static str)]) -> String {
    let mut s = line.to_owned();
    for (text, label) in labels {
        s = s.replace(text.as_str(), label);
        if *label != "SRC" {
            s = s.replace(&text[..8], label);
        }
    }
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 3 && run.bytes().all(|b| b.is_ascii_digit()) {
            out.push('N');
        } else if run.len() == 8 || run.len() == 64 {
            out.push_str("<ID>");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in s.chars() {
        if c.is_ascii_hexdigit() && !c.is_ascii_uppercase() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn healthy_repository_checks_clean() {
    let f = Fixture::new();
    let (code, out) = f.check(&["--read-data"], &[]);
    assert_eq!(
        (code, out),
        (
            0,
            lines(&[
                "checked 1 snapshot, 2 packs, 8 blobs, read 2 packs",
                "no errors were found"
            ])
        )
    );
}

/// Writes `bytes` as a new object of `folder` named by their hash; returns the full hex name.
fn put_object(f: &Fixture, folder: &str, bytes: &[u8]) -> String {
    let name = Id::of_stored(bytes).to_hex();
    let dir = if folder == "data" {
        f.repo.path.join("data").join(&name[..2])
    } else {
        f.repo.path.join(folder)
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&name), bytes).unwrap();
    name
}

/// A lock as FORMAT §17 lays it out (version 2 layout, which every reader decodes), sealed.
fn lock_bytes(f: &Fixture, age_ns: i64, host: &str, pid: u32) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let mut plain = Vec::new();
    plain.extend_from_slice(&(now - age_ns).to_le_bytes());
    plain.push(0);
    for s in [host, "backup"] {
        plain.extend_from_slice(&(s.len() as u64).to_le_bytes());
        plain.extend_from_slice(s.as_bytes());
    }
    plain.extend_from_slice(&pid.to_le_bytes());
    f.repo.open().seal_object(ObjectKind::Lock, &plain).unwrap()
}

fn flip(path: &std::path::Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x01;
    std::fs::write(path, &b).unwrap();
}

/// The file a lost chunk belonged to depends on the random order of blobs in a pack.
fn any_file(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|l| {
            l.replace("\"SRC/sub/c\"", "\"SRC/F\"")
                .replace("\"SRC/a\"", "\"SRC/F\"")
                .replace("\"SRC/b\"", "\"SRC/F\"")
        })
        .collect()
}

#[test]
fn missing_pack_is_an_error_and_repair_index_drops_it() {
    let f = Fixture::new();
    std::fs::remove_file(f.pack_path(&f.data_pack)).unwrap();
    let (code, out) = f.check(&[], &[]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        lines(&[
            "error: pack DATAPACK is named by an index but missing from storage; the blobs only it held are lost: run `cista repair index`, then back up again what still exists",
            "cista: the repository has 1 error (listed above)",
            "checked 1 snapshot, 1 pack, 8 blobs",
        ])
    );
    let (code, json, summary) = f.check_json(&[], &[]);
    assert_eq!(
        (code, json),
        (1, lines(&["error pack_missing pack=DATAPACK"]))
    );
    assert_eq!(summary["num_errors"], 1);
    assert_eq!(summary["suggest_repair_index"], true);

    assert_eq!(
        f.repair_index(),
        lines(&[
            "warning: pack DATAPACK was named by the index but is missing from storage; it is no longer indexed, and the blobs only it held are lost",
            "indexed 1 pack (5 blobs) in 1 new index file; removed 1 old index file",
        ])
    );
    // The data is gone: check now says which files cannot be restored.
    let (code, out) = f.check(&[], &[]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        lines(&[
            "error: snapshot SNAP: file \"SRC/a\": chunk BLOB is in no index; the file cannot be restored",
            "error: snapshot SNAP: file \"SRC/b\": chunk BLOB is in no index; the file cannot be restored",
            "error: snapshot SNAP: file \"SRC/sub/c\": chunk BLOB is in no index; the file cannot be restored",
            "cista: the repository has 3 errors (listed above)",
            "checked 1 snapshot, 1 pack, 5 blobs",
        ])
    );
}

#[test]
fn missing_index_is_rebuilt_from_the_pack_headers() {
    let f = Fixture::new();
    for p in f.repo.files_in("index") {
        std::fs::remove_file(p).unwrap();
    }
    let (code, mut out) = f.check(&[], &[]);
    assert_eq!(code, 1);
    // Packs are reported in id order; sort the two to compare.
    out[..2].sort();
    assert_eq!(
        out,
        lines(&[
            "warning: pack DATAPACK (N bytes) is not indexed (left by an interrupted backup): the next backup or `cista repair index` indexes it",
            "warning: pack TREEPACK (N bytes) is not indexed (left by an interrupted backup): the next backup or `cista repair index` indexes it",
            "error: snapshot SNAP: tree TREE cannot be read (not in any index); what that directory held is lost from this snapshot",
            "cista: the repository has 1 error (listed above)",
            "checked 1 snapshot, 2 packs, 0 blobs",
        ])
    );
    let (code, mut json, summary) = f.check_json(&[], &[]);
    json[..2].sort();
    assert_eq!(
        (code, json),
        (
            1,
            lines(&[
                "warning pack_unindexed pack=DATAPACK",
                "warning pack_unindexed pack=TREEPACK",
                "error tree_damaged snapshot=SNAP tree=TREE",
            ])
        )
    );
    assert_eq!(
        (
            summary["num_errors"].clone(),
            summary["num_warnings"].clone()
        ),
        (1.into(), 2.into())
    );

    assert_eq!(
        f.repair_index(),
        lines(&["indexed 2 packs (8 blobs) in 1 new index file; removed 0 old index files"])
    );
    let (code, out) = f.check(&["--read-data"], &[]);
    assert_eq!(
        (code, out),
        (
            0,
            lines(&[
                "checked 1 snapshot, 2 packs, 8 blobs, read 2 packs",
                "no errors were found"
            ])
        )
    );
    f.assert_restores();
}

#[test]
fn truncated_pack_is_found_without_reading_data_and_repair_keeps_what_is_inside() {
    let f = Fixture::new();
    let p = f.pack_path(&f.data_pack);
    // Cut inside the last blob: exactly one blob ends past the new end.
    let index = f.repo.open().load_index().unwrap();
    let end = index
        .iter()
        .filter(|l| l.pack == f.data_pack)
        .map(|l| l.entry.end())
        .max()
        .unwrap();
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..end as usize - 1]).unwrap();
    let (code, out) = f.check(&[], &[]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        lines(&[
            "error: pack DATAPACK is N bytes, but 1 indexed blobs end past it (up to byte N): the pack is truncated or the index is wrong; run `cista repair index`",
            "cista: the repository has 1 error (listed above)",
            "checked 1 snapshot, 2 packs, 8 blobs",
        ])
    );
    let (code, json, summary) = f.check_json(&["--read-data"], &[]);
    assert_eq!(
        (code, json),
        (
            1,
            lines(&[
                "error index_entry_out_of_range pack=DATAPACK",
                "error pack_hash_mismatch pack=DATAPACK",
            ])
        )
    );
    assert_eq!(
        summary["broken_packs"],
        serde_json::json!([f.data_pack.to_hex()])
    );

    assert_eq!(
        f.repair_index(),
        lines(&[
            "warning: pack DATAPACK: its header cannot be read (pack header is N bytes, more than the N-byte cap); it was left in place, and the blobs the old index placed inside it stay indexed",
            "indexed 2 packs (7 blobs) in 1 new index file; removed 1 old index file",
        ])
    );
    assert!(p.exists(), "repair never deletes a pack");
    let (code, out) = f.check(&["--read-data"], &[]);
    assert_eq!(code, 1);
    assert_eq!(
        any_file(out),
        lines(&[
            "error: snapshot SNAP: file \"SRC/F\": chunk BLOB is in no index; the file cannot be restored",
            "error: pack DATAPACK: contents do not match its name (bit rot or tampering); the blobs only it holds are damaged",
            "cista: the repository has 2 errors (listed above)",
            "checked 1 snapshot, 2 packs, 7 blobs, read 2 packs",
        ])
    );
}

#[test]
fn newer_format_objects_are_reported_as_such_and_left_alone() {
    let f = Fixture::new();
    let mut h = cista::format::header(ObjectKind::Snapshot).to_vec();
    h[5] = 9;
    h.extend_from_slice(&Rng::new(5).bytes(100));
    let name = put_object(&f, "snapshots", &h);
    let newer = [(name.clone(), "NEWER")];
    let (code, out) = f.check(&[], &newer);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        lines(&[
            "error: snapshot NEWER was written by a newer version of cista: upgrade cista to check it (it was not verified, and no repair touches it)",
            "cista: the repository has 1 error (listed above)",
            "checked 1 snapshot, 2 packs, 8 blobs",
        ])
    );
    let (_, json, _) = f.check_json(&[], &newer);
    assert_eq!(json, lines(&["error newer_format id=NEWER"]));
    assert!(!out.iter().any(|l| l.contains("damaged")));
    f.repair_index();
    assert!(f.repo.path.join("snapshots").join(&name).exists());

    // A newer repository (config) is refused as a whole, by name.
    let lib = f.repo.open();
    let mut cfg = lib.config().clone();
    cfg.format_version = 99;
    let sealed = lib.seal_object(ObjectKind::Config, &cfg.encode()).unwrap();
    std::fs::write(f.repo.path.join("config"), sealed).unwrap();
    let r = f.repo.run(&["check"]).expect_code(1);
    assert!(
        r.stderr.contains("written by a newer version of cista"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("damaged"), "{}", r.stderr);
}

#[test]
fn orphan_pack_is_a_warning_and_repair_index_adopts_it() {
    let f = Fixture::new();
    let lib = f.repo.open();
    let data = b"an orphan blob".to_vec();
    let id = lib.blob_id(&data);
    let sealed = lib.seal_blob(BlobType::Data, &id, &data).unwrap();
    let pack = cista::repo::packer::assemble(
        &lib,
        vec![cista::repo::packer::SealedBlob {
            blob_type: BlobType::Data,
            id,
            raw_len: data.len() as u32,
            sealed,
        }],
    )
    .unwrap();
    let name = put_object(&f, "data", &pack.parts.concat());
    let orphan = [(name, "ORPHAN")];
    let (code, out) = f.check(&[], &orphan);
    assert_eq!(
        (code, out),
        (
            0,
            lines(&[
                "warning: pack ORPHAN (N bytes) is not indexed (left by an interrupted backup): the next backup or `cista repair index` indexes it",
                "checked 1 snapshot, 3 packs, 8 blobs",
                "no errors were found",
            ])
        )
    );
    let (code, json, summary) = f.check_json(&[], &orphan);
    assert_eq!(
        (code, json),
        (0, lines(&["warning pack_unindexed pack=ORPHAN"]))
    );
    assert_eq!(summary["ok"], true);
    f.repair_index();
    let (code, out) = f.check(&["--read-data"], &orphan);
    assert_eq!(
        (code, out),
        (
            0,
            lines(&[
                "checked 1 snapshot, 3 packs, 9 blobs, read 3 packs",
                "no errors were found"
            ])
        )
    );
}

#[test]
fn stale_lock_from_another_host_is_reported_and_blocks_no_one() {
    let f = Fixture::new();
    let name = put_object(
        &f,
        "locks",
        &lock_bytes(&f, 31 * 60 * 1_000_000_000, "elsewhere.example", 4242),
    );
    let lock = [(name.clone(), "LOCK")];
    let (code, out) = f.check(&[], &lock);
    assert_eq!(
        (code, out),
        (
            0,
            lines(&[
                "info: lock LOCK of pid N of backup@elsewhere.example is stale (refreshed 31 min ago, or its process is gone) and blocks no one; `cista unlock` removes it",
                "checked 1 snapshot, 2 packs, 8 blobs",
                "no errors were found",
            ])
        )
    );
    let (_, json, _) = f.check_json(&[], &lock);
    assert_eq!(json, lines(&["info stale_lock lock=LOCK"]));
    // A live lock from another host is not reported (and, shared, does not block check).
    std::fs::remove_file(f.repo.path.join("locks").join(&name)).unwrap();
    put_object(&f, "locks", &lock_bytes(&f, 0, "elsewhere.example", 4242));
    let (code, out) = f.check(&[], &[]);
    assert_eq!((code, out.len()), (0, 2), "{out:?}");
}

#[test]
fn damaged_snapshot_and_damaged_tree_are_errors_naming_them() {
    let f = Fixture::new();
    let s = f.repo.files_in("snapshots").pop().unwrap();
    flip(&s, 30);
    let (code, out) = f.check(&[], &[]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        lines(&[
            "error: snapshot SNAP is damaged (contents do not match the name (bit rot or tampering)); nothing can be restored from it: remove it with `cista forget SNAP`, and back up again what still exists",
            "cista: the repository has 1 error (listed above)",
            "checked 0 snapshots, 2 packs, 8 blobs",
        ])
    );

    let f = Fixture::new();
    // Byte 20 of the tree pack lies inside its first blob (a tree).
    flip(&f.pack_path(&f.tree_pack), 20);
    let (code, out) = f.check(&["--read-data"], &[]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        lines(&[
            "error: snapshot SNAP: tree TREE cannot be read (authentication failed); what that directory held is lost from this snapshot",
            "error: pack TREEPACK: contents do not match its name (bit rot or tampering); the blobs only it holds are damaged",
            "cista: the repository has 2 errors (listed above)",
            "checked 1 snapshot, 2 packs, 8 blobs, read 2 packs",
        ])
    );
    let (_, json, _) = f.check_json(&[], &[]);
    assert_eq!(json, lines(&["error tree_damaged snapshot=SNAP tree=TREE"]));
}

#[test]
fn read_data_subset_reads_restics_selection() {
    let f = Fixture::new();
    let first = |p: &PackId| u32::from(p.as_bytes()[0]);
    // N/M: exactly the packs whose first id byte is N-1 modulo M.
    for m in [1u32, 2, 3] {
        for n in 1..=m {
            let want = [f.data_pack, f.tree_pack]
                .iter()
                .filter(|p| first(p) % m == n - 1)
                .count();
            let sub = format!("{n}/{m}");
            let (_, _, s) = f.check_json(&["--read-data-subset", &sub], &[]);
            assert_eq!(s["packs_read"], want, "{sub}");
        }
    }
    // P%: floor(2 * P / 100), at least one.
    for (pct, want) in [("1%", 1), ("50%", 1), ("99.9%", 1), ("100%", 2)] {
        let (_, _, s) = f.check_json(&["--read-data-subset", pct], &[]);
        assert_eq!(s["packs_read"], want, "{pct}");
    }
    let (_, _, s) = f.check_json(&["--read-data-subset", "1t"], &[]);
    assert_eq!(s["packs_read"], 2);
    // Damage in a pack outside the selection is not seen; inside it is.
    flip(&f.pack_path(&f.data_pack), 30);
    let d = first(&f.data_pack) % 2 + 1;
    let (code, _) = f.check(&["--read-data-subset", &format!("{d}/2")], &[]);
    assert_eq!(code, 1);
    // Invalid values are usage errors naming the flag.
    for bad in ["0/2", "3/2", "1/300", "5", "0%", "101%", "abc"] {
        let r = f
            .repo
            .run(&["check", "--read-data-subset", bad])
            .expect_code(2);
        assert!(
            r.stderr.contains("--read-data-subset"),
            "{bad}: {}",
            r.stderr
        );
    }
    let r = f
        .repo
        .run(&["check", "--read-data", "--read-data-subset", "1/2"])
        .expect_code(2);
    assert!(r.stderr.contains("cannot be used with"), "{}", r.stderr);
}

#[test]
fn damaged_index_file_is_an_error_and_repair_index_replaces_it() {
    let f = Fixture::new();
    let idx = f.repo.files_in("index").pop().unwrap();
    let name = idx.file_name().unwrap().to_string_lossy().into_owned();
    flip(&idx, 20);
    let labels = [(name, "INDEX")];
    let (code, mut out) = f.check(&[], &labels);
    assert_eq!(code, 1);
    out[1..3].sort();
    assert_eq!(
        out,
        lines(&[
            "error: index file INDEX is damaged (contents do not match the name (bit rot or tampering)); it was skipped and its packs' headers read instead: run `cista repair index`",
            "warning: pack DATAPACK is named by no readable index file; its header was read instead: run `cista repair index`",
            "warning: pack TREEPACK is named by no readable index file; its header was read instead: run `cista repair index`",
            "cista: the repository has 1 error (listed above)",
            "checked 1 snapshot, 2 packs, 8 blobs",
        ])
    );
    let (_, json, summary) = f.check_json(&[], &labels);
    assert_eq!(json[0], "error index_damaged index=INDEX");
    assert_eq!(summary["suggest_repair_index"], true);
    // Readers go on from the pack headers meanwhile.
    f.assert_restores();

    assert_eq!(
        f.repair_index(),
        lines(&[
            "warning: index file <ID> was damaged (contents do not match the name (bit rot or tampering)); its packs were indexed from their headers",
            "indexed 2 packs (8 blobs) in 1 new index file; removed 1 old index file",
        ])
    );
    let (code, out) = f.check(&["--read-data"], &[]);
    assert_eq!(
        (code, out),
        (
            0,
            lines(&[
                "checked 1 snapshot, 2 packs, 8 blobs, read 2 packs",
                "no errors were found"
            ])
        )
    );
    assert!(!f.repo.path.join("index").join(&labels[0].0).exists());
}
