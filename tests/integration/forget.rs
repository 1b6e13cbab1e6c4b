//! `forget`, `tag` and `backup --time` through the binary, and a differential test of the
//! retention policy against a real restic: the same snapshot times in both, the same
//! policies, the same kept and removed snapshots with the same reasons.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::harness::{Repo, Run, hermetic, run_cmd};

/// The zone both tools run in: it has daylight saving, so `--time` and `--keep-within` meet
/// its changes.
const TZ: &str = "Europe/Berlin";

/// ns since the epoch of an RFC 3339 time.
fn instant(v: &Value) -> i128 {
    let s = v.as_str().unwrap_or_else(|| panic!("{v} is not a time"));
    s.parse::<jiff::Timestamp>().unwrap().as_nanosecond()
}

fn src(repo: &Repo) -> PathBuf {
    let src = repo.scratch("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    src
}

/// `backup --time T [--host H] [--tag TAG]` in `TZ`; returns the new snapshot's id.
fn backup_at(repo: &Repo, src: &Path, time: &str, host: &str, tag: Option<&str>) -> String {
    backup_in(TZ, repo, src, time, host, tag)
}

/// [`backup_at`] in the time zone `tz`.
fn backup_in(
    tz: &str,
    repo: &Repo,
    src: &Path,
    time: &str,
    host: &str,
    tag: Option<&str>,
) -> String {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "backup".as_ref(),
        "--json".as_ref(),
        "--time".as_ref(),
        time.as_ref(),
        "--host".as_ref(),
        host.as_ref(),
    ];
    if let Some(t) = tag {
        args.extend([std::ffi::OsStr::new("--tag"), std::ffi::OsStr::new(t)]);
    }
    args.push(src.as_os_str());
    let mut c = repo.cmd(&args);
    c.env("TZ", tz);
    let r = run_cmd(c, None).ok();
    let last = r.json_lines().pop().unwrap();
    last["snapshot_id"].as_str().unwrap().to_owned()
}

fn forget(repo: &Repo, args: &[&str]) -> Run {
    let mut full = vec!["forget"];
    full.extend_from_slice(args);
    let mut c = repo.cmd(&full);
    c.env("TZ", TZ);
    run_cmd(c, None)
}

fn snapshot_ids(repo: &Repo) -> Vec<String> {
    repo.snapshots(&[])
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The verdicts of a `forget --json` output: per group (host, paths) and snapshot instant,
/// its matches when kept or `None` when removed.
type Verdicts = BTreeMap<(String, String), BTreeMap<i128, Option<Vec<String>>>>;

/// The [`Verdicts`] key of a group by host and paths.
fn key(host: &str, path: &Path) -> (String, String) {
    (
        host.to_owned(),
        format!("[{:?}] null", path.to_str().unwrap()),
    )
}

fn verdicts(json: &Value) -> Verdicts {
    let mut out = Verdicts::new();
    for g in json.as_array().unwrap() {
        let key = (
            g["host"].as_str().unwrap().to_owned(),
            format!("{} {}", g["paths"], g["tags"]),
        );
        let m = out.entry(key).or_default();
        for s in g["remove"].as_array().into_iter().flatten() {
            assert!(m.insert(instant(&s["time"]), None).is_none());
        }
        for r in g["reasons"].as_array().into_iter().flatten() {
            let matches = r["matches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_owned())
                .collect();
            assert!(
                m.insert(instant(&r["snapshot"]["time"]), Some(matches))
                    .is_none()
            );
        }
        let kept = g["keep"].as_array().map_or(0, Vec::len);
        let reasons = g["reasons"].as_array().map_or(0, Vec::len);
        assert_eq!(kept, reasons, "one reason per kept snapshot: {g}");
    }
    out
}

fn restic_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path)
        .map(|d| d.join("restic"))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("forget differential test: SKIPPED: no `restic` on PATH");
    }
    found
}

fn restic(bin: &Path, repo: &Path, args: &[&str]) -> Run {
    restic_in(TZ, bin, repo, args)
}

/// [`restic`] in the time zone `tz`.
fn restic_in(tz: &str, bin: &Path, repo: &Path, args: &[&str]) -> Run {
    let mut c = hermetic(bin);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("RESTIC_") {
            c.env_remove(k);
        }
    }
    c.env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", "restic-forget")
        .env("TZ", tz)
        .arg("--no-cache")
        .args(args);
    run_cmd(c, None).ok()
}

/// The snapshots of the differential test: local times, a host, a tag. Host `h` backs up in
/// `TZ`, host `h2` in New York, so `h2`'s snapshots carry offsets the reader's zone does not
/// have (their days are New York's: 17:30 and 19:30 on 31 March are one day there, two in
/// Berlin). They cross a leap day, month ends, the ISO year edge (2025-12-28 is in 2025-W52,
/// the next day in 2026-W01) and both daylight-saving changes, and the oldest snapshot of each
/// group is alone in its year. (restic 0.14, the one Debian ships, predates restic 0.18's "keep the oldest
/// snapshot while counts are left" rule; with a lone oldest snapshot both rules agree, so
/// this compares what the versions share, and the table tests pin the newer rule.)
const SNAPSHOTS: &[(&str, &str, Option<&str>)] = &[
    ("2023-06-15 12:00:00", "h", None),
    ("2024-02-28 08:00:00", "h2", None),
    ("2024-02-29 23:30:00", "h", None),
    ("2024-03-01 00:30:00", "h", Some("x")),
    ("2025-03-30 01:30:00", "h", None),
    ("2025-03-30 03:30:00", "h", None),
    // Local times a change skips and repeats: both tools resolve them as Go's time.Date
    // (03:15 CEST; the second 02:30, CET; in New York the first 01:30, EDT), or the instants
    // compared below would differ.
    ("2025-03-30 02:15:00", "h", None),
    ("2025-10-26 02:30:00", "h", None),
    ("2025-11-02 01:30:00", "h2", None),
    ("2025-12-28 18:00:00", "h", None),
    ("2025-12-29 09:00:00", "h2", None),
    ("2025-12-29 10:00:00", "h", None),
    ("2026-01-31 23:59:00", "h", None),
    ("2026-02-01 00:01:00", "h", Some("x")),
    ("2026-02-26 11:30:00", "h", None),
    ("2026-02-26 12:30:00", "h", None),
    ("2026-03-31 22:00:00", "h", None),
    ("2026-04-01 12:00:00", "h", None),
    ("2026-03-31 17:30:00", "h2", None),
    ("2026-03-31 19:30:00", "h2", None),
];

/// The zone a host of [`SNAPSHOTS`] backs up in.
fn zone_of(host: &str) -> &'static str {
    if host == "h2" { "America/New_York" } else { TZ }
}

/// Policies whose every group keeps something (restic 0.14 removes a whole group silently;
/// cista refuses). `--keep-within 1m3d` reaches back from 2026-04-01 12:00 CEST to
/// 2026-02-26 12:00 CET: 11:30 is out and 12:30 in only because the cut-off keeps the local
/// wall clock across the change, as Go's `AddDate` in the local zone does.
const POLICIES: &[&[&str]] = &[
    &[
        "--keep-daily",
        "4",
        "--keep-weekly",
        "3",
        "--keep-monthly",
        "4",
        "--keep-yearly",
        "2",
    ],
    &[
        "--keep-last",
        "2",
        "--keep-hourly",
        "3",
        "--keep-within",
        "2m",
    ],
    &[
        "--keep-last",
        "1",
        "--keep-within-daily",
        "40d",
        "--keep-within-weekly",
        "3m",
        "--keep-within-monthly",
        "1y",
    ],
    &["--keep-tag", "x", "--keep-monthly", "2", "--keep-last", "1"],
    &["--keep-within", "1m3d", "--keep-last", "1"],
    &[
        "--keep-weekly",
        "6",
        "--keep-within-hourly",
        "3d",
        "--keep-within-yearly",
        "5y",
    ],
    &[
        "--group-by",
        "host,tags",
        "--keep-last",
        "1",
        "--keep-monthly",
        "3",
    ],
    &["--group-by", "", "--keep-daily", "3", "--keep-yearly", "3"],
];

/// How many groups a policy of [`POLICIES`] makes.
fn groups_of(policy: &[&str]) -> usize {
    match policy {
        ["--group-by", "", ..] => 1,
        ["--group-by", _, ..] => 3,
        _ => 2,
    }
}

#[test]
fn forget_decides_as_restic_does() {
    let Some(bin) = restic_bin() else { return };
    let repo = Repo::new();
    let data = src(&repo);
    let rrepo = repo.scratch("restic-repo");
    restic(&bin, &rrepo, &["init", "--quiet"]);
    // Backups take shared locks, and restic sleeps after taking one: run four at a time.
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((time, host, tag)) = SNAPSHOTS.get(i / 2) else {
                        break;
                    };
                    let tz = zone_of(host);
                    if i.is_multiple_of(2) {
                        backup_in(tz, &repo, &data, time, host, *tag);
                        continue;
                    }
                    let mut args = vec!["backup", "--quiet", "--time", time, "--host", host];
                    if let Some(t) = tag {
                        args.extend(["--tag", t]);
                    }
                    let d = data.to_str().unwrap();
                    args.push(d);
                    restic_in(tz, &bin, &rrepo, &args);
                }
            });
        }
    });
    let runs: Vec<(Run, Run)> = std::thread::scope(|scope| {
        let handles: Vec<_> = POLICIES
            .iter()
            .map(|policy| {
                let (repo, bin, rrepo) = (&repo, &bin, &rrepo);
                scope.spawn(move || {
                    let mut args = vec!["--dry-run", "--json"];
                    args.extend_from_slice(policy);
                    let ours = forget(repo, &args).ok();
                    // A dry run without the lock (restic takes its exclusive one otherwise).
                    let mut rargs = vec!["forget", "--no-lock", "--dry-run", "--json"];
                    rargs.extend_from_slice(policy);
                    (ours, restic(bin, rrepo, &rargs))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (policy, (ours, theirs)) in POLICIES.iter().zip(runs) {
        let ours = verdicts(&ours.json());
        let theirs = verdicts(&theirs.json());
        assert_eq!(ours.len(), groups_of(policy), "{policy:?}: {ours:?}");
        assert_eq!(ours, theirs, "policy {policy:?}");
        if policy[..2] == ["--keep-within", "1m3d"] {
            // The daylight-saving case decided as described above.
            let h = &ours[&key("h", &data)];
            let at = |s: &str| {
                let t: jiff::Timestamp = s.parse().unwrap();
                h[&t.as_nanosecond()].clone()
            };
            assert_eq!(at("2026-02-26T10:30:00Z"), None);
            assert_eq!(
                at("2026-02-26T11:30:00Z"),
                Some(vec!["within 1m3d".to_owned()])
            );
        }
        if policy[0] == "--keep-daily" {
            // New York's days: 17:30 and 19:30 on 31 March are one day there, so one of
            // h2's five snapshots goes; and its ambiguous 01:30 is the first one (EDT).
            let h2 = &ours[&key("h2", &data)];
            let kept = h2.values().filter(|v| v.is_some()).count();
            assert_eq!(kept, 4, "{h2:?}");
            let fold: jiff::Timestamp = "2025-11-02T05:30:00Z".parse().unwrap();
            assert!(h2.contains_key(&fold.as_nanosecond()), "{h2:?}");
        }
    }
    // Nothing was removed by the dry runs.
    assert_eq!(snapshot_ids(&repo).len(), SNAPSHOTS.len());
}

#[test]
fn forget_removes_what_the_policy_does_not_keep() {
    let repo = Repo::new();
    let data = src(&repo);
    let mut ids = Vec::new();
    for t in [
        "2026-01-01 10:00:00",
        "2026-01-01 11:00:00",
        "2026-01-02 10:00:00",
    ] {
        ids.push(backup_at(&repo, &data, t, "h", None));
    }
    let r = forget(&repo, &["--keep-daily", "5"]).ok();
    let out = r.stdout_str();
    assert!(
        out.contains("Applying Policy: keep 5 daily snapshots"),
        "{out}"
    );
    assert!(out.contains("oldest daily snapshot"), "{out}");
    assert_eq!(
        snapshot_ids(&repo).len(),
        3,
        "keep-daily 5 keeps the oldest too"
    );
    let r = forget(&repo, &["--keep-daily", "1", "--json"]).ok();
    let groups = r.json();
    assert_eq!(groups[0]["host"], "h");
    assert_eq!(groups[0]["reasons"][0]["matches"][0], "daily snapshot");
    assert_eq!(groups[0]["remove"].as_array().unwrap().len(), 2);
    assert_eq!(snapshot_ids(&repo), [ids[2].clone()]);
    repo.run(&["check"]).ok();
}

#[test]
fn forget_named_snapshots() {
    let repo = Repo::new();
    let data = src(&repo);
    let a = backup_at(&repo, &data, "2026-01-01 10:00:00", "h", None);
    let b = backup_at(&repo, &data, "2026-01-02 10:00:00", "h", None);
    forget(&repo, &[&a[..8]]).ok();
    assert_eq!(snapshot_ids(&repo), std::slice::from_ref(&b));
    // Ids and a policy together are refused.
    let r = forget(&repo, &[&b, "--keep-last", "1"]).expect_code(1);
    assert!(r.stderr.contains("not both"), "{}", r.stderr);
    let r = forget(&repo, &["0000"]).expect_code(1);
    assert!(r.stderr.contains("no snapshot matches"), "{}", r.stderr);
    forget(&repo, &["latest", "--dry-run"]).ok();
    assert_eq!(snapshot_ids(&repo), [b]);
}

#[test]
fn forget_refusals_remove_nothing() {
    let repo = Repo::new();
    let data = src(&repo);
    backup_at(&repo, &data, "2026-01-01 10:00:00", "h", Some("daily"));
    backup_at(&repo, &data, "2026-01-02 10:00:00", "h2", None);
    let r = forget(&repo, &[]).expect_code(1);
    assert!(r.stderr.contains("no policy was specified"), "{}", r.stderr);
    let r = forget(&repo, &["--force"]).expect_code(1);
    assert!(r.stderr.contains("needs a --host"), "{}", r.stderr);
    let r = forget(&repo, &["--keep-tag", "Daily", "--keep-last", "1"]).expect_code(1);
    assert!(
        r.stderr
            .contains("--keep-tag \"Daily\" matches no snapshot"),
        "{}",
        r.stderr
    );
    // Host h2's only snapshot lacks the tag: its group would be emptied.
    let r = forget(&repo, &["--keep-tag", "daily"]).expect_code(1);
    assert!(
        r.stderr
            .contains("refusing to delete last snapshot of snapshot group \"host h2"),
        "{}",
        r.stderr
    );
    let r = forget(&repo, &["--keep-daily=-1"]).expect_code(2);
    assert!(r.stderr.contains("unlimited"), "{}", r.stderr);
    let r = forget(&repo, &["--keep-within", "1w"]).expect_code(2);
    assert!(r.stderr.contains("invalid unit"), "{}", r.stderr);
    assert_eq!(snapshot_ids(&repo).len(), 2);
    // --force overrides the refusal for the emptied group.
    forget(&repo, &["--keep-tag", "daily", "--force"]).ok();
    let left = repo.snapshots(&[]);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["hostname"], "h");
    // --force with an empty policy and a filter removes every snapshot it selects.
    forget(&repo, &["--force", "--host", "h"]).ok();
    assert!(snapshot_ids(&repo).is_empty());
    repo.run(&["check"]).ok();
}

#[test]
fn forget_groups_by_tags_and_filters_by_host() {
    let repo = Repo::new();
    let data = src(&repo);
    backup_at(&repo, &data, "2026-01-01 10:00:00", "h", Some("a"));
    backup_at(&repo, &data, "2026-01-02 10:00:00", "h", Some("a"));
    backup_at(&repo, &data, "2026-01-03 10:00:00", "h", None);
    backup_at(&repo, &data, "2026-01-04 10:00:00", "other", None);
    let r = forget(
        &repo,
        &[
            "--keep-last",
            "1",
            "--group-by",
            "tags",
            "--host",
            "h",
            "--dry-run",
            "--json",
        ],
    )
    .ok();
    let groups = r.json();
    let groups = groups.as_array().unwrap();
    assert_eq!(groups.len(), 2);
    // Not grouped by host or paths: restic prints "" and null for them.
    assert_eq!(groups[0]["host"], "");
    assert!(groups[0]["paths"].is_null());
    assert!(
        groups[0]["tags"].is_null(),
        "an untagged group: {}",
        groups[0]
    );
    assert_eq!(groups[1]["tags"], serde_json::json!(["a"]));
    assert_eq!(groups[1]["group_key"]["tags"], serde_json::json!(["a"]));
    assert_eq!(groups[1]["remove"].as_array().unwrap().len(), 1);
    assert!(groups[0]["remove"].is_null());
}

#[test]
fn backup_time_sets_the_snapshot_time_and_offset() {
    let repo = Repo::new();
    let data = src(&repo);
    backup_at(&repo, &data, "2026-07-01 12:00:00", "h", None);
    backup_at(&repo, &data, "2026-07-02 12:00:00-05:30", "h", None);
    let s = repo.snapshots(&[]);
    // Local time in Berlin's summer: +02:00.
    assert_eq!(s[0]["time"], "2026-07-01T12:00:00+02:00");
    assert_eq!(s[1]["time"], "2026-07-02T12:00:00-05:30");
    // The summary keeps the real start.
    assert_ne!(s[0]["summary"]["backup_start"], s[0]["time"]);
    for bad in ["2026-02-30 10:00:00", "yesterday", "2026-01-01T10:00:00Z"] {
        let r = repo
            .run(&["backup", "--time", bad, data.to_str().unwrap()])
            .expect_code(1);
        assert!(r.stderr.contains("invalid time"), "{bad}: {}", r.stderr);
    }
    assert_eq!(repo.snapshots(&[]).len(), 2);
}

#[test]
fn tag_rewrites_snapshots_with_new_ids() {
    let repo = Repo::new();
    let data = src(&repo);
    let a = backup_at(&repo, &data, "2026-01-01 10:00:00", "h", Some("keep"));
    let b = backup_at(&repo, &data, "2026-01-02 10:00:00", "h2", None);
    let r = repo
        .run(&["tag", "--add", "x,y", "--remove", "keep", &a[..8]])
        .ok();
    assert!(
        r.stdout_str().contains("modified 1 snapshot"),
        "{}",
        r.stdout_str()
    );
    let s = repo.snapshots(&[]);
    assert_eq!(s.len(), 2);
    let new = &s[0];
    assert_ne!(new["id"], a.as_str());
    assert_eq!(new["tags"], serde_json::json!(["x", "y"]));
    assert_eq!(new["time"], "2026-01-01T10:00:00+01:00");
    // `original` exists from repository format 3 on (FORMAT §16).
    let cfg = repo.run(&["cat", "config"]).ok().json();
    let v3 = cfg["version"].as_u64().unwrap_or(0) >= 3;
    assert_eq!(new.get("original").is_some(), v3, "{new}");
    if v3 {
        assert_eq!(new["original"], a.as_str());
    }
    // Nothing to change: no rewrite.
    let r = repo
        .run(&[
            "tag",
            "--add",
            "x",
            "--json",
            &new["id"].as_str().unwrap()[..8],
        ])
        .ok();
    assert_eq!(
        r.json_lines(),
        [serde_json::json!({"message_type": "summary", "changed_snapshots": 0})]
    );
    // No ids: every snapshot the filter passes; --set replaces.
    let r = repo
        .run(&["tag", "--set", "t", "--host", "h2", "--json"])
        .ok();
    let lines = r.json_lines();
    assert_eq!(lines[0]["message_type"], "changed");
    assert_eq!(lines[0]["old_snapshot_id"], b.as_str());
    assert_eq!(lines[1]["changed_snapshots"], 1);
    let h2 = repo.snapshots(&["--host", "h2"]);
    assert_eq!(h2[0]["tags"], serde_json::json!(["t"]));
    repo.run(&["tag", "--set", "", "--host", "h2"]).ok();
    assert!(repo.snapshots(&["--host", "h2"])[0].get("tags").is_none());
    let r = repo.run(&["tag", "latest"]).expect_code(1);
    assert!(r.stderr.contains("nothing to do"), "{}", r.stderr);
    let r = repo
        .run(&["tag", "--set", "a", "--add", "b", "latest"])
        .expect_code(1);
    assert!(
        r.stderr.contains("cannot be given at the same time"),
        "{}",
        r.stderr
    );
    repo.run(&["check"]).ok();
}

/// forget and tag take the maintenance lock: they go on beside a running backup's shared
/// lock, and exit 11 with nothing changed beside another maintenance holder (a prune); a dry
/// run only reads and runs beside both.
#[test]
fn forget_and_tag_run_beside_a_backup_and_exit_11_beside_a_prune() {
    use cista::format::lock::LockMode;
    let repo = Repo::new();
    let data = src(&repo);
    backup_at(&repo, &data, "2026-01-01 10:00:00", "h", None);
    backup_at(&repo, &data, "2026-01-02 10:00:00", "h", None);
    backup_at(&repo, &data, "2026-01-03 10:00:00", "h", None);
    let lib = repo.open();
    let host = cista::host::Host::this_process();
    let backup = lib.lock(LockMode::Shared, &host).unwrap();
    forget(&repo, &["--keep-last", "2"]).ok();
    assert_eq!(snapshot_ids(&repo).len(), 2);
    repo.run(&["tag", "--add", "x", "latest"]).ok();
    drop(backup);
    let lib = repo.open();
    let prune = lib.lock(LockMode::Maintenance, &host).unwrap();
    let r = forget(&repo, &["--keep-last", "1"]).expect_code(11);
    assert!(r.stderr.contains("locked"), "{}", r.stderr);
    forget(&repo, &["--keep-last", "1", "--dry-run"]).ok();
    let r = repo.run(&["tag", "--add", "y", "latest"]).expect_code(11);
    assert!(r.stderr.contains("locked"), "{}", r.stderr);
    drop(prune);
    assert_eq!(snapshot_ids(&repo).len(), 2);
    forget(&repo, &["--keep-last", "1"]).ok();
    assert_eq!(snapshot_ids(&repo).len(), 1);
}
