//! `rewrite --exclude` and `repair snapshots` through the real binary: files removed from
//! snapshots (nested and split directories, dry runs, `--forget`), and snapshots repaired
//! after a pack is deleted or a tree blob is damaged.

use std::path::{Path, PathBuf};

use cista::format::pack::BlobType;
use cista::format::snapshot::Snapshot;
use cista::format::tree::{Node, NodeKind, Tree};
use cista::id::BlobId;
use cista::ops::find::{self, Located};
use cista::repo::packer::{Packer, SealedBlob};
use serde_json::Value;

use super::harness::{Repo, Rng, contents};

/// A source folder with a secret at two depths and files that must survive.
fn source(r: &Repo) -> PathBuf {
    let src = r.scratch("src");
    for (p, body) in [
        ("app/config.yml", &b"port: 1\n"[..]),
        ("app/secret.key", b"hunter2\n"),
        ("app/deep/er/secret.key", b"hunter3\n"),
        ("app/deep/er/notes.txt", b"keep me\n"),
        ("other/data.bin", &[7u8; 20_000][..]),
    ] {
        let f = src.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, body).unwrap();
    }
    src
}

fn ls_paths(r: &Repo, snap: &str) -> Vec<String> {
    r.run(&["ls", "--json", snap])
        .ok()
        .json_lines()
        .into_iter()
        .filter_map(|l| l["path"].as_str().map(String::from))
        .collect()
}

fn id_of(s: &Value) -> String {
    s["id"].as_str().unwrap().to_owned()
}

/// The tree id of a directory in a snapshot.
fn subtree_of(r: &Repo, snap_id: &str, path: &Path) -> NodeKind {
    let lib = r.open();
    let index = lib.load_index().unwrap();
    let (_, snap) = find::snapshot(&lib, snap_id, &Default::default()).unwrap();
    match find::locate(&lib, &index, &snap.tree, path, snap_id).unwrap() {
        Located::Node(_, n) => n.kind,
        other => panic!("{other:?}"),
    }
}

#[test]
fn rewrite_removes_files_and_keeps_everything_else() {
    let r = Repo::new();
    let src = source(&r);
    r.backup(&[&src]);
    let old = id_of(&r.snapshots(&[])[0]);
    let run = r.run(&["rewrite", "--exclude", "secret.key"]).ok();
    let out = run.stdout_str();
    let key = src.join("app/secret.key");
    let deep = src.join("app/deep/er/secret.key");
    assert!(
        out.contains(&format!("excluding {}", key.display()))
            && out.contains(&format!("excluding {}", deep.display()))
            && out.contains("saved new snapshot")
            && out.contains("modified 1 snapshots"),
        "{out}"
    );

    // The old snapshot is kept; the new one is tagged `rewrite` and names it as original.
    let snaps = r.snapshots(&[]);
    assert_eq!(snaps.len(), 2);
    let new = snaps.iter().find(|s| id_of(s) != old).unwrap();
    assert_eq!(new["original"], old.as_str());
    assert_eq!(new["tags"], serde_json::json!(["rewrite"]));
    assert_eq!(
        new["time"],
        snaps.iter().find(|s| id_of(s) == old).unwrap()["time"]
    );
    assert_eq!(new["paths"], serde_json::json!([src.to_str().unwrap()]));
    assert_eq!(new["summary"]["total_files_processed"], 3);
    let new_id = id_of(new);

    let listed = ls_paths(&r, &new_id);
    assert!(
        !listed.iter().any(|p| p.ends_with("secret.key")),
        "{listed:?}"
    );
    assert!(
        listed.iter().any(|p| p.ends_with("notes.txt")),
        "{listed:?}"
    );
    assert!(ls_paths(&r, &old).iter().any(|p| p.ends_with("secret.key")));

    // An untouched directory keeps its tree; the changed ones got new trees.
    let other = src.join("other");
    assert_eq!(
        subtree_of(&r, &new_id, &other),
        subtree_of(&r, &old, &other)
    );
    let app = src.join("app");
    assert_ne!(subtree_of(&r, &new_id, &app), subtree_of(&r, &old, &app));

    let target = r.scratch("restored");
    r.run(&["restore", &new_id, "--target", target.to_str().unwrap()])
        .ok();
    let restored = target.join(src.strip_prefix("/").unwrap());
    let mut want = contents(&src);
    want.retain(|(p, _)| !p.ends_with("secret.key"));
    assert_eq!(contents(&restored), want);
    r.run(&["check"]).ok();

    // Rewriting again finds nothing to remove in the new snapshot: it is left alone.
    let again = r.run(&["rewrite", "--exclude", "secret.key", &new_id]).ok();
    assert!(
        again.stdout_str().contains("no snapshots were modified"),
        "{}",
        again.stdout_str()
    );
    assert_eq!(r.snapshots(&[]).len(), 2);
}

#[test]
fn rewrite_dry_run_writes_nothing_and_forget_replaces_the_old_snapshot() {
    let r = Repo::new();
    let src = source(&r);
    r.backup(&[&src]);
    let old = id_of(&r.snapshots(&[])[0]);
    let before = r.files_in("");
    let pattern = src.join("app/deep").display().to_string();
    let dry = r
        .run(&["rewrite", "--dry-run", "--forget", "--exclude", &pattern])
        .ok();
    let out = dry.stdout_str();
    assert!(
        out.contains("would save new snapshot")
            && out.contains("would remove old snapshot")
            && out.contains("would modify 1 snapshots"),
        "{out}"
    );
    assert_eq!(
        r.files_in(""),
        before,
        "a dry run writes nothing, not even a lock"
    );

    r.run(&["rewrite", "--forget", "--exclude", &pattern]).ok();
    let snaps = r.snapshots(&[]);
    assert_eq!(snaps.len(), 1, "the old snapshot is gone");
    assert_eq!(snaps[0]["original"], old.as_str());
    assert!(
        snaps[0].get("tags").is_none(),
        "no `rewrite` tag with --forget"
    );
    let listed = ls_paths(&r, "latest");
    assert!(!listed.iter().any(|p| p.contains("/deep")), "{listed:?}");
    assert!(listed.iter().any(|p| p.ends_with("app/secret.key")));
    r.run(&["check"]).ok();
}

#[test]
fn rewrite_filters_and_refuses_nothing_to_do() {
    let r = Repo::new();
    let src = source(&r);
    r.backup(&[&src]);
    let run = r.run(&["rewrite"]).expect_code(1);
    assert!(run.stderr.contains("nothing to do"), "{}", run.stderr);
    // --host that matches no snapshot: nothing is rewritten.
    let run = r
        .run(&["rewrite", "--host", "elsewhere", "--exclude", "secret.key"])
        .ok();
    assert!(run.stdout_str().contains("no snapshots were modified"));
    // --iexclude ignores letter case. (--forget: a rewritten snapshot has its original's
    // time, so without it `latest` could be either.)
    r.run(&["rewrite", "--forget", "--iexclude", "SECRET.KEY"])
        .ok();
    assert!(
        !ls_paths(&r, "latest")
            .iter()
            .any(|p| p.ends_with("secret.key"))
    );
}

/// Writes blobs and a snapshot through the library (for split directories and damage).
struct Crafter {
    repo: cista::repo::Repository,
    packer: Packer,
}

impl Crafter {
    fn new(r: &Repo) -> Self {
        let repo = r.open();
        let packer = Packer::new(&repo).unwrap();
        Self { repo, packer }
    }

    fn blob(&self, t: BlobType, bytes: &[u8]) -> BlobId {
        let id = self.repo.blob_id(bytes);
        let sealed = self.repo.seal_blob(t, &id, bytes).unwrap();
        self.packer
            .add(SealedBlob {
                blob_type: t,
                id,
                raw_len: bytes.len() as u32,
                sealed,
            })
            .unwrap();
        id
    }

    fn tree(&self, nodes: Vec<Node>) -> BlobId {
        self.blob(BlobType::Tree, &Tree { nodes }.encode())
    }

    fn snapshot(self, root: BlobId) {
        self.packer.finish().unwrap();
        let snap = Snapshot {
            time_unix_ns: 1_780_000_000_000_000_000,
            tz_offset_s: 0,
            hostname: "crafted".into(),
            username: "u".into(),
            uid: 0,
            gid: 0,
            paths: vec!["/x".into()],
            tags: Vec::new(),
            tree: root,
            parent: None,
            program_version: "crafted".into(),
            incomplete: false,
            summary: Default::default(),
            original: None,
            lost: None,
        };
        self.repo.save_snapshot(&snap).unwrap();
    }
}

fn node(name: &str, kind: NodeKind) -> Node {
    let mode = match kind {
        NodeKind::File { .. } => 0o100_644,
        _ => 0o040_755,
    };
    Node {
        name: name.as_bytes().to_vec(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime_ns: 1,
        atime_ns: 1,
        ctime_ns: 1,
        inode: 0,
        device: 0,
        links: 1,
        xattrs: Vec::new(),
    }
}

fn file(c: &Crafter, name: &str, body: &[u8]) -> Node {
    let id = c.blob(BlobType::Data, body);
    node(
        name,
        NodeKind::File {
            size: body.len() as u64,
            content: vec![id],
        },
    )
}

#[test]
fn rewrite_removes_an_entry_from_a_split_directory() {
    let r = Repo::new();
    let c = Crafter::new(&r);
    let part1 = c.tree(vec![file(&c, "a", b"A"), file(&c, "b", b"B")]);
    let part2 = c.tree(vec![file(&c, "c", b"C"), file(&c, "d", b"D")]);
    let split = node(
        "split",
        NodeKind::DirParts {
            parts: vec![part1, part2],
        },
    );
    let x = c.tree(vec![split]);
    let root = c.tree(vec![node("x", NodeKind::Dir { subtree: x })]);
    c.snapshot(root);
    r.run(&["rewrite", "--forget", "--exclude", "/x/split/c"])
        .ok();
    assert_eq!(
        ls_paths(&r, "latest"),
        ["/x", "/x/split", "/x/split/a", "/x/split/b", "/x/split/d"]
    );
    let target = r.scratch("restored");
    r.run(&["restore", "latest", "--target", target.to_str().unwrap()])
        .ok();
    assert_eq!(
        contents(&target.join("x/split")),
        [
            (PathBuf::from("a"), b"A".to_vec()),
            (PathBuf::from("b"), b"B".to_vec()),
            (PathBuf::from("d"), b"D".to_vec())
        ]
    );
    r.run(&["check"]).ok();
}

/// The pack file holding a blob.
fn pack_file_of(r: &Repo, blob: &BlobId) -> PathBuf {
    let lib = r.open();
    let index = lib.load_index().unwrap();
    let pack = index.get(blob).unwrap().pack.to_hex();
    r.files_in("data")
        .into_iter()
        .find(|p| p.file_name().unwrap().to_str() == Some(&pack))
        .unwrap()
}

fn content_of(kind: NodeKind) -> Vec<BlobId> {
    match kind {
        NodeKind::File { content, .. } => content,
        k => panic!("{k:?}"),
    }
}

#[test]
fn repair_snapshots_after_a_pack_is_deleted() {
    let r = Repo::new();
    let src = source(&r);
    r.backup(&[&src]);
    // A second backup adds one large file: its chunks go to packs of their own.
    let lost = src.join("app/big.bin");
    std::fs::write(&lost, Rng::new(8).bytes(600_000)).unwrap();
    r.backup(&[&src]);
    let latest = id_of(r.snapshots(&[]).last().unwrap());
    let chunk = content_of(subtree_of(&r, &latest, &lost))[0];
    std::fs::remove_file(pack_file_of(&r, &chunk)).unwrap();

    // A dry run reports and writes nothing.
    let before = r.files_in("snapshots");
    let dry = r.run(&["repair", "snapshots", "--dry-run"]).ok();
    assert!(
        dry.stdout_str().contains("would modify 1 snapshots"),
        "{}",
        dry.stdout_str()
    );
    assert_eq!(r.files_in("snapshots"), before);

    let run = r.run(&["repair", "snapshots"]).ok();
    let out = run.stdout_str();
    assert!(
        out.contains(&format!(
            "file {:?}: content lost",
            lost.display().to_string()
        )) && out.contains("is missing")
            && out.contains("modified 1 snapshots"),
        "{out}"
    );
    let snaps = r.snapshots(&[]);
    assert_eq!(snaps.len(), 3, "the originals are kept without --forget");
    let repaired = snaps.iter().find(|s| s.get("original").is_some()).unwrap();
    assert_eq!(repaired["original"], latest.as_str());
    assert_eq!(repaired["tags"], serde_json::json!(["repaired"]));
    assert_eq!(repaired["incomplete"], true);
    assert_eq!(repaired["lost"]["files"], 1);
    assert_eq!(
        repaired["lost"]["paths"],
        serde_json::json!([lost.to_str().unwrap()])
    );

    let target = r.scratch("restored");
    r.run(&[
        "restore",
        &id_of(repaired),
        "--target",
        target.to_str().unwrap(),
    ])
    .ok();
    let restored = target.join(src.strip_prefix("/").unwrap());
    let got = contents(&restored);
    let mut want = contents(&src);
    for (p, body) in &mut want {
        if src.join(&p) == lost {
            body.clear();
        }
    }
    assert_eq!(got, want, "intact files exact, the lost one empty");

    // Repairing again: the repaired snapshot has nothing lost; the original still has.
    let again = r
        .run(&["repair", "snapshots", "--forget", &id_of(repaired)])
        .ok();
    assert!(again.stdout_str().contains("no snapshots were modified"));
}

#[test]
fn repair_snapshots_after_a_tree_blob_is_damaged() {
    let r = Repo::new();
    let src = source(&r);
    r.backup(&[&src]);
    let old = id_of(&r.snapshots(&[])[0]);
    let deep = src.join("app/deep/er");
    let NodeKind::Dir { subtree } = subtree_of(&r, &old, &deep) else {
        panic!("not a plain directory");
    };
    // Flip one byte inside that tree blob's sealed bytes.
    let lib = r.open();
    let loc = lib.load_index().unwrap().get(&subtree).unwrap();
    let pack = pack_file_of(&r, &subtree);
    let mut bytes = std::fs::read(&pack).unwrap();
    let at = (loc.entry.offset + loc.entry.length / 2) as usize;
    bytes[at] ^= 0x40;
    std::fs::write(&pack, bytes).unwrap();

    let run = r.run(&["repair", "snapshots", "--forget"]).ok();
    let out = run.stdout_str();
    assert!(
        out.contains(&format!("dir {:?}: tree lost", deep.display().to_string()))
            && out.contains("damaged")
            && out.contains(&format!("removed old snapshot {}", &old[..8])),
        "{out}"
    );
    let snaps = r.snapshots(&[]);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["lost"]["dirs"], 1);
    assert!(snaps[0].get("tags").is_none());

    let target = r.scratch("restored");
    r.restore_latest(&target);
    let restored = target.join(src.strip_prefix("/").unwrap());
    let mut want = contents(&src);
    want.retain(|(p, _)| !p.starts_with("app/deep"));
    assert_eq!(contents(&restored), want);
    assert!(
        restored.join("app/deep/er").is_dir(),
        "kept as an empty directory"
    );
    assert_eq!(
        std::fs::read_dir(restored.join("app/deep/er"))
            .unwrap()
            .count(),
        0
    );
    // The damaged blob is referenced by no snapshot now: the structure checks out.
    r.run(&["check"]).ok();
}

#[test]
fn repair_leaves_a_snapshot_whose_root_is_unreadable() {
    let r = Repo::new();
    let src = source(&r);
    r.backup(&[&src]);
    let s = &r.snapshots(&[])[0];
    let root = BlobId(cista::id::Id::from_hex(s["tree"].as_str().unwrap()).unwrap());
    std::fs::remove_file(pack_file_of(&r, &root)).unwrap();
    let run = r.run(&["repair", "snapshots", "--forget"]).expect_code(3);
    assert!(
        run.stderr.contains("root tree cannot be read") && run.stderr.contains("left as it is"),
        "{}",
        run.stderr
    );
    assert_eq!(r.snapshots(&[]).len(), 1, "never deleted");
}

/// Flips one byte in the middle of a blob's sealed bytes in its pack file.
fn flip_blob(r: &Repo, blob: &BlobId) {
    let loc = r.open().load_index().unwrap().get(blob).unwrap();
    let pack = pack_file_of(r, blob);
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[(loc.entry.offset + loc.entry.length / 2) as usize] ^= 0x40;
    std::fs::write(&pack, bytes).unwrap();
}

#[test]
fn repair_read_data_finds_a_damaged_chunk_the_index_cannot_show() {
    let r = Repo::new();
    let src = source(&r);
    r.backup(&[&src]);
    let old = id_of(&r.snapshots(&[])[0]);
    let victim = src.join("app/deep/er/notes.txt");
    flip_blob(&r, &content_of(subtree_of(&r, &old, &victim))[0]);
    // Indexed and inside a stored pack: without --read-data nothing looks lost (restic
    // checks only the index too).
    let plain = r.run(&["repair", "snapshots"]).ok();
    assert!(plain.stdout_str().contains("no snapshots were modified"));
    let run = r
        .run(&["repair", "snapshots", "--read-data", "--json"])
        .ok();
    let v = run.json();
    assert_eq!(v["modified"], 1);
    let lost = &v["snapshots"][0]["lost"];
    assert_eq!(lost[0]["path"], victim.to_str().unwrap());
    assert_eq!(lost[0]["type"], "file");
    assert!(
        lost[0]["reason"].as_str().unwrap().contains("damaged"),
        "{lost}"
    );
    let new = v["snapshots"][0]["snapshot"].as_str().unwrap().to_owned();
    let target = r.scratch("restored");
    r.run(&["restore", &new, "--target", target.to_str().unwrap()])
        .ok();
    let restored = target.join(victim.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(restored).unwrap(), b"");
}

/// `rewrite` does not go past damage: a damaged subtree fails the run before anything is
/// saved, and says which object is damaged.
#[test]
fn rewrite_of_a_damaged_snapshot_changes_nothing() {
    let r = Repo::new();
    let src = source(&r);
    r.backup(&[&src]);
    let old = id_of(&r.snapshots(&[])[0]);
    let NodeKind::Dir { subtree } = subtree_of(&r, &old, &src.join("app/deep")) else {
        panic!("not a plain directory");
    };
    flip_blob(&r, &subtree);
    let before = r.files_in("snapshots");
    let run = r
        .run(&["rewrite", "--forget", "--exclude", "config.yml"])
        .expect_code(1);
    assert!(run.stderr.contains("is damaged"), "{}", run.stderr);
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    assert_eq!(r.files_in("snapshots"), before);
}
