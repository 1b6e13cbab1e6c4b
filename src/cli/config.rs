//! Configuration profiles: a TOML file of named profiles whose keys are cista's own long
//! flags (docs/CONFIG.md). A profile's top-level keys are global flags (`repo`,
//! `password-file`, ...); a table named after a command holds that command's flags
//! (`[default.backup]`, `[default.pg.backup]`). A key acts as the flag given on the command
//! line, so it means exactly what the flag means; a flag actually given on the command line
//! replaces it (a repeatable flag's values replace the file's list). Precedence: command line,
//! then the profile, then environment variables, then defaults.
//!
//! Why flags and not a second schema: every flag gets its config key for free and can never
//! drift from it, and each value is checked by the flag's own parser, with the file and line
//! named, before anything runs.
//!
//! The file: `--config FILE`, else `$CISTA_CONFIG` (set but empty: no file), else `~/.config/cista/cista.toml`, else
//! `/etc/cista/cista.toml`; the profile: `-P/--profile NAME`, else `$CISTA_PROFILE`, else
//! `default`. Without a file (or without the default profile in it, when none was asked for),
//! nothing is added. `${NAME}` in a string is the environment variable NAME (unset: an
//! error); `$$` is a `$`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Arg, ArgAction, ArgMatches, Command};

/// A config file or profile that cannot be used: a usage error (exit 2), with the file and
/// line named.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Any error of this module as a [`ConfigError`] (reading the file keeps its cause).
pub fn usage(e: anyhow::Error) -> anyhow::Error {
    if e.downcast_ref::<std::io::Error>().is_some() {
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        return ConfigError(chain.join(": ")).into();
    }
    ConfigError(e.to_string()).into()
}

/// A value of the file, strings already substituted.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float, as written.
    Float(String),
    /// `true` or `false`.
    Bool(bool),
    /// An array, with each element's line.
    List(Vec<(usize, Value)>),
    /// A table.
    Table(Vec<Entry>),
}

/// One key of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its name.
    pub key: String,
    /// The line it is on (1-based).
    pub line: usize,
    /// Its value.
    pub value: Value,
}

/// A loaded config file.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its profiles, in file order.
    pub profiles: Vec<Entry>,
}

impl ConfigFile {
    /// Reads and parses `path`; substitutes `${ENV}` in strings.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        Self::parse(path, &text)
    }

    /// Parses `text` as the file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let doc = toml::de::DeTable::parse(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(s.start));
            anyhow!(
                "config {} line {line}: {}",
                path.display(),
                e.message().trim()
            )
        })?;
        let mut profiles = Vec::new();
        for (k, v) in doc.get_ref() {
            let line = line_of(k.span().start);
            let value = convert(path, v, &line_of)?;
            if !matches!(value, Value::Table(_)) {
                bail!(
                    "config {} line {line}: `{}` is not a profile: keys belong in a profile's table (`[default]`)",
                    path.display(),
                    k.get_ref()
                );
            }
            profiles.push(Entry {
                key: k.get_ref().to_string(),
                line,
                value,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            profiles,
        })
    }

    /// The profile `name`'s entries with `${ENV}` substituted (only the profile used needs
    /// its variables set).
    pub fn profile(&self, name: &str) -> Result<Option<Vec<Entry>>> {
        let Some(p) = self.profiles.iter().find(|p| p.key == name) else {
            return Ok(None);
        };
        match &p.value {
            Value::Table(t) => Ok(Some(substituted(&self.path, t)?)),
            _ => Ok(Some(Vec::new())),
        }
    }

    /// The names of its profiles.
    pub fn names(&self) -> Vec<&str> {
        self.profiles.iter().map(|p| p.key.as_str()).collect()
    }
}

fn convert(
    path: &Path,
    v: &toml::Spanned<toml::de::DeValue<'_>>,
    line_of: &dyn Fn(usize) -> usize,
) -> Result<Value> {
    use toml::de::DeValue;
    let line = line_of(v.span().start);
    Ok(match v.get_ref() {
        DeValue::String(s) => Value::Str(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            Value::Int(i64::from_str_radix(&digits, i.radix()).map_err(|_| {
                anyhow!(
                    "config {} line {line}: the integer {} does not fit in 64 bits",
                    path.display(),
                    i.as_str()
                )
            })?)
        }
        DeValue::Float(f) => Value::Float(f.as_str().to_owned()),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::Str(d.to_string()),
        DeValue::Array(a) => Value::List(
            a.iter()
                .map(|e| Ok((line_of(e.span().start), convert(path, e, line_of)?)))
                .collect::<Result<_>>()?,
        ),
        DeValue::Table(t) => Value::Table(
            t.iter()
                .map(|(k, v)| {
                    Ok(Entry {
                        key: k.get_ref().to_string(),
                        line: line_of(k.span().start),
                        value: convert(path, v, line_of)?,
                    })
                })
                .collect::<Result<_>>()?,
        ),
    })
}

fn substituted(path: &Path, entries: &[Entry]) -> Result<Vec<Entry>> {
    fn value(path: &Path, line: usize, v: &Value) -> Result<Value> {
        Ok(match v {
            Value::Str(s) => Value::Str(
                substitute(s).map_err(|e| anyhow!("config {} line {line}: {e}", path.display()))?,
            ),
            Value::List(l) => Value::List(
                l.iter()
                    .map(|(n, v)| Ok((*n, value(path, *n, v)?)))
                    .collect::<Result<_>>()?,
            ),
            Value::Table(t) => Value::Table(substituted(path, t)?),
            v => v.clone(),
        })
    }
    entries
        .iter()
        .map(|e| {
            Ok(Entry {
                key: e.key.clone(),
                line: e.line,
                value: value(path, e.line, &e.value)?,
            })
        })
        .collect()
}

/// `${NAME}` replaced by the environment variable, `$$` by `$`.
fn substitute(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {s:?} (write $$ for a $)"))?;
            let name = &body[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("${{{name}}} is not a variable name"));
            }
            let value = std::env::var(name)
                .map_err(|_| format!("${{{name}}} is not set in the environment"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Where the config file is, if any: `explicit`, `$CISTA_CONFIG` (empty: none), then the
/// user's and the system's file, the first that exists.
pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    // Set but empty: no config file at all (a script that wants none, the test suite).
    if let Some(p) = std::env::var_os("CISTA_CONFIG") {
        return (!p.is_empty()).then(|| PathBuf::from(p));
    }
    let user = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("cista/cista.toml"));
    user.into_iter()
        .chain([PathBuf::from("/etc/cista/cista.toml")])
        .find(|p| p.is_file())
}

/// Flags a profile may not set: they choose the file and the profile, or print help.
const NOT_IN_A_PROFILE: &[&str] = &["config", "profile", "help", "version"];

/// Flags by clap id, with the tokens each stands for.
type Flags = Vec<(String, Vec<OsString>)>;
/// Tables named after a subcommand: the key and its entries.
type Sections<'e> = Vec<(&'e Entry, &'e [Entry])>;

/// The command-line tokens a profile's table `entries` stands for, for the command `cmd`
/// (built, so global flags are among its arguments); tables named after a subcommand are
/// returned with it for the caller to descend into. `where_` names the table in messages.
pub fn tokens_for<'e>(
    file: &Path,
    cmd: &Command,
    entries: &'e [Entry],
    where_: &str,
) -> Result<(Flags, Sections<'e>)> {
    let mut flags: Vec<(String, Vec<OsString>)> = Vec::new();
    let mut sections = Vec::new();
    for e in entries {
        if let Value::Table(t) = &e.value {
            if cmd.find_subcommand(&e.key).is_some() {
                sections.push((e, t.as_slice()));
                continue;
            }
            bail!(
                "config {} line {}: {where_} has no command `{}` (a table names a command: {})",
                file.display(),
                e.line,
                e.key,
                cmd.get_subcommands()
                    .map(|c| c.get_name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(e.key.as_str()))
            .filter(|_| !NOT_IN_A_PROFILE.contains(&e.key.as_str()))
            .ok_or_else(|| {
                anyhow!(
                    "config {} line {}: unknown key `{}` in {where_} (its keys are the long flags of that command without the dashes: see its --help)",
                    file.display(),
                    e.line,
                    e.key
                )
            })?;
        let tokens = arg_tokens(cmd, arg, e).map_err(|m| {
            anyhow!(
                "config {} line {}: `{}`: {m}",
                file.display(),
                e.line,
                e.key
            )
        })?;
        flags.retain(|(id, _)| id != arg.get_id().as_str());
        flags.push((arg.get_id().to_string(), tokens));
    }
    Ok((flags, sections))
}

/// Checks a profile's table and every command table below it (`cmd` built).
pub fn validate(path: &Path, cmd: &Command, entries: &[Entry], where_: &str) -> Result<()> {
    let (_, sections) = tokens_for(path, cmd, entries, where_)?;
    for (e, t) in sections {
        if let Some(sub) = cmd.find_subcommand(&e.key) {
            validate(path, sub, t, &format!("{where_}.{}", e.key))?;
        }
    }
    Ok(())
}

/// The tokens for one key, each value checked by the flag's own parser.
fn arg_tokens(cmd: &Command, arg: &Arg, e: &Entry) -> Result<Vec<OsString>, String> {
    let long = format!("--{}", e.key);
    let scalar = |v: &Value| -> Result<String, String> {
        match v {
            Value::Str(s) => Ok(s.clone()),
            Value::Int(i) => Ok(i.to_string()),
            Value::Float(f) => Ok(f.clone()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::List(_) | Value::Table(_) => Err("takes one value, not a list".into()),
        }
    };
    // The flag's own parser, on a one-flag command (clap keeps `parse_ref` to itself).
    let probe = Command::new(cmd.get_name().to_owned()).arg(
        Arg::new("value")
            .long(e.key.clone())
            .value_names(arg.get_value_names().unwrap_or_default().to_vec())
            .num_args(1)
            .allow_hyphen_values(true)
            .value_parser(arg.get_value_parser().clone()),
    );
    let check = |s: &str| -> Result<(), String> {
        probe
            .clone()
            .try_get_matches_from([OsString::from("cista"), format!("{long}={s}").into()])
            .map(|_| ())
            .map_err(|err| {
                let text = err.to_string();
                let first = text.lines().next().unwrap_or_default();
                first.trim_start_matches("error: ").to_owned()
            })
    };
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => match e.value {
            Value::Bool(true) => Ok(vec![long.into()]),
            Value::Bool(false) => Ok(Vec::new()),
            _ => Err("is a switch: write true or false".into()),
        },
        ArgAction::Count => match e.value {
            Value::Bool(b) => Ok(if b { vec![long.into()] } else { Vec::new() }),
            Value::Int(n) if (0..=16).contains(&n) => {
                Ok((0..n).map(|_| long.clone().into()).collect())
            }
            _ => Err("counts: write a number or true".into()),
        },
        ArgAction::Append => {
            let values: Vec<&Value> = match &e.value {
                Value::List(l) => l.iter().map(|(_, v)| v).collect(),
                v => vec![v],
            };
            let mut out = Vec::new();
            for v in values {
                let s = scalar(v)?;
                check(&s)?;
                out.push(format!("{long}={s}").into());
            }
            Ok(out)
        }
        _ => {
            let s = scalar(&e.value)?;
            check(&s)?;
            Ok(vec![format!("{long}={s}").into()])
        }
    }
}

/// `argv` with the selected profile's flags put in, each after the command it belongs to,
/// unless the command line gives that flag itself. `root` is the full command definition;
/// `argv` the process's arguments. Without a file or profile, `argv` as it is.
pub fn expand(root: &Command, argv: Vec<OsString>) -> Result<Vec<OsString>> {
    // A command line clap refuses is left for the real parse to report.
    let Ok(matches) = root.clone().try_get_matches_from(&argv) else {
        return Ok(argv);
    };
    let explicit_file = matches.get_one::<PathBuf>("config").cloned();
    let explicit_profile = matches.get_one::<String>("profile").cloned();
    let Some(path) = locate(explicit_file.as_deref()) else {
        if let Some(p) = explicit_profile {
            bail!(
                "profile {p:?} asked for, but there is no config file: pass --config FILE or set CISTA_CONFIG (looked in ~/.config/cista/cista.toml and /etc/cista/cista.toml)"
            );
        }
        return Ok(argv);
    };
    let file = ConfigFile::load(&path)?;
    let name = explicit_profile.clone().unwrap_or_else(|| "default".into());
    let Some(entries) = file.profile(&name)? else {
        if explicit_profile.is_some() || explicit_file.is_some() {
            bail!(
                "config {} has no profile {name:?} (it has: {})",
                path.display(),
                file.names().join(", ")
            );
        }
        return Ok(argv);
    };
    let mut built = root.clone();
    built.build();
    // The whole profile, so a mistake in a command's table shows on every run, not first
    // on the night that command runs.
    validate(&path, &built, &entries, &format!("profile {name}"))?;
    // The command path the command line chose, each level with its matches.
    let mut levels: Vec<(&Command, &ArgMatches)> = vec![(&built, &matches)];
    while let Some((sub, m)) = levels.last().and_then(|(c, m)| {
        let (name, sm) = m.subcommand()?;
        Some((c.find_subcommand(name)?, sm))
    }) {
        levels.push((sub, m));
    }
    let positions = command_positions(&built, &argv);
    let mut inserts: Vec<(usize, Vec<OsString>)> = Vec::new();
    let mut table: &[Entry] = &entries;
    let mut where_ = format!("profile {name}");
    for (depth, (cmd, m)) in levels.iter().enumerate() {
        let (flags, sections) = tokens_for(&path, cmd, table, &where_)?;
        let mut add = Vec::new();
        for (id, tokens) in flags {
            let given = matches!(
                m.value_source(&id),
                Some(clap::parser::ValueSource::CommandLine)
            );
            if !given {
                add.extend(tokens);
            }
        }
        let at = if depth == 0 {
            1
        } else {
            match positions.get(depth - 1) {
                Some(p) => p + 1,
                None => break,
            }
        };
        inserts.push((at, add));
        let Some((sub, _)) = levels.get(depth + 1) else {
            break;
        };
        match sections.iter().find(|(e, _)| e.key == sub.get_name()) {
            Some((_, t)) => {
                table = t;
                where_ = format!("{where_}.{}", sub.get_name());
            }
            None => {
                table = &[];
            }
        }
    }
    let mut argv = argv;
    for (at, tokens) in inserts.into_iter().rev() {
        let at = at.min(argv.len());
        argv.splice(at..at, tokens);
    }
    Ok(argv)
}

/// The indices in `argv` of the subcommand names, outermost first, found by walking the
/// tokens as clap does: an option that takes a value and has none attached consumes the next
/// token; `--` ends the options.
fn command_positions(root: &Command, argv: &[OsString]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut cmd = root;
    let mut i = 1;
    let takes_value = |a: &Arg| matches!(a.get_action(), ArgAction::Set | ArgAction::Append);
    while i < argv.len() {
        let t = argv[i].to_string_lossy();
        if t == "--" {
            break;
        }
        if let Some(long) = t.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, _)) => (n, true),
                None => (long, false),
            };
            let consumes = !attached
                && cmd
                    .get_arguments()
                    .find(|a| a.get_long() == Some(name))
                    .is_some_and(takes_value);
            i += if consumes { 2 } else { 1 };
            continue;
        }
        if t.len() > 1 && t.starts_with('-') {
            let mut consumes = false;
            for (k, c) in t.chars().skip(1).enumerate() {
                if let Some(a) = cmd.get_arguments().find(|a| a.get_short() == Some(c))
                    && takes_value(a)
                {
                    consumes = k + 2 == t.chars().count();
                    break;
                }
            }
            i += if consumes { 2 } else { 1 };
            continue;
        }
        match cmd.find_subcommand(t.as_ref()) {
            Some(sub) => {
                out.push(i);
                cmd = sub;
            }
            None if cmd.has_subcommands() => {}
            None => break,
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution() {
        let home = std::env::var("HOME").unwrap();
        assert_eq!(substitute("${HOME}/x").unwrap(), format!("{home}/x"));
        assert_eq!(substitute("a$$b $5").unwrap(), "a$b $5");
        assert!(
            substitute("${CISTA_TEST_UNSET_VAR}")
                .unwrap_err()
                .contains("not set")
        );
        assert!(substitute("${A").unwrap_err().contains("unclosed"));
        assert!(substitute("${a-b}").unwrap_err().contains("not a variable"));
    }

    #[test]
    fn lines_and_values() {
        let text = "# c\n[default]\nrepo = \"/r\"\n\n[default.backup]\ntag = [\"a\",\n  \"b\"]\nlimit = 0x10\n";
        let f = ConfigFile::parse(Path::new("c.toml"), text).unwrap();
        let p = f.profile("default").unwrap().unwrap();
        assert_eq!(p[0].key, "repo");
        assert_eq!(p[0].line, 3);
        let Value::Table(b) = &p[1].value else {
            panic!("{p:?}")
        };
        assert_eq!(b[0].line, 6);
        assert_eq!(
            b[0].value,
            Value::List(vec![
                (6, Value::Str("a".into())),
                (7, Value::Str("b".into()))
            ])
        );
        assert_eq!(b[1].value, Value::Int(16));
        let err = ConfigFile::parse(Path::new("c.toml"), "[default]\nrepo = \n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config c.toml line 2:"), "{err}");
        let err = ConfigFile::parse(Path::new("c.toml"), "repo = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1") && err.contains("not a profile"),
            "{err}"
        );
    }
}
