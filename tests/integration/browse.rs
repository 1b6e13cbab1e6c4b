//! `snapshots --json` and `ls --json` carry restic's fields, and the `--host`, `--tag` and
//! `--path` filters select the right snapshots.

use std::collections::BTreeMap;

use serde_json::Value;

use super::harness::{Repo, summary_of};

fn is_hex(v: &Value, len: usize) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn snapshots_json_fields_and_filters() {
    let repo = Repo::new();
    let (a, b) = (repo.scratch("a"), repo.scratch("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("f"), d.to_string_lossy().as_bytes()).unwrap();
    }
    let backup = |args: &[&str], path: &std::path::Path| {
        let mut full: Vec<&std::ffi::OsStr> = vec!["backup".as_ref(), "--json".as_ref()];
        full.extend(args.iter().map(std::ffi::OsStr::new));
        full.push(path.as_os_str());
        summary_of(&repo.run(&full).ok())
    };
    let s1 = backup(&["--host", "h1", "--tag", "db,nightly"], &a);
    let s2 = backup(&["--host", "h2", "--tag", "web"], &b);
    let s3 = backup(&["--host", "h1", "--tag", "db", "--tag", "db"], &a);

    let all = repo.snapshots(&[]);
    assert_eq!(all.len(), 3);
    let first = &all[0];
    assert_eq!(first["id"], s1["snapshot_id"]);
    assert!(is_hex(&first["id"], 64));
    assert!(is_hex(&first["short_id"], 8));
    assert!(
        first["id"]
            .as_str()
            .unwrap()
            .starts_with(first["short_id"].as_str().unwrap())
    );
    let time = first["time"].as_str().unwrap();
    assert!(
        time.len() >= 20 && time.as_bytes()[4] == b'-' && time.contains('T'),
        "time {time:?} is not RFC 3339"
    );
    assert_eq!(first["hostname"], "h1");
    assert!(!first["username"].as_str().unwrap().is_empty());
    assert_eq!(
        first["paths"],
        serde_json::json!([a.to_string_lossy().into_owned()])
    );
    assert_eq!(first["tags"], serde_json::json!(["db", "nightly"]));
    assert!(is_hex(&first["tree"], 64));
    assert!(first["parent"].is_null());
    assert_eq!(
        all[2]["tags"],
        serde_json::json!(["db"]),
        "tags not deduplicated"
    );
    assert_eq!(
        all[2]["parent"], s1["snapshot_id"],
        "parent is per host and paths"
    );
    assert!(all[1]["parent"].is_null());

    let ids = |filter: &[&str]| -> Vec<Value> {
        repo.snapshots(filter)
            .iter()
            .map(|s| s["id"].clone())
            .collect()
    };
    let (i1, i2, i3) = (
        s1["snapshot_id"].clone(),
        s2["snapshot_id"].clone(),
        s3["snapshot_id"].clone(),
    );
    assert_eq!(ids(&["--host", "h1"]), vec![i1.clone(), i3.clone()]);
    assert_eq!(ids(&["--host", "h2"]), vec![i2.clone()]);
    assert_eq!(ids(&["--host", "h1", "--host", "h2"]).len(), 3);
    assert_eq!(ids(&["--tag", "nightly"]), vec![i1.clone()]);
    assert_eq!(ids(&["--tag", "db"]), vec![i1.clone(), i3.clone()]);
    assert_eq!(ids(&["--tag", "db,nightly"]), vec![i1.clone()]);
    assert_eq!(
        ids(&["--tag", "web", "--tag", "nightly"]),
        vec![i1.clone(), i2.clone()]
    );
    assert_eq!(ids(&["--path", &b.to_string_lossy()]), vec![i2.clone()]);
    assert_eq!(ids(&["--host", "h3"]), Vec::<Value>::new());

    // `latest` honours the filters.
    let r = repo
        .run(&[
            "dump".as_ref(),
            "latest".as_ref(),
            a.join("f").as_os_str(),
            "--host".as_ref(),
            "h1".as_ref(),
        ])
        .ok();
    assert_eq!(r.stdout, a.to_string_lossy().as_bytes());
    // A short id prefix resolves.
    let short = i2.as_str().unwrap()[..8].to_owned();
    let r = repo
        .run(&["dump".as_ref(), short.as_ref(), b.join("f").as_os_str()])
        .ok();
    assert_eq!(r.stdout, b.to_string_lossy().as_bytes());

    // The human listing names every snapshot too.
    let text = repo.run(&["snapshots"]).ok().stdout_str();
    for s in [&i1, &i2, &i3] {
        assert!(text.contains(&s.as_str().unwrap()[..8]), "{text}");
    }
}

#[test]
fn ls_json_prints_the_snapshot_then_nodes() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    std::fs::create_dir_all(src.join("dir/sub")).unwrap();
    std::fs::write(src.join("dir/file"), b"12345").unwrap();
    std::fs::write(src.join("dir/sub/deeper"), b"x").unwrap();
    std::os::unix::fs::symlink("file", src.join("dir/link")).unwrap();
    let s = repo.backup(&[&src]);

    let lines = repo.run(&["ls", "--json", "latest"]).ok().json_lines();
    let head = &lines[0];
    assert_eq!(head["struct_type"], "snapshot");
    assert_eq!(head["id"], s["snapshot_id"]);
    assert!(is_hex(&head["short_id"], 8));
    assert!(head["paths"].is_array());
    let nodes: BTreeMap<String, &Value> = lines[1..]
        .iter()
        .map(|n| {
            assert_eq!(n["struct_type"], "node", "{n}");
            (n["path"].as_str().unwrap().to_owned(), n)
        })
        .collect();
    let p = |rel: &str| src.join(rel).to_string_lossy().into_owned();
    let file = nodes[&p("dir/file")];
    assert_eq!(file["type"], "file");
    assert_eq!(file["name"], "file");
    assert_eq!(file["size"], 5);
    assert!(file["mtime"].is_string() && file["mode"].is_number());
    assert_eq!(nodes[&p("dir")]["type"], "dir");
    assert_eq!(nodes[&p("dir/link")]["type"], "symlink");
    assert_eq!(nodes[&p("dir/link")]["linktarget"], "file");
    assert!(nodes.contains_key(&p("dir/sub/deeper")));
    // Every ancestor of the source is listed as a directory, from the root.
    let first_top = src
        .ancestors()
        .last()
        .unwrap()
        .join(src.iter().nth(1).unwrap());
    assert_eq!(
        nodes[&first_top.to_string_lossy().into_owned()]["type"],
        "dir"
    );

    // With a path: that entry and its direct children only; --recursive goes below.
    let dir = src.join("dir");
    let lines = repo
        .run(&[
            "ls".as_ref(),
            "--json".as_ref(),
            "latest".as_ref(),
            dir.as_os_str(),
        ])
        .ok()
        .json_lines();
    let paths: Vec<&str> = lines[1..]
        .iter()
        .map(|n| n["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&p("dir").as_str()), "{paths:?}");
    assert!(paths.contains(&p("dir/sub").as_str()));
    assert!(!paths.contains(&p("dir/sub/deeper").as_str()), "{paths:?}");
    let lines = repo
        .run(&[
            "ls".as_ref(),
            "--json".as_ref(),
            "--recursive".as_ref(),
            "latest".as_ref(),
            dir.as_os_str(),
        ])
        .ok()
        .json_lines();
    assert!(lines.iter().any(|n| n["path"] == p("dir/sub/deeper")));

    // Plain and long listings print one line per entry.
    let plain = repo.run(&["ls", "latest"]).ok().stdout_str();
    assert!(plain.lines().any(|l| l == p("dir/file")), "{plain}");
    let long = repo.run(&["ls", "-l", "latest"]).ok().stdout_str();
    assert!(
        long.lines()
            .any(|l| l.starts_with("-rw") && l.ends_with(&p("dir/file"))),
        "{long}"
    );
}
