//! Path patterns for `--exclude` and `--include`, with restic's semantics: a pattern without
//! `/` matches a name at any depth; a pattern with `/` matches the absolute path from the
//! start; `*` stays within one component and `**` crosses components. A pattern also matches
//! everything below a path it matches.

use std::path::Path;

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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
