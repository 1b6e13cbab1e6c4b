//! Location parsing: every documented form, its display, and hostile input.

use super::*;

fn ok(s: &str) -> Location {
    Location::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn err(s: &str) -> String {
    match Location::parse(s) {
        Ok(l) => panic!("{s} parsed as {l:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn local_forms() {
    assert_eq!(ok("/srv/backup"), Location::Local("/srv/backup".into()));
    assert_eq!(ok("repo"), Location::Local("repo".into()));
    assert_eq!(ok("local:/srv/b"), Location::Local("/srv/b".into()));
    assert_eq!(ok("file:///srv/b"), Location::Local("/srv/b".into()));
    assert_eq!(
        ok("file://localhost/srv/b"),
        Location::Local("/srv/b".into())
    );
    // A folder whose name looks odd is still a folder.
    assert_eq!(ok("./a://b"), Location::Local("./a://b".into()));
    assert!(ok("/x").is_local());
    assert_eq!(ok("/srv/backup").to_string(), "local:/srv/backup");
}

#[test]
fn bucket_forms() {
    assert_eq!(
        ok("s3://my-bucket/hosts/web1"),
        Location::S3 {
            endpoint: None,
            bucket: "my-bucket".into(),
            prefix: "hosts/web1".into()
        }
    );
    assert_eq!(
        ok("s3://my-bucket"),
        Location::S3 {
            endpoint: None,
            bucket: "my-bucket".into(),
            prefix: String::new()
        }
    );
    assert_eq!(
        ok("s3://b12/p/"),
        Location::S3 {
            endpoint: None,
            bucket: "b12".into(),
            prefix: "p".into()
        }
    );
    assert_eq!(
        ok("gs://bkt/a"),
        Location::Gcs {
            bucket: "bkt".into(),
            prefix: "a".into()
        }
    );
    assert_eq!(
        ok("azblob://cont/a/b"),
        Location::Azblob {
            container: "cont".into(),
            prefix: "a/b".into()
        }
    );
    for s in [
        "s3://my-bucket/hosts/web1",
        "gs://bkt/a",
        "azblob://cont/a/b",
        "s3://bkt",
    ] {
        assert_eq!(ok(s).to_string(), s);
        assert!(!ok(s).is_local());
    }
}

#[test]
fn restic_s3_form_carries_the_endpoint() {
    let l = ok("s3:http://127.0.0.1:9000/bucket/pre/fix");
    assert_eq!(
        l,
        Location::S3 {
            endpoint: Some("http://127.0.0.1:9000".into()),
            bucket: "bucket".into(),
            prefix: "pre/fix".into()
        }
    );
    assert_eq!(l.to_string(), "s3:http://127.0.0.1:9000/bucket/pre/fix");
    assert_eq!(
        ok("s3:s3.amazonaws.com/bkt"),
        Location::S3 {
            endpoint: Some("https://s3.amazonaws.com".into()),
            bucket: "bkt".into(),
            prefix: String::new()
        }
    );
}

#[test]
fn sftp_forms() {
    assert_eq!(
        ok("sftp://backup@nas.local:2222/srv/repo"),
        Location::Sftp {
            user: Some("backup".into()),
            host: "nas.local".into(),
            port: Some(2222),
            path: "/srv/repo".into()
        }
    );
    assert_eq!(
        ok("sftp://nas/srv/repo/"),
        Location::Sftp {
            user: None,
            host: "nas".into(),
            port: None,
            path: "/srv/repo".into()
        }
    );
    assert_eq!(
        ok("sftp://u@[::1]:22/r"),
        Location::Sftp {
            user: Some("u".into()),
            host: "::1".into(),
            port: Some(22),
            path: "/r".into()
        }
    );
    assert_eq!(
        ok("sftp:u@host:/srv/r"),
        Location::Sftp {
            user: Some("u".into()),
            host: "host".into(),
            port: None,
            path: "/srv/r".into()
        }
    );
    for s in [
        "sftp://backup@nas.local:2222/srv/repo",
        "sftp://nas/srv/repo",
        "sftp://u@[::1]:22/r",
    ] {
        assert_eq!(ok(s).to_string(), s);
    }
}

#[test]
fn webdav_forms() {
    assert_eq!(
        ok("webdav+https://dav.example.com/backups/a"),
        Location::Webdav {
            https: true,
            host: "dav.example.com".into(),
            path: "/backups/a".into()
        }
    );
    assert_eq!(
        ok("webdav+http://127.0.0.1:8080/r"),
        Location::Webdav {
            https: false,
            host: "127.0.0.1:8080".into(),
            path: "/r".into()
        }
    );
    assert_eq!(
        ok("webdav+http://127.0.0.1:8080/r").to_string(),
        "webdav+http://127.0.0.1:8080/r"
    );
}

#[test]
fn credentials_in_a_url_are_refused_and_never_echoed() {
    for s in [
        "s3://AKIAXXXX:hunter2secret@bucket/p",
        "sftp://user:hunter2secret@host/srv",
        "sftp:user:hunter2secret@host:/srv",
        "webdav+https://user:hunter2secret@host/p",
        "s3:https://AKIA:hunter2secret@host/bucket",
        "webdav+https://hunter2secret@host/p",
    ] {
        let e = err(s);
        assert!(e.contains("credentials") || e.contains("host"), "{s}: {e}");
        assert!(!e.contains("hunter2secret"), "{s}: {e}");
        assert!(!e.contains("AKIA"), "{s}: {e}");
    }
}

#[test]
fn hostile_input_is_refused_with_a_reason() {
    let long = format!("/{}", "a".repeat(5000));
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        (&long, "bytes long"),
        ("/srv/\0x", "control character"),
        ("s3://b\n/x", "control character"),
        ("local:", "empty folder"),
        ("ftp://host/x", "unknown scheme ftp://"),
        ("s3://", "bucket name"),
        ("s3://ab/x", "bucket name"),
        ("s3://Upper/x", "bucket name"),
        ("s3://-bad/x", "bucket name"),
        ("s3://b.c/../x", "'..'"),
        ("s3://bkt/a//b", "empty"),
        ("s3://bkt/a%2fb", "percent"),
        ("gs://x", "bucket name"),
        ("azblob://a_b/c", "container name"),
        ("sftp://host", "absolute folder path"),
        ("sftp://host/", "absolute folder path"),
        ("sftp://host/a/../b", "'..'"),
        ("sftp://host:0/r", "port"),
        ("sftp://host:99999/r", "port"),
        ("sftp://host:x/r", "port"),
        ("sftp://-oProxyCommand=x@h/r", "user name"),
        ("sftp://h;rm/r", "host[:port]"),
        ("sftp://[::1/r", "host[:port]"),
        ("sftp:host", "[user@]host:/path"),
        ("s3:host", "s3:https://host"),
        ("file://other/x", "three slashes"),
        ("sftp://-oProxyCommand=x/r", "host[:port]"),
        ("webdav+https://h/a/./b", "'.'"),
    ];
    for (input, want) in cases {
        let e = err(input);
        assert!(e.contains(want), "{input:?}: {e}");
        assert!(!e.contains('\n'), "{input:?}: one line: {e}");
    }
}

#[test]
fn service_names_follow_restic() {
    assert_eq!(ok("s3://bkt").service(), "s3");
    assert_eq!(ok("gs://bkt").service(), "gs");
    assert_eq!(ok("azblob://bkt").service(), "azure");
    assert_eq!(ok("sftp://h/r").service(), "sftp");
    assert_eq!(ok("/r").service(), "local");
}
