//! `--help` text that clap cannot derive: examples for each command, the EXIT STATUS section
//! (docs/CLI.md, "Exit codes") and the environment variables, attached to every command so
//! `cista COMMAND --help` is enough on a machine without the docs.

use clap::CommandFactory;

use super::Cli;

/// Examples per command path (`key add` for a subcommand of `key`).
const EXAMPLES: &[(&str, &[&str])] = &[
    (
        "init",
        &[
            "cista -r /srv/backup init",
            "CISTA_PASSWORD_FILE=/etc/cista/password cista -r /srv/backup init",
        ],
    ),
    (
        "backup",
        &[
            "cista backup /srv/app /etc",
            "cista backup --exclude '*.log' --tag nightly /srv",
            "pg_dump app | cista backup --stdin --stdin-filename app.sql",
            "cista backup --stdin-from-command --stdin-filename app.sql -- pg_dump app",
            "cista backup --retry-lock 30m /srv/app",
        ],
    ),
    (
        "completion",
        &[
            "cista completion bash > /etc/bash_completion.d/cista",
            "cista completion zsh > ~/.zfunc/_cista",
            "cista completion fish > ~/.config/fish/completions/cista.fish",
        ],
    ),
    (
        "man",
        &[
            "cista man | man -l -",
            "cista man --dir /usr/local/share/man/man1",
        ],
    ),
    (
        "config",
        &["cista config check", "cista config show -P offsite"],
    ),
    (
        "config show",
        &["cista config show", "cista config show -P offsite --json"],
    ),
    (
        "config check",
        &["cista config check --config /etc/cista/cista.toml"],
    ),
    (
        "snapshots",
        &[
            "cista snapshots",
            "cista snapshots --latest 1 --json",
            "cista snapshots --group-by host --compact",
        ],
    ),
    (
        "forget",
        &[
            "cista forget --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run",
            "cista forget --keep-within 30d --keep-yearly 7 --keep-tag release --json",
            "cista forget 1a2b3c4d",
            "cista forget --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --prune",
        ],
    ),
    (
        "tag",
        &[
            "cista tag --add release latest",
            "cista tag --set nightly --host db1",
            "cista tag --remove test 1a2b3c4d",
        ],
    ),
    (
        "ls",
        &[
            "cista ls latest",
            "cista ls -l latest /srv/app",
            "cista ls --json --recursive 1a2b3c4d /etc",
        ],
    ),
    (
        "dump",
        &[
            "cista dump latest /srv/app/config.yml > config.yml",
            "cista dump latest /srv/app > app.tar",
            "cista dump --archive zip latest / > everything.zip",
        ],
    ),
    (
        "restore",
        &[
            "cista restore latest --target /tmp/restore",
            "cista restore 1a2b3c4d:/srv/app --target /srv/app.new --include '*.conf'",
            "cista restore latest:/srv/app --target /srv/app --overwrite if-changed --delete",
        ],
    ),
    (
        "check",
        &[
            "cista check",
            "cista check --read-data",
            "cista check --read-data-subset 1/30",
            "cista check --json --read-data-subset 5%",
        ],
    ),
    (
        "repair",
        &["cista repair index", "cista repair snapshots --dry-run"],
    ),
    ("repair index", &["cista repair index"]),
    (
        "prune",
        &[
            "cista prune --dry-run",
            "cista prune --max-unused 10%",
            "cista prune --max-repack-size 2g --repack-small",
        ],
    ),
    (
        "key",
        &[
            "cista key list",
            "CISTA_NEW_PASSWORD_FILE=/root/recovery cista key add",
        ],
    ),
    ("key list", &["cista key list", "cista key list --json"]),
    (
        "key add",
        &[
            "cista key add",
            "CISTA_NEW_PASSWORD_FILE=/root/recovery cista key add",
        ],
    ),
    ("key remove", &["cista key remove 1a2b3c4d"]),
    (
        "key passwd",
        &[
            "cista key passwd",
            "CISTA_NEW_PASSWORD_FILE=/root/new cista key passwd",
        ],
    ),
    (
        "pg",
        &["cista pg backup --dbname app", "cista pg backup --all"],
    ),
    (
        "pg backup",
        &[
            "cista pg backup --dbname app",
            "PGHOST=db.internal PGUSER=backup cista pg backup --all --tag nightly",
            "cista pg backup --dbname 'host=127.0.0.1 port=5433 dbname=app' --pg-bin /usr/lib/postgresql/16/bin",
            "cista pg backup --dbname app --jobs 4",
        ],
    ),
    (
        "pg ls",
        &["cista pg ls latest", "cista pg ls 1a2b3c4d --json"],
    ),
    (
        "pg restore",
        &[
            "cista pg restore latest --dbname app_restored",
            "cista pg restore latest --database app --create --dbname postgres",
            "cista pg restore latest --dbname scratch --table kunden --schema public",
            "cista pg restore latest --database app --to-file app.sql",
        ],
    ),
    ("unlock", &["cista unlock", "cista unlock --remove-all"]),
    ("version", &["cista version", "cista version --json"]),
    (
        "cat",
        &[
            "cista cat config",
            "cista cat snapshot 1a2b3c4d",
            "cista cat tree 5e6f7a8b",
            "cista cat blob 9c0d1e2f > chunk.bin",
        ],
    ),
    (
        "rewrite",
        &[
            "cista rewrite --exclude /srv/app/secret.key --dry-run",
            "cista rewrite --exclude '*.pem' --forget 1a2b3c4d",
            "cista rewrite --iexclude-file erase.txt --host db1 && cista prune",
        ],
    ),
    (
        "copy",
        &[
            "CISTA_TO_PASSWORD_FILE=/etc/cista/offsite cista copy --to /mnt/offsite/backup",
            "cista copy --to /mnt/offsite/backup --host db1 --dry-run",
            "cista copy --to /mnt/offsite/backup --json latest",
        ],
    ),
    (
        "repair snapshots",
        &[
            "cista repair snapshots --dry-run",
            "cista repair snapshots --forget",
            "cista repair snapshots --read-data 1a2b3c4d",
        ],
    ),
];

/// The exit codes (docs/CLI.md, "Exit codes").
const EXIT_STATUS: &str = "\
EXIT STATUS:
  0    success
  1    error (the message on stderr says what to do)
  2    invalid command-line usage
  3    backup: snapshot written, but some source files could not be read;
       restore: the rest was restored, but some files could not be;
       repair snapshots: the rest was repaired, but some snapshots' root
       trees cannot be read (they are left as they are)
       forget, tag: some snapshots could not be removed or rewritten
  10   the repository does not exist
  11   the repository is locked by another process (still, after --retry-lock)
  12   wrong password (an empty one included)
  130  interrupted (SIGINT/SIGTERM)
  141  standard output was closed by its reader (as a program killed by SIGPIPE)";

/// The environment variables cista reads.
const ENVIRONMENT: &str = "\
ENVIRONMENT:
  CISTA_REPOSITORY         repository location (as -r/--repo)
  CISTA_PASSWORD_FILE      file whose first line is the password (as --password-file)
  CISTA_PASSWORD_COMMAND   command printing the password (as --password-command)
  CISTA_PASSWORD           the password itself
  CISTA_NEW_PASSWORD_FILE  file with the new password for `key add` and `key passwd`
  CISTA_CACHE_DIR          folder of the metadata cache (as --cache-dir)
  CISTA_CONFIG             config file (as --config; set but empty: none)
  CISTA_PROFILE            the config file's profile (as -P/--profile)
  CISTA_DEBUG_BACKEND_STATS=1  print storage request counts on stderr at exit
  CISTA_TO_REPOSITORY, CISTA_TO_PASSWORD_FILE, CISTA_TO_PASSWORD_COMMAND,
  CISTA_TO_PASSWORD        copy's target repository and its password
  CISTA_FROM_REPOSITORY, CISTA_FROM_PASSWORD_FILE, CISTA_FROM_PASSWORD_COMMAND,
  CISTA_FROM_PASSWORD      init --copy-chunker-params-from's repository and its password
  TZ                       time zone for printed times, backup --time and forget's
                           --keep-within* arithmetic
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
  AWS_ENDPOINT_URL, AWS_PROFILE          S3 credentials and endpoint
  GOOGLE_APPLICATION_CREDENTIALS         GCS service-account file
  AZURE_ACCOUNT_NAME, AZURE_ACCOUNT_KEY  Azure Blob credentials
  CISTA_WEBDAV_USERNAME, CISTA_WEBDAV_PASSWORD  WebDAV login";

/// The text after the options for one command.
fn after_help(examples: &[&str]) -> String {
    let mut s = String::from("EXAMPLES:\n");
    for e in examples {
        s.push_str("  ");
        s.push_str(e);
        s.push('\n');
    }
    s.push('\n');
    s.push_str(EXIT_STATUS);
    s.push_str("\n\n");
    s.push_str(ENVIRONMENT);
    s
}

fn attach(cmd: clap::Command, path: &str) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    let mut cmd = cmd;
    for name in names {
        let full = if path.is_empty() {
            name.clone()
        } else {
            format!("{path} {name}")
        };
        cmd = cmd.mut_subcommand(&name, |sub| {
            let sub = match EXAMPLES.iter().find(|(p, _)| *p == full) {
                Some((_, ex)) => sub.after_help(after_help(ex)),
                None => sub,
            };
            attach(sub, &full)
        });
    }
    cmd
}

/// The full command definition: clap's derived one plus examples, exit codes and environment.
pub fn command() -> clap::Command {
    let top = Cli::command().after_help(format!(
        "Run `cista COMMAND --help` for a command's options and examples.\n\n{EXIT_STATUS}\n\n{ENVIRONMENT}"
    ));
    attach(top, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command and subcommand has examples that run that command.
    #[test]
    fn every_command_has_examples() {
        fn walk(cmd: &clap::Command, path: &str, seen: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                // Hidden commands are test hooks (docs/DESIGN.md), not for users.
                if sub.get_name() == "help" || sub.is_hide_set() {
                    continue;
                }
                let full = if path.is_empty() {
                    sub.get_name().to_owned()
                } else {
                    format!("{path} {}", sub.get_name())
                };
                let ex = EXAMPLES
                    .iter()
                    .find(|(p, _)| *p == full)
                    .unwrap_or_else(|| panic!("no examples for `cista {full}`"));
                assert!(
                    ex.1.iter().all(|e| e.contains(&format!("cista {full}"))
                        || e.contains(&format!("cista -r /srv/backup {full}"))),
                    "an example for {full} does not run it"
                );
                seen.push(full.clone());
                walk(sub, &full, seen);
            }
        }
        let mut seen = Vec::new();
        walk(&command(), "", &mut seen);
        assert_eq!(
            seen.len(),
            EXAMPLES.len(),
            "examples for a command that is gone"
        );
        command().debug_assert();
    }
}
