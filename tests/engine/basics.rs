//! Publishing, rounds, signatures, duplicates and the time window.

use crate::harness::*;
use secure_gossip::{Config, Envelope, MessageId, PublishError, Violation};

#[test]
fn in_manual_mode_publishing_sends_nothing_and_a_round_moves_the_message() {
    let mut net = Net::pair(manual()); // the complete digests of the new connection moved
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
    let mut net = Net::pair(Config::default());
    let author = keys(9);
    let good = sign(&author, 1, T0, b"good");
    let real = sign(&author, 2, T0, b"real");
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
    let mut net = Net::pair(Config::default());
    let author = keys(9);
    let first = sign(&author, 5, T0, b"one");
    net.e(1).handle_frame(0, push(vec![first.clone()]), T0);
    let verified = net.e(1).stats().verified;
    // The same envelope again: a duplicate, never verified.
    net.e(1).handle_frame(0, push(vec![first.clone()]), T0);
    assert_eq!(net.e(1).stats().verified, verified);
    assert_eq!(net.e(1).stats().duplicates, 1);
    // A validly signed, different message with the same id: an equivocation, not delivered.
    let second = sign(&author, 5, T0, b"two");
    net.e(1).handle_frame(0, push(vec![second]), T0);
    net.collect();
    assert_eq!(net.got(1), vec![first.id()]);
    assert_eq!(net.equivocations, vec![(1, first.id())]);
    assert!(net.violations.is_empty());
}

#[test]
fn an_envelope_outside_the_time_window_is_dropped_quietly_and_not_asked_for() {
    let mut net = Net::pair(Config::default());
    let author = keys(9);
    // The author is tracked (refusals are only remembered for authors this node tracks or
    // pulls: of any other, a peer's claims cost nothing).
    let first = sign(&author, 1, T0, b"first");
    net.e(1).handle_frame(0, push(vec![first]), T0);
    net.discard();
    let old = sign(&author, 2, T0 - 2 * 3_600_000, b"old");
    let future = sign(&author, 3, T0 + 3_600_000, b"future");
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
    let have = have_range(author.public(), 2, 3);
    net.e(1).handle_frame(0, have, T0);
    net.collect();
    assert!(net.asked().is_empty());
}

#[test]
fn a_forged_out_of_window_envelope_cannot_censor_the_real_message() {
    // 0 is a forging relay; 2 is the author; 3 is an honest bystander behind 1.
    let mut net = Net::linked(4, Config::default(), &[(0, 1), (1, 2), (1, 3)]);
    // The relay sends a forged envelope with the id author 2 will use next,
    // an out-of-window timestamp and a garbage signature: dropped quietly, unverified.
    let author = keys(3); // node 2's key
    let next = MessageId {
        author: author.public(),
        sequence: net.e(2).stats().published + 1_750_000_000_000_000,
    };
    let mut raw = sign(&keys(66), next.sequence, 0, b"x").encode();
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
fn with_nothing_new_rounds_send_nothing() {
    let mut net = Net::linked(3, Config::default(), &[(0, 1), (1, 2)]);
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
fn an_interval_under_a_millisecond_never_makes_a_zero_length_timer() {
    use secure_gossip::engine::Timer;
    let rounds_only = Config::builder().eager_push(false).build().unwrap();
    let mut net = Net::uniform(2, rounds_only);
    net.connect(0, 1);
    net.pump(); // the digests: each side's first frame is in
    net.e(0)
        .set_gossip_interval(Some(std::time::Duration::from_micros(10)), T0);
    // Something queued for each round.
    net.e(0).publish(b"x".to_vec(), T0).unwrap();
    assert_eq!(net.e(0).timer(Timer::Round), Some(T0 + 1));
    net.e(0).handle_timeout(T0 + 1);
    net.e(0).publish(b"y".to_vec(), T0 + 1).unwrap();
    assert_eq!(net.e(0).timer(Timer::Round), Some(T0 + 2));
}

#[test]
fn an_idle_node_has_no_timer_at_all() {
    let mut net = Net::pair(Config::default());
    assert_eq!(net.e(0).poll_timeout(), None, "connected, nothing new");
    net.e(0).publish(b"one".to_vec(), T0).unwrap();
    net.pump();
    // Once it has gone everywhere and nothing is queued, no timer is left to wake for but
    // the message's expiry.
    let expiry = net.e(0).timer(secure_gossip::engine::Timer::Expiry);
    net.advance(1_000);
    assert_eq!(net.e(0).poll_timeout(), expiry);
    assert_eq!(
        net.e(1).poll_timeout(),
        net.e(1).timer(secure_gossip::engine::Timer::Expiry)
    );
}

/// After a two-hour suspend (the driver's monotonic clock stopped, wall time did not), the
/// time window and this node's own timestamps follow wall time, as the driver tells the
/// engine; deadlines keep to engine time.
#[test]
fn the_window_and_own_timestamps_follow_wall_time_after_a_suspend() {
    let mut v = engine_with(&[1]);
    let hours2 = 2 * 3_600_000;
    let now = T0 + 10;
    v.set_wall_clock(now + hours2, now);
    let author = keys(70);
    let fresh = sign(&author, 2, now + hours2, b"stamped by wall time");
    let stale = sign(&author, 1, now, b"two hours old by wall time");
    v.handle_frame(1, push(vec![stale.clone(), fresh.clone()]), now);
    let (_, delivered) = drain(&mut v, &fresh.id());
    assert_eq!(
        delivered,
        vec![fresh.id()],
        "only the fresh one is in the window"
    );
    assert_eq!(v.stats().too_old, 1);
    let id = v.publish(b"mine".to_vec(), now).unwrap();
    let mine = v.message(&id).expect("stored");
    assert!(
        mine.timestamp() >= now + hours2,
        "own timestamp by wall time"
    );
    // Messages age by wall time: this one expires max_age (1 h) of wall time after it was
    // stamped, which is engine time now + 1 h.
    let expiry = v
        .timer(secure_gossip::engine::Timer::Expiry)
        .expect("armed");
    assert!(expiry <= now + 3_600_000 + 1 && expiry > now, "{expiry}");
    v.check_invariants();
}
