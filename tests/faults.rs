//! Faults over real swarms (memory transport, noise, yamux): partitions, a link that keeps
//! dropping, a node restarted without its state. Once the faults stop, every node holds every
//! message, each delivered once.

mod common;

use common::swarm::{Node, assert_no_more_messages, cut, distinct_ids, link, nodes};
use secure_gossip::{Config, Keypair, MessageId};
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_halves_of_a_partition_publish_and_converge_after_it_heals() {
    // Two triangles joined by one bridge (2 — 3).
    let mut n = nodes(6, &Config::default()).await;
    for (a, b) in [(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3), (2, 3)] {
        link(&mut n, a, b).await;
    }
    cut(&mut n, 2, 3).await;
    let mut left = HashSet::new();
    let mut right = HashSet::new();
    for k in 0..5 {
        left.insert(n[k % 3].publish(format!("left {k}")).await);
        right.insert(n[3 + k % 3].publish(format!("right {k}")).await);
    }
    // Each side gets its own side's messages (its own excepted).
    for (i, node) in n.iter().enumerate() {
        let own = node.publish(format!("own {i}")).await;
        if i < 3 {
            left.insert(own);
        } else {
            right.insert(own);
        }
    }
    for (i, node) in n.iter_mut().enumerate() {
        let side = if i < 3 { &left } else { &right };
        let authored = side.iter().filter(|id| id.author == node.author).count();
        let got = distinct_ids(node, side.len() - authored).await;
        assert!(
            got.is_subset(side),
            "node {i} got a message across the partition"
        );
    }
    // Heal: everyone gets the other side's messages, once.
    link(&mut n, 3, 2).await;
    for (i, node) in n.iter_mut().enumerate() {
        let other = if i < 3 { &right } else { &left };
        assert_eq!(&distinct_ids(node, other.len()).await, other, "node {i}");
    }
    assert_no_more_messages(&mut n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_keeps_dropping_loses_nothing() {
    let mut n = nodes(3, &Config::default()).await;
    link(&mut n, 0, 1).await;
    link(&mut n, 1, 2).await;
    let mut sent = Vec::new();
    for round in 0..10 {
        // Publish on both ends, then kill the 0 — 1 link while those frames are in flight.
        for k in 0..3 {
            sent.push(n[0].publish(format!("0: {round}.{k}")).await);
            sent.push(n[2].publish(format!("2: {round}.{k}")).await);
        }
        cut(&mut n, 0, 1).await;
        sent.push(n[2].publish(format!("2: while down {round}")).await);
        link(
            &mut n,
            if round % 2 == 0 { 0 } else { 1 },
            if round % 2 == 0 { 1 } else { 0 },
        )
        .await;
    }
    let from_0: HashSet<MessageId> = sent
        .iter()
        .filter(|i| i.author == n[0].author)
        .copied()
        .collect();
    let from_2: HashSet<MessageId> = sent
        .iter()
        .filter(|i| i.author == n[2].author)
        .copied()
        .collect();
    assert_eq!(distinct_ids(&mut n[0], from_2.len()).await, from_2);
    assert_eq!(distinct_ids(&mut n[2], from_0.len()).await, from_0);
    let all: HashSet<MessageId> = sent.iter().copied().collect();
    assert_eq!(distinct_ids(&mut n[1], all.len()).await, all);
    assert_no_more_messages(&mut n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_without_state_catches_up_over_a_new_connection() {
    let keys = Keypair::generate();
    let mut n = nodes(2, &Config::default()).await;
    n.push(Node::spawn_with(keys.clone(), Config::default()).await);
    link(&mut n, 0, 1).await;
    link(&mut n, 1, 2).await;
    let before = n[0].publish(b"before the restart".to_vec()).await;
    let mine = n[2].publish(b"from the node that restarts".to_vec()).await;
    assert_eq!(n[2].next_message().await.0.id, before);
    assert_eq!(n[0].next_message().await.0.id, mine);
    n[1].messages(2).await;

    // Node 2 goes away; messages are published meanwhile.
    let old = n.pop().unwrap();
    let old_peer = old.peer_id;
    old.shutdown();
    n[1].disconnected(old_peer).await;
    let during = n[0].publish(b"while it was away".to_vec()).await;
    n[1].next_message().await;

    // It comes back with the same key and no state, on a new connection.
    n.push(Node::spawn_with(keys, Config::default()).await);
    link(&mut n, 2, 1).await;
    let got = distinct_ids(&mut n[2], 2).await;
    assert_eq!(
        got,
        HashSet::from([before, during]),
        "it catches up on everything retained"
    );
    // Its own earlier message is not delivered to it, and its new sequence is fresh.
    let next = n[2].publish(b"after the restart".to_vec()).await;
    assert!(
        next.sequence > mine.sequence,
        "a restarted author reused a sequence"
    );
    assert_eq!(n[0].next_message().await.0.id, next);
    assert!(n[2].pending_messages().await.is_empty());
}
