//! Propagation benchmark: secure-gossip against rust-libp2p's gossipsub and floodsub, in one
//! run, on the same seeded random topology, the same transport (memory + noise + yamux, with
//! every byte on the wire counted) and the same publish schedule.
//!
//! ```text
//! cargo bench --bench propagation                     # 30 nodes, 300 messages of 256 bytes
//! cargo bench --bench propagation -- --nodes 50 --messages 500 --payload 1024 --seed 7
//! ```
//!
//! It prints one row per protocol: delivery, latency from publish to delivery, bytes on the
//! wire per delivery (everything: noise, yamux, protocol framing, signatures, control
//! traffic), bytes per second once the network is idle, and the ratios of gossipsub and
//! floodsub to secure-gossip. Figures vary with the machine; the ratios are the point.

use futures::{AsyncRead, AsyncWrite, StreamExt};
use libp2p::core::transport::MemoryTransport;
use libp2p::core::upgrade::Version;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, Transport, floodsub, gossipsub, noise, yamux};
use secure_gossip::sim::Rng;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A connection that counts the bytes read from it: every byte sent is read once.
struct Counted<T> {
    inner: T,
    bytes: Arc<AtomicU64>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// What the benchmark needs of a broadcast protocol.
trait Protocol: NetworkBehaviour + Send + Sized
where
    Self::ToSwarm: Debug,
{
    const NAME: &'static str;
    fn build(key: &libp2p::identity::Keypair) -> Self;
    fn connected(&mut self, _peer: PeerId) {}
    fn publish(&mut self, data: Vec<u8>);
    /// The payload of a received message, if the event is one.
    fn received(event: Self::ToSwarm) -> Option<Vec<u8>>;
}

impl Protocol for secure_gossip::Behaviour {
    const NAME: &'static str = "secure-gossip";
    fn build(key: &libp2p::identity::Keypair) -> Self {
        let keys = secure_gossip::Keypair::try_from_libp2p(key).expect("ed25519");
        secure_gossip::Behaviour::new(keys, secure_gossip::Config::default())
    }
    fn publish(&mut self, data: Vec<u8>) {
        secure_gossip::Behaviour::publish(self, data).expect("publish");
    }
    fn received(event: secure_gossip::Event) -> Option<Vec<u8>> {
        match event {
            secure_gossip::Event::Message { message, .. } => Some(message.payload.to_vec()),
            _ => None,
        }
    }
}

const TOPIC: &str = "bench";

impl Protocol for gossipsub::Behaviour {
    const NAME: &'static str = "gossipsub";
    fn build(key: &libp2p::identity::Keypair) -> Self {
        // Signed by the author and verified by every receiver, like secure-gossip.
        let mut b = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossipsub::Config::default(),
        )
        .expect("gossipsub");
        b.subscribe(&gossipsub::IdentTopic::new(TOPIC))
            .expect("subscribe");
        b
    }
    fn publish(&mut self, data: Vec<u8>) {
        // A publish with no subscribed peer yet fails; the benchmark counts it as undelivered.
        let _ = gossipsub::Behaviour::publish(self, gossipsub::IdentTopic::new(TOPIC), data);
    }
    fn received(event: gossipsub::Event) -> Option<Vec<u8>> {
        match event {
            gossipsub::Event::Message { message, .. } => Some(message.data),
            _ => None,
        }
    }
}

impl Protocol for floodsub::Behaviour {
    const NAME: &'static str = "floodsub";
    fn build(key: &libp2p::identity::Keypair) -> Self {
        let mut b = floodsub::Behaviour::new(key.public().to_peer_id());
        b.subscribe(floodsub::Topic::new(TOPIC));
        b
    }
    fn connected(&mut self, peer: PeerId) {
        self.add_node_to_partial_view(peer);
    }
    fn publish(&mut self, data: Vec<u8>) {
        floodsub::Behaviour::publish(self, floodsub::Topic::new(TOPIC), data);
    }
    fn received(event: floodsub::Event) -> Option<Vec<u8>> {
        match event {
            floodsub::Event::Message(m) => Some(m.data.to_vec()),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
struct Params {
    nodes: usize,
    degree: usize,
    messages: usize,
    payload: usize,
    interval: Duration,
    seed: u64,
}

enum Command {
    Publish(Vec<u8>),
    Dial(Multiaddr),
}

enum Report {
    Connected,
    Received(usize, u32, Instant),
}

async fn node<P: Protocol>(
    index: usize,
    bytes: Arc<AtomicU64>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    reports: mpsc::UnboundedSender<Report>,
    addr: tokio::sync::oneshot::Sender<Multiaddr>,
) where
    P::ToSwarm: Debug,
{
    let mut swarm: Swarm<P> = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            MemoryTransport::default()
                .map(move |conn, _| Counted { inner: conn, bytes })
                .upgrade(Version::V1)
                .authenticate(noise::Config::new(key).expect("noise"))
                .multiplex(yamux::Config::default())
        })
        .expect("transport")
        .with_behaviour(|key| P::build(key))
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    swarm.listen_on("/memory/0".parse().unwrap()).unwrap();
    let mut addr = Some(addr);
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(Command::Publish(data)) => swarm.behaviour_mut().publish(data),
                Some(Command::Dial(a)) => swarm.dial(a).expect("dial"),
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => {
                    if let Some(tx) = addr.take() {
                        let _ = tx.send(address);
                    }
                }
                SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                    swarm.behaviour_mut().connected(peer_id);
                    if endpoint.is_dialer() {
                        let _ = reports.send(Report::Connected);
                    }
                }
                SwarmEvent::Behaviour(event) => {
                    if let Some(data) = P::received(event) {
                        let k = u32::from_be_bytes(data[..4].try_into().unwrap());
                        let _ = reports.send(Report::Received(index, k, Instant::now()));
                    }
                }
                _ => {}
            }
        }
    }
}

struct Row {
    name: &'static str,
    delivered: usize,
    expected: usize,
    duplicates: usize,
    p50: f64,
    p99: f64,
    max: f64,
    bytes_per_delivery: f64,
    idle_bytes_per_sec: f64,
}

fn topology(p: &Params) -> Vec<(usize, usize)> {
    let mut rng = Rng::new(p.seed);
    let mut edges = BTreeSet::new();
    for i in 1..p.nodes {
        edges.insert((rng.index(i), i));
    }
    while edges.len() < p.nodes * p.degree / 2 {
        let (a, b) = (rng.index(p.nodes), rng.index(p.nodes));
        if a != b && !edges.contains(&(b, a)) {
            edges.insert((a, b));
        }
    }
    edges.into_iter().collect()
}

async fn run<P: Protocol>(p: &Params) -> Row
where
    P::ToSwarm: Debug,
{
    let bytes = Arc::new(AtomicU64::new(0));
    let (report_tx, mut reports) = mpsc::unbounded_channel();
    let mut commands = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..p.nodes {
        let (tx, rx) = mpsc::unbounded_channel();
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(node::<P>(i, bytes.clone(), rx, report_tx.clone(), addr_tx));
        commands.push(tx);
        addrs.push(addr_rx.await.expect("listening"));
    }
    let edges = topology(p);
    for &(a, b) in &edges {
        commands[a].send(Command::Dial(addrs[b].clone())).unwrap();
    }
    let mut connected = 0;
    while connected < edges.len() {
        if let Some(Report::Connected) = reports.recv().await {
            connected += 1;
        }
    }
    // Let subscriptions, meshes and digests settle (the same for every protocol).
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut rng = Rng::new(p.seed ^ 0xBEEF);
    let start_bytes = bytes.load(Ordering::Relaxed);
    let mut published = Vec::with_capacity(p.messages);
    let mut authors = Vec::with_capacity(p.messages);
    for k in 0..p.messages as u32 {
        let author = rng.index(p.nodes);
        let mut data = vec![0u8; p.payload.max(4)];
        data[..4].copy_from_slice(&k.to_be_bytes());
        published.push(Instant::now());
        authors.push(author);
        commands[author].send(Command::Publish(data)).unwrap();
        tokio::time::sleep(p.interval).await;
    }
    let expected = p.messages * (p.nodes - 1);
    let mut seen: HashMap<(usize, u32), Instant> = HashMap::new();
    let mut duplicates = 0;
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    while seen.len() < expected {
        tokio::select! {
            report = reports.recv() => {
                if let Some(Report::Received(i, k, at)) = report
                    && seen.insert((i, k), at).is_some()
                {
                    duplicates += 1;
                }
            }
            _ = &mut deadline => break,
        }
    }
    let busy_bytes = bytes.load(Ordering::Relaxed) - start_bytes;
    // Idle: no new messages for a while.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_start = bytes.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_bytes = bytes.load(Ordering::Relaxed) - idle_start;
    drop(commands);

    let mut latencies: Vec<f64> = seen
        .iter()
        .map(|(&(_, k), at)| at.duration_since(published[k as usize]).as_secs_f64() * 1e3)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Row {
        name: P::NAME,
        delivered: seen.len(),
        expected,
        duplicates,
        p50: pct(0.5),
        p99: pct(0.99),
        max: latencies.last().copied().unwrap_or(f64::NAN),
        bytes_per_delivery: busy_bytes as f64 / seen.len().max(1) as f64,
        idle_bytes_per_sec: idle_bytes as f64 / 3.0,
    }
}

fn params() -> Params {
    let mut p = Params {
        nodes: 30,
        degree: 6,
        messages: 300,
        payload: 256,
        interval: Duration::from_millis(5),
        seed: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--nodes" => p.nodes = value() as usize,
            "--degree" => p.degree = value() as usize,
            "--messages" => p.messages = value() as usize,
            "--payload" => p.payload = value() as usize,
            "--interval-ms" => p.interval = Duration::from_millis(value()),
            "--seed" => p.seed = value(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    p
}

fn main() {
    let p = params();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "propagation: {} nodes, degree {}, {} messages of {} bytes every {:?}, seed {}",
        p.nodes, p.degree, p.messages, p.payload, p.interval, p.seed
    );
    let rows = runtime.block_on(async {
        vec![
            run::<secure_gossip::Behaviour>(&p).await,
            run::<gossipsub::Behaviour>(&p).await,
            run::<floodsub::Behaviour>(&p).await,
        ]
    });
    let base = &rows[0];
    println!(
        "| protocol | delivered | dup | p50 ms | p99 ms | max ms | wire bytes / delivery | idle bytes/s | bytes vs secure-gossip | p99 vs secure-gossip |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {}/{} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.2}× | {:.2}× |",
            r.name,
            r.delivered,
            r.expected,
            r.duplicates,
            r.p50,
            r.p99,
            r.max,
            r.bytes_per_delivery,
            r.idle_bytes_per_sec,
            r.bytes_per_delivery / base.bytes_per_delivery,
            r.p99 / base.p99,
        );
    }
}
