//! Announcements by tag (`docs/PROTOCOL.md` §3.9): asked after the graft timer, hedged past
//! liars, answered, bounded per peer; peers that do not read tags are announced to as
//! digests, a bounded few per message.

use crate::harness::*;
use secure_gossip::engine::{Engine, Millis, Output};
use secure_gossip::{AuthorFilter, Config, Envelope, Frame};

/// `peer`'s first frame: a complete (empty) digest, reading tags if `reads`, and a prune, so
/// the link is lazy and its announcements wait for the graft timer.
fn lazy_first_frame(v: &mut Engine<u8>, peer: u8, reads: bool) {
    let frame = Frame {
        complete: true,
        reads_tags: reads,
        prune: true,
        ..Frame::default()
    };
    v.handle_frame(peer, frame, T0);
}

fn announce(tags: Vec<u64>) -> Frame {
    Frame {
        have_tags: tags,
        ..Frame::default()
    }
}

/// Every frame `v` sends, by peer.
fn sent(v: &mut Engine<u8>) -> Vec<(u8, Frame)> {
    let mut out = Vec::new();
    while let Some(output) = v.poll_output() {
        if let Output::Send { peer, frame } = output {
            out.push((peer, frame));
        }
    }
    out
}

fn asked_by_tag(sent: &[(u8, Frame)], tag: u64) -> Vec<u8> {
    sent.iter()
        .filter(|(_, f)| f.want_tags.contains(&tag))
        .map(|(p, _)| *p)
        .collect()
}

fn message(seed: u8) -> Envelope {
    sign(&keys(seed), 1, T0, b"by tag")
}

#[test]
fn a_tag_over_a_lazy_link_waits_for_a_push_then_is_asked_with_a_graft() {
    let mut v = engine_with(&[1]);
    lazy_first_frame(&mut v, 1, true);
    sent(&mut v);
    let m = message(7);
    let tag = m.id().tag();
    v.handle_frame(1, announce(vec![tag]), T0 + 10);
    assert!(
        asked_by_tag(&sent(&mut v), tag).is_empty(),
        "waits for a push"
    );
    v.handle_timeout(T0 + 110);
    let frames = sent(&mut v);
    assert_eq!(asked_by_tag(&frames, tag), vec![1]);
    assert!(
        frames.iter().any(|(p, f)| *p == 1 && f.graft),
        "the announcer is grafted"
    );
    v.handle_frame(1, push(vec![m.clone()]), T0 + 150);
    assert!(v.knows(&m.id()));
    // Lazy again: a push before the timer, and nothing is asked.
    let prune = Frame {
        prune: true,
        ..Frame::default()
    };
    v.handle_frame(1, prune, T0 + 160);
    let n = message(8);
    v.handle_frame(1, announce(vec![n.id().tag()]), T0 + 200);
    v.handle_frame(1, push(vec![n]), T0 + 250);
    v.handle_timeout(T0 + 400);
    assert!(sent(&mut v).iter().all(|(_, f)| f.want_tags.is_empty()));
}

#[test]
fn liars_that_announce_a_tag_first_delay_it_by_one_want_timeout() {
    let mut v = liars_and_honest();
    for peer in [LIAR_A, LIAR_B, HONEST] {
        lazy_first_frame(&mut v, peer, true);
    }
    sent(&mut v);
    let m = message(7);
    let tag = m.id().tag();
    v.handle_frame(LIAR_A, announce(vec![tag]), T0);
    v.handle_frame(LIAR_B, announce(vec![tag]), T0 + 1);
    v.handle_frame(HONEST, announce(vec![tag]), T0 + 2);
    v.handle_timeout(T0 + 100);
    assert_eq!(
        asked_by_tag(&sent(&mut v), tag),
        vec![LIAR_A],
        "the first announcer"
    );
    // Its want lapses: every other announcer is asked at once.
    v.handle_timeout(T0 + 1_100);
    let mut asked = asked_by_tag(&sent(&mut v), tag);
    asked.sort();
    assert_eq!(asked, vec![LIAR_B, HONEST]);
    assert!(v.has_failed(&LIAR_A));
    v.handle_frame(HONEST, push(vec![m.clone()]), T0 + 1_150);
    assert!(v.knows(&m.id()));
    // The honest peer answered; the liar that failed is asked last next time.
    let n = message(8);
    let tag = n.id().tag();
    v.handle_frame(LIAR_A, announce(vec![tag]), T0 + 2_000);
    v.handle_frame(HONEST, announce(vec![tag]), T0 + 2_001);
    v.handle_timeout(T0 + 2_100);
    assert_eq!(asked_by_tag(&sent(&mut v), tag), vec![HONEST]);
}

#[test]
fn a_want_by_tag_is_answered_once_with_what_is_held() {
    let mut v = engine_with(&[1]);
    lazy_first_frame(&mut v, 1, true);
    let id = v.publish(b"mine".to_vec(), T0 + 10).unwrap();
    sent(&mut v);
    let want = Frame {
        want_tags: vec![id.tag(), 12_345],
        ..Frame::default()
    };
    v.handle_frame(1, want.clone(), T0 + 20);
    let answered: Vec<_> = sent(&mut v)
        .into_iter()
        .flat_map(|(_, f)| f.messages)
        .map(|e| e.id())
        .collect();
    assert_eq!(answered, vec![id]);
    v.handle_frame(1, want, T0 + 30);
    assert!(
        sent(&mut v).iter().all(|(_, f)| f.messages.is_empty()),
        "once"
    );
}

/// Peers that predate tags (they never set `reads_tags`) are announced every new message as
/// a digest, never by tag; peers that read tags, by tag.
#[test]
fn peers_that_do_not_read_tags_get_every_announcement_as_a_digest() {
    let mut v = engine_with(&[1, 2, 3, 4, 5, 6, 7]);
    for peer in 1..=6 {
        lazy_first_frame(&mut v, peer, false);
    }
    lazy_first_frame(&mut v, 7, true);
    sent(&mut v);
    let mut told = [0usize; 8];
    for k in 0..6u64 {
        let now = T0 + 100 * (k + 1);
        let id = v.publish(format!("m{k}").into_bytes(), now).unwrap();
        v.handle_timeout(now + 20);
        for (peer, frame) in sent(&mut v) {
            assert!(frame.messages.is_empty(), "every link is lazy");
            let by_digest = frame
                .have
                .iter()
                .any(|d| d.author == id.author && d.ranges.contains(id.sequence));
            let by_tag = frame.have_tags.contains(&id.tag());
            if peer == 7 {
                assert!(by_tag && !by_digest, "the reader, by tag");
            } else {
                assert!(by_digest && !by_tag, "the others, by digest");
            }
            told[usize::from(peer)] += 1;
        }
    }
    assert_eq!(told[1..], [6; 7], "every peer told every message");
}

/// A node with an allow-list reads tags: a refused author's copy ends its pending tag, and a
/// tag that comes after the copy costs one pulled envelope (unverified copies are never
/// indexed), as a push would have.
#[test]
fn a_refused_authors_tag_is_pulled_at_most_once() {
    let config = Config::builder()
        .author_filter(AuthorFilter::allow([keys(10).public()]))
        .build()
        .unwrap();
    let mut v: Engine<u8> = Engine::new(keys(1), config, T0);
    v.connect(1, T0);
    lazy_first_frame(&mut v, 1, true);
    sent(&mut v);
    // The tag first, then the copy: nothing pulled.
    let refused = message(7);
    v.handle_frame(1, announce(vec![refused.id().tag()]), T0 + 10);
    v.handle_frame(1, push(vec![refused.clone()]), T0 + 20);
    v.handle_timeout(T0 + 500);
    assert!(sent(&mut v).iter().all(|(_, f)| f.want_tags.is_empty()));
    // The copy first, then the tag: pulled once, and the answer ends it.
    let other = message(8);
    v.handle_frame(1, push(vec![other.clone()]), T0 + 600);
    v.handle_frame(1, announce(vec![other.id().tag()]), T0 + 610);
    v.handle_timeout(T0 + 710);
    assert_eq!(asked_by_tag(&sent(&mut v), other.id().tag()), vec![1]);
    v.handle_frame(1, push(vec![other.clone()]), T0 + 720);
    v.handle_timeout(T0 + 5_000);
    assert!(sent(&mut v).iter().all(|(_, f)| f.want_tags.is_empty()));
    assert!(!v.knows(&refused.id()) && !v.knows(&other.id()));
    assert!(!v.has_failed(&1), "its answer was an answer");
}

#[test]
fn one_peer_keeps_a_bounded_number_of_tags_pending() {
    let mut v = engine_with(&[1]);
    lazy_first_frame(&mut v, 1, true);
    sent(&mut v);
    let made_up: Vec<u64> = (1..=10_000).collect();
    v.handle_frame(1, announce(made_up), T0 + 10);
    let mut asked = 0;
    let mut now = T0 + 10;
    while let Some(next) = v.poll_timeout().filter(|t| *t < T0 + 10_000) {
        now = next.max(now);
        v.handle_timeout(now);
        asked += sent(&mut v)
            .iter()
            .map(|(_, f)| f.want_tags.len())
            .sum::<usize>();
    }
    // Each pending tag is asked of its only announcer once, then given up.
    assert_eq!(asked, 256);
    v.check_invariants();
}

/// Found by the attack review of tags: with a cap on the announcers kept per tag, eight
/// liars that announced first kept the honest announcer from being recorded at all. Every
/// announcer is kept (the per-peer quota bounds them); asks go eight at a time after the
/// first, best first, so twenty liars delay the honest copy by three `want_timeout`s.
#[test]
fn twenty_liars_that_announce_a_tag_first_do_not_keep_the_honest_announcer_out() {
    let peers: Vec<u8> = (1..=21).collect();
    let mut v = engine_with(&peers);
    for &peer in &peers {
        lazy_first_frame(&mut v, peer, true);
    }
    sent(&mut v);
    let m = message(7);
    let tag = m.id().tag();
    for &peer in &peers {
        v.handle_frame(peer, announce(vec![tag]), T0 + Millis::from(peer));
    }
    let honest = 21;
    let mut now = T0 + 21;
    let mut asked_honest_at = None;
    while asked_honest_at.is_none() && now < T0 + 10_000 {
        now = v.poll_timeout().unwrap().max(now);
        v.handle_timeout(now);
        if asked_by_tag(&sent(&mut v), tag).contains(&honest) {
            asked_honest_at = Some(now);
        }
    }
    // The graft timer, then the first liar's want_timeout, then two batches of eight.
    assert_eq!(asked_honest_at, Some(T0 + 1 + 100 + 3 * 1_000));
    v.handle_frame(honest, push(vec![m.clone()]), now + 10);
    assert!(v.knows(&m.id()));
    v.check_invariants();
}
