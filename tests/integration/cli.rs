//! CLI behaviour that is not one command's job: passphrase sources, writing to a closed
//! standard output, `--help`, `version`, and the small commands and flags of issue 7.

use std::process::Stdio;

use super::harness::{CHEAP_KDF, Repo, Run, cista, run_cmd};

/// Sets one passphrase source on a command.
type SetSource<'a> = Box<dyn Fn(&mut std::process::Command) + 'a>;

/// `init` with an empty passphrase from each non-interactive source is refused with one line
/// naming the source, and nothing is created.
#[test]
fn empty_passphrase_is_refused_by_init_from_every_source() {
    let dir = tempfile::tempdir().unwrap();
    let empty_file = dir.path().join("empty");
    std::fs::write(&empty_file, b"").unwrap();
    let newline_file = dir.path().join("newline");
    std::fs::write(&newline_file, b"\nsecond line is not the password\n").unwrap();
    let cases: Vec<(&str, SetSource)> = vec![
        (
            "CISTA_PASSWORD",
            Box::new(|c| {
                c.env("CISTA_PASSWORD", "");
            }),
        ),
        (
            "password file",
            Box::new(|c| {
                c.env("CISTA_PASSWORD_FILE", &empty_file);
            }),
        ),
        (
            "password file",
            Box::new(|c| {
                c.arg("--password-file").arg(&newline_file);
            }),
        ),
        (
            "password command",
            Box::new(|c| {
                c.args(["--password-command", "printf '\\n'"]);
            }),
        ),
    ];
    for (i, (source, set)) in cases.iter().enumerate() {
        let repo = dir.path().join(format!("repo{i}"));
        let mut c = cista();
        c.args(["init", "--kdf-params", CHEAP_KDF])
            .arg("-r")
            .arg(&repo);
        set(&mut c);
        let r = run_cmd(c, None).expect_code(1);
        let line = r.stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "not one line: {line}");
        assert!(
            line.contains("empty") && line.contains(source),
            "case {i}: {line}"
        );
        assert!(
            !repo.join("config").exists(),
            "case {i} created a repository"
        );
        assert!(
            !repo.join("keys").exists()
                || std::fs::read_dir(repo.join("keys")).unwrap().count() == 0,
            "case {i} wrote a key"
        );
    }
}

/// Opening a repository with an empty passphrase is a wrong passphrase (exit 12), said
/// plainly, and never reaches the key derivation.
#[test]
fn empty_passphrase_cannot_open_a_repository() {
    let repo = Repo::new();
    let mut c = repo.cmd(&["snapshots"]);
    c.env("CISTA_PASSWORD", "");
    let r = run_cmd(c, None).expect_code(12);
    assert!(r.stderr.contains("CISTA_PASSWORD is empty"), "{}", r.stderr);
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
    let empty = repo.scratch("empty");
    std::fs::write(&empty, b"").unwrap();
    let mut c = repo.cmd(&["ls", "latest"]);
    c.env_remove("CISTA_PASSWORD")
        .env("CISTA_PASSWORD_FILE", &empty);
    let r = run_cmd(c, None).expect_code(12);
    assert!(r.stderr.contains("is empty"), "{}", r.stderr);
    // `key add` refuses an empty new passphrase from CISTA_NEW_PASSWORD_FILE with one line.
    let mut c = repo.cmd(&["key", "add"]);
    c.env("CISTA_NEW_PASSWORD_FILE", &empty);
    let r = run_cmd(c, None).expect_code(1);
    assert!(r.stderr.contains("new password file"), "{}", r.stderr);
    repo.run(&["check"]).ok();
}

/// Runs `args` with standard output a pipe whose read end is already closed, so the first write
/// fails with EPIPE; returns the outcome (asserting no panic).
pub fn run_into_closed_pipe(repo: &Repo, args: &[&std::ffi::OsStr]) -> Run {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut c = repo.cmd(args);
    c.stdout(Stdio::from(writer)).stderr(Stdio::piped());
    let out = c.output().unwrap();
    Run::from_output(out)
}

/// Regression (issue 7): `cista ls --json latest | head -1` panicked with "Broken pipe" and
/// exit 101. Every printing command now stops quietly with exit 141 and nothing on stderr.
#[test]
fn closed_stdout_ends_every_printing_command_quietly_with_141() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/file"), vec![7u8; 300_000]).unwrap();
    for i in 0..50 {
        std::fs::write(src.join(format!("f{i}")), b"x").unwrap();
    }
    repo.backup(&[&src]);
    let file = src.join("d/file");
    let cases: Vec<Vec<&std::ffi::OsStr>> = vec![
        vec!["ls".as_ref(), "latest".as_ref()],
        vec!["ls".as_ref(), "--json".as_ref(), "latest".as_ref()],
        vec!["ls".as_ref(), "-l".as_ref(), "latest".as_ref()],
        vec!["snapshots".as_ref()],
        vec!["snapshots".as_ref(), "--json".as_ref()],
        vec!["dump".as_ref(), "latest".as_ref(), file.as_os_str()],
        vec!["key".as_ref(), "list".as_ref()],
        vec!["key".as_ref(), "list".as_ref(), "--json".as_ref()],
        vec!["check".as_ref()],
        vec!["check".as_ref(), "--json".as_ref()],
        vec!["backup".as_ref(), "--json".as_ref(), src.as_os_str()],
        vec!["backup".as_ref(), src.as_os_str()],
    ];
    for args in cases {
        let r = run_into_closed_pipe(&repo, &args);
        assert_eq!(r.code, Some(141), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr, "", "{args:?} wrote to stderr");
    }
    // The repository is untouched by any of it.
    repo.run(&["check"]).ok();
}

#[test]
fn version_prints_name_version_and_platform_without_a_repository() {
    let r = run_cmd(
        {
            let mut c = cista();
            c.arg("version");
            c
        },
        None,
    )
    .ok();
    let text = r.stdout_str();
    let want = format!("cista {} on ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&want) && text.contains('/'), "{text}");
    assert_eq!(text.lines().count(), 1);
    let mut c = cista();
    c.args(["version", "--json"]);
    let v = run_cmd(c, None).ok().json();
    assert_eq!(v["message_type"], "version");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["os"], std::env::consts::OS);
    assert_eq!(v["arch"], std::env::consts::ARCH);
    // And into a closed pipe: quiet, 141.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut c = cista();
    c.arg("version")
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped());
    let r = Run::from_output(c.output().unwrap());
    assert_eq!((r.code, r.stderr.as_str()), (Some(141), ""));
}

/// `snapshots ID...`, `--latest N` (per host and paths), `--group-by`, `--compact`.
#[test]
fn snapshots_selects_by_id_latest_and_group() {
    let repo = Repo::new();
    let (a, b) = (repo.scratch("a"), repo.scratch("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("f"), b"x").unwrap();
    }
    let backup = |host: &str, p: &std::path::Path| -> String {
        let r = repo
            .run(&[
                "backup".as_ref(),
                "--json".as_ref(),
                "--host".as_ref(),
                host.as_ref(),
                p.as_os_str(),
            ])
            .ok();
        super::harness::summary_of(&r)["snapshot_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let a1 = backup("h1", &a);
    let a2 = backup("h1", &a);
    let a3 = backup("h1", &a);
    let b1 = backup("h1", &b);
    let c1 = backup("h2", &a);
    let ids = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["snapshots", "--json"];
        full.extend_from_slice(args);
        repo.run(&full)
            .ok()
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&[]),
        vec![a1.clone(), a2.clone(), a3.clone(), b1.clone(), c1.clone()]
    );
    // Ids as arguments (prefixes, any order, `latest` among them), printed oldest first.
    assert_eq!(ids(&[&b1[..8], &a1[..10]]), vec![a1.clone(), b1.clone()]);
    assert_eq!(ids(&["latest", &a2[..8]]), vec![a2.clone(), c1.clone()]);
    assert_eq!(ids(&["latest", "--host", "h1"]), vec![b1.clone()]);
    // --latest N per host and paths.
    assert_eq!(
        ids(&["--latest", "1"]),
        vec![a3.clone(), b1.clone(), c1.clone()]
    );
    assert_eq!(
        ids(&["--latest", "2"]),
        vec![a2.clone(), a3.clone(), b1.clone(), c1.clone()]
    );
    assert_eq!(
        ids(&["--latest", "1", "--host", "h1"]),
        vec![a3.clone(), b1.clone()]
    );
    repo.run(&["snapshots", "--latest", "0"]).expect_code(1);
    // --group-by host: restic's group objects.
    let g = repo
        .run(&["snapshots", "--json", "--group-by", "host"])
        .ok()
        .json();
    let g = g.as_array().unwrap();
    assert_eq!(g.len(), 2);
    assert_eq!(g[0]["group_key"]["hostname"], "h1");
    assert!(g[0]["group_key"]["paths"].is_null());
    assert_eq!(g[0]["snapshots"].as_array().unwrap().len(), 4);
    assert_eq!(g[1]["snapshots"][0]["id"], c1.as_str());
    let text = repo
        .run(&["snapshots", "--group-by", "host,paths"])
        .ok()
        .stdout_str();
    assert_eq!(text.matches("snapshots for (host [").count(), 3, "{text}");
    // --compact: no paths or size column.
    let text = repo.run(&["snapshots", "--compact"]).ok().stdout_str();
    assert!(!text.contains(&*a.to_string_lossy()), "{text}");
    assert!(
        text.contains(&a1[..8]) && text.ends_with("5 snapshots\n"),
        "{text}"
    );
    let text = repo.run(&["snapshots", &c1[..8]]).ok().stdout_str();
    assert!(text.ends_with("1 snapshot\n"), "{text}");
    // An unknown id is an error naming it.
    let r = repo.run(&["snapshots", "deadbeef"]).expect_code(1);
    assert!(r.stderr.contains("deadbeef"), "{}", r.stderr);
}

/// `cat` prints every object kind decoded; key material never appears.
#[test]
fn cat_prints_objects_and_never_secrets() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("small"), b"small file\n").unwrap();
    let s = repo.backup(&[&src]);
    let snap_id = s["snapshot_id"].as_str().unwrap().to_owned();
    let first_file = |dir: &str| -> String {
        repo.files_in(dir)[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let cat = |args: &[&str]| -> serde_json::Value {
        let mut full = vec!["cat"];
        full.extend_from_slice(args);
        repo.run(&full).ok().json()
    };
    let config = cat(&["config"]);
    assert_eq!(config["id"].as_str().unwrap().len(), 64);
    assert!(config["chunker"]["avg"].is_u64());
    assert_eq!(config["version"], 3, "{config}");
    assert_eq!(
        config["features"],
        serde_json::json!(["tree-parts"]),
        "{config}"
    );
    let snap = cat(&["snapshot", &snap_id[..8]]);
    assert_eq!(snap["id"], snap_id.as_str());
    let tree_id = snap["tree"].as_str().unwrap().to_owned();
    let index = cat(&["index", &first_file("index")]);
    assert!(index["packs"][0]["blobs"][0]["uncompressed_length"].is_u64());
    let pack_id = first_file("data");
    let pack = cat(&["pack", &pack_id[..12]]);
    assert_eq!(pack["id"], pack_id.as_str());
    assert!(!pack["blobs"].as_array().unwrap().is_empty());
    // Walk down the trees to the file and print its one blob.
    let mut tree = cat(&["tree", &tree_id[..10]]);
    let file_blob = loop {
        let n = &tree["nodes"][0];
        if n["type"] == "file" {
            break n["content"][0].as_str().unwrap().to_owned();
        }
        let sub = n["subtree"].as_str().unwrap().to_owned();
        tree = cat(&["tree", &sub]);
    };
    let r = repo.run(&["cat", "blob", &file_blob]).ok();
    assert_eq!(r.stdout, b"small file\n");
    // A tree id is not a data blob, and the other way round.
    repo.run(&["cat", "blob", &tree_id]).expect_code(1);
    repo.run(&["cat", "tree", &file_blob]).expect_code(1);
    // The key: who and when and how costly, never the salt or the wrapped master key.
    let key_id = first_file("keys");
    let r = repo.run(&["cat", "key", &key_id[..8]]).ok();
    let key = r.json();
    assert_eq!(key["id"], key_id.as_str());
    assert_eq!(key["current"], true);
    assert_eq!(key["kdf"]["memory_kib"], 1024);
    let text = r.stdout_str();
    for secret in ["salt", "wrapped", "master", "data"] {
        assert!(!text.contains(secret), "cat key printed {secret}: {text}");
    }
    let kf = cista::format::key::KeyFile::decode(
        &std::fs::read(repo.path.join("keys").join(&key_id)).unwrap(),
    )
    .unwrap();
    assert!(!text.contains(&hex::encode(&kf.wrapped)[..16]));
    assert!(!text.contains(&hex::encode(kf.salt)[..16]));
    // Bad ids: one line naming the problem.
    let r = repo.run(&["cat", "snapshot", "xyz"]).expect_code(1);
    assert!(r.stderr.contains("not an id"), "{}", r.stderr);
    let r = repo.run(&["cat", "snapshot", "0000000000"]).expect_code(1);
    assert!(
        r.stderr.contains("no file in snapshots/ matches"),
        "{}",
        r.stderr
    );
    repo.run(&["cat", "config", "abc"]).expect_code(1);
    repo.run(&["cat", "snapshot"]).expect_code(1);
    repo.run(&["cat", "masterkey"]).expect_code(2);
    // Into a closed pipe: quiet, 141.
    let r = run_into_closed_pipe(&repo, &["cat".as_ref(), "config".as_ref()]);
    assert_eq!((r.code, r.stderr.as_str()), (Some(141), ""));
    repo.run(&["check"]).ok();
}

/// Every command's `--help` has examples, an EXIT STATUS section and the environment, and its
/// usage line does not make the env-backed options look required.
#[test]
fn every_help_has_examples_exit_status_and_environment() {
    let commands: &[&[&str]] = &[
        &[],
        &["init"],
        &["backup"],
        &["snapshots"],
        &["ls"],
        &["dump"],
        &["restore"],
        &["check"],
        &["key"],
        &["key", "list"],
        &["key", "add"],
        &["key", "remove"],
        &["key", "passwd"],
        &["unlock"],
        &["version"],
        &["cat"],
    ];
    for path in commands {
        let mut c = cista();
        c.args(*path).arg("--help");
        let r = run_cmd(c, None).ok();
        let text = r.stdout_str();
        let name = path.join(" ");
        if !path.is_empty() {
            assert!(text.contains("EXAMPLES:"), "cista {name} --help: {text}");
            assert!(
                text.contains(&format!("cista {name}"))
                    || text.contains(&format!("cista -r /srv/backup {name}")),
                "no example runs {name}"
            );
        }
        assert!(text.contains("EXIT STATUS:"), "cista {name} --help");
        assert!(text.contains("  141 "), "cista {name} --help");
        for var in [
            "CISTA_REPOSITORY",
            "CISTA_PASSWORD_FILE",
            "CISTA_PASSWORD_COMMAND",
            "CISTA_PASSWORD ",
        ] {
            assert!(text.contains(var), "cista {name} --help lacks {var}");
        }
        let usage = text
            .lines()
            .find(|l| l.starts_with("Usage:"))
            .unwrap_or_else(|| panic!("no usage line: {text}"));
        for opt in ["--repo", "--password", "-r "] {
            assert!(
                !usage.contains(opt),
                "usage shows {opt} as required: {usage}"
            );
        }
    }
}

/// A closed standard error (`2>&-`, or `2>&1 | head` after head exits) must not turn a warning
/// into a panic (exit 101): the warning is lost, the command's outcome is not.
#[test]
fn closed_stderr_does_not_turn_warnings_into_a_panic() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    // A socket is skipped with a warning on stderr.
    let _sock = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut c = repo.cmd(&["backup".as_ref(), src.as_os_str()]);
    c.stderr(Stdio::from(writer)).stdout(Stdio::piped());
    let out = c.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("saved"));
    // And an error with nowhere to be told still exits with its code.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut c = repo.cmd(&["ls", "deadbeef"]);
    c.stderr(Stdio::from(writer)).stdout(Stdio::null());
    assert_eq!(c.output().unwrap().status.code(), Some(1));
}

#[test]
fn completions_and_man_pages_come_from_the_flags() {
    let bash = run_cmd(
        {
            let mut c = cista();
            c.args(["completion", "bash"]);
            c
        },
        None,
    )
    .ok()
    .stdout_str();
    // A script bash accepts, knowing nested commands and their flags.
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), &bash).unwrap();
    let ok = std::process::Command::new("bash")
        .arg("-n")
        .arg(script.path())
        .status()
        .unwrap()
        .success();
    assert!(ok, "bash -n refused the completion script");
    assert!(bash.contains("--split-min-size") && bash.contains("--keep-daily"));
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let mut c = cista();
        c.args(["completion", shell]);
        let out = run_cmd(c, None).ok().stdout_str();
        assert!(out.contains("cista"), "{shell}");
    }
    let mut c = cista();
    c.args(["completion", "tcsh"]);
    assert_eq!(run_cmd(c, None).code, Some(2));
    // cista(1) with the help text's EXIT STATUS; one page per command in a folder.
    let mut c = cista();
    c.arg("man");
    let page = run_cmd(c, None).ok().stdout_str();
    assert!(
        page.contains(".TH cista 1") && page.contains("EXIT STATUS"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut c = cista();
    c.args(["man", "--dir"]).arg(dir.path().join("man1"));
    run_cmd(c, None).ok();
    for page in [
        "cista.1",
        "cista-backup.1",
        "cista-pg-restore.1",
        "cista-config-show.1",
    ] {
        assert!(dir.path().join("man1").join(page).is_file(), "{page}");
    }
}
