//! Whose turn a want is: liars that announce and never answer, reconnect, or forge cannot
//! keep an id from an honest peer that has it.

use crate::harness::*;
use secure_gossip::engine::{Engine, Output};
use secure_gossip::{Config, Envelope, Frame, Keypair, MessageId, Validation};

/// A new author's message announced by an honest lazy peer (its announcement waits for the
/// graft timer) while an eager peer pushes a forged out-of-window copy, announces the id and
/// answers its want with the forgery again: the id is wanted of the honest peer and arrives.
#[test]
fn a_forging_eager_peer_cannot_hide_a_new_authors_message_announced_lazily() {
    const HONEST: u8 = 1;
    const FORGER: u8 = 2;
    let mut v = engine_with(&[HONEST, FORGER]);
    let (real, id, announce) = new_authors_message(T0);
    let forged = sign(&new_author(), 1, 0, b"forged");
    let prune = Frame {
        prune: true,
        ..Frame::default()
    };
    v.handle_frame(HONEST, prune, T0);
    drain(&mut v, &id);

    v.handle_frame(HONEST, announce.clone(), T0 + 1);
    v.handle_frame(FORGER, push(vec![forged.clone()]), T0 + 2);
    v.handle_frame(FORGER, announce, T0 + 3);
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
        asked_honest = next_timeout(&mut v, &mut now, &id).contains(&HONEST);
    }
    assert!(asked_honest, "the honest announcer was never asked");
    v.handle_frame(HONEST, push(vec![real]), now);
    let (_, delivered) = drain(&mut v, &id);
    assert_eq!(delivered, vec![id]);
    v.check_invariants();
}

/// Two peers announce a new author's id and never answer; an honest peer that announced it
/// too has more strikes than they do (it failed earlier wants). The id still reaches the
/// honest peer after one want timeout per liar: each peer has its turn before any has a
/// second.
#[test]
fn peers_that_never_answer_cannot_pass_a_want_between_them() {
    let (mut v, mut now, real, id, _, mut asked) = announced_after_strikes();
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
    let (mut v, mut now, real, id, announce, mut asked) = announced_after_strikes();
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
/// there from the start, leave before their deadlines and reconnect. A liar that leaves with
/// a want outstanding has failed (`record.rs`), and the want it left goes to the other liar,
/// which is not proven, so it is hedged to the honest peer at once (before the hedges: the
/// honest peer was asked only after each liar's first turn).
#[test]
fn liars_that_reconnect_cannot_starve_an_honest_peer_that_came_late() {
    let mut v = engine_with(&[LIAR_A, LIAR_B]);
    let (real, id, announce) = new_authors_message(T0);
    for peer in [LIAR_A, LIAR_B] {
        v.handle_frame(peer, announce.clone(), T0);
    }
    let mut asked = drain(&mut v, &id).0;
    assert_eq!(asked, vec![LIAR_A]);

    // The honest peer comes 10 ms into the pull, announces it, and fails a want of its own.
    v.connect(HONEST, T0 + 10);
    v.handle_frame(HONEST, announce.clone(), T0 + 10);
    v.handle_frame(HONEST, unanswered().1, T0 + 10);
    asked.extend(drain(&mut v, &id).0);

    // Liar A leaves just before its deadline (the want goes to liar B, hedged to the
    // honest peer) and comes back.
    v.disconnect(&LIAR_A, T0 + 990);
    asked.extend(drain(&mut v, &id).0);
    assert_eq!(
        asked,
        [LIAR_A, LIAR_B, HONEST],
        "hedged to the honest peer at once"
    );
    v.connect(LIAR_A, T0 + 990);
    v.handle_frame(LIAR_A, announce.clone(), T0 + 990);
    asked.extend(drain(&mut v, &id).0);
    // The honest peer's own want times out: a strike.
    v.handle_timeout(T0 + 1_010);
    asked.extend(drain(&mut v, &id).0);
    // Liar B leaves just before its deadline.
    v.disconnect(&LIAR_B, T0 + 1_980);
    asked.extend(drain(&mut v, &id).0);
    honest_answers(&mut v, &asked[..3], real, id, T0 + 1_990);
}

/// Found by the third attack review: a liar announces every id of an author ([1, u64::MAX])
/// and never answers. Once its want has missed a deadline, an honest peer's later
/// announcement of one of the ids makes the want due at once, so the id is asked of the
/// announcer within one `want_timeout` of its announcement, not after the liar's doubled
/// timeouts (before: at the liar's next deadline, 1.5 s later here, and 2, 4, 8 s later for
/// ids announced after that).
#[test]
fn a_liar_past_its_deadline_cannot_keep_ids_an_honest_peer_announces() {
    const LIAR: u8 = 1;
    const HONEST: u8 = 2;
    let mut v = engine_with(&[LIAR, HONEST]);
    let author = new_author();
    let mut now = T0;
    for k in 1..=4u64 {
        let real = sign(&author, k, T0, b"real");
        let id = real.id();
        if k == 1 {
            v.handle_frame(LIAR, have_range(author.public(), 1, u64::MAX), now);
            assert_eq!(
                drain(&mut v, &id).0,
                vec![LIAR],
                "all of it wanted of the liar"
            );
            // Its first deadline passes: no one else has the ids, they go back to it.
            let mut again = Vec::new();
            while again.is_empty() && now < T0 + 5_000 {
                again = next_timeout(&mut v, &mut now, &id);
            }
            assert_eq!(again, vec![LIAR], "asked of the liar again at {now}");
        }
        now += 500;
        let announced = now;
        v.handle_frame(HONEST, have_range(author.public(), k, k), now);
        let mut asked = drain(&mut v, &id).0;
        while !asked.contains(&HONEST) && now < announced + 60_000 {
            asked.extend(next_timeout(&mut v, &mut now, &id));
        }
        assert!(
            now <= announced + 1_000,
            "message {k}: asked of the honest announcer {} ms after its announcement",
            now - announced
        );
        v.handle_frame(HONEST, push(vec![real]), now);
        assert_eq!(drain(&mut v, &id).1, vec![id], "message {k}");
        v.check_invariants();
    }
    assert!(v.stats().wants_hurried >= 1);
}

/// Track records: ids wanted of a peer that never delivered anything move at once to a
/// peer that has delivered something first (proven) when it announces them, and the liars'
/// wants then go to proven peers before unknown ones, whatever their age. Eight liars that
/// announce an author's every id and never answer delay its messages by no want timeout.
#[test]
fn a_proven_announcer_takes_ids_from_liars_at_once() {
    const LATE: u8 = 9;
    let (mut v, author, first) = eight_liars_of_a_new_author();
    assert_eq!(drain(&mut v, &first).0, vec![1], "asked of the first liar");
    // An honest peer connects after the liars and delivers a message of another author
    // first: it is proven.
    let now = T0 + 100;
    v.connect(LATE, now);
    v.handle_frame(LATE, push(vec![sign(&keys(42), 1, now, b"other")]), now);
    drain(&mut v, &first);
    // It announces the author's messages: they are asked of it at once.
    v.handle_frame(LATE, have_range(author.public(), 1, 3), now);
    assert_eq!(
        drain(&mut v, &first).0,
        vec![LATE],
        "asked of the proven peer at once"
    );
    let messages: Vec<Envelope> = (1..=3).map(|s| sign(&author, s, now, b"m")).collect();
    v.handle_frame(LATE, push(messages), now + 10);
    assert_eq!(
        drain(&mut v, &first).1.len(),
        3,
        "delivered within a round trip"
    );
    v.check_invariants();
}

/// Hedges: eight liars announce an author's every id and never answer; a peer that
/// connected after them announces the ids but has delivered nothing yet (unknown, as the
/// liars). At the first liar's deadline the want goes to the next liar and is hedged to the
/// others that have the ids, the late peer among them: it is asked after one want timeout,
/// not eight.
#[test]
fn at_a_liars_deadline_the_want_is_hedged_to_the_late_honest_peer() {
    const LATE: u8 = 9;
    let (mut v, author, first) = eight_liars_of_a_new_author();
    assert_eq!(drain(&mut v, &first).0, vec![1]);
    v.connect(LATE, T0 + 100);
    v.handle_frame(LATE, have_range(author.public(), 1, 3), T0 + 100);
    assert!(
        drain(&mut v, &first).0.is_empty(),
        "wanted of the first liar still"
    );
    let mut now = T0 + 100;
    let mut asked = Vec::new();
    let last = MessageId {
        sequence: 3,
        ..first
    };
    while now < T0 + 1_000 {
        now = v.poll_timeout().unwrap_or(now + 100).max(now + 1);
        v.handle_timeout(now);
        asked.extend(drain(&mut v, &last).0);
    }
    assert_eq!(now, T0 + 1_000, "the first deadline");
    assert!(
        asked.contains(&LATE),
        "the late peer was probed (for the highest id it has): {asked:?}"
    );
    assert!(v.stats().wants_hedged > 0);
    v.handle_frame(
        LATE,
        push((1..=3).map(|s| sign(&author, s, T0, b"m")).collect()),
        now,
    );
    assert_eq!(drain(&mut v, &first).1.len(), 3);
    v.check_invariants();
}

/// Peers 1 to 8 announce every id of the new author (`[1, u64::MAX]`) at `T0`: the engine,
/// the author, and its first message's id.
fn eight_liars_of_a_new_author() -> (Engine<u8>, Keypair, MessageId) {
    let mut v = engine_with(&[1, 2, 3, 4, 5, 6, 7, 8]);
    let author = new_author();
    for liar in 1..=8 {
        v.handle_frame(liar, have_range(author.public(), 1, u64::MAX), T0);
    }
    let first = sign(&author, 1, T0, b"first").id();
    (v, author, first)
}

/// With validation on, a peer is proven when the application accepts its message, and it
/// then claims the ids it announced that are wanted of liars (found by review: the claim ran
/// only inside a frame, where a held message proves nothing yet).
#[test]
fn with_validation_an_accepted_message_proves_its_sender_and_it_claims_the_wants() {
    const LATE: u8 = 9;
    let config = Config::builder().validate_messages(true).build().unwrap();
    let mut v: Engine<u8> = Engine::new(keys(1), config, T0);
    for liar in 1..=8 {
        v.connect(liar, T0);
    }
    let author = new_author();
    for liar in 1..=8 {
        v.handle_frame(liar, have_range(author.public(), 1, u64::MAX), T0);
    }
    let first = sign(&author, 1, T0, b"first").id();
    assert_eq!(drain(&mut v, &first).0, vec![1]);
    let now = T0 + 100;
    v.connect(LATE, now);
    v.handle_frame(LATE, have_range(author.public(), 1, 3), now);
    let other = sign(&keys(42), 1, now, b"other");
    v.handle_frame(LATE, push(vec![other.clone()]), now);
    assert!(
        drain(&mut v, &first).0.is_empty(),
        "held: proves nothing yet"
    );
    assert!(v.report_validation(&other.id(), Validation::Accept, now));
    assert_eq!(drain(&mut v, &first).0, vec![LATE], "claimed on acceptance");
    v.check_invariants();
}

/// Found by measuring the simulator's liars (most of what honest nodes sent them was wants
/// and probes): eight liars announce an author's every id and never answer. A liar that
/// lets its probe lapse is not probed again for a minute; and in each round of turns after
/// the first, a failed liar is given twice as long as in the last (up to 16 want timeouts),
/// so the ids are asked about ever more rarely: 31 wants in the first two minutes and 31 in
/// the next eight, against 127 and then one a second for as long as the liars stay. An
/// honest peer that comes later and announces the ids, with no record yet, is asked within
/// a want timeout (a liar waited on longer gives the ids up once it had one).
#[test]
fn liars_are_probed_once_and_asked_ever_more_rarely() {
    const LATE: u8 = 9;
    let (mut v, author, first) = eight_liars_of_a_new_author();
    let mut wants = [count_wants(&mut v), 0];
    let mut now = T0;
    while now < T0 + 600_000 {
        now = v.poll_timeout().unwrap_or(now + 100).max(now + 1);
        v.handle_timeout(now);
        wants[usize::from(now > T0 + 120_000)] += count_wants(&mut v);
    }
    assert!(
        v.stats().wants_hedged <= 7 * 10,
        "each liar probed once a minute at most: {}",
        v.stats().wants_hedged
    );
    assert!(wants[0] <= 40, "{wants:?}: in the first two minutes");
    assert!(wants[1] <= 45, "{wants:?}: in the next eight");
    v.connect(LATE, now);
    v.handle_frame(LATE, have_range(author.public(), 1, 3), now);
    let announced = now;
    let mut asked = drain(&mut v, &first).0;
    while !asked.contains(&LATE) && now < announced + 5_000 {
        asked.extend(next_timeout(&mut v, &mut now, &first));
    }
    assert!(
        asked.contains(&LATE) && now <= announced + 1_000,
        "asked within a want timeout: {asked:?} at {}",
        now - announced
    );
    v.check_invariants();
}

/// Drains `engine`'s outputs: how many wants (digests) were sent.
fn count_wants(engine: &mut Engine<u8>) -> usize {
    let mut wants = 0;
    while let Some(output) = engine.poll_output() {
        if let Output::Send { frame, .. } = output {
            wants += frame.want.len();
        }
    }
    wants
}

/// A liar that ignores its probe is not probed again for a minute, even when an honest peer
/// delivers the ids meanwhile: the next author the liars claim draws no probes of them
/// (before, liars that were only probed were probed again at every new author's first
/// reroute).
#[test]
fn a_liar_that_ignores_its_probe_is_probed_no_more() {
    const HONEST: u8 = 9;
    let (mut v, author, first) = eight_liars_of_a_new_author();
    drain(&mut v, &first);
    let mut now = T0;
    // The first liar's deadline: the want goes to the second, hedged to the six others.
    while v.stats().wants_hedged == 0 {
        next_timeout(&mut v, &mut now, &first);
    }
    let probed = v.stats().wants_hedged;
    assert_eq!(probed, 6);
    // An honest peer delivers the author's message at once: the probed id is known, but
    // none of the six answered it.
    v.connect(HONEST, now);
    v.handle_frame(HONEST, push(vec![sign(&author, 1, now, b"m")]), now + 1);
    drain(&mut v, &first);
    let end = now + 1_500;
    while now < end {
        next_timeout(&mut v, &mut now, &first);
    }
    // A second author, claimed by every liar: its first reroute probes none of them.
    let other = keys(43);
    for liar in 1..=8 {
        v.handle_frame(liar, have_range(other.public(), 1, u64::MAX), now);
    }
    let second = sign(&other, 1, now, b"second").id();
    let end = now + 3_000;
    while now < end {
        next_timeout(&mut v, &mut now, &second);
    }
    assert_eq!(v.stats().wants_hedged, probed, "no liar probed again");
    v.check_invariants();
}

/// A probe is answered by the probed peer's copy of the id, also when the id reached this
/// node from another peer first (the copy is a duplicate then): that peer is probed again
/// for the next author; the liars probed beside it, which sent nothing, are not (for a
/// minute). A lapsed probe changes no standing.
#[test]
fn a_probe_answered_with_a_duplicate_is_answered() {
    const LATE: u8 = 9;
    const OTHER: u8 = 10;
    let (mut v, author, first) = eight_liars_of_a_new_author();
    v.connect(LATE, T0 + 100);
    v.connect(OTHER, T0 + 100);
    v.handle_frame(LATE, have_range(author.public(), 1, 1), T0 + 100);
    drain(&mut v, &first);
    let mut now = T0 + 100;
    let mut asked = Vec::new();
    while now < T0 + 1_000 {
        asked.extend(next_timeout(&mut v, &mut now, &first));
    }
    assert!(asked.contains(&LATE), "probed: {asked:?}");
    let message = sign(&author, 1, T0, b"m");
    v.handle_frame(OTHER, push(vec![message.clone()]), now + 5);
    v.handle_frame(LATE, push(vec![message]), now + 10);
    while now < T0 + 2_500 {
        next_timeout(&mut v, &mut now, &first);
    }
    assert!(!v.has_failed(&LATE));
    assert!(!v.has_failed(&8), "a lapsed probe is no failure");
    // A second author that the liars and the late peer announce: at the first reroute only
    // the late peer is probed.
    let other = keys(43);
    let second = sign(&other, 1, now, b"second").id();
    for peer in (1..=8).chain([LATE]) {
        v.handle_frame(peer, have_range(other.public(), 1, 1), now);
    }
    drain(&mut v, &second);
    let hedged = v.stats().wants_hedged;
    let end = now + 1_500;
    let mut asked = Vec::new();
    while now < end {
        asked.extend(next_timeout(&mut v, &mut now, &second));
    }
    assert_eq!(v.stats().wants_hedged, hedged + 1, "{asked:?}");
    assert!(asked.contains(&LATE), "{asked:?}");
    v.check_invariants();
}
