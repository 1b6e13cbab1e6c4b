//! Backend options: the `-o key=value` pairs and the environment a backend is opened with.
//!
//! Owns the option names every backend shares (`connections`, `timeout`, `retries`), their
//! parsing and their defaults, and the check that every option given is one the backend
//! knows (a misspelt option is an error, not silently ignored). The environment is a map
//! handed in by the caller, never read here, so tests inject their own and the library
//! never reads the process environment behind the CLI's back. Service-specific options are
//! read by the service's builder in `backend::opendal`; docs/CLI.md lists them all.

use std::collections::BTreeMap;
use std::time::Duration;

use super::location::Location;
use super::{BackendError, ErrorKind};

/// Options shared by every remote service, `connections` also as `<service>.connections`.
const COMMON: &[&str] = &["connections", "timeout", "retries"];

/// What a backend is opened with besides its location.
#[derive(Clone, Default)]
pub struct BackendOptions {
    /// The `-o key=value` pairs, in the order of their keys (a later `-o` of the same key wins).
    pub options: BTreeMap<String, String>,
    /// Environment variables the backend may read (credentials, endpoints): the CLI passes the
    /// process environment, tests a map of their own.
    pub env: BTreeMap<String, String>,
}

impl std::fmt::Debug for BackendOptions {
    /// Keys only: values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendOptions")
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn bad_option(key: &str, message: String) -> BackendError {
    BackendError {
        kind: ErrorKind::Permanent,
        op: "option",
        path: key.to_owned(),
        message,
    }
}

impl BackendOptions {
    /// Options parsed from `key=value` strings (the `-o` arguments), with `env`.
    pub fn parse(
        pairs: &[String],
        env: BTreeMap<String, String>,
    ) -> Result<BackendOptions, BackendError> {
        let mut options = BTreeMap::new();
        for p in pairs {
            let Some((k, v)) = p.split_once('=') else {
                return Err(bad_option(
                    p,
                    "options are key=value: -o s3.region=eu-west-1".into(),
                ));
            };
            let k = k.trim();
            if k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(bad_option(
                    "-o",
                    "option names are letters, digits, '.', '_' and '-'".into(),
                ));
            }
            options.insert(k.to_owned(), v.to_owned());
        }
        Ok(BackendOptions { options, env })
    }

    /// The value of option `key` for `loc`'s service: `<service>.key`, else `key`.
    pub fn get(&self, loc: &Location, key: &str) -> Option<&str> {
        self.options
            .get(&format!("{}.{key}", loc.service()))
            .or_else(|| self.options.get(key))
            .map(String::as_str)
    }

    /// An environment variable, if set and not empty.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A yes/no option (`true`/`false`, `yes`/`no`, `1`/`0`), `false` when absent.
    pub fn flag(&self, loc: &Location, key: &str) -> Result<bool, BackendError> {
        match self.get(loc, key) {
            None => Ok(false),
            Some("true" | "yes" | "1" | "") => Ok(true),
            Some("false" | "no" | "0") => Ok(false),
            Some(_) => Err(bad_option(key, "must be true or false".into())),
        }
    }

    /// Requests in flight at once: `-o connections=N`, else the service's default (restic's
    /// defaults: 5 for S3, GCS and Azure; cista uses 8 for object stores, whose requests are
    /// independent, and 4 for sftp, whose requests share one SSH connection's window).
    pub fn connections(&self, loc: &Location) -> Result<usize, BackendError> {
        let default = match loc {
            Location::Local(_) => 1,
            Location::Sftp { .. } | Location::Webdav { .. } => 4,
            _ => 8,
        };
        match self.get(loc, "connections") {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=256).contains(&n) => Ok(n),
                _ => Err(bad_option(
                    "connections",
                    "must be a number from 1 to 256".into(),
                )),
            },
        }
    }

    /// The per-request timeout: `-o timeout=30s` (`ms`, `s`, `m` suffixes), default 60 s:
    /// long enough for a 16 MiB pack over a slow uplink to make progress, short enough that
    /// a dead connection is noticed and retried.
    pub fn timeout(&self, loc: &Location) -> Result<Duration, BackendError> {
        match self.get(loc, "timeout") {
            None => Ok(Duration::from_secs(60)),
            Some(v) => parse_duration(v).ok_or_else(|| {
                bad_option(
                    "timeout",
                    "must be a duration from 1ms to 1h such as 500ms, 30s or 2m".into(),
                )
            }),
        }
    }

    /// Attempts per request, the first included: `-o retries=N` (1 to 20), default 5.
    pub fn retries(&self, loc: &Location) -> Result<u32, BackendError> {
        match self.get(loc, "retries") {
            None => Ok(5),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=20).contains(&n) => Ok(n),
                _ => Err(bad_option(
                    "retries",
                    "must be a number from 1 to 20".into(),
                )),
            },
        }
    }

    /// Refuses any option that is neither a common one nor in `known` for `loc`'s service
    /// (names without the service prefix), naming the first unknown one.
    pub fn check_known(&self, loc: &Location, known: &[&str]) -> Result<(), BackendError> {
        let service = loc.service();
        for k in self.options.keys() {
            let bare = k
                .strip_prefix(service)
                .and_then(|r| r.strip_prefix('.'))
                .unwrap_or(k);
            let allowed = COMMON.contains(&bare) || (bare != k.as_str() && known.contains(&bare));
            if !allowed {
                let list: Vec<String> = COMMON
                    .iter()
                    .map(|c| (*c).to_owned())
                    .chain(known.iter().map(|k| format!("{service}.{k}")))
                    .collect();
                return Err(bad_option(
                    k,
                    format!(
                        "unknown option for {service} locations; known: {}",
                        list.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `500ms`, `30s`, `2m`, or plain seconds; 1 ms to 1 hour.
fn parse_duration(v: &str) -> Option<Duration> {
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        _ => return None,
    };
    (Duration::from_millis(1)..=Duration::from_secs(3600))
        .contains(&d)
        .then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[&str]) -> BackendOptions {
        let pairs: Vec<String> = pairs.iter().map(|s| (*s).to_owned()).collect();
        BackendOptions::parse(&pairs, BTreeMap::new()).unwrap()
    }

    fn s3() -> Location {
        Location::parse("s3://bucket/p").unwrap()
    }

    #[test]
    fn service_prefixed_options_win_over_bare_ones() {
        let o = opts(&["connections=3", "s3.connections=12"]);
        assert_eq!(o.connections(&s3()).unwrap(), 12);
        let sftp = Location::parse("sftp://h/r").unwrap();
        assert_eq!(o.connections(&sftp).unwrap(), 3);
        assert_eq!(opts(&[]).connections(&sftp).unwrap(), 4);
        assert_eq!(opts(&[]).connections(&s3()).unwrap(), 8);
    }

    #[test]
    fn durations_and_numbers_are_checked() {
        assert_eq!(
            opts(&["timeout=500ms"]).timeout(&s3()).unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            opts(&["timeout=2m"]).timeout(&s3()).unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(
            opts(&["timeout=7"]).timeout(&s3()).unwrap(),
            Duration::from_secs(7)
        );
        for bad in [
            "timeout=0s",
            "timeout=2h",
            "timeout=x",
            "timeout=-1s",
            "timeout=99999999999999999999m",
        ] {
            assert!(opts(&[bad]).timeout(&s3()).is_err(), "{bad}");
        }
        assert!(opts(&["connections=0"]).connections(&s3()).is_err());
        assert!(opts(&["connections=100000"]).connections(&s3()).is_err());
        assert!(opts(&["retries=0"]).retries(&s3()).is_err());
        assert_eq!(opts(&["retries=2"]).retries(&s3()).unwrap(), 2);
    }

    #[test]
    fn unknown_and_malformed_options_are_refused() {
        let e = opts(&["s3.regoin=x"])
            .check_known(&s3(), &["region"])
            .unwrap_err();
        assert!(e.to_string().contains("s3.regoin"), "{e}");
        assert!(e.to_string().contains("s3.region"), "{e}");
        // Another service's option is not this one's.
        assert!(
            opts(&["sftp.key=x"])
                .check_known(&s3(), &["region"])
                .is_err()
        );
        assert!(opts(&["region=x"]).check_known(&s3(), &["region"]).is_err());
        opts(&["s3.region=x", "timeout=5s"])
            .check_known(&s3(), &["region"])
            .unwrap();
        assert!(BackendOptions::parse(&["novalue".into()], BTreeMap::new()).is_err());
        assert!(BackendOptions::parse(&["bad key=1".into()], BTreeMap::new()).is_err());
    }

    #[test]
    fn debug_shows_no_values() {
        let mut env = BTreeMap::new();
        env.insert("AWS_SECRET_ACCESS_KEY".to_owned(), "hunter2".to_owned());
        let o = BackendOptions::parse(&["webdav.password=hunter3".into()], env).unwrap();
        let d = format!("{o:?}");
        assert!(!d.contains("hunter"), "{d}");
    }
}
