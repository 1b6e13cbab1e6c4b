//! PostgreSQL through the generic command path (`backup --stdin-from-command -- pg_dump ...`,
//! docs/CLI.md), against a real server (servers.rs): what an operator's cron line does today,
//! and the baseline the `pg` commands must beat.

use std::path::Path;
use std::process::Command;

use crate::harness::{Repo, run_cmd};
use crate::servers::{self, PgServer};

/// The database's plain-SQL dump, the form two databases are compared in. `\restrict` lines
/// carry a random key per run (PostgreSQL 13.22, 14.19, 15.14, 16.10, 17.6 and later).
fn plain_dump(pg: &PgServer, db: &str) -> String {
    let out = pg
        .tool("pg_dump")
        .args(["-Fp", "--no-owner", "-d", db])
        .output()
        .expect("pg_dump");
    assert!(out.status.success(), "pg_dump: {out:?}");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A `cista backup` of `pg_dump ARGS` as a command's output named `name`.
fn backup_of_pg_dump(repo: &Repo, pg: &PgServer, name: &str, args: &[&str]) -> Command {
    let pg_dump = pg.bin.join("pg_dump");
    let mut argv: Vec<String> = [
        "backup",
        "--stdin-from-command",
        "--stdin-filename",
        name,
        "--",
    ]
    .map(String::from)
    .to_vec();
    argv.push(pg_dump.display().to_string());
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let mut cmd = repo.cmd(&argv);
    cmd.envs(pg.env());
    cmd
}

#[test]
fn a_pg_dump_backed_up_from_a_command_restores_to_the_same_database() {
    let Some(pg) = servers::postgres() else {
        return;
    };
    let db = pg.create_database("source");
    pg.psql(
        &db,
        "CREATE TABLE kunden (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO kunden SELECT g, 'Zoë ' || g FROM generate_series(1, 5000) g;
         CREATE SCHEMA \"Büro\";
         CREATE TABLE \"Büro\".\"Akten\" (n int, body bytea);
         INSERT INTO \"Büro\".\"Akten\"
           SELECT g, decode(md5(g::text), 'hex') FROM generate_series(1, 2000) g;
         SELECT lo_from_bytea(0, 'a large object');",
    );
    let repo = Repo::new();
    run_cmd(
        backup_of_pg_dump(&repo, pg, "app.dump", &["-Fc", "-Z0", "-d", &db]),
        None,
    )
    .ok();
    let dump = repo.run(&["dump", "latest", "/app.dump"]).ok().stdout;
    let file = repo.scratch("app.dump");
    std::fs::write(&file, &dump).unwrap();

    // Into a fresh database under another name, as a restore drill would.
    let copy = pg.create_database("restored");
    let out = pg
        .tool("pg_restore")
        .args(["--no-owner", "-d", &copy])
        .arg(Path::new(&file))
        .output()
        .expect("pg_restore");
    assert!(out.status.success(), "pg_restore: {out:?}");
    assert_eq!(
        pg.psql(&copy, "SELECT count(*), max(name) FROM kunden"),
        "5000|Zoë 999\n"
    );
    assert_eq!(plain_dump(pg, &db), plain_dump(pg, &copy));
}

#[test]
fn a_failing_pg_dump_writes_no_snapshot_and_its_error_is_shown() {
    let Some(pg) = servers::postgres() else {
        return;
    };
    let repo = Repo::new();
    let r = run_cmd(
        backup_of_pg_dump(&repo, pg, "app.dump", &["-Fc", "-d", "no_such_database"]),
        None,
    );
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("no snapshot was written"), "{}", r.stderr);
    assert!(
        r.stderr.contains("no_such_database"),
        "pg_dump's own message is passed on: {}",
        r.stderr
    );
    assert!(repo.snapshots(&[]).is_empty(), "a snapshot was written");
    repo.run(&["check"]).ok();
}
