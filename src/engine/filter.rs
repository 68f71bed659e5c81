//! Which authors a node accepts at all: [`AuthorFilter`] (any, or an allow-list) and a set of
//! blocked authors, both changeable at run time.
//!
//! A filtered author is refused before its signature is checked (`receive.rs` step 4): its
//! messages are not stored, forwarded, announced, asked for, or listed in this node's digests,
//! and nothing is kept of what peers know of it. Blocking an author drops what the node held
//! of it; its ids already known stay known, so unblocking it never delivers a message twice.
//! This node's own key is never filtered.
//!
//! There is one filter per node: [`SharedFilter`], held by the engine and read by the
//! connection handlers that check envelopes ahead (`verify.rs`), so both always agree.

use crate::keys::PublicKey;
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Which authors' messages a node accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthorFilter {
    /// Every author (the default).
    #[default]
    Any,
    /// Only these authors: a closed group.
    Allow(BTreeSet<PublicKey>),
}

impl AuthorFilter {
    /// Only `authors`.
    pub fn allow(authors: impl IntoIterator<Item = PublicKey>) -> Self {
        AuthorFilter::Allow(authors.into_iter().collect())
    }

    /// Whether `author` passes the filter.
    pub fn permits(&self, author: &PublicKey) -> bool {
        match self {
            AuthorFilter::Any => true,
            AuthorFilter::Allow(allowed) => allowed.contains(author),
        }
    }
}

/// The filter in force: the configured [`AuthorFilter`], and authors blocked at run time.
#[derive(Clone, Debug)]
pub(crate) struct Filter {
    me: PublicKey,
    filter: AuthorFilter,
    blocked: BTreeSet<PublicKey>,
}

impl Filter {
    pub(crate) fn new(me: PublicKey, filter: AuthorFilter) -> Self {
        Filter {
            me,
            filter,
            blocked: BTreeSet::new(),
        }
    }

    pub(crate) fn permits(&self, author: &PublicKey) -> bool {
        *author == self.me || (!self.blocked.contains(author) && self.filter.permits(author))
    }

    /// Unblocks `author`, and adds it to an allow-list.
    pub(crate) fn allow(&mut self, author: PublicKey) {
        self.blocked.remove(&author);
        if let AuthorFilter::Allow(allowed) = &mut self.filter {
            allowed.insert(author);
        }
    }

    /// Blocks `author`; returns whether it was permitted before.
    pub(crate) fn block(&mut self, author: PublicKey) -> bool {
        let was = self.permits(&author);
        self.blocked.insert(author);
        was && author != self.me
    }
}

/// The node's one [`Filter`], shared by the engine and the handlers.
#[derive(Clone, Debug)]
pub(crate) struct SharedFilter(Arc<RwLock<Filter>>);

impl SharedFilter {
    pub(crate) fn new(me: PublicKey, filter: AuthorFilter) -> Self {
        SharedFilter(Arc::new(RwLock::new(Filter::new(me, filter))))
    }

    /// The filter, to read (a poisoned lock still holds a consistent filter: every change is
    /// one set operation).
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Filter> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Filter> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn permits(&self, author: &PublicKey) -> bool {
        self.read().permits(author)
    }

    /// See [`Filter::allow`].
    pub(crate) fn allow(&self, author: PublicKey) {
        self.write().allow(author);
    }

    /// See [`Filter::block`].
    pub(crate) fn block(&self, author: PublicKey) -> bool {
        self.write().block(author)
    }
}
