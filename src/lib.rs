//! # secure-gossip
//!
//! Signed epidemic broadcast for any libp2p swarm. Any node publishes a message; it reaches
//! every node of the connected network; every message is signed with its author's ed25519
//! key, so no relay can forge, alter or replay it, and a relay that drops it only delays it
//! while another honest path exists (the README's threat model says what Sybils can do).
//!
//! - Every envelope is signed over `"secure-gossip/v1" ‖ author ‖ sequence ‖ timestamp ‖
//!   payload` and checked with strict ed25519 verification (`verify_strict`), so all nodes
//!   accept exactly the same messages.
//! - A message is delivered to the application once per node, never to its own author.
//! - New messages are pushed at once to peers not known to have them; periodic rounds
//!   announce (`have`) what a peer may lack and the peer pulls it (`want`). An idle network
//!   sends nothing.
//! - On every new connection the two sides exchange digests of every id they know, so a
//!   peer that connects later receives what was published before (within retention).
//! - Every quantity a remote peer controls is bounded by [`Config`].
//!
//! ```no_run
//! use libp2p::swarm::NetworkBehaviour;
//! use secure_gossip::{Behaviour, Config, Event, Keypair};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = Keypair::generate();
//! let config = Config::builder()
//!     .gossip_interval(Some(Duration::from_millis(100)))
//!     .eager_push(true)
//!     .build()?;
//! let mut gossip = Behaviour::new(keys, config);
//! let id = gossip.publish(b"hello world".to_vec())?;
//! println!("published {id}");
//! // Add `gossip` to your swarm's behaviour; `SwarmEvent::Behaviour(Event::Message { .. })`
//! // then brings each message from other authors once.
//! # Ok(()) }
//! ```
//!
//! Validation, author filters and separate networks:
//!
//! ```no_run
//! use secure_gossip::{AuthorFilter, Behaviour, Config, Keypair, Validation};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (alice, bob) = (Keypair::generate(), Keypair::generate());
//! let config = Config::builder()
//!     .validate_messages(true)
//!     .protocol_name("/my-app/gossip/1.0.0")
//!     .author_filter(AuthorFilter::allow([alice.public(), bob.public()]))
//!     .build()?;
//! let mut gossip = Behaviour::new(alice, config);
//! // For each `Event::Message { message, .. }`, once the application has checked it:
//! # let id = gossip.publish(b"x".to_vec())?;
//! let still_waiting = gossip.report_validation(&id, Validation::Accept);
//! gossip.block_author(&bob.public());
//! # let _ = still_waiting;
//! # Ok(()) }
//! ```
//!
//! The protocol itself lives in the sans-IO [`engine`]; [`Behaviour`] and its handler only
//! move bytes and time. The wire format is specified in `docs/PROTOCOL.md`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The README's code must compile: its Rust blocks run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod behaviour;
mod budget;
mod clock;
#[cfg(feature = "test-utils")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-utils")))]
pub mod codec;
#[cfg(not(feature = "test-utils"))]
mod codec;
mod config;
pub mod engine;
mod envelope;
mod frame;
mod handler;
mod keys;
mod metrics;
mod ranges;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
mod serde_impls;
// A deterministic simulator of many engines (feature `test-utils`); its docs are its own.
#[cfg(feature = "test-utils")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-utils")))]
pub mod sim;
pub mod store;
mod verify;
mod writer;

/// The prost types of `proto/secure_gossip.proto` (package `secure_gossip.v1`; feature
/// `test-utils`, for tests that write raw frames).
#[cfg(feature = "test-utils")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-utils")))]
#[allow(missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/secure_gossip.v1.rs"));
}
#[cfg(not(feature = "test-utils"))]
#[allow(missing_docs, dead_code)]
mod proto {
    include!(concat!(env!("OUT_DIR"), "/secure_gossip.v1.rs"));
}

pub use behaviour::{Behaviour, Event};
pub use bytes::Bytes;
pub use config::{Config, ConfigBuilder, ConfigError, PROTOCOL_NAME};
pub use engine::{
    AuthorFilter, ImportError, PublishError, Stats, Validation, Violation, ViolationKind,
};
pub use envelope::{Envelope, EnvelopeError, Message, MessageId, SIGNING_CONTEXT, TAG_CONTEXT};
pub use frame::{Digest, Frame, FrameError, FrameLimits, MAX_CONTROL_AUTHORS};
pub use keys::{KeyError, Keypair, PublicKey};
pub use ranges::{RangeError, RangeSet};
