//! What is kept: the store, the tracked authors, and authors that restart.

use crate::harness::*;
use secure_gossip::engine::{Engine, Output};
use secure_gossip::{Config, Envelope, Keypair, MessageId};

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
    let mut net = Net::pair(config);
    let a = keys(7);
    let b = keys(8);
    let from_a = sign(&a, 1, T0, b"a");
    let from_b = sign(&b, 1, T0, b"b");
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
    let a2 = sign(&a, 2, T0 + 2, b"a2");
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
fn a_relay_sending_an_author_out_of_order_cannot_make_unseen_ids_known() {
    let config = Config::builder().max_ranges_per_author(4).build().unwrap();
    let mut net = Net::star(config);
    let author = keys(9);
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
fn an_author_that_restarts_often_keeps_being_accepted_as_its_old_runs_age_out() {
    let config = Config::builder()
        .max_ranges_per_author(4)
        .max_age(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let mut net = Net::pair(config);
    let author = keys(9);
    // Twenty runs, four seconds apart (up to four inside the window at once), each starting
    // at the clock.
    for run in 0..20u64 {
        let now = T0 + run * 4_000;
        net.now = now;
        net.e(0).handle_timeout(now);
        let first = now * 1_000;
        let envelopes = (first..first + 3)
            .map(|s| sign(&author, s, now, b"r"))
            .collect();
        net.e(0).handle_frame(1, push(envelopes), now);
        net.collect();
    }
    assert_eq!(net.got(0).len(), 60, "every run accepted");
    assert_eq!(net.e(0).stats().too_fragmented, 0);
}

/// Found by review: imported authors shared this node's own group, which the author table
/// never displaces and the store lets crowd out this node's own messages; imports pushed every
/// peer-introduced author out and then locked the table. Imports are now one group of their
/// own, sharing fairly.
#[test]
fn imports_are_one_fair_group_and_crowd_out_neither_peers_authors_nor_own_messages() {
    let config = Config::builder().max_tracked_authors(10).build().unwrap();
    let mut v: Engine<u8> = Engine::new(keys(1), config, T0);
    v.connect(1, T0);
    for s in 10..15u8 {
        v.handle_frame(1, push(vec![sign(&keys(s), 1, T0, b"honest")]), T0 + 1);
    }
    for _ in 0..9 {
        v.import(sign(&Keypair::generate(), 1, T0, b"imported"), T0 + 2)
            .unwrap();
    }
    let peers_left = (10..15u8)
        .filter(|s| {
            v.message(&MessageId {
                author: keys(*s).public(),
                sequence: 1,
            })
            .is_some()
        })
        .count();
    assert!(peers_left >= 4, "imports displaced {} of 5", 5 - peers_left);
    while v.poll_output().is_some() {}
    let new_author = sign(&keys(30), 1, T0 + 3, b"new honest");
    let id = new_author.id();
    v.handle_frame(1, push(vec![new_author]), T0 + 3);
    assert!(v.knows(&id), "a new author from the peer is never refused");
    v.check_invariants();

    let config = Config::builder().max_stored_messages(20).build().unwrap();
    let mut w: Engine<u8> = Engine::new(keys(1), config, T0);
    let own: Vec<_> = (0..10)
        .map(|i| w.publish(format!("own {i}").into_bytes(), T0 + i).unwrap())
        .collect();
    for _ in 0..20 {
        w.import(sign(&Keypair::generate(), 1, T0 + 20, b"imported"), T0 + 20)
            .unwrap();
    }
    let own_left = own.iter().filter(|id| w.message(id).is_some()).count();
    assert_eq!(own_left, 10, "imports pushed out this node's own messages");
    w.check_invariants();
}

/// A tombstone covers only the ids this node had: a relay that brings an author's newest
/// id alone, then floods fresh authors until that author is forgotten, does not make its
/// earlier ids known (they would never be asked for or accepted again).
#[test]
fn a_tombstone_never_marks_ids_known_that_never_arrived() {
    let config = Config::builder()
        .max_tracked_authors(4)
        .max_ranges_per_peer(64)
        .build()
        .unwrap();
    let mut net = Net::linked(3, config, &[(0, 1), (0, 2)]);
    let x = keys(9);
    let sign = |s: u64| Envelope::sign(&x, s, T0, vec![s as u8]).unwrap();
    // The relay (1) brings X's newest id alone, then fresh authors.
    net.e(0).handle_frame(1, push(vec![sign(5)]), T0);
    for k in 0..6u8 {
        let fresh = Envelope::sign(&keys(100 + k), 1, T0, vec![k]).unwrap();
        net.e(0)
            .handle_frame(1, push(vec![fresh]), T0 + 1 + u64::from(k));
    }
    net.collect();
    assert!(
        net.e(0).knows(&sign(5).id()),
        "the delivered id stays known"
    );
    for s in 1..5 {
        assert!(!net.e(0).knows(&sign(s).id()), "id {s} never arrived");
    }
    // The honest peer's copies of the earlier ids are accepted; the newest is not again.
    net.e(0)
        .handle_frame(2, push((1..=5).map(sign).collect()), T0 + 10);
    net.collect();
    let got: Vec<u64> = net
        .got(0)
        .iter()
        .filter(|id| id.author == x.public())
        .map(|id| id.sequence)
        .collect();
    assert_eq!(got, vec![5, 1, 2, 3, 4]);
    net.e(0).check_invariants();
}
