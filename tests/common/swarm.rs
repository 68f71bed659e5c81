//! A small harness for swarm tests: every node is a real libp2p swarm (memory transport,
//! noise, yamux) running in its own tokio task, driven by commands and observed through its
//! events. Tests wait for events, never for time; `WAIT` only bounds a hung test.

use futures::StreamExt;
use libp2p::core::transport::MemoryTransport;
use libp2p::core::upgrade::Version;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, Transport, noise, yamux};
use secure_gossip::{
    Behaviour, Config, Envelope, Event, ImportError, Keypair, Message, MessageId, PublicKey, Stats,
    Validation, ViolationKind,
};
use std::collections::{HashSet, VecDeque};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long any single wait may take before the test fails (a hung test, not a timing
/// assertion): 60 s, or `WAIT_SECS` from the environment.
pub static WAIT: std::sync::LazyLock<Duration> = std::sync::LazyLock::new(|| {
    let secs = std::env::var("WAIT_SECS").ok().and_then(|s| s.parse().ok());
    Duration::from_secs(secs.unwrap_or(60))
});

/// A real swarm with memory transport, noise and yamux.
pub fn new_swarm<B: NetworkBehaviour>(
    behaviour: impl FnOnce(&libp2p::identity::Keypair) -> B,
) -> Swarm<B> {
    new_swarm_with(libp2p::identity::Keypair::generate_ed25519(), behaviour)
}

/// A real swarm with memory transport, noise and yamux, and the identity `key`.
pub fn new_swarm_with<B: NetworkBehaviour>(
    key: libp2p::identity::Keypair,
    behaviour: impl FnOnce(&libp2p::identity::Keypair) -> B,
) -> Swarm<B> {
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| {
            MemoryTransport::default()
                .upgrade(Version::V1)
                .authenticate(noise::Config::new(key).expect("noise keys"))
                .multiplex(yamux::Config::default())
        })
        .expect("transport")
        .with_behaviour(|key| behaviour(key))
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build()
}

/// Listens on a fresh memory address and returns it.
pub async fn listen<B: NetworkBehaviour>(swarm: &mut Swarm<B>) -> Multiaddr {
    swarm.listen_on("/memory/0".parse().unwrap()).unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return address;
        }
    }
}

/// What a node reports to the test.
#[derive(Debug)]
pub enum NodeEvent {
    Message(Message, PeerId),
    Connected(PeerId),
    Disconnected(PeerId),
    /// The peer, what kind of rule it broke, and the violation's text.
    Violation(PeerId, ViolationKind, String),
    Unsupported(PeerId),
    Equivocation(MessageId, PeerId),
    SlowPeer(PeerId),
    PeerUp(PeerId),
    PeerDown(PeerId),
    CaughtUp(PeerId),
    ClockSkew(i64),
    /// The durable store failed to write: the error's text, deliveries waiting.
    StoreFailed(String, usize),
}

/// What a node's application does when the behaviour stops gossip with a peer (a violation
/// or a stall).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnViolation {
    /// Disconnect the peer, as the examples do (the policy the swarm tests assume).
    Disconnect,
    /// Leave the connection to the swarm's other protocols (the behaviour's own default).
    Keep,
}

enum Command {
    Publish(Vec<u8>, oneshot::Sender<MessageId>),
    Gossip(oneshot::Sender<()>),
    Dial(Multiaddr),
    Disconnect(PeerId, oneshot::Sender<()>),
    Stats(oneshot::Sender<Snapshot>),
    Validate(MessageId, Validation, oneshot::Sender<bool>),
    Block(PublicKey, oneshot::Sender<()>),
    Import(
        Box<Envelope>,
        oneshot::Sender<Result<MessageId, ImportError>>,
    ),
}

/// What a node reports about itself.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub stats: Stats,
    /// Peers the behaviour gossips with.
    pub gossip_peers: Vec<PeerId>,
    /// Peers the swarm is connected to.
    pub connected: Vec<PeerId>,
    /// Messages held and their bytes.
    pub stored: (usize, usize),
}

/// A gossip node running in its own task.
pub struct Node {
    pub peer_id: PeerId,
    pub author: PublicKey,
    pub addr: Multiaddr,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<NodeEvent>,
    backlog: VecDeque<NodeEvent>,
}

impl Node {
    /// A node with a new key.
    pub async fn spawn(config: Config) -> Node {
        Node::spawn_with(Keypair::generate(), config).await
    }

    /// A node signing with `keys`.
    pub async fn spawn_with(keys: Keypair, config: Config) -> Node {
        Node::spawn_behaviour(Behaviour::new(keys, config)).await
    }

    /// A node running `behaviour`; it disconnects peers that violate or stall.
    pub async fn spawn_behaviour(behaviour: Behaviour) -> Node {
        Node::spawn_behaviour_with(behaviour, OnViolation::Disconnect).await
    }

    /// A node running `behaviour`, with the given policy for violators.
    pub async fn spawn_behaviour_with(behaviour: Behaviour, policy: OnViolation) -> Node {
        let author = behaviour.public_key();
        let mut swarm = new_swarm(|_| behaviour);
        let addr = listen(&mut swarm).await;
        let peer_id = *swarm.local_peer_id();
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(run(swarm, command_rx, event_tx, policy));
        Node {
            peer_id,
            author,
            addr,
            commands,
            events,
            backlog: VecDeque::new(),
        }
    }

    pub async fn publish(&self, payload: impl Into<Vec<u8>>) -> MessageId {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Publish(payload.into(), tx));
        rx.await.expect("node alive")
    }

    pub async fn gossip(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Gossip(tx));
        rx.await.expect("node alive")
    }

    /// The application's verdict on a held message; whether it was still waiting.
    pub async fn validate(&self, id: MessageId, validation: Validation) -> bool {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Validate(id, validation, tx));
        rx.await.expect("node alive")
    }

    /// Imports an envelope the application got elsewhere.
    pub async fn import(&self, envelope: Envelope) -> Result<MessageId, ImportError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Import(Box::new(envelope), tx));
        rx.await.expect("node alive")
    }

    pub async fn block(&self, author: PublicKey) {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Block(author, tx));
        rx.await.expect("node alive")
    }

    pub fn dial(&self, addr: Multiaddr) {
        self.send(Command::Dial(addr));
    }

    pub async fn disconnect(&self, peer: PeerId) {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Disconnect(peer, tx));
        rx.await.expect("node alive")
    }

    /// The node's counters and gossip peers. Answered after every event the node emitted
    /// before it, so it doubles as a barrier.
    pub async fn stats(&self) -> Snapshot {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Stats(tx));
        rx.await.expect("node alive")
    }

    /// Stops the node: its swarm and connections are dropped, its state is gone.
    pub fn shutdown(self) {
        drop(self.commands);
    }

    fn send(&self, command: Command) {
        assert!(self.commands.send(command).is_ok(), "node task ended");
    }

    /// Waits for the first event that `pick` accepts; others stay queued, in order.
    pub async fn wait_for<T>(&mut self, mut pick: impl FnMut(&NodeEvent) -> Option<T>) -> T {
        if let Some(i) = self.backlog.iter().position(|e| pick(e).is_some()) {
            let event = self.backlog.remove(i).unwrap();
            return pick(&event).unwrap();
        }
        loop {
            let event = tokio::time::timeout(*WAIT, self.events.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("node {} saw no awaited event in {:?}", self.peer_id, *WAIT)
                })
                .expect("node task ended");
            if let Some(t) = pick(&event) {
                return t;
            }
            self.backlog.push_back(event);
        }
    }

    pub async fn next_message(&mut self) -> (Message, PeerId) {
        self.wait_for(|e| match e {
            NodeEvent::Message(m, p) => Some((m.clone(), *p)),
            _ => None,
        })
        .await
    }

    /// Waits for the message `id` (other messages stay queued).
    pub async fn message(&mut self, id: MessageId) -> Message {
        self.wait_for(|e| match e {
            NodeEvent::Message(m, _) if m.id == id => Some(m.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for `n` messages.
    pub async fn messages(&mut self, n: usize) -> Vec<Message> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next_message().await.0);
        }
        out
    }

    /// Messages received so far and not yet taken (after a barrier through the node).
    pub async fn pending_messages(&mut self) -> Vec<Message> {
        self.stats().await;
        while let Ok(event) = self.events.try_recv() {
            self.backlog.push_back(event);
        }
        let (messages, rest): (Vec<_>, Vec<_>) = self
            .backlog
            .drain(..)
            .partition(|e| matches!(e, NodeEvent::Message(..)));
        self.backlog = rest.into();
        messages
            .into_iter()
            .map(|e| match e {
                NodeEvent::Message(m, _) => m,
                _ => unreachable!(),
            })
            .collect()
    }

    /// Every event received so far and not yet taken (after a barrier through the node).
    pub async fn drain_events(&mut self) -> Vec<NodeEvent> {
        self.stats().await;
        while let Ok(event) = self.events.try_recv() {
            self.backlog.push_back(event);
        }
        self.backlog.drain(..).collect()
    }

    pub async fn connected(&mut self, peer: PeerId) {
        self.wait_for(|e| matches!(e, NodeEvent::Connected(p) if *p == peer).then_some(()))
            .await
    }

    pub async fn disconnected(&mut self, peer: PeerId) {
        self.wait_for(|e| matches!(e, NodeEvent::Disconnected(p) if *p == peer).then_some(()))
            .await
    }
}

/// Dials `b` from `a` and waits until both see the connection.
pub async fn connect(a: &mut Node, b: &mut Node) {
    a.dial(b.addr.clone());
    a.connected(b.peer_id).await;
    b.connected(a.peer_id).await;
}

async fn run(
    mut swarm: Swarm<Behaviour>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<NodeEvent>,
    policy: OnViolation,
) {
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { return };
                match command {
                    Command::Publish(payload, reply) => {
                        let id = swarm.behaviour_mut().publish(payload).expect("publish");
                        let _ = reply.send(id);
                    }
                    Command::Gossip(reply) => {
                        swarm.behaviour_mut().gossip();
                        let _ = reply.send(());
                    }
                    Command::Dial(addr) => swarm.dial(addr).expect("dial"),
                    Command::Validate(id, validation, reply) => {
                        let _ = reply.send(swarm.behaviour_mut().report_validation(&id, validation));
                    }
                    Command::Import(envelope, reply) => {
                        let _ = reply.send(swarm.behaviour_mut().import(*envelope));
                    }
                    Command::Block(author, reply) => {
                        swarm.behaviour_mut().block_author(&author);
                        let _ = reply.send(());
                    }
                    Command::Disconnect(peer, reply) => {
                        let _ = swarm.disconnect_peer_id(peer);
                        let _ = reply.send(());
                    }
                    Command::Stats(reply) => {
                        let b = swarm.behaviour();
                        let _ = reply.send(Snapshot {
                            stats: b.stats(),
                            gossip_peers: b.gossip_peers().copied().collect(),
                            connected: swarm.connected_peers().copied().collect(),
                            stored: b.stored(),
                        });
                    }
                }
            }
            event = swarm.select_next_some() => {
                let event = match event {
                    SwarmEvent::Behaviour(Event::Message { message, propagation_source }) => {
                        NodeEvent::Message(message, propagation_source)
                    }
                    SwarmEvent::Behaviour(Event::PeerViolation { peer, violation }) => {
                        if policy == OnViolation::Disconnect {
                            let _ = swarm.disconnect_peer_id(peer);
                        }
                        NodeEvent::Violation(peer, violation.kind(), violation.to_string())
                    }
                    SwarmEvent::Behaviour(Event::UnsupportedPeer { peer }) => {
                        NodeEvent::Unsupported(peer)
                    }
                    SwarmEvent::Behaviour(Event::Equivocation { first, propagation_source, .. }) => {
                        NodeEvent::Equivocation(first.id(), propagation_source)
                    }
                    SwarmEvent::Behaviour(Event::SlowPeer { peer, .. }) => {
                        if policy == OnViolation::Disconnect {
                            let _ = swarm.disconnect_peer_id(peer);
                        }
                        NodeEvent::SlowPeer(peer)
                    }
                    SwarmEvent::Behaviour(Event::PeerUp { peer }) => NodeEvent::PeerUp(peer),
                    SwarmEvent::Behaviour(Event::PeerDown { peer }) => NodeEvent::PeerDown(peer),
                    SwarmEvent::Behaviour(Event::CaughtUp { peer }) => NodeEvent::CaughtUp(peer),
                    SwarmEvent::Behaviour(Event::StoreFailed { error, unwritten }) => {
                        NodeEvent::StoreFailed(error.to_string(), unwritten)
                    }
                    SwarmEvent::Behaviour(Event::ClockSkew { estimated_offset_ms }) => {
                        NodeEvent::ClockSkew(estimated_offset_ms)
                    }
                    SwarmEvent::ConnectionEstablished { peer_id, num_established, .. }
                        if num_established.get() == 1 => NodeEvent::Connected(peer_id),
                    SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                        NodeEvent::Disconnected(peer_id)
                    }
                    _ => continue,
                };
                if events.send(event).is_err() {
                    return;
                }
            }
        }
    }
}

/// `n` nodes with `config`.
pub async fn nodes(n: usize, config: &Config) -> Vec<Node> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Node::spawn(config.clone()).await);
    }
    out
}

/// Node `a` dials node `b`; returns when both see the connection.
pub async fn link(nodes: &mut [Node], a: usize, b: usize) {
    let (x, y) = (a.min(b), a.max(b));
    let (left, right) = nodes.split_at_mut(y);
    let (low, high) = (&mut left[x], &mut right[0]);
    if a < b {
        connect(low, high).await;
    } else {
        connect(high, low).await;
    }
}

/// Node `a` closes its connection to node `b`; returns when both see it gone.
pub async fn cut(nodes: &mut [Node], a: usize, b: usize) {
    let (pa, pb) = (nodes[a].peer_id, nodes[b].peer_id);
    nodes[a].disconnect(pb).await;
    nodes[a].disconnected(pb).await;
    nodes[b].disconnected(pa).await;
}

/// The ids of the next `count` messages, asserting that none came twice.
pub async fn distinct_ids(node: &mut Node, count: usize) -> HashSet<MessageId> {
    let got: Vec<MessageId> = node
        .messages(count)
        .await
        .into_iter()
        .map(|m| m.id)
        .collect();
    let set: HashSet<MessageId> = got.iter().copied().collect();
    assert_eq!(set.len(), got.len(), "a message was delivered twice");
    set
}

/// Asserts that no node has a message waiting (after a barrier through each node).
pub async fn assert_no_more_messages(nodes: &mut [Node]) {
    for (i, node) in nodes.iter_mut().enumerate() {
        let extra = node.pending_messages().await;
        assert!(extra.is_empty(), "node {i}: extra delivery {extra:?}");
    }
}
