//! End-to-end tests: every test drives the real `cista` binary (`CARGO_BIN_EXE_cista`) against
//! repositories in temporary folders, and asserts on exit codes, output and restored bytes.
//! The library is used only to set up situations the CLI cannot make (held locks, tampering).

// clippy.toml allows these inside #[test] functions; the helpers are test code too, and
// failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "integration/harness.rs"]
mod harness;
#[path = "integration/servers.rs"]
mod servers;

#[path = "integration/backup_flags.rs"]
mod backup_flags;
#[path = "integration/browse.rs"]
mod browse;
#[path = "integration/cache.rs"]
mod cache;
#[path = "integration/check_fixtures.rs"]
mod check_fixtures;
#[path = "integration/cli.rs"]
mod cli;
#[path = "integration/config.rs"]
mod config;
#[path = "integration/copy.rs"]
mod copy;
#[path = "integration/corruption.rs"]
mod corruption;
#[path = "integration/dump.rs"]
mod dump;
#[path = "integration/errors.rs"]
mod errors;
#[path = "integration/fixture.rs"]
mod fixture;
#[path = "integration/forget.rs"]
mod forget;
#[path = "integration/incremental.rs"]
mod incremental;
#[path = "integration/interrupt.rs"]
mod interrupt;
#[path = "integration/keys.rs"]
mod keys;
#[path = "integration/lock_sessions.rs"]
mod lock_sessions;
#[path = "integration/locks.rs"]
mod locks;
#[path = "integration/obsolete.rs"]
mod obsolete;
#[path = "integration/postgres.rs"]
mod postgres;
#[path = "integration/prune.rs"]
mod prune;
#[path = "integration/prune_harness.rs"]
mod prune_harness;
#[path = "integration/regressions.rs"]
mod regressions;
#[path = "integration/remote.rs"]
mod remote;
#[path = "integration/restic_compat.rs"]
mod restic_compat;
#[path = "integration/restore_inplace.rs"]
mod restore_inplace;
#[path = "integration/rewrite.rs"]
mod rewrite;
#[path = "integration/robustness.rs"]
mod robustness;
#[path = "integration/roundtrip.rs"]
mod roundtrip;
#[path = "integration/sources.rs"]
mod sources;
#[path = "integration/tamper.rs"]
mod tamper;
#[path = "integration/trees.rs"]
mod trees;
