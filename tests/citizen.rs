//! A good citizen of a composed swarm, over real swarms (memory transport, noise, yamux):
//! gossip never closes a connection other protocols share; membership, catch-up and clock
//! trouble are reported as events; signed envelopes leave a node and enter another.

mod common;

use common::now_ms;
use common::raw::{Raw, Reading};
use common::swarm::{Node, NodeEvent, WAIT, connect, listen, new_swarm};
use futures::{AsyncWriteExt, StreamExt};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{PeerId, Swarm, ping};
use secure_gossip::codec::encode_frame;
use secure_gossip::{
    Behaviour, Config, Envelope, Event, Frame, ImportError, Keypair, PROTOCOL_NAME,
};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(NetworkBehaviour)]
struct Composed {
    gossip: Behaviour,
    ping: ping::Behaviour,
}

#[derive(NetworkBehaviour)]
struct Hostile {
    stream: libp2p_stream::Behaviour,
    ping: ping::Behaviour,
}

fn pings() -> ping::Behaviour {
    ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_millis(50)))
}

/// Drives `swarm` until `pick` accepts an event; panics after `WAIT`, or if the connection
/// to `peer` closes meanwhile.
async fn until<T>(
    swarm: &mut Swarm<Composed>,
    peer: PeerId,
    mut pick: impl FnMut(&SwarmEvent<ComposedEvent>) -> Option<T>,
) -> T {
    tokio::time::timeout(*WAIT, async {
        loop {
            let event = swarm.select_next_some().await;
            if let SwarmEvent::ConnectionClosed { peer_id, .. } = &event {
                assert_ne!(*peer_id, peer, "the shared connection was closed");
            }
            if let SwarmEvent::Behaviour(ComposedEvent::Gossip(Event::Message {
                message, ..
            })) = &event
            {
                panic!("gossip accepted from a banned peer: {:?}", message.id);
            }
            if let Some(t) = pick(&event) {
                return t;
            }
        }
    })
    .await
    .expect("the awaited event came in time")
}

/// Writes `bytes` on a new gossip substream to `to`, in a task of its own: the victim's swarm
/// must be polled meanwhile (its connection's events would otherwise fill their channel and
/// hold up the substream's negotiation).
fn write_on_new_stream(mut control: libp2p_stream::Control, to: PeerId, bytes: Vec<u8>) {
    tokio::spawn(async move {
        if let Ok(mut stream) = control.open_stream(to, PROTOCOL_NAME).await {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.flush().await;
            // Kept open until the victim has read it.
            tokio::time::sleep(*WAIT).await;
        }
    });
}

/// A frame with one fresh, validly signed envelope.
fn fresh_frame(keys: &Keypair, sequence: u64) -> (secure_gossip::MessageId, Vec<u8>) {
    let envelope = Envelope::sign(keys, sequence, now_ms(), b"after the ban".to_vec()).unwrap();
    let id = envelope.id();
    let frame = Frame {
        messages: vec![envelope],
        ..Frame::default()
    };
    (id, encode_frame(&frame))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_violation_stops_gossip_for_the_ban_and_leaves_the_shared_connection_to_ping() {
    let ban = Duration::from_millis(1_500);
    let config = Config::builder().violation_ban(ban).build().unwrap();
    let mut victim = new_swarm(|_| Composed {
        gossip: Behaviour::new(Keypair::generate(), config),
        ping: pings(),
    });
    let addr = listen(&mut victim).await;

    // The hostile peer: gossip by hand over raw streams, and ping, on one connection.
    let mut hostile = new_swarm(|_| Hostile {
        stream: libp2p_stream::Behaviour::new(),
        ping: pings(),
    });
    let hostile_id = *hostile.local_peer_id();
    let mut control = hostile.behaviour().stream.new_control();
    let mut incoming = control.accept(PROTOCOL_NAME).unwrap();
    hostile.dial(addr).unwrap();
    let (pinged, mut pings_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut streams = Vec::new();
        loop {
            tokio::select! {
                event = hostile.select_next_some() => {
                    if let SwarmEvent::Behaviour(HostileEvent::Ping(e)) = event {
                        let _ = pinged.send(e.result.is_ok());
                    }
                }
                // The victim's own substreams: kept open, never read.
                Some((_, stream)) = incoming.next() => streams.push(stream),
            }
        }
    });

    let connection = until(&mut victim, hostile_id, |e| match e {
        SwarmEvent::ConnectionEstablished {
            peer_id,
            connection_id,
            ..
        } if *peer_id == hostile_id => Some(*connection_id),
        _ => None,
    })
    .await;
    until(&mut victim, hostile_id, |e| match e {
        SwarmEvent::Behaviour(ComposedEvent::Gossip(Event::PeerUp { peer })) => {
            (*peer == hostile_id).then_some(())
        }
        _ => None,
    })
    .await;

    // A 16 MiB length prefix: a violation.
    let victim_id = *victim.local_peer_id();
    write_on_new_stream(control.clone(), victim_id, vec![0x80, 0x80, 0x80, 0x08]);
    let (mut violated, mut down) = (false, false);
    until(&mut victim, hostile_id, |e| {
        match e {
            SwarmEvent::Behaviour(ComposedEvent::Gossip(Event::PeerViolation { peer, .. })) => {
                violated |= *peer == hostile_id
            }
            SwarmEvent::Behaviour(ComposedEvent::Gossip(Event::PeerDown { peer })) => {
                down |= *peer == hostile_id
            }
            _ => {}
        }
        (violated && down).then_some(())
    })
    .await;
    let banned_at = std::time::Instant::now();

    // During the ban: a valid fresh message on a new gossip substream is not accepted (the
    // `until` loop fails on any delivery), and ping keeps working on the same connection.
    let author = Keypair::generate();
    let (id, frame) = fresh_frame(&author, 1);
    write_on_new_stream(control.clone(), victim_id, frame.clone());
    while pings_rx.try_recv().is_ok() {}
    let mut ok = 0;
    until(&mut victim, hostile_id, |e| match e {
        SwarmEvent::Behaviour(ComposedEvent::Ping(ping::Event {
            peer,
            connection: c,
            result: Ok(_),
        })) if *peer == hostile_id && *c == connection => {
            ok += 1;
            (ok >= 3).then_some(())
        }
        _ => None,
    })
    .await;
    assert!(
        tokio::time::timeout(*WAIT, pings_rx.recv()).await.unwrap() == Some(true),
        "the hostile side's pings succeed too"
    );
    assert!(!victim.behaviour().gossip.knows(&id));

    // The ban ends: gossip resumes on the same connection, and the same message is accepted.
    until(&mut victim, hostile_id, |e| match e {
        SwarmEvent::Behaviour(ComposedEvent::Gossip(Event::PeerUp { peer })) => {
            (*peer == hostile_id).then_some(())
        }
        _ => None,
    })
    .await;
    assert!(banned_at.elapsed() >= ban, "not before the ban ended");
    assert!(
        !victim.behaviour().gossip.knows(&id),
        "nothing accepted during the ban"
    );
    write_on_new_stream(control.clone(), victim_id, frame);
    let delivered = tokio::time::timeout(*WAIT, async {
        loop {
            if let SwarmEvent::Behaviour(ComposedEvent::Gossip(Event::Message {
                message,
                propagation_source,
            })) = victim.select_next_some().await
            {
                return (message.id, propagation_source);
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(delivered, (id, hostile_id));
    assert!(
        victim.is_connected(&hostile_id),
        "the connection was never closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_going_up_and_down_and_catching_up_are_reported() {
    let mut a = Node::spawn(Config::default()).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(a.publish(format!("history {i}")).await);
    }
    let mut b = Node::spawn(Config::default()).await;
    connect(&mut b, &mut a).await;
    b.wait_for(|e| matches!(e, NodeEvent::PeerUp(p) if *p == a.peer_id).then_some(()))
        .await;
    // Caught up only once the history has arrived.
    let mut before = Vec::new();
    loop {
        let event = b
            .wait_for(|e| match e {
                NodeEvent::Message(m, _) => Some(Some(m.id)),
                NodeEvent::CaughtUp(p) if *p == a.peer_id => Some(None),
                _ => None,
            })
            .await;
        match event {
            Some(id) => before.push(id),
            None => break,
        }
    }
    before.sort();
    ids.sort();
    assert_eq!(
        before, ids,
        "every message of the history came before CaughtUp"
    );
    a.wait_for(|e| matches!(e, NodeEvent::CaughtUp(p) if *p == b.peer_id).then_some(()))
        .await;
    b.disconnect(a.peer_id).await;
    b.wait_for(|e| matches!(e, NodeEvent::PeerDown(p) if *p == a.peer_id).then_some(()))
        .await;
    a.wait_for(|e| matches!(e, NodeEvent::PeerDown(p) if *p == b.peer_id).then_some(()))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_clock_is_reported_with_the_estimated_offset() {
    let mut node = Node::spawn(Config::default()).await;
    let mut raw = Raw::connect(&mut node, Reading::Count).await;
    // Peers whose clocks are two hours ahead of this node's (as if this node's were behind).
    let ahead = 2 * 3_600_000;
    let messages = (0..24u8)
        .map(|i| {
            let keys = Keypair::from_seed(&[i + 1; 32]);
            Envelope::sign(&keys, 1, now_ms() + ahead, b"from the future".to_vec()).unwrap()
        })
        .collect();
    raw.send(&Frame {
        messages,
        ..Frame::default()
    })
    .await
    .unwrap();
    let offset = node
        .wait_for(|e| match e {
            NodeEvent::ClockSkew(offset) => Some(*offset),
            _ => None,
        })
        .await;
    assert!(
        (offset - ahead as i64).abs() < 60_000,
        "estimated offset {offset} ms, peers are {ahead} ms ahead"
    );
    let stats = node.stats().await.stats;
    assert_eq!((stats.too_new, stats.too_old), (24, 0));
    let events = node.drain_events().await;
    assert!(
        !events.iter().any(|e| matches!(e, NodeEvent::ClockSkew(_))),
        "reported once: {events:?}"
    );
    let _ = raw.peer_id;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_envelope_leaves_one_node_and_is_imported_and_gossiped_by_another() {
    let mut a = Node::spawn(Config::default()).await;
    let mut b = Node::spawn(Config::default()).await;
    connect(&mut a, &mut b).await;
    let id = a.publish(b"keep the proof".to_vec()).await;
    let message = b.message(id).await;
    let bytes = message.envelope().to_bytes();

    // Another network: c imports what b exported, and gossips it to d.
    let mut c = Node::spawn(Config::default()).await;
    let mut d = Node::spawn(Config::default()).await;
    connect(&mut c, &mut d).await;
    let envelope = Envelope::from_bytes(&bytes).unwrap();
    assert_eq!(c.import(envelope.clone()).await, Ok(id));
    assert_eq!(d.message(id).await.payload, message.payload);
    assert_eq!(c.import(envelope).await, Err(ImportError::AlreadyKnown));
    assert!(
        c.pending_messages().await.is_empty(),
        "an import is not delivered to the node that imported it"
    );
    assert_eq!(
        c.stats().await.stored.0,
        1,
        "held, so served to late joiners"
    );

    // A copy altered after signing is refused, as from a peer.
    let mut altered = bytes.clone();
    let at = altered
        .windows(4)
        .position(|w| w == b"keep")
        .expect("the payload is in the encoding");
    altered[at] = b'K';
    let e = Node::spawn(Config::default()).await;
    assert_eq!(
        e.import(Envelope::from_bytes(&altered).unwrap()).await,
        Err(ImportError::InvalidSignature)
    );
}
