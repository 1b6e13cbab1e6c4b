//! Progress: a status line on a terminal (stderr), or, for `backup --json`, restic's stream of
//! `{"message_type":"status",...}` lines on stdout and `{"message_type":"error",...}` lines on
//! stderr. Nothing when stderr is not a terminal (text mode) or `-q` was given. Warnings always
//! go to stderr.
//!
//! Memory: the counters are atomics and the set of files being read holds at most one path
//! per reading thread.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cista::ops::{Phase, Progress};
use serde_json::json;

#[derive(Debug, Default)]
struct Counts {
    files: AtomicU64,
    bytes: AtomicU64,
    /// Expected bytes (restore: the snapshot's size; backup: the scanner's running total).
    total: AtomicU64,
    total_files: AtomicU64,
    errors: AtomicU64,
    /// Files being read now (restic's `current_files`).
    current: Mutex<BTreeSet<String>>,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// Nothing but warnings.
    Off,
    /// A restore's status line on a terminal.
    Line,
    /// A backup's status line on a terminal (percent, files, errors, the file being read).
    BackupLine,
    /// `backup --json`: status lines on stdout, errors as JSON on stderr.
    Json,
}

/// A progress reporter; call [`Reporter::finish`] to clear the line.
pub struct Reporter {
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    style: Style,
    start: Instant,
}

/// Status updates per second: `CISTA_PROGRESS_FPS` (like restic's `RESTIC_PROGRESS_FPS`,
/// at most 60), else `default`.
fn interval(default_fps: f64) -> Duration {
    let fps = std::env::var("CISTA_PROGRESS_FPS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f > 0.0)
        .unwrap_or(default_fps)
        .min(60.0);
    Duration::from_secs_f64(1.0 / fps)
}

impl Reporter {
    /// Starts a restore's status line if stderr is a terminal and not `quiet`.
    pub fn start(verb: &'static str, quiet: bool) -> Self {
        let style = if !quiet && std::io::stderr().is_terminal() {
            Style::Line
        } else {
            Style::Off
        };
        Self::spawn(style, verb, interval(2.0))
    }

    /// Starts a backup's progress: restic's JSON status stream when `json` (60 lines a
    /// second, as restic prints them), a status line when stderr is a terminal, or nothing
    /// when `quiet`.
    pub fn backup(quiet: bool, json: bool) -> Self {
        let (style, every) = match (quiet, json) {
            (true, _) => (Style::Off, interval(2.0)),
            (false, true) => (Style::Json, interval(60.0)),
            (false, false) if std::io::stderr().is_terminal() => (Style::BackupLine, interval(2.0)),
            _ => (Style::Off, interval(2.0)),
        };
        Self::spawn(style, "backed up", every)
    }

    fn spawn(style: Style, verb: &'static str, every: Duration) -> Self {
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let thread = if style == Style::Off {
            None
        } else {
            let (c, s) = (counts.clone(), stop.clone());
            std::thread::Builder::new()
                .name("cista-progress".into())
                .spawn(move || {
                    while !s.load(Ordering::Relaxed) {
                        std::thread::park_timeout(every);
                        if s.load(Ordering::Relaxed) {
                            break;
                        }
                        draw(&c, style, verb, start);
                    }
                })
                .ok()
        };
        Self {
            counts,
            stop,
            thread: Mutex::new(thread),
            style,
            start,
        }
    }

    /// Whether status is being shown (so totals are worth scanning for).
    pub fn is_active(&self) -> bool {
        self.style != Style::Off
    }

    /// Sets the expected total bytes (for the ETA).
    pub fn set_total(&self, n: u64) {
        self.counts.total.store(n, Ordering::Relaxed);
    }

    /// Stops the status updates: clears the line on a terminal; in JSON prints one last
    /// status line, so every stream has one before its summary.
    pub fn finish(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            h.thread().unpark();
            let _ = h.join();
            match self.style {
                Style::Json => draw(&self.counts, self.style, "", self.start),
                Style::Line | Style::BackupLine => {
                    let _ = write!(std::io::stderr(), "\r\x1b[K");
                }
                Style::Off => {}
            }
        }
    }
}

/// restic's `seconds_remaining`: bytes left at the average rate so far (0 when unknown).
fn seconds_remaining(done: u64, total: u64, elapsed: f64) -> u64 {
    if total <= done || done == 0 || elapsed <= 0.0 {
        return 0;
    }
    ((total - done) as f64 * elapsed / done as f64) as u64
}

/// restic's `percent_done`: a fraction in 0..=1 (0 while the total is unknown).
fn fraction_done(done: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (done as f64 / total as f64).min(1.0)
    }
}

/// One status line as restic's JSON prints it (`omitempty` fields left out when zero).
fn status_json(c: &Counts, elapsed: f64) -> serde_json::Value {
    let (done, total) = (
        c.bytes.load(Ordering::Relaxed),
        c.total.load(Ordering::Relaxed),
    );
    let mut v = json!({
        "message_type": "status",
        "percent_done": fraction_done(done, total),
    });
    let current: Vec<String> = c
        .current
        .lock()
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    let fields = [
        ("seconds_elapsed", elapsed as u64),
        ("seconds_remaining", seconds_remaining(done, total, elapsed)),
        ("total_files", c.total_files.load(Ordering::Relaxed)),
        ("files_done", c.files.load(Ordering::Relaxed)),
        ("total_bytes", total),
        ("bytes_done", done),
        ("error_count", c.errors.load(Ordering::Relaxed)),
    ];
    if let Some(m) = v.as_object_mut() {
        for (k, n) in fields {
            if n > 0 {
                m.insert(k.into(), n.into());
            }
        }
        if !current.is_empty() {
            m.insert("current_files".into(), current.into());
        }
    }
    v
}

fn clock(secs: u64) -> String {
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else {
        format!("{}:{:02}", secs / 60, secs % 60)
    }
}

/// The terminal's width: `COLUMNS` if set, else 80.
fn width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|w: &usize| *w >= 20)
        .unwrap_or(80)
}

/// The last `max` characters of `s`, marked with `…` when cut.
fn tail(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_owned();
    }
    let skip = n - max.saturating_sub(1);
    format!("…{}", s.chars().skip(skip).collect::<String>())
}

/// restic's backup status line: `[0:12] 23.45%  120 files 1.2 GiB, total 500 files 5.1 GiB,
/// 0 errors ETA 0:40`, then the file being read, cut to `width` columns.
fn backup_line(c: &Counts, elapsed: f64, width: usize) -> String {
    let (done, total) = (
        c.bytes.load(Ordering::Relaxed),
        c.total.load(Ordering::Relaxed),
    );
    let bytes = crate::cli::output::bytes;
    let mut line = format!("[{}] ", clock(elapsed as u64));
    if total > 0 {
        line.push_str(&format!("{:.2}%  ", fraction_done(done, total) * 100.0));
    }
    let files = c.files.load(Ordering::Relaxed);
    line.push_str(&format!("{} {}", files, plural(files, "file", "files")));
    line.push_str(&format!(" {}", bytes(done)));
    let total_files = c.total_files.load(Ordering::Relaxed);
    if total > 0 || total_files > 0 {
        line.push_str(&format!(
            ", total {} {} {}",
            total_files,
            plural(total_files, "file", "files"),
            bytes(total)
        ));
    }
    let errors = c.errors.load(Ordering::Relaxed);
    line.push_str(&format!(
        ", {} {}",
        errors,
        plural(errors, "error", "errors")
    ));
    let left = seconds_remaining(done, total, elapsed);
    if left > 0 {
        line.push_str(&format!(" ETA {}", clock(left)));
    }
    let first = c.current.lock().ok().and_then(|s| s.iter().next().cloned());
    let w = width.saturating_sub(1);
    let used = line.chars().count();
    if let Some(f) = first
        && used + 12 < w
    {
        line.push(' ');
        line.push_str(&tail(&f, w - used - 1));
    }
    tail(&line, w)
}

/// `1 file`, `2 files`.
pub fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

fn draw(c: &Counts, style: Style, verb: &str, start: Instant) {
    let elapsed = start.elapsed().as_secs_f64();
    match style {
        Style::Off => {}
        Style::Json => {
            let mut out = std::io::stdout().lock();
            // A closed stdout ends the status stream, not the backup.
            let _ = writeln!(out, "{}", status_json(c, elapsed)).and_then(|()| out.flush());
        }
        Style::BackupLine => {
            // Never eprint!: it panics when stderr is gone (see cli/output.rs).
            let _ = write!(
                std::io::stderr(),
                "\r\x1b[K{}",
                backup_line(c, elapsed, width())
            );
            let _ = std::io::stderr().flush();
        }
        Style::Line => {
            let secs = elapsed.max(0.001);
            let b = c.bytes.load(Ordering::Relaxed);
            let total = c.total.load(Ordering::Relaxed);
            let rate = b as f64 / secs;
            let eta = match seconds_remaining(b, total, secs) {
                0 => String::new(),
                left => format!(", ETA {}", clock(left)),
            };
            let of_total = if total > 0 {
                format!(" of {}", crate::cli::output::bytes(total))
            } else {
                String::new()
            };
            let files = c.files.load(Ordering::Relaxed);
            let _ = write!(
                std::io::stderr(),
                "\r\x1b[K[{:>4}s] {verb} {files} {}, {}{of_total}, {}/s{eta}",
                secs as u64,
                plural(files, "file", "files"),
                crate::cli::output::bytes(b),
                crate::cli::output::bytes(rate as u64),
            );
            let _ = std::io::stderr().flush();
        }
    }
}

impl Progress for Reporter {
    fn file_done(&self, _bytes: u64) {
        self.counts.files.fetch_add(1, Ordering::Relaxed);
    }
    fn bytes(&self, n: u64) {
        self.counts.bytes.fetch_add(n, Ordering::Relaxed);
    }
    fn warn(&self, message: &str) {
        let clear = if matches!(self.style, Style::Line | Style::BackupLine) {
            "\r\x1b[K"
        } else {
            ""
        };
        crate::cli::output::warn(format_args!("{clear}warning: {message}"));
    }
    fn error(&self, item: &Path, during: Phase, message: &str) {
        self.counts.errors.fetch_add(1, Ordering::Relaxed);
        if self.style == Style::Json {
            let line = json!({
                "message_type": "error",
                "error": {"message": message},
                "during": during.as_str(),
                "item": item.to_string_lossy(),
            });
            crate::cli::output::warn(line);
        } else {
            self.warn(&format!("{}: {message}", item.display()));
        }
    }
    fn file_started(&self, path: &Path) {
        if let Ok(mut s) = self.counts.current.lock() {
            s.insert(path.to_string_lossy().into_owned());
        }
    }
    fn file_finished(&self, path: &Path) {
        if let Ok(mut s) = self.counts.current.lock() {
            s.remove(path.to_string_lossy().as_ref());
        }
    }
    fn scan_total(&self, files: u64, bytes: u64, _done: bool) {
        self.counts.total_files.store(files, Ordering::Relaxed);
        self.counts.total.store(bytes, Ordering::Relaxed);
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_has_restic_names_and_omits_zeros() {
        let c = Counts::default();
        let v = status_json(&c, 0.2);
        assert_eq!(v, json!({"message_type": "status", "percent_done": 0.0}));
        c.total.store(200, Ordering::Relaxed);
        c.bytes.store(50, Ordering::Relaxed);
        c.total_files.store(4, Ordering::Relaxed);
        c.files.store(1, Ordering::Relaxed);
        c.errors.store(2, Ordering::Relaxed);
        c.current.lock().unwrap().insert("/b".into());
        c.current.lock().unwrap().insert("/a".into());
        let v = status_json(&c, 10.5);
        assert_eq!(
            v,
            json!({"message_type": "status", "percent_done": 0.25, "seconds_elapsed": 10,
                   "seconds_remaining": 31, "total_files": 4, "files_done": 1,
                   "total_bytes": 200, "bytes_done": 50, "error_count": 2,
                   "current_files": ["/a", "/b"]})
        );
    }

    #[test]
    fn backup_line_reads_like_restics() {
        let c = Counts::default();
        c.total.store(1 << 20, Ordering::Relaxed);
        c.bytes.store(1 << 18, Ordering::Relaxed);
        c.total_files.store(10, Ordering::Relaxed);
        c.files.store(1, Ordering::Relaxed);
        c.errors.store(1, Ordering::Relaxed);
        c.current.lock().unwrap().insert("/srv/data/file".into());
        let line = backup_line(&c, 65.0, 120);
        assert_eq!(
            line,
            "[1:05] 25.00%  1 file 256.000 KiB, total 10 files 1.000 MiB, 1 error ETA 3:15 /srv/data/file"
        );
        // A narrow terminal gets the line cut, never wrapped (a wrapped line is not cleared).
        assert_eq!(backup_line(&c, 65.0, 60).chars().count(), 59);
        let cut = backup_line(&c, 65.0, 91);
        assert!(
            cut.ends_with(" …v/data/file") && cut.chars().count() == 90,
            "{cut}"
        );
        assert_eq!(tail("abcdef", 4), "…def");
        assert_eq!(fraction_done(5, 4), 1.0);
    }
}
