//! A raw peer for hostile tests: a real swarm (memory transport, noise, yamux) that speaks
//! `/secure-gossip/1.0.0` by hand. It writes whatever bytes a test gives it on its own
//! substream, and reads (or deliberately does not read) the frames the node sends it,
//! counting them.

use super::swarm::{Node, WAIT, listen, new_swarm_with};
use futures::{AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream, identity};
use secure_gossip::codec::{encode_frame, read_frame};
use secure_gossip::{Config, Frame, MessageId};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// What the node sent the raw peer.
#[derive(Debug, Default, Clone)]
pub struct Received {
    pub frames: u64,
    /// Frame bytes, length prefixes included.
    pub bytes: u64,
    pub messages: u64,
    /// Bytes of frames that carried envelopes.
    pub message_bytes: u64,
    pub have_ranges: u64,
    pub want_ranges: u64,
    pub want_frames: u64,
    pub complete: u64,
    /// The ids of every envelope received, in order.
    pub ids: Vec<MessageId>,
    /// Every frame, if the peer keeps them.
    pub kept: Vec<Frame>,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Received>,
    changed: Notify,
}

/// How the raw peer treats the node's substream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// Read and count every frame.
    Count,
    /// Read, count and keep every frame.
    Keep,
    /// Accept the substream and never read from it.
    Never,
}

pub struct Raw {
    pub peer_id: PeerId,
    out: Stream,
    shared: Arc<Shared>,
    /// Notified to end the raw peer's swarm, which closes its connection (dropping `Raw`
    /// leaves the connection open).
    stop: Arc<Notify>,
}

impl Raw {
    /// Connects a raw peer with a new identity to `node`.
    pub async fn connect(node: &mut Node, reading: Reading) -> Raw {
        Raw::connect_as(identity::Keypair::generate_ed25519(), node, reading).await
    }

    /// Connects a raw peer with identity `key` to `node`, opens its gossip substream and
    /// sends the complete (empty) digest every peer starts with.
    pub async fn connect_as(key: identity::Keypair, node: &mut Node, reading: Reading) -> Raw {
        let mut swarm = new_swarm_with(key, |_| libp2p_stream::Behaviour::new());
        listen(&mut swarm).await;
        let peer_id = *swarm.local_peer_id();
        let mut control = swarm.behaviour().new_control();
        let mut incoming = control
            .accept(secure_gossip::PROTOCOL_NAME)
            .expect("first accept");
        swarm.dial(node.addr.clone()).unwrap();
        while !matches!(
            swarm.select_next_some().await,
            libp2p::swarm::SwarmEvent::ConnectionEstablished { .. }
        ) {}
        let shared = Arc::new(Shared::default());
        let reader = shared.clone();
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        tokio::spawn(async move {
            let mut streams = Vec::new();
            loop {
                tokio::select! {
                    _ = stopped.notified() => return,
                    _ = swarm.select_next_some() => {}
                    stream = incoming.next() => {
                        let Some((_, stream)) = stream else { return };
                        match reading {
                            Reading::Never => streams.push(stream),
                            _ => { tokio::spawn(read_all(stream, reader.clone(), reading == Reading::Keep)); }
                        }
                    }
                }
            }
        });
        node.connected(peer_id).await;
        let out = control
            .open_stream(node.peer_id, secure_gossip::PROTOCOL_NAME)
            .await
            .expect("the node speaks the protocol");
        let mut raw = Raw {
            peer_id,
            out,
            shared,
            stop,
        };
        // Like any peer, start with a complete digest: "I know nothing".
        let hello = Frame {
            complete: true,
            ..Frame::default()
        };
        // A node that does not gossip with this peer drops the substream: sends then fail.
        let _ = raw.send(&hello).await;
        raw
    }

    /// Ends the raw peer: its swarm goes, and with it the connection.
    pub fn disconnect(self) {
        self.stop.notify_one();
    }

    /// Writes raw bytes on the peer's substream.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes).await?;
        self.out.flush().await
    }

    /// Writes one frame.
    pub async fn send(&mut self, frame: &Frame) -> std::io::Result<()> {
        self.send_bytes(&encode_frame(frame)).await
    }

    /// What the node has sent so far.
    pub fn received(&self) -> Received {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what the node has sent (fails the test after `WAIT`).
    pub async fn wait_until(&self, mut done: impl FnMut(&Received) -> bool) -> Received {
        let wait = async {
            loop {
                let changed = self.shared.changed.notified();
                {
                    let r = self.shared.received.lock().unwrap();
                    if done(&r) {
                        return r.clone();
                    }
                }
                changed.await;
            }
        };
        tokio::time::timeout(*WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("raw peer: awaited frames did not come in {:?}", *WAIT))
    }
}

async fn read_all(mut stream: Stream, shared: Arc<Shared>, keep: bool) {
    let limits = Config::default().frame_limits();
    while let Ok(Some(frame)) = read_frame(&mut stream, &limits).await {
        {
            let mut r = shared.received.lock().unwrap();
            let len = frame.encoded_len() as u64;
            r.frames += 1;
            r.bytes += len + prost_len(len);
            r.messages += frame.messages.len() as u64;
            if !frame.messages.is_empty() {
                r.message_bytes += len + prost_len(len);
            }
            r.have_ranges += frame
                .have
                .iter()
                .map(|d| d.ranges.range_count() as u64)
                .sum::<u64>();
            let wants: u64 = frame
                .want
                .iter()
                .map(|d| d.ranges.range_count() as u64)
                .sum();
            r.want_ranges += wants;
            r.want_frames += u64::from(!frame.want.is_empty());
            r.complete += u64::from(frame.complete);
            r.ids.extend(frame.messages.iter().map(|e| e.id()));
            if keep {
                r.kept.push(frame);
            }
        }
        shared.changed.notify_waiters();
    }
}

/// The length of a varint prefix for `len`.
fn prost_len(len: u64) -> u64 {
    let mut out = Vec::new();
    secure_gossip::codec::encode_prefix(len, &mut out);
    out.len() as u64
}
