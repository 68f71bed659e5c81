//! Scenarios over real libp2p swarms (memory transport, noise, yamux), one task per node.

mod common;

use common::seed_from_env;
use common::swarm::{NodeEvent, assert_no_more_messages, link, listen, new_swarm, nodes};
use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, ping};
use secure_gossip::sim::Rng;
use secure_gossip::{Behaviour, Config, Event, Keypair, MessageId};
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_of_three_delivers_once_to_both_others_with_the_author() {
    let mut n = nodes(3, &Config::default()).await;
    link(&mut n, 0, 1).await;
    link(&mut n, 1, 2).await;

    let id = n[0].publish(b"hello warld".to_vec()).await;
    for i in [1, 2] {
        let (message, _) = n[i].next_message().await;
        assert_eq!(message.id, id);
        assert_eq!(&message.payload[..], b"hello warld");
        assert_eq!(message.author.to_string(), n[0].author.to_string());
        assert!(message.author.to_string().ends_with(".ed25519"));
    }
    // A later message is a barrier: anything sent before it has arrived.
    let last = n[0].publish(b"last".to_vec()).await;
    for i in [1, 2] {
        assert_eq!(n[i].next_message().await.0.id, last);
    }
    // No duplicate at 1 or 2, nothing at all at the author.
    assert_no_more_messages(&mut n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_of_four_delivers_every_message_once_everywhere() {
    let mut n = nodes(4, &Config::default()).await;
    for (a, b) in [(0, 1), (1, 2), (2, 3), (3, 0)] {
        link(&mut n, a, b).await;
    }
    let mut published = Vec::new();
    for (i, node) in n.iter().enumerate() {
        published.push((i, node.publish(format!("from {i}")).await));
    }
    for (i, node) in n.iter_mut().enumerate() {
        let got: HashSet<MessageId> = node.messages(3).await.into_iter().map(|m| m.id).collect();
        let expected: HashSet<MessageId> = published
            .iter()
            .filter(|(a, _)| *a != i)
            .map(|(_, id)| *id)
            .collect();
        assert_eq!(got, expected, "node {i}");
    }
    assert_no_more_messages(&mut n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_while_a_link_is_down_arrive_after_the_redial() {
    let mut n = nodes(2, &Config::default()).await;
    link(&mut n, 0, 1).await;
    let before = n[0].publish(b"before".to_vec()).await;
    assert_eq!(n[1].next_message().await.0.id, before);

    let (a, b) = (n[0].peer_id, n[1].peer_id);
    n[0].disconnect(b).await;
    n[0].disconnected(b).await;
    n[1].disconnected(a).await;

    let during: Vec<MessageId> = vec![
        n[0].publish(b"during 1".to_vec()).await,
        n[0].publish(b"during 2".to_vec()).await,
        n[0].publish(b"during 3".to_vec()).await,
    ];
    link(&mut n, 1, 0).await;
    let got: Vec<MessageId> = n[1].messages(3).await.into_iter().map(|m| m.id).collect();
    assert_eq!(got, during, "in publication order, none lost");
    assert!(
        n[1].pending_messages().await.is_empty(),
        "`before` came again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_graph_of_thirty_delivers_a_hundred_messages_exactly_once() {
    let seed = seed_from_env(30);
    println!("seed {seed} (rerun with SEED={seed})");
    let mut rng = Rng::new(seed);
    const N: usize = 30;
    let mut n = nodes(N, &Config::default()).await;
    // A random spanning tree keeps the graph connected; extra random edges make loops.
    let mut edges = HashSet::new();
    for i in 1..N {
        edges.insert((rng.index(i), i));
    }
    while edges.len() < N + N / 2 {
        let (a, b) = (rng.index(N), rng.index(N));
        if a != b && !edges.contains(&(b, a)) {
            edges.insert((a, b));
        }
    }
    let mut edges: Vec<_> = edges.into_iter().collect();
    edges.sort();
    for &(a, b) in &edges {
        link(&mut n, a, b).await;
    }

    let mut authored = vec![0usize; N];
    let mut ids = HashSet::new();
    for k in 0..100 {
        let author = rng.index(N);
        authored[author] += 1;
        assert!(ids.insert(n[author].publish(format!("message {k}")).await));
    }
    for (i, node) in n.iter_mut().enumerate() {
        let expected = 100 - authored[i];
        let got = node.messages(expected).await;
        let unique: HashSet<MessageId> = got.iter().map(|m| m.id).collect();
        assert_eq!(
            unique.len(),
            expected,
            "node {i} (seed {seed}): a duplicate"
        );
        assert!(unique.is_subset(&ids));
        assert!(
            got.iter().all(|m| m.author != node.author),
            "node {i} got its own"
        );
    }
    assert_no_more_messages(&mut n).await;
    for (i, node) in n.iter_mut().enumerate() {
        let stats = node.stats().await.stats;
        assert_eq!(stats.delivered as usize, 100 - authored[i], "node {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_receives_what_was_published_before_it_connected() {
    let mut n = nodes(3, &Config::default()).await;
    link(&mut n, 0, 1).await;
    // Published with no peer at all, then with one.
    let alone = n[2].publish(b"alone".to_vec()).await;
    let mut expected = vec![alone];
    for k in 0..5 {
        expected.push(n[0].publish(format!("early {k}")).await);
    }
    n[1].messages(5).await;
    link(&mut n, 2, 1).await;
    let got: HashSet<MessageId> = n[2].messages(5).await.into_iter().map(|m| m.id).collect();
    assert_eq!(got, expected[1..].iter().copied().collect());
    let at_0: HashSet<MessageId> = n[0].messages(1).await.into_iter().map(|m| m.id).collect();
    assert_eq!(
        at_0,
        HashSet::from([alone]),
        "the message published alone went out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_manual_mode_only_gossip_moves_messages() {
    let manual = Config::builder()
        .eager_push(false)
        .gossip_interval(None)
        .build()
        .unwrap();
    let mut n = nodes(3, &manual).await;
    link(&mut n, 0, 1).await;
    link(&mut n, 1, 2).await;
    let id = n[0].publish(b"by hand".to_vec()).await;
    // Barrier through every node: nothing has been delivered.
    assert_no_more_messages(&mut n).await;
    n[0].gossip().await;
    assert_eq!(n[1].next_message().await.0.id, id);
    assert!(
        n[2].pending_messages().await.is_empty(),
        "node 2 got it without a round at 1"
    );
    n[1].gossip().await;
    assert_eq!(n[2].next_message().await.0.id, id);
    assert_eq!(n[0].stats().await.stats.published, 1);
}

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct PingOnly {
    ping: ping::Behaviour,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_the_protocol_is_reported_once_and_left_alone() {
    let mut n = nodes(2, &Config::default()).await;
    // The stranger speaks ping only; it reports when a connection of its closes.
    let mut stranger = new_swarm(|_| PingOnly {
        ping: ping::Behaviour::default(),
    });
    let stranger_addr = listen(&mut stranger).await;
    let stranger_id = *stranger.local_peer_id();
    let (tx, mut stranger_closed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::ConnectionClosed { .. } = stranger.select_next_some().await
                && tx.send(()).is_err()
            {
                return;
            }
        }
    });

    // gossip 0 — stranger — and gossip 0 — gossip 1.
    n[0].dial(stranger_addr);
    n[0].connected(stranger_id).await;
    link(&mut n, 0, 1).await;
    n[0].wait_for(|e| matches!(e, NodeEvent::Unsupported(p) if *p == stranger_id).then_some(()))
        .await;
    // Gossip between the two speakers is unaffected.
    let id = n[0].publish(b"still works".to_vec()).await;
    assert_eq!(n[1].next_message().await.0.id, id);
    let id = n[1].publish(b"both ways".to_vec()).await;
    assert_eq!(n[0].next_message().await.0.id, id);
    // The stranger's connection is still open (we did not close it), and it is not a
    // gossip peer.
    let snapshot = n[0].stats().await;
    assert_eq!(snapshot.gossip_peers, vec![n[1].peer_id]);
    assert!(
        snapshot.connected.contains(&stranger_id),
        "connection to the stranger closed"
    );
    assert!(
        stranger_closed.try_recv().is_err(),
        "the stranger saw its connection close"
    );
    // Reported once only: nothing more about the stranger before a later message.
    n[1].publish(b"marker".to_vec()).await;
    let reported_again = n[0]
        .wait_for(|e| match e {
            NodeEvent::Unsupported(_) => Some(true),
            NodeEvent::Message(..) => Some(false),
            _ => None,
        })
        .await;
    assert!(!reported_again, "unsupported reported twice");
}

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Composed {
    gossip: Behaviour,
    ping: ping::Behaviour,
    identify: identify::Behaviour,
}

fn composed(key: &libp2p::identity::Keypair) -> Composed {
    Composed {
        gossip: Behaviour::new(Keypair::try_from_libp2p(key).unwrap(), Config::default()),
        ping: ping::Behaviour::default(),
        identify: identify::Behaviour::new(identify::Config::new("/test/1".into(), key.public())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composes_with_ping_and_identify_and_signs_with_the_transport_key() {
    let mut a = new_swarm(composed);
    let mut b = new_swarm(composed);
    let b_addr = listen(&mut b).await;
    listen(&mut a).await;
    a.dial(b_addr).unwrap();
    let a_author = a.behaviour().gossip.public_key();
    let mut published = None;
    let (mut got_message, mut got_ping, mut got_identify) = (false, false, false);
    let deadline = tokio::time::sleep(*common::swarm::WAIT);
    tokio::pin!(deadline);
    while !(got_message && got_ping && got_identify) {
        tokio::select! {
            event = a.select_next_some() => {
                if let SwarmEvent::ConnectionEstablished { .. } = event {
                    published = Some(a.behaviour_mut().gossip.publish(b"composed".to_vec()).unwrap());
                }
            }
            event = b.select_next_some() => match event {
                SwarmEvent::Behaviour(ComposedEvent::Gossip(Event::Message { message, .. })) => {
                    assert_eq!(Some(message.id), published);
                    assert_eq!(message.author, a_author);
                    got_message = true;
                }
                SwarmEvent::Behaviour(ComposedEvent::Ping(ping::Event { result: Ok(_), .. })) => {
                    got_ping = true;
                }
                SwarmEvent::Behaviour(ComposedEvent::Identify(identify::Event::Received { info, .. })) => {
                    assert!(info.protocols.contains(&secure_gossip::PROTOCOL_NAME));
                    got_identify = true;
                }
                _ => {}
            },
            _ = &mut deadline => panic!("composed swarms did not exchange all events"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_eager_push_off_the_round_timer_alone_moves_messages() {
    let lazy = Config::builder()
        .eager_push(false)
        .gossip_interval(Some(std::time::Duration::from_millis(20)))
        .build()
        .unwrap();
    let mut n = nodes(3, &lazy).await;
    link(&mut n, 0, 1).await;
    link(&mut n, 1, 2).await;
    // Nobody calls gossip(): only the behaviours' timers run rounds (have -> want -> message).
    let id = n[0].publish(b"carried by rounds".to_vec()).await;
    assert_eq!(n[1].next_message().await.0.id, id);
    assert_eq!(n[2].next_message().await.0.id, id);
    let id = n[2].publish(b"and back".to_vec()).await;
    assert_eq!(n[0].next_message().await.0.id, id);
}
