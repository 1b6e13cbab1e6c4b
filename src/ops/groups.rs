//! Snapshot groups (restic's `--group-by host,paths,tags`): which fields make two snapshots
//! part of one group, for `snapshots` and `forget`. Pure; no repository access.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;

/// Which snapshot fields make a group (restic's `SnapshotGroupByOptions`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl GroupBy {
    /// restic's default for `forget` and `--latest`: host and paths.
    pub const HOST_PATHS: Self = Self {
        host: true,
        paths: true,
        tags: false,
    };

    /// Parses `host,paths,tags` in any order and subset (singular forms too); the empty
    /// string means no grouping.
    pub fn parse(s: &str) -> Result<Self> {
        let mut g = Self::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" | "hosts" => g.host = true,
                "path" | "paths" => g.paths = true,
                "tag" | "tags" => g.tags = true,
                other => {
                    return Err(Error::InvalidInput(format!(
                        "unknown grouping {other:?}: use host, paths, tags"
                    )));
                }
            }
        }
        Ok(g)
    }

    /// Whether any field groups.
    pub fn any(&self) -> bool {
        self.host || self.paths || self.tags
    }

    /// The group key of a snapshot (paths and tags are stored sorted, so equal sets give
    /// equal keys, as restic's sorting does).
    pub fn key(&self, s: &Snapshot) -> GroupKey {
        GroupKey {
            hostname: self.host.then(|| s.hostname.clone()),
            paths: self.paths.then(|| s.paths.clone()),
            tags: self.tags.then(|| s.tags.clone()),
        }
    }

    /// Splits `list` into groups in key order, keeping each group's order from `list`.
    pub fn group<T>(
        &self,
        list: Vec<T>,
        snap: impl Fn(&T) -> &Snapshot,
    ) -> Vec<(GroupKey, Vec<T>)> {
        let mut groups: BTreeMap<GroupKey, Vec<T>> = BTreeMap::new();
        for item in list {
            groups.entry(self.key(snap(&item))).or_default().push(item);
        }
        groups.into_iter().collect()
    }
}

/// A group's identity; a field is `None` when not grouped by it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct GroupKey {
    pub hostname: Option<String>,
    pub paths: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

/// restic's `SnapshotGroupKey.String`: `host h, path [/a /b], tags [t]`, empty parts left out.
impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = self.hostname.as_ref().filter(|h| !h.is_empty()) {
            parts.push(format!("host {h}"));
        }
        if let Some(p) = self.paths.as_ref().filter(|p| !p.is_empty()) {
            parts.push(format!("path [{}]", p.join(" ")));
        }
        if let Some(t) = self.tags.as_ref().filter(|t| !t.is_empty()) {
            parts.push(format!("tags [{}]", t.join(" ")));
        }
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::Summary;
    use crate::id::{BlobId, Id};

    fn snap(host: &str, paths: &[&str], tags: &[&str]) -> Snapshot {
        Snapshot {
            time_unix_ns: 0,
            tz_offset_s: 0,
            hostname: host.into(),
            username: "u".into(),
            uid: 0,
            gid: 0,
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            tags: tags.iter().map(|p| (*p).to_owned()).collect(),
            tree: BlobId(Id([0; 32])),
            parent: None,
            program_version: "cista test".into(),
            incomplete: false,
            summary: Summary::default(),
            original: None,
            lost: None,
        }
    }

    #[test]
    fn parses_restics_grouping_names() {
        assert_eq!(GroupBy::parse("host,paths").unwrap(), GroupBy::HOST_PATHS);
        assert_eq!(
            GroupBy::parse("tags, path").unwrap(),
            GroupBy {
                host: false,
                paths: true,
                tags: true
            }
        );
        assert_eq!(GroupBy::parse("").unwrap(), GroupBy::default());
        assert!(GroupBy::parse("hostname").is_err());
    }

    #[test]
    fn groups_in_key_order_and_keeps_order_inside() {
        let list = vec![
            (1, snap("b", &["/x"], &[])),
            (2, snap("a", &["/x"], &["t"])),
            (3, snap("a", &["/y"], &[])),
            (4, snap("a", &["/x"], &[])),
        ];
        let g = GroupBy::HOST_PATHS.group(list.clone(), |(_, s)| s);
        let ids: Vec<Vec<i32>> = g
            .iter()
            .map(|(_, l)| l.iter().map(|x| x.0).collect())
            .collect();
        assert_eq!(ids, [vec![2, 4], vec![3], vec![1]]);
        assert_eq!(g[0].0.to_string(), "host a, path [/x]");
        let g = GroupBy::parse("tags")
            .unwrap()
            .group(list.clone(), |(_, s)| s);
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].0.to_string(), "tags [t]");
        assert_eq!(GroupBy::default().group(list, |(_, s)| s).len(), 1);
    }
}
