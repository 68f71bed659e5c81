//! [`Config`] and its validating [`ConfigBuilder`]. Every quantity a remote peer controls is
//! bounded here; each default says why it is that number.

use crate::engine::AuthorFilter;
use crate::frame::FrameLimits;
use libp2p::StreamProtocol;
use std::{fmt, time::Duration};

/// The protocol id of wire protocol v1: the default `protocol_name`.
pub const PROTOCOL_NAME: StreamProtocol = StreamProtocol::new("/secure-gossip/1.0.0");

/// How a node gossips and what it accepts. Build one with [`Config::builder`], or take
/// [`Config::default`].
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) gossip_interval: Option<Duration>,
    pub(crate) eager_push: bool,
    pub(crate) max_frame_size: usize,
    pub(crate) max_messages_per_frame: usize,
    pub(crate) max_have_ranges_per_frame: usize,
    pub(crate) max_want_ranges_per_frame: usize,
    pub(crate) max_payload_size: usize,
    pub(crate) max_age: Duration,
    pub(crate) max_clock_skew: Duration,
    pub(crate) max_stored_bytes: usize,
    pub(crate) max_stored_messages: usize,
    pub(crate) max_tracked_authors: usize,
    pub(crate) max_ranges_per_author: usize,
    pub(crate) max_ranges_per_peer: usize,
    pub(crate) max_queued_bytes: usize,
    pub(crate) write_timeout: Duration,
    pub(crate) max_inbound_bytes_per_sec: usize,
    pub(crate) max_inbound_messages_per_sec: usize,
    pub(crate) min_resync_interval: Duration,
    pub(crate) violation_ban: Duration,
    pub(crate) validate_messages: bool,
    pub(crate) max_pending_validations: usize,
    pub(crate) validation_timeout: Duration,
    pub(crate) author_filter: AuthorFilter,
    pub(crate) protocol_name: StreamProtocol,
    pub(crate) want_timeout: Duration,
    pub(crate) graft_timeout: Duration,
    pub(crate) announce_delay: Duration,
    pub(crate) broadcast_tree: bool,
    pub(crate) max_want_attempts: u32,
    pub(crate) start_sequence: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            // The seed package's default: fast enough that a lost eager push is repaired
            // within a human's notice, and an idle round costs nothing (it sends nothing).
            gossip_interval: Some(Duration::from_millis(100)),
            // Push new messages at once: lowest latency; rounds only repair.
            eager_push: true,
            // `docs/PROTOCOL.md` §1's default.
            max_frame_size: 1024 * 1024,
            // A 1 MiB frame holds about 10,000 of the smallest envelopes (~110 bytes);
            // 4,096 keeps the per-frame verification work of a hostile peer to ~0.2 s.
            max_messages_per_frame: 4096,
            // A range is at most ~22 bytes on the wire: 32,768 ranges fit a 1 MiB frame and
            // describe tens of thousands of authors' contiguous runs in one complete digest.
            max_have_ranges_per_frame: 32_768,
            // Wants are answered with whole envelopes, so a want is costlier than a have.
            max_want_ranges_per_frame: 4096,
            // Gossip is for small messages; 64 KiB fits 16 of the largest in one frame.
            max_payload_size: 64 * 1024,
            // One hour of history heals a partition, a restart or a suspended laptop, while
            // the window keeps per-author state collectable.
            max_age: Duration::from_secs(60 * 60),
            // Ordinary NTP-synced clocks differ by well under a second; a minute tolerates
            // badly kept ones without letting an author pre-date messages by much.
            max_clock_skew: Duration::from_secs(60),
            // 64 MiB: an hour of a busy chat of many hundreds of users, small for a server.
            max_stored_bytes: 64 * 1024 * 1024,
            max_stored_messages: 100_000,
            // Per-author state is ~100 bytes plus its ranges: 10,000 authors is about 1 MiB.
            max_tracked_authors: 10_000,
            // An author's ids are one run per process lifetime (sequences start at the clock),
            // so an hour holds a handful of runs; gaps come from loss and fill as it is
            // repaired. 64 ranges (1 KiB) per author bounds the table at 10 MiB of ranges.
            max_ranges_per_author: 64,
            // What one connection's peer is believed to know: an honest peer's ids are one
            // run per author, so 16,384 ranges (256 KiB) covers as many active authors; a
            // peer that claims a more fragmented history only stops being sent what it
            // claims to lack.
            max_ranges_per_peer: 16_384,
            // Four full frames queued per connection before frames are dropped (and their
            // messages re-announced in a later round).
            max_queued_bytes: 4 * 1024 * 1024,
            // A full 1 MiB frame drains in 30 s at 300 kbit/s: a peer slower than that, or one
            // that stopped reading, is cut off instead of pinning a full queue.
            write_timeout: Duration::from_secs(30),
            // One peer's share of this node: 4 MiB/s and 4,000 envelopes/s (about a tenth of
            // a core of signature checks) are ten times the benchmark's busiest load (200
            // messages/s of 256 bytes from every neighbour) and catch up a full store in
            // under 20 s. Beyond it the node stops reading from the peer (backpressure).
            max_inbound_bytes_per_sec: 4 * 1024 * 1024,
            max_inbound_messages_per_sec: 4_000,
            // Honest nodes send a complete digest once per connection; answering one costs a
            // walk of every held author, so a peer gets one answer per 10 s at most.
            min_resync_interval: Duration::from_secs(10),
            // A peer that broke the protocol is not gossiped with for a minute, so an
            // immediate reconnect gains nothing; a longer ban is the application's call
            // (`libp2p::allow_block_list`).
            violation_ban: Duration::from_secs(60),
            // Off: messages are forwarded as soon as their signature is checked.
            validate_messages: false,
            // One full frame of envelopes waiting for the application, shared by the peers:
            // a peer holding its share is not read from until verdicts come.
            max_pending_validations: 4096,
            // Long enough for an application that checks against a database; a message not
            // decided by then is ignored (never forwarded).
            validation_timeout: Duration::from_secs(10),
            author_filter: AuthorFilter::Any,
            protocol_name: PROTOCOL_NAME,
            // Several round trips on a slow link before a want is asked again.
            want_timeout: Duration::from_secs(1),
            // 1 s, 2 s, 4 s, 8 s: then the want is asked of another peer that has the id.
            max_want_attempts: 4,
            // An eager copy follows an announcement within a few hops' latency; 100 ms
            // (iroh-gossip waits 80 ms) repairs a broken tree link quickly without grafting
            // links whose copy is merely late.
            graft_timeout: Duration::from_millis(100),
            // Lazy links' announcements wait this long (well under graft_timeout): by then the
            // peer has usually announced the same message to this node, so a lazy link
            // carries one announcement per message instead of one each way.
            announce_delay: Duration::from_millis(20),
            // On: each message crosses most links as an announcement instead of a copy.
            broadcast_tree: true,
            start_sequence: None,
        }
    }
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
            protocol_name: None,
        }
    }

    /// Time between gossip rounds; `None`: rounds happen only when `gossip()` is called.
    pub fn gossip_interval(&self) -> Option<Duration> {
        self.gossip_interval
    }

    /// Whether new messages are pushed to peers at once (else only in rounds).
    pub fn eager_push(&self) -> bool {
        self.eager_push
    }

    /// Largest frame accepted or sent, in bytes.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Largest payload accepted or published, in bytes.
    pub fn max_payload_size(&self) -> usize {
        self.max_payload_size
    }

    /// How long a message is kept, and the oldest timestamp accepted (`now - max_age`).
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// How far in the future a timestamp may be.
    pub fn max_clock_skew(&self) -> Duration {
        self.max_clock_skew
    }

    /// Most bytes of messages kept; the oldest go first.
    pub fn max_stored_bytes(&self) -> usize {
        self.max_stored_bytes
    }

    /// Most messages kept; the oldest go first.
    pub fn max_stored_messages(&self) -> usize {
        self.max_stored_messages
    }

    /// Most authors whose known ids are tracked.
    pub fn max_tracked_authors(&self) -> usize {
        self.max_tracked_authors
    }

    /// Most bytes queued for sending on one connection (a frame counts as the larger of its
    /// encoded size and its memory).
    pub fn max_queued_bytes(&self) -> usize {
        self.max_queued_bytes
    }

    /// How long one frame may take to write before the peer is cut off as slow.
    pub fn write_timeout(&self) -> Duration {
        self.write_timeout
    }

    /// One peer's inbound budget: bytes and envelopes per second, read at most.
    pub fn inbound_budget(&self) -> (usize, usize) {
        (
            self.max_inbound_bytes_per_sec,
            self.max_inbound_messages_per_sec,
        )
    }

    /// Whether each new message waits for the application's verdict before it is forwarded.
    pub fn validate_messages(&self) -> bool {
        self.validate_messages
    }

    /// The protocol id this node gossips on.
    pub fn protocol_name(&self) -> &StreamProtocol {
        &self.protocol_name
    }

    /// Which authors are accepted.
    pub fn author_filter(&self) -> &AuthorFilter {
        &self.author_filter
    }

    /// The limits a received frame is checked against.
    pub fn frame_limits(&self) -> FrameLimits {
        FrameLimits {
            max_frame_size: self.max_frame_size,
            max_messages: self.max_messages_per_frame,
            max_have_ranges: self.max_have_ranges_per_frame,
            max_want_ranges: self.max_want_ranges_per_frame,
        }
    }
}

/// Builds a [`Config`]; [`ConfigBuilder::build`] checks that the values fit together.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    config: Config,
    protocol_name: Option<String>,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&mut self, value: $ty) -> &mut Self {
                self.config.$name = value;
                self
            }
        )*
    };
}

impl ConfigBuilder {
    setters! {
        /// Time between gossip rounds (default 100 ms); `None`: only `gossip()` runs a round.
        gossip_interval: Option<Duration>;
        /// Push new messages to peers at once (default `true`); `false`: only in rounds.
        eager_push: bool;
        /// Largest frame accepted or sent (default 1 MiB).
        max_frame_size: usize;
        /// Most envelopes in one frame (default 4,096).
        max_messages_per_frame: usize;
        /// Most `have` ranges in one frame (default 32,768).
        max_have_ranges_per_frame: usize;
        /// Most `want` ranges in one frame (default 4,096).
        max_want_ranges_per_frame: usize;
        /// Largest payload published or accepted (default 64 KiB). A larger one from the
        /// network is dropped quietly, like one outside the time window.
        max_payload_size: usize;
        /// Retention and the oldest timestamp accepted (default 1 hour).
        max_age: Duration;
        /// How far in the future a timestamp may be (default 60 s).
        max_clock_skew: Duration;
        /// Most bytes of messages kept (default 64 MiB).
        max_stored_bytes: usize;
        /// Most messages kept (default 100,000).
        max_stored_messages: usize;
        /// Most authors tracked (default 10,000). An author is forgotten only once all its
        /// messages are older than `max_age`, so none of them can be delivered again.
        max_tracked_authors: usize;
        /// Most ranges of known or held sequences per author (default 64): an id that would
        /// make more waits until the gaps around it fill.
        max_ranges_per_author: usize;
        /// Most ranges of ids one peer is believed to know (default 16,384; 16 bytes each).
        max_ranges_per_peer: usize;
        /// Most bytes queued for sending on one connection (default 4 MiB; a frame counts as
        /// the larger of its encoded size and its memory, and one always fits an empty queue).
        max_queued_bytes: usize;
        /// How long writing one frame may take before the peer is reported as slow and not
        /// gossiped with for `violation_ban` (default 30 s; its connection stays).
        write_timeout: Duration;
        /// Most bytes read from one peer per second (default 4 MiB); beyond it the node
        /// stops reading from that peer for a while.
        max_inbound_bytes_per_sec: usize;
        /// Most envelopes read from one peer per second (default 4,000).
        max_inbound_messages_per_sec: usize;
        /// Least time between two answers to one peer id's complete digests, across its
        /// connections (default 10 s); a complete digest within it is read as announcements
        /// only.
        min_resync_interval: Duration;
        /// How long a peer that broke the protocol (or did not take a frame within
        /// `write_timeout`) is not gossiped with (default 60 s; `Duration::ZERO`: gossip resumes
        /// at once, on the same connection). Its connections stay for other protocols.
        violation_ban: Duration;
        /// Hold each new message until the application calls
        /// [`Behaviour::report_validation`](crate::Behaviour::report_validation) (default
        /// `false`): held messages are delivered but not stored, forwarded or announced.
        validate_messages: bool;
        /// Messages waiting for a verdict (default 4,096), shared by the peers: a peer that
        /// holds the bound divided by the connected peers is not read from until verdicts
        /// come (all are paused at twice the bound plus a frame per peer).
        max_pending_validations: usize;
        /// How long a message may wait for a verdict before it is ignored (default 10 s).
        validation_timeout: Duration;
        /// Which authors are accepted (default [`AuthorFilter::Any`]).
        author_filter: AuthorFilter;
        /// First wait for a wanted message before asking again (default 1 s, doubling).
        want_timeout: Duration;
        /// Times a want is sent to one peer before another is asked (default 4).
        max_want_attempts: u32;
        /// How long ids announced by a lazy peer wait for a pushed copy before they are wanted
        /// from it and it is grafted into the tree (default 100 ms).
        graft_timeout: Duration;
        /// How long new messages wait before they are announced to lazy peers (default
        /// 20 ms; `Duration::ZERO`: in the same flush as the pushes).
        announce_delay: Duration;
        /// Push new messages along a broadcast tree (default `true`, with `eager_push`);
        /// `false`: push them to every peer (flooding).
        broadcast_tree: bool;
    }

    /// The protocol id to gossip on (default `/secure-gossip/1.0.0`). Nodes with different
    /// names are separate networks, even within one swarm. [`ConfigBuilder::build`] checks
    /// that it is a valid protocol id (it starts with `/`).
    pub fn protocol_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.protocol_name = Some(name.into());
        self
    }

    /// The first sequence number this node publishes (default: the current Unix time in
    /// microseconds, so a restarted author never reuses a number).
    pub fn start_sequence(&mut self, value: u64) -> &mut Self {
        self.config.start_sequence = Some(value);
        self
    }

    /// Checks the values and returns the config.
    pub fn build(&self) -> Result<Config, ConfigError> {
        let c = &self.config;
        let positive = [
            ("max_frame_size", c.max_frame_size),
            ("max_messages_per_frame", c.max_messages_per_frame),
            ("max_have_ranges_per_frame", c.max_have_ranges_per_frame),
            ("max_want_ranges_per_frame", c.max_want_ranges_per_frame),
            ("max_stored_messages", c.max_stored_messages),
            ("max_tracked_authors", c.max_tracked_authors),
            ("max_ranges_per_author", c.max_ranges_per_author),
            ("max_ranges_per_peer", c.max_ranges_per_peer),
            ("max_inbound_bytes_per_sec", c.max_inbound_bytes_per_sec),
            (
                "max_inbound_messages_per_sec",
                c.max_inbound_messages_per_sec,
            ),
            ("max_want_attempts", c.max_want_attempts as usize),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero { name });
        }
        // The engine counts whole milliseconds: a positive duration under one would round
        // to zero and make a timer fire in a busy loop.
        let durations = [
            ("max_age", Some(c.max_age)),
            ("want_timeout", Some(c.want_timeout)),
            ("write_timeout", Some(c.write_timeout)),
            ("validation_timeout", Some(c.validation_timeout)),
            ("graft_timeout", Some(c.graft_timeout)),
            ("gossip_interval", c.gossip_interval),
        ];
        for (name, d) in durations {
            match d {
                Some(d) if d.is_zero() => return Err(ConfigError::Zero { name }),
                Some(d) if d < Duration::from_millis(1) => {
                    return Err(ConfigError::UnderOneMillisecond { name, value: d });
                }
                _ => {}
            }
        }
        if c.start_sequence == Some(0) {
            return Err(ConfigError::Zero {
                name: "start_sequence",
            });
        }
        // One envelope of the largest payload must fit a frame.
        let largest_envelope = c.max_payload_size + ENVELOPE_OVERHEAD;
        if largest_envelope > c.max_frame_size {
            return Err(ConfigError::TooSmall {
                name: "max_frame_size",
                value: c.max_frame_size,
                min: largest_envelope,
                why: "one envelope of max_payload_size must fit in a frame",
            });
        }
        let mut config = c.clone();
        if let Some(name) = &self.protocol_name {
            config.protocol_name = StreamProtocol::try_from_owned(name.clone())
                .map_err(|_| ConfigError::InvalidProtocolName { name: name.clone() })?;
        }
        if !c.announce_delay.is_zero() && c.announce_delay < Duration::from_millis(1) {
            return Err(ConfigError::UnderOneMillisecond {
                name: "announce_delay",
                value: c.announce_delay,
            });
        }
        if c.max_ranges_per_peer < c.max_tracked_authors {
            return Err(ConfigError::TooSmall {
                name: "max_ranges_per_peer",
                value: c.max_ranges_per_peer,
                min: c.max_tracked_authors,
                why: "a peer's knowledge of every tracked author must fit",
            });
        }
        if c.max_queued_bytes < c.max_frame_size {
            return Err(ConfigError::TooSmall {
                name: "max_queued_bytes",
                value: c.max_queued_bytes,
                min: c.max_frame_size,
                why: "a full frame must fit in the queue",
            });
        }
        if c.max_stored_bytes < largest_envelope {
            return Err(ConfigError::TooSmall {
                name: "max_stored_bytes",
                value: c.max_stored_bytes,
                min: largest_envelope,
                why: "one message of max_payload_size must fit in the store",
            });
        }
        Ok(config)
    }
}

/// The most bytes an envelope's encoding adds to its payload: author, sequence, timestamp,
/// signature and the payload's own tag and length, plus the frame's tag and length for it.
pub(crate) const ENVELOPE_OVERHEAD: usize =
    (2 + 32) + (1 + 10) + (1 + 10) + (1 + 5) + (2 + 64) + (1 + 5);

/// Why a [`ConfigBuilder`] refused its values.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value that must be positive is zero.
    Zero {
        /// The setting.
        name: &'static str,
    },
    /// A duration is positive but under one millisecond, the engine's unit of time.
    UnderOneMillisecond {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: Duration,
    },
    /// `protocol_name` is not a protocol id: it must start with `/`.
    InvalidProtocolName {
        /// The name given.
        name: String,
    },
    /// A value is too small for another one.
    TooSmall {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: usize,
        /// The smallest value that works with the rest of the config.
        min: usize,
        /// Why.
        why: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Zero { name } => write!(f, "{name} must be greater than zero"),
            ConfigError::InvalidProtocolName { name } => {
                write!(
                    f,
                    "protocol_name {name:?} is not a protocol id (it must start with '/')"
                )
            }
            ConfigError::UnderOneMillisecond { name, value } => {
                write!(f, "{name} is {value:?}, must be at least 1 ms")
            }
            ConfigError::TooSmall {
                name,
                value,
                min,
                why,
            } => write!(f, "{name} is {value}, must be at least {min}: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_build_and_bad_values_say_which_limit() {
        Config::builder().build().unwrap();
        let err = Config::builder().max_frame_size(1000).build().unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::TooSmall {
                    name: "max_frame_size",
                    value: 1000,
                    ..
                }
            ),
            "{err}"
        );
        let err = Config::builder()
            .gossip_interval(Some(Duration::ZERO))
            .build()
            .unwrap_err();
        assert_eq!(err.to_string(), "gossip_interval must be greater than zero");
        // Under a millisecond would round to a zero-length timer: refused, with the value.
        let err = Config::builder()
            .gossip_interval(Some(Duration::from_micros(500)))
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "gossip_interval is 500µs, must be at least 1 ms"
        );
        let err = Config::builder()
            .protocol_name("my-app")
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "protocol_name \"my-app\" is not a protocol id (it must start with '/')"
        );
        let config = Config::builder()
            .protocol_name("/my-app/gossip/1.0.0")
            .build()
            .unwrap();
        assert_eq!(config.protocol_name().as_ref(), "/my-app/gossip/1.0.0");
        let err = Config::builder().max_queued_bytes(10).build().unwrap_err();
        assert!(err.to_string().contains("max_queued_bytes is 10"), "{err}");
    }
}
