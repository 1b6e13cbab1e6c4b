//! `key list|add|remove|passwd`.

use anyhow::{Context, Result};
use cista::format::key::KdfParams;
use cista::format::lock::LockMode;
use cista::id::KeyId;
use cista::repo::keys;
use clap::{Args, Subcommand};
use serde_json::json;

use super::{Env, code, output, parse_kdf};

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the keys.
    List,
    /// Add a passphrase (read from CISTA_NEW_PASSWORD_FILE or a prompt).
    Add(NewKeyArgs),
    /// Remove a key by id prefix (not the one in use, not the last one).
    Remove {
        /// Key id or unique prefix.
        id: String,
    },
    /// Change the passphrase used to open the repository.
    Passwd(NewKeyArgs),
}

#[derive(Debug, Args)]
pub struct NewKeyArgs {
    /// File holding the new passphrase.
    #[arg(long, env = "CISTA_NEW_PASSWORD_FILE", hide_env_values = true)]
    new_password_file: Option<std::path::PathBuf>,
    /// Argon2id cost as MEMORY_KIB,ITERATIONS,PARALLELISM.
    #[arg(long, value_parser = parse_kdf)]
    kdf_params: Option<KdfParams>,
}

fn new_passphrase(env: &Env, a: &NewKeyArgs) -> Result<zeroize::Zeroizing<String>> {
    match &a.new_password_file {
        Some(f) => {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(f)
                    .with_context(|| format!("reading new password file {}", f.display()))?,
            );
            let pw = zeroize::Zeroizing::new(text.lines().next().unwrap_or_default().to_owned());
            if pw.is_empty() {
                return Err(super::EmptyPassword {
                    from: super::PasswordSource::NewFile(f.clone()),
                    opening: false,
                }
                .into());
            }
            Ok(pw)
        }
        None => env.prompt("enter the new password: ", true),
    }
}

fn resolve(list: &[keys::KeyEntry], prefix: &str) -> Result<KeyId> {
    let m: Vec<_> = list
        .iter()
        .filter(|k| k.id.0.hex_starts_with(prefix))
        .collect();
    match m.as_slice() {
        [k] => Ok(k.id),
        [] => anyhow::bail!("no key matches {prefix:?}; see `cista key list`"),
        _ => anyhow::bail!("key prefix {prefix:?} is ambiguous; give more digits"),
    }
}

pub fn run(env: &Env, cmd: KeyCommand) -> Result<u8> {
    // Listing reads; adding, removing and changing a key take the exclusive lock.
    let session = match cmd {
        KeyCommand::List => env.session(LockMode::Shared)?,
        _ => env.session_writing(LockMode::Exclusive)?,
    };
    let repo = session.repo().clone();
    match cmd {
        KeyCommand::List => {
            // Every key file with its state: a damaged one is listed, never a reason to stop.
            let list = keys::scan_keys(repo.backend())?;
            let mut out = output::Out::new();
            if env.json {
                let v: Vec<_> = list
                    .iter()
                    .map(|k| match &k.state {
                        Ok(i) => json!({"id": k.id.to_hex(), "current": k.id == repo.key_id(), "hostName": i.hostname,
                                        "userName": i.username, "created": output::local_short_time(i.created_unix_ns), "state": "ok"}),
                        Err(why) => json!({"id": k.id.to_hex(), "current": false, "state": "damaged", "error": why}),
                    })
                    .collect();
                out.line(serde_json::Value::Array(v))?;
            } else {
                out.line(format_args!(
                    " {:<10} {:<12} {:<20} created",
                    "id", "user", "host"
                ))?;
                for k in &list {
                    match &k.state {
                        Ok(i) => {
                            let cur = if k.id == repo.key_id() { '*' } else { ' ' };
                            out.line(format_args!(
                                "{cur}{:<10} {:<12} {:<20} {}",
                                k.id.to_string(),
                                i.username,
                                i.hostname,
                                output::local_short_time(i.created_unix_ns)
                            ))?;
                        }
                        Err(why) => {
                            out.line(format_args!(" {:<10} damaged: {why}", k.id.to_string()))?
                        }
                    }
                }
            }
            out.finish()?;
        }
        KeyCommand::Add(a) => {
            let pw = new_passphrase(env, &a)?;
            let id = repo.add_key(pw.as_bytes(), a.kdf_params.unwrap_or(KdfParams::DEFAULT))?;
            env.info(format_args!("saved new key {id}"))?;
        }
        KeyCommand::Remove { id } => {
            // Damaged key files can be removed too: resolve against every listed name.
            let list = keys::scan_keys(repo.backend())?;
            let id = resolve(&list, &id)?;
            repo.remove_key(&id)?;
            env.info(format_args!("removed key {id}"))?;
        }
        KeyCommand::Passwd(a) => {
            let pw = new_passphrase(env, &a)?;
            let new =
                repo.change_passphrase(pw.as_bytes(), a.kdf_params.unwrap_or(KdfParams::DEFAULT))?;
            env.info(format_args!(
                "password changed: new key {new} replaces {}",
                repo.key_id()
            ))?;
        }
    }
    Ok(code::OK)
}
