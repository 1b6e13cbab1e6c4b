//! PostgreSQL through the generic command path (`backup --stdin-from-command -- pg_dump ...`,
//! docs/CLI.md), against a real server (servers.rs): what an operator's cron line does today,
//! and the baseline the `pg` commands must beat.

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

/// Held exclusively by a test that dumps every database of the shared server (`--all`), and
/// shared by the tests that drop a database: one dropped between `--all`'s listing and its
/// dump fails that dump, as it should, but must not fail the test.
static CLUSTER: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// A test that drops databases of the shared server.
fn dropping_databases() -> std::sync::RwLockReadGuard<'static, ()> {
    CLUSTER.read().unwrap_or_else(|e| e.into_inner())
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
    // Into a fresh database under another name, as a restore drill would.
    let copy = restore_into_new(&repo, pg, "/app.dump");
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

/// `cista pg backup ARGS`, pointed at the server and its tools.
fn pg_backup(repo: &Repo, pg: &PgServer, args: &[&str]) -> Command {
    pg_cmd(repo, pg, "backup", args)
}

/// `cista pg restore ARGS`, pointed at the server and its tools.
fn pg_restore_cmd(repo: &Repo, pg: &PgServer, args: &[&str]) -> Command {
    pg_cmd(repo, pg, "restore", args)
}

/// `cista pg SUB ARGS` with the server's environment and (unless ARGS name one) its tools.
fn pg_cmd(repo: &Repo, pg: &PgServer, sub: &str, args: &[&str]) -> Command {
    let mut argv = vec!["pg".to_owned(), sub.to_owned()];
    if !args.contains(&"--pg-bin") {
        argv.push("--pg-bin".into());
        argv.push(pg.bin.display().to_string());
    }
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let mut cmd = repo.cmd(&argv);
    cmd.envs(pg.env());
    cmd
}

/// The latest snapshot's `postgres/manifest.json`.
fn manifest_of(repo: &Repo) -> serde_json::Value {
    let bytes = repo
        .run(&["dump", "latest", "/postgres/manifest.json"])
        .ok()
        .stdout;
    serde_json::from_slice(&bytes).unwrap()
}

/// Restores the snapshot's `file` into a new database and returns its name.
fn restore_into_new(repo: &Repo, pg: &PgServer, file: &str) -> String {
    let dump = repo.run(&["dump", "latest", file]).ok().stdout;
    let path = repo.scratch("restore.dump");
    std::fs::write(&path, &dump).unwrap();
    let copy = pg.create_database("restored");
    let out = pg
        .tool("pg_restore")
        .args(["--no-owner", "-d", &copy])
        .arg(&path)
        .output()
        .expect("pg_restore");
    assert!(out.status.success(), "pg_restore: {out:?}");
    copy
}

#[test]
fn pg_backup_puts_databases_globals_and_a_manifest_in_one_snapshot() {
    let Some(pg) = servers::postgres() else {
        return;
    };
    let app = pg.create_database("app");
    pg.psql(
        &app,
        "CREATE TABLE akten (id int PRIMARY KEY, titel text);
         INSERT INTO akten SELECT g, 'Akte Nr. ' || g || ' – Müller' FROM generate_series(1, 3000) g;
         SELECT lo_from_bytea(0, 'ein großes Objekt');",
    );
    let audit = pg.create_database("audit");
    pg.psql(
        &audit,
        "CREATE TABLE log (at timestamptz DEFAULT now(), what text);
                     INSERT INTO log (what) SELECT 'event ' || g FROM generate_series(1, 500) g;",
    );
    let repo = Repo::new();
    let r = run_cmd(
        pg_backup(
            &repo,
            pg,
            &["--dbname", &app, "--dbname", &audit, "--tag", "nightly"],
        ),
        None,
    )
    .ok();
    assert!(r.stdout_str().contains("saved"), "{}", r.stdout_str());
    let snaps = repo.snapshots(&["--tag", "postgres"]);
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let tags = snaps[0]["tags"].to_string();
    assert!(
        tags.contains("nightly") && tags.contains("postgres"),
        "{tags}"
    );

    // Each database comes back whole, under another name.
    for db in [&app, &audit] {
        let copy = restore_into_new(&repo, pg, &format!("/postgres/{db}.dump"));
        assert_eq!(plain_dump(pg, db), plain_dump(pg, &copy), "{db}");
    }
    let globals = repo
        .run(&["dump", "latest", "/postgres/globals.sql"])
        .ok()
        .stdout;
    assert!(String::from_utf8_lossy(&globals).contains("CREATE ROLE postgres"));

    let manifest = manifest_of(&repo);
    assert_eq!(manifest["format"], "cista-pg/1");
    assert!(
        manifest["pg_dump_version"]
            .as_str()
            .unwrap()
            .contains("PostgreSQL")
    );
    let dbs = manifest["databases"].as_array().unwrap();
    assert_eq!(dbs.len(), 2);
    assert_eq!(dbs[0]["name"], app.as_str());
    assert!(dbs[0]["dump_bytes"].as_u64().unwrap() > 3000 * 20);
    assert!(dbs[0]["size_bytes"].as_u64().unwrap() > 0);
    assert_eq!(dbs[0]["options"][1], "--compress=0");
    // What it holds: from the catalog, and the table of contents read back from the stream.
    let tables = dbs[0]["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 1, "{tables:?}");
    assert_eq!(
        (&tables[0]["schema"], &tables[0]["name"]),
        (&"public".into(), &"akten".into())
    );
    assert_eq!(dbs[0]["large_objects"], 1);
    let toc: Vec<&str> = dbs[0]["toc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        toc.iter().any(|l| l.contains("TABLE DATA public akten")),
        "{toc:?}"
    );
    assert!(
        toc.iter().any(|l| l.contains("TABLE public akten")),
        "{toc:?}"
    );
    repo.run(&["check", "--read-data"]).ok();
}

#[test]
fn pg_backup_all_dumps_every_database_and_a_second_night_adds_little() {
    let Some(pg) = servers::postgres() else {
        return;
    };
    let _alone = CLUSTER.write().unwrap_or_else(|e| e.into_inner());
    let big = pg.create_database("big");
    pg.psql(
        &big,
        "CREATE TABLE t (id int PRIMARY KEY, body text);
         INSERT INTO t SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 20000) g;",
    );
    let repo = Repo::new();
    run_cmd(pg_backup(&repo, pg, &["--all", "--json"]), None).ok();
    let manifest = manifest_of(&repo);
    let names: Vec<&str> = manifest["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"postgres") && names.contains(&big.as_str()),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("template")),
        "{names:?}"
    );
    // One row changed: the uncompressed dump's other chunks are already stored.
    pg.psql(&big, "UPDATE t SET body = 'changed' WHERE id = 7");
    let r = run_cmd(pg_backup(&repo, pg, &["--all", "--json"]), None).ok();
    let summary: serde_json::Value = r
        .stdout_str()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .unwrap();
    let added = summary["data_added"].as_u64().unwrap();
    let total = summary["total_bytes_processed"].as_u64().unwrap();
    assert!(total > 600_000, "{summary}");
    assert!(
        added * 4 < total,
        "the second night added {added} of {total} bytes"
    );
}

#[test]
fn pg_backup_refused_by_the_server_writes_no_snapshot_and_says_why() {
    let Some(pg) = servers::postgres() else {
        return;
    };
    let db = pg.create_database("secret");
    let role = db.replace("secret", "reader");
    pg.psql(
        &db,
        &format!(
            "CREATE TABLE hidden (n int); INSERT INTO hidden VALUES (1);
             REVOKE ALL ON hidden FROM PUBLIC; CREATE ROLE {role} LOGIN;"
        ),
    );
    let repo = Repo::new();
    // A database that does not exist: psql says so before any dump runs.
    let r = run_cmd(
        pg_backup(&repo, pg, &["--dbname", "no_such_database"]),
        None,
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("no_such_database"), "{}", r.stderr);
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
    // pg_dump refused a table: its own words, no snapshot.
    let mut cmd = pg_backup(&repo, pg, &["--dbname", &db, "--no-globals"]);
    cmd.env("PGUSER", &role);
    let r = run_cmd(cmd, None);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("permission denied"), "{}", r.stderr);
    assert!(r.stderr.contains("no snapshot was written"), "{}", r.stderr);
    assert!(repo.snapshots(&[]).is_empty());
    repo.run(&["check"]).ok();
    // A folder without pg_dump: named, before any passphrase is needed.
    let empty = repo.scratch("no-tools");
    std::fs::create_dir_all(&empty).unwrap();
    let r = run_cmd(
        pg_backup(
            &repo,
            pg,
            &["--dbname", &db, "--pg-bin", empty.to_str().unwrap()],
        ),
        None,
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("no pg_dump in"), "{}", r.stderr);
}

/// A folder of the server's tools whose `pg_dump` is `script`.
fn tools_with_pg_dump(repo: &Repo, pg: &PgServer, script: &str) -> std::path::PathBuf {
    let bin = repo.scratch("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["psql", "pg_restore", "pg_dumpall"] {
        std::os::unix::fs::symlink(pg.bin.join(tool), bin.join(tool)).unwrap();
    }
    let fake = bin.join("pg_dump");
    std::fs::write(&fake, script).unwrap();
    let mut perms = std::fs::metadata(&fake).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&fake, perms).unwrap();
    bin
}

#[test]
fn a_stalled_pg_dump_is_stopped_by_sigint_with_no_snapshot() {
    let Some(pg) = servers::postgres() else {
        return;
    };
    let db = pg.create_database("stalled");
    let repo = Repo::new();
    // A dump that writes 3 MB, then waits (as one blocked on a table lock would), ignoring
    // SIGINT; `exec` so the shell's pid is the one waiting.
    let marker = repo.scratch("dump-stalled");
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in --version) echo 'pg_dump (PostgreSQL) 99.0'; exit 0;; esac\n\
         trap '' INT\nhead -c 3000000 /dev/urandom\ntouch '{}'\nexec sleep 600\n",
        marker.display()
    );
    let bin = tools_with_pg_dump(&repo, pg, &script);
    let mut cmd = pg_backup(
        &repo,
        pg,
        &[
            "--dbname",
            &db,
            "--no-globals",
            "--pg-bin",
            bin.to_str().unwrap(),
        ],
    );
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Once the dump has written its bytes, it stalls: then ask cista to stop.
    while !marker.exists() {
        if let Some(s) = child.try_wait().unwrap() {
            panic!("pg backup ended ({s}) before the dump stalled");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(sent);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(repo.snapshots(&[]).is_empty());
    assert!(
        repo.files_in("locks").is_empty(),
        "lock left after a clean stop"
    );
    repo.run(&["check"]).ok();
}

#[test]
fn a_pg_dump_killed_mid_way_writes_no_snapshot() {
    let Some(pg) = servers::postgres() else {
        return;
    };
    let db = pg.create_database("killed");
    pg.psql(
        &db,
        "CREATE TABLE t (id int, body text);
         INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g;",
    );
    let repo = Repo::new();
    // Tools whose pg_dump dies by SIGKILL after 20 kB of a real dump.
    let script = format!(
        "#!/bin/sh\n'{}' \"$@\" | head -c 20000\nkill -KILL $$\n",
        pg.bin.join("pg_dump").display()
    );
    let bin = tools_with_pg_dump(&repo, pg, &script);
    let r = run_cmd(
        pg_backup(
            &repo,
            pg,
            &["--dbname", &db, "--pg-bin", bin.to_str().unwrap()],
        ),
        None,
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("SIGKILL") || r.stderr.contains("signal"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("no snapshot was written"), "{}", r.stderr);
    assert!(repo.snapshots(&[]).is_empty());
    repo.run(&["check", "--read-data"]).ok();
}

#[test]
fn pg_restore_brings_back_a_database_its_tables_or_a_schema_and_pg_ls_lists_them() {
    let Some(pg) = servers::postgres() else {
        return;
    };
    let _drops = dropping_databases();
    let db = pg.create_database("kanzlei");
    pg.psql(
        &db,
        "CREATE TABLE kunden (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO kunden SELECT g, 'Zoë ' || g FROM generate_series(1, 2000) g;
         CREATE TABLE rechnungen (id int, kunde int REFERENCES kunden, betrag numeric);
         INSERT INTO rechnungen SELECT g, 1 + g % 2000, g * 1.5 FROM generate_series(1, 3000) g;
         CREATE SCHEMA \"Büro\";
         CREATE TABLE \"Büro\".\"Akten\" (n int, body bytea);
         INSERT INTO \"Büro\".\"Akten\" SELECT g, decode(md5(g::text), 'hex') FROM generate_series(1, 500) g;
         ANALYZE;",
    );
    let other = pg.create_database("other");
    let role = other.replace("other", "clerk");
    pg.psql("postgres", &format!("CREATE ROLE {role} LOGIN"));
    let repo = Repo::new();
    run_cmd(
        pg_backup(&repo, pg, &["--dbname", &db, "--dbname", &other]),
        None,
    )
    .ok();
    let saved = plain_dump(pg, &db);

    // pg ls: databases and tables from the manifest.
    let ls = repo.run(&["pg", "ls", "latest"]).ok().stdout_str();
    assert!(ls.contains(&format!("database {db}")), "{ls}");
    assert!(ls.contains("public.kunden  ~2000 rows"), "{ls}");
    assert!(ls.contains("Büro.Akten"), "{ls}");
    let json: serde_json::Value = serde_json::from_str(
        repo.run(&["pg", "ls", "latest", "--json"])
            .ok()
            .stdout_str()
            .trim(),
    )
    .unwrap();
    assert_eq!(json["manifest"]["databases"][0]["name"], db.as_str());

    // Two databases in the snapshot: which one must be said.
    let fresh = pg.create_database("whole");
    let r = run_cmd(
        pg_restore_cmd(&repo, pg, &["latest", "--dbname", &fresh]),
        None,
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("--database"), "{}", r.stderr);

    // The whole database into an empty one under another name, in parallel.
    run_cmd(
        pg_restore_cmd(
            &repo,
            pg,
            &[
                "latest",
                "--database",
                &db,
                "--dbname",
                &fresh,
                "--jobs",
                "2",
            ],
        ),
        None,
    )
    .ok();
    assert_eq!(plain_dump(pg, &fresh), saved);

    // One table.
    let one = pg.create_database("onetable");
    run_cmd(
        pg_restore_cmd(
            &repo,
            pg,
            &[
                "latest",
                "--database",
                &db,
                "--dbname",
                &one,
                "--table",
                "kunden",
            ],
        ),
        None,
    )
    .ok();
    assert_eq!(pg.psql(&one, "SELECT count(*) FROM kunden"), "2000\n");
    assert_eq!(
        pg.psql(
            &one,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'rechnungen'"
        ),
        "0\n"
    );

    // One schema.
    let schema = pg.create_database("schema");
    run_cmd(
        pg_restore_cmd(
            &repo,
            pg,
            &[
                "latest",
                "--database",
                &db,
                "--dbname",
                &schema,
                "--schema",
                "Büro",
            ],
        ),
        None,
    )
    .ok();
    assert_eq!(
        pg.psql(&schema, "SELECT count(*) FROM \"Büro\".\"Akten\""),
        "500\n"
    );
    assert_eq!(
        pg.psql(
            &schema,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0\n"
    );

    // Dropped, then created again under its own name.
    pg.psql("postgres", &format!("DROP DATABASE {db}"));
    run_cmd(
        pg_restore_cmd(
            &repo,
            pg,
            &[
                "latest",
                "--database",
                &db,
                "--create",
                "--dbname",
                "postgres",
            ],
        ),
        None,
    )
    .ok();
    assert_eq!(plain_dump(pg, &db), saved);

    // The cluster's roles come back with --globals (those that exist are reported by psql
    // and skipped).
    pg.psql("postgres", &format!("DROP ROLE {role}"));
    let globals = pg.create_database("globals");
    run_cmd(
        pg_restore_cmd(
            &repo,
            pg,
            &[
                "latest",
                "--database",
                &other,
                "--dbname",
                &globals,
                "--globals",
            ],
        ),
        None,
    )
    .ok();
    assert_eq!(
        pg.psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'")
        ),
        "1\n"
    );

    // A plain SQL script instead of a server.
    let sql = repo.scratch("kanzlei.sql");
    run_cmd(
        pg_restore_cmd(
            &repo,
            pg,
            &[
                "latest",
                "--database",
                &db,
                "--to-file",
                sql.to_str().unwrap(),
            ],
        ),
        None,
    )
    .ok();
    let text = std::fs::read_to_string(&sql).unwrap();
    assert!(
        text.contains("CREATE TABLE public.kunden"),
        "{}",
        &text[..text.len().min(500)]
    );

    // A snapshot that is not a pg backup is refused by name.
    let files = repo.scratch("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("a"), b"a").unwrap();
    repo.run(&["backup".as_ref(), files.as_os_str()]).ok();
    let plain = repo.snapshots(&[]).last().unwrap()["short_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = repo.run(&["pg", "ls", &plain]);
    assert_ne!(r.code, Some(0), "{}", r.stderr);
}

/// A `psql` moving 7 from account `a` to `b` and adding an event, in one transaction each,
/// over and over until stopped: a restored copy must show one moment of it.
struct Transfers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Transfers {
    /// Starts on `db` (tables `konto` with rows `a` and `b`, `ereignis`) and returns once it
    /// has committed some.
    fn start(pg: &PgServer, db: &str) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, mut cmd) = (stop.clone(), pg.tool("psql"));
        cmd.args(["-X", "-q", "-d", db, "-f", "-"])
            .stdin(std::process::Stdio::piped());
        let thread = std::thread::spawn(move || {
            let mut child = cmd.spawn().expect("psql");
            let mut stdin = child.stdin.take().unwrap();
            let mut n = 0u64;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let tx = "BEGIN; UPDATE konto SET saldo = saldo - 7 WHERE name = 'a';
                          UPDATE konto SET saldo = saldo + 7 WHERE name = 'b';
                          INSERT INTO ereignis DEFAULT VALUES; COMMIT;\n";
                if std::io::Write::write_all(&mut stdin, tx.as_bytes()).is_err() {
                    break;
                }
                n += 1;
            }
            drop(stdin);
            child.wait().unwrap();
            n
        });
        while pg.psql(db, "SELECT count(*) > 50 FROM ereignis") != "t\n" {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Self { stop, thread }
    }

    /// Stops it; returns how many transactions it sent.
    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }

    /// Asserts that `copy` holds one moment of the transfers: the balances sum to 0 and
    /// there is one event per transfer.
    fn assert_one_moment(pg: &PgServer, copy: &str) {
        assert_eq!(pg.psql(copy, "SELECT sum(saldo) FROM konto"), "0\n");
        assert_eq!(
            pg.psql(copy, "SELECT (SELECT saldo FROM konto WHERE name = 'b') / 7 = (SELECT count(*) FROM ereignis)"),
            "t\n"
        );
    }
}

#[test]
fn pg_backup_of_hundreds_of_tables_under_writes_restores_one_consistent_point() {
    let Some(pg) = servers::postgres() else {
        return;
    };
    let db = pg.create_database("busy");
    pg.psql(
        &db,
        "DO $$ BEGIN FOR i IN 1..300 LOOP
           EXECUTE format('CREATE TABLE %I (id int PRIMARY KEY, note text)', 'tabelle_' || i);
           EXECUTE format('INSERT INTO %I SELECT g, ''Straße '' || g FROM generate_series(1, 20) g', 'tabelle_' || i);
         END LOOP; END $$;
         CREATE TABLE konto (name text PRIMARY KEY, saldo bigint NOT NULL);
         INSERT INTO konto VALUES ('a', 0), ('b', 0);
         CREATE TABLE ereignis (n serial PRIMARY KEY, at timestamptz DEFAULT now());",
    );
    // A writer moving money between two rows in one transaction, and adding events, until
    // the backup is done: the restored database must show one moment of it.
    let writer = Transfers::start(pg, &db);
    let repo = Repo::new();
    run_cmd(
        pg_backup(&repo, pg, &["--dbname", &db, "--no-globals"]),
        None,
    )
    .ok();
    assert!(writer.stop() > 0);

    let copy = pg.create_database("busy_restored");
    run_cmd(
        pg_cmd(&repo, pg, "restore", &["latest", "--dbname", &copy]),
        None,
    )
    .ok();
    Transfers::assert_one_moment(pg, &copy);
    assert_eq!(
        pg.psql(
            &copy,
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'tabelle\\_%'"
        ),
        "300\n"
    );
    let manifest = manifest_of(&repo);
    assert_eq!(
        manifest["databases"][0]["tables"].as_array().unwrap().len(),
        302
    );
}

#[test]
fn pg_backup_jobs_splits_tables_into_archives_that_restore_in_parallel_to_the_same_database() {
    let Some(pg) = servers::postgres() else {
        return;
    };
    let _drops = dropping_databases();
    let db = pg.create_database("split");
    pg.psql(
        &db,
        "CREATE TABLE kunden (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO kunden SELECT g, 'Zoë ' || g FROM generate_series(1, 2000) g;
         CREATE TABLE akten (id bigserial PRIMARY KEY, kunde int REFERENCES kunden, body text);
         INSERT INTO akten (kunde, body) SELECT 1 + g % 2000, repeat(md5(g::text), 4)
           FROM generate_series(1, 4000) g;
         CREATE INDEX ON akten (kunde);
         CREATE SCHEMA \"Büro\";
         CREATE TABLE \"Büro\".\"tä.b\"\"le*\" (n int, body bytea);
         INSERT INTO \"Büro\".\"tä.b\"\"le*\" SELECT g, decode(md5(g::text), 'hex')
           FROM generate_series(1, 3000) g;
         CREATE TABLE klein (n int); INSERT INTO klein VALUES (1);
         CREATE SEQUENCE zähler; SELECT setval('zähler', 41);
         SELECT lo_from_bytea(0, 'ein großes Objekt');
         ANALYZE;",
    );
    let repo = Repo::new();
    // Tables of 64 KiB or more get their own archive: akten and the quoted one; kunden
    // (about 100 KiB) too; klein goes with the sequences and the large object.
    run_cmd(
        pg_backup(
            &repo,
            pg,
            &[
                "--dbname",
                &db,
                "--no-globals",
                "--jobs",
                "2",
                "--split-min-size",
                "64K",
            ],
        ),
        None,
    )
    .ok();
    let saved = plain_dump(pg, &db);
    let m = manifest_of(&repo);
    assert_eq!(m["format"], "cista-pg/2");
    let d = &m["databases"][0];
    assert!(
        d["exported_snapshot"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{d}"
    );
    assert!(d["options"].to_string().contains("--schema-only"), "{d}");
    let parts = d["data"].as_array().unwrap();
    let paths: Vec<&str> = parts.iter().map(|p| p["path"].as_str().unwrap()).collect();
    assert!(
        paths.contains(&format!("postgres/{db}.data/public.akten.dump").as_str()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&format!("postgres/{db}.data/Büro.tä%2Eb\"le*.dump").as_str()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&format!("postgres/{db}.data/rest.dump").as_str()),
        "{paths:?}"
    );
    // Every archive's table of contents was read back: the rest holds the sequence's value
    // and the large object, a table's archive its rows only.
    let rest = parts.iter().find(|p| p["table"].is_null()).unwrap();
    let rest_toc = rest["toc"].to_string();
    assert!(
        rest_toc.contains("SEQUENCE SET") && rest_toc.contains("BLOB"),
        "{rest_toc}"
    );
    let akten = parts
        .iter()
        .find(|p| p["table"]["name"] == "akten")
        .unwrap();
    assert!(
        akten["toc"].to_string().contains("TABLE DATA public akten"),
        "{akten}"
    );
    let ls = repo.run(&["pg", "ls", "latest"]).ok().stdout_str();
    assert!(
        ls.contains(&format!(
            "split: schema /postgres/{db}.dump and {} data archives",
            parts.len()
        )),
        "{ls}"
    );
    let sum: u64 = parts
        .iter()
        .map(|p| p["dump_bytes"].as_u64().unwrap())
        .sum();
    assert!(d["dump_bytes"].as_u64().unwrap() > sum, "{d}");

    // In parallel, and in one stream after another: the same database.
    for jobs in ["2", "1"] {
        let copy = pg.create_database("split_copy");
        run_cmd(
            pg_restore_cmd(&repo, pg, &["latest", "--dbname", &copy, "--jobs", jobs]),
            None,
        )
        .ok();
        assert_eq!(plain_dump(pg, &copy), saved, "--jobs {jobs}");
    }
    // A plain SQL file of it, run by psql, makes the same database.
    let file = repo.scratch("split.sql");
    run_cmd(
        pg_restore_cmd(&repo, pg, &["latest", "--to-file", file.to_str().unwrap()]),
        None,
    )
    .ok();
    let from_file = pg.create_database("split_file");
    let out = pg
        .tool("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &from_file, "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(plain_dump(pg, &from_file), saved);
    // One table: its definition and rows, nothing else.
    let one = pg.create_database("split_one");
    run_cmd(
        pg_restore_cmd(
            &repo,
            pg,
            &[
                "latest", "--dbname", &one, "--table", "akten", "--jobs", "2",
            ],
        ),
        None,
    )
    .ok();
    assert_eq!(pg.psql(&one, "SELECT count(*) FROM akten"), "4000\n");
    assert_eq!(
        pg.psql(
            &one,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "1\n"
    );
    // --clean needs --create here (it says why); with it, the database is dropped and made
    // again under its own name.
    let r = run_cmd(
        pg_restore_cmd(&repo, pg, &["latest", "--dbname", &one, "--clean"]),
        None,
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("add --create"), "{}", r.stderr);
    pg.psql(&db, "DELETE FROM akten WHERE id > 10");
    run_cmd(
        pg_restore_cmd(
            &repo,
            pg,
            &[
                "latest", "--dbname", "postgres", "--create", "--clean", "--jobs", "2",
            ],
        ),
        None,
    )
    .ok();
    assert_eq!(plain_dump(pg, &db), saved);

    // The next night, nothing changed: little is added.
    let r = run_cmd(
        pg_backup(
            &repo,
            pg,
            &[
                "--dbname",
                &db,
                "--no-globals",
                "--jobs",
                "2",
                "--split-min-size",
                "64K",
                "--json",
            ],
        ),
        None,
    )
    .ok();
    let summary: serde_json::Value = r
        .stdout_str()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .unwrap();
    let processed = summary["total_bytes_processed"].as_u64().unwrap();
    let added = summary["data_added"].as_u64().unwrap();
    assert!(added * 4 < processed, "added {added} of {processed}");
    repo.run(&["check", "--read-data"]).ok();
}

#[test]
fn pg_backup_jobs_under_writes_is_one_point_in_time_across_its_archives() {
    let Some(pg) = servers::postgres() else {
        return;
    };
    let db = pg.create_database("split_busy");
    pg.psql(
        &db,
        "CREATE TABLE konto (name text PRIMARY KEY, saldo bigint NOT NULL);
         INSERT INTO konto VALUES ('a', 0), ('b', 0);
         CREATE TABLE ereignis (n serial PRIMARY KEY, at timestamptz DEFAULT now());
         CREATE TABLE füllung (n int, body text);
         INSERT INTO füllung SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;",
    );
    let writer = Transfers::start(pg, &db);
    let repo = Repo::new();
    // Every table in its own archive, three dumps at once.
    run_cmd(
        pg_backup(
            &repo,
            pg,
            &[
                "--dbname",
                &db,
                "--no-globals",
                "--jobs",
                "3",
                "--split-min-size",
                "1",
            ],
        ),
        None,
    )
    .ok();
    assert!(writer.stop() > 0);
    let m = manifest_of(&repo);
    let tables: Vec<String> = m["databases"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["table"]["name"].as_str().map(String::from))
        .collect();
    for t in ["konto", "ereignis", "füllung"] {
        assert!(tables.iter().any(|n| n == t), "{tables:?}");
    }
    let copy = pg.create_database("split_busy_copy");
    run_cmd(
        pg_restore_cmd(&repo, pg, &["latest", "--dbname", &copy, "--jobs", "3"]),
        None,
    )
    .ok();
    // konto and ereignis came from two archives dumped by two pg_dumps: one moment.
    Transfers::assert_one_moment(pg, &copy);
    assert_eq!(pg.psql(&copy, "SELECT count(*) FROM füllung"), "20000\n");
}

#[test]
fn a_split_dump_whose_one_pg_dump_fails_writes_no_snapshot() {
    let Some(pg) = servers::postgres() else {
        return;
    };
    let db = pg.create_database("split_killed");
    pg.psql(
        &db,
        "CREATE TABLE a (id int, body text);
         INSERT INTO a SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g;
         CREATE TABLE b (id int, body text);
         INSERT INTO b SELECT g, repeat('y', 100) FROM generate_series(1, 5000) g;",
    );
    let repo = Repo::new();
    // The dump of table b's rows dies by SIGKILL after 20 kB; the others are real.
    let real = pg.bin.join("pg_dump");
    let script = format!(
        "#!/bin/sh\ncase \"$*\" in *'\"public\".\"b\"'*) '{r}' \"$@\" | head -c 20000; kill -KILL $$;; esac\nexec '{r}' \"$@\"\n",
        r = real.display()
    );
    let bin = tools_with_pg_dump(&repo, pg, &script);
    let r = run_cmd(
        pg_backup(
            &repo,
            pg,
            &[
                "--dbname",
                &db,
                "--no-globals",
                "--jobs",
                "2",
                "--split-min-size",
                "1",
                "--pg-bin",
                bin.to_str().unwrap(),
            ],
        ),
        None,
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("no snapshot was written"), "{}", r.stderr);
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
    assert!(repo.snapshots(&[]).is_empty());
    repo.run(&["check", "--read-data"]).ok();
}

#[test]
fn a_pg_dump_older_than_the_server_is_refused_naming_both_versions() {
    let Some(pg) = servers::postgres() else {
        return;
    };
    let db = pg.create_database("old_tools");
    let repo = Repo::new();
    // Debian has one PostgreSQL version: a pg_dump that says it is 9.6 stands in for an
    // older client installed beside a newer server.
    let script = "#!/bin/sh\ncase \"$1\" in --version) echo 'pg_dump (PostgreSQL) 9.6.24'; exit 0;; esac\nexit 1\n";
    let bin = tools_with_pg_dump(&repo, pg, script);
    let r = run_cmd(
        pg_backup(
            &repo,
            pg,
            &["--dbname", &db, "--pg-bin", bin.to_str().unwrap()],
        ),
        None,
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
    let line = &r.stderr;
    assert!(
        line.contains(&bin.join("pg_dump").display().to_string()),
        "{line}"
    );
    assert!(
        line.contains("9.6.24") && line.contains("older than the server"),
        "{line}"
    );
    assert!(line.contains("/usr/lib/postgresql/"), "{line}");
    assert!(repo.snapshots(&[]).is_empty());
}
