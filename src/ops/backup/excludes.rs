//! What a backup leaves out, with restic's meaning for each rule: `--exclude`/`--iexclude`
//! patterns, `--exclude-larger-than`, and tag files (`--exclude-if-present`,
//! `--exclude-caches`). Shared by the archiver and the progress scanner so both see the same
//! tree. It does not walk anything itself.

use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::ops::globs::Globs;

/// The Cache Directory Tagging Specification's file name and signature
/// (<https://bford.info/cachedir/>); `--exclude-caches` is `--exclude-if-present` with them.
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
/// The header a `CACHEDIR.TAG` file must start with.
pub const CACHEDIR_SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";

/// Exclusion rules of a backup.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    /// Paths matching these are skipped with everything below them.
    pub globs: Globs,
    /// Like `globs`, ignoring letter case (`--iexclude`).
    pub iglobs: Globs,
    /// Directories holding one of these tag files keep only the tag file.
    pub if_present: Vec<TagFile>,
    /// Regular files larger than this many bytes are skipped (`--exclude-larger-than`).
    pub larger_than: Option<u64>,
}

impl Excludes {
    /// Whether an absolute path is excluded by a pattern.
    pub fn is_excluded(&self, path: &Path) -> bool {
        self.globs.matches(path) || self.iglobs.matches(path)
    }

    /// Whether an entry is left out, by its path or (for size limits) its metadata.
    pub fn rejects(&self, path: &Path, meta: &Metadata) -> bool {
        self.is_excluded(path)
            || (meta.is_file() && self.larger_than.is_some_and(|max| meta.size() > max))
    }

    /// The tag file that marks directory `dir`, if any; `has` says whether the directory
    /// lists a name (so only listed tag names are opened). Like restic, a tag file whose
    /// header does not match is reported through `warn` and does not exclude anything.
    pub fn tag_of(
        &self,
        dir: &Path,
        has: impl Fn(&[u8]) -> bool,
        warn: impl Fn(String),
    ) -> Option<&TagFile> {
        self.if_present
            .iter()
            .find(|t| has(t.name.as_bytes()) && t.marks(dir, &warn))
    }
}

/// A tag file rule, `NAME[:HEADER]`: a directory holding a file `NAME` (that starts with
/// `HEADER`, if given) keeps only that file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFile {
    /// File name looked for.
    pub name: String,
    /// Bytes the file must start with.
    pub header: Option<String>,
}

impl TagFile {
    /// Parses restic's `--exclude-if-present` argument.
    pub fn parse(spec: &str) -> Result<Self> {
        let (name, header) = match spec.split_once(':') {
            Some((n, h)) => (n, Some(h.to_owned())),
            None => (spec, None),
        };
        if name.is_empty() || name.contains('/') {
            return Err(Error::InvalidInput(format!(
                "--exclude-if-present {spec:?}: give a file name, optionally NAME:HEADER"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            header: header.filter(|h| !h.is_empty()),
        })
    }

    /// The rule `--exclude-caches` adds.
    pub fn cache_dir() -> Self {
        Self {
            name: CACHEDIR_TAG.into(),
            header: Some(CACHEDIR_SIGNATURE.into()),
        }
    }

    fn marks(&self, dir: &Path, warn: &impl Fn(String)) -> bool {
        let path = dir.join(&self.name);
        let Some(header) = &self.header else {
            return std::fs::symlink_metadata(&path).is_ok();
        };
        let mut buf = Vec::with_capacity(header.len());
        let read = std::fs::File::open(&path)
            .and_then(|f| f.take(header.len() as u64).read_to_end(&mut buf));
        match read {
            Ok(_) if buf == header.as_bytes() => true,
            Ok(_) => {
                warn(format!(
                    "{}: tag file does not start with {header:?}; directory not excluded",
                    path.display()
                ));
                false
            }
            Err(e) => {
                warn(format!("{}: could not read tag file: {e}", path.display()));
                false
            }
        }
    }
}

/// Parses a size as restic does (`--exclude-larger-than`): a whole number with an optional
/// suffix `b`/`B` (bytes), `k`/`K`, `m`/`M`, `g`/`G` or `t`/`T` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64> {
    let bad = || {
        Error::InvalidInput(format!(
            "size {s:?}: give a number with an optional suffix k, m, g or t (e.g. 500m)"
        ))
    };
    let (num, unit) = match s.as_bytes().last() {
        Some(b'b' | b'B') => (&s[..s.len() - 1], 1u64),
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1 << 10),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&s[..s.len() - 1], 1 << 30),
        Some(b't' | b'T') => (&s[..s.len() - 1], 1 << 40),
        Some(_) => (s, 1),
        None => return Err(bad()),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(unit).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_restic_suffixes() {
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("7b").unwrap(), 7);
        assert_eq!(parse_size("2k").unwrap(), 2048);
        assert_eq!(parse_size("3M").unwrap(), 3 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("1T").unwrap(), 1 << 40);
        for bad in ["", "k", "1.5m", "-1", "10x", "99999999999999999t"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tag_files_need_their_header() {
        assert_eq!(
            TagFile::parse("CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55").unwrap(),
            TagFile::cache_dir()
        );
        assert_eq!(TagFile::parse(".nobackup").unwrap().header, None);
        assert!(TagFile::parse("").is_err() && TagFile::parse("a/b").is_err());

        let d = tempfile::tempdir().unwrap();
        let ex = Excludes {
            if_present: vec![TagFile::cache_dir()],
            ..Excludes::default()
        };
        let warned = std::cell::Cell::new(0);
        let warn = |_| warned.set(warned.get() + 1);
        let tag = d.path().join(CACHEDIR_TAG);
        std::fs::write(&tag, b"not a cache").unwrap();
        assert!(ex.tag_of(d.path(), |_| true, warn).is_none());
        assert_eq!(warned.get(), 1, "a wrong signature is reported");
        std::fs::write(&tag, format!("{CACHEDIR_SIGNATURE}\n# made by x\n")).unwrap();
        assert!(ex.tag_of(d.path(), |_| true, warn).is_some());
        assert!(
            ex.tag_of(d.path(), |_| false, warn).is_none(),
            "only listed names"
        );
    }

    #[test]
    fn larger_than_applies_to_regular_files_only() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, [0u8; 10]).unwrap();
        let ex = Excludes {
            larger_than: Some(9),
            ..Excludes::default()
        };
        assert!(ex.rejects(&f, &std::fs::metadata(&f).unwrap()));
        assert!(!ex.rejects(d.path(), &std::fs::metadata(d.path()).unwrap()));
    }
}
