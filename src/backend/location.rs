//! Repository locations: the URL a user gives (`-r`, `CISTA_REPOSITORY`) parsed into a
//! [`Location`], before anything is opened.
//!
//! Owns the syntax of locations (docs/CLI.md, "Locations") and nothing else: no I/O, no
//! credentials. A location never carries a secret: a URL with a password or key in it is
//! refused (secrets come from the environment or files, where they do not end up in shell
//! history, process lists or messages), and parse errors quote only the scheme, so a pasted
//! secret is not echoed back. Besides the URL forms, restic's `s3:https://host/bucket/prefix`
//! and `sftp:user@host:/path` are accepted, so a restic user's location works unchanged.

use std::fmt;
use std::path::PathBuf;

use super::{BackendError, ErrorKind};

/// Longest location accepted: no real one is near it.
const MAX_LEN: usize = 4096;

/// Where a repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local folder (`/path`, `file:///path`, `local:/path`).
    Local(PathBuf),
    /// An S3 bucket (`s3://bucket/prefix`), or restic's `s3:http[s]://host[:port]/bucket/prefix`
    /// with the endpoint in it.
    S3 {
        /// `http[s]://host[:port]` when given in the location (restic's form).
        endpoint: Option<String>,
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket, without leading or trailing `/` (may be empty).
        prefix: String,
    },
    /// A Google Cloud Storage bucket (`gs://bucket/prefix`).
    Gcs {
        /// Bucket name.
        bucket: String,
        /// Object prefix (may be empty).
        prefix: String,
    },
    /// An Azure Blob Storage container (`azblob://container/prefix`).
    Azblob {
        /// Container name.
        container: String,
        /// Blob prefix (may be empty).
        prefix: String,
    },
    /// A folder on an SSH server (`sftp://[user@]host[:port]/path`, restic's
    /// `sftp:[user@]host:/path`).
    Sftp {
        /// Login name; `None` leaves it to ssh (its config, then the local user).
        user: Option<String>,
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// Port; `None` is ssh's default (its config, then 22).
        port: Option<u16>,
        /// Absolute path of the repository folder.
        path: String,
    },
    /// A WebDAV folder (`webdav+https://host[:port]/path`; `webdav+http://` for tests).
    Webdav {
        /// Whether to use TLS.
        https: bool,
        /// `host[:port]`.
        host: String,
        /// Absolute path of the repository folder.
        path: String,
    },
}

/// A location that does not parse: one line naming what is wrong and what to write instead.
fn invalid(message: impl Into<String>) -> BackendError {
    BackendError {
        kind: ErrorKind::Permanent,
        op: "parse",
        path: "repository location".into(),
        message: message.into(),
    }
}

impl Location {
    /// Parses a location. Anything without a known scheme is a local path.
    pub fn parse(s: &str) -> Result<Location, BackendError> {
        if s.is_empty() {
            return Err(invalid("empty location: give a folder or a URL"));
        }
        if s.len() > MAX_LEN {
            return Err(invalid(format!(
                "location is {} bytes long, more than {MAX_LEN}",
                s.len()
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(invalid("location contains a control character"));
        }
        if let Some(rest) = s.strip_prefix("local:") {
            return local(rest);
        }
        // restic's forms first: `s3:http://host/...` holds a `://` of its own.
        if !s.starts_with("s3://")
            && let Some(rest) = s.strip_prefix("s3:")
        {
            return restic_s3(rest);
        }
        if !s.starts_with("sftp://")
            && let Some(rest) = s.strip_prefix("sftp:")
        {
            return restic_sftp(rest);
        }
        if let Some((scheme, rest)) = s.split_once("://") {
            return match scheme {
                "file" => file_url(rest),
                "s3" => bucket_url("s3", rest).map(|(bucket, prefix)| Location::S3 {
                    endpoint: None,
                    bucket,
                    prefix,
                }),
                "gs" => {
                    bucket_url("gs", rest).map(|(bucket, prefix)| Location::Gcs { bucket, prefix })
                }
                "azblob" => bucket_url("azblob", rest)
                    .map(|(container, prefix)| Location::Azblob { container, prefix }),
                "sftp" => sftp_url(rest),
                "webdav+https" => webdav_url(true, rest),
                "webdav+http" => webdav_url(false, rest),
                // The scheme alone: it cannot hold a secret.
                other if is_scheme(other) => Err(invalid(format!(
                    "unknown scheme {other}://: use a folder, file://, s3://, gs://, azblob://, sftp:// or webdav+https://"
                ))),
                // `./odd://name` is a folder.
                _ => local(s),
            };
        }
        local(s)
    }

    /// Whether the repository is a local folder (no cache, no network).
    pub fn is_local(&self) -> bool {
        matches!(self, Location::Local(_))
    }

    /// The service's name, as `-o <service>.key=value` options are prefixed (restic's names:
    /// `s3`, `gs`, `azure`, `sftp`; `webdav` and `local` for the others).
    pub fn service(&self) -> &'static str {
        match self {
            Location::Local(_) => "local",
            Location::S3 { .. } => "s3",
            Location::Gcs { .. } => "gs",
            Location::Azblob { .. } => "azure",
            Location::Sftp { .. } => "sftp",
            Location::Webdav { .. } => "webdav",
        }
    }
}

impl fmt::Display for Location {
    /// The location in URL form: never a secret, because a location never holds one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_prefix = |f: &mut fmt::Formatter<'_>, prefix: &str| {
            if prefix.is_empty() {
                Ok(())
            } else {
                write!(f, "/{prefix}")
            }
        };
        match self {
            Location::Local(p) => write!(f, "local:{}", p.display()),
            Location::S3 {
                endpoint: Some(e),
                bucket,
                prefix,
            } => {
                write!(f, "s3:{e}/{bucket}")?;
                with_prefix(f, prefix)
            }
            Location::S3 {
                endpoint: None,
                bucket,
                prefix,
            } => {
                write!(f, "s3://{bucket}")?;
                with_prefix(f, prefix)
            }
            Location::Gcs { bucket, prefix } => {
                write!(f, "gs://{bucket}")?;
                with_prefix(f, prefix)
            }
            Location::Azblob { container, prefix } => {
                write!(f, "azblob://{container}")?;
                with_prefix(f, prefix)
            }
            Location::Sftp {
                user,
                host,
                port,
                path,
            } => {
                f.write_str("sftp://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]")?;
                } else {
                    f.write_str(host)?;
                }
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                f.write_str(path)
            }
            Location::Webdav { https, host, path } => {
                let s = if *https {
                    "webdav+https"
                } else {
                    "webdav+http"
                };
                write!(f, "{s}://{host}{path}")
            }
        }
    }
}

/// RFC 3986's scheme syntax: a letter, then letters, digits, `+`, `-`, `.`.
fn is_scheme(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

fn local(path: &str) -> Result<Location, BackendError> {
    if path.is_empty() {
        return Err(invalid("empty folder name: give the repository's folder"));
    }
    Ok(Location::Local(PathBuf::from(path)))
}

/// `file:///path` (an empty or `localhost` authority only: a file URL names a local path).
fn file_url(rest: &str) -> Result<Location, BackendError> {
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    if !path.starts_with('/') {
        return Err(invalid(
            "file:// URLs name a local absolute path: write file:///path (three slashes)",
        ));
    }
    no_escapes("file://", path)?;
    local(path)
}

/// Percent-escapes are not decoded (a repository path has no need of them), so refuse them
/// rather than open a folder whose name is the escape.
fn no_escapes(scheme: &str, s: &str) -> Result<(), BackendError> {
    if s.contains('%') {
        return Err(invalid(format!(
            "{scheme} locations are not percent-decoded: write the name as it is"
        )));
    }
    Ok(())
}

/// A URL's authority must not carry credentials; the message never repeats them.
fn no_userinfo(scheme: &str, authority: &str, allow_user: bool) -> Result<(), BackendError> {
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && (!allow_user || userinfo.contains(':'))
    {
        return Err(invalid(format!(
            "{scheme} locations must not contain credentials: give them in the environment (docs/CLI.md, \"Locations\")"
        )));
    }
    Ok(())
}

/// A key prefix from the path part of a URL: no empty, `.` or `..` segments, and no
/// leading or trailing `/`.
fn prefix(scheme: &str, path: &str) -> Result<String, BackendError> {
    no_escapes(scheme, path)?;
    let p = path.trim_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    if p.split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(invalid(format!(
            "{scheme} prefix has an empty, '.' or '..' part: write it as a/b/c"
        )));
    }
    Ok(p.to_owned())
}

/// `bucket[/prefix]`, with the bucket name checked against the rules S3, GCS and Azure share
/// (3 to 63 lowercase letters, digits, `-` and `.`; GCS and Azure are stricter still, and say
/// so themselves).
fn bucket_url(scheme: &str, rest: &str) -> Result<(String, String), BackendError> {
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    no_userinfo(&format!("{scheme}://"), bucket, false)?;
    let what = if scheme == "azblob" {
        "container"
    } else {
        "bucket"
    };
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        return Err(invalid(format!(
            "{scheme}:// needs a {what} name of 3 to 63 lowercase letters, digits, '-' and '.': {scheme}://{what}/prefix"
        )));
    }
    Ok((bucket.to_owned(), prefix(&format!("{scheme}://"), path)?))
}

/// `host[:port]` or `[v6]:port`, checked: a host of letters, digits, `-`, `.` (or an IPv6
/// address in brackets) and a port of 1 to 65535.
fn host_port(scheme: &str, authority: &str) -> Result<(String, Option<u16>), BackendError> {
    let bad = || {
        invalid(format!(
            "{scheme} needs host[:port] (IPv6 in brackets) after the scheme"
        ))
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        if h.is_empty()
            || !h
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(bad());
        }
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if !authority.starts_with('[')
        && (host.is_empty()
            || host.starts_with('-')
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'))
    {
        return Err(bad());
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(invalid(format!(
                    "{scheme} port must be a number from 1 to 65535"
                )));
            }
        },
    };
    Ok((host.to_owned(), port))
}

/// An absolute folder path on a server: no `.` or `..` parts, not just `/`.
fn server_path(scheme: &str, path: &str) -> Result<String, BackendError> {
    no_escapes(scheme, path)?;
    let trimmed = path.trim_end_matches('/');
    if !trimmed.starts_with('/')
        || trimmed
            .split('/')
            .skip(1)
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(invalid(format!(
            "{scheme} needs an absolute folder path after the host, without '.' or '..' parts: {scheme}host/srv/backup"
        )));
    }
    Ok(trimmed.to_owned())
}

fn user(scheme: &str, u: &str) -> Result<String, BackendError> {
    if u.is_empty()
        || u.starts_with('-')
        || !u
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(invalid(format!(
            "{scheme} user name must be letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(u.to_owned())
}

/// `[user@]host[:port]/path`.
fn sftp_url(rest: &str) -> Result<Location, BackendError> {
    let scheme = "sftp://";
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    no_userinfo(scheme, authority, true)?;
    let (u, hp) = match authority.rsplit_once('@') {
        Some((u, hp)) => (Some(user(scheme, u)?), hp),
        None => (None, authority),
    };
    let (host, port) = host_port(scheme, hp)?;
    Ok(Location::Sftp {
        user: u,
        host,
        port,
        path: server_path(scheme, path)?,
    })
}

/// restic's `sftp:[user@]host:/path`.
fn restic_sftp(rest: &str) -> Result<Location, BackendError> {
    let scheme = "sftp:";
    let (authority, path) = rest.split_once(':').ok_or_else(|| {
        invalid("sftp: needs [user@]host:/path (or sftp://[user@]host[:port]/path)")
    })?;
    no_userinfo(scheme, authority, true)?;
    let (u, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(user(scheme, u)?), h),
        None => (None, authority),
    };
    let (host, _) = host_port(scheme, host)?;
    Ok(Location::Sftp {
        user: u,
        host,
        port: None,
        path: server_path("sftp://", path)?,
    })
}

/// restic's `s3:http[s]://host[:port]/bucket[/prefix]` (and `s3:host/bucket`, HTTPS).
fn restic_s3(rest: &str) -> Result<Location, BackendError> {
    let (scheme, after) = if let Some(a) = rest.strip_prefix("https://") {
        ("https", a)
    } else if let Some(a) = rest.strip_prefix("http://") {
        ("http", a)
    } else {
        ("https", rest)
    };
    let (authority, path) = after.split_once('/').ok_or_else(|| {
        invalid("s3: needs s3:https://host[:port]/bucket[/prefix] (or s3://bucket/prefix)")
    })?;
    no_userinfo("s3:", authority, false)?;
    let (host, port) = host_port("s3:", authority)?;
    let (bucket, prefix) = bucket_url("s3", path)?;
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let endpoint = match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    };
    Ok(Location::S3 {
        endpoint: Some(endpoint),
        bucket,
        prefix,
    })
}

/// `host[:port]/path`.
fn webdav_url(https: bool, rest: &str) -> Result<Location, BackendError> {
    let scheme = if https {
        "webdav+https://"
    } else {
        "webdav+http://"
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    no_userinfo(scheme, authority, false)?;
    let (host, port) = host_port(scheme, authority)?;
    let host = match (host.contains(':'), port) {
        (true, Some(p)) => format!("[{host}]:{p}"),
        (true, None) => format!("[{host}]"),
        (false, Some(p)) => format!("{host}:{p}"),
        (false, None) => host,
    };
    let path = if path == "/" {
        String::new()
    } else {
        server_path(scheme, path)?
    };
    Ok(Location::Webdav { https, host, path })
}

#[cfg(test)]
mod tests;
