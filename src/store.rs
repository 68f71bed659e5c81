//! Durable stores: what a node held outlives its process ([`Behaviour::with_store`]).
//!
//! The engine decides what is kept (retention, fair shares, every bound); a [`Store`] only
//! writes down what the engine says changed, one transaction at a time, and reads it all
//! back once at start-up. The behaviour writes before it reports: a message's
//! [`Event::Message`] leaves the behaviour only once the transaction holding its id is
//! durable, so after a restart, however the process ended, no message is reported twice. A
//! message accepted but not yet written when the process died is simply received again.
//!
//! `Redb` (feature `redb`) keeps everything in one crash-safe file. Without a store
//! ([`Behaviour::new`]) everything stays in memory, as before.
//!
//! [`Behaviour::with_store`]: crate::Behaviour::with_store
//! [`Behaviour::new`]: crate::Behaviour::new
//! [`Event::Message`]: crate::Event::Message

// redb 5 needs Rust 1.90, so the feature does too (`File::try_lock` is 1.89).
#[cfg(feature = "redb")]
#[clippy::msrv = "1.90"]
mod redb;

#[cfg(feature = "redb")]
#[cfg_attr(docsrs, doc(cfg(feature = "redb")))]
pub use self::redb::Redb;
pub use crate::engine::{AuthorRecord, Changes, Restored, Snapshot};

use std::fmt;
use std::path::PathBuf;

/// Where a node's durable state is written. Implement it for another database; the crate
/// ships `Redb` (feature `redb`).
pub trait Store: Send + 'static {
    /// Everything stored, read once when the behaviour starts. An empty snapshot for a new
    /// store.
    fn load(&mut self) -> Result<Snapshot, StoreError>;

    /// Writes `changes` in one transaction, durable when this returns `Ok`. On `Err`,
    /// nothing of it may be visible at the next [`Store::load`] that would not have been
    /// had the call not been made: the behaviour asks again later with these changes and
    /// any newer ones merged ([`Changes::merge`]).
    fn commit(&mut self, changes: &Changes) -> Result<(), StoreError>;
}

/// Why a durable store could not be opened, read or written.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (or another handle in this one) has the file open.
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a store of this crate: another program's file, or a store format this
    /// version does not read.
    Foreign {
        /// The file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The file is damaged (truncated, or altered since it was written).
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, as precisely as known.
        reason: String,
    },
    /// Reading or writing failed: the disk is full, permissions, an I/O error.
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

impl StoreError {
    /// The file concerned.
    pub fn path(&self) -> &std::path::Path {
        match self {
            StoreError::InUse { path }
            | StoreError::Foreign { path, .. }
            | StoreError::Corrupt { path, .. }
            | StoreError::Io { path, .. } => path,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::InUse { path } => write!(
                f,
                "gossip store {}: already open in another process (or another handle)",
                path.display()
            ),
            StoreError::Foreign { path, reason } => write!(
                f,
                "gossip store {}: not a store of this crate: {reason}",
                path.display()
            ),
            StoreError::Corrupt { path, reason } => write!(
                f,
                "gossip store {}: damaged (truncated or altered): {reason}",
                path.display()
            ),
            StoreError::Io { path, reason } => {
                write!(f, "gossip store {}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for StoreError {}
