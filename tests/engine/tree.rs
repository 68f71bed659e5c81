//! The broadcast tree: eager links pruned on duplicates, lazy announcers grafted.

use crate::harness::*;
use secure_gossip::engine::{Engine, Millis, Output, Timer};
use secure_gossip::{Config, Frame, MessageId};
use std::time::Duration;

#[test]
fn a_duplicate_over_an_eager_link_prunes_it_and_later_messages_are_only_announced_there() {
    let mut net = Net::linked(3, Config::default(), &[(0, 1), (0, 2), (1, 2)]);
    // Past the connection's grace, when a duplicate means a redundant path.
    net.shape_tree(b"first");
    let now = net.now;
    let pruned = net.e(1).stats().prunes + net.e(2).stats().prunes;
    assert!(
        pruned >= 1,
        "the 1-2 link carried a duplicate and was pruned"
    );
    // The next message crosses 1-2 as an announcement only, within `announce_delay`.
    let second = net.e(0).publish(b"second".to_vec(), now).unwrap();
    step(&mut net); // 0 pushes to 1 and 2
    let pushed = frames_across(&net, 1, 2);
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
    let across = frames_across(&net, 1, 2);
    assert!(
        across.iter().any(
            |f| f.have.iter().any(|d| d.ranges.contains(second.sequence))
                || f.have_tags.contains(&second.tag())
        ),
        "announced over the lazy link (by tag: both read tags)"
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
    let mut net = Net::linked(3, Config::default(), &[(0, 1), (1, 2), (0, 2)]);
    net.shape_tree(b"shape the tree");
    let now = net.now;
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
    net.discard();
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
    let mut net = Net::star(Config::default());
    net.past_the_grace();
    net.frames.clear();
    let author = keys(9);
    let m = sign(&author, 1, net.now, b"m");
    let now = net.now;
    // Peer 1 pushes it first; peer 2's copy is a duplicate over an eager link: pruned.
    net.e(0).handle_frame(1, push(vec![m.clone()]), now);
    net.e(0).handle_frame(2, push(vec![m]), now);
    assert_eq!(net.e(0).stats().prunes, 1);
    net.discard();
    // Peer 1 (eager) now only announces the next message: it is wanted from it at once.
    // Peer 2 (lazy) announces it too: deferred.
    let next = have_range(author.public(), 2, 2);
    net.e(0).handle_frame(1, next.clone(), now);
    net.e(0).handle_frame(2, next, now);
    net.discard();
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

/// The tree's timers by name: a lazy peer's announcement arms the graft timer for
/// `graft_timeout` later; at that time the announcer is asked for the id and grafted, and the
/// timer is disarmed.
#[test]
fn an_announcement_over_a_lazy_link_arms_the_graft_timer_for_the_graft_timeout() {
    let config = Config::builder()
        .graft_timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let mut v = pruned_by_peer_1(config);
    assert_eq!(v.timer(Timer::Graft), None, "nothing deferred yet");
    // Peer 1 pruned this node, so its link is lazy here: its announcement waits.
    let author = new_author().public();
    let id = MessageId {
        author,
        sequence: 1,
    };
    v.handle_frame(1, have_range(author, 1, 1), T0 + 5);
    assert_eq!(v.timer(Timer::Graft), Some(T0 + 155));
    assert!(
        drain(&mut v, &id).0.is_empty(),
        "not wanted before the timer"
    );
    v.handle_timeout(T0 + 154);
    assert_eq!(v.timer(Timer::Graft), Some(T0 + 155), "not due yet");
    v.handle_timeout(T0 + 155);
    assert_eq!(v.timer(Timer::Graft), None, "fired and disarmed");
    let sent = frames_to(&mut v, 1);
    assert!(sent.iter().any(|f| f.graft), "the announcer is grafted");
    assert!(
        sent.iter().any(|f| f
            .want
            .iter()
            .any(|d| d.author == author && d.ranges.contains(1))),
        "and asked for the id"
    );
    assert_eq!(v.stats().grafts, 1);
}

/// A lazy peer that claims every id of an author (a liar's `[1, u64::MAX]`, or a long
/// catch-up) is asked for them at the graft timer but not grafted: a graft is a tree repair
/// of a few messages, and a grafted liar would be pushed every new message (the simulator's
/// liar rows, `docs/simulation.md`).
#[test]
fn a_claim_of_everything_is_wanted_but_does_not_graft_its_announcer() {
    let mut v = pruned_by_peer_1(Config::default());
    let author = new_author().public();
    v.handle_frame(1, have_range(author, 1, u64::MAX), T0 + 5);
    v.handle_timeout(T0 + 105);
    let sent = frames_to(&mut v, 1);
    assert!(sent.iter().all(|f| !f.graft), "not grafted");
    assert!(
        sent.iter()
            .any(|f| f.want.iter().any(|d| d.author == author)),
        "but asked"
    );
    assert_eq!(v.stats().grafts, 0);
}

/// Found by the third attack review (prune injection): a peer that writes its own fresh
/// envelopes to two neighbours at once makes their copies to each other duplicates. The
/// first injection may prune the honest link; once the honest neighbour had to be grafted
/// for a message the injector withheld, the injector is suspect and later injections prune
/// nothing; and the side that received the graft keeps the link as well.
#[test]
fn an_injector_that_withholds_cannot_keep_pruning_honest_links() {
    let inject = |v: &mut Engine<u8>, now: Millis, seed: u8| inject(v, INJECTOR, now, seed, false);
    let mut v = engine_with(&[INJECTOR, HONEST]);
    let mut now = T0 + 1_001; // past every link's grace
    assert!(
        inject(&mut v, now, 80),
        "the first injection prunes the honest link"
    );
    now = withhold(&mut v, now, 81, false);
    assert_eq!(v.stats().grafts, 1);
    // Later injections, past the graft's grace: no prune while the injector is suspect.
    for (k, seed) in (82..86).enumerate() {
        now += 1_500;
        assert!(
            !inject(&mut v, now, seed),
            "injection {k} pruned the honest link again"
        );
    }
    // The side that received a graft keeps the link too: for `want_timeout` after one graft,
    // for a minute after a second within the minute (the repair was undone once already).
    let mut w = engine_with(&[INJECTOR, HONEST]);
    let graft = || Frame {
        graft: true,
        ..Frame::default()
    };
    w.handle_frame(HONEST, graft(), T0 + 1_001);
    assert!(
        !inject(&mut w, T0 + 1_500, 90),
        "pruned right after the peer grafted it"
    );
    w.handle_frame(HONEST, graft(), T0 + 3_000);
    for (k, seed) in (91..95).enumerate() {
        assert!(
            !inject(&mut w, T0 + 3_000 + 10_000 * (k as u64 + 1), seed),
            "injection {k} pruned a link the peer grafted twice in a minute"
        );
    }
    v.check_invariants();
    w.check_invariants();
}

/// A peer that sets `graft` on its own frames (which gives its link grace, so it is never
/// suspect) prunes the same honest repair at most twice a minute: a link grafted a second time
/// within a minute keeps its grace for the minute. A suspect peer that reconnects is still
/// suspect.
#[test]
fn an_injector_that_grafts_itself_or_reconnects_prunes_a_repair_at_most_twice_a_minute() {
    let inject = |v: &mut Engine<u8>, now: Millis, seed: u8, flag: bool| {
        inject(v, INJECTOR, now, seed, flag)
    };
    let withheld = |v: &mut Engine<u8>, now: Millis, seed: u8| withhold(v, now, seed, false);
    let mut v = engine_with(&[INJECTOR, HONEST]);
    let mut now = T0 + 1_001; // past every link's grace
    let mut prunes = 0;
    for cycle in 0..20u8 {
        if inject(&mut v, now, 80 + cycle, true) {
            prunes += 1;
            now = withheld(&mut v, now, 120 + cycle);
        }
        now += 1_500; // past a first graft's grace
    }
    assert!(now < T0 + 60_000);
    assert_eq!(
        prunes, 2,
        "the honest repair was pruned {prunes} times in a minute"
    );
    // Suspicion outlives a reconnect.
    let mut w = engine_with(&[INJECTOR, HONEST]);
    let mut now = T0 + 1_001;
    assert!(inject(&mut w, now, 60, false), "the first injection prunes");
    now = withheld(&mut w, now, 61);
    w.disconnect(&INJECTOR, now);
    w.connect(INJECTOR, now);
    while w.poll_output().is_some() {}
    now += 1_500;
    assert!(
        !inject(&mut w, now, 62, false),
        "an injector that reconnected pruned the honest link again"
    );
    v.check_invariants();
    w.check_invariants();
}

/// An injector that pushes the message it withheld once the victim grafted another peer for
/// it (which lifts its suspicion: an honest upstream on a slower path does the same) still
/// prunes the same honest repair at most twice a minute.
#[test]
fn an_injector_that_sends_what_it_withheld_late_prunes_a_repair_at_most_twice_a_minute() {
    let mut v = engine_with(&[INJECTOR, HONEST]);
    let mut now = T0 + 1_001; // past every link's grace
    let mut prunes = 0;
    for cycle in 0..20u8 {
        if inject(&mut v, INJECTOR, now, 80 + cycle, false) {
            prunes += 1;
            // Withheld, grafted from the honest peer; then the injector pushes it late.
            now = withhold(&mut v, now, 120 + cycle, true);
        }
        now += 1_500; // past a first graft's grace
    }
    assert!(now < T0 + 60_000);
    assert_eq!(
        prunes, 2,
        "the honest repair was pruned {prunes} times in a minute"
    );
    v.check_invariants();
}

/// The end that is told of a graft: its first grace is `want_timeout`, so one injection
/// after it may prune there; once that end has to graft the link itself within the minute
/// (grafts by either end count together), the link is kept for the minute on it.
#[test]
fn the_end_told_of_a_graft_keeps_the_link_for_the_minute_after_a_graft_either_way() {
    let mut w = engine_with(&[INJECTOR, HONEST]);
    let mut now = T0 + 1_001;
    let graft = Frame {
        graft: true,
        ..Frame::default()
    };
    w.handle_frame(HONEST, graft, now); // the honest end grafted this link
    now += 1_500; // past the first graft's grace
    assert!(
        inject(&mut w, INJECTOR, now, 70, false),
        "one injection may prune here"
    );
    // A message the injector withholds: this end grafts the honest peer in turn.
    now = withhold(&mut w, now, 71, false);
    // A fresh injector (not suspect: it connected after the graft) tries again.
    const FRESH: u8 = 3;
    w.connect(FRESH, now);
    while w.poll_output().is_some() {}
    for (k, seed) in (72..80).enumerate() {
        now += 5_000;
        assert!(
            !inject(&mut w, FRESH, now, seed, false),
            "injection {k} pruned a link grafted by both ends within the minute"
        );
    }
    w.check_invariants();
}

/// The injector and the honest neighbour of the prune-injection tests.
const INJECTOR: u8 = 1;
const HONEST: u8 = 2;

/// `from` pushes a fresh envelope (key `seed`; `graft` set on its frame) and the honest peer
/// pushes the same one right after: whether `v` then sent the honest peer `prune`.
fn inject(v: &mut Engine<u8>, from: u8, now: Millis, seed: u8, graft: bool) -> bool {
    let x = sign(&keys(seed), 1, now, b"injected");
    let mut frame = push(vec![x.clone()]);
    frame.graft = graft;
    v.handle_frame(from, frame, now);
    v.handle_frame(HONEST, push(vec![x]), now);
    sent_prune(v, HONEST)
}

/// An honest message (key `seed`) that the injector withholds: the honest peer announces it,
/// `v` grafts the honest peer at the graft timer and gets it pushed; `late`: the injector
/// pushes it too, 10 ms after. Returns the graft's time.
fn withhold(v: &mut Engine<u8>, now: Millis, seed: u8, late: bool) -> Millis {
    let honest = sign(&keys(seed), 1, now, b"honest");
    v.handle_frame(HONEST, have_range(*honest.author(), 1, 1), now);
    drain(v, &honest.id());
    let at = v.timer(Timer::Graft).expect("deferred");
    v.handle_timeout(at);
    v.handle_frame(HONEST, push(vec![honest.clone()]), at);
    if late {
        v.handle_frame(INJECTOR, push(vec![honest.clone()]), at + 10);
    }
    drain(v, &honest.id());
    at
}

/// Drains `v`'s outputs: whether a frame to `peer` set `prune`.
fn sent_prune(v: &mut Engine<u8>, peer: u8) -> bool {
    let mut pruned = false;
    while let Some(output) = v.poll_output() {
        if let Output::Send { peer: to, frame } = output
            && to == peer
        {
            pruned |= frame.prune;
        }
    }
    pruned
}

#[test]
fn a_lazy_link_that_breaks_and_comes_back_is_lazy_again_an_eager_one_eager() {
    let mut net = Net::linked(3, Config::default(), &[(0, 1), (0, 2), (1, 2)]);
    net.shape_tree(b"first");
    // One of 1 and 2 pruned the other: the 1-2 link is lazy on both ends.
    assert!(net.e(1).stats().prunes + net.e(2).stats().prunes >= 1);
    let now = net.now;
    net.e(1).disconnect(&2, now);
    net.e(2).disconnect(&1, now);
    net.e(1).disconnect(&0, now);
    net.e(0).disconnect(&1, now);
    net.discard();
    // Back a second later: 1 starts the link to 2 lazy and says so; 0 eager, as before.
    let later = now + 1_000;
    net.now = later;
    net.e(1).connect(2, later);
    assert!(sent_prune(net.e(1), 2), "prune sent with the first frame");
    net.e(1).connect(0, later);
    assert!(!sent_prune(net.e(1), 0), "an eager link starts eager");
    // The next message from 0 reaches 2 pushed by 0 and is only announced between 1 and 2.
    net.connect(0, 1);
    net.e(2).connect(1, later);
    net.pump();
    let id = net.e(0).publish(b"second".to_vec(), later).unwrap();
    step(&mut net);
    assert!(
        frames_across(&net, 1, 2)
            .iter()
            .all(|f| f.messages.iter().all(|e| e.id() != id)),
        "not pushed over the link that was lazy"
    );
    net.pump();
    assert_eq!(net.got(1).last(), Some(&id));
    assert_eq!(net.got(2).last(), Some(&id));
    // After the memory ends, a reconnect starts eager again.
    let much_later = later + 61_000;
    net.now = much_later;
    net.e(1).disconnect(&2, much_later);
    net.e(2).disconnect(&1, much_later);
    net.discard();
    net.now = much_later + 60_001;
    let now = net.now;
    net.e(1).connect(2, now);
    assert!(!sent_prune(net.e(1), 2), "forgotten after a minute");
}

#[test]
fn a_push_over_a_link_held_lazy_is_answered_with_prune_again() {
    let mut net = Net::linked(3, Config::default(), &[(0, 1), (0, 2), (1, 2)]);
    net.shape_tree(b"first");
    // 1-2 is lazy at both ends. Say 2 turned its end eager again (it restarted and took a
    // catch-up's copies as first copies): it pushes what 1 already has.
    let now = net.now;
    let id = net.e(0).publish(b"second".to_vec(), now).unwrap();
    net.pump();
    let copy = net.e(1).message(&id).unwrap().clone();
    net.e(1).handle_frame(2, push(vec![copy]), now + 1);
    assert!(
        sent_prune(net.e(1), 2),
        "told again that the link is lazy at this end"
    );
}

/// Peers that read and never send (silent Sybils) are pushed to for their grace and a few
/// messages more; then they are sent `prune` and only announced to (which waits for their
/// first frame: they get nothing more). A peer that sent anything keeps its pushes.
#[test]
fn silent_peers_are_pushed_to_no_longer() {
    const HONEST: u8 = 1;
    const QUIET: u8 = 2; // sent one empty frame, nothing else
    let silent: Vec<u8> = (3..=12).collect();
    let mut peers = vec![HONEST, QUIET];
    peers.extend(&silent);
    let mut v = engine_with(&peers);
    let mut now = T0 + 1_001; // past every link's grace
    v.handle_frame(QUIET, Frame::default(), now);
    let first = sign(&keys(50), 1, now, b"from the honest peer");
    v.handle_frame(HONEST, push(vec![first]), now);
    let mut pushes = std::collections::BTreeMap::<u8, usize>::new();
    let mut prunes = std::collections::BTreeSet::new();
    while let Some(output) = v.poll_output() {
        if let Output::Send { peer, frame } = output
            && frame.prune
        {
            prunes.insert(peer);
        }
    }
    for k in 0..20u64 {
        now += 100;
        v.publish(format!("message {k}").into_bytes(), now).unwrap();
        v.handle_timeout(now + 50);
        while let Some(output) = v.poll_output() {
            if let Output::Send { peer, frame } = output {
                *pushes.entry(peer).or_default() += frame.messages.len();
                if frame.prune {
                    prunes.insert(peer);
                }
            }
        }
    }
    for peer in [HONEST, QUIET] {
        assert_eq!(pushes[&peer], 20, "peer {peer} got every message pushed");
        assert!(!prunes.contains(&peer));
    }
    for peer in &silent {
        // At most eight messages past the grace (`tree.rs`'s PUSHES_TO_EARN; the first was
        // the honest peer's), then none; most are never pushed to at all, being beyond the
        // two unproven eager links kept.
        let got = pushes.get(peer).copied().unwrap_or(0);
        assert!(got <= 7, "silent peer {peer} got {got}");
        assert!(
            prunes.contains(peer),
            "silent peer {peer} not sent prune: {prunes:?} {pushes:?}"
        );
    }
    let to_silent: usize = silent.iter().filter_map(|p| pushes.get(p)).sum();
    assert!(to_silent <= 7, "{to_silent} pushes to silent peers");
    assert!(v.stats().prunes >= silent.len() as u64);
    // Nor do they keep the node awake: what is queued for their rounds waits for a first
    // frame that never comes, and arms no timer.
    now += 10_000;
    v.handle_timeout(now);
    while v.poll_output().is_some() {}
    assert_eq!(
        v.timer(Timer::Round),
        None,
        "a silent peer arms the round timer"
    );
    v.check_invariants();
}

/// Publishes `count` messages from `now`, 100 ms apart; returns the time after and how many
/// envelopes each peer was pushed, and the peers sent `prune`.
fn publish_and_count(
    v: &mut Engine<u8>,
    count: u64,
    mut now: Millis,
) -> (
    Millis,
    std::collections::BTreeMap<u8, usize>,
    std::collections::BTreeSet<u8>,
) {
    let mut pushes = std::collections::BTreeMap::new();
    let mut prunes = std::collections::BTreeSet::new();
    for k in 0..count {
        now += 100;
        v.publish(format!("at {now} {k}").into_bytes(), now)
            .unwrap();
        v.handle_timeout(now + 50);
        while let Some(output) = v.poll_output() {
            if let Output::Send { peer, frame } = output {
                if !frame.messages.is_empty() {
                    *pushes.entry(peer).or_default() += frame.messages.len();
                }
                if frame.prune {
                    prunes.insert(peer);
                }
            }
        }
    }
    (now, pushes, prunes)
}

#[test]
fn unproven_eager_links_are_capped_and_a_graft_or_a_first_copy_keeps_a_link_eager() {
    // Twenty peers that each sent a frame (so none is silent), one of which delivers first.
    let peers: Vec<u8> = (1..=20).collect();
    let mut v = engine_with(&peers);
    let mut now = T0 + 1_001; // past every link's grace
    for &peer in &peers {
        v.handle_frame(peer, Frame::default(), now);
    }
    let first = sign(&keys(50), 1, now, b"from peer 1");
    v.handle_frame(1, push(vec![first]), now);
    let mut prunes = std::collections::BTreeSet::new();
    while let Some(output) = v.poll_output() {
        if let Output::Send { peer, frame } = output
            && frame.prune
        {
            prunes.insert(peer);
        }
    }
    let (later, pushes, more) = publish_and_count(&mut v, 10, now);
    prunes.extend(more);
    now = later;
    assert_eq!(
        pushes[&1], 10,
        "the peer that delivered first keeps its pushes"
    );
    // Two unproven links stay eager (`tree.rs`'s MAX_PLAIN_EAGER); the rest are announced
    // to and told `prune` at the first message.
    let kept: Vec<u8> = (2..=20).filter(|p| pushes.contains_key(p)).collect();
    assert_eq!(kept.len(), 2, "kept {kept:?}");
    for p in &kept {
        assert_eq!(pushes[p], 10);
        assert!(!prunes.contains(p));
    }
    let trimmed: Vec<u8> = (2..=20).filter(|p| !kept.contains(p)).collect();
    for p in &trimmed {
        assert!(prunes.contains(p), "peer {p} not sent prune");
    }
    // A trimmed peer that needs this node grafts it: it is pushed to again. Of the eleven
    // that do, eight keep their pushes (MAX_CALLED_EAGER), however many graft.
    for p in &trimmed[..11] {
        v.handle_frame(
            *p,
            Frame {
                graft: true,
                ..Frame::default()
            },
            now,
        );
    }
    while v.poll_output().is_some() {}
    now += 1_001; // past the graft's grace
    let (_, pushes, prunes) = publish_and_count(&mut v, 10, now);
    let called: Vec<u8> = trimmed[..11]
        .iter()
        .copied()
        .filter(|p| pushes.get(p) == Some(&10))
        .collect();
    assert_eq!(called.len(), 8, "called {called:?} of {:?}", &trimmed[..11]);
    for p in trimmed[..11].iter().filter(|p| !called.contains(p)) {
        assert!(prunes.contains(p), "peer {p} not sent prune");
        assert_eq!(
            pushes.get(p),
            None,
            "peer {p} beyond the eight was pushed to"
        );
    }
    for p in &trimmed[11..] {
        assert!(!pushes.contains_key(p), "peer {p} never grafted");
    }
    assert_eq!(pushes[&1], 10);
    v.check_invariants();
}

#[test]
fn with_validation_a_link_is_kept_while_its_message_waits_and_proven_only_if_accepted() {
    for verdict in [
        secure_gossip::Validation::Accept,
        secure_gossip::Validation::Reject,
    ] {
        let config = Config::builder().validate_messages(true).build().unwrap();
        let mut v: Engine<u8> = Engine::new(keys(1), config, T0);
        // Peer 1 is the oldest connection: the first plain link to go, were it counted.
        for peer in 1..=5 {
            v.connect(peer, T0 + Millis::from(peer > 1));
        }
        let now = T0 + 1_002; // past every link's grace
        for peer in 1..=5 {
            v.handle_frame(peer, Frame::default(), now);
        }
        let held = sign(&keys(50), 1, now, b"awaits its verdict");
        let id = held.id();
        v.handle_frame(1, push(vec![held]), now);
        while v.poll_output().is_some() {}
        // While its message waits, peer 1 is not counted: it is pushed to, and two of the
        // other four keep their pushes.
        let (now, pushes, _) = publish_and_count(&mut v, 1, now);
        assert_eq!(pushes.get(&1), Some(&1), "{verdict:?}");
        assert_eq!((2..=5).filter(|p| pushes.contains_key(p)).count(), 2);
        v.report_validation(&id, verdict, now);
        while v.poll_output().is_some() {}
        // Accepted, its link is proven; rejected, peer 1 has failed and is the first to go.
        let (_, pushes, prunes) = publish_and_count(&mut v, 3, now);
        match verdict {
            secure_gossip::Validation::Accept => {
                assert_eq!(pushes.get(&1), Some(&3));
                assert!(!prunes.contains(&1));
            }
            _ => {
                assert_eq!(pushes.get(&1), None);
                assert!(prunes.contains(&1));
            }
        }
        v.check_invariants();
    }
}

#[test]
fn a_made_up_announcement_grafts_its_announcer_but_makes_no_eager_link_suspect() {
    const LIAR: u8 = 1;
    const E1: u8 = 2;
    const E2: u8 = 3;
    let mut v = engine_with(&[LIAR, E1, E2]);
    let mut now = T0 + 1_001; // past every link's grace
    for peer in [E1, E2] {
        v.handle_frame(peer, Frame::default(), now);
    }
    // The liar's link is lazy; it announces an id no one has.
    v.handle_frame(
        LIAR,
        Frame {
            prune: true,
            ..Frame::default()
        },
        now,
    );
    let made_up = keys(60);
    v.handle_frame(LIAR, have_range(made_up.public(), 1, 1), now);
    while v.poll_output().is_some() {}
    now += 100; // the graft timeout
    v.handle_timeout(now);
    let mut grafted = false;
    while let Some(output) = v.poll_output() {
        if let Output::Send { peer, frame } = output {
            grafted |= peer == LIAR && frame.graft;
        }
    }
    assert!(grafted, "the announcer is grafted");
    // E1 delivers a message first, E2 pushes it again: a redundant path, pruned as ever
    // (before: every eager link was suspect for a minute after the graft, so nothing was).
    let m = sign(&keys(50), 1, now, b"m");
    v.handle_frame(E1, push(vec![m.clone()]), now + 10);
    v.handle_frame(E2, push(vec![m]), now + 20);
    let mut pruned = false;
    while let Some(output) = v.poll_output() {
        if let Output::Send { peer, frame } = output {
            pruned |= peer == E2 && frame.prune;
        }
    }
    assert!(pruned, "the duplicate's link is pruned");
    v.check_invariants();
}

/// Drains `v`'s outputs: the frames sent to `peer`.
/// An engine with `config` whose peer 1 connected at `T0` and sent `prune`: its link is
/// lazy here, so its announcements wait for the graft timer. Outputs drained.
fn pruned_by_peer_1(config: Config) -> Engine<u8> {
    let mut v: Engine<u8> = Engine::new(keys(1), config, T0);
    v.connect(1, T0);
    let prune = Frame {
        prune: true,
        ..Frame::default()
    };
    v.handle_frame(1, prune, T0);
    while v.poll_output().is_some() {}
    v
}

fn frames_to(v: &mut Engine<u8>, peer: u8) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(output) = v.poll_output() {
        if let Output::Send { peer: to, frame } = output
            && to == peer
        {
            frames.push(frame);
        }
    }
    frames
}

/// Author links (`docs/PROTOCOL.md` §3.8): a graft asks for the authors it wanted; the peer
/// then pushes them whatever prunes for other authors do, until they are named in
/// `prune_authors`; a duplicate over a link held lazy at the grafting end ends that author
/// link alone.
#[test]
fn an_author_link_outlives_prunes_for_other_authors_and_ends_on_its_own_duplicate() {
    let mut v = engine_with(&[1, 2]);
    let mut now = T0 + 2_000; // past the connections' grace
    let prune = Frame {
        prune: true,
        ..Frame::default()
    };
    // Asking: peer 1 holds its link lazy and announces x's message; no push comes.
    let x = keys(7);
    let x1 = sign(&x, 1, now, b"x 1");
    v.handle_frame(1, prune.clone(), now);
    v.handle_frame(1, have_range(x.public(), 1, 1), now);
    frames_to(&mut v, 1);
    now = v.timer(Timer::Graft).expect("deferred");
    v.handle_timeout(now);
    let sent = frames_to(&mut v, 1);
    assert!(
        sent.iter()
            .any(|f| f.graft && f.graft_authors == vec![x.public()]),
        "the graft asks for x's author link: {sent:?}"
    );
    v.handle_frame(1, push(vec![x1]), now + 20);
    // Peer 1 prunes the link for another author's duplicate, and pushes x's next message
    // by the author link (a first copy: the link is eager here again, as any), then prunes
    // again.
    now += 2_000;
    v.handle_frame(1, prune.clone(), now);
    let x2 = sign(&x, 2, now, b"x 2");
    v.handle_frame(1, push(vec![x2.clone()]), now);
    v.handle_frame(1, prune.clone(), now + 1);
    frames_to(&mut v, 1);
    // A duplicate of x over the link held lazy here: only that author link is redundant.
    v.handle_frame(1, push(vec![x2]), now + 2);
    let sent = frames_to(&mut v, 1);
    assert!(
        sent.iter()
            .any(|f| f.prune_authors == vec![x.public()] && !f.prune),
        "x's author link ended alone: {sent:?}"
    );
    // Granting: peer 2 asks for this node's messages, then prunes the link.
    let me = v.public_key();
    let ask = Frame {
        graft: true,
        graft_authors: vec![me],
        ..Frame::default()
    };
    now += 100;
    v.handle_frame(2, ask, now);
    v.handle_frame(2, prune, now + 1);
    frames_to(&mut v, 2);
    v.publish(b"pushed by the author link".to_vec(), now + 2)
        .unwrap();
    assert!(
        frames_to(&mut v, 2).iter().any(|f| !f.messages.is_empty()),
        "pushed whatever the link's role"
    );
    let end = Frame {
        prune_authors: vec![me],
        ..Frame::default()
    };
    v.handle_frame(2, end, now + 3);
    v.publish(b"announced".to_vec(), now + 4).unwrap();
    assert!(
        frames_to(&mut v, 2).iter().all(|f| f.messages.is_empty()),
        "ended by name: announced only"
    );
}
