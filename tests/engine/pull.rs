//! Pulling: haves and wants, retries and their turns, resyncs, the want budget, and
//! congestion.

use crate::harness::*;
use secure_gossip::engine::{Engine, Output};
use secure_gossip::{Config, Digest, Envelope, Frame, Keypair, RangeSet};

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
fn a_have_of_the_largest_allowed_size_draws_a_bounded_want() {
    let mut net = Net::pair(Config::default());
    // 32,768 one-id ranges (the per-frame limit) of an author node 1 has never seen.
    let stranger = keys(42).public();
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
fn ids_in_a_complete_digest_are_wanted_too() {
    let mut net = Net::pair(Config::default());
    let author = keys(9).public();
    let mut digest = have_range(author, 1, 3);
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
fn a_complete_digest_is_answered_at_most_once_per_min_resync_interval() {
    let mut net = Net::pair(Config::default());
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
    let author = keys(9).public();
    let mut announced = have_range(author, 1, 3);
    announced.complete = true;
    net.e(0).handle_frame(1, announced, T0);
    net.collect();
    assert!(net.asked().contains(&1));
    // Ten seconds after the last answer, a resync is answered again.
    net.e(0).handle_frame(1, resync, T0 + 10_000);
    assert_eq!(net.e(0).stats().resyncs, 2);
}

#[test]
fn wants_of_a_replaced_connection_are_asked_of_another_peer_that_has_the_ids() {
    let mut net = Net::star(Config::default());
    let author = keys(9).public();
    let announce = || have_range(author, 1, 3);
    // Both peers announce the ids; node 0 asks only the first.
    net.e(0).handle_frame(1, announce(), T0);
    net.e(0).handle_frame(2, announce(), T0);
    net.collect();
    assert_eq!(net.asked(), vec![1]);
    net.frames.clear();
    // The connection to 1 is replaced before it answers: node 0 asks 2 instead.
    net.e(0).connect(1, T0);
    net.collect();
    assert_eq!(net.asked(), vec![2]);
}

#[test]
fn wants_of_a_peer_in_violation_are_asked_of_another_peer_that_has_the_ids() {
    let mut net = Net::star(Config::default());
    let author = keys(9);
    net.e(0)
        .handle_frame(1, have_range(author.public(), 1, 3), T0);
    net.e(0)
        .handle_frame(2, have_range(author.public(), 1, 3), T0);
    net.discard();
    // Peer 1, which was asked, sends a forged envelope instead of answering.
    let mut raw = sign(&author, 9, T0, b"real").encode();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    net.e(0)
        .handle_frame(1, push(vec![Envelope::decode(&raw).unwrap()]), T0);
    net.collect();
    assert_eq!(net.violations.len(), 1);
    assert_eq!(
        net.asked(),
        vec![2],
        "the ids asked of the violator are asked of peer 2"
    );
}

#[test]
fn an_unanswered_want_moves_at_once_to_another_peer_that_has_it() {
    let mut net = Net::star(Config::default());
    let author = keys(9).public();
    let announce = have_range(author, 1, 1);
    net.e(0).handle_frame(1, announce.clone(), T0);
    net.e(0).handle_frame(2, announce, T0);
    // Peer 1 never answers: record when node 0 asks, and whom.
    let asks = net.wants_sent_until(0, 40_000);
    // Asked of 1 at once; after 1 s without an answer, of peer 2, which announced it too.
    // Neither answers: the want keeps moving until one does, and once both have failed each
    // is given as long as the pull has lasted (up to 16 want timeouts): a want per doubling,
    // then one per 16 s.
    assert_eq!(
        asks,
        vec![
            (0, 1),
            (1_000, 2),
            (2_000, 1),
            (4_000, 2),
            (8_000, 1),
            (16_000, 2),
            (32_000, 1)
        ]
    );
    net.e(0).check_invariants();
}

#[test]
fn a_want_only_one_peer_can_answer_is_asked_again_with_a_doubling_timeout_then_given_up() {
    let mut net = Net::pair(Config::default());
    let author = keys(9).public();
    net.e(0).handle_frame(1, have_range(author, 1, 1), T0);
    let asks = net.wants_sent_until(0, 40_000);
    assert_eq!(asks, vec![(0, 1), (1_000, 1), (3_000, 1), (7_000, 1)]);
    assert_eq!(
        net.e(0).outstanding_wants(),
        0,
        "given up after the fourth attempt"
    );
    // A later announcement asks again.
    net.e(0)
        .handle_frame(1, have_range(author, 1, 1), T0 + 40_000);
    net.collect();
    assert!(!net.asked().is_empty());
}

#[test]
fn a_peer_that_answers_some_wants_cannot_keep_the_others_pending() {
    // Frames of eight envelopes are full, so a peer can make real progress cheaply.
    let config = Config::builder().max_messages_per_frame(8).build().unwrap();
    let mut net = Net::star(config);
    let (a, k) = (keys(9), keys(10));
    // Peer 1 announces 100 of a's ids and 100 of k's; peer 2 announces a's too.
    let mut announce = have_range(a.public(), 1, 100);
    announce.have.push(Digest {
        author: k.public(),
        ranges: RangeSet::from_range(1, 100),
    });
    net.e(0).handle_frame(1, announce, T0);
    net.e(0).handle_frame(2, have_range(a.public(), 1, 100), T0);
    net.discard();
    // Every 200 ms, peer 1 delivers a full frame of k's messages, and one of a's.
    let mut asked_of_2 = None;
    for step in 1..=10u64 {
        let now = T0 + step * 200;
        net.now = now;
        let mut envelopes: Vec<Envelope> = (8 * step - 7..=8 * step)
            .map(|s| sign(&k, s, now, b"k"))
            .collect();
        envelopes.push(sign(&a, step, now, b"a"));
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
fn announcements_beyond_the_want_budget_are_asked_as_room_frees_up() {
    let config = Config::builder()
        .max_want_ranges_per_frame(2)
        .build()
        .unwrap();
    let mut net = Net::pair(config);
    let authors: Vec<Keypair> = (20..25u8).map(keys).collect();
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
                sign(keys, 1, T0, b"x")
            })
            .collect();
        net.e(0).handle_frame(1, push(answer), T0);
        net.collect();
    }
    assert_eq!(net.got(0).len(), 5);
}

#[test]
fn a_dropped_frame_is_announced_again_in_the_next_round() {
    let mut net = Net::pair(Config::default());
    // The driver could not send it (queue full): the engine is told. Until the queue
    // drains, the peer's wants are not answered: nothing is sent for it to drop again.
    let (id, (from, to)) = net.publish_dropped(b"lost once");
    assert_eq!((from, to), (0, 1));
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
fn what_a_congested_peer_wants_is_announced_back_when_its_queue_drains() {
    let mut net = Net::pair(Config::default());
    let (id, _) = net.publish_dropped(b"x");
    net.e(0).gossip(T0);
    net.discard(); // the round's announcement is lost too
    // Peer 1 asks while node 0 is congested: not answered, remembered.
    let me = net.e(0).public_key();
    net.e(0)
        .handle_frame(1, want(me, RangeSet::from_range(1, u64::MAX)), T0);
    net.collect();
    assert!(net.frames.iter().all(|(_, _, f)| f.messages.is_empty()));
    net.frames.clear();
    net.e(0).peer_drained(&1);
    net.pump();
    // Announced again by tag, which waits the graft timer for a pushed copy first.
    net.advance(100);
    net.pump();
    assert_eq!(net.got(1), vec![id]);
}

/// Complete digests beyond the resync budget do not wipe the record of what the peer was
/// sent: a peer repeating `{complete, want everything}` draws the history once.
#[test]
fn repeated_complete_digests_do_not_draw_the_history_again() {
    let mut v = engine_with(&[1]);
    for k in 0..5u8 {
        v.publish(vec![k], T0).unwrap();
    }
    let me = v.public_key();
    let mut sent = 0;
    let mut count = |v: &mut Engine<u8>| {
        while let Some(output) = v.poll_output() {
            if let Output::Send { peer: 1, frame } = output {
                sent += frame.messages.len();
            }
        }
    };
    count(&mut v);
    for k in 0..10 {
        let frame = Frame {
            complete: true,
            want: vec![Digest {
                author: me,
                ranges: RangeSet::from_range(1, u64::MAX),
            }],
            ..Frame::default()
        };
        v.handle_frame(1, frame, T0 + k);
        count(&mut v);
    }
    assert_eq!(
        sent, 5,
        "each envelope sent once within the resync interval"
    );
    v.check_invariants();
}
