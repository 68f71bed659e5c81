//! What a production user relies on, over real swarms (memory transport, noise, yamux):
//! application validation, author filters, separate networks by protocol name, and metrics.

mod common;

use common::swarm::{Node, assert_no_more_messages, connect, listen, new_swarm};
use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use secure_gossip::{AuthorFilter, Behaviour, Config, Event, Keypair, Validation};
use std::time::Duration;

fn validating() -> Config {
    Config::builder().validate_messages(true).build().unwrap()
}

/// A line author — middle — far, where the middle node validates.
async fn line(middle: Config) -> (Node, Node, Node) {
    let mut author = Node::spawn(Config::default()).await;
    let mut middle = Node::spawn(middle).await;
    let mut far = Node::spawn(Config::default()).await;
    connect(&mut author, &mut middle).await;
    connect(&mut middle, &mut far).await;
    (author, middle, far)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_middle_node_rejects_never_reaches_the_far_node() {
    let (author, mut middle, mut far) = line(validating()).await;
    let bad = author.publish(b"spam".to_vec()).await;
    assert_eq!(
        middle.next_message().await.0.id,
        bad,
        "delivered for validation"
    );
    assert!(middle.validate(bad, Validation::Reject).await);
    assert!(
        !middle.validate(bad, Validation::Accept).await,
        "decided once"
    );
    // A later message that the middle node accepts crosses; the rejected one never does.
    let good = author.publish(b"fine".to_vec()).await;
    assert_eq!(middle.next_message().await.0.id, good);
    assert!(middle.validate(good, Validation::Accept).await);
    assert_eq!(far.next_message().await.0.id, good);
    assert_no_more_messages(&mut [middle, far]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_middle_node_accepts_reaches_the_far_node() {
    let (author, mut middle, mut far) = line(validating()).await;
    let id = author.publish(b"hello".to_vec()).await;
    assert_eq!(middle.next_message().await.0.id, id);
    assert!(middle.validate(id, Validation::Accept).await);
    assert_eq!(far.next_message().await.0.id, id);
    // The id is known at the middle node: a copy is never delivered again.
    assert_no_more_messages(&mut [middle, far]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecided_message_times_out_as_ignored_and_is_never_forwarded() {
    let config = Config::builder()
        .validate_messages(true)
        .validation_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let (author, mut middle, mut far) = line(config).await;
    let late = author.publish(b"too slow".to_vec()).await;
    assert_eq!(middle.next_message().await.0.id, late);
    // Protocol time: let the verdict's deadline pass.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !middle.validate(late, Validation::Accept).await,
        "timed out"
    );
    let next = author.publish(b"next".to_vec()).await;
    assert_eq!(middle.next_message().await.0.id, next);
    assert!(middle.validate(next, Validation::Accept).await);
    assert_eq!(far.next_message().await.0.id, next);
    assert_eq!(middle.stats().await.stats.ignored, 1);
    assert_no_more_messages(&mut [middle, far]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_few_verdict_slots_nothing_accepted_is_dropped() {
    let config = Config::builder()
        .validate_messages(true)
        .max_pending_validations(2)
        .build()
        .unwrap();
    let (author, mut middle, mut far) = line(config).await;
    let mut ids = Vec::new();
    for k in 0..20u8 {
        ids.push(author.publish(vec![k]).await);
    }
    // The middle node reads no more while two wait; each verdict lets more in.
    for _ in 0..20 {
        let (message, _) = middle.next_message().await;
        assert!(middle.validate(message.id, Validation::Accept).await);
    }
    let got = common::swarm::distinct_ids(&mut far, 20).await;
    assert_eq!(got, ids.into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_group_ignores_an_outsiders_flood_entirely() {
    let keys: Vec<Keypair> = (0..3).map(|_| Keypair::generate()).collect();
    let group = AuthorFilter::allow(keys.iter().map(Keypair::public));
    let config = Config::builder().author_filter(group).build().unwrap();
    let mut members = Vec::new();
    for k in &keys {
        members.push(Node::spawn_with(k.clone(), config.clone()).await);
    }
    common::swarm::link(&mut members, 0, 1).await;
    common::swarm::link(&mut members, 1, 2).await;
    let mut outsider = Node::spawn(Config::default()).await;
    connect(&mut outsider, &mut members[0]).await;
    for k in 0..100u8 {
        outsider.publish(vec![k]).await;
    }
    let id = members[2].publish(b"members only".to_vec()).await;
    assert_eq!(members[0].next_message().await.0.id, id);
    assert_eq!(members[1].next_message().await.0.id, id);
    let member = members[0].stats().await.stats;
    assert_no_more_messages(&mut members).await;
    assert_eq!(
        member.verified, 1,
        "no signature of the outsider was ever checked"
    );
    // And nothing of the outsider's is kept or passed on.
    let snapshot = members[1].stats().await.stats;
    assert_eq!(snapshot.filtered, 0, "never even forwarded to member 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_author_blocked_at_run_time_is_no_longer_delivered() {
    let mut a = Node::spawn(Config::default()).await;
    let mut b = Node::spawn(Config::default()).await;
    connect(&mut a, &mut b).await;
    let first = b.publish(b"one".to_vec()).await;
    assert_eq!(a.next_message().await.0.id, first);
    a.block(b.author).await;
    let second = b.publish(b"two".to_vec()).await;
    let _ = second;
    // A third author's message as a barrier.
    let mut c = Node::spawn(Config::default()).await;
    connect(&mut c, &mut a).await;
    let third = c.publish(b"three".to_vec()).await;
    assert_eq!(a.next_message().await.0.id, third);
    assert_no_more_messages(&mut [a]).await;
}

#[derive(NetworkBehaviour)]
struct TwoNetworks {
    red: Behaviour,
    blue: Behaviour,
}

fn two_networks(red: Keypair, blue: Keypair) -> TwoNetworks {
    let config = |name: &str| Config::builder().protocol_name(name).build().unwrap();
    TwoNetworks {
        red: Behaviour::new(red, config("/red/gossip/1.0.0")),
        blue: Behaviour::new(blue, config("/blue/gossip/1.0.0")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_protocol_names_in_one_swarm_are_two_networks() {
    let mut a = new_swarm(|_| two_networks(Keypair::generate(), Keypair::generate()));
    let mut b = new_swarm(|_| two_networks(Keypair::generate(), Keypair::generate()));
    listen(&mut a).await;
    let addr = listen(&mut b).await;
    a.dial(addr).unwrap();
    // Wait until both behaviours of both swarms gossip with the other side.
    loop {
        tokio::select! {
            _ = a.select_next_some() => {}
            _ = b.select_next_some() => {}
        }
        let ready = |s: &libp2p::Swarm<TwoNetworks>| {
            s.behaviour().red.gossip_peers().count() == 1
                && s.behaviour().blue.gossip_peers().count() == 1
        };
        if ready(&a) && ready(&b) {
            break;
        }
    }
    let red = a.behaviour_mut().red.publish(b"red".to_vec()).unwrap();
    let blue = a.behaviour_mut().blue.publish(b"blue".to_vec()).unwrap();
    let (mut got_red, mut got_blue) = (None, None);
    while got_red.is_none() || got_blue.is_none() {
        tokio::select! {
            _ = a.select_next_some() => {}
            event = b.select_next_some() => match event {
                SwarmEvent::Behaviour(TwoNetworksEvent::Red(Event::Message { message, .. })) => {
                    assert!(got_red.replace(message.id).is_none(), "red delivered twice");
                }
                SwarmEvent::Behaviour(TwoNetworksEvent::Blue(Event::Message { message, .. })) => {
                    assert!(got_blue.replace(message.id).is_none(), "blue delivered twice");
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        got_red,
        Some(red),
        "red's message stayed in the red network"
    );
    assert_eq!(
        got_blue,
        Some(blue),
        "blue's message stayed in the blue network"
    );
}

#[cfg(feature = "metrics")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_count_what_happened() {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;
    let mut registry = Registry::default();
    let behaviour =
        Behaviour::new_with_metrics(Keypair::generate(), Config::default(), &mut registry);
    let mut measured = Node::spawn_behaviour(behaviour).await;
    let mut other = Node::spawn(Config::default()).await;
    connect(&mut other, &mut measured).await;
    for k in 0..5u8 {
        measured.publish(vec![k]).await;
    }
    let mut ids = Vec::new();
    for k in 0..3u8 {
        ids.push(other.publish(vec![k]).await);
    }
    for id in ids {
        measured.message(id).await;
    }
    other.messages(5).await;
    measured.stats().await;
    // Metrics are read when the behaviour is next polled, and a write is counted when its
    // connection's task reports it done (after the peer may already have the bytes): round
    // trips through the behaviour until the written bytes are in.
    let mut text = String::new();
    for _ in 0..1_000 {
        measured.gossip().await;
        text.clear();
        encode(&mut text, &registry).unwrap();
        if text.contains("secure_gossip_wire_bytes_total{direction=\"out\"}") {
            break;
        }
        tokio::task::yield_now().await;
    }
    let value = |name: &str| common::process::metric(&text, name);
    assert_eq!(value("secure_gossip_messages_published_total"), 5.0);
    assert_eq!(value("secure_gossip_messages_delivered_total"), 3.0);
    assert_eq!(value("secure_gossip_signatures_verified_total"), 3.0);
    assert_eq!(value("secure_gossip_peers"), 1.0);
    assert_eq!(value("secure_gossip_stored_messages"), 8.0);
    assert_eq!(value("secure_gossip_tracked_authors"), 2.0);
    assert_eq!(value("secure_gossip_outstanding_wants"), 0.0);
    assert_eq!(value("secure_gossip_delivery_delay_seconds_count"), 3.0);
    assert!(value("secure_gossip_wire_bytes_total{direction=\"in\"}") > 0.0);
    assert!(value("secure_gossip_wire_bytes_total{direction=\"out\"}") > 0.0);
    for name in [
        "secure_gossip_duplicates_total",
        "secure_gossip_frames_dropped_total",
        "secure_gossip_stored_bytes",
    ] {
        value(name);
    }
    assert_eq!(
        value("secure_gossip_peer_violations_total{kind=\"malformed\"}"),
        0.0
    );
    // A peer that sends garbage is counted by kind.
    let mut raw = common::raw::Raw::connect(&mut measured, common::raw::Reading::Count).await;
    raw.send_bytes(&[0x02, 0x08, 0x01]).await.unwrap();
    measured
        .wait_for(|e| matches!(e, common::swarm::NodeEvent::Violation(..)).then_some(()))
        .await;
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("secure_gossip_peer_violations_total{kind=\"malformed\"} 1"),
        "{text}"
    );
}
