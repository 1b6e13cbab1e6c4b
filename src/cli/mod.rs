//! The command-line interface: the only code that prints, reads environment variables or
//! decides exit codes. Each command is parse -> call the library -> print.

mod backup;
mod browse;
mod cat;
pub mod config;
mod config_cmd;
mod copy;
mod docs_cmds;
mod forget;
pub mod help;
mod keys;
mod lock_cmds;
pub mod output;
mod pg;
mod progress;
mod prune;
mod repair;
mod repo_cmds;
mod rewrite;
mod snapshots;
mod storage;
mod tag;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, anyhow, bail};
use cista::backend::FileType;
use cista::format::key::KdfParams;
use cista::format::lock::LockMode;
use cista::ops::CancelFlag;
use cista::ops::session::{LockOptions, Session};
use cista::repo::Repository;
use clap::{Parser, Subcommand};
use zeroize::Zeroizing;

/// Exit codes (docs/CLI.md).
pub mod code {
    /// Success.
    pub const OK: u8 = 0;
    /// Any error not listed below.
    pub const ERROR: u8 = 1;
    /// A command line, config file or profile that cannot be used.
    pub const USAGE: u8 = 2;
    /// Snapshot written, but some source files could not be read.
    pub const INCOMPLETE: u8 = 3;
    /// The repository does not exist.
    pub const NO_REPO: u8 = 10;
    /// The repository is locked.
    pub const LOCKED: u8 = 11;
    /// Wrong password.
    pub const WRONG_PASSWORD: u8 = 12;
    /// Interrupted by SIGINT/SIGTERM.
    pub const INTERRUPTED: u8 = 130;
    /// Standard output was closed by its reader (128 + SIGPIPE, what a shell reports for a
    /// program SIGPIPE killed, as restic is).
    pub const STDOUT_CLOSED: u8 = 141;
}

/// The help heading of the options every command takes, so a command's own come first.
const GLOBAL: &str = "Global options";

/// cista: encrypted, deduplicating backups of application data.
#[derive(Debug, Parser)]
#[command(name = "cista", version, about, propagate_version = true)]
pub struct Cli {
    /// Repository location: a folder, file:///path, s3://bucket/prefix, gs://bucket/prefix,
    /// azblob://container/prefix, sftp://[user@]host[:port]/path or webdav+https://host/path
    /// (docs/CLI.md, "Locations").
    #[arg(
        short = 'r',
        long = "repo",
        env = "CISTA_REPOSITORY",
        global = true,
        help_heading = GLOBAL
    )]
    repo: Option<String>,
    /// Read the passphrase from this file (first line).
    #[arg(
        long,
        env = "CISTA_PASSWORD_FILE",
        global = true,
        help_heading = GLOBAL,
        hide_env_values = true
    )]
    password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the passphrase.
    #[arg(
        long,
        env = "CISTA_PASSWORD_COMMAND",
        global = true,
        help_heading = GLOBAL,
        hide_env_values = true
    )]
    password_command: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true, help_heading = GLOBAL)]
    json: bool,
    /// No progress or informational output.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    quiet: bool,
    /// Wait up to this long for a lock another process holds (Go-style duration: 30s, 5m,
    /// 1h30m), retrying with backoff; by default a held lock fails at once (exit 11).
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "DURATION", value_parser = lock_cmds::parse_go_duration)]
    retry_lock: Option<std::time::Duration>,
    /// Take no lock, for reading a repository on read-only storage (commands that write
    /// always lock).
    #[arg(long, global = true, help_heading = GLOBAL)]
    no_lock: bool,
    /// Keep the local metadata cache of remote repositories in this folder (default
    /// $XDG_CACHE_HOME/cista, else ~/.cache/cista).
    #[arg(long, env = "CISTA_CACHE_DIR", global = true, help_heading = GLOBAL, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Use no local metadata cache (and create none).
    #[arg(long, global = true, help_heading = GLOBAL)]
    no_cache: bool,
    /// Remove the caches of other repositories not used for 30 days.
    #[arg(long, global = true, help_heading = GLOBAL)]
    cleanup_cache: bool,
    /// Set a backend option (repeatable): connections=N, timeout=30s, retries=N, and per
    /// service s3.region=..., sftp.key=..., ... (docs/CLI.md, "Backend options").
    #[arg(
        short = 'o',
        long = "option",
        global = true,
        help_heading = GLOBAL,
        value_name = "KEY=VALUE"
    )]
    options: Vec<String>,
    /// Read flags from this config file (default: $CISTA_CONFIG, ~/.config/cista/cista.toml,
    /// /etc/cista/cista.toml; docs/CONFIG.md).
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The config file's profile to use (default: $CISTA_PROFILE, else `default`).
    #[arg(short = 'P', long, env = "CISTA_PROFILE", global = true, help_heading = GLOBAL, value_name = "NAME")]
    profile: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new repository.
    Init(repo_cmds::InitArgs),
    /// Back up files, standard input, or a command's output.
    Backup(backup::BackupArgs),
    /// List snapshots.
    Snapshots(snapshots::SnapshotsArgs),
    /// Remove snapshots: named ones, or those a retention policy does not keep.
    Forget(forget::ForgetArgs),
    /// Change the tags of snapshots.
    Tag(tag::TagArgs),
    /// List the files in a snapshot.
    Ls(browse::LsArgs),
    /// Write one file of a snapshot to standard output.
    Dump(browse::DumpArgs),
    /// Restore a snapshot, a folder or a file.
    Restore(browse::RestoreArgs),
    /// Verify the repository's structure and, with --read-data, all data.
    Check(repo_cmds::CheckArgs),
    /// Manage the passphrases that open the repository.
    #[command(subcommand)]
    Key(keys::KeyCommand),
    /// Show or check the config file's profiles.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// PostgreSQL: dump databases into one snapshot.
    #[command(subcommand)]
    Pg(pg::PgCommand),
    /// Remove data no snapshot needs (never blocks a backup).
    Prune(prune::PruneArgs),
    /// Remove stale locks (or all locks with --remove-all).
    Unlock(repo_cmds::UnlockArgs),
    /// Rebuild damaged repository metadata.
    #[command(subcommand)]
    Repair(repair::RepairCommand),
    /// Print the version of cista and the platform it was built for.
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(docs_cmds::CompletionArgs),
    /// Write man pages: cista(1) and one per command (cista-backup(1), ...).
    Man(docs_cmds::ManArgs),
    /// Print one repository object, decoded (JSON; a blob's bytes), for inspection.
    Cat(cat::CatArgs),
    /// Test hooks (hidden; docs/DESIGN.md, "Test hooks").
    #[command(subcommand, hide = true)]
    Debug(lock_cmds::DebugCommand),
    /// Remove files from existing snapshots (new snapshots without them).
    Rewrite(rewrite::RewriteArgs),
    /// Copy snapshots into another repository (only what it lacks).
    Copy(copy::CopyArgs),
}

/// Global state a command needs.
pub struct Env {
    repo_location: Option<String>,
    backend_options: Vec<String>,
    password_file: Option<PathBuf>,
    password_command: Option<String>,
    json: bool,
    quiet: bool,
    cancel: CancelFlag,
    lock: LockOptions,
    storage: storage::Storage,
}

impl Env {
    fn location(&self) -> Result<&str> {
        self.repo_location
            .as_deref()
            .ok_or_else(|| anyhow!("no repository given: use -r/--repo or set CISTA_REPOSITORY"))
    }

    /// The repository's storage, counted, without the cache (`init` and the config check).
    fn backend(&self) -> Result<Arc<cista::backend::counting::CountingBackend>> {
        self.storage
            .backend(self.location()?, &self.backend_options)
    }

    /// Whether the repository is on a remote store (not a local folder).
    fn is_remote(&self) -> Result<bool> {
        Ok(!storage::is_local(self.location()?))
    }

    /// Pack reads a restore or a data check keeps in flight (`-o connections`).
    fn reads_in_flight(&self) -> Result<usize> {
        storage::reads_in_flight(self.location()?, &self.backend_options)
    }

    /// Opens the repository, reading the passphrase from the configured source.
    fn open(&self) -> Result<Repository> {
        open_with(
            &self.storage,
            self.location()?,
            &self.backend_options,
            &self.password_from(),
            "repository",
        )
    }

    /// Where this repository's passphrase comes from.
    fn password_from(&self) -> PasswordFrom<'_> {
        PasswordFrom {
            file: self.password_file.as_deref(),
            command: self.password_command.as_deref(),
            env_var: "CISTA_PASSWORD",
        }
    }

    /// Opens the repository and takes a `mode` lock with the global `--retry-lock` and
    /// `--no-lock` (the latter honoured by shared sessions only: callers that write pass
    /// [`Env::session_writing`]). A wait for the lock is announced on stderr.
    fn session(&self, mode: LockMode) -> Result<Session> {
        self.open_session(mode, &self.lock)
    }

    /// [`Env::session`] for a command that lists `ahead` first (snapshots, the index): those
    /// listings start as soon as the lock is written, beside the check that follows it.
    fn session_listing(&self, mode: LockMode, ahead: &[FileType]) -> Result<Session> {
        let lock = LockOptions {
            list_ahead: ahead.to_vec(),
            ..self.lock.clone()
        };
        self.open_session(mode, &lock)
    }

    /// [`Env::session`] for a command that writes: `--no-lock` does not apply (restic's
    /// writing commands ignore it too).
    fn session_writing(&self, mode: LockMode) -> Result<Session> {
        let lock = LockOptions {
            no_lock: false,
            ..self.lock.clone()
        };
        self.open_session(mode, &lock)
    }

    fn open_session(&self, mode: LockMode, lock: &LockOptions) -> Result<Session> {
        let repo = self.open()?;
        let host = cista::host::Host::this_process();
        let notice = lock_cmds::Notice { quiet: self.quiet };
        Ok(Session::open(
            &repo,
            mode,
            lock,
            &host,
            &notice,
            Some(&self.cancel),
        )?)
    }

    /// A passphrase for a new key (`init`) from the configured source; never empty.
    fn new_passphrase(&self, prompt: &str) -> Result<Zeroizing<String>> {
        let (pw, source) = self.read_passphrase(prompt, true)?;
        if pw.is_empty() {
            return Err(EmptyPassword {
                from: source,
                opening: false,
            }
            .into());
        }
        Ok(pw)
    }

    /// The passphrase from the password file, command, `CISTA_PASSWORD`, or a prompt, with the
    /// name of the source it came from (for error messages).
    fn read_passphrase(
        &self,
        prompt: &str,
        confirm: bool,
    ) -> Result<(Zeroizing<String>, PasswordSource)> {
        read_passphrase_from(&self.password_from(), prompt, confirm)
    }
}

/// Where one repository's passphrase may come from: the global flags, or the `--to-*` /
/// `--from-*` ones of a command that opens a second repository (copy, init).
pub(crate) struct PasswordFrom<'a> {
    /// A password file (first line).
    pub file: Option<&'a std::path::Path>,
    /// A shell command printing it.
    pub command: Option<&'a str>,
    /// The variable holding it (`CISTA_PASSWORD`, `CISTA_TO_PASSWORD`, ...).
    pub env_var: &'static str,
}

/// Opens the repository on `backend` with a passphrase from `from`; `which` names it in
/// errors ("repository", "target repository"). Says "no repository" before asking for a
/// passphrase.
pub(crate) fn open_with(
    storage: &storage::Storage,
    location: &str,
    options: &[String],
    from: &PasswordFrom<'_>,
    which: &str,
) -> Result<Repository> {
    let backend = storage.backend(location, options)?;
    // Before the passphrase: a missing repository fails without a prompt.
    let located = match Repository::locate(&*backend) {
        Err(cista::Error::RepoNotFound { location }) if from.env_var != "CISTA_PASSWORD" => {
            return Err(OtherRepo::NotFound {
                which: which.to_owned(),
                location,
            }
            .into());
        }
        r => r?,
    };
    let (pw, source) = read_passphrase_from(from, &format!("enter password for {which}: "), false)?;
    if pw.is_empty() {
        // No repository has an empty passphrase (every way of setting one refuses it), so
        // this can only be a mistake in the caller's setup: say where it came from.
        return Err(EmptyPassword {
            from: source,
            opening: true,
        }
        .into());
    }
    match storage.open_repository(location, backend, located, pw.as_bytes()) {
        // The library's message names the main repository's variables: name the right ones.
        Err(e)
            if from.env_var != "CISTA_PASSWORD"
                && matches!(
                    e.downcast_ref::<cista::Error>(),
                    Some(cista::Error::WrongPassword)
                ) =>
        {
            Err(OtherRepo::WrongPassword {
                which: which.to_owned(),
                from: source,
                var: from.env_var,
            }
            .into())
        }
        r => r,
    }
}

/// The passphrase from `from`'s file, command, variable, or a prompt, with the name of the
/// source it came from (for error messages).
fn read_passphrase_from(
    from: &PasswordFrom<'_>,
    prompt: &str,
    confirm: bool,
) -> Result<(Zeroizing<String>, PasswordSource)> {
    {
        if let Some(f) = from.file {
            let text = Zeroizing::new(
                std::fs::read_to_string(f)
                    .with_context(|| format!("reading password file {}", f.display()))?,
            );
            let pw = Zeroizing::new(text.lines().next().unwrap_or_default().to_owned());
            return Ok((pw, PasswordSource::File(f.to_path_buf())));
        }
        if let Some(cmd) = from.command {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stderr(std::process::Stdio::inherit())
                .output()
                .context("running the password command")?;
            let text = Zeroizing::new(
                String::from_utf8(out.stdout)
                    .map_err(|_| anyhow!("password command printed non-UTF-8"))?,
            );
            if !out.status.success() {
                bail!("password command failed ({})", out.status);
            }
            let pw = Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_owned());
            return Ok((pw, PasswordSource::Command));
        }
        if let Ok(pw) = std::env::var(from.env_var) {
            return Ok((Zeroizing::new(pw), PasswordSource::Env(from.env_var)));
        }
        Ok((
            prompt_passphrase(prompt, confirm, from.env_var)?,
            PasswordSource::Prompt,
        ))
    }
}

impl Env {
    /// Reads a passphrase at the terminal (twice with `confirm`); refuses an empty one.
    fn prompt(&self, prompt: &str, confirm: bool) -> Result<Zeroizing<String>> {
        prompt_passphrase(prompt, confirm, "CISTA_PASSWORD")
    }

    /// Prints a line unless quiet or JSON output was asked for.
    fn info(&self, msg: impl std::fmt::Display) -> std::io::Result<()> {
        if !self.quiet && !self.json {
            let mut out = output::Out::new();
            out.line(msg)?;
            out.finish()?;
        }
        Ok(())
    }
}

/// Reads a passphrase at the terminal (twice with `confirm`); refuses an empty one.
/// `var` names the settings that would have given it (`CISTA_PASSWORD`, `CISTA_TO_PASSWORD`).
fn prompt_passphrase(prompt: &str, confirm: bool, var: &str) -> Result<Zeroizing<String>> {
    {
        let read = |p: &str| -> Result<Zeroizing<String>> {
            rpassword::prompt_password(p).map(Zeroizing::new).map_err(|_| {
                anyhow!("no password given: set {var}_FILE, {var}_COMMAND or {var}, or run on a terminal")
            })
        };
        let pw = read(prompt)?;
        if pw.is_empty() {
            return Err(EmptyPassword {
                from: PasswordSource::Prompt,
                opening: !confirm,
            }
            .into());
        }
        if confirm {
            let again = read("enter the password again: ")?;
            if *pw != *again {
                bail!("the passwords do not match; nothing was changed");
            }
        }
        Ok(pw)
    }
}

/// Where a passphrase came from, so an error can name the setting to fix.
#[derive(Debug, Clone)]
pub enum PasswordSource {
    /// `--password-file` / `CISTA_PASSWORD_FILE`.
    File(PathBuf),
    /// `--password-command` / `CISTA_PASSWORD_COMMAND`.
    Command,
    /// `CISTA_PASSWORD` (or the variable named).
    Env(&'static str),
    /// `--new-password-file` / `CISTA_NEW_PASSWORD_FILE`.
    NewFile(PathBuf),
    /// The terminal.
    Prompt,
}

impl std::fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "the password file {}", p.display()),
            Self::Command => f.write_str("the password command"),
            Self::Env(var) => f.write_str(var),
            Self::NewFile(p) => write!(f, "the new password file {}", p.display()),
            Self::Prompt => f.write_str("the prompt"),
        }
    }
}

/// An empty passphrase: refused for a new key, and always wrong for opening a repository
/// (exit code 12, like a wrong one).
#[derive(Debug, thiserror::Error)]
#[error("{}", if *.opening {
    format!("the password from {from} is empty, and no repository has an empty password: give the repository's password")
} else {
    format!("the password from {from} is empty: an empty password is not allowed; give a non-empty one (nothing was created)")
})]
pub struct EmptyPassword {
    /// Where it came from.
    pub from: PasswordSource,
    /// Opening an existing repository (else creating a key).
    pub opening: bool,
}

/// The second repository of `copy` (`--to`) or `init --copy-chunker-params-from` is
/// missing or refuses its password: the library's errors name the main repository's
/// settings, these name the right ones (exit codes 10 and 12, as for the main repository).
#[derive(Debug, thiserror::Error)]
pub enum OtherRepo {
    /// No repository at the location.
    #[error("no {which} at {location}: check the location, or create it with `cista init`")]
    NotFound { which: String, location: String },
    /// No key opens with the passphrase.
    #[error(
        "wrong password for the {which}: the one from {from} opens no key; check {var}_FILE, {var}_COMMAND or {var}"
    )]
    WrongPassword {
        which: String,
        from: PasswordSource,
        var: &'static str,
    },
}

/// Parses `M,T,P` (KiB, passes, lanes) for `--kdf-params`.
fn parse_kdf(s: &str) -> Result<KdfParams, String> {
    let v: Vec<u32> = s
        .split(',')
        .map(|x| x.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let [m_kib, t, p] = v[..] else {
        return Err("expected MEMORY_KIB,ITERATIONS,PARALLELISM".into());
    };
    let k = KdfParams { m_kib, t, p };
    k.validate().map_err(|e| e.to_string())?;
    Ok(k)
}

/// Runs a parsed command; returns the exit code on success.
pub fn run(cli: Cli) -> Result<u8> {
    // Passphrases and master keys must never land in a core dump (best effort).
    cista::repo::keys::protect_process_memory();
    let cancel: CancelFlag = Arc::new(AtomicBool::new(false));
    // `repair` fixes storage itself: a cached copy must not stand in for it. `check` judges
    // storage, so it reads everything from it, through a fresh temporary cache that only
    // saves reading a tree pack more than once (restic's check does the same).
    let is_check = matches!(cli.command, Command::Check(_));
    let cache = storage::CacheOptions {
        dir: cli.cache_dir,
        disabled: cli.no_cache || matches!(cli.command, Command::Repair(_)),
        temporary: is_check,
        cleanup: cli.cleanup_cache,
        local: std::env::var_os("CISTA_CACHE_LOCAL").is_some_and(|v| v == "1"),
        quiet: cli.quiet,
    };
    let print_stats = std::env::var_os("CISTA_DEBUG_BACKEND_STATS").is_some_and(|v| v == "1");
    let env = Env {
        repo_location: cli.repo,
        backend_options: cli.options,
        password_file: cli.password_file,
        password_command: cli.password_command,
        json: cli.json,
        quiet: cli.quiet,
        cancel,
        lock: LockOptions {
            retry: cli.retry_lock.unwrap_or_default(),
            no_lock: cli.no_lock,
            list_ahead: Vec::new(),
        },
        storage: storage::Storage::new(cache),
    };
    let result = match cli.command {
        Command::Init(a) => repo_cmds::init(&env, a),
        Command::Backup(a) => backup::run(&env, a),
        Command::Snapshots(a) => snapshots::run(&env, a),
        Command::Forget(a) => forget::run(&env, a),
        Command::Tag(a) => tag::run(&env, a),
        Command::Ls(a) => browse::ls(&env, a),
        Command::Dump(a) => browse::dump(&env, a),
        Command::Restore(a) => browse::restore(&env, a),
        Command::Check(a) => repo_cmds::check(&env, a),
        Command::Key(k) => keys::run(&env, k),
        Command::Pg(c) => pg::run(&env, c),
        Command::Prune(a) => prune::run(&env, a),
        Command::Repair(c) => repair::run(&env, c),
        Command::Unlock(a) => repo_cmds::unlock(&env, a),
        Command::Version => version(&env),
        Command::Completion(a) => docs_cmds::completion(a),
        Command::Man(a) => docs_cmds::man(&env, a),
        Command::Cat(a) => cat::run(&env, a),
        Command::Debug(d) => lock_cmds::debug(&env, d),
        Command::Rewrite(a) => rewrite::rewrite(&env, a),
        Command::Copy(a) => copy::run(&env, a),
        Command::Config(c) => {
            config_cmd::run(&env, c, cli.config.as_deref(), cli.profile.as_deref())
        }
    };
    if print_stats {
        env.storage.print_stats();
    }
    result
}

/// `version`: like restic's "restic 0.17.0 compiled with go1.22 on linux/amd64"; the JSON form
/// has restic's `message_type` and `version`, with `os`/`arch` for Go's `go_os`/`go_arch`.
fn version(env: &Env) -> Result<u8> {
    let v = env!("CARGO_PKG_VERSION");
    let (os, arch) = (std::env::consts::OS, std::env::consts::ARCH);
    let mut out = output::Out::new();
    if env.json {
        out.line(
            serde_json::json!({"message_type": "version", "version": v, "os": os, "arch": arch}),
        )?;
    } else {
        out.line(format_args!("cista {v} on {os}/{arch}"))?;
    }
    out.finish()?;
    Ok(code::OK)
}

/// The documented exit code for an error.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<cista::Error>() {
        Some(cista::Error::RepoNotFound { .. }) => code::NO_REPO,
        Some(cista::Error::Locked { .. }) => code::LOCKED,
        Some(cista::Error::WrongPassword | cista::Error::WrongPasswordOrDamagedKeys { .. }) => {
            code::WRONG_PASSWORD
        }
        Some(cista::Error::Interrupted) => code::INTERRUPTED,
        _ if err.downcast_ref::<config::ConfigError>().is_some() => code::USAGE,
        _ if let Some(o) = err.downcast_ref::<OtherRepo>() => match o {
            OtherRepo::NotFound { .. } => code::NO_REPO,
            OtherRepo::WrongPassword { .. } => code::WRONG_PASSWORD,
        },
        _ if err
            .downcast_ref::<EmptyPassword>()
            .is_some_and(|e| e.opening) =>
        {
            code::WRONG_PASSWORD
        }
        _ => code::ERROR,
    }
}
