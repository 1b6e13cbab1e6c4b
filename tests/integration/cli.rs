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
