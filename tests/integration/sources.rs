//! What a backup takes in: exclude rules, relative and overlapping source paths, an explicit
//! parent, and the sources it refuses.

use std::path::Path;

use super::harness::{Repo, cista, run_cmd, summary_of};

fn listed(repo: &Repo) -> Vec<String> {
    repo.run(&["ls", "latest"])
        .ok()
        .stdout_str()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn backup_excludes_by_glob_marker_file_and_pattern_file() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    for f in [
        "keep/a",
        "keep/b.log",
        "skip/c",
        "cache/d",
        "deep/x/tmp/e",
        "deep/f",
    ] {
        let p = src.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, f.as_bytes()).unwrap();
    }
    std::fs::write(src.join("skip/.nobackup"), b"").unwrap();
    let patterns = repo.scratch("excludes");
    std::fs::write(&patterns, format!("# comment\n\n{}/cache\n", src.display())).unwrap();
    let r = repo
        .run(&[
            "backup".as_ref(),
            "--exclude".as_ref(),
            "*.log".as_ref(),
            "--exclude".as_ref(),
            format!("{}/**/tmp", src.display()).as_ref(),
            "--exclude-if-present".as_ref(),
            ".nobackup".as_ref(),
            "--exclude-file".as_ref(),
            patterns.as_os_str(),
            src.as_os_str(),
        ])
        .ok();
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    let paths = listed(&repo);
    let has = |rel: &str| paths.contains(&src.join(rel).to_string_lossy().into_owned());
    assert!(has("keep/a") && has("deep/f") && has("deep/x"), "{paths:?}");
    for gone in ["keep/b.log", "skip/c", "cache", "deep/x/tmp"] {
        assert!(!has(gone), "{gone} was not excluded: {paths:?}");
    }
    // restic's --exclude-if-present keeps the tagged directory with its tag file only.
    assert!(has("skip") && has("skip/.nobackup"), "{paths:?}");
}

#[test]
fn relative_and_nested_sources_are_recorded_absolute_once() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    std::fs::create_dir_all(src.join("inner")).unwrap();
    std::fs::write(src.join("inner/f"), b"f").unwrap();
    let mut c = repo.cmd(&["backup", "--json", "src", "src/inner", "./src/../src"]);
    c.current_dir(repo.dir.path());
    let s = summary_of(&run_cmd(c, None).ok());
    assert_eq!(s["files_new"], 1, "{s}");
    let snaps = repo.snapshots(&[]);
    assert_eq!(
        snaps[0]["paths"],
        serde_json::json!([src.to_string_lossy().into_owned()])
    );
}

#[test]
fn explicit_parent_and_refused_sources() {
    let repo = Repo::new();
    let (a, b) = (repo.scratch("a"), repo.scratch("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("f"), b"same").unwrap();
    }
    let first = repo.backup(&[&a]);
    let id = first["snapshot_id"].as_str().unwrap();
    // Another path has no automatic parent; --parent names one.
    repo.backup(&[&b]);
    let r = repo
        .run(&[
            "backup".as_ref(),
            "--json".as_ref(),
            "--parent".as_ref(),
            id[..8].as_ref(),
            b.as_os_str(),
        ])
        .ok();
    summary_of(&r);
    let snaps = repo.snapshots(&[]);
    assert!(snaps[1]["parent"].is_null());
    assert_eq!(snaps[2]["parent"], id);

    // A missing source, no source, and unsafe stdin names are errors with no snapshot.
    let missing = Path::new("/nonexistent/cista/source");
    let r = repo.run(&["backup".as_ref(), missing.as_os_str()]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    repo.run(&["backup"]).expect_code(1);
    for name in ["../evil", "", "a/b", ".."] {
        let r = repo.run_stdin(&["backup", "--stdin", "--stdin-filename", name], b"x");
        assert_eq!(r.code, Some(1), "{name:?}: {}", r.stderr);
    }
    assert_eq!(repo.snapshots(&[]).len(), 3);
    // Without a repository the same mistakes are still plain errors.
    let mut c = cista();
    c.arg("backup");
    assert_ne!(run_cmd(c, None).code, Some(0));
}
