//! A deterministic simulator of many [`Engine`]s in one thread: no sockets, no clock.
//!
//! Nodes are joined by links with a fixed, seeded latency; frames on a link arrive in order
//! after that latency. Faults:
//! - **loss**: each frame is lost with probability `loss`. A reliable stream never loses one
//!   frame alone, so a lost frame breaks its link, as a transport failure would: everything in
//!   flight on it is gone, both ends see the disconnect, and the link is re-dialled after
//!   `redial` (both ends then exchange complete digests);
//! - **partitions**: links across a cut go down until healed;
//! - **churn**: nodes leave and come back, with their state or as a fresh engine.
//!
//! Adversaries: [`SimConfig::sybils`] adds Sybil nodes (cheap models, not engines: see
//! [`Attack`]) after the honest ones, and a share of every honest node's connections to
//! them; the honest graph, its latencies and keys stay those of the same seed without them,
//! so a run with an attack compares with the same network without it
//! ([`attack::AttackScenario`]).
//!
//! Everything random comes from one [`Rng`] seeded by [`SimConfig::seed`]: the same seed
//! replays the same run. [`Simulation::report`] gives delivery ratio, duplicate deliveries,
//! RMR, the last delivery's hop count and the bytes sent.

use crate::config::Config;
use crate::engine::{Engine, Millis, Output};
use crate::envelope::MessageId;
use crate::frame::Frame;
use crate::keys::{Keypair, PublicKey};
use crate::verify::{Verdict, VerifiedFrame};
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt;

pub mod attack;
mod sybil;

use sybil::Sybils;
pub use sybil::{Attack, SybilConfig};

/// SplitMix64: a tiny seeded generator for simulations and tests (not for keys).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator that replays the same sequence for the same seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// An index in `0..n` (`n > 0`).
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64) < p * (1u64 << 53) as f64
    }
}

/// The shape of a simulation.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Average number of links per node (a random spanning tree plus random extra links).
    pub degree: usize,
    /// Each link's one-way latency is drawn once from this range (milliseconds).
    pub latency: (Millis, Millis),
    /// Probability that a frame is lost (and its link broken and re-dialled).
    pub loss: f64,
    /// How long a broken link stays down before it is re-dialled.
    pub redial: Millis,
    /// Every node's engine config.
    pub engine: Config,
    /// The seed of everything random.
    pub seed: u64,
    /// Sybil nodes and what they do (none by default).
    pub sybils: Option<SybilConfig>,
    /// An honest node left with a single honest link (the last node: its other honest
    /// links are not made), as the target of an eclipse.
    pub single_link: Option<usize>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 100,
            degree: 6,
            latency: (10, 100),
            loss: 0.0,
            redial: 500,
            engine: Config::default(),
            seed: 1,
            sybils: None,
            single_link: None,
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Report {
    /// Nodes in the simulation.
    pub nodes: usize,
    /// Messages published.
    pub messages: usize,
    /// Deliveries made / deliveries expected (every up node, every retained message of
    /// another author).
    pub delivery_ratio: f64,
    /// Deliveries of a message a node had already delivered (must be 0).
    pub duplicate_deliveries: u64,
    /// Deliveries later than the message's `max_age` (must be 0).
    pub late_deliveries: u64,
    /// Relative message redundancy: envelope copies received / (messages × (N − 1)) − 1.
    pub rmr: f64,
    /// The largest hop count at which any node first received a message.
    pub last_delivery_hop: u32,
    /// The longest time from publication to a delivery, in milliseconds.
    pub last_delivery_ms: Millis,
    /// Bytes of frames sent (prefix included).
    pub bytes: u64,
    /// Frames sent.
    pub frames: u64,
    /// Links broken by loss.
    pub link_failures: u64,
    /// Envelope copies received, duplicates included.
    pub envelope_copies: u64,
    /// Simulated time, in milliseconds.
    pub elapsed_ms: Millis,
    /// Bytes of frames sent by honest nodes (to anyone, Sybils included).
    pub honest_bytes: u64,
    /// Bytes of frames sent by Sybils.
    pub sybil_bytes: u64,
    /// Violations honest nodes reported of Sybils.
    pub violations: u64,
    /// Deliveries of messages no honest node published (a Sybil flood's).
    pub other_deliveries: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>6} {:>6} {:>9.4} {:>5} {:>5} {:>7.3} {:>4} {:>8} {:>12} {:>9} {:>6}",
            self.nodes,
            self.messages,
            self.delivery_ratio,
            self.duplicate_deliveries,
            self.late_deliveries,
            self.rmr,
            self.last_delivery_hop,
            self.last_delivery_ms,
            self.bytes,
            self.frames,
            self.link_failures
        )
    }
}

impl Report {
    /// The RMR of what happened between `earlier` (a report of the same run) and this one.
    pub fn rmr_since(&self, earlier: &Report) -> f64 {
        let messages = self.messages.saturating_sub(earlier.messages) as f64;
        let n = self.nodes.saturating_sub(1).max(1) as f64;
        if messages == 0.0 {
            return 0.0;
        }
        (self.envelope_copies - earlier.envelope_copies) as f64 / (messages * n) - 1.0
    }

    /// Bytes sent between `earlier` and this report.
    pub fn bytes_since(&self, earlier: &Report) -> u64 {
        self.bytes - earlier.bytes
    }

    /// The column names of [`Report`]'s `Display` row.
    pub const HEADER: &'static str =
        " nodes   msgs  delivery   dup  late     rmr  hop  last_ms        bytes    frames  fails";
}

#[derive(Debug)]
struct Link {
    latency: Millis,
    up: bool,
    /// Bumped whenever the link goes down: frames of an older epoch are lost.
    epoch: u64,
}

/// An event at a time; ordered by time, then by when it was scheduled.
#[derive(Debug)]
struct Scheduled {
    at: Millis,
    order: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

#[derive(Debug)]
enum Event {
    Frame {
        from: usize,
        to: usize,
        epoch: u64,
        frame: Frame,
    },
    Redial(usize, usize),
    Timer(usize),
    /// The Sybils' own turn.
    SybilTick,
}

struct Node {
    keys: Keypair,
    engine: Engine<usize>,
    up: bool,
    timer: Option<Millis>,
    /// Hop count at which this node first got each message (0 for its own).
    hops: HashMap<MessageId, u32>,
    delivered: HashMap<MessageId, u32>,
}

struct Published {
    timestamp: Millis,
    at: Millis,
    /// The honest node that published it.
    by: usize,
}

/// A running simulation. See the [module docs](self).
pub struct Simulation {
    config: SimConfig,
    rng: Rng,
    now: Millis,
    nodes: Vec<Node>,
    links: BTreeMap<(usize, usize), Link>,
    /// Nodes on the far side of a partition (links between sides stay down).
    side: Vec<bool>,
    /// Pending events, earliest first; ties in the order they were scheduled.
    queue: BinaryHeap<Reverse<Scheduled>>,
    scheduled: u64,
    /// Envelope copies received, duplicates included (for RMR).
    copies: u64,
    published: BTreeMap<MessageId, Published>,
    report: Report,
    /// The Sybils, if any (node indices from `nodes.len()` on).
    sybils: Option<Sybils>,
    /// Per delivery of an honest message at an honest node: (publisher, delay).
    delays: Vec<(usize, Millis)>,
    /// Signatures checked so far, valid or not. Each signed envelope is verified once per
    /// run, not once per node: a node is handed the verdict as its connection handlers would
    /// hand it over (an envelope found valid is `Cached`, which the engine takes as verified;
    /// one found invalid is left unchecked, so the engine treats it exactly as before). What
    /// a node does with a message is the same either way; this saves the simulator the
    /// repeated curve arithmetic.
    signatures: HashMap<Signed, bool>,
}

/// A signed envelope's content, as the simulator keys its signature checks.
type Signed = (MessageId, u64, [u8; 64], Bytes);

/// The simulated start time: 2025-01-01, so timestamps look like real ones.
const EPOCH: Millis = 1_735_689_600_000;

impl Simulation {
    /// Builds the nodes and a random connected topology, and connects every link.
    pub fn new(config: SimConfig) -> Self {
        let mut rng = Rng::new(config.seed);
        let now = EPOCH;
        let nodes = (0..config.nodes)
            .map(|_| {
                let mut seed = [0u8; 32];
                for chunk in seed.chunks_mut(8) {
                    chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
                }
                let keys = Keypair::from_seed(&seed);
                Node {
                    engine: Engine::new(keys.clone(), config.engine.clone(), now),
                    keys,
                    up: true,
                    timer: None,
                    hops: HashMap::new(),
                    delivered: HashMap::new(),
                }
            })
            .collect();
        let total = config.nodes + config.sybils.as_ref().map_or(0, |s| s.count);
        let mut sim = Simulation {
            side: vec![false; total],
            rng,
            now,
            nodes,
            links: BTreeMap::new(),
            queue: BinaryHeap::new(),
            scheduled: 0,
            copies: 0,
            published: BTreeMap::new(),
            report: Report {
                nodes: config.nodes,
                ..Report::default()
            },
            sybils: None,
            delays: Vec::new(),
            signatures: HashMap::new(),
            config,
        };
        let n = sim.config.nodes;
        for i in 1..n {
            let j = sim.rng.index(i);
            sim.add_link(i, j);
        }
        let target = (n * sim.config.degree / 2).min(n * n.saturating_sub(1) / 2);
        while sim.links.len() < target {
            let (a, b) = (sim.rng.index(n), sim.rng.index(n));
            if a != b {
                sim.add_link(a, b);
            }
        }
        if let Some(lone) = sim.config.single_link {
            // The node's first link (of the spanning tree) stays: the last node is no other
            // node's link in that tree, so the honest graph stays connected.
            let first = sim
                .links
                .keys()
                .copied()
                .find(|&(a, b)| a == lone || b == lone);
            sim.links
                .retain(|&(a, b), _| (a != lone && b != lone) || Some((a, b)) == first);
        }
        let honest_links: Vec<(usize, usize)> = sim.links.keys().copied().collect();
        let cold_boot = sim.add_sybils();
        if cold_boot {
            // The Sybils are there first; honest links come up a second later.
            let sybil_links: Vec<(usize, usize)> =
                sim.links.keys().copied().filter(|&(_, b)| b >= n).collect();
            for (a, b) in sybil_links {
                sim.link_up(a, b);
            }
            for (a, b) in honest_links {
                sim.push(now + 1_000, Event::Redial(a, b));
            }
        } else {
            let keys: Vec<(usize, usize)> = sim.links.keys().copied().collect();
            for (a, b) in keys {
                sim.link_up(a, b);
            }
        }
        for i in 0..n {
            sim.schedule_timer(i);
        }
        if let Some(brain) = &sim.sybils {
            let at = brain.next_tick();
            sim.push(at, Event::SybilTick);
        }
        sim
    }

    /// Adds the Sybils of the config, with links drawn from a generator of their own (the
    /// honest graph is the same as without them). Returns whether they boot first.
    fn add_sybils(&mut self) -> bool {
        let Some(config) = self.config.sybils.clone() else {
            return false;
        };
        let n = self.config.nodes;
        let mut rng = Rng::new(self.config.seed ^ 0x5B11_5EED);
        let mut neighbours = vec![Vec::new(); n];
        if config.count > 0 {
            let (lo, hi) = self.config.latency;
            for (h, mine) in neighbours.iter_mut().enumerate() {
                let want = config.links_per_node.min(config.count);
                let mut picked: Vec<(Millis, usize)> = Vec::with_capacity(want);
                while picked.len() < want {
                    let s = n + rng.index(config.count);
                    if picked.iter().any(|&(_, p)| p == s) {
                        continue;
                    }
                    picked.push((lo + rng.below(hi.saturating_sub(lo) + 1), s));
                }
                picked.sort_unstable();
                for &(latency, s) in &picked {
                    self.insert_link((h, s), latency);
                }
                *mine = picked.into_iter().map(|(_, s)| s).collect();
            }
        }
        let target_author = (config.target < n).then(|| self.nodes[config.target].keys.public());
        let cold_boot = config.attack == Attack::ColdBoot;
        self.sybils = Some(Sybils::new(
            config,
            neighbours,
            target_author,
            self.now,
            self.config.seed,
        ));
        cold_boot
    }

    fn is_sybil(&self, i: usize) -> bool {
        i >= self.nodes.len()
    }

    /// Whether node `i` is up (Sybils always are).
    fn up(&self, i: usize) -> bool {
        self.nodes.get(i).is_none_or(|n| n.up)
    }

    /// The covert flash: every Sybil stops relaying and answering at once.
    pub fn withhold(&mut self) {
        if let Some(brain) = &mut self.sybils {
            brain.withhold();
        }
    }

    /// Takes every Sybil link down (`up` false), or brings up those whose honest end is up
    /// on the same side of any partition. A link that comes up is dialled as any other: the
    /// engine is told, the Sybil sends its first frame. Links taken down come back as any
    /// other would: with [`Simulation::bring_up`] of their honest end, [`Simulation::heal`],
    /// or a redial after a lost frame.
    pub fn sybil_links(&mut self, up: bool) {
        let links: Vec<(usize, usize)> = self
            .links
            .keys()
            .copied()
            .filter(|&(a, b)| self.is_sybil(a) || self.is_sybil(b))
            .collect();
        for (a, b) in links {
            if up {
                self.link_up(a, b);
            } else {
                self.link_down(a, b);
            }
        }
    }

    /// Tells the Sybils of every author that has published so far, as one connection to
    /// any honest node would (its first frame, a complete digest, names them all).
    pub fn sybils_hear_of_authors(&mut self) {
        let authors: Vec<PublicKey> = self.published.keys().map(|id| id.author).collect();
        if let Some(brain) = &mut self.sybils {
            brain.hear_of(authors);
        }
    }

    /// Gives the Sybils `count` valid envelopes of throwaway authors to flood with.
    pub fn prepare_flood(&mut self, count: usize) {
        let now = self.now;
        if let Some(brain) = &mut self.sybils {
            brain.prepare_flood(count, now);
        }
    }

    /// The delays (publication to delivery, ms) of every delivery of an honest message at an
    /// honest node, of messages published by `by` if given, sorted.
    pub fn delays(&self, by: Option<usize>) -> Vec<Millis> {
        let mut out: Vec<Millis> = self
            .delays
            .iter()
            .filter(|(p, _)| by.is_none_or(|b| b == *p))
            .map(|(_, d)| *d)
            .collect();
        out.sort_unstable();
        out
    }

    /// Whether node `i` holds (or knows) every message published so far that is still
    /// retained.
    pub fn holds_all(&self, i: usize) -> bool {
        self.retained()
            .filter(|(_, p)| p.by != i)
            .all(|(id, _)| self.nodes[i].engine.knows(id))
    }

    /// The messages published that are still within retention.
    fn retained(&self) -> impl Iterator<Item = (&MessageId, &Published)> {
        let max_age = millis(self.config.engine.max_age);
        self.published
            .iter()
            .filter(move |(_, p)| p.timestamp + max_age >= self.now)
    }

    fn add_link(&mut self, a: usize, b: usize) {
        let key = (a.min(b), a.max(b));
        if self.links.contains_key(&key) {
            return;
        }
        let (lo, hi) = self.config.latency;
        let latency = lo + self.rng.below(hi.saturating_sub(lo) + 1);
        self.insert_link(key, latency);
    }

    /// A link, down until it is dialled.
    fn insert_link(&mut self, key: (usize, usize), latency: Millis) {
        self.links.insert(
            key,
            Link {
                latency,
                up: false,
                epoch: 0,
            },
        );
    }

    /// The latency and epoch of the link between `a` and `b`, if it is up.
    fn up_link(&self, a: usize, b: usize) -> Option<(Millis, u64)> {
        let link = self.links.get(&(a.min(b), a.max(b)))?;
        link.up.then_some((link.latency, link.epoch))
    }

    /// Counts a frame `from` sends: its bytes (prefix included), as an honest node's or a
    /// Sybil's.
    fn count_sent(&mut self, from: usize, frame: &Frame) {
        let len = frame.encoded_len() as u64;
        let sent = len + prost::encoding::encoded_len_varint(len) as u64;
        self.report.bytes += sent;
        if self.is_sybil(from) {
            self.report.sybil_bytes += sent;
        } else {
            self.report.honest_bytes += sent;
        }
        self.report.frames += 1;
    }

    /// The verdict a node is handed on `envelope`'s signature: verified once per run.
    fn verdict(&mut self, envelope: &crate::envelope::Envelope) -> Verdict {
        let key = (
            envelope.id(),
            envelope.timestamp(),
            *envelope.signature(),
            envelope.payload().clone(),
        );
        let valid = *self
            .signatures
            .entry(key)
            .or_insert_with(|| envelope.verify().is_ok());
        if valid {
            Verdict::Cached
        } else {
            Verdict::Unchecked
        }
    }

    /// The simulated time.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The engine of node `i`.
    pub fn engine(&self, i: usize) -> &Engine<usize> {
        &self.nodes[i].engine
    }

    /// The author key of node `i`.
    pub fn author(&self, i: usize) -> PublicKey {
        self.nodes[i].keys.public()
    }

    /// Whether node `i` is up.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].up
    }

    /// Node `i` publishes `payload` (nothing if it is down).
    pub fn publish(&mut self, i: usize, payload: impl Into<crate::Bytes>) -> Option<MessageId> {
        if !self.nodes[i].up {
            return None;
        }
        let id = self.nodes[i].engine.publish(payload, self.now).ok()?;
        self.nodes[i].hops.insert(id, 0);
        self.published.insert(
            id,
            Published {
                timestamp: self.now,
                at: self.now,
                by: i,
            },
        );
        self.report.messages += 1;
        self.drain(i);
        Some(id)
    }

    /// Starts measuring the last delivery's hop count and delay afresh (for one phase of a
    /// run).
    pub fn reset_extremes(&mut self) {
        self.report.last_delivery_hop = 0;
        self.report.last_delivery_ms = 0;
    }

    /// Changes the loss probability from now on.
    pub fn set_loss(&mut self, loss: f64) {
        self.config.loss = loss;
    }

    /// Runs a gossip round at node `i` now.
    pub fn gossip(&mut self, i: usize) {
        if self.nodes[i].up {
            self.nodes[i].engine.gossip(self.now);
            self.drain(i);
        }
    }

    /// Splits the network: links between `far` nodes and the others go down until
    /// [`Simulation::heal`].
    pub fn partition(&mut self, far: &[usize]) {
        for &i in far {
            self.side[i] = true;
        }
        let cut: Vec<(usize, usize)> = self
            .links
            .keys()
            .copied()
            .filter(|&(a, b)| self.side[a] != self.side[b])
            .collect();
        for (a, b) in cut {
            self.link_down(a, b);
        }
    }

    /// Ends the partition: the cut links are re-dialled now.
    pub fn heal(&mut self) {
        self.side.iter_mut().for_each(|s| *s = false);
        let down: Vec<(usize, usize)> = self
            .links
            .iter()
            .filter(|(_, l)| !l.up)
            .map(|(k, _)| *k)
            .collect();
        for (a, b) in down {
            self.link_up(a, b);
        }
    }

    /// Node `i` leaves: its links go down.
    pub fn take_down(&mut self, i: usize) {
        self.nodes[i].up = false;
        let links: Vec<(usize, usize)> = self.links_of(i);
        for (a, b) in links {
            self.link_down(a, b);
        }
    }

    /// Node `i` comes back, with its state or (`keep_state = false`) as a fresh engine with
    /// the same key, as after a restart without persistence.
    pub fn bring_up(&mut self, i: usize, keep_state: bool) {
        if !keep_state {
            let node = &mut self.nodes[i];
            node.engine = Engine::new(node.keys.clone(), self.config.engine.clone(), self.now);
            node.hops.clear();
            node.delivered.clear();
        }
        self.nodes[i].up = true;
        for (a, b) in self.links_of(i) {
            self.link_up(a, b);
        }
        self.schedule_timer(i);
    }

    fn links_of(&self, i: usize) -> Vec<(usize, usize)> {
        self.links
            .keys()
            .copied()
            .filter(|&(a, b)| a == i || b == i)
            .collect()
    }

    fn link_down(&mut self, a: usize, b: usize) {
        let link = self.links.get_mut(&(a, b)).expect("known link");
        if !link.up {
            return;
        }
        link.up = false;
        link.epoch += 1;
        for (x, y) in [(a, b), (b, a)] {
            if self.is_sybil(x) {
                if let Some(brain) = &mut self.sybils {
                    brain.disconnected(x, y);
                }
            } else if self.nodes[x].up {
                self.nodes[x].engine.disconnect(&y, self.now);
                self.drain(x);
            }
        }
    }

    fn link_up(&mut self, a: usize, b: usize) {
        let can = self.up(a) && self.up(b) && self.side[a] == self.side[b];
        let link = self.links.get_mut(&(a, b)).expect("known link");
        if link.up || !can {
            return;
        }
        link.up = true;
        link.epoch += 1;
        for (x, y) in [(a, b), (b, a)] {
            if !self.is_sybil(x) {
                self.nodes[x].engine.connect(y, self.now);
            }
        }
        for (x, y) in [(a, b), (b, a)] {
            if self.is_sybil(x) {
                let sends = self
                    .sybils
                    .as_mut()
                    .map(|brain| brain.connected(x, y))
                    .unwrap_or_default();
                self.sybil_sends(sends, self.now);
            } else {
                self.drain(x);
            }
        }
    }

    /// Puts frames the Sybils send at `at` on their links.
    fn sybil_sends(&mut self, sends: sybil::Sends, at: Millis) {
        for (from, to, frame) in sends {
            let Some((latency, epoch)) = self.up_link(from, to) else {
                continue;
            };
            self.count_sent(from, &frame);
            self.push(
                at + latency,
                Event::Frame {
                    from,
                    to,
                    epoch,
                    frame,
                },
            );
        }
    }

    fn push(&mut self, at: Millis, event: Event) {
        self.scheduled += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            order: self.scheduled,
            event,
        }));
    }

    fn schedule_timer(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if !node.up {
            return;
        }
        let Some(at) = node.engine.poll_timeout() else {
            node.timer = None;
            return;
        };
        // A deadline already past fires now (and is recorded as now, so the event matches).
        let at = at.max(self.now);
        if node.timer.is_some_and(|t| t <= at) {
            return;
        }
        node.timer = Some(at);
        self.push(at, Event::Timer(i));
    }

    /// Takes every output of node `i`: frames go on links, deliveries are recorded.
    fn drain(&mut self, i: usize) {
        let mut violators = Vec::new();
        while let Some(output) = self.nodes[i].engine.poll_output() {
            match output {
                Output::Send { peer, frame } => self.send(i, peer, frame),
                Output::Deliver { message, .. } => {
                    match self.published.get(&message.id) {
                        Some(p) => self.delays.push((p.by, self.now - p.at)),
                        None => self.report.other_deliveries += 1,
                    }
                    let node = &mut self.nodes[i];
                    let count = node.delivered.entry(message.id).or_insert(0);
                    *count += 1;
                    if *count > 1 {
                        self.report.duplicate_deliveries += 1;
                    }
                    if message.timestamp + millis(self.config.engine.max_age) < self.now {
                        self.report.late_deliveries += 1;
                    }
                    let hop = node.hops.get(&message.id).copied().unwrap_or(0);
                    self.report.last_delivery_hop = self.report.last_delivery_hop.max(hop);
                    if let Some(p) = self.published.get(&message.id) {
                        self.report.last_delivery_ms =
                            self.report.last_delivery_ms.max(self.now - p.at);
                    }
                }
                Output::Violation { peer, .. } if self.is_sybil(peer) => {
                    self.report.violations += 1;
                    violators.push(peer);
                }
                Output::Violation { peer, violation } => {
                    panic!("node {i}: honest peer {peer} reported: {violation}")
                }
                _ => {}
            }
        }
        // The application disconnects a violator (as the examples do); a Sybil's link is
        // not re-dialled.
        for peer in violators {
            self.link_down(i.min(peer), i.max(peer));
        }
        self.schedule_timer(i);
    }

    fn send(&mut self, from: usize, to: usize, frame: Frame) {
        let Some((latency, epoch)) = self.up_link(from, to) else {
            return;
        };
        self.count_sent(from, &frame);
        if self.rng.chance(self.config.loss) {
            let (a, b) = (from.min(to), from.max(to));
            self.report.link_failures += 1;
            self.link_down(a, b);
            let at = self.now + self.config.redial;
            self.push(at, Event::Redial(a, b));
            return;
        }
        let at = self.now + latency;
        if self.is_sybil(to) {
            // The Sybils' brain takes the frame as it is sent (they collude, so what one of
            // them will have at `at` is theirs then); what they send in return leaves at `at`.
            let hops = &self.nodes[from].hops;
            let sends = match &mut self.sybils {
                Some(brain) => {
                    brain.on_frame(to, from, &frame, |id| hops.get(id).copied().unwrap_or(0))
                }
                None => Vec::new(),
            };
            self.sybil_sends(sends, at);
            return;
        }
        self.push(
            at,
            Event::Frame {
                from,
                to,
                epoch,
                frame,
            },
        );
    }

    fn step(&mut self) -> bool {
        let Some(Reverse(Scheduled { at, event, .. })) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        match event {
            Event::Frame {
                from,
                to,
                epoch,
                frame,
            } => {
                let key = (from.min(to), from.max(to));
                if self.links[&key].epoch != epoch || !self.nodes[to].up {
                    return true;
                }
                self.copies += frame.messages.len() as u64;
                for envelope in &frame.messages {
                    let id = envelope.id();
                    let hop = match self.nodes.get(from) {
                        Some(node) => node.hops.get(&id).copied().unwrap_or(0),
                        None => self.sybils.as_ref().and_then(|b| b.hop(&id)).unwrap_or(0),
                    };
                    self.nodes[to].hops.entry(id).or_insert(hop + 1);
                }
                let verdicts = frame.messages.iter().map(|e| self.verdict(e)).collect();
                let frame = VerifiedFrame::simulated(frame, verdicts);
                self.nodes[to].engine.handle(
                    crate::engine::Input::Verified { peer: from, frame },
                    self.now,
                );
                self.drain(to);
            }
            Event::Redial(a, b) => self.link_up(a, b),
            Event::SybilTick => {
                let Some(brain) = &mut self.sybils else {
                    return true;
                };
                let sends = brain.tick(self.now);
                let next = brain.next_tick();
                self.sybil_sends(sends, self.now);
                self.push(next, Event::SybilTick);
            }
            Event::Timer(i) => {
                if self.nodes[i].timer == Some(at) && self.nodes[i].up {
                    self.nodes[i].timer = None;
                    self.nodes[i].engine.handle_timeout(self.now);
                    self.drain(i);
                } else if self.nodes[i].timer == Some(at) {
                    self.nodes[i].timer = None;
                }
            }
        }
        true
    }

    /// Runs for `duration` simulated milliseconds.
    pub fn run_for(&mut self, duration: Millis) {
        let end = self.now + duration;
        while self
            .queue
            .peek()
            .is_some_and(|Reverse(next)| next.at <= end)
        {
            self.step();
        }
        self.now = end;
    }

    /// Runs until every up node holds every message any up node knows (checked every
    /// `check_every` ms), or `limit` ms pass. Returns whether it converged.
    pub fn run_until_converged(&mut self, check_every: Millis, limit: Millis) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if self.missing().is_empty() {
                return true;
            }
            self.run_for(check_every.min(end - self.now));
        }
        self.missing().is_empty()
    }

    /// Messages still within retention that some up node knows.
    fn live_messages(&self) -> Vec<MessageId> {
        self.retained()
            .map(|(id, _)| *id)
            .filter(|id| {
                self.nodes
                    .iter()
                    .any(|n| n.up && n.engine.message(id).is_some())
            })
            .collect()
    }

    /// `(node, message)` pairs where an up node does not know a live message.
    pub fn missing(&self) -> Vec<(usize, MessageId)> {
        let live = self.live_messages();
        let mut out = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.up {
                out.extend(
                    live.iter()
                        .filter(|id| !node.engine.knows(id))
                        .map(|id| (i, *id)),
                );
            }
        }
        out
    }

    /// The measurements so far. Delivery counts every up node and every live message of
    /// another author; a node restarted without state counts from its restart.
    pub fn report(&self) -> Report {
        let live = self.live_messages();
        let (mut expected, mut delivered) = (0u64, 0u64);
        for node in self.nodes.iter().filter(|n| n.up) {
            let me = node.keys.public();
            for id in live.iter().filter(|id| id.author != me) {
                expected += 1;
                if node.delivered.contains_key(id) {
                    delivered += 1;
                }
            }
        }
        let mut report = self.report.clone();
        report.envelope_copies = self.copies;
        report.delivery_ratio = if expected == 0 {
            1.0
        } else {
            delivered as f64 / expected as f64
        };
        let n = self.nodes.len().saturating_sub(1).max(1) as f64;
        report.rmr = if report.messages == 0 {
            0.0
        } else {
            self.copies as f64 / (report.messages as f64 * n) - 1.0
        };
        report.elapsed_ms = self.now - EPOCH;
        report
    }

    /// Checks every engine's invariants (panics on a broken one).
    pub fn check_invariants(&self) {
        for node in &self.nodes {
            node.engine.check_invariants();
        }
    }
}

use crate::engine::millis;

/// A standard fault scenario: loss throughout, a partition while both sides publish, churn
/// (nodes leaving and returning, half of them without their state), then the faults stop and
/// the network must converge.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The network (its `loss` applies until the faults stop).
    pub sim: SimConfig,
    /// Messages published, from random up nodes, a random 0–99 ms apart.
    pub messages: usize,
    /// Whether about 40 % of the nodes are cut off while the messages are published.
    pub partition: bool,
    /// Whether nodes leave and return while the messages are published.
    pub churn: bool,
}

impl Scenario {
    /// Runs the scenario. `Err` names the seed and the first missing deliveries if the
    /// network has not converged within two simulated minutes after the faults stop.
    pub fn run(&self) -> Result<Report, String> {
        let seed = self.sim.seed;
        let nodes = self.sim.nodes;
        let mut rng = Rng::new(seed ^ 0x5CE7_A210);
        let mut sim = Simulation::new(self.sim.clone());
        sim.run_for(1_000);
        if self.partition {
            let far: Vec<usize> = (0..nodes).filter(|_| rng.chance(0.4)).collect();
            sim.partition(&far);
        }
        let mut down = Vec::new();
        for k in 0..self.messages {
            let node = rng.index(nodes);
            sim.publish(node, format!("message {k} from {node}"));
            if self.churn && rng.chance(0.1) {
                let leaving = rng.index(nodes);
                if sim.is_up(leaving) {
                    sim.take_down(leaving);
                    down.push(leaving);
                }
            }
            if self.churn
                && rng.chance(0.1)
                && let Some(back) = down.pop()
            {
                sim.bring_up(back, rng.chance(0.5));
            }
            sim.run_for(rng.below(100));
        }
        sim.set_loss(0.0);
        sim.heal();
        for node in down {
            sim.bring_up(node, rng.chance(0.5));
        }
        let converged = sim.run_until_converged(200, 120_000);
        sim.check_invariants();
        if !converged {
            let missing = sim.missing();
            return Err(format!(
                "seed {seed}: {} deliveries missing, first {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            ));
        }
        // Nothing more arrives later.
        sim.run_for(5_000);
        Ok(sim.report())
    }
}
