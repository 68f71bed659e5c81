//! One cheap attacker against real swarms (memory transport, noise, yamux): a raw peer with
//! throwaway keys tries to censor, amplify, stall or exhaust a node. Each test is one attack
//! and asserts what must still hold: every honest message reaches every node, the node sends
//! no more than the attacker's requests justify, and nothing is delivered twice.
//!
//! Figures are printed (`cargo test --test attacks -- --nocapture`); bounds are generous so
//! that a shared, noisy machine does not make them flaky.

mod common;

use common::now_ms;
use common::raw::{Raw, Reading};
use common::swarm::{Node, NodeEvent, connect};
use secure_gossip::proto;
use secure_gossip::{
    Bytes, Config, Digest, Envelope, Frame, Keypair, MessageId, PublicKey, RangeSet,
};
use std::time::{Duration, Instant};

fn sign(keys: &Keypair, sequence: u64, timestamp: u64, payload: &[u8]) -> Envelope {
    Envelope::sign(keys, sequence, timestamp, payload.to_vec()).unwrap()
}

fn push(messages: Vec<Envelope>) -> Frame {
    Frame {
        messages,
        ..Frame::default()
    }
}

fn digest(author: PublicKey, ranges: RangeSet) -> Digest {
    Digest { author, ranges }
}

/// An envelope with any id and timestamp and a signature that is not valid.
fn unsigned(author: PublicKey, sequence: u64, timestamp: u64) -> Envelope {
    Envelope::try_from(proto::Envelope {
        author: Bytes::copy_from_slice(author.as_bytes()),
        sequence,
        timestamp,
        payload: Bytes::from_static(b"forged"),
        signature: Bytes::from(vec![7u8; 64]),
    })
    .unwrap()
}

/// An author the attacker makes tracked first. Its next message, sent after other frames on
/// the same connection, shows when the victim has processed them (a stream is in order).
struct Marker {
    keys: Keypair,
    next: u64,
}

impl Marker {
    async fn new(raw: &mut Raw, victim: &mut Node) -> Marker {
        let mut marker = Marker {
            keys: Keypair::generate(),
            next: 1,
        };
        marker.barrier(raw, victim).await;
        marker
    }

    fn envelope(&mut self) -> Envelope {
        self.next += 1;
        sign(&self.keys, self.next - 1, now_ms(), b"marker")
    }

    /// Returns once the victim has handled every frame `raw` sent before this call.
    async fn barrier(&mut self, raw: &mut Raw, victim: &mut Node) -> MessageId {
        let envelope = self.envelope();
        let id = envelope.id();
        raw.send(&push(vec![envelope])).await.unwrap();
        victim.message(id).await;
        id
    }
}

/// Sends `envelopes` in frames of at most 1,000.
async fn send_all(raw: &mut Raw, envelopes: Vec<Envelope>) {
    for chunk in envelopes.chunks(1000) {
        raw.send(&push(chunk.to_vec())).await.unwrap();
    }
}

/// `author` publishes ten messages; returns when `victim` has all of them.
async fn publish_ten(author: &Node, victim: &mut Node) -> Duration {
    let started = Instant::now();
    let mut ids = Vec::new();
    for k in 0..10u8 {
        ids.push(author.publish(vec![k]).await);
    }
    for id in ids {
        victim.message(id).await;
    }
    started.elapsed()
}

fn throwaway_authors(n: usize, timestamp: u64) -> Vec<Envelope> {
    (0..n)
        .map(|_| sign(&Keypair::generate(), 1, timestamp, b"spam"))
        .collect()
}

/// 1. Throwaway keys, one fresh valid envelope each, more than the author table holds: an
///    honest author that appears afterwards still reaches the victim and the node behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_throwaway_authors_cannot_censor_a_new_honest_author() {
    let config = Config::default();
    let mut victim = Node::spawn(config.clone()).await;
    let mut behind = Node::spawn(config.clone()).await;
    let mut author = Node::spawn(config.clone()).await;
    connect(&mut behind, &mut victim).await;
    connect(&mut author, &mut victim).await;
    let mut raw = Raw::connect(&mut victim, Reading::Count).await;
    let mut marker = Marker::new(&mut raw, &mut victim).await;

    let flood = config.max_tracked_authors() + 50;
    let started = Instant::now();
    send_all(&mut raw, throwaway_authors(flood, now_ms())).await;
    marker.barrier(&mut raw, &mut victim).await;
    println!(
        "{flood} throwaway authors handled in {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let id = author.publish(b"a new author speaks".to_vec()).await;
    victim.message(id).await;
    behind.message(id).await;
    println!(
        "the new honest author reached the victim and the node behind it in {:?}",
        started.elapsed()
    );
}

/// 2. One author whose sequences are 2, 4, 6, ...: it cannot build more than
///    `max_ranges_per_author` ranges of state, and later messages of it are announced in
///    proportion to what is new, not as every gap the author ever had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gapped_author_does_not_make_announcements_grow() {
    let config = Config::builder().gossip_interval(None).build().unwrap();
    let mut victim = Node::spawn(config).await;
    let mut raw = Raw::connect(&mut victim, Reading::Count).await;
    let observer = Raw::connect(&mut victim, Reading::Count).await;
    let mut marker = Marker::new(&mut raw, &mut victim).await;
    // Makes the observer's view a barrier too: it sees the marker after everything before it.
    async fn sync(raw: &mut Raw, victim: &mut Node, observer: &Raw, marker: &mut Marker) {
        let id = marker.barrier(raw, victim).await;
        observer.wait_until(|r| r.ids.contains(&id)).await;
    }

    let gapped = Keypair::generate();
    let now = now_ms();
    let flood: Vec<Envelope> = (1..=10_000u64)
        .map(|k| sign(&gapped, 2 * k, now, b"gap"))
        .collect();
    send_all(&mut raw, flood).await;
    sync(&mut raw, &mut victim, &observer, &mut marker).await;
    victim.gossip().await;
    sync(&mut raw, &mut victim, &observer, &mut marker).await;
    let before = observer.received();

    let more: Vec<Envelope> = (10_001..=10_005u64)
        .map(|k| sign(&gapped, 2 * k, now_ms(), b"gap"))
        .collect();
    raw.send(&push(more)).await.unwrap();
    sync(&mut raw, &mut victim, &observer, &mut marker).await;
    victim.gossip().await;
    sync(&mut raw, &mut victim, &observer, &mut marker).await;
    let after = observer.received();

    let have_ranges = after.have_ranges - before.have_ranges;
    let bytes = after.bytes - before.bytes;
    let messages = after.messages - before.messages;
    println!(
        "after 5 more gapped messages the observer got {messages} envelopes, {have_ranges} \
         announced ranges, {bytes} bytes"
    );
    let stats = victim.stats().await.stats;
    println!(
        "of 10,005 gapped envelopes {} were held back as too fragmented",
        stats.too_fragmented
    );
    assert!(
        messages <= 5 + 2,
        "at most the five new messages and two markers"
    );
    assert!(
        have_ranges <= 5,
        "{have_ranges} ranges announced for 5 new ids"
    );
    assert!(bytes < 4_000, "{bytes} bytes for 5 small messages");
}

/// 3. Empty complete frames (three bytes each, "resync, I know nothing"): the work they
///    cause is bounded per peer and time, so the victim gets through 20,000 of them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_spam_does_not_hold_up_the_victim() {
    let config = Config::default();
    let mut victim = Node::spawn(config.clone()).await;
    let mut feeder = Raw::connect(&mut victim, Reading::Count).await;
    let mut spammer = Raw::connect(&mut victim, Reading::Count).await;
    let mut author = Node::spawn(config.clone()).await;
    let mut behind = Node::spawn(config.clone()).await;
    connect(&mut author, &mut victim).await;
    connect(&mut behind, &mut victim).await;
    let mut marker = Marker::new(&mut feeder, &mut victim).await;
    send_all(&mut feeder, throwaway_authors(2_000, now_ms())).await;
    marker.barrier(&mut feeder, &mut victim).await;

    let spam: Vec<u8> = [0x02, 0x20, 0x01].repeat(20_000);
    let mut spam_marker = Marker::new(&mut spammer, &mut victim).await;
    let started = Instant::now();
    spammer.send_bytes(&spam).await.unwrap();
    let mut ids = Vec::new();
    for k in 0..10u8 {
        ids.push(author.publish(vec![k]).await);
    }
    spam_marker.barrier(&mut spammer, &mut victim).await;
    let handled = started.elapsed();
    for id in ids {
        behind.message(id).await;
    }
    let honest = started.elapsed();
    let sent = spammer.received();
    println!(
        "20,000 empty complete frames handled in {handled:?}; 10 honest messages crossed in \
         {honest:?}; the spammer was sent {} frames, {} bytes",
        sent.frames, sent.bytes
    );
    assert!(
        handled < Duration::from_secs(10),
        "the victim spent {handled:?} on 60 KB of resync requests"
    );
    assert!(
        sent.bytes < 1_000_000,
        "{} bytes sent in answer to 60 KB",
        sent.bytes
    );
}

/// 5a. Envelopes with an honest author's next ids, timestamp 0 and no valid signature: the
///     real messages are still pulled when an honest peer announces them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unverified_envelopes_cannot_block_the_real_ones() {
    let lazy = Config::builder().eager_push(false).build().unwrap();
    let keys = Keypair::generate();
    let honest_config = Config::builder()
        .eager_push(false)
        .start_sequence(1_000)
        .build()
        .unwrap();
    let mut author = Node::spawn_with(keys.clone(), honest_config).await;
    let mut victim = Node::spawn(lazy).await;
    connect(&mut author, &mut victim).await;
    let mut raw = Raw::connect(&mut victim, Reading::Count).await;
    let mut marker = Marker::new(&mut raw, &mut victim).await;
    let forged = (1_000..1_010)
        .map(|s| unsigned(keys.public(), s, 0))
        .collect();
    raw.send(&push(forged)).await.unwrap();
    marker.barrier(&mut raw, &mut victim).await;

    let took = publish_ten(&author, &mut victim).await;
    println!("the 10 real messages arrived {took:?} after publication");
}

/// 5b. Two peers announce every sequence of an author and never answer a want. An honest
///     peer's announcement of the real ids is still pulled within the retry schedule, and
///     the liars are never asked for more than one frame of wants at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_announce_everything_and_never_answer_cannot_capture_the_wants() {
    let lazy = Config::builder().eager_push(false).build().unwrap();
    let mut author = Node::spawn(lazy.clone()).await;
    let mut victim = Node::spawn(lazy.clone()).await;
    connect(&mut author, &mut victim).await;
    // Liars whose peer ids sort before the honest peer's, so an order-based choice picks
    // them first.
    let mut liars = Vec::new();
    while liars.len() < 2 {
        let key = libp2p::identity::Keypair::generate_ed25519();
        if key.public().to_peer_id() < author.peer_id {
            liars.push(Raw::connect_as(key, &mut victim, Reading::Count).await);
        }
    }
    let everything = Frame {
        have: vec![digest(author.author, RangeSet::from_range(1, u64::MAX))],
        ..Frame::default()
    };
    for liar in &mut liars {
        liar.send(&everything).await.unwrap();
    }
    let mut marker = Marker::new(&mut liars[0], &mut victim).await;
    marker.barrier(&mut liars[1], &mut victim).await;

    let took = publish_ten(&author, &mut victim).await;
    let asked: Vec<_> = liars
        .iter()
        .map(|l| {
            let r = l.received();
            (r.want_frames, r.want_ranges)
        })
        .collect();
    println!(
        "the honest peer's messages arrived in {took:?}; (want frames, ranges) sent to the liars: {asked:?}"
    );
    let max = Config::default().frame_limits().max_want_ranges as u64;
    for (frames, ranges) in asked {
        assert!(
            ranges <= max * frames.max(1),
            "{ranges} ranges in {frames} wants"
        );
    }
}

/// 6. A want for everything, repeated: a peer draws each held envelope at most once per
///    connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wants_draw_each_envelope_once() {
    let config = Config::default();
    let mut author = Node::spawn(config.clone()).await;
    let mut victim = Node::spawn(config.clone()).await;
    connect(&mut author, &mut victim).await;
    let mut held = 0u64;
    let mut ids = Vec::new();
    for k in 0..20u8 {
        ids.push(author.publish(vec![k; 60 * 1024]).await);
        held += 60 * 1024;
    }
    let last = author.publish(b"last".to_vec()).await;
    for id in ids {
        victim.message(id).await;
    }
    victim.message(last).await;

    let mut raw = Raw::connect(&mut victim, Reading::Count).await;
    let everything = Frame {
        want: vec![digest(author.author, RangeSet::from_range(1, u64::MAX))],
        ..Frame::default()
    };
    let started = Instant::now();
    for _ in 0..100 {
        raw.send(&everything).await.unwrap();
    }
    // Drain what was drawn: the node answers wants in order, and the `last` message is the
    // highest sequence, so once it has arrived after the final want everything has.
    let r = raw.wait_until(|r| r.ids.contains(&last)).await;
    let took = started.elapsed();
    let r = raw.wait_until(|r2| r2.bytes >= r.bytes).await;
    println!(
        "100 wants of {} bytes drew {} bytes ({} envelopes) in {took:?} from a victim holding {held} bytes",
        secure_gossip::codec::encode_frame(&everything).len(),
        r.bytes,
        r.messages
    );
    assert!(
        r.bytes < held * 2,
        "{} bytes drawn from {held} held",
        r.bytes
    );
}

/// 7b. One key's messages with timestamps near `now + max_clock_skew`, more than the store
///     holds: the honest author's history is kept, and a late joiner still gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_author_cannot_push_the_others_out_of_the_store() {
    let config = Config::builder()
        .max_stored_messages(1_000)
        .build()
        .unwrap();
    let mut author = Node::spawn(config.clone()).await;
    let mut victim = Node::spawn(config.clone()).await;
    connect(&mut author, &mut victim).await;
    let mut ids = Vec::new();
    for k in 0..10u8 {
        ids.push(author.publish(vec![k]).await);
    }
    for id in &ids {
        victim.message(*id).await;
    }
    let mut raw = Raw::connect(&mut victim, Reading::Count).await;
    let mut marker = Marker::new(&mut raw, &mut victim).await;
    let spammer = Keypair::generate();
    let future = now_ms() + 50_000;
    let flood = (1..=1_001u64)
        .map(|s| sign(&spammer, s, future, b"mine"))
        .collect();
    send_all(&mut raw, flood).await;
    marker.barrier(&mut raw, &mut victim).await;

    let mut late = Node::spawn(config).await;
    connect(&mut late, &mut victim).await;
    for id in ids {
        late.message(id).await;
    }
    println!("the late joiner got the honest author's 10 messages");
}

/// 10a. An equivocation replayed many times is verified and reported once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_equivocation_is_reported_once() {
    let mut victim = Node::spawn(Config::default()).await;
    let mut raw = Raw::connect(&mut victim, Reading::Count).await;
    let mut marker = Marker::new(&mut raw, &mut victim).await;
    let liar = Keypair::generate();
    let now = now_ms();
    let first = sign(&liar, 1, now, b"yes");
    let second = sign(&liar, 1, now, b"no");
    raw.send(&push(vec![first])).await.unwrap();
    for _ in 0..11 {
        raw.send(&push(vec![second.clone()])).await.unwrap();
    }
    marker.barrier(&mut raw, &mut victim).await;
    let verified_before_marker = victim.stats().await.stats.verified;
    let mut reports = 0;
    for event in victim.drain_events().await {
        if matches!(event, NodeEvent::Equivocation(..)) {
            reports += 1;
        }
    }
    println!("11 replays: {reports} reports, {verified_before_marker} verifications in all");
    assert_eq!(reports, 1);
    // The markers (2), the first copy and one check of the conflicting copy.
    assert_eq!(verified_before_marker, 4);
}

/// 10b. An author forgotten while one of its messages is still inside the time window (a
///      future timestamp) cannot have that message delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_not_delivered_twice_after_its_author_is_forgotten() {
    let config = Config::builder()
        .max_age(Duration::from_secs(3))
        .max_stored_messages(1)
        .max_tracked_authors(4)
        .build()
        .unwrap();
    let mut victim = Node::spawn(config).await;
    let mut raw = Raw::connect(&mut victim, Reading::Count).await;
    let mut marker = Marker::new(&mut raw, &mut victim).await;
    let (a, b, c) = (
        Keypair::generate(),
        Keypair::generate(),
        Keypair::generate(),
    );
    let t0 = now_ms();
    let early = sign(&a, 1, t0 + 30_000, b"from the future");
    raw.send(&push(vec![
        early.clone(),
        sign(&b, 1, t0 + 40_000, b"later"),
    ]))
    .await
    .unwrap();
    marker.barrier(&mut raw, &mut victim).await;
    // Protocol time: let `a`'s receipt fall behind `max_age`.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    raw.send(&push(vec![sign(&c, 1, now_ms() - 2_900, b"old")]))
        .await
        .unwrap();
    marker.barrier(&mut raw, &mut victim).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    raw.send(&push(vec![early.clone()])).await.unwrap();
    marker.barrier(&mut raw, &mut victim).await;
    let copies = victim
        .drain_events()
        .await
        .iter()
        .filter(|e| matches!(e, NodeEvent::Message(m, _) if m.id == early.id()))
        .count();
    println!("the future-dated message was delivered {copies} times");
    assert_eq!(copies, 1, "delivered twice");
}

/// 7a. A peer over its inbound budget is read more slowly: the victim takes its envelopes no
///     faster than the budget allows, and an honest peer's message is not held up behind
///     them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_its_inbound_budget_is_read_more_slowly() {
    let per_sec = 1_000;
    let config = Config::builder()
        .max_messages_per_frame(100)
        .max_inbound_messages_per_sec(per_sec)
        .build()
        .unwrap();
    let mut victim = Node::spawn(config.clone()).await;
    let author = Node::spawn(config.clone()).await;
    let mut author = author;
    connect(&mut author, &mut victim).await;
    let mut raw = Raw::connect(&mut victim, Reading::Count).await;
    let mut marker = Marker::new(&mut raw, &mut victim).await;

    let flood = 3_000usize;
    let spammer = Keypair::generate();
    let envelopes: Vec<Envelope> = (1..=flood as u64)
        .map(|s| sign(&spammer, s, now_ms(), b"flood"))
        .collect();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for chunk in envelopes.chunks(100) {
            raw.send(&push(chunk.to_vec())).await.unwrap();
        }
        raw
    });
    // Honest traffic meanwhile: it does not wait for the flood.
    let honest = author.publish(b"not held up".to_vec()).await;
    victim.message(honest).await;
    let honest_took = started.elapsed();
    let mut raw = writer.await.unwrap();
    marker.barrier(&mut raw, &mut victim).await;
    let flood_took = started.elapsed();
    // The budget's burst is one frame's worth (max(per_sec, 100) envelopes), plus one frame
    // read into debt.
    let floor = (flood - per_sec - 100) as f64 / per_sec as f64;
    println!(
        "{flood} envelopes at a budget of {per_sec}/s took {flood_took:?} (floor {floor:.1} s); \
         an honest message crossed in {honest_took:?}"
    );
    assert!(
        flood_took.as_secs_f64() >= floor,
        "read faster than the budget allows"
    );
    assert!(
        honest_took < flood_took,
        "the honest message waited for the flood"
    );
}

/// 9. A peer that stops reading is cut off after `write_timeout` and reported; the rest of
///    the network is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_disconnected_and_reported() {
    let config = Config::builder()
        .write_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut author = Node::spawn(config.clone()).await;
    let mut victim = Node::spawn(config.clone()).await;
    let mut behind = Node::spawn(config.clone()).await;
    connect(&mut author, &mut victim).await;
    connect(&mut behind, &mut victim).await;
    let raw = Raw::connect(&mut victim, Reading::Never).await;
    let started = Instant::now();
    let mut ids = Vec::new();
    for k in 0..40u8 {
        ids.push(author.publish(vec![k; 60 * 1024]).await);
    }
    victim
        .wait_for(|e| matches!(e, NodeEvent::SlowPeer(p) if *p == raw.peer_id).then_some(()))
        .await;
    victim.disconnected(raw.peer_id).await;
    println!(
        "the peer that stopped reading was cut off after {:?}",
        started.elapsed()
    );
    for id in ids {
        behind.message(id).await;
    }
}

/// 10c. A peer that broke the protocol and reconnects at once is not gossiped with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_violator_that_reconnects_is_not_gossiped_with() {
    let mut victim = Node::spawn(Config::default()).await;
    let key = libp2p::identity::Keypair::generate_ed25519();
    let peer_id = key.public().to_peer_id();
    {
        let mut raw = Raw::connect_as(key.clone(), &mut victim, Reading::Count).await;
        raw.send_bytes(&[0x02, 0x08, 0x01]).await.unwrap();
        victim
            .wait_for(|e| matches!(e, NodeEvent::Violation(p, ..) if *p == peer_id).then_some(()))
            .await;
        victim.disconnected(peer_id).await;
    }
    let mut raw = Raw::connect_as(key, &mut victim, Reading::Count).await;
    let envelope = sign(&Keypair::generate(), 1, now_ms(), b"let me back in");
    let _ = raw.send(&push(vec![envelope.clone()])).await;
    let snapshot = victim.stats().await;
    assert!(
        snapshot.connected.contains(&peer_id),
        "the connection itself is left alone"
    );
    assert!(
        !snapshot.gossip_peers.contains(&peer_id),
        "but it is not a gossip peer"
    );
    // An honest peer's message arrives; the banned peer's never does.
    let mut honest = Node::spawn(Config::default()).await;
    connect(&mut honest, &mut victim).await;
    let id = honest.publish(b"honest".to_vec()).await;
    victim.message(id).await;
    let events = victim.drain_events().await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, NodeEvent::Message(m, _) if m.id == envelope.id())),
        "a banned peer's envelope was delivered"
    );
}

/// 8. A peer id that reconnects in a loop, sending only the complete (empty) digest every
///    peer starts with, draws one catch-up answer per `min_resync_interval`, not one per
///    connection (the budget is remembered per peer id, not per connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_does_not_buy_a_fresh_resync_answer() {
    let mut victim = Node::spawn(Config::default()).await;
    // More than one catch-up frame's worth (half a frame: 512 KiB).
    let payload = vec![7u8; 1_000];
    let mut last = None;
    for _ in 0..600 {
        last = Some(victim.publish(payload.clone()).await);
    }
    let last = last.expect("published");
    let key = libp2p::identity::Keypair::generate_ed25519();
    let peer_id = key.public().to_peer_id();
    let mut drawn = Vec::new();
    for _ in 0..5 {
        let mut raw = Raw::connect_as(key.clone(), &mut victim, Reading::Count).await;
        // The last message is never part of a catch-up (oldest first): asking for it marks
        // the point where the victim has handled the digest and sent what it draws.
        raw.send(&Frame {
            want: vec![digest(
                victim.author,
                RangeSet::from_range(last.sequence, last.sequence),
            )],
            ..Frame::default()
        })
        .await
        .unwrap();
        let got = raw.wait_until(|r| r.ids.contains(&last)).await;
        drawn.push(got.message_bytes);
        raw.disconnect();
        victim.disconnected(peer_id).await;
    }
    let stats = victim.stats().await.stats;
    println!(
        "envelope bytes drawn by 5 connections of one peer id: {drawn:?}; resyncs answered {}, \
         limited {}",
        stats.resyncs, stats.resyncs_limited
    );
    assert!(
        drawn[0] > 400_000,
        "the first connection catches up: {drawn:?}"
    );
    for (k, bytes) in drawn.iter().enumerate().skip(1) {
        assert!(
            *bytes < 10_000,
            "connection {k} drew a fresh answer ({bytes} bytes) by reconnecting: {drawn:?}"
        );
    }
}

/// 7. A relay that was first to bring an honest author's message floods fresh authors, more
///    than the author table and its tombstones hold, then replays that message: it is not
///    delivered again (one introducer never evicts a live tombstone), and a new author an
///    honest peer brings afterwards still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_cannot_replay_an_honest_message_after_a_flood() {
    let config = Config::builder().max_tracked_authors(16).build().unwrap();
    let mut victim = Node::spawn(config.clone()).await;
    let mut honest = Node::spawn(config).await;
    connect(&mut honest, &mut victim).await;
    let mut relay = Raw::connect(&mut victim, Reading::Count).await;
    let relayed = sign(&Keypair::generate(), 1, now_ms(), b"honest, relayed first");
    relay.send(&push(vec![relayed.clone()])).await.unwrap();
    victim.message(relayed.id()).await;
    // 16 tracked + 64 tombstones: 200 fresh authors are more than both. A marker envelope
    // after every 8 keeps the marker's author active (so it is never the one displaced).
    let mut marker = Marker::new(&mut relay, &mut victim).await;
    let mut frame = Vec::new();
    for spam in throwaway_authors(200, now_ms()).chunks(8) {
        frame.extend_from_slice(spam);
        frame.push(marker.envelope());
    }
    let last = frame.last().expect("some").id();
    relay.send(&push(frame)).await.unwrap();
    victim.message(last).await;
    relay.send(&push(vec![relayed.clone()])).await.unwrap();
    marker.barrier(&mut relay, &mut victim).await;
    let id = honest.publish(b"a new honest author".to_vec()).await;
    victim.message(id).await;
    let events = victim.drain_events().await;
    let copies = events
        .iter()
        .filter(|e| matches!(e, NodeEvent::Message(m, _) if m.id == relayed.id()))
        .count();
    let stats = victim.stats().await.stats;
    println!(
        "replayed after 200 fresh authors: delivered again {copies} times; authors refused \
         {}, displaced {}",
        stats.authors_full, stats.authors_displaced
    );
    assert_eq!(copies, 0, "the relayed message was delivered twice");
    assert!(stats.authors_full > 0, "the flood was not held back");
}

/// 3. With validation on, one frame of valid envelopes of a throwaway key fills the
///    validation slots and the application never decides them: the attacker is the only
///    peer paused, and an honest neighbour's message is read and delivered at once (before,
///    the node stopped reading from every peer until the verdicts timed out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecided_messages_of_one_peer_do_not_stall_the_others() {
    let timeout = Duration::from_secs(30);
    let config = Config::builder()
        .validate_messages(true)
        .validation_timeout(timeout)
        .build()
        .unwrap();
    let mut victim = Node::spawn(config).await;
    let mut honest = Node::spawn(Config::default()).await;
    connect(&mut honest, &mut victim).await;
    let mut raw = Raw::connect(&mut victim, Reading::Count).await;
    let spammer = Keypair::generate();
    let t = now_ms();
    let flood: Vec<Envelope> = (1..=4_096)
        .map(|s| sign(&spammer, s, t, b"decide me"))
        .collect();
    let last = flood.last().expect("some").id();
    raw.send(&push(flood)).await.unwrap();
    victim.message(last).await;
    let started = Instant::now();
    let id = honest.publish(b"honest".to_vec()).await;
    victim.message(id).await;
    let took = started.elapsed();
    println!(
        "4,096 undecided envelopes of one peer held; an honest neighbour's message was read \
         in {took:?} (validation_timeout {timeout:?})"
    );
    assert!(
        took < timeout / 2,
        "the honest message waited {took:?} behind another peer's undecided messages"
    );
}

/// An author with `max_ranges_per_author` (64) ranges of known ids at `victim`: any id far
/// above them would fragment it further, so the engine drops it before its signature step.
async fn fragmented_author(raw: &mut Raw, victim: &mut Node) -> Keypair {
    let keys = Keypair::generate();
    let t = now_ms();
    let gapped: Vec<Envelope> = (1..=64).map(|k| sign(&keys, 2 * k, t, b"gap")).collect();
    let last = gapped.last().expect("some").id();
    raw.send(&push(gapped)).await.unwrap();
    victim.message(last).await;
    keys
}

/// 5. A frame led by an envelope the engine would drop before its signature step (an id
///    that would fragment its author), with a zero signature, then 4,095 valid new
///    envelopes. The handler stops at the bad signature; the engine now treats it as the
///    violation it is, instead of dropping it quietly and verifying the other 4,095 itself
///    on the swarm task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_the_engine_would_skip_is_still_a_violation() {
    let mut victim = Node::spawn(Config::default()).await;
    let mut raw = Raw::connect(&mut victim, Reading::Count).await;
    let fragmented = fragmented_author(&mut raw, &mut victim).await;
    let mut frame = vec![unsigned(fragmented.public(), 1_000, now_ms())];
    frame.extend(throwaway_authors(4_095, now_ms()));
    let valid: Vec<MessageId> = frame[1..].iter().map(Envelope::id).collect();
    raw.send(&push(frame)).await.unwrap();
    let peer = raw.peer_id;
    victim
        .wait_for(|e| matches!(e, NodeEvent::Violation(p, ..) if *p == peer).then_some(()))
        .await;
    let stats = victim.stats().await.stats;
    let delivered = victim
        .drain_events()
        .await
        .iter()
        .filter(|e| matches!(e, NodeEvent::Message(m, _) if valid.contains(&m.id)))
        .count();
    println!(
        "lead envelope with a bad signature: violation reported; {delivered} of the 4,095 \
         behind it delivered; the engine verified {} signatures itself",
        stats.verified_by_engine
    );
    assert_eq!(delivered, 0, "the frame went on past its bad signature");
    assert_eq!(stats.verified_by_engine, 0, "verified on the swarm task");
}

/// 6. A frame of 1,000 valid envelopes the engine drops before its signature step (they
///    would fragment their author), replayed ten times: the handlers verify each envelope
///    once, the engine counts that work as discarded (and charges it to the peer), and the
///    replays are verified no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_envelopes_the_engine_discards_are_verified_once() {
    let mut victim = Node::spawn(Config::default()).await;
    let mut raw = Raw::connect(&mut victim, Reading::Count).await;
    let fragmented = fragmented_author(&mut raw, &mut victim).await;
    let t = now_ms();
    let frame = push(
        (1_000..2_000)
            .map(|s| sign(&fragmented, s, t, b"never accepted"))
            .collect(),
    );
    let mut marker = Marker::new(&mut raw, &mut victim).await;
    for _ in 0..10 {
        raw.send(&frame).await.unwrap();
    }
    marker.barrier(&mut raw, &mut victim).await;
    let stats = victim.stats().await.stats;
    println!(
        "10 replays of 1,000 discarded envelopes: {} verifications discarded (counted and \
         charged), {} too fragmented, {} verified by the engine",
        stats.verified_discarded, stats.too_fragmented, stats.verified_by_engine
    );
    assert_eq!(stats.too_fragmented, 10_000, "every copy was dropped");
    assert_eq!(
        stats.verified_discarded, 1_000,
        "each envelope verified once, whatever the replays"
    );
    assert_eq!(stats.verified_by_engine, 0);
}

/// 2. A liar announces every id of an honest author (`[1, u64::MAX]`) and never answers;
///    with eager push off everything is pulled. Once the liar has missed a deadline, each
///    new message of the author, announced by the honest peer, is asked of it at once: no
///    message waits for the liar's doubled timeouts (before: 1, 2, 1, 4, 3, 2, 1, 8 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_liar_that_announces_every_future_id_delays_no_pull_past_one_timeout() {
    let config = Config::builder().eager_push(false).build().unwrap();
    let mut victim = Node::spawn(config.clone()).await;
    let mut author = Node::spawn(config.clone()).await;
    let mut liar = Raw::connect(&mut victim, Reading::Count).await;
    liar.send(&Frame {
        have: vec![digest(author.author, RangeSet::from_range(1, u64::MAX))],
        ..Frame::default()
    })
    .await
    .unwrap();
    liar.wait_until(|r| r.want_frames > 0).await;
    connect(&mut author, &mut victim).await;
    // Past the liar's first deadline (want_timeout, 1 s): its want is back with it, doubled.
    liar.wait_until(|r| r.want_frames > 1).await;
    let mut delays = Vec::new();
    for k in 0..6u8 {
        let started = Instant::now();
        let id = author.publish(vec![k]).await;
        victim.message(id).await;
        delays.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let worst = delays.iter().max().copied().unwrap_or_default();
    println!("pulled past a liar of every future id: {delays:?}");
    assert!(
        worst < Duration::from_secs(3),
        "a message waited {worst:?} for a liar's doubled timeout: {delays:?}"
    );
}
