//! Memory bounds under attack, measured by a counting global allocator (this test binary's
//! own, so nothing else shares the count). The victim and the attacker run in this process:
//! what is measured is the heap the victim keeps, and its peak while decoding.
//!
//! The tests run one at a time (a lock), so their measurements do not overlap.

mod common;

use common::now_ms;
use common::raw::{Raw, Reading};
use common::swarm::{Node, NodeEvent};
use secure_gossip::{Config, Digest, Envelope, Frame, Keypair, RangeSet};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size > layout.size() {
                let grow = new_size - layout.size();
                let now = CURRENT.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const MIB: f64 = 1024.0 * 1024.0;

/// Heap in use now, and the peak since the last call.
fn heap() -> (usize, usize) {
    let now = CURRENT.load(Ordering::Relaxed);
    (now, PEAK.swap(now, Ordering::Relaxed))
}

/// Handles every frame `raw` sent before: a fresh message of an already tracked author,
/// awaited at the victim.
async fn barrier(raw: &mut Raw, victim: &mut Node, keys: &Keypair, sequence: u64) {
    let envelope = Envelope::sign(keys, sequence, now_ms(), b"marker".to_vec()).unwrap();
    let id = envelope.id();
    let frame = Frame {
        messages: vec![envelope],
        ..Frame::default()
    };
    raw.send(&frame).await.unwrap();
    victim.message(id).await;
}

/// Runs `test` on its own runtime, alone among this binary's tests.
fn alone<F: std::future::Future<Output = ()>>(test: F) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

/// 4. `have` digests of 10,000 made-up authors with 1,024 ranges each (about 59 MiB of
///    frames), then 8,192 envelopes of made-up authors outside the time window: the victim
///    keeps no more per connection than the config's bound.
#[test]
fn announcements_of_made_up_authors_do_not_grow_the_heap() {
    alone(made_up_authors());
}

async fn made_up_authors() {
    let config = Config::default();
    let mut victim = Node::spawn(config.clone()).await;
    let mut raw = Raw::connect(&mut victim, Reading::Count).await;
    let marker = Keypair::generate();
    barrier(&mut raw, &mut victim, &marker, 1).await;
    let (base, _) = heap();

    let ranges: RangeSet = (0..1024u64).map(|k| 1_000_000 + 3 * k).collect();
    let mut sent = 0usize;
    for _ in 0..10_000 / 32 {
        let frame = Frame {
            have: (0..32)
                .map(|_| Digest {
                    author: Keypair::generate().public(),
                    ranges: ranges.clone(),
                })
                .collect(),
            ..Frame::default()
        };
        sent += frame.encoded_len();
        raw.send(&frame).await.unwrap();
    }
    // And envelopes of made-up authors outside the time window (dropped unverified): what
    // the peer sent and was refused is not kept for them either.
    for _ in 0..2 {
        let frame = Frame {
            messages: (0..4_096)
                .map(|_| Envelope::sign(&Keypair::generate(), 1, 0, b"old".to_vec()).unwrap())
                .collect(),
            ..Frame::default()
        };
        sent += frame.encoded_len();
        raw.send(&frame).await.unwrap();
    }
    barrier(&mut raw, &mut victim, &marker, 2).await;
    let (after, peak) = heap();
    let kept = after.saturating_sub(base) as f64 / MIB;
    let peak = peak.saturating_sub(base) as f64 / MIB;
    println!(
        "{:.1} MiB of frames: the heap grew by {kept:.1} MiB (peak {peak:.1} MiB)",
        sent as f64 / MIB
    );
    assert!(kept < 2.0, "{kept:.1} MiB kept");
}

/// A frame body of `count` empty envelopes (`0a 00` repeated), framed.
fn bomb(count: usize) -> Vec<u8> {
    let body = [0x0a, 0x00].repeat(count);
    let mut out = Vec::new();
    secure_gossip::codec::encode_prefix(body.len() as u64, &mut out);
    out.extend_from_slice(&body);
    out
}

/// 8. Frames of 1 MiB holding half a million empty envelopes each, two decoding at a time:
///    transient memory stays a small multiple of the frames, and each is a violation.
#[test]
fn decode_bombs_cost_a_small_multiple_of_the_frame() {
    alone(decode_bombs());
}

async fn decode_bombs() {
    let config = Config::default();
    let mut victim = Node::spawn(config.clone()).await;
    let frame = bomb((config.max_frame_size() - 8) / 2);
    let (base, _) = heap();
    for _ in 0..4 {
        let mut a = Raw::connect(&mut victim, Reading::Count).await;
        let mut b = Raw::connect(&mut victim, Reading::Count).await;
        let (ra, rb) = tokio::join!(a.send_bytes(&frame), b.send_bytes(&frame));
        let _ = (ra, rb);
        for peer in [a.peer_id, b.peer_id] {
            victim
                .wait_for(|e| matches!(e, NodeEvent::Violation(p, ..) if *p == peer).then_some(()))
                .await;
        }
    }
    let (after, peak) = heap();
    let peak = peak.saturating_sub(base) as f64 / MIB;
    let kept = after.saturating_sub(base) as f64 / MIB;
    println!(
        "8 frames of {:.1} MiB, two at a time: peak heap growth {peak:.1} MiB, kept {kept:.1} MiB",
        frame.len() as f64 / MIB
    );
    assert!(
        peak < 24.0,
        "peak {peak:.1} MiB while decoding 2 MiB at a time"
    );
}

/// The state a node keeps per stored message and per known id, measured on the sans-IO
/// engine: 1,000 authors × 20 messages of 256 bytes arrive from one peer, then age out.
#[test]
fn state_per_stored_message_and_per_known_id() {
    use secure_gossip::engine::Engine;

    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const AUTHORS: u64 = 1_000;
    const PER_AUTHOR: u64 = 20;
    const PAYLOAD: usize = 256;
    let count = (AUTHORS * PER_AUTHOR) as usize;
    let t0 = now_ms();
    let config = Config::default();
    let max_age = config.max_age().as_millis() as u64;
    let mut engine: Engine<u8> = Engine::new(Keypair::from_seed(&[9; 32]), config, t0);
    engine.connect(1, t0);
    while engine.poll_output().is_some() {}

    let authors: Vec<Keypair> = (0..AUTHORS)
        .map(|a| {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&a.to_le_bytes());
            Keypair::from_seed(&seed)
        })
        .collect();
    let (base, _) = heap();
    for keys in &authors {
        let messages = (1..=PER_AUTHOR)
            .map(|s| Envelope::sign(keys, s, t0, vec![s as u8; PAYLOAD]).unwrap())
            .collect();
        let frame = Frame {
            messages,
            ..Frame::default()
        };
        engine.handle_frame(1, frame, t0);
        while engine.poll_output().is_some() {}
    }
    assert_eq!(engine.stored().0, count);
    let (stored, _) = heap();
    let per_message = stored.saturating_sub(base) as f64 / count as f64;

    let later = t0 + max_age + 1_000;
    engine.handle_timeout(later);
    while engine.poll_output().is_some() {}
    assert_eq!(engine.stored().0, 0, "every message aged out");
    let first = Envelope::sign(&authors[0], 1, t0, vec![1; PAYLOAD]).unwrap();
    assert!(engine.knows(&first.id()), "ids stay known after expiry");
    let (known, _) = heap();
    let known_per_author = known.saturating_sub(base) as f64 / AUTHORS as f64;
    engine.disconnect(&1, later);
    while engine.poll_output().is_some() {}
    let (alone, _) = heap();
    let per_author = alone.saturating_sub(base) as f64 / AUTHORS as f64;
    println!(
        "{count} stored messages of {PAYLOAD} bytes: {per_message:.0} bytes of heap each \
         ({:.0} beyond the payload); after they aged out, {known_per_author:.0} bytes per \
         author for its {PER_AUTHOR} known ids (kept as one range) with a connected peer \
         believed to know them, {per_author:.0} bytes per author once the peer left",
        per_message - PAYLOAD as f64,
    );
    assert!(
        per_message < PAYLOAD as f64 + 512.0,
        "{per_message:.0} bytes per stored message"
    );
    // Known ids are ranges: what an author costs does not grow with its ids.
    assert!(
        known_per_author < 1024.0,
        "{known_per_author:.0} bytes per author"
    );
    assert!(
        per_author < 1024.0,
        "{per_author:.0} bytes per tracked author"
    );
}

/// 4b. `have` digests of 32,767 ranges for authors the victim does track (one valid message
///     each): what is kept per author is what the bounds allow (its ranges cut to
///     `max_ranges_per_author`), not the room the digest once took.
#[test]
fn wide_digests_of_tracked_authors_keep_only_the_bounded_ranges() {
    alone(wide_digests());
}

async fn wide_digests() {
    const AUTHORS: usize = 100;
    let config = Config::default();
    let mut victim = Node::spawn(config.clone()).await;
    let mut raw = Raw::connect(&mut victim, Reading::Count).await;
    let marker = Keypair::generate();
    barrier(&mut raw, &mut victim, &marker, 1).await;
    let authors: Vec<Keypair> = (0..AUTHORS).map(|_| Keypair::generate()).collect();
    let frame = Frame {
        messages: authors
            .iter()
            .map(|keys| Envelope::sign(keys, 1, now_ms(), b"first".to_vec()).unwrap())
            .collect(),
        ..Frame::default()
    };
    raw.send(&frame).await.unwrap();
    barrier(&mut raw, &mut victim, &marker, 2).await;
    let (base, _) = heap();

    let ranges: RangeSet = (0..config.frame_limits().max_have_ranges as u64 - 1)
        .map(|k| 10 + 2 * k)
        .collect();
    let mut sent = 0usize;
    for keys in &authors {
        let frame = Frame {
            have: vec![Digest {
                author: keys.public(),
                ranges: ranges.clone(),
            }],
            ..Frame::default()
        };
        sent += frame.encoded_len();
        raw.send(&frame).await.unwrap();
    }
    barrier(&mut raw, &mut victim, &marker, 3).await;
    let (after, _) = heap();
    let kept = after.saturating_sub(base) as f64 / MIB;
    println!(
        "{:.1} MiB of have frames for {AUTHORS} tracked authors: the heap grew by {kept:.2} MiB",
        sent as f64 / MIB
    );
    assert!(kept < 4.0, "{kept:.2} MiB kept");
}

/// Memory per honest node under every attack of the simulator at a tenth of the scale (100
/// honest nodes among 400 Sybils, 80 % of each one's connections to Sybils): the peak heap
/// of the whole simulation (engines, links, events in flight, the Sybils' brain) over the
/// honest nodes, an upper bound of what each keeps. Within the bound the threat model
/// states (the per-node bound, about 150 MiB at the defaults, plus the per-connection
/// bound, about 25 MiB, times its 30 connections), and, against regressions, within 6× the
/// run without Sybils (whose nodes have a fifth of the connections): 0.16 MiB without
/// Sybils, 0.18–0.68 with (the throwaway-author flood the most).
#[test]
fn memory_per_honest_node_under_every_sybil_attack() {
    use secure_gossip::sim::Attack;
    use secure_gossip::sim::attack::AttackScenario;

    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scenario = AttackScenario::small(common::seed_from_env(1));
    let honest = scenario.honest as f64;
    let peak_per_node = |attack: Attack, with_sybils: bool| {
        let (base, _) = heap();
        let report = scenario.run(attack, with_sybils);
        let (_, peak) = heap();
        assert_eq!(report.delivery, 1.0, "{}", report.name);
        let mib = peak.saturating_sub(base) as f64 / honest / MIB;
        println!(
            "{:<28} {mib:6.2} MiB per honest node at the peak",
            report.name
        );
        mib
    };
    let without = peak_per_node(Attack::SilentSink, false);
    for attack in Attack::ALL {
        let with = peak_per_node(attack, true);
        assert!(
            with <= 150.0 + 30.0 * 25.0,
            "{}: {with:.2} MiB per honest node",
            attack.name()
        );
        assert!(
            with <= 6.0 * without,
            "{}: {with:.2} MiB per honest node against {without:.2} without Sybils",
            attack.name()
        );
    }
}
