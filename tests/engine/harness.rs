//! The one harness of the engine tests: engines wired by hand (`Net`), frames made by hand,
//! and the helpers for driving one engine alone (`drain`, the liars and the honest peer).

use secure_gossip::engine::{Engine, Millis, Output};
use secure_gossip::{
    Config, Digest, Envelope, Frame, Keypair, Message, MessageId, PublicKey, RangeSet, Violation,
};
use std::collections::BTreeMap;

pub const T0: Millis = 1_750_000_000_000;

/// Engines named by small numbers, connected by perfect links; frames move on `pump`.
pub struct Net {
    pub engines: BTreeMap<u8, Engine<u8>>,
    pub delivered: BTreeMap<u8, Vec<Message>>,
    pub violations: Vec<(u8, u8, Violation)>,
    pub equivocations: Vec<(u8, MessageId)>,
    pub frames: Vec<(u8, u8, Frame)>,
    pub now: Millis,
}

impl Net {
    pub fn new(configs: &[Config]) -> Net {
        let engines = configs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let keys = Keypair::from_seed(&[i as u8 + 1; 32]);
                (i as u8, Engine::new(keys, c.clone(), T0))
            })
            .collect();
        Net {
            engines,
            delivered: BTreeMap::new(),
            violations: Vec::new(),
            equivocations: Vec::new(),
            frames: Vec::new(),
            now: T0,
        }
    }

    pub fn uniform(n: usize, config: Config) -> Net {
        Net::new(&vec![config; n])
    }

    /// `n` engines with `config`, the `links` connected and their first digests exchanged.
    pub fn linked(n: usize, config: Config, links: &[(u8, u8)]) -> Net {
        let mut net = Net::uniform(n, config);
        for &(a, b) in links {
            net.connect(a, b);
        }
        net.pump();
        net
    }

    /// Two engines with `config`, connected, their first digests exchanged.
    pub fn pair(config: Config) -> Net {
        Net::linked(2, config, &[(0, 1)])
    }

    /// Node 0 linked to nodes 1 and 2, their first digests exchanged.
    pub fn star(config: Config) -> Net {
        Net::linked(3, config, &[(0, 1), (0, 2)])
    }

    pub fn e(&mut self, i: u8) -> &mut Engine<u8> {
        self.engines.get_mut(&i).unwrap()
    }

    pub fn connect(&mut self, a: u8, b: u8) {
        let now = self.now;
        self.e(a).connect(b, now);
        self.e(b).connect(a, now);
    }

    /// Collects every output into `frames` (in flight) and the records.
    pub fn collect(&mut self) {
        for (&i, engine) in self.engines.iter_mut() {
            while let Some(output) = engine.poll_output() {
                match output {
                    Output::Send { peer, frame } => self.frames.push((i, peer, frame)),
                    Output::Deliver { message, .. } => {
                        self.delivered.entry(i).or_default().push(message)
                    }
                    Output::Violation { peer, violation } => {
                        self.violations.push((i, peer, violation))
                    }
                    Output::Equivocation { first, .. } => self.equivocations.push((i, first.id())),
                    _ => {}
                }
            }
        }
    }

    /// Collects the outputs and loses every frame in flight.
    pub fn discard(&mut self) {
        self.collect();
        self.frames.clear();
    }

    /// Delivers frames until none is in flight. Returns how many moved.
    pub fn pump(&mut self) -> usize {
        let mut moved = 0;
        loop {
            self.collect();
            if self.frames.is_empty() {
                return moved;
            }
            let now = self.now;
            for (from, to, frame) in std::mem::take(&mut self.frames) {
                moved += 1;
                self.e(to).handle_frame(from, frame, now);
            }
        }
    }

    pub fn advance(&mut self, ms: Millis) {
        self.now += ms;
        let now = self.now;
        for engine in self.engines.values_mut() {
            engine.handle_timeout(now);
        }
    }

    /// Past the connections' grace (2 s), when a duplicate means a redundant path.
    pub fn past_the_grace(&mut self) {
        self.advance(2_000);
        self.pump();
    }

    /// Past the grace, node 0 publishes `payload` and it spreads: that shapes the tree (a
    /// link that carries a duplicate is pruned).
    pub fn shape_tree(&mut self, payload: &[u8]) {
        self.past_the_grace();
        let now = self.now;
        self.e(0).publish(payload.to_vec(), now).unwrap();
        self.pump();
    }

    /// Node 0 publishes `payload` and the frame that pushes it is lost: the driver could
    /// not send it to node 1 (queue full), and the engine is told. Returns the id, and whom
    /// the lost frame was from and to.
    pub fn publish_dropped(&mut self, payload: &[u8]) -> (MessageId, (u8, u8)) {
        let id = self.e(0).publish(payload.to_vec(), T0).unwrap();
        self.collect();
        let (from, to, frame) = self.frames.pop().unwrap();
        self.e(0).frame_dropped(&1, &frame);
        (id, (from, to))
    }

    /// Advances time in 100 ms steps up to `T0 + until` (nothing delivered: frames are
    /// dropped), recording when node `i` sent a want, and to whom.
    pub fn wants_sent_until(&mut self, i: u8, until: Millis) -> Vec<(Millis, u8)> {
        let mut asks = Vec::new();
        for ms in (0..=until).step_by(100) {
            self.now = T0 + ms;
            let now = self.now;
            self.e(i).handle_timeout(now);
            self.collect();
            for (_, to, frame) in self.frames.drain(..) {
                if !frame.want.is_empty() {
                    asks.push((ms, to));
                }
            }
        }
        asks
    }

    /// The peers that frames with a want are in flight to, in order.
    pub fn asked(&self) -> Vec<u8> {
        self.frames
            .iter()
            .filter(|(_, _, f)| !f.want.is_empty())
            .map(|(_, to, _)| *to)
            .collect()
    }

    pub fn got(&self, i: u8) -> Vec<MessageId> {
        self.delivered
            .get(&i)
            .map(|m| m.iter().map(|m| m.id).collect())
            .unwrap_or_default()
    }
}

/// The keys of a test author: `seed` repeated.
pub fn keys(seed: u8) -> Keypair {
    Keypair::from_seed(&[seed; 32])
}

/// An envelope signed by `keys`.
pub fn sign(keys: &Keypair, sequence: u64, timestamp: Millis, payload: &[u8]) -> Envelope {
    Envelope::sign(keys, sequence, timestamp, payload.to_vec()).unwrap()
}

pub fn push(messages: Vec<Envelope>) -> Frame {
    Frame {
        messages,
        ..Frame::default()
    }
}

pub fn want(author: PublicKey, ranges: RangeSet) -> Frame {
    Frame {
        want: vec![Digest { author, ranges }],
        ..Frame::default()
    }
}

pub fn have(author: PublicKey, ranges: RangeSet) -> Frame {
    Frame {
        have: vec![Digest { author, ranges }],
        ..Frame::default()
    }
}

/// An announcement of `author`'s sequences `first..=last`.
pub fn have_range(author: PublicKey, first: u64, last: u64) -> Frame {
    have(author, RangeSet::from_range(first, last))
}

pub fn manual() -> Config {
    Config::builder()
        .eager_push(false)
        .gossip_interval(None)
        .build()
        .unwrap()
}

/// Frames sent from `from` to `to` among those in flight.
pub fn frames_between(net: &Net, from: u8, to: u8) -> Vec<Frame> {
    net.frames
        .iter()
        .filter(|(f, t, _)| *f == from && *t == to)
        .map(|(_, _, frame)| frame.clone())
        .collect()
}

/// Frames in flight between `a` and `b`, either way.
pub fn frames_across(net: &Net, a: u8, b: u8) -> Vec<Frame> {
    [frames_between(net, a, b), frames_between(net, b, a)].concat()
}

/// Delivers in-flight frames one step at a time (all frames of a step, then the outputs).
pub fn step(net: &mut Net) {
    net.collect();
    let now = net.now;
    for (from, to, frame) in std::mem::take(&mut net.frames) {
        net.e(to).handle_frame(from, frame, now);
    }
    net.collect();
}

/// An engine alone, with the default config, `peers` connected at `T0`.
pub fn engine_with(peers: &[u8]) -> Engine<u8> {
    let mut v: Engine<u8> = Engine::new(keys(1), Config::default(), T0);
    for &peer in peers {
        v.connect(peer, T0);
    }
    v
}

/// Drains `engine`'s outputs: the peers sent a want naming `id`, and the ids delivered.
pub fn drain(engine: &mut Engine<u8>, id: &MessageId) -> (Vec<u8>, Vec<MessageId>) {
    let (mut wanted_of, mut delivered) = (Vec::new(), Vec::new());
    while let Some(output) = engine.poll_output() {
        match output {
            Output::Send { peer, frame }
                if frame
                    .want
                    .iter()
                    .any(|d| d.author == id.author && d.ranges.contains(id.sequence)) =>
            {
                wanted_of.push(peer)
            }
            Output::Deliver { message, .. } => delivered.push(message.id),
            _ => {}
        }
    }
    (wanted_of, delivered)
}

pub const LIAR_A: u8 = 1;
pub const LIAR_B: u8 = 2;
pub const HONEST: u8 = 3;

/// An engine with the two liars and the honest peer connected at `T0`.
pub fn liars_and_honest() -> Engine<u8> {
    engine_with(&[LIAR_A, LIAR_B, HONEST])
}

/// Moves time to `v`'s next timeout and handles it; returns the peers asked for `id`.
pub fn next_timeout(v: &mut Engine<u8>, now: &mut Millis, id: &MessageId) -> Vec<u8> {
    *now = v.poll_timeout().unwrap_or(*now + 100).max(*now + 1);
    v.handle_timeout(*now);
    drain(v, id).0
}

/// Another author's id that a striking peer announces and never delivers, and the
/// announcement.
pub fn unanswered() -> (MessageId, Frame) {
    let other = keys(41);
    let id = sign(&other, 1, T0, b"x").id();
    (id, have_range(other.public(), 1, 1))
}

/// `peer` gathers strikes: it announces another author's id and never answers, until the
/// node gives up. Returns the time then.
pub fn gather_strikes(v: &mut Engine<u8>, peer: u8, mut now: Millis) -> Millis {
    let (unanswered, announcement) = unanswered();
    v.handle_frame(peer, announcement, now);
    drain(v, &unanswered);
    let start = now;
    while now < start + 60_000 && v.outstanding_wants() > 0 {
        next_timeout(v, &mut now, &unanswered);
    }
    now
}

/// The keys of the new author whose first message the want-turn tests pull.
pub fn new_author() -> Keypair {
    keys(40)
}

/// A new author's first message (signed at `now`), its id and an announcement of it.
pub fn new_authors_message(now: Millis) -> (Envelope, MessageId, Frame) {
    let author = new_author();
    let real = sign(&author, 1, now, b"real");
    let id = real.id();
    (real, id, have_range(author.public(), 1, 1))
}

/// The honest peer gathers strikes, then the liars and the honest peer announce a new
/// author's message: the engine, the time, the message, its id, the announcement and the
/// peers asked for it at once.
pub fn announced_after_strikes() -> (Engine<u8>, Millis, Envelope, MessageId, Frame, Vec<u8>) {
    let mut v = liars_and_honest();
    let now = gather_strikes(&mut v, HONEST, T0);

    let (real, id, announce) = new_authors_message(now);
    for peer in [LIAR_A, LIAR_B, HONEST] {
        v.handle_frame(peer, announce.clone(), now);
    }
    let asked = drain(&mut v, &id).0;
    (v, now, real, id, announce, asked)
}

/// The honest peer answers with `real`: it is delivered, and the engine is consistent.
pub fn honest_answers(
    v: &mut Engine<u8>,
    asked: &[u8],
    real: Envelope,
    id: MessageId,
    now: Millis,
) {
    assert_eq!(
        asked,
        [LIAR_A, LIAR_B, HONEST],
        "each liar once, then the honest peer"
    );
    v.handle_frame(HONEST, push(vec![real]), now);
    assert_eq!(drain(v, &id).1, vec![id]);
    v.check_invariants();
}
