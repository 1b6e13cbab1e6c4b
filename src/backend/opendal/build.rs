//! Making an OpenDAL operator for a remote [`Location`]: each service's builder fed from the
//! location, the `-o` options and the standard environment of its ecosystem, with the
//! timeout and connection-limit layers; and [`describe`], which turns an OpenDAL error into
//! one line that says what is wrong (unreachable endpoint, missing bucket, refused
//! credentials, timeout) without repeating any secret.
//!
//! Credentials are taken from [`BackendOptions::env`] (never from `-o`, which ends up in shell
//! history and process lists) and listed as secrets, which every message has removed. Each
//! service's options are documented in docs/CLI.md ("Locations").

#[allow(unused_imports)]
use opendal::{Operator, layers, services};

use super::OpendalBackend;
#[allow(unused_imports)]
use super::ReplaceMode;
use crate::backend::location::Location;
use crate::backend::options::BackendOptions;
use crate::backend::{BackendError, ErrorKind};

/// Installs, once, rustls's process-wide crypto provider (ring) and OpenDAL's HTTP transport
/// (reqwest), before any HTTP service is built (see Cargo.toml's `http` feature).
#[cfg(feature = "http")]
fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Already installed (by an embedding program) is fine too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // OpenDAL 0.59 sends through a process-wide transport (first installed wins): ours
        // builds its TLS client only for https:// requests (`transport.rs`).
        super::transport::SchemeTransport::install();
    });
}

/// A backend for a remote location (not `Local`), not yet probed.
pub fn open(loc: &Location, opts: &BackendOptions) -> Result<OpendalBackend, BackendError> {
    #[cfg(feature = "http")]
    install_tls_provider();
    let rt = super::runtime()?;
    let mut secrets = Vec::new();
    let (op, staged) = {
        let _guard = rt.enter();
        operator(loc, opts, &mut secrets)?
    };
    // sftp's operator is rooted at the server's `/` (see `OpendalBackend::prefix`).
    let prefix = match loc {
        Location::Sftp { path, .. } => format!("{}/", path.trim_start_matches('/')),
        _ => String::new(),
    };
    let op = op
        .layer(
            layers::TimeoutLayer::new()
                .with_timeout(opts.timeout(loc)?)
                .with_io_timeout(opts.timeout(loc)?),
        )
        .layer(layers::ConcurrentLimitLayer::new(opts.connections(loc)?));
    Ok(OpendalBackend::with_operator(
        op,
        rt,
        loc.to_string(),
        staged,
        secrets,
        prefix,
    ))
}

fn unsupported(loc: &Location) -> BackendError {
    BackendError {
        kind: ErrorKind::Permanent,
        op: "open",
        path: loc.to_string(),
        message: format!(
            "this cista was built without {} support: rebuild with its feature (docs/DESIGN.md, \"Dependencies\")",
            loc.service()
        ),
    }
}

#[cfg(any(
    feature = "s3",
    feature = "gcs",
    feature = "azblob",
    feature = "sftp",
    feature = "webdav"
))]
fn build_error(loc: &Location, e: opendal::Error, secrets: &[String]) -> BackendError {
    super::convert("open", &loc.to_string(), e, secrets)
}

/// A root path for a builder: `/prefix/` (OpenDAL roots are folders).
#[allow(dead_code)]
fn root(prefix: &str) -> String {
    if prefix.is_empty() {
        "/".into()
    } else {
        format!("/{prefix}/")
    }
}

/// The operator for `loc` and, for services whose writes are visible in progress, how the
/// config is replaced (see [`super::WriteMode::Staged`]).
#[allow(unused_variables)]
fn operator(
    loc: &Location,
    opts: &BackendOptions,
    secrets: &mut Vec<String>,
) -> Result<(Operator, Option<ReplaceMode>), BackendError> {
    match loc {
        Location::Local(_) => Err(BackendError {
            kind: ErrorKind::Permanent,
            op: "open",
            path: loc.to_string(),
            message: "local folders are opened by backend::local".into(),
        }),
        #[cfg(feature = "s3")]
        Location::S3 {
            endpoint,
            bucket,
            prefix,
        } => {
            opts.check_known(
                loc,
                &[
                    "endpoint",
                    "region",
                    "profile",
                    "bucket-lookup",
                    "storage-class",
                    "list-objects-v1",
                    "disable-config-load",
                    "disable-ec2-metadata",
                ],
            )?;
            let mut b = services::S3::default().bucket(bucket).root(&root(prefix));
            let endpoint = endpoint
                .as_deref()
                .or_else(|| opts.get(loc, "endpoint"))
                .or_else(|| opts.env("AWS_ENDPOINT_URL_S3"))
                .or_else(|| opts.env("AWS_ENDPOINT_URL"));
            if let Some(e) = endpoint {
                b = b.endpoint(e);
            }
            // OpenDAL needs a region to sign with; S3-compatible servers ignore it, and AWS
            // names the right one in its error if this is wrong.
            let region = opts
                .get(loc, "region")
                .or_else(|| opts.env("AWS_REGION"))
                .or_else(|| opts.env("AWS_DEFAULT_REGION"))
                .unwrap_or("us-east-1");
            b = b.region(region);
            if let (Some(id), Some(secret)) = (
                opts.env("AWS_ACCESS_KEY_ID"),
                opts.env("AWS_SECRET_ACCESS_KEY"),
            ) {
                b = b.access_key_id(id).secret_access_key(secret);
                secrets.extend([id.to_owned(), secret.to_owned()]);
                if let Some(token) = opts.env("AWS_SESSION_TOKEN") {
                    b = b.session_token(token);
                    secrets.push(token.to_owned());
                }
            }
            if let Some(p) = opts.get(loc, "profile").or_else(|| opts.env("AWS_PROFILE")) {
                b = b.profile(p);
            }
            match opts.get(loc, "bucket-lookup") {
                None | Some("auto" | "path") => {}
                Some("dns") => b = b.enable_virtual_host_style(),
                Some(_) => {
                    return Err(BackendError {
                        kind: ErrorKind::Permanent,
                        op: "option",
                        path: "s3.bucket-lookup".into(),
                        message: "must be auto, dns or path".into(),
                    });
                }
            }
            if let Some(c) = opts.get(loc, "storage-class") {
                b = b.default_storage_class(c);
            }
            if opts.flag(loc, "list-objects-v1")? {
                b = b.disable_list_objects_v2();
            }
            if opts.flag(loc, "disable-config-load")? {
                b = b.disable_config_load();
            }
            if opts.flag(loc, "disable-ec2-metadata")? {
                b = b.disable_ec2_metadata();
            }
            let op = Operator::new(b).map_err(|e| build_error(loc, e, secrets))?;
            Ok((op, None))
        }
        #[cfg(feature = "gcs")]
        Location::Gcs { bucket, prefix } => {
            opts.check_known(
                loc,
                &[
                    "endpoint",
                    "credential-path",
                    "disable-config-load",
                    "disable-vm-metadata",
                ],
            )?;
            let mut b = services::Gcs::default().bucket(bucket).root(&root(prefix));
            if let Some(e) = opts.get(loc, "endpoint") {
                b = b.endpoint(e);
            }
            if let Some(p) = opts
                .get(loc, "credential-path")
                .or_else(|| opts.env("GOOGLE_APPLICATION_CREDENTIALS"))
            {
                b = b.credential_path(p);
            }
            if let Some(t) = opts.env("GOOGLE_ACCESS_TOKEN") {
                b = b.token(t.to_owned());
                secrets.push(t.to_owned());
            }
            if opts.flag(loc, "disable-config-load")? {
                b = b.disable_config_load();
            }
            if opts.flag(loc, "disable-vm-metadata")? {
                b = b.disable_vm_metadata();
            }
            let op = Operator::new(b).map_err(|e| build_error(loc, e, secrets))?;
            Ok((op, None))
        }
        #[cfg(feature = "azblob")]
        Location::Azblob { container, prefix } => {
            opts.check_known(loc, &["endpoint", "account-name"])?;
            let mut b = services::Azblob::default()
                .container(container)
                .root(&root(prefix));
            let account = opts
                .get(loc, "account-name")
                .or_else(|| opts.env("AZURE_ACCOUNT_NAME"))
                .or_else(|| opts.env("AZURE_STORAGE_ACCOUNT"));
            if let Some(a) = account {
                b = b.account_name(a);
            }
            let endpoint = opts
                .get(loc, "endpoint")
                .map(str::to_owned)
                .or_else(|| account.map(|a| format!("https://{a}.blob.core.windows.net")));
            if let Some(e) = &endpoint {
                b = b.endpoint(e);
            }
            if let Some(k) = opts
                .env("AZURE_ACCOUNT_KEY")
                .or_else(|| opts.env("AZURE_STORAGE_KEY"))
            {
                b = b.account_key(k);
                secrets.push(k.to_owned());
            }
            if let Some(s) = opts.env("AZURE_ACCOUNT_SAS") {
                b = b.sas_token(s);
                secrets.push(s.to_owned());
            }
            let op = Operator::new(b).map_err(|e| build_error(loc, e, secrets))?;
            Ok((op, None))
        }
        #[cfg(feature = "sftp")]
        Location::Sftp {
            user, host, port, ..
        } => {
            opts.check_known(loc, &["key", "known-hosts"])?;
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            let endpoint = match port {
                Some(p) => format!("ssh://{host}:{p}"),
                None => format!("ssh://{host}"),
            };
            let mut b = services::Sftp::default().endpoint(&endpoint).root("/");
            if let Some(u) = user {
                b = b.user(u);
            }
            if let Some(k) = opts.get(loc, "key") {
                b = b.key(k);
            }
            match opts.get(loc, "known-hosts") {
                None => {}
                Some(s @ ("strict" | "accept" | "add")) => b = b.known_hosts_strategy(s),
                Some(_) => {
                    return Err(BackendError {
                        kind: ErrorKind::Permanent,
                        op: "option",
                        path: "sftp.known-hosts".into(),
                        message: "must be strict, accept or add".into(),
                    });
                }
            }
            let op = Operator::new(b).map_err(|e| build_error(loc, e, secrets))?;
            Ok((op, Some(ReplaceMode::Rename)))
        }
        #[cfg(feature = "webdav")]
        Location::Webdav { https, host, path } => {
            opts.check_known(loc, &["username"])?;
            let scheme = if *https { "https" } else { "http" };
            let mut b = services::Webdav::default()
                .endpoint(&format!("{scheme}://{host}"))
                .root(&format!("{path}/"));
            if let Some(u) = opts
                .get(loc, "username")
                .or_else(|| opts.env("CISTA_WEBDAV_USERNAME"))
            {
                b = b.username(u);
            }
            if let Some(p) = opts.env("CISTA_WEBDAV_PASSWORD") {
                b = b.password(p);
                secrets.push(p.to_owned());
            }
            let op = Operator::new(b).map_err(|e| build_error(loc, e, secrets))?;
            Ok((op, None))
        }
        #[allow(unreachable_patterns)]
        _ => Err(unsupported(loc)),
    }
}

/// Whether a not-found error is about the bucket or container, not an object in it.
pub fn bucket_missing(e: &opendal::Error) -> bool {
    let s = e.to_string();
    s.contains("NoSuchBucket")
        || s.contains("ContainerNotFound")
        || s.contains("The specified bucket does not exist")
}

/// The value of `code: "..."` in an S3 error's message, if any.
fn s3_code(s: &str) -> Option<&str> {
    let rest = &s[s.find("code: \"")? + 7..];
    rest.split('"').next()
}

/// One line saying what went wrong and what to do. Response bodies and headers are left
/// out (a refused signature's body repeats the access key id and the string signed).
pub fn describe(e: &opendal::Error) -> String {
    let s = e.to_string();
    // The cause (connection refused, unknown host) is deep in the source chain.
    let mut lower = s.to_ascii_lowercase();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        lower.push_str(" | ");
        lower.push_str(&c.to_string().to_ascii_lowercase());
        cause = c.source();
    }
    if bucket_missing(e) {
        return "the bucket (or container) does not exist: create it first, cista does not create buckets".into();
    }
    if e.kind() == opendal::ErrorKind::PermissionDenied
        || matches!(
            s3_code(&s),
            Some(
                "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "AccessDenied"
                    | "InvalidToken"
                    | "ExpiredToken"
            )
        )
    {
        let code = s3_code(&s).map(|c| format!(" ({c})")).unwrap_or_default();
        return format!(
            "access denied{code}: the server refused the credentials; check them in the environment (docs/CLI.md, \"Locations\") and the key's permissions"
        );
    }
    if lower.contains("timeout reached") || lower.contains("timed out") {
        return "no answer within the timeout: check the network, or raise -o timeout=".into();
    }
    let ssh = [
        (
            "host key verification failed",
            "the server's host key is not known: add it to ~/.ssh/known_hosts, or -o sftp.known-hosts=add",
        ),
        (
            "permission denied (publickey",
            "access denied: the server refused the ssh key; check -o sftp.key and the server's authorized_keys",
        ),
    ];
    for (needle, what) in ssh {
        if lower.contains(needle) {
            return what.into();
        }
    }
    let unreachable = [
        ("connection refused", "connection refused"),
        ("dns error", "host name not found"),
        ("failed to lookup address", "host name not found"),
        ("could not resolve hostname", "host name not found"),
        ("no route to host", "no route to host"),
        ("network is unreachable", "network unreachable"),
        ("connection reset", "connection reset"),
        ("tcp connect error", "no connection"),
        ("error sending request", "no connection"),
        ("connection closed", "connection closed"),
    ];
    for (needle, what) in unreachable {
        if lower.contains(needle) {
            return format!(
                "cannot reach the server ({what}): check the location's host and port, the endpoint (-o s3.endpoint, AWS_ENDPOINT_URL) and the network"
            );
        }
    }
    // The HTTP transport's own line already names the cause and the fix.
    #[cfg(feature = "http")]
    if e.message().starts_with(super::transport::SETUP_FAILED) {
        return e
            .message()
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect();
    }
    // Anything else: OpenDAL's kind and its own message, without context or source.
    let line: String = format!("{}: {}", e.kind(), e.message())
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use opendal::{Error, ErrorKind as OdKind};

    #[test]
    fn the_three_failures_have_their_own_message() {
        let refused = Error::new(OdKind::Unexpected, "send http request")
            .set_source(std::io::Error::other(
                "tcp connect error: Connection refused (os error 111)",
            ))
            .set_temporary();
        assert!(describe(&refused).starts_with("cannot reach the server (connection refused)"));
        let missing = Error::new(
            OdKind::NotFound,
            "S3Error { code: \"NoSuchBucket\", message: \"The specified bucket does not exist\" }",
        );
        assert!(bucket_missing(&missing));
        assert!(describe(&missing).starts_with("the bucket (or container) does not exist"));
        let denied = Error::new(
            OdKind::PermissionDenied,
            "S3Error { code: \"InvalidAccessKeyId\", message: \"AKIAEXAMPLE is not known\" }",
        );
        let d = describe(&denied);
        assert!(d.starts_with("access denied (InvalidAccessKeyId)"), "{d}");
        assert!(!d.contains("AKIAEXAMPLE"), "{d}");
        // A missing object is not a missing bucket.
        assert!(!bucket_missing(&Error::new(
            OdKind::NotFound,
            "S3Error { code: \"NoSuchKey\" }"
        )));
    }

    #[test]
    fn secrets_are_removed_from_every_message() {
        let e = Error::new(
            OdKind::Unexpected,
            "weird answer mentioning hunter2-secret-value",
        );
        let b = crate::backend::opendal::convert(
            "read",
            "config",
            e,
            &["hunter2-secret-value".to_owned()],
        );
        assert!(!b.to_string().contains("hunter2"), "{b}");
        assert!(b.to_string().contains("***"), "{b}");
        assert_eq!(b.kind, ErrorKind::Permanent);
    }

    #[cfg(feature = "s3")]
    #[test]
    fn options_of_another_service_are_refused() {
        let loc = Location::parse("s3:http://127.0.0.1:1/bkt").unwrap();
        let opts = BackendOptions::parse(&["sftp.key=/x".into()], Default::default()).unwrap();
        let e = open(&loc, &opts).unwrap_err();
        assert!(e.to_string().contains("unknown option"), "{e}");
    }
}
