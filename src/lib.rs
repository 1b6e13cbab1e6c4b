//! cista: encrypted, content-addressed, deduplicating backups.
//!
//! The library holds every algorithm; the `cista` binary is a thin CLI over it. Layers, from
//! the bottom: [`format`] (pure encode/decode of stored bytes, normative in docs/FORMAT.md),
//! [`crypto`], [`chunker`] and [`compress`]; [`backend`] (storage); [`host`] (who and when:
//! host name, user, pid, clocks, passed down rather than read by lower layers); [`repo`]
//! (composes them into a repository: keys, packs, index, snapshots, locks); [`ops`] (backup,
//! restore, ..., and [`ops::session`], the one way a command locks a repository).
//!
//! ```no_run
//! use cista::backend::{self, BackendOptions, Location};
//! use cista::repo::{Repository, InitOptions};
//!
//! // A folder, or s3://bucket/prefix, sftp://host/path, ... (docs/CLI.md, "Locations").
//! let location = Location::parse("/srv/backup/repo")?;
//! let backend = backend::open(&location, &BackendOptions::default())?;
//! let repo = Repository::init(backend, b"passphrase", &InitOptions::default())?;
//! println!("created repository {}", repo.id_hex());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod backend;
pub mod chunker;
pub mod compress;
pub mod crypto;
pub mod error;
pub mod format;
pub mod host;
pub mod id;
pub mod ops;
pub mod repo;

pub use error::{Error, Result};
