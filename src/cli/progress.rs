//! Progress on a terminal: a status line on stderr, refreshed twice a second; nothing when
//! stderr is not a terminal or `-q` was given. Warnings always go to stderr.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cista::ops::Progress;

#[derive(Debug, Default)]
struct Counts {
    files: AtomicU64,
    bytes: AtomicU64,
    total: AtomicU64,
    warnings: AtomicU64,
}

/// A progress reporter; call [`Reporter::finish`] to clear the line.
pub struct Reporter {
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    verb: &'static str,
    tty: bool,
}

impl Reporter {
    /// Starts the status line if stderr is a terminal and not `quiet`.
    pub fn start(verb: &'static str, quiet: bool) -> Self {
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = if !quiet && std::io::stderr().is_terminal() {
            let (c, s) = (counts.clone(), stop.clone());
            std::thread::Builder::new()
                .name("cista-progress".into())
                .spawn(move || draw_loop(&c, &s, verb))
                .ok()
        } else {
            None
        };
        let tty = thread.is_some();
        Self {
            counts,
            stop,
            thread: Mutex::new(thread),
            verb,
            tty,
        }
    }

    /// Whether a status line is being drawn.
    pub fn is_active(&self) -> bool {
        self.tty
    }

    /// Sets the expected total bytes (for the ETA).
    pub fn set_total(&self, n: u64) {
        self.counts.total.store(n, Ordering::Relaxed);
    }

    /// Stops and clears the status line.
    pub fn finish(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            h.thread().unpark();
            let _ = h.join();
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
        let _ = self.verb;
    }
}

fn draw_loop(c: &Counts, stop: &AtomicBool, verb: &str) {
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(Duration::from_millis(500));
        let secs = start.elapsed().as_secs_f64().max(0.001);
        let b = c.bytes.load(Ordering::Relaxed);
        let total = c.total.load(Ordering::Relaxed);
        let rate = b as f64 / secs;
        let eta = if total > b && rate > 0.0 {
            let left = ((total - b) as f64 / rate) as u64;
            format!(", ETA {}:{:02}", left / 60, left % 60)
        } else {
            String::new()
        };
        let of_total = if total > 0 {
            format!(" of {}", crate::cli::output::bytes(total))
        } else {
            String::new()
        };
        // Never eprint!: it panics when stderr is gone (see cli/output.rs).
        let _ = write!(
            std::io::stderr(),
            "\r\x1b[K[{:>4}s] {verb} {} files, {}{of_total}, {}/s{eta}",
            secs as u64,
            c.files.load(Ordering::Relaxed),
            crate::cli::output::bytes(b),
            crate::cli::output::bytes(rate as u64),
        );
        let _ = std::io::stderr().flush();
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
        self.counts.warnings.fetch_add(1, Ordering::Relaxed);
        let clear = if self.tty { "\r\x1b[K" } else { "" };
        crate::cli::output::warn(format_args!("{clear}warning: {message}"));
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish();
    }
}
