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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::globs::Globs;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Totals(Mutex<Vec<(u64, u64, bool)>>);
    impl Progress for Totals {
        fn scan_total(&self, files: u64, bytes: u64, done: bool) {
            self.0.lock().unwrap().push((files, bytes, done));
        }
    }

    #[test]
    fn counts_what_the_backup_will_cover() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("src");
        for (f, len) in [
            ("a", 10),
            ("d/b", 20),
            ("d/e/c", 30),
            ("x.log", 1000),
            ("big", 500),
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, vec![0u8; len]).unwrap();
        }
        std::fs::create_dir_all(root.join("tagged")).unwrap();
        std::fs::write(root.join("tagged/.skip"), b"").unwrap();
        std::fs::write(root.join("tagged/inner"), [0u8; 7]).unwrap();
        let ex = Excludes {
            globs: Globs::new(&["*.log".into()]).unwrap(),
            larger_than: Some(100),
            if_present: vec![super::super::TagFile::parse(".skip").unwrap()],
            ..Excludes::default()
        };
        let t = Totals::default();
        run(
            std::slice::from_ref(&root),
            &ex,
            false,
            &t,
            &[&AtomicBool::new(false)],
        );
        assert_eq!(t.0.lock().unwrap().last(), Some(&(3, 60, true)));

        // A stop request ends the walk without a final total.
        let t = Totals::default();
        run(&[root], &ex, false, &t, &[&AtomicBool::new(true)]);
        assert!(t.0.lock().unwrap().iter().all(|(.., done)| !done));
    }
}
