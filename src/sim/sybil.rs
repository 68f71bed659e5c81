//! Sybil peers for the simulator: cheap adversary models, not engines.
//!
//! All Sybils are one colluding brain (they share what any of them received at once, as an
//! attacker with a back channel would). Each [`Attack`] is a behaviour of that brain towards
//! the honest nodes it is connected to. What it decides, all here:
//! - which frames Sybils send, to whom, and when (the simulator carries them over the same
//!   links, with the same latencies, counting their bytes apart from the honest nodes');
//! - a Sybil that relays relays each new envelope to every honest node once, on that node's
//!   lowest-latency Sybil link, as soon as any Sybil received it: Sybils are the fastest path
//!   to everyone, so they become the honest nodes' eager sources;
//! - what Sybils never do: sign as an honest author (they cannot).
//!
//! Bounded by the run: the brain keeps each envelope it received once, and the authors it has
//! seen.

use crate::engine::Millis;
use crate::envelope::{Envelope, MessageId};
use crate::frame::{Digest, Frame};
use crate::keys::{Keypair, PublicKey};
use crate::ranges::RangeSet;
use crate::sim::Rng;
use std::collections::{HashMap, HashSet};

/// What the Sybils do. Each is one named scenario of the gossipsub v1.1 evaluation's
/// catalogue, or of this crate's threat model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attack {
    /// Connect, read, never forward or announce.
    SilentSink,
    /// Announce every author they have heard of as `[1, u64::MAX]`; never answer a want.
    Liar,
    /// Relay everything promptly (so they become the eager sources) until
    /// [`Simulation::withhold`](super::Simulation::withhold), then go silent all at once.
    CovertFlash,
    /// Relay a random half of what they should, and answer wants for a random half.
    Degrade,
    /// Relay and answer everything except the messages of one honest author (the target).
    Censor,
    /// All but one of the target's connections are Sybils, which announce everything and
    /// never forward (liars); the rest of the network sees the same.
    Eclipse,
    /// Push an altered copy (a bad signature) or an out-of-window copy of every honest
    /// message to every honest node, ahead of the real one.
    Forger,
    /// Relay everything, with random prune and graft flags on every frame, and a random
    /// prune or graft to every honest node every tick.
    PruneGraft,
    /// Push valid messages of throwaway authors to every honest node, every tick.
    Flood,
    /// Attack at dawn: the Sybils' connections come up before any honest link, and they
    /// announce everything and never forward from the start.
    ColdBoot,
}

impl Attack {
    /// Every attack, in table order.
    pub const ALL: [Attack; 10] = [
        Attack::SilentSink,
        Attack::Liar,
        Attack::CovertFlash,
        Attack::Degrade,
        Attack::Censor,
        Attack::Eclipse,
        Attack::Forger,
        Attack::PruneGraft,
        Attack::Flood,
        Attack::ColdBoot,
    ];

    /// The scenario's name.
    pub fn name(self) -> &'static str {
        match self {
            Attack::SilentSink => "silent sink",
            Attack::Liar => "liar",
            Attack::CovertFlash => "covert flash",
            Attack::Degrade => "degradation",
            Attack::Censor => "censor one target",
            Attack::Eclipse => "eclipse one target",
            Attack::Forger => "forgers",
            Attack::PruneGraft => "prune/graft abuse",
            Attack::Flood => "throwaway-author flood",
            Attack::ColdBoot => "cold boot (attack at dawn)",
        }
    }

    /// Whether the Sybils announce every author as `[1, u64::MAX]` and never answer.
    fn lies(self) -> bool {
        matches!(self, Attack::Liar | Attack::Eclipse | Attack::ColdBoot)
    }

    /// Whether the Sybils relay envelopes (before any flash).
    fn relays(self) -> bool {
        matches!(
            self,
            Attack::CovertFlash
                | Attack::Degrade
                | Attack::Censor
                | Attack::PruneGraft
                | Attack::Forger
        )
    }
}

/// The Sybils of a simulation.
#[derive(Clone, Debug)]
pub struct SybilConfig {
    /// How many Sybil nodes.
    pub count: usize,
    /// Sybil connections of each honest node (80 % of its connections at degree 6: 24).
    pub links_per_node: usize,
    /// What they do.
    pub attack: Attack,
    /// The honest node they aim at ([`Attack::Censor`], [`Attack::Eclipse`]).
    pub target: usize,
    /// Throwaway-author envelopes each honest node is pushed per tick ([`Attack::Flood`]).
    pub flood_per_tick: usize,
    /// Whether the Sybils set `reads_tags` (honest nodes then announce to them by tag, 8
    /// bytes an id instead of about 54). An attacker that wants honest bytes spent does not.
    pub reads_tags: bool,
}

/// How often the brain acts on its own (announcements, control frames, floods).
pub(crate) const TICK: Millis = 100;

/// A frame a Sybil sends: from, to, the frame.
pub(crate) type Sends = Vec<(usize, usize, Frame)>;

/// The colluding brain of every Sybil.
pub(crate) struct Sybils {
    config: SybilConfig,
    /// Per honest node: its Sybil neighbours, lowest latency first.
    neighbours: Vec<Vec<usize>>,
    /// Sybil links that are up: (sybil, honest).
    up: HashSet<(usize, usize)>,
    /// Every envelope any Sybil received, with the hop at which Sybils first had it.
    held: HashMap<MessageId, (Envelope, u32)>,
    /// Authors heard of, in the order first heard.
    authors: Vec<PublicKey>,
    known_authors: HashSet<PublicKey>,
    /// How many of `authors` were announced on each up link (liars).
    announced: HashMap<(usize, usize), usize>,
    /// Set once the covert flash happened: nothing is relayed or answered from then on.
    withholding: bool,
    /// The target's author key.
    target_author: Option<PublicKey>,
    /// Throwaway-author envelopes (valid, each of its own key), and per honest node how many
    /// it was pushed.
    flood: Vec<Envelope>,
    flooded: Vec<usize>,
    /// When the brain next ticks.
    next_tick: Millis,
    rng: Rng,
}

impl Sybils {
    /// `neighbours[h]` are honest node `h`'s Sybils (node indices after the honest ones),
    /// lowest latency first. `now` is the simulated start.
    pub(crate) fn new(
        config: SybilConfig,
        neighbours: Vec<Vec<usize>>,
        target_author: Option<PublicKey>,
        now: Millis,
        seed: u64,
    ) -> Self {
        let honest = neighbours.len();
        Sybils {
            neighbours,
            up: HashSet::new(),
            held: HashMap::new(),
            authors: Vec::new(),
            known_authors: HashSet::new(),
            announced: HashMap::new(),
            withholding: false,
            target_author,
            flood: Vec::new(),
            flooded: vec![0; honest],
            next_tick: now + TICK,
            rng: Rng::new(seed ^ 0x5B11_0000),
            config,
        }
    }

    /// The covert flash: from now on nothing is relayed or answered.
    pub(crate) fn withhold(&mut self) {
        self.withholding = true;
    }

    /// Authors the Sybils learn of without a message of theirs (liars lie about them).
    pub(crate) fn hear_of(&mut self, authors: impl IntoIterator<Item = PublicKey>) {
        for author in authors {
            if self.known_authors.insert(author) {
                self.authors.push(author);
            }
        }
    }

    /// The hop at which Sybils first had `id` (for the simulator's hop counts).
    pub(crate) fn hop(&self, id: &MessageId) -> Option<u32> {
        self.held.get(id).map(|(_, hop)| *hop)
    }

    /// When the brain next acts on its own.
    pub(crate) fn next_tick(&self) -> Millis {
        self.next_tick
    }

    /// Keeps `count` valid envelopes of fresh throwaway keys to flood with (signed once).
    pub(crate) fn prepare_flood(&mut self, count: usize, timestamp: Millis) {
        self.flood = (0..count)
            .map(|k| {
                let mut seed = [0u8; 32];
                for chunk in seed.chunks_mut(8) {
                    chunk.copy_from_slice(&self.rng.next_u64().to_le_bytes());
                }
                let keys = Keypair::from_seed(&seed);
                Envelope::sign(&keys, 1, timestamp, format!("throwaway {k}")).expect("seq 1")
            })
            .collect();
    }

    /// A Sybil link came up.
    pub(crate) fn connected(&mut self, sybil: usize, honest: usize) -> Sends {
        self.up.insert((sybil, honest));
        let attack = self.config.attack;
        if attack == Attack::SilentSink {
            return Vec::new();
        }
        let mut frame = Frame {
            complete: true,
            reads_tags: self.config.reads_tags,
            ..Frame::default()
        };
        if attack.lies() {
            frame.have = self.lies_about(0);
            self.announced.insert((sybil, honest), self.authors.len());
        }
        vec![(sybil, honest, frame)]
    }

    /// A Sybil link went down.
    pub(crate) fn disconnected(&mut self, sybil: usize, honest: usize) {
        self.up.remove(&(sybil, honest));
        self.announced.remove(&(sybil, honest));
    }

    /// `honest` sent `frame` to `sybil`; it arrives at `at`. Envelopes are kept (with the hop
    /// they arrived at), new ones relayed as the attack says; wants answered as it says.
    pub(crate) fn on_frame(
        &mut self,
        sybil: usize,
        honest: usize,
        frame: &Frame,
        hops: impl Fn(&MessageId) -> u32,
    ) -> Sends {
        let mut sends = Vec::new();
        let mut new = Vec::new();
        for envelope in &frame.messages {
            let id = envelope.id();
            if self.held.contains_key(&id) {
                continue;
            }
            if self.known_authors.insert(id.author) {
                self.authors.push(id.author);
            }
            self.held.insert(id, (envelope.clone(), hops(&id) + 1));
            new.push(envelope.clone());
        }
        let attack = self.config.attack;
        if attack.relays() && !self.withholding && !new.is_empty() {
            self.relay(honest, &new, &mut sends);
        }
        if attack.relays() && !self.withholding && !frame.want.is_empty() {
            let answer = self.answer(&frame.want);
            if !answer.is_empty() {
                sends.push((
                    sybil,
                    honest,
                    self.flags(Frame {
                        messages: answer,
                        ..Frame::default()
                    }),
                ));
            }
        }
        sends
    }

    /// Sends each of `envelopes` (new to the Sybils, from `source`) to every other honest
    /// node on its fastest Sybil link that is up, as the attack shapes it.
    fn relay(&mut self, source: usize, envelopes: &[Envelope], sends: &mut Sends) {
        let attack = self.config.attack;
        for honest in 0..self.neighbours.len() {
            if honest == source {
                continue;
            }
            let Some(&sybil) = self.neighbours[honest]
                .iter()
                .find(|&&s| self.up.contains(&(s, honest)))
            else {
                continue;
            };
            let mut messages = Vec::new();
            for envelope in envelopes {
                match attack {
                    Attack::Degrade if !self.rng.chance(0.5) => continue,
                    Attack::Censor if Some(*envelope.author()) == self.target_author => continue,
                    Attack::Forger => messages.push(self.forge(envelope)),
                    _ => messages.push(envelope.clone()),
                }
            }
            if !messages.is_empty() {
                let frame = self.flags(Frame {
                    messages,
                    ..Frame::default()
                });
                sends.push((sybil, honest, frame));
            }
        }
    }

    /// An altered copy of `envelope`: half the time its payload changed (the signature no
    /// longer holds), half the time its timestamp set an hour and a half back (outside every
    /// node's window).
    fn forge(&mut self, envelope: &Envelope) -> Envelope {
        let (mut timestamp, mut payload) = (envelope.timestamp(), envelope.payload().to_vec());
        if self.rng.chance(0.5) {
            payload.push(b'!');
        } else {
            timestamp = timestamp.saturating_sub(90 * 60 * 1000);
        }
        Envelope::from_parts(
            *envelope.author(),
            envelope.sequence(),
            timestamp,
            payload.into(),
            *envelope.signature(),
        )
    }

    /// What the Sybils hold of `wants`, as the attack allows.
    fn answer(&mut self, wants: &[Digest]) -> Vec<Envelope> {
        let mut out = Vec::new();
        for want in wants {
            if self.config.attack == Attack::Censor && Some(want.author) == self.target_author {
                continue;
            }
            for (start, end) in want.ranges.ranges() {
                // Sybils hold a few thousand envelopes: walk the asked ids only while small.
                for sequence in start..=end.min(start.saturating_add(4_096)) {
                    let id = MessageId {
                        author: want.author,
                        sequence,
                    };
                    if let Some((envelope, _)) = self.held.get(&id) {
                        if self.config.attack == Attack::Degrade && !self.rng.chance(0.5) {
                            continue;
                        }
                        out.push(envelope.clone());
                    }
                }
            }
        }
        out.truncate(1_000);
        out
    }

    /// Random prune and graft flags ([`Attack::PruneGraft`]); the frame as it is otherwise.
    fn flags(&mut self, mut frame: Frame) -> Frame {
        if self.config.attack == Attack::PruneGraft {
            frame.prune = self.rng.chance(0.5);
            frame.graft = !frame.prune && self.rng.chance(0.5);
        }
        frame
    }

    /// Digests of every author from the `from`-th on, as `[1, u64::MAX]`.
    fn lies_about(&self, from: usize) -> Vec<Digest> {
        self.authors[from..]
            .iter()
            .map(|author| {
                let mut ranges = RangeSet::new();
                ranges.insert_range(1, u64::MAX);
                Digest {
                    author: *author,
                    ranges,
                }
            })
            .collect()
    }

    /// The brain's own turn at `now`: liars announce authors new since their last
    /// announcement on each link, prune/graft abusers send a control frame to every honest
    /// node, flooders push throwaway authors.
    pub(crate) fn tick(&mut self, now: Millis) -> Sends {
        self.next_tick = now + TICK;
        let mut sends = Vec::new();
        let attack = self.config.attack;
        if attack.lies() {
            let total = self.authors.len();
            let mut links: Vec<(usize, usize)> = self
                .announced
                .iter()
                .filter(|(_, n)| **n < total)
                .map(|(link, _)| *link)
                .collect();
            links.sort_unstable();
            for (sybil, honest) in links {
                let from = self.announced[&(sybil, honest)];
                let frame = Frame {
                    have: self.lies_about(from),
                    ..Frame::default()
                };
                self.announced.insert((sybil, honest), total);
                sends.push((sybil, honest, frame));
            }
        }
        if attack == Attack::PruneGraft && !self.withholding {
            for honest in 0..self.neighbours.len() {
                let count = self.neighbours[honest].len();
                if count == 0 {
                    continue;
                }
                let sybil = self.neighbours[honest][self.rng.index(count)];
                if self.up.contains(&(sybil, honest)) {
                    let frame = self.flags(Frame::default());
                    if !frame.is_empty() {
                        sends.push((sybil, honest, frame));
                    }
                }
            }
        }
        if attack == Attack::Flood && !self.flood.is_empty() {
            for honest in 0..self.neighbours.len() {
                let Some(&sybil) = self.neighbours[honest]
                    .iter()
                    .find(|&&s| self.up.contains(&(s, honest)))
                else {
                    continue;
                };
                let from = self.flooded[honest];
                let to = (from + self.config.flood_per_tick).min(self.flood.len());
                if from == to {
                    continue;
                }
                self.flooded[honest] = to;
                let frame = Frame {
                    messages: self.flood[from..to].to_vec(),
                    ..Frame::default()
                };
                sends.push((sybil, honest, frame));
            }
        }
        sends
    }
}
