//! Path patterns for `--exclude` and `--include`, with restic's semantics: a pattern without
//! `/` matches a name at any depth; a pattern with `/` matches the absolute path from the
//! start; `*` stays within one component and `**` crosses components. A pattern also matches
//! everything below a path it matches.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// A compiled set of path patterns.
#[derive(Debug, Clone, Default)]
pub struct Globs {
    set: Option<GlobSet>,
}

impl Globs {
    /// Compiles patterns; an empty list matches nothing.
    pub fn new(patterns: &[String]) -> Result<Self> {
        Self::build(patterns, false)
    }

    /// Compiles patterns that ignore letter case (restic's `--iexclude`).
    pub fn new_case_insensitive(patterns: &[String]) -> Result<Self> {
        Self::build(patterns, true)
    }

    fn build(patterns: &[String], case_insensitive: bool) -> Result<Self> {
        if patterns.is_empty() {
            return Ok(Self::default());
        }
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            let full = if p.contains('/') {
                p.clone()
            } else {
                format!("**/{p}")
            };
            let g = GlobBuilder::new(&full)
                .literal_separator(true)
                .case_insensitive(case_insensitive)
                .build()
                .map_err(|e| Error::InvalidInput(format!("bad pattern {p:?}: {e}")))?;
            b.add(g);
        }
        let set = b
            .build()
            .map_err(|e| Error::InvalidInput(format!("bad patterns: {e}")))?;
        Ok(Self { set: Some(set) })
    }

    /// Reads patterns from a file: one per line, blank lines and `#` comments ignored.
    pub fn read_pattern_file(path: &Path) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect())
    }

    /// Whether no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.set.is_none()
    }

    /// Whether the absolute path itself matches (not its ancestors).
    pub fn matches(&self, path: &Path) -> bool {
        self.set.as_ref().is_some_and(|s| s.is_match(path))
    }

    /// Whether the path or one of its ancestors matches.
    pub fn matches_or_below(&self, path: &Path) -> bool {
        self.set.is_some() && path.ancestors().any(|a| self.matches(a))
    }
}

/// Whether a pattern needs expanding (Go's `filepath.Glob` meta characters).
fn has_meta(s: &[u8]) -> bool {
    s.iter().any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
}

/// Expands a shell pattern against the file system as restic's `--files-from` does (Go's
/// `filepath.Glob`): `*`, `?` and `[...]` match within one path component, there is no `**`,
/// matches are sorted per directory, a pattern without meta characters names itself if it
/// exists, and unreadable directories match nothing. Work is bounded by the entries of the
/// directories the pattern names.
pub fn expand(pattern: &Path) -> Result<Vec<PathBuf>> {
    let bytes = pattern.as_os_str().as_bytes();
    if !has_meta(bytes) {
        return Ok(match std::fs::symlink_metadata(pattern) {
            Ok(_) => vec![pattern.to_path_buf()],
            Err(_) => Vec::new(),
        });
    }
    let (dir, name) = match bytes.iter().rposition(|b| *b == b'/') {
        Some(i) => (&bytes[..=i], &bytes[i + 1..]),
        None => (&b""[..], bytes),
    };
    let name = std::str::from_utf8(name).map_err(|_| {
        Error::InvalidInput(format!(
            "pattern {:?} is not valid UTF-8: list such paths with --files-from-verbatim",
            pattern
        ))
    })?;
    let matcher = GlobBuilder::new(name)
        .literal_separator(true)
        .build()
        .map_err(|e| Error::InvalidInput(format!("bad pattern {pattern:?}: {e}")))?
        .compile_matcher();
    // Go cleans the directory part: "a/b/" names "a/b", "/" stays "/", "" is ".".
    let dir_clean: &[u8] = match dir {
        b"" => b"",
        b"/" => b"/",
        d => &d[..d.len() - 1],
    };
    let dirs = if has_meta(dir_clean) {
        expand(Path::new(OsStr::from_bytes(dir_clean)))?
    } else {
        vec![PathBuf::from(OsStr::from_bytes(dir_clean))]
    };
    let mut out = Vec::new();
    for d in dirs {
        let list = if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d.as_path()
        };
        let Ok(rd) = std::fs::read_dir(list) else {
            continue;
        };
        let mut names: Vec<_> = rd
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| matcher.is_match(Path::new(n)))
            .collect();
        names.sort();
        out.extend(names.into_iter().map(|n| d.join(n)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_matches_like_go_filepath_glob() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "a/x.txt",
            "a/y.txt",
            "a/z.log",
            "b/x.txt",
            "b/.h.txt",
            "c/deep/x.txt",
        ] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"").unwrap();
        }
        let root = d.path();
        let got = expand(&root.join("*/*.txt")).unwrap();
        let want: Vec<PathBuf> = ["a/x.txt", "a/y.txt", "b/.h.txt", "b/x.txt"]
            .iter()
            .map(|f| root.join(f))
            .collect();
        assert_eq!(
            got, want,
            "one component per `*`, dot files included, sorted"
        );
        assert_eq!(
            expand(&root.join("a/?.log")).unwrap(),
            vec![root.join("a/z.log")]
        );
        assert_eq!(expand(&root.join("a")).unwrap(), vec![root.join("a")]);
        assert!(expand(&root.join("missing")).unwrap().is_empty());
        assert!(expand(&root.join("nope/*")).unwrap().is_empty());
        assert!(expand(&root.join("a/[")).is_err());
    }

    #[test]
    fn restic_semantics() {
        let g = Globs::new(&["*.log".into(), "/srv/cache".into(), "/srv/**/tmp".into()]).unwrap();
        assert!(g.matches(Path::new("/srv/app/x.log")));
        assert!(g.matches(Path::new("/x.log")));
        assert!(!g.matches(Path::new("/srv/app/x.logs")));
        assert!(g.matches(Path::new("/srv/cache")));
        assert!(!g.matches(Path::new("/srv/cached")));
        assert!(g.matches(Path::new("/srv/a/b/tmp")));
        assert!(g.matches_or_below(Path::new("/srv/cache/a/b")));
        assert!(!Globs::default().matches_or_below(Path::new("/a")));
        assert!(Globs::new(&["[".into()]).is_err());
        let i = Globs::new_case_insensitive(&["*.JPG".into(), "/Srv/Cache".into()]).unwrap();
        assert!(i.matches(Path::new("/home/a/photo.jpg")));
        assert!(i.matches(Path::new("/srv/cache")));
        assert!(
            !Globs::new(&["*.JPG".into()])
                .unwrap()
                .matches(Path::new("/a.jpg"))
        );
    }
}
