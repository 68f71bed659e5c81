//! Prometheus metrics (feature `metrics`), kept at the boundary: the behaviour feeds them from
//! the engine's outputs and counters and from its handlers' byte counts. Without the feature
//! every method is a no-op and nothing is compiled in.
//!
//! Names, as they appear in the text exposition: counters
//! `secure_gossip_messages_published_total`, `secure_gossip_messages_delivered_total`,
//! `secure_gossip_duplicates_total`, `secure_gossip_signatures_verified_total`,
//! `secure_gossip_signatures_discarded_total` (verified ahead, then dropped by the engine:
//! work a peer made this node do for nothing, charged to it),
//! `secure_gossip_peer_violations_total{kind}`, `secure_gossip_frames_dropped_total`,
//! `secure_gossip_wire_bytes_total{direction}`,
//! `secure_gossip_envelopes_out_of_window_total{side}` (`too_old`, `too_new`: a wrong clock
//! shows here), `secure_gossip_store_writes_total{result}` (`ok`, `failed`: transactions of
//! the durable store); gauges `secure_gossip_store_unwritten_messages` (deliveries waiting
//! for a write), `secure_gossip_peers`,
//! `secure_gossip_stored_messages`, `secure_gossip_stored_bytes`,
//! `secure_gossip_tracked_authors`, `secure_gossip_outstanding_wants`; histogram
//! `secure_gossip_delivery_delay_seconds` (receipt time by this node's wall clock minus the
//! envelope's timestamp: **sender-reported**, since the author chose the timestamp within
//! the window, so it measures honest authors' paths and can be shaped by any author; read it
//! as a health signal, not as a measurement an attacker cannot move).

use crate::engine::{Engine, Violation};

#[cfg(feature = "metrics")]
mod enabled {
    use super::*;
    use crate::engine::{Stats, ViolationKind};
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
    use prometheus_client::registry::{Registry, Unit};

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Kind {
        kind: &'static str,
    }

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Direction {
        direction: &'static str,
    }

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Side {
        side: &'static str,
    }

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Outcome {
        result: &'static str,
    }

    /// The registered metrics.
    #[derive(Debug)]
    pub(crate) struct Metrics {
        published: Counter,
        delivered: Counter,
        duplicates: Counter,
        verified: Counter,
        verified_discarded: Counter,
        violations: Family<Kind, Counter>,
        frames_dropped: Counter,
        wire_bytes: Family<Direction, Counter>,
        out_of_window: Family<Side, Counter>,
        store_writes: Family<Outcome, Counter>,
        unwritten: Gauge,
        peers: Gauge,
        stored_messages: Gauge,
        stored_bytes: Gauge,
        tracked_authors: Gauge,
        outstanding_wants: Gauge,
        delivery_delay: Histogram,
        /// The engine's counters when last read.
        last: Stats,
    }

    impl Metrics {
        pub(crate) fn new(registry: &mut Registry) -> Self {
            let r = registry.sub_registry_with_prefix("secure_gossip");
            let metrics = Metrics {
                published: Counter::default(),
                delivered: Counter::default(),
                duplicates: Counter::default(),
                verified: Counter::default(),
                verified_discarded: Counter::default(),
                violations: Family::default(),
                frames_dropped: Counter::default(),
                wire_bytes: Family::default(),
                out_of_window: Family::default(),
                store_writes: Family::default(),
                unwritten: Gauge::default(),
                peers: Gauge::default(),
                stored_messages: Gauge::default(),
                stored_bytes: Gauge::default(),
                tracked_authors: Gauge::default(),
                outstanding_wants: Gauge::default(),
                // 1 ms to about 65 s.
                delivery_delay: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
                last: Stats::default(),
            };
            r.register(
                "messages_published",
                "Messages published by this node",
                metrics.published.clone(),
            );
            r.register(
                "messages_delivered",
                "Messages from other authors delivered to the application",
                metrics.delivered.clone(),
            );
            r.register(
                "duplicates",
                "Envelopes received whose id was already known",
                metrics.duplicates.clone(),
            );
            r.register(
                "signatures_verified",
                "Signatures checked with verify_strict",
                metrics.verified.clone(),
            );
            r.register(
                "signatures_discarded",
                "Signatures verified by the connection handlers for envelopes the engine then \
                 dropped before its signature step",
                metrics.verified_discarded.clone(),
            );
            r.register(
                "peer_violations",
                "Peers that broke the protocol, by kind",
                metrics.violations.clone(),
            );
            r.register(
                "frames_dropped",
                "Frames not sent because a connection's queue was full or failed",
                metrics.frames_dropped.clone(),
            );
            r.register(
                "wire_bytes",
                "Frame bytes (length prefixes included) read or written",
                metrics.wire_bytes.clone(),
            );
            r.register(
                "envelopes_out_of_window",
                "Envelopes dropped unverified as too old (max_age) or too new (max_clock_skew)",
                metrics.out_of_window.clone(),
            );
            for side in ["too_old", "too_new"] {
                drop(metrics.out_of_window.get_or_create(&Side { side }));
            }
            r.register(
                "store_writes",
                "Transactions of the durable store, by result",
                metrics.store_writes.clone(),
            );
            r.register(
                "store_unwritten_messages",
                "Messages whose delivery waits for the durable store's next write",
                metrics.unwritten.clone(),
            );
            r.register("peers", "Connected gossip peers", metrics.peers.clone());
            r.register(
                "stored_messages",
                "Messages held for peers",
                metrics.stored_messages.clone(),
            );
            r.register(
                "stored_bytes",
                "Bytes of messages held, as counted against max_stored_bytes",
                metrics.stored_bytes.clone(),
            );
            r.register(
                "tracked_authors",
                "Authors whose known ids are tracked",
                metrics.tracked_authors.clone(),
            );
            r.register(
                "outstanding_wants",
                "Ranges of ids wanted from peers and not yet received",
                metrics.outstanding_wants.clone(),
            );
            r.register_with_unit(
                "delivery_delay",
                "Receipt time minus the envelope's timestamp (sender-reported: authors choose timestamps)",
                Unit::Seconds,
                metrics.delivery_delay.clone(),
            );
            // Both kinds show from the start, at 0.
            for kind in ViolationKind::ALL {
                drop(metrics.violations.get_or_create(&Kind {
                    kind: kind.as_str(),
                }));
            }
            metrics
        }

        /// Brings the counters and gauges up to date with the engine.
        pub(crate) fn update<P: Clone + Ord>(&mut self, engine: &Engine<P>) {
            let stats = engine.stats();
            let last = std::mem::replace(&mut self.last, stats);
            self.published.inc_by(stats.published - last.published);
            self.delivered.inc_by(stats.delivered - last.delivered);
            self.duplicates.inc_by(stats.duplicates - last.duplicates);
            self.verified.inc_by(stats.verified - last.verified);
            self.verified_discarded
                .inc_by(stats.verified_discarded - last.verified_discarded);
            self.out_of_window
                .get_or_create(&Side { side: "too_old" })
                .inc_by(stats.too_old - last.too_old);
            self.out_of_window
                .get_or_create(&Side { side: "too_new" })
                .inc_by(stats.too_new - last.too_new);
            let (stored, bytes) = engine.stored();
            self.peers.set(engine.peer_count() as i64);
            self.stored_messages.set(stored as i64);
            self.stored_bytes.set(bytes as i64);
            self.tracked_authors.set(engine.tracked_authors() as i64);
            self.outstanding_wants
                .set(engine.outstanding_wants() as i64);
        }

        pub(crate) fn violation(&self, violation: &Violation) {
            let kind = violation.kind().as_str();
            self.violations.get_or_create(&Kind { kind }).inc();
        }

        pub(crate) fn frame_dropped(&self) {
            self.frames_dropped.inc();
        }

        pub(crate) fn bytes_read(&self, bytes: usize) {
            self.wire(bytes, "in");
        }

        pub(crate) fn bytes_written(&self, bytes: usize) {
            self.wire(bytes, "out");
        }

        fn wire(&self, bytes: usize, direction: &'static str) {
            self.wire_bytes
                .get_or_create(&Direction { direction })
                .inc_by(bytes as u64);
        }

        /// A transaction of the durable store succeeded or failed.
        pub(crate) fn store_write(&self, ok: bool) {
            let result = if ok { "ok" } else { "failed" };
            self.store_writes.get_or_create(&Outcome { result }).inc();
        }

        /// `unwritten` deliveries wait for the durable store.
        pub(crate) fn store_unwritten(&self, unwritten: usize) {
            self.unwritten.set(unwritten as i64);
        }

        /// A message delivered `delay_ms` after its timestamp.
        pub(crate) fn delivered(&self, delay_ms: i64) {
            self.delivery_delay.observe(delay_ms.max(0) as f64 / 1000.0);
        }
    }
}

#[cfg(feature = "metrics")]
pub(crate) use enabled::Metrics;

/// Without the `metrics` feature: nothing is measured.
#[cfg(not(feature = "metrics"))]
#[derive(Debug)]
pub(crate) struct Metrics;

#[cfg(not(feature = "metrics"))]
impl Metrics {
    pub(crate) fn update<P: Clone + Ord>(&mut self, _: &Engine<P>) {}
    pub(crate) fn violation(&self, _: &Violation) {}
    pub(crate) fn frame_dropped(&self) {}
    pub(crate) fn bytes_read(&self, _: usize) {}
    pub(crate) fn bytes_written(&self, _: usize) {}
    pub(crate) fn delivered(&self, _: i64) {}
    pub(crate) fn store_write(&self, _: bool) {}
    pub(crate) fn store_unwritten(&self, _: usize) {}
}
