//! Configuration profiles (docs/CONFIG.md): a TOML file whose keys are the long flags, read
//! by the real binary; errors name the file and line and exit 2.

use crate::harness::{cista, run_cmd};

/// A folder with a config file `text` (`@DIR@` replaced by the folder) and a passphrase file.
fn setup(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pass"), "geheim\n").unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/keep.txt"), "kept").unwrap();
    std::fs::write(dir.path().join("src/skip.tmp"), "skipped").unwrap();
    let file = dir.path().join("cista.toml");
    std::fs::write(&file, text.replace("@DIR@", dir.path().to_str().unwrap())).unwrap();
    (dir, file)
}

/// `cista ARGS` with CISTA_CONFIG set to `file` (and `env`).
fn with_config(file: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> crate::harness::Run {
    let mut c = cista();
    c.env("CISTA_CONFIG", file).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    run_cmd(c, None)
}

const PROFILES: &str = r#"
# The nightly job's profile.
[default]
repo = "${CISTA_TEST_REPO_DIR}/repo"
password-file = "@DIR@/pass"

[default.init]
kdf-params = "8192,1,1"

[default.backup]
tag = ["nightly", "vault"]
exclude = ["*.tmp"]
host = "web1"

[default.forget]
keep-last = 1

[offsite]
repo = "@DIR@/offsite"
password-file = "@DIR@/pass"
option = ["connections=4"]

[offsite.init]
kdf-params = "8192,1,1"

[bucket]
repo = "s3://backup:hunter2@127.0.0.1:9/bucket/cista"
option = ["s3.secret_access_key=hunter3", "s3.region=eu-1"]
"#;

#[test]
fn a_profile_gives_flags_by_their_names_and_the_command_line_wins() {
    let (dir, file) = setup(PROFILES);
    let d = dir.path().to_str().unwrap();
    let env = [("CISTA_TEST_REPO_DIR", d)];
    with_config(&file, &env, &["init", "-q"]).ok();
    assert!(dir.path().join("repo/config").is_file());
    let src = dir.path().join("src");
    let src = src.to_str().unwrap();
    with_config(&file, &env, &["backup", "-q", src]).ok();
    let snaps: serde_json::Value = serde_json::from_str(
        &with_config(&file, &env, &["snapshots", "--json"])
            .ok()
            .stdout_str(),
    )
    .unwrap();
    assert_eq!(snaps[0]["hostname"], "web1");
    assert_eq!(snaps[0]["tags"], serde_json::json!(["nightly", "vault"]));
    let ls = with_config(&file, &env, &["ls", "latest"])
        .ok()
        .stdout_str();
    assert!(ls.contains("keep.txt") && !ls.contains("skip.tmp"), "{ls}");
    // A flag on the command line replaces the profile's (a list as a whole).
    with_config(
        &file,
        &env,
        &["backup", "-q", "--tag", "cli", "--host", "web2", src],
    )
    .ok();
    let snaps: serde_json::Value = serde_json::from_str(
        &with_config(&file, &env, &["snapshots", "--json", "--host", "web2"])
            .ok()
            .stdout_str(),
    )
    .unwrap();
    assert_eq!(snaps[0]["tags"], serde_json::json!(["cli"]));
    // The profile's retention: keep-last 1 of the host's group.
    with_config(&file, &env, &["forget", "-q", "--host", "web1"]).ok();
    // Another profile, another repository; -P or CISTA_PROFILE chooses it.
    with_config(&file, &env, &["-P", "offsite", "init", "-q"]).ok();
    assert!(dir.path().join("offsite/config").is_file());
    let r = with_config(
        &file,
        &[("CISTA_PROFILE", "offsite")],
        &["snapshots", "--json"],
    )
    .ok();
    assert_eq!(r.stdout_str().trim(), "[]");
    // config show: the effective profile, secrets masked; config check: every profile.
    let show = with_config(&file, &env, &["-P", "bucket", "config", "show"])
        .ok()
        .stdout_str();
    assert!(show.contains("s3.secret_access_key=***"), "{show}");
    assert!(
        show.contains("s3://backup:***@127.0.0.1:9/bucket/cista"),
        "{show}"
    );
    assert!(!show.contains("hunter"), "{show}");
    assert!(show.contains("s3.region=eu-1"), "{show}");
    let show = with_config(&file, &env, &["config", "show"])
        .ok()
        .stdout_str();
    assert!(show.contains(&format!("repo = \"{d}/repo\"")), "{show}");
    assert!(show.contains("[default.backup]"), "{show}");
    let check = with_config(&file, &env, &["config", "check"])
        .ok()
        .stdout_str();
    assert!(
        check.contains("3 profiles valid (default, offsite, bucket)"),
        "{check}"
    );
}

#[test]
fn config_mistakes_are_usage_errors_naming_the_file_and_line() {
    let cases: &[(&str, &str)] = &[
        (
            "[default]\nrepo = \"/x\"\n\n[default.backup]\ntags = [\"a\"]\n",
            "line 5: unknown key `tags` in profile default.backup",
        ),
        (
            "[default]\nrepo = \"/x\"\n[default.forget]\nkeep-daily = \"many\"\n",
            "line 4: `keep-daily`: invalid value 'many'",
        ),
        (
            "[default]\nrepo = \"${CISTA_TEST_NEVER_SET}\"\n",
            "line 2: ${CISTA_TEST_NEVER_SET} is not set",
        ),
        (
            "[default]\n[default.bakup]\ntag = \"a\"\n",
            "line 2: profile default has no command `bakup`",
        ),
        (
            "[default]\nquiet = \"yes\"\n",
            "line 2: `quiet`: is a switch",
        ),
        ("[default]\nrepo = \"/x\"\nrepo = \"/y\"\n", "line 3:"),
        ("[default\n", "line 1:"),
        ("repo = \"/x\"\n", "line 1: `repo` is not a profile"),
        (
            "[default]\nconfig = \"/other.toml\"\n",
            "line 2: unknown key `config`",
        ),
    ];
    for (text, want) in cases {
        let (_dir, file) = setup(text);
        let r = with_config(&file, &[], &["snapshots"]);
        assert_eq!(r.code, Some(2), "{text}: {}", r.stderr);
        assert!(
            r.stderr.contains(want),
            "{text}: want {want:?}, got {}",
            r.stderr
        );
        assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
        let r = with_config(&file, &[], &["config", "check"]);
        assert_eq!(r.code, Some(2), "{text}: {}", r.stderr);
        assert!(r.stderr.contains(want), "check: {}", r.stderr);
    }
    // A profile asked for that the file lacks, and one asked for with no file at all.
    let (_dir, file) = setup("[default]\nrepo = \"/x\"\n");
    let r = with_config(&file, &[], &["-P", "nope", "snapshots"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("has no profile \"nope\" (it has: default)"),
        "{}",
        r.stderr
    );
    let r = run_cmd(
        {
            let mut c = cista();
            c.args(["-P", "nightly", "snapshots"]);
            c
        },
        None,
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("there is no config file"), "{}", r.stderr);
}

#[test]
fn a_profile_fills_in_the_flags_of_nested_commands_and_of_commands_with_a_command_line() {
    let (dir, file) = setup(
        "[default]\nrepo = \"@DIR@/repo\"\npassword-file = \"@DIR@/pass\"\n\
         [default.init]\nkdf-params = \"8192,1,1\"\n\
         [default.backup]\nstdin-filename = \"from-config.txt\"\ntag = [\"cmd\"]\n",
    );
    with_config(&file, &[], &["init", "-q"]).ok();
    // The profile's flags go before the command's `--`, not into the command it runs.
    with_config(
        &file,
        &[],
        &[
            "backup",
            "-q",
            "--stdin-from-command",
            "--",
            "echo",
            "--tag",
            "x",
        ],
    )
    .ok();
    let out = with_config(&file, &[], &["dump", "latest", "/from-config.txt"])
        .ok()
        .stdout_str();
    assert_eq!(out, "--tag x\n");
    let snaps: serde_json::Value = serde_json::from_str(
        &with_config(&file, &[], &["snapshots", "--json"])
            .ok()
            .stdout_str(),
    )
    .unwrap();
    assert_eq!(snaps[0]["tags"], serde_json::json!(["cmd"]));
    drop(dir);
}

#[test]
fn the_example_in_docs_config_md_is_a_valid_config() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CONFIG.md")).unwrap();
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let (_dir, file) = setup(&doc[start..end]);
    let r = with_config(&file, &[], &["config", "check"]).ok();
    assert!(
        r.stdout_str()
            .contains("2 profiles valid (default, offsite)"),
        "{}",
        r.stdout_str()
    );
    let show = with_config(&file, &[], &["config", "show"])
        .ok()
        .stdout_str();
    assert!(
        show.contains("[default.pg.backup]") && show.contains("jobs = 2"),
        "{show}"
    );
}
