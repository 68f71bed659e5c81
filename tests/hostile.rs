//! A hostile peer writes raw bytes on `/secure-gossip/1.0.0` over a real swarm: every kind of
//! bad input is reported (this node's application then disconnects it, as the examples do),
//! and honest traffic carries on.

mod common;

use common::now_ms;
use common::swarm::{Node, NodeEvent, listen, new_swarm};
use futures::{AsyncWriteExt, StreamExt};
use libp2p::PeerId;
use secure_gossip::codec::encode_frame;
use secure_gossip::{Config, Envelope, Frame, Keypair, PROTOCOL_NAME, ViolationKind};

/// Connects a raw-stream peer to `node`, writes `bytes` on a gossip substream, and returns
/// the violation the node reported: its kind and text.
async fn send_raw(node: &mut Node, bytes: Vec<u8>) -> (ViolationKind, String) {
    let mut hostile = new_swarm(|_| libp2p_stream::Behaviour::new());
    listen(&mut hostile).await;
    let hostile_id: PeerId = *hostile.local_peer_id();
    let mut control = hostile.behaviour().new_control();
    // Accept (and ignore) the node's own substream, so the node sees a peer that speaks the
    // protocol.
    let mut incoming = control.accept(PROTOCOL_NAME).unwrap();
    hostile.dial(node.addr.clone()).unwrap();
    while !matches!(
        hostile.select_next_some().await,
        libp2p::swarm::SwarmEvent::ConnectionEstablished { .. }
    ) {}
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hostile.select_next_some() => {}
                _ = incoming.next() => {}
            }
        }
    });
    node.connected(hostile_id).await;
    let mut stream = control
        .open_stream(node.peer_id, PROTOCOL_NAME)
        .await
        .expect("the node speaks the protocol");
    stream.write_all(&bytes).await.unwrap();
    stream.flush().await.unwrap();
    let violation = node
        .wait_for(|e| match e {
            NodeEvent::Violation(p, kind, v) if *p == hostile_id => Some((*kind, v.clone())),
            _ => None,
        })
        .await;
    node.disconnected(hostile_id).await;
    violation
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_input_closes_the_connection_and_is_reported() {
    let mut node = Node::spawn(Config::default()).await;
    let mut honest = Node::spawn(Config::default()).await;
    common::swarm::connect(&mut honest, &mut node).await;

    // An oversize length prefix (16 MiB): refused before any body arrives.
    let (kind, v) = send_raw(&mut node, vec![0x80, 0x80, 0x80, 0x08]).await;
    assert_eq!(kind, ViolationKind::Malformed);
    assert!(v.contains("exceeds max_frame_size"), "{v}");

    // A non-minimal prefix.
    let (kind, v) = send_raw(&mut node, vec![0x82, 0x00, 0x20, 0x01]).await;
    assert_eq!(kind, ViolationKind::Malformed);
    assert!(v.contains("not minimal"), "{v}");

    // A body that does not decode.
    let (kind, v) = send_raw(&mut node, vec![0x02, 0x08, 0x01]).await;
    assert_eq!(kind, ViolationKind::Malformed);
    assert!(v.contains("does not decode"), "{v}");

    // Malformed ranges.
    let mut frame = Frame::default();
    frame.have.push(secure_gossip::Digest {
        author: Keypair::from_seed(&[3; 32]).public(),
        ranges: secure_gossip::RangeSet::from_range(1, 5),
    });
    let mut bytes = encode_frame(&frame);
    // The packed ranges [1, 5] end the frame: make them [1, 0] (start after end).
    *bytes.last_mut().unwrap() = 0;
    let (kind, v) = send_raw(&mut node, bytes).await;
    assert_eq!(kind, ViolationKind::Malformed);
    assert!(v.contains("have digest"), "{v}");

    // A fresh, well-formed envelope whose payload was altered after signing.
    let author = Keypair::from_seed(&[4; 32]);
    let mut raw = Envelope::sign(&author, 1, now_ms(), b"pay me 10".to_vec())
        .unwrap()
        .encode();
    let nine = raw.iter().position(|b| *b == b'1').unwrap();
    raw[nine] = b'9';
    let forged = Envelope::decode(&raw).unwrap();
    let frame = Frame {
        messages: vec![forged],
        ..Frame::default()
    };
    let (kind, v) = send_raw(&mut node, encode_frame(&frame)).await;
    assert_eq!(kind, ViolationKind::InvalidSignature);
    assert!(v.contains("invalid signature"), "{v}");

    // Honest gossip is untouched by all of it.
    let id = honest.publish(b"still here".to_vec()).await;
    assert_eq!(node.next_message().await.0.id, id);
    assert!(
        node.pending_messages().await.is_empty(),
        "the forgery was delivered"
    );
}
