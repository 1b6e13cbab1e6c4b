//! `config show` and `config check`: the config file's profiles, read and validated without
//! touching a repository (docs/CONFIG.md).

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use super::config::{self, ConfigError, ConfigFile, Entry, Value};
use super::{Env, code, output};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the profile (-P NAME, default `default`) as the file gives it, after `${ENV}`
    /// substitution, with secrets masked.
    Show,
    /// Check every profile of the file: keys, values, commands; touches no repository.
    Check,
}

pub fn run(env: &Env, c: ConfigCommand, file: Option<&Path>, profile: Option<&str>) -> Result<u8> {
    let path = config::locate(file).ok_or_else(|| {
        ConfigError(
            "no config file: pass --config FILE or set CISTA_CONFIG (looked in ~/.config/cista/cista.toml and /etc/cista/cista.toml)".into(),
        )
    })?;
    let loaded = ConfigFile::load(&path).map_err(config::usage)?;
    let root = {
        let mut c = super::help::command();
        c.build();
        c
    };
    match c {
        ConfigCommand::Check => {
            for name in loaded.names() {
                let entries = loaded
                    .profile(name)
                    .map_err(config::usage)?
                    .unwrap_or_default();
                config::validate(&path, &root, &entries, &format!("profile {name}"))
                    .map_err(config::usage)?;
            }
            let names = loaded.names();
            if env.json {
                let mut out = output::Out::new();
                out.line(json!({"message_type": "config_check", "file": path, "profiles": names, "valid": true}))?;
                out.finish()?;
            } else {
                env.info(format_args!(
                    "{}: {} profile{} valid ({})",
                    path.display(),
                    names.len(),
                    if names.len() == 1 { "" } else { "s" },
                    names.join(", ")
                ))?;
            }
        }
        ConfigCommand::Show => {
            let name = profile.unwrap_or("default");
            let entries = loaded
                .profile(name)
                .map_err(config::usage)?
                .ok_or_else(|| {
                    ConfigError(format!(
                        "config {} has no profile {name:?} (it has: {})",
                        path.display(),
                        loaded.names().join(", ")
                    ))
                })?;
            config::validate(&path, &root, &entries, &format!("profile {name}"))
                .map_err(config::usage)?;
            let mut out = output::Out::new();
            if env.json {
                out.line(json!({"message_type": "config", "file": path, "profile": name, "values": to_json(&entries)}))?;
            } else {
                out.line(format_args!("# {}, profile {name}", loaded.path.display()))?;
                let mut text = String::new();
                show_table(&mut text, &[name.to_owned()], &entries);
                out.line(text.trim_end())?;
            }
            out.finish()?;
        }
    }
    Ok(code::OK)
}

/// Whether a key's value is a secret to mask: a password or key given inline.
fn secret_key(key: &str) -> bool {
    ["password", "secret", "token", "passphrase"]
        .iter()
        .any(|w| key.contains(w))
        && !key.ends_with("-file")
        && !key.ends_with("-command")
}

/// `s` with secrets masked: a `KEY=VALUE` option whose key names a secret, and a URL's
/// `user:password@`.
fn mask(key: &str, s: &str) -> String {
    if secret_key(key) {
        return "***".into();
    }
    if let Some((k, _)) = s.split_once('=')
        && (secret_key(k) || k.ends_with("key") || k.contains("key_id") || k.contains("access_key"))
    {
        return format!("{k}=***");
    }
    if let Some(scheme_end) = s.find("://")
        && let Some(at) = s[scheme_end + 3..].find('@')
    {
        let userinfo = &s[scheme_end + 3..scheme_end + 3 + at];
        if let Some((user, _)) = userinfo.split_once(':') {
            return format!(
                "{}{user}:***{}",
                &s[..scheme_end + 3],
                &s[scheme_end + 3 + at..]
            );
        }
    }
    s.to_owned()
}

fn scalar_text(key: &str, v: &Value) -> String {
    match v {
        Value::Str(s) => toml_string(&mask(key, s)),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.clone(),
        Value::Bool(b) => b.to_string(),
        Value::List(l) => format!(
            "[{}]",
            l.iter()
                .map(|(_, v)| scalar_text(key, v))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Table(_) => "{...}".into(),
    }
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

fn show_table(text: &mut String, path: &[String], entries: &[Entry]) {
    text.push_str(&format!("[{}]\n", path.join(".")));
    for e in entries {
        if !matches!(e.value, Value::Table(_)) {
            text.push_str(&format!("{} = {}\n", e.key, scalar_text(&e.key, &e.value)));
        }
    }
    for e in entries {
        if let Value::Table(t) = &e.value {
            text.push('\n');
            let mut p = path.to_vec();
            p.push(e.key.clone());
            show_table(text, &p, t);
        }
    }
}

fn to_json(entries: &[Entry]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for e in entries {
        m.insert(e.key.clone(), value_json(&e.key, &e.value));
    }
    serde_json::Value::Object(m)
}

fn value_json(key: &str, v: &Value) -> serde_json::Value {
    match v {
        Value::Str(s) => json!(mask(key, s)),
        Value::Int(i) => json!(i),
        Value::Float(f) => json!(f.parse::<f64>().ok()),
        Value::Bool(b) => json!(b),
        Value::List(l) => {
            serde_json::Value::Array(l.iter().map(|(_, v)| value_json(key, v)).collect())
        }
        Value::Table(t) => to_json(t),
    }
}
