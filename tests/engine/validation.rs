//! Messages held for the application's verdict (`validate_messages`).

use crate::harness::*;
use secure_gossip::engine::Engine;
use secure_gossip::{Config, Validation};

/// Found by review: a held message's author was displaced from the author table while the
/// message waited (its first message left it with no known ids, so no tombstone), and a
/// replay after the verdict was delivered a second time. A held id now counts as the author's
/// activity and is covered by its tombstone.
#[test]
fn a_held_message_whose_author_is_displaced_is_never_delivered_twice() {
    for verdict in [Validation::Accept, Validation::Reject] {
        let config = Config::builder()
            .validate_messages(true)
            .max_tracked_authors(2)
            .build()
            .unwrap();
        let mut v: Engine<u8> = Engine::new(keys(1), config, T0);
        v.connect(1, T0);
        let (a, b) = (keys(50), keys(51));
        let a1 = sign(&a, 1, T0, b"a1");
        let id = a1.id();
        v.handle_frame(1, push(vec![a1.clone()]), T0);
        assert_eq!(drain(&mut v, &id).1, vec![id]);
        // A new author from the same peer takes a's place in the table.
        v.handle_frame(1, push(vec![sign(&b, 1, T0, b"b1")]), T0 + 1);
        drain(&mut v, &id);
        v.report_validation(&id, verdict, T0 + 2);
        drain(&mut v, &id);
        v.check_invariants();
        v.connect(2, T0 + 3);
        v.handle_frame(2, push(vec![a1]), T0 + 3);
        assert!(
            drain(&mut v, &id).1.is_empty(),
            "{verdict:?}: delivered a second time"
        );
        assert!(v.knows(&id));
        v.check_invariants();
    }
}

/// A blocked author's held messages get no verdict, and their ids stay known: unblocking the
/// author never delivers them again.
#[test]
fn a_blocked_authors_held_messages_stay_known() {
    let config = Config::builder().validate_messages(true).build().unwrap();
    let mut v: Engine<u8> = Engine::new(keys(1), config, T0);
    v.connect(1, T0);
    let a = keys(50);
    let a1 = sign(&a, 1, T0, b"a1");
    let id = a1.id();
    v.handle_frame(1, push(vec![a1.clone()]), T0);
    assert_eq!(drain(&mut v, &id).1, vec![id]);
    v.block_author(a.public());
    assert_eq!(v.pending_validations(), 0);
    assert!(!v.report_validation(&id, Validation::Accept, T0 + 1));
    v.allow_author(a.public());
    v.handle_frame(1, push(vec![a1]), T0 + 2);
    assert!(
        drain(&mut v, &id).1.is_empty(),
        "delivered again after unblocking"
    );
    v.check_invariants();
}

/// Validation slots are shared per peer: a peer at its share is paused alone, and a verdict
/// that times out counts against the peer that sent the message.
#[test]
fn a_peer_at_its_validation_share_is_paused_alone_and_timeouts_count_against_it() {
    let config = Config::builder()
        .validate_messages(true)
        .max_pending_validations(8)
        .validation_timeout(std::time::Duration::from_secs(1))
        .build()
        .unwrap();
    let mut v: Engine<u8> = Engine::new(keys(1), config, T0);
    v.connect(1, T0);
    v.connect(2, T0);
    let flood: Vec<_> = (1..=8).map(|s| sign(&keys(60), s, T0, b"slow")).collect();
    v.handle_frame(1, push(flood), T0);
    assert!(v.validation_pauses(&1), "over its share of 4");
    assert!(!v.validation_pauses(&2), "the other peer is read on");
    let honest = sign(&keys(61), 1, T0, b"honest");
    v.handle_frame(2, push(vec![honest.clone()]), T0);
    let (_, delivered) = drain(&mut v, &honest.id());
    assert!(delivered.contains(&honest.id()));
    assert!(v.report_validation(&honest.id(), Validation::Accept, T0 + 1));
    v.handle_timeout(T0 + 1_000);
    assert_eq!(v.pending_validations(), 0);
    assert!(!v.validation_pauses(&1), "timed out: its slots are free");
    let stats = v.stats();
    assert_eq!(stats.validation_timeouts, 8);
    assert_eq!(stats.ignored, 8);
    v.check_invariants();
}

/// Found by the third attack review: messages held from peers that left stayed counted, so
/// fresh peer ids that each sent a frame of undecided messages and left reached the
/// pause-all bound and stopped reading from every peer until the verdicts timed out. Held
/// messages of peers that left are kept up to `max_pending_validations`; the oldest beyond
/// get `Ignore` at once.
#[test]
fn fresh_peers_that_leave_undecided_messages_behind_cannot_pause_everyone() {
    let config = Config::builder()
        .validate_messages(true)
        .max_pending_validations(8)
        .max_messages_per_frame(8)
        .build()
        .unwrap();
    let mut v: Engine<u8> = Engine::new(keys(1), config, T0);
    const HONEST: u8 = 2;
    v.connect(HONEST, T0);
    for (k, sybil) in (10..20u8).enumerate() {
        let now = T0 + k as u64;
        v.connect(sybil, now);
        let throwaway = keys(100 + sybil);
        let frame = push(
            (1..=8)
                .map(|s| sign(&throwaway, s, now, b"undecided"))
                .collect(),
        );
        v.handle_frame(sybil, frame, now);
        v.disconnect(&sybil, now);
        while v.poll_output().is_some() {}
    }
    assert!(
        !v.validation_pauses(&HONEST),
        "{} held: the honest peer is paused",
        v.pending_validations()
    );
    assert!(
        v.pending_validations() <= 8 + 8,
        "{}",
        v.pending_validations()
    );
    v.check_invariants();
}
