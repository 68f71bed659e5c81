//! The protocol rules of the sans-IO engine, one scenario each, with engines wired by hand
//! and time passed in.

use secure_gossip::engine::{Engine, Millis, Output};
use secure_gossip::{
    Config, Digest, Envelope, Frame, Keypair, Message, MessageId, PublicKey, PublishError,
    RangeSet, Violation,
};
use std::collections::BTreeMap;

const T0: Millis = 1_750_000_000_000;

/// Engines named by small numbers, connected by perfect links; frames move on `pump`.
struct Net {
    engines: BTreeMap<u8, Engine<u8>>,
    delivered: BTreeMap<u8, Vec<Message>>,
    violations: Vec<(u8, u8, Violation)>,
    equivocations: Vec<(u8, MessageId)>,
    frames: Vec<(u8, u8, Frame)>,
    now: Millis,
}

impl Net {
    fn new(configs: &[Config]) -> Net {
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

    fn uniform(n: usize, config: Config) -> Net {
        Net::new(&vec![config; n])
    }

    fn e(&mut self, i: u8) -> &mut Engine<u8> {
        self.engines.get_mut(&i).unwrap()
    }

    fn connect(&mut self, a: u8, b: u8) {
        let now = self.now;
        self.e(a).connect(b, now);
        self.e(b).connect(a, now);
    }

    /// Collects every output into `frames` (in flight) and the records.
    fn collect(&mut self) {
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

    /// Delivers frames until none is in flight. Returns how many moved.
    fn pump(&mut self) -> usize {
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

    fn advance(&mut self, ms: Millis) {
        self.now += ms;
        let now = self.now;
        for engine in self.engines.values_mut() {
            engine.handle_timeout(now);
        }
    }

    /// Advances time in 100 ms steps up to `T0 + until` (nothing delivered: frames are
    /// dropped), recording when node `i` sent a want, and to whom.
    fn wants_sent_until(&mut self, i: u8, until: Millis) -> Vec<(Millis, u8)> {
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

    fn got(&self, i: u8) -> Vec<MessageId> {
        self.delivered
            .get(&i)
            .map(|m| m.iter().map(|m| m.id).collect())
            .unwrap_or_default()
    }
}

fn push(messages: Vec<Envelope>) -> Frame {
    Frame {
        messages,
        ..Frame::default()
    }
}

fn want(author: PublicKey, ranges: RangeSet) -> Frame {
    Frame {
        want: vec![Digest { author, ranges }],
        ..Frame::default()
    }
}

fn have(author: PublicKey, ranges: RangeSet) -> Frame {
    Frame {
        have: vec![Digest { author, ranges }],
        ..Frame::default()
    }
}

fn manual() -> Config {
    Config::builder()
        .eager_push(false)
        .gossip_interval(None)
        .build()
        .unwrap()
}

#[test]
fn in_manual_mode_publishing_sends_nothing_and_a_round_moves_the_message() {
    let mut net = Net::uniform(2, manual());
    net.connect(0, 1);
    net.pump(); // the complete digests of the new connection
    let id = net.e(0).publish(b"x".to_vec(), T0).unwrap();
    net.collect();
    assert!(net.frames.is_empty(), "publish sent a frame in manual mode");
    net.advance(10_000);
    net.collect();
    assert!(
        net.frames.is_empty(),
        "time alone sent a frame in manual mode"
    );
    let now = net.now;
    net.e(0).gossip(now);
    net.pump();
    assert_eq!(net.got(1), vec![id]);
}

#[test]
fn a_bad_signature_disconnects_the_sender_but_keeps_what_came_before() {
    let mut net = Net::uniform(2, Config::default());
    net.connect(0, 1);
    net.pump();
    let author = Keypair::from_seed(&[9; 32]);
    let good = Envelope::sign(&author, 1, T0, b"good".to_vec()).unwrap();
    let real = Envelope::sign(&author, 2, T0, b"real".to_vec()).unwrap();
    // Flip a payload byte: same id, the signature no longer matches.
    let mut bytes = real.encode();
    let last = bytes.iter().rposition(|b| *b == b'l').unwrap();
    bytes[last] = b'L';
    let tampered = Envelope::decode(&bytes).unwrap();
    let frame = push(vec![good.clone(), tampered]);
    net.e(1).handle_frame(0, frame, T0);
    net.collect();
    assert_eq!(
        net.got(1),
        vec![good.id()],
        "the valid message before the forgery stays"
    );
    assert!(matches!(
        net.violations.as_slice(),
        [(1, 0, Violation::InvalidSignature { id })] if id.sequence == 2
    ));
    assert_eq!(
        net.e(1).peers().count(),
        0,
        "the sender is no longer a peer"
    );
}

#[test]
fn a_known_id_is_dropped_without_verifying_and_a_conflict_proves_equivocation() {
    let mut net = Net::uniform(2, Config::default());
    net.connect(0, 1);
    net.pump();
    let author = Keypair::from_seed(&[9; 32]);
    let first = Envelope::sign(&author, 5, T0, b"one".to_vec()).unwrap();
    net.e(1).handle_frame(0, push(vec![first.clone()]), T0);
    let verified = net.e(1).stats().verified;
    // The same envelope again: a duplicate, never verified.
    net.e(1).handle_frame(0, push(vec![first.clone()]), T0);
    assert_eq!(net.e(1).stats().verified, verified);
    assert_eq!(net.e(1).stats().duplicates, 1);
    // A validly signed, different message with the same id: an equivocation, not delivered.
    let second = Envelope::sign(&author, 5, T0, b"two".to_vec()).unwrap();
    net.e(1).handle_frame(0, push(vec![second]), T0);
    net.collect();
    assert_eq!(net.got(1), vec![first.id()]);
    assert_eq!(net.equivocations, vec![(1, first.id())]);
    assert!(net.violations.is_empty());
}

#[test]
fn an_envelope_outside_the_time_window_is_dropped_quietly_and_not_asked_for() {
    let mut net = Net::uniform(2, Config::default());
    net.connect(0, 1);
    net.pump();
    let author = Keypair::from_seed(&[9; 32]);
    // The author is tracked (refusals are only remembered for authors this node tracks or
    // pulls: of any other, a peer's claims cost nothing).
    let first = Envelope::sign(&author, 1, T0, b"first".to_vec()).unwrap();
    net.e(1).handle_frame(0, push(vec![first]), T0);
    net.collect();
    net.frames.clear();
    let old = Envelope::sign(&author, 2, T0 - 2 * 3_600_000, b"old".to_vec()).unwrap();
    let future = Envelope::sign(&author, 3, T0 + 3_600_000, b"future".to_vec()).unwrap();
    let frame = push(vec![old.clone(), future.clone()]);
    net.e(1).handle_frame(0, frame, T0);
    net.collect();
    assert_eq!(net.got(1).len(), 1, "only the first");
    assert!(
        net.violations.is_empty(),
        "a clock difference is not a violation"
    );
    assert_eq!(net.e(1).stats().out_of_window, 2);
    assert_eq!(
        net.e(1).stats().verified,
        1,
        "the window is checked before the signature"
    );
    assert!(
        !net.e(1).knows(&old.id()),
        "an unverified envelope is not a known id"
    );
    // The same peer announcing them draws no want (another peer's would: see the forgery
    // test below).
    let have = have(author.public(), RangeSet::from_range(2, 3));
    net.e(1).handle_frame(0, have, T0);
    net.collect();
    assert!(net.frames.iter().all(|(_, _, f)| f.want.is_empty()));
}

#[test]
fn a_late_joiner_gets_a_history_larger_than_one_frame() {
    let config = Config::builder()
        .max_frame_size(80 * 1024)
        .max_payload_size(8 * 1024)
        .build()
        .unwrap();
    let mut net = Net::uniform(2, config);
    let mut ids = Vec::new();
    for k in 0..100u8 {
        ids.push(net.e(0).publish(vec![k; 4096], T0).unwrap());
    }
    net.connect(0, 1);
    net.pump();
    let mut got = net.got(1);
    got.sort();
    assert_eq!(
        got, ids,
        "100 × 4 KiB through 80 KiB frames, paced by wants"
    );
}

#[test]
fn retention_keeps_the_newest_messages_and_every_id_stays_known() {
    let config = Config::builder().max_stored_messages(3).build().unwrap();
    let mut net = Net::uniform(2, config);
    let ids: Vec<MessageId> = (0..5)
        .map(|k| net.e(0).publish(vec![k], T0 + k as u64).unwrap())
        .collect();
    assert_eq!(net.e(0).stored().0, 3);
    assert!(net.e(0).message(&ids[0]).is_none() && net.e(0).knows(&ids[0]));
    net.connect(0, 1);
    net.pump();
    assert_eq!(
        net.got(1),
        ids[2..].to_vec(),
        "the newest three, oldest first"
    );
    // Expiry by age: after max_age everything goes, ids stay.
    net.advance(3_600_000 + 10);
    assert_eq!(net.e(0).stored().0, 0);
    assert!(ids.iter().all(|id| net.e(0).knows(id)));
}

#[test]
fn tracked_authors_are_bounded_and_a_new_author_displaces_the_least_recently_active() {
    let config = Config::builder().max_tracked_authors(2).build().unwrap();
    let mut net = Net::uniform(2, config);
    net.connect(0, 1);
    net.pump();
    let a = Keypair::from_seed(&[7; 32]);
    let b = Keypair::from_seed(&[8; 32]);
    let from_a = Envelope::sign(&a, 1, T0, b"a".to_vec()).unwrap();
    let from_b = Envelope::sign(&b, 1, T0, b"b".to_vec()).unwrap();
    net.e(1)
        .handle_frame(0, push(vec![from_a.clone(), from_b.clone()]), T0);
    net.collect();
    assert_eq!(
        net.got(1),
        vec![from_a.id(), from_b.id()],
        "a new author is never refused"
    );
    assert_eq!(net.e(1).tracked_authors(), 2, "node 1 and one other author");
    assert_eq!(net.e(1).stats().authors_displaced, 1);
    // `a` was forgotten, but its id stays known: a replay is not a second delivery.
    net.e(1).handle_frame(0, push(vec![from_a.clone()]), T0 + 1);
    net.collect();
    assert_eq!(net.got(1).len(), 2);
    assert!(net.e(1).knows(&from_a.id()) && net.e(1).knows(&from_b.id()));
    // `a` speaks again: tracked again (displacing `b`), from where it was.
    let a2 = Envelope::sign(&a, 2, T0 + 2, b"a2".to_vec()).unwrap();
    net.e(1)
        .handle_frame(0, push(vec![a2.clone(), from_b.clone()]), T0 + 2);
    net.collect();
    assert_eq!(net.got(1), vec![from_a.id(), from_b.id(), a2.id()]);
    assert_eq!(net.e(1).tracked_authors(), 2);
    net.e(1).check_invariants();
    // Past max_age, the forgotten authors' messages are outside the window anyway.
    let later = T0 + 3_600_000 + 1_000;
    net.e(1).handle_timeout(later);
    net.e(1)
        .handle_frame(0, push(vec![from_a.clone(), from_b.clone()]), later);
    net.collect();
    assert_eq!(net.got(1).len(), 3);
}

#[test]
fn a_dropped_frame_is_announced_again_in_the_next_round() {
    let mut net = Net::uniform(2, Config::default());
    net.connect(0, 1);
    net.pump();
    let id = net.e(0).publish(b"lost once".to_vec(), T0).unwrap();
    net.collect();
    let (from, to, frame) = net.frames.pop().unwrap();
    assert_eq!((from, to), (0, 1));
    // The driver could not send it (queue full): the engine is told. Until the queue
    // drains, the peer's wants are not answered: nothing is sent for it to drop again.
    net.e(0).frame_dropped(&1, &frame);
    net.advance(100);
    net.pump();
    assert!(net.got(1).is_empty());
    // The queue drained: the next round announces the message again, and the want that
    // follows is answered.
    net.e(0).peer_drained(&1);
    net.advance(1_000);
    net.pump();
    net.advance(1_000);
    net.pump();
    assert_eq!(net.got(1), vec![id]);
}

#[test]
fn publishing_checks_the_payload_size_and_never_delivers_to_the_author() {
    let mut net = Net::uniform(2, Config::default());
    net.connect(0, 1);
    let too_big = vec![0; 64 * 1024 + 1];
    assert_eq!(
        net.e(0).publish(too_big, T0),
        Err(PublishError::PayloadTooLarge {
            size: 65_537,
            max: 65_536
        })
    );
    net.e(0).publish(b"mine".to_vec(), T0).unwrap();
    net.pump();
    assert!(net.got(0).is_empty());
    assert_eq!(net.got(1).len(), 1);
}

#[test]
fn a_restarted_author_never_reuses_a_sequence_from_its_earlier_run() {
    let keys = Keypair::from_seed(&[1; 32]);
    let config = Config::builder().start_sequence(10).build().unwrap();
    let mut first = Engine::<u8>::new(keys.clone(), config.clone(), T0);
    let old: Vec<Envelope> = (0..3)
        .map(|_| {
            let id = first.publish(b"old".to_vec(), T0).unwrap();
            first.message(&id).unwrap().clone()
        })
        .collect();
    // Restarted with a start sequence below its old ones (a clock that went back).
    let mut restarted = Engine::<u8>::new(
        keys,
        Config::builder().start_sequence(5).build().unwrap(),
        T0,
    );
    restarted.connect(9, T0);
    restarted.handle_frame(9, push(old), T0);
    let mut delivered = 0;
    while let Some(output) = restarted.poll_output() {
        delivered += matches!(output, Output::Deliver { .. }) as usize;
    }
    assert_eq!(delivered, 0, "its own messages are not delivered to it");
    let id = restarted.publish(b"new".to_vec(), T0).unwrap();
    assert_eq!(id.sequence, 13);
}

#[test]
fn with_nothing_new_rounds_send_nothing() {
    let mut net = Net::uniform(3, Config::default());
    net.connect(0, 1);
    net.connect(1, 2);
    net.pump();
    net.e(0).publish(b"one".to_vec(), T0).unwrap();
    net.pump();
    for _ in 0..50 {
        net.advance(100);
        assert_eq!(net.pump(), 0, "a round sent a frame with nothing new");
    }
}

#[test]
fn a_round_asked_for_before_the_peers_digest_arrives_is_not_lost() {
    let mut net = Net::uniform(2, manual());
    net.connect(0, 1);
    net.collect(); // the digests are in flight, not yet delivered
    let id = net.e(0).publish(b"early".to_vec(), T0).unwrap();
    net.e(0).gossip(T0);
    net.pump();
    assert_eq!(net.got(1), vec![id]);
}

#[test]
fn a_have_of_the_largest_allowed_size_draws_a_bounded_want() {
    let mut net = Net::uniform(2, Config::default());
    net.connect(0, 1);
    net.pump();
    // 32,768 one-id ranges (the per-frame limit) of an author node 1 has never seen.
    let stranger = Keypair::from_seed(&[42; 32]).public();
    let ranges: RangeSet = (1..=32_768u64).map(|i| i * 2).collect();
    let have = have(stranger, ranges);
    let limits = Config::default().frame_limits();
    let have = Frame::decode(&have.encode(), &limits).expect("within the limits");
    net.e(1).handle_frame(0, have, T0);
    net.collect();
    assert!(net.violations.is_empty());
    let wanted: usize = net
        .frames
        .iter()
        .flat_map(|(_, _, f)| &f.want)
        .map(|d| d.ranges.range_count())
        .sum();
    assert_eq!(wanted, 4_096, "one frame's worth of want ranges, no more");
}

#[test]
fn wants_of_a_replaced_connection_are_asked_of_another_peer_that_has_the_ids() {
    let mut net = Net::uniform(3, Config::default());
    net.connect(0, 1);
    net.connect(0, 2);
    net.pump();
    let author = Keypair::from_seed(&[9; 32]).public();
    let announce = || have(author, RangeSet::from_range(1, 3));
    // Both peers announce the ids; node 0 asks only the first.
    net.e(0).handle_frame(1, announce(), T0);
    net.e(0).handle_frame(2, announce(), T0);
    net.collect();
    let asked: Vec<u8> = net
        .frames
        .drain(..)
        .filter(|(_, _, f)| !f.want.is_empty())
        .map(|(_, to, _)| to)
        .collect();
    assert_eq!(asked, vec![1]);
    // The connection to 1 is replaced before it answers: node 0 asks 2 instead.
    net.e(0).connect(1, T0);
    net.collect();
    let asked: Vec<u8> = net
        .frames
        .iter()
        .filter(|(_, _, f)| !f.want.is_empty())
        .map(|(_, to, _)| *to)
        .collect();
    assert_eq!(asked, vec![2]);
}

#[test]
fn an_unanswered_want_moves_at_once_to_another_peer_that_has_it() {
    let mut net = Net::uniform(3, Config::default());
    net.connect(0, 1);
    net.connect(0, 2);
    net.pump();
    let author = Keypair::from_seed(&[9; 32]).public();
    let announce = have(author, RangeSet::from_range(1, 1));
    net.e(0).handle_frame(1, announce.clone(), T0);
    net.e(0).handle_frame(2, announce, T0);
    // Peer 1 never answers: record when node 0 asks, and whom.
    let asks = net.wants_sent_until(0, 4_000);
    // Asked of 1 at once; after 1 s without an answer, of peer 2, which announced it too.
    // Neither answers: the want keeps moving, one small want per timeout, until one does.
    assert_eq!(
        asks,
        vec![(0, 1), (1_000, 2), (2_000, 1), (3_000, 2), (4_000, 1)]
    );
    net.e(0).check_invariants();
}

#[test]
fn a_want_only_one_peer_can_answer_is_asked_again_with_a_doubling_timeout_then_given_up() {
    let mut net = Net::uniform(2, Config::default());
    net.connect(0, 1);
    net.pump();
    let author = Keypair::from_seed(&[9; 32]).public();
    net.e(0)
        .handle_frame(1, have(author, RangeSet::from_range(1, 1)), T0);
    let asks = net.wants_sent_until(0, 40_000);
    assert_eq!(asks, vec![(0, 1), (1_000, 1), (3_000, 1), (7_000, 1)]);
    assert_eq!(
        net.e(0).outstanding_wants(),
        0,
        "given up after the fourth attempt"
    );
    // A later announcement asks again.
    net.e(0)
        .handle_frame(1, have(author, RangeSet::from_range(1, 1)), T0 + 40_000);
    net.collect();
    assert!(net.frames.iter().any(|(_, _, f)| !f.want.is_empty()));
}

#[test]
fn a_complete_digest_is_answered_at_most_once_per_min_resync_interval() {
    let mut net = Net::uniform(2, Config::default());
    net.connect(0, 1);
    net.pump();
    assert_eq!(
        net.e(0).stats().resyncs,
        1,
        "the connection's digest was answered"
    );
    let resync = Frame {
        complete: true,
        ..Frame::default()
    };
    for _ in 0..100 {
        net.e(0).handle_frame(1, resync.clone(), T0);
    }
    assert_eq!(net.e(0).stats().resyncs, 1);
    assert_eq!(net.e(0).stats().resyncs_limited, 100);
    // One within the interval is read as announcements: its ids are wanted.
    let author = Keypair::from_seed(&[9; 32]).public();
    let mut announced = have(author, RangeSet::from_range(1, 3));
    announced.complete = true;
    net.e(0).handle_frame(1, announced, T0);
    net.collect();
    assert!(
        net.frames
            .iter()
            .any(|(_, to, f)| *to == 1 && !f.want.is_empty())
    );
    // Ten seconds after the last answer, a resync is answered again.
    net.e(0).handle_frame(1, resync, T0 + 10_000);
    assert_eq!(net.e(0).stats().resyncs, 2);
}

#[test]
fn a_forged_out_of_window_envelope_cannot_censor_the_real_message() {
    // 0 is a forging relay; 2 is the author; 3 is an honest bystander behind 1.
    let mut net = Net::uniform(4, Config::default());
    net.connect(0, 1);
    net.connect(1, 2);
    net.connect(1, 3);
    net.pump();
    // The relay sends a forged envelope with the id author 2 will use next,
    // an out-of-window timestamp and a garbage signature: dropped quietly, unverified.
    let author = Keypair::from_seed(&[3; 32]); // node 2's key
    let next = MessageId {
        author: author.public(),
        sequence: net.e(2).stats().published + 1_750_000_000_000_000,
    };
    let mut raw = Envelope::sign(
        &Keypair::from_seed(&[66; 32]),
        next.sequence,
        0,
        b"x".to_vec(),
    )
    .unwrap()
    .encode();
    raw[2..34].copy_from_slice(author.public().as_bytes());
    let forged = Envelope::decode(&raw).unwrap();
    assert_eq!(forged.id(), next);
    net.e(1).handle_frame(0, push(vec![forged]), T0);
    net.collect();
    assert!(net.violations.is_empty() && !net.e(1).knows(&next));
    // Node 1's digests do not claim the id, so no peer is told it has it.
    net.e(1).connect(3, T0);
    net.collect();
    for (_, _, frame) in net.frames.drain(..) {
        assert!(frame.have.iter().all(|d| d.author != author.public()));
    }
    net.e(3).connect(1, T0);
    net.pump();
    // The real message is published: node 1 still accepts and delivers it, and passes it on.
    let id = net.e(2).publish(b"the real one".to_vec(), T0).unwrap();
    assert_eq!(id, next);
    net.pump();
    assert_eq!(net.got(1), vec![id]);
    assert_eq!(net.got(3), vec![id]);
}

#[test]
fn wants_of_a_peer_in_violation_are_asked_of_another_peer_that_has_the_ids() {
    let mut net = Net::uniform(3, Config::default());
    net.connect(0, 1);
    net.connect(0, 2);
    net.pump();
    let author = Keypair::from_seed(&[9; 32]);
    net.e(0)
        .handle_frame(1, have(author.public(), RangeSet::from_range(1, 3)), T0);
    net.e(0)
        .handle_frame(2, have(author.public(), RangeSet::from_range(1, 3)), T0);
    net.collect();
    net.frames.clear();
    // Peer 1, which was asked, sends a forged envelope instead of answering.
    let mut raw = Envelope::sign(&author, 9, T0, b"real".to_vec())
        .unwrap()
        .encode();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    net.e(0)
        .handle_frame(1, push(vec![Envelope::decode(&raw).unwrap()]), T0);
    net.collect();
    assert_eq!(net.violations.len(), 1);
    let asked: Vec<u8> = net
        .frames
        .iter()
        .filter(|(_, _, f)| !f.want.is_empty())
        .map(|(_, to, _)| *to)
        .collect();
    assert_eq!(
        asked,
        vec![2],
        "the ids asked of the violator are asked of peer 2"
    );
}

#[test]
fn an_interval_under_a_millisecond_never_makes_a_zero_length_timer() {
    let mut net = Net::uniform(1, Config::default());
    net.e(0)
        .set_gossip_interval(Some(std::time::Duration::from_micros(10)), T0);
    assert_eq!(net.e(0).poll_timeout(), Some(T0 + 1));
    net.e(0).handle_timeout(T0 + 1);
    assert_eq!(net.e(0).poll_timeout(), Some(T0 + 2));
}

#[test]
fn a_peer_that_answers_some_wants_cannot_keep_the_others_pending() {
    // Frames of eight envelopes are full, so a peer can make real progress cheaply.
    let config = Config::builder().max_messages_per_frame(8).build().unwrap();
    let mut net = Net::uniform(3, config);
    net.connect(0, 1);
    net.connect(0, 2);
    net.pump();
    let (a, k) = (Keypair::from_seed(&[9; 32]), Keypair::from_seed(&[10; 32]));
    // Peer 1 announces 100 of a's ids and 100 of k's; peer 2 announces a's too.
    let mut announce = have(a.public(), RangeSet::from_range(1, 100));
    announce.have.push(Digest {
        author: k.public(),
        ranges: RangeSet::from_range(1, 100),
    });
    net.e(0).handle_frame(1, announce, T0);
    net.e(0)
        .handle_frame(2, have(a.public(), RangeSet::from_range(1, 100)), T0);
    net.collect();
    net.frames.clear();
    // Every 200 ms, peer 1 delivers a full frame of k's messages, and one of a's.
    let mut asked_of_2 = None;
    for step in 1..=10u64 {
        let now = T0 + step * 200;
        net.now = now;
        let mut envelopes: Vec<Envelope> = (8 * step - 7..=8 * step)
            .map(|s| Envelope::sign(&k, s, now, b"k".to_vec()).unwrap())
            .collect();
        envelopes.push(Envelope::sign(&a, step, now, b"a".to_vec()).unwrap());
        net.e(0).handle_frame(1, push(envelopes), now);
        net.e(0).handle_timeout(now);
        net.collect();
        for (_, to, frame) in net.frames.drain(..) {
            if to == 2 && frame.want.iter().any(|d| d.author == a.public()) {
                asked_of_2.get_or_insert(step * 200);
            }
        }
    }
    assert_eq!(
        asked_of_2,
        Some(1_000),
        "a's trickled want moved to peer 2 at its own deadline"
    );
    net.e(0).check_invariants();
}

#[test]
fn a_relay_sending_an_author_out_of_order_cannot_make_unseen_ids_known() {
    let config = Config::builder().max_ranges_per_author(4).build().unwrap();
    let mut net = Net::uniform(3, config);
    net.connect(0, 1);
    net.connect(0, 2);
    net.pump();
    let author = Keypair::from_seed(&[9; 32]);
    let sign = |s: u64| Envelope::sign(&author, s, T0, vec![s as u8]).unwrap();
    // The relay (peer 1) sends the odd sequences 1, 3, ..., 21.
    let odd = (0..11).map(|k| sign(2 * k + 1)).collect();
    net.e(0).handle_frame(1, push(odd), T0);
    net.collect();
    assert_eq!(
        net.got(0).len(),
        4,
        "four ranges of known ids, the rest held back"
    );
    assert!(net.e(0).stats().too_fragmented > 0);
    // Every even id is still unknown, so an honest peer's copies are accepted.
    for s in (2..=22).step_by(2) {
        assert!(!net.e(0).knows(&sign(s).id()));
    }
    let all = (1..=22).map(sign).collect();
    net.e(0).handle_frame(2, push(all), T0);
    net.collect();
    assert_eq!(net.got(0).len(), 22, "in order, every id is accepted");
    net.e(0).check_invariants();
}

#[test]
fn what_a_congested_peer_wants_is_announced_back_when_its_queue_drains() {
    let mut net = Net::uniform(2, Config::default());
    net.connect(0, 1);
    net.pump();
    let id = net.e(0).publish(b"x".to_vec(), T0).unwrap();
    net.collect();
    let (_, _, frame) = net.frames.pop().unwrap();
    net.e(0).frame_dropped(&1, &frame);
    net.e(0).gossip(T0);
    net.collect();
    net.frames.clear(); // the round's announcement is lost too
    // Peer 1 asks while node 0 is congested: not answered, remembered.
    let me = net.e(0).public_key();
    net.e(0)
        .handle_frame(1, want(me, RangeSet::from_range(1, u64::MAX)), T0);
    net.collect();
    assert!(net.frames.iter().all(|(_, _, f)| f.messages.is_empty()));
    net.frames.clear();
    net.e(0).peer_drained(&1);
    net.pump();
    assert_eq!(net.got(1), vec![id]);
}

#[test]
fn ids_in_a_complete_digest_are_wanted_too() {
    let mut net = Net::uniform(2, Config::default());
    net.connect(0, 1);
    net.pump();
    let author = Keypair::from_seed(&[9; 32]).public();
    let mut digest = have(author, RangeSet::from_range(1, 3));
    digest.complete = true;
    net.now = T0 + 10_000;
    net.e(0).handle_frame(1, digest, T0 + 10_000);
    net.collect();
    assert!(
        net.frames
            .iter()
            .any(|(_, to, f)| *to == 1 && f.want.iter().any(|d| d.author == author))
    );
}

#[test]
fn announcements_beyond_the_want_budget_are_asked_as_room_frees_up() {
    let config = Config::builder()
        .max_want_ranges_per_frame(2)
        .build()
        .unwrap();
    let mut net = Net::uniform(2, config);
    net.connect(0, 1);
    net.pump();
    let authors: Vec<Keypair> = (20..25u8).map(|i| Keypair::from_seed(&[i; 32])).collect();
    let frame = Frame {
        have: authors
            .iter()
            .map(|k| Digest {
                author: k.public(),
                ranges: RangeSet::from_range(1, 1),
            })
            .collect(),
        ..Frame::default()
    };
    net.e(0).handle_frame(1, frame, T0);
    net.collect();
    assert_eq!(net.e(0).outstanding_wants(), 2, "the budget");
    // Node 1 answers whatever is asked; everything arrives, two at a time.
    for _ in 0..5 {
        let asked: Vec<Digest> = net
            .frames
            .drain(..)
            .filter(|(_, to, _)| *to == 1)
            .flat_map(|(_, _, f)| f.want)
            .collect();
        let answer = asked
            .iter()
            .map(|d| {
                let keys = authors.iter().find(|k| k.public() == d.author).unwrap();
                Envelope::sign(keys, 1, T0, b"x".to_vec()).unwrap()
            })
            .collect();
        net.e(0).handle_frame(1, push(answer), T0);
        net.collect();
    }
    assert_eq!(net.got(0).len(), 5);
}

#[test]
fn an_author_that_restarts_often_keeps_being_accepted_as_its_old_runs_age_out() {
    let config = Config::builder()
        .max_ranges_per_author(4)
        .max_age(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let mut net = Net::uniform(2, config);
    net.connect(0, 1);
    net.pump();
    let author = Keypair::from_seed(&[9; 32]);
    // Twenty runs, four seconds apart (up to four inside the window at once), each starting
    // at the clock.
    for run in 0..20u64 {
        let now = T0 + run * 4_000;
        net.now = now;
        net.e(0).handle_timeout(now);
        let first = now * 1_000;
        let envelopes = (first..first + 3)
            .map(|s| Envelope::sign(&author, s, now, b"r".to_vec()).unwrap())
            .collect();
        net.e(0).handle_frame(1, push(envelopes), now);
        net.collect();
    }
    assert_eq!(net.got(0).len(), 60, "every run accepted");
    assert_eq!(net.e(0).stats().too_fragmented, 0);
}

/// Frames sent from `from` to `to` among those in flight.
fn frames_between(net: &Net, from: u8, to: u8) -> Vec<Frame> {
    net.frames
        .iter()
        .filter(|(f, t, _)| *f == from && *t == to)
        .map(|(_, _, frame)| frame.clone())
        .collect()
}

/// Delivers in-flight frames one step at a time (all frames of a step, then the outputs).
fn step(net: &mut Net) {
    net.collect();
    let now = net.now;
    for (from, to, frame) in std::mem::take(&mut net.frames) {
        net.e(to).handle_frame(from, frame, now);
    }
    net.collect();
}

#[test]
fn a_duplicate_over_an_eager_link_prunes_it_and_later_messages_are_only_announced_there() {
    let mut net = Net::uniform(3, Config::default());
    net.connect(0, 1);
    net.connect(0, 2);
    net.connect(1, 2);
    net.pump();
    // Past the connection's grace, when a duplicate means a redundant path.
    net.advance(2_000);
    net.pump();
    let now = net.now;
    net.e(0).publish(b"first".to_vec(), now).unwrap();
    net.pump();
    let pruned = net.e(1).stats().prunes + net.e(2).stats().prunes;
    assert!(
        pruned >= 1,
        "the 1-2 link carried a duplicate and was pruned"
    );
    // The next message crosses 1-2 as an announcement only, within `announce_delay`.
    let second = net.e(0).publish(b"second".to_vec(), now).unwrap();
    step(&mut net); // 0 pushes to 1 and 2
    let pushed: Vec<Frame> = [frames_between(&net, 1, 2), frames_between(&net, 2, 1)].concat();
    assert!(
        pushed.iter().all(|f| f.messages.is_empty()),
        "not pushed over the pruned link"
    );
    net.pump();
    net.now += 20;
    let now = net.now;
    for i in 1..=2 {
        net.e(i).handle_timeout(now);
    }
    net.collect();
    let across: Vec<Frame> = [frames_between(&net, 1, 2), frames_between(&net, 2, 1)].concat();
    assert!(
        across
            .iter()
            .any(|f| f.have.iter().any(|d| d.ranges.contains(second.sequence))),
        "announced over the lazy link"
    );
    net.pump();
    assert_eq!(net.got(1).last(), Some(&second));
    assert_eq!(net.got(2).last(), Some(&second));
    assert_eq!(
        net.e(1).stats().grafts + net.e(2).stats().grafts,
        0,
        "no repair needed"
    );
}

#[test]
fn an_announcement_with_no_pushed_copy_grafts_the_announcer_after_the_graft_timeout() {
    // A line 0 - 1 - 2 plus a lazy link 0 - 2; the link 1 - 2 then fails.
    let mut net = Net::uniform(3, Config::default());
    net.connect(0, 1);
    net.connect(1, 2);
    net.connect(0, 2);
    net.pump();
    net.advance(2_000);
    net.pump();
    let now = net.now;
    net.e(0).publish(b"shape the tree".to_vec(), now).unwrap();
    net.pump();
    // Find which link still pushes to 2, and cut it: 2 is then reached only by a lazy link.
    let probe = net.e(0).publish(b"probe".to_vec(), now).unwrap();
    net.collect();
    let direct = frames_between(&net, 0, 2)
        .iter()
        .any(|f| f.messages.iter().any(|e| e.id() == probe));
    net.pump();
    let eager_to_2 = if direct { 0 } else { 1 };
    net.e(eager_to_2).disconnect(&2, now);
    net.e(2).disconnect(&eager_to_2, now);
    net.collect();
    net.frames.clear();
    let lost = net.e(0).publish(b"after the cut".to_vec(), now).unwrap();
    net.pump();
    net.advance(20); // the announcement
    net.pump();
    assert!(!net.got(2).contains(&lost), "only announced so far");
    // The graft timeout passes: 2 wants it from the announcer and grafts it.
    net.advance(100);
    net.pump();
    assert!(net.got(2).contains(&lost));
    assert_eq!(net.e(2).stats().grafts, 1);
    // The tree is repaired: the next message is pushed to 2 at once.
    let now = net.now;
    let next = net.e(0).publish(b"repaired".to_vec(), now).unwrap();
    net.pump();
    assert!(net.got(2).contains(&next));
    assert_eq!(net.e(2).stats().grafts, 1, "no second graft");
}

#[test]
fn an_eager_peer_that_announces_instead_of_pushing_cannot_keep_the_tree_broken() {
    let mut net = Net::uniform(3, Config::default());
    net.connect(0, 1);
    net.connect(0, 2);
    net.pump();
    net.advance(2_000);
    net.pump();
    net.frames.clear();
    let author = Keypair::from_seed(&[9; 32]);
    let m = Envelope::sign(&author, 1, net.now, b"m".to_vec()).unwrap();
    let now = net.now;
    // Peer 1 pushes it first; peer 2's copy is a duplicate over an eager link: pruned.
    net.e(0).handle_frame(1, push(vec![m.clone()]), now);
    net.e(0).handle_frame(2, push(vec![m]), now);
    assert_eq!(net.e(0).stats().prunes, 1);
    net.collect();
    net.frames.clear();
    // Peer 1 (eager) now only announces the next message: it is wanted from it at once.
    // Peer 2 (lazy) announces it too: deferred.
    net.e(0)
        .handle_frame(1, have(author.public(), RangeSet::from_range(2, 2)), now);
    net.e(0)
        .handle_frame(2, have(author.public(), RangeSet::from_range(2, 2)), now);
    net.collect();
    net.frames.clear();
    // No pushed copy within the graft timeout: peer 2 is grafted although the id is already
    // wanted from peer 1, so later messages come pushed from an honest peer.
    net.advance(100);
    net.collect();
    assert_eq!(net.e(0).stats().grafts, 1);
    assert!(
        net.frames.iter().any(|(_, to, f)| *to == 2 && f.graft),
        "peer 2 told to push"
    );
}

/// Drains `engine`'s outputs: the peers sent a want naming `id`, and the ids delivered.
fn drain(engine: &mut Engine<u8>, id: &MessageId) -> (Vec<u8>, Vec<MessageId>) {
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

/// A new author's message announced by an honest lazy peer (its announcement waits for the
/// graft timer) while an eager peer pushes a forged out-of-window copy, announces the id and
/// answers its want with the forgery again: the id is wanted of the honest peer and arrives.
#[test]
fn a_forging_eager_peer_cannot_hide_a_new_authors_message_announced_lazily() {
    const HONEST: u8 = 1;
    const FORGER: u8 = 2;
    let config = Config::default();
    let mut v: Engine<u8> = Engine::new(Keypair::from_seed(&[1; 32]), config, T0);
    let author = Keypair::from_seed(&[40; 32]);
    let real = Envelope::sign(&author, 1, T0, b"real".to_vec()).unwrap();
    let forged = Envelope::sign(&author, 1, 0, b"forged".to_vec()).unwrap();
    let id = real.id();
    v.connect(HONEST, T0);
    v.connect(FORGER, T0);
    let prune = Frame {
        prune: true,
        ..Frame::default()
    };
    v.handle_frame(HONEST, prune, T0);
    drain(&mut v, &id);

    v.handle_frame(
        HONEST,
        have(author.public(), RangeSet::from_range(1, 1)),
        T0 + 1,
    );
    v.handle_frame(FORGER, push(vec![forged.clone()]), T0 + 2);
    v.handle_frame(
        FORGER,
        have(author.public(), RangeSet::from_range(1, 1)),
        T0 + 3,
    );
    let (wanted_of, _) = drain(&mut v, &id);
    assert_eq!(
        wanted_of,
        vec![FORGER],
        "the eager announcer is asked first"
    );
    v.handle_frame(FORGER, push(vec![forged]), T0 + 4);
    drain(&mut v, &id);

    // The graft timer, then the want's deadline: the id goes to the honest announcer.
    let mut now = T0 + 4;
    let mut asked_honest = false;
    while now < T0 + 10_000 && !asked_honest {
        now = v.poll_timeout().unwrap_or(now + 100).max(now + 1);
        v.handle_timeout(now);
        let (wanted_of, _) = drain(&mut v, &id);
        asked_honest = wanted_of.contains(&HONEST);
    }
    assert!(asked_honest, "the honest announcer was never asked");
    v.handle_frame(HONEST, push(vec![real]), now);
    let (_, delivered) = drain(&mut v, &id);
    assert_eq!(delivered, vec![id]);
    v.check_invariants();
}

const LIAR_A: u8 = 1;
const LIAR_B: u8 = 2;
const HONEST: u8 = 3;

/// An engine with the two liars and the honest peer connected at `T0`.
fn liars_and_honest() -> Engine<u8> {
    let mut v: Engine<u8> = Engine::new(Keypair::from_seed(&[1; 32]), Config::default(), T0);
    for peer in [LIAR_A, LIAR_B, HONEST] {
        v.connect(peer, T0);
    }
    v
}

/// Moves time to `v`'s next timeout and handles it; returns the peers asked for `id`.
fn next_timeout(v: &mut Engine<u8>, now: &mut Millis, id: &MessageId) -> Vec<u8> {
    *now = v.poll_timeout().unwrap_or(*now + 100).max(*now + 1);
    v.handle_timeout(*now);
    drain(v, id).0
}

/// `peer` gathers strikes: it announces another author's id and never answers, until the
/// node gives up. Returns the time then.
fn gather_strikes(v: &mut Engine<u8>, peer: u8, mut now: Millis) -> Millis {
    let other = Keypair::from_seed(&[41; 32]);
    let unanswered = Envelope::sign(&other, 1, T0, b"x".to_vec()).unwrap().id();
    v.handle_frame(peer, have(other.public(), RangeSet::from_range(1, 1)), now);
    drain(v, &unanswered);
    let start = now;
    while now < start + 60_000 && v.outstanding_wants() > 0 {
        next_timeout(v, &mut now, &unanswered);
    }
    now
}

/// A new author's first message (signed at `now`), its id and an announcement of it.
fn new_authors_message(now: Millis) -> (Envelope, MessageId, Frame) {
    let author = Keypair::from_seed(&[40; 32]);
    let real = Envelope::sign(&author, 1, now, b"real".to_vec()).unwrap();
    let id = real.id();
    (real, id, have(author.public(), RangeSet::from_range(1, 1)))
}

/// The honest peer answers with `real`: it is delivered, and the engine is consistent.
fn honest_answers(v: &mut Engine<u8>, asked: &[u8], real: Envelope, id: MessageId, now: Millis) {
    assert_eq!(
        asked,
        [LIAR_A, LIAR_B, HONEST],
        "each liar once, then the honest peer"
    );
    v.handle_frame(HONEST, push(vec![real]), now);
    assert_eq!(drain(v, &id).1, vec![id]);
    v.check_invariants();
}

/// Two peers announce a new author's id and never answer; an honest peer that announced it
/// too has more strikes than they do (it failed earlier wants). The id still reaches the
/// honest peer after one want timeout per liar: each peer has its turn before any has a
/// second.
#[test]
fn peers_that_never_answer_cannot_pass_a_want_between_them() {
    let mut v = liars_and_honest();
    let mut now = gather_strikes(&mut v, HONEST, T0);

    let (real, id, announce) = new_authors_message(now);
    v.handle_frame(LIAR_A, announce.clone(), now);
    v.handle_frame(LIAR_B, announce.clone(), now);
    v.handle_frame(HONEST, announce, now);
    let mut asked = drain(&mut v, &id).0;
    assert_eq!(asked, vec![LIAR_A]);
    let start = now;
    while now < start + 60_000 && !asked.contains(&HONEST) {
        asked.extend(next_timeout(&mut v, &mut now, &id));
    }
    honest_answers(&mut v, &asked, real, id, now);
}

/// The same, with liars that leave just before their want's deadline and reconnect (new
/// connections, no strikes, no marks): connections younger than the pull are asked last, so
/// the honest peer is asked after each liar's one turn.
#[test]
fn liars_that_reconnect_cannot_pass_a_want_between_them() {
    let mut v = liars_and_honest();
    let mut now = gather_strikes(&mut v, HONEST, T0);

    let (real, id, announce) = new_authors_message(now);
    for peer in [LIAR_A, LIAR_B, HONEST] {
        v.handle_frame(peer, announce.clone(), now);
    }
    let mut asked = drain(&mut v, &id).0;
    // Each liar in turn leaves just before its deadline and comes back with the same news.
    for liar in [LIAR_A, LIAR_B] {
        if asked.contains(&HONEST) {
            break;
        }
        assert_eq!(asked.last(), Some(&liar));
        now += 900;
        v.disconnect(&liar, now);
        asked.extend(drain(&mut v, &id).0);
        v.connect(liar, now);
        v.handle_frame(liar, announce.clone(), now);
        asked.extend(drain(&mut v, &id).0);
    }
    honest_answers(&mut v, &asked, real, id, now);
}

/// The honest peer connected after the pull began and then earned a strike; the liars,
/// there from the start, leave before their deadlines and reconnect. A reconnected liar is
/// younger than the honest peer, so the honest peer is asked after each liar's first turn.
#[test]
fn liars_that_reconnect_cannot_starve_an_honest_peer_that_came_late() {
    let mut v: Engine<u8> = Engine::new(Keypair::from_seed(&[1; 32]), Config::default(), T0);
    for peer in [LIAR_A, LIAR_B] {
        v.connect(peer, T0);
    }
    let (real, id, announce) = new_authors_message(T0);
    for peer in [LIAR_A, LIAR_B] {
        v.handle_frame(peer, announce.clone(), T0);
    }
    let mut asked = drain(&mut v, &id).0;
    assert_eq!(asked, vec![LIAR_A]);

    // The honest peer comes 10 ms into the pull, announces it, and fails a want of its own.
    v.connect(HONEST, T0 + 10);
    v.handle_frame(HONEST, announce.clone(), T0 + 10);
    let other = Keypair::from_seed(&[41; 32]);
    v.handle_frame(
        HONEST,
        have(other.public(), RangeSet::from_range(1, 1)),
        T0 + 10,
    );
    asked.extend(drain(&mut v, &id).0);

    // Liar A leaves just before its deadline (the want goes to liar B) and comes back.
    v.disconnect(&LIAR_A, T0 + 990);
    asked.extend(drain(&mut v, &id).0);
    v.connect(LIAR_A, T0 + 990);
    v.handle_frame(LIAR_A, announce.clone(), T0 + 990);
    asked.extend(drain(&mut v, &id).0);
    // The honest peer's own want times out: a strike.
    v.handle_timeout(T0 + 1_010);
    asked.extend(drain(&mut v, &id).0);
    // Liar B leaves just before its deadline.
    v.disconnect(&LIAR_B, T0 + 1_980);
    asked.extend(drain(&mut v, &id).0);
    honest_answers(&mut v, &asked, real, id, T0 + 1_990);
}
