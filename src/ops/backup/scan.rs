//! The progress scanner: counts the files and bytes a backup will cover, concurrently with the
//! backup (restic's scanner), so progress can show a percentage and an ETA. Its totals are an
//! estimate (files may change, the parent snapshot is not consulted); it stores nothing.
//!
//! Memory: the walk holds one open directory handle per level and no list of entries, so it
//! is bounded by the depth, which is capped at [`MAX_SCAN_DEPTH`] (deeper entries are not
//! counted; the backup itself is not limited by this).

use std::fs::ReadDir;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::Excludes;
use crate::ops::Progress;

/// Directory levels the scanner descends below each source path.
pub const MAX_SCAN_DEPTH: usize = 256;

/// Reports the totals every this many entries (and at the end).
const REPORT_EVERY: u64 = 256;

/// Walks the source paths, reporting running totals through [`Progress::scan_total`] until
/// done or one of `stop` is set.
pub(super) fn run(
    sources: &[PathBuf],
    ex: &Excludes,
    one_file_system: bool,
    progress: &dyn Progress,
    stop: &[&AtomicBool],
) {
    let (mut files, mut bytes, mut seen) = (0u64, 0u64, 0u64);
    for src in sources {
        let Ok(top) = std::fs::symlink_metadata(src) else {
            continue; // reported by the backup itself
        };
        if ex.rejects(src, &top) {
            continue;
        }
        if top.is_file() {
            files += 1;
            bytes += top.size();
            continue;
        }
        if !top.is_dir() {
            continue;
        }
        let dev = top.dev();
        let mut stack: Vec<(PathBuf, ReadDir)> = Vec::new();
        match open_dir(src, ex) {
            Some(rd) => stack.push((src.clone(), rd)),
            None => continue,
        }
        while let Some((dir, rd)) = stack.last_mut() {
            if stop.iter().any(|s| s.load(Ordering::Relaxed)) {
                return;
            }
            let Some(entry) = rd.next() else {
                stack.pop();
                continue;
            };
            let Ok(entry) = entry else { continue };
            let path = dir.join(entry.file_name());
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if ex.rejects(&path, &meta) {
                continue;
            }
            seen += 1;
            if seen.is_multiple_of(REPORT_EVERY) {
                progress.scan_total(files, bytes, false);
            }
            if meta.is_file() {
                files += 1;
                bytes += meta.size();
            } else if meta.is_dir()
                && stack.len() < MAX_SCAN_DEPTH
                && !(one_file_system && meta.dev() != dev)
                && let Some(rd) = open_dir(&path, ex)
            {
                stack.push((path, rd));
            }
        }
    }
    progress.scan_total(files, bytes, true);
}

/// Opens a directory unless a tag file marks it (its tag file is then all it keeps, not worth
/// counting). An unreadable directory counts as empty: the archiver meets it too and reports
/// it once, as an archival error (restic's text output does not show scan errors either).
fn open_dir(dir: &Path, ex: &Excludes) -> Option<ReadDir> {
    if !ex.if_present.is_empty() && ex.tag_of(dir, |_| true, |_| {}).is_some() {
        return None;
    }
    std::fs::read_dir(dir).ok()
}
