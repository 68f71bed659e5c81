//! The broadcast tree: it forms, it saves bytes, it repairs, and a peer that ignores tree
//! control still gets and gives every message.

mod common;

use common::now_ms;
use common::raw::{Raw, Reading};
use common::swarm::{Node, connect};
use secure_gossip::sim::{SimConfig, Simulation};
use secure_gossip::{Config, Envelope, Frame, Keypair};
use std::time::Duration;

#[test]
fn one_authors_messages_cross_each_node_once_when_the_tree_has_formed() {
    let mut sim = Simulation::new(SimConfig {
        nodes: 100,
        ..SimConfig::default()
    });
    sim.run_for(2_000);
    for k in 0..20 {
        sim.publish(0, format!("warm {k}"));
        sim.run_for(50);
    }
    sim.run_for(2_000);
    let before = sim.report();
    for k in 0..50 {
        sim.publish(0, format!("m {k}"));
        sim.run_for(50);
    }
    sim.run_for(2_000);
    let after = sim.report();
    let rmr = after.rmr_since(&before);
    println!("single author, 100 nodes, tree formed: RMR {rmr:.3}");
    assert!(rmr <= 0.1, "RMR {rmr}");
    assert_eq!(after.delivery_ratio, 1.0);
    sim.check_invariants();
}

#[test]
fn the_tree_repairs_after_a_node_fails_within_the_graft_timeout_and_a_round_trip() {
    let mut sim = Simulation::new(SimConfig {
        nodes: 60,
        latency: (10, 10),
        ..SimConfig::default()
    });
    sim.run_for(2_000);
    for k in 0..20 {
        sim.publish(0, format!("warm {k}"));
        sim.run_for(50);
    }
    sim.run_for(1_000);
    // Every node but the author and the failed one must still get each later message, within
    // flooding's delay plus the graft timeout (100 ms) and a round trip (20 ms), on every
    // message after the failure.
    sim.take_down(7);
    sim.run_for(10);
    let before = sim.report();
    for k in 0..10 {
        sim.publish(0, format!("after {k}"));
        sim.run_for(200);
    }
    sim.run_for(2_000);
    let after = sim.report();
    assert_eq!(after.delivery_ratio, 1.0);
    assert!(
        after.last_delivery_ms <= before.last_delivery_ms.max(400) + 120,
        "last delivery {} ms",
        after.last_delivery_ms
    );
}

/// A peer that never sends tree control and ignores it, as a v1 peer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_ignores_tree_control_still_gets_and_gives_every_message() {
    let config = Config::builder()
        .want_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut honest = Node::spawn(config.clone()).await;
    let mut node = Node::spawn(config).await;
    connect(&mut honest, &mut node).await;
    let old = Raw::connect(&mut node, Reading::Keep).await;
    let mut old = old;
    let first = honest.publish(b"first".to_vec()).await;
    node.message(first).await;
    let pushed = old.wait_until(|r| r.ids.contains(&first)).await;
    // After the connection's grace, the old peer pushes the same message back: a duplicate
    // over an eager link. The node prunes the link and tells the peer.
    tokio::time::sleep(Duration::from_millis(150)).await; // protocol time: the grace
    let copy = pushed
        .kept
        .iter()
        .flat_map(|f| f.messages.iter())
        .find(|e| e.id() == first)
        .unwrap()
        .clone();
    old.send(&Frame {
        messages: vec![copy],
        ..Frame::default()
    })
    .await
    .unwrap();
    let r = old.wait_until(|r| r.kept.iter().any(|f| f.prune)).await;
    let pruned_at = r.frames;
    // Later messages reach it as announcements, which it can pull like any v1 peer.
    let second = honest.publish(b"second".to_vec()).await;
    node.message(second).await;
    old.wait_until(|r| {
        r.kept[pruned_at as usize..]
            .iter()
            .any(|f| f.have.iter().any(|d| d.ranges.contains(second.sequence)))
    })
    .await;
    // It ignores the prune and pushes a new message of its own: accepted and passed on.
    let own = Envelope::sign(
        &Keypair::generate(),
        1,
        now_ms(),
        b"from the old peer".to_vec(),
    )
    .unwrap();
    old.send(&Frame {
        messages: vec![own.clone()],
        ..Frame::default()
    })
    .await
    .unwrap();
    node.message(own.id()).await;
    honest.message(own.id()).await;
}
