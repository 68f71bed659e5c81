//! Propagation benchmark: secure-gossip (with its defaults, and with `max_age` 3 s as
//! `secure-gossip/3s`, retaining about as briefly as gossipsub) against rust-libp2p's
//! gossipsub (signed, strict validation, heartbeat 100 ms, flood publish) and floodsub, on
//! the same seeded random graph (degree 6), the same transport (memory + noise + yamux,
//! every byte on the wire counted) and the same schedule of 256-byte messages from random
//! nodes, after the same 20-message warm-up (not measured).
//!
//! ```text
//! cargo bench --bench propagation                     # both scenarios, seeds 1-3
//! cargo bench --bench propagation -- --seeds 1        # one seed
//! cargo bench --bench propagation -- --scenario 100   # one scenario (100 or 200 nodes)
//! ```
//!
//! Scenarios: 100 nodes, one message every 50 ms; 200 nodes, one every 5 ms (saturating two
//! cores). Each run is its own process, so its CPU time and peak RSS are its own. Columns:
//! delivery, latency from publish to delivery (p50, p99, max), wire bytes per delivery
//! (everything: noise, yamux, framing, signatures, control traffic), CPU microseconds per
//! delivery (the whole process, all nodes, while busy), bytes per second once idle, peak RSS
//! of the process, CPU cores busy once idle (the process's CPU time over 3 s with nothing
//! published); then the medians over seeds and the ratios to gossipsub.

mod common;

use futures::{AsyncRead, AsyncWrite, StreamExt};
use libp2p::core::transport::MemoryTransport;
use libp2p::core::upgrade::Version;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, Transport, floodsub, gossipsub, noise, yamux};
use secure_gossip::sim::Rng;
use std::collections::HashMap;
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
    /// `max_age`: secure-gossip's retention, if not its default (the others ignore it).
    fn build(key: &libp2p::identity::Keypair, max_age: Option<Duration>) -> Self;
    fn connected(&mut self, _peer: PeerId) {}
    fn publish(&mut self, data: Vec<u8>);
    /// The payload of a received message, if the event is one.
    fn received(event: Self::ToSwarm) -> Option<Vec<u8>>;
}

impl Protocol for secure_gossip::Behaviour {
    fn build(key: &libp2p::identity::Keypair, max_age: Option<Duration>) -> Self {
        let keys = secure_gossip::Keypair::try_from_libp2p(key).expect("ed25519");
        let mut config = secure_gossip::Config::builder();
        if let Some(max_age) = max_age {
            config.max_age(max_age);
        }
        secure_gossip::Behaviour::new(keys, config.build().expect("config"))
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

impl Protocol for gossipsub::Behaviour {
    fn build(key: &libp2p::identity::Keypair, _max_age: Option<Duration>) -> Self {
        common::gossipsub(key)
    }
    fn publish(&mut self, data: Vec<u8>) {
        // A publish with no subscribed peer yet fails; the benchmark counts it as undelivered.
        let _ =
            gossipsub::Behaviour::publish(self, gossipsub::IdentTopic::new(common::TOPIC), data);
    }
    fn received(event: gossipsub::Event) -> Option<Vec<u8>> {
        match event {
            gossipsub::Event::Message { message, .. } => Some(message.data),
            _ => None,
        }
    }
}

impl Protocol for floodsub::Behaviour {
    fn build(key: &libp2p::identity::Keypair, _max_age: Option<Duration>) -> Self {
        let mut b = floodsub::Behaviour::new(key.public().to_peer_id());
        b.subscribe(floodsub::Topic::new(common::TOPIC));
        b
    }
    fn connected(&mut self, peer: PeerId) {
        self.add_node_to_partial_view(peer);
    }
    fn publish(&mut self, data: Vec<u8>) {
        floodsub::Behaviour::publish(self, floodsub::Topic::new(common::TOPIC), data);
    }
    fn received(event: floodsub::Event) -> Option<Vec<u8>> {
        match event {
            floodsub::Event::Message(m) => Some(m.data.to_vec()),
            _ => None,
        }
    }
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
    max_age: Option<Duration>,
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
        .with_behaviour(|key| P::build(key, max_age))
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

#[derive(Clone, Debug)]
struct Params {
    nodes: usize,
    degree: usize,
    messages: usize,
    warmup: usize,
    payload: usize,
    interval: Duration,
    seed: u64,
    /// secure-gossip's `max_age`, if not its default.
    max_age: Option<Duration>,
}

struct Row {
    delivered: usize,
    expected: usize,
    duplicates: usize,
    p50: f64,
    p99: f64,
    max: f64,
    bytes_per_delivery: f64,
    cpu_us_per_delivery: f64,
    idle_bytes_per_sec: f64,
    peak_rss_mib: f64,
    /// CPU time per second of wall time while nothing is published: cores busy when idle.
    idle_cores: f64,
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
        tokio::spawn(node::<P>(
            i,
            bytes.clone(),
            rx,
            report_tx.clone(),
            addr_tx,
            p.max_age,
        ));
        commands.push(tx);
        addrs.push(addr_rx.await.expect("listening"));
    }
    let edges = common::topology(p.nodes, p.degree, p.seed);
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
    let total = p.warmup + p.messages;
    let mut published = Vec::with_capacity(total);
    let mut start_bytes = 0;
    let mut start_cpu = Duration::ZERO;
    for k in 0..total as u32 {
        if k as usize == p.warmup {
            // The warm-up's deliveries settle first; then measuring starts.
            tokio::time::sleep(Duration::from_secs(2)).await;
            start_bytes = bytes.load(Ordering::Relaxed);
            start_cpu = common::cpu_time("self");
        }
        let author = rng.index(p.nodes);
        let mut data = vec![0u8; p.payload.max(4)];
        data[..4].copy_from_slice(&k.to_be_bytes());
        published.push(Instant::now());
        commands[author].send(Command::Publish(data)).unwrap();
        tokio::time::sleep(p.interval).await;
    }
    let expected = p.messages * (p.nodes - 1);
    let mut seen: HashMap<(usize, u32), Instant> = HashMap::new();
    let mut duplicates = 0;
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    let measured = |k: u32| k as usize >= p.warmup;
    let mut got = 0;
    while got < expected {
        tokio::select! {
            report = reports.recv() => {
                if let Some(Report::Received(i, k, at)) = report
                    && measured(k)
                {
                    if seen.insert((i, k), at).is_some() {
                        duplicates += 1;
                    } else {
                        got += 1;
                    }
                }
            }
            _ = &mut deadline => break,
        }
    }
    let busy_bytes = bytes.load(Ordering::Relaxed) - start_bytes;
    let busy_cpu = common::cpu_time("self").saturating_sub(start_cpu);
    // Idle: no new messages for a while.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_start = bytes.load(Ordering::Relaxed);
    let idle_cpu = common::cpu_time("self");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_bytes = bytes.load(Ordering::Relaxed) - idle_start;
    let idle_cores = common::cpu_time("self")
        .saturating_sub(idle_cpu)
        .as_secs_f64()
        / 3.0;
    drop(commands);

    let mut latencies: Vec<f64> = seen
        .iter()
        .map(|(&(_, k), at)| at.duration_since(published[k as usize]).as_secs_f64() * 1e3)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let delivered = seen.len();
    Row {
        delivered,
        expected,
        duplicates,
        p50: common::percentile(&latencies, 0.5),
        p99: common::percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or(f64::NAN),
        bytes_per_delivery: busy_bytes as f64 / delivered.max(1) as f64,
        cpu_us_per_delivery: busy_cpu.as_secs_f64() * 1e6 / delivered.max(1) as f64,
        idle_bytes_per_sec: idle_bytes as f64 / 3.0,
        peak_rss_mib: common::peak_rss_mib("self"),
        idle_cores,
    }
}

const PROTOCOLS: [&str; 4] = ["secure-gossip", "secure-gossip/3s", "gossipsub", "floodsub"];

fn params(nodes: usize, seed: u64) -> Params {
    Params {
        nodes,
        degree: 6,
        messages: 200,
        warmup: 20,
        payload: 256,
        interval: Duration::from_millis(if nodes >= 200 { 5 } else { 50 }),
        seed,
        max_age: None,
    }
}

/// One run in this process: prints its row as one line of numbers.
fn child(protocol: &str, nodes: usize, seed: u64) {
    let mut p = params(nodes, seed);
    if protocol == "secure-gossip/3s" {
        // About as brief as gossipsub's retention (its message cache serves 5 heartbeats,
        // 0.5 s here; its duplicate cache keeps ids for 60 s), so memory compares like with
        // like. 3 s, not less: `max_age` is also the window in which a message is accepted at
        // all, and the saturated scenario's slowest deliveries take over 2 s.
        p.max_age = Some(Duration::from_secs(3));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let row = runtime.block_on(async {
        match protocol {
            "secure-gossip" | "secure-gossip/3s" => run::<secure_gossip::Behaviour>(&p).await,
            "gossipsub" => run::<gossipsub::Behaviour>(&p).await,
            "floodsub" => run::<floodsub::Behaviour>(&p).await,
            other => panic!("unknown protocol {other}"),
        }
    });
    println!(
        "ROW {} {} {} {} {} {} {} {} {} {} {}",
        row.delivered,
        row.expected,
        row.duplicates,
        row.p50,
        row.p99,
        row.max,
        row.bytes_per_delivery,
        row.cpu_us_per_delivery,
        row.idle_bytes_per_sec,
        row.peak_rss_mib,
        row.idle_cores
    );
}

fn spawn_child(protocol: &str, nodes: usize, seed: u64) -> Row {
    let out = std::process::Command::new(std::env::current_exe().expect("this binary"))
        .args(["--child", protocol, &nodes.to_string(), &seed.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("child run");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("ROW "))
        .unwrap_or_else(|| panic!("{protocol} {nodes} {seed}: no result\n{text}"));
    let f: Vec<f64> = line[4..]
        .split(' ')
        .map(|x| x.parse().expect("a number"))
        .collect();
    Row {
        delivered: f[0] as usize,
        expected: f[1] as usize,
        duplicates: f[2] as usize,
        p50: f[3],
        p99: f[4],
        max: f[5],
        bytes_per_delivery: f[6],
        cpu_us_per_delivery: f[7],
        idle_bytes_per_sec: f[8],
        peak_rss_mib: f[9],
        idle_cores: f[10],
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut seeds, mut scenarios) = (vec![1u64, 2, 3], vec![100usize, 200]);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--child" => {
                let protocol = args.next().expect("protocol");
                let nodes = args.next().and_then(|v| v.parse().ok()).expect("nodes");
                let seed = args.next().and_then(|v| v.parse().ok()).expect("seed");
                child(&protocol, nodes, seed);
                return;
            }
            "--seeds" => {
                let n: u64 = args.next().and_then(|v| v.parse().ok()).expect("--seeds N");
                seeds = (1..=n).collect();
            }
            "--scenario" => {
                scenarios = vec![
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .expect("100 or 200"),
                ];
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    for nodes in scenarios {
        let p = params(nodes, 1);
        println!(
            "\n{} nodes, degree {}, {} messages of {} bytes every {:?} after a {}-message warm-up; seeds {:?}",
            p.nodes, p.degree, p.messages, p.payload, p.interval, p.warmup, seeds
        );
        println!(
            "| protocol | seed | delivered | dup | p50 ms | p99 ms | max ms | wire bytes / delivery | CPU µs / delivery | idle bytes/s | peak RSS MiB | idle CPU cores |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        let mut medians: Vec<(&str, [f64; 7], f64)> = Vec::new();
        for protocol in PROTOCOLS {
            let mut cols: [Vec<f64>; 7] = Default::default();
            let mut delivery = Vec::new();
            for &seed in &seeds {
                let r = spawn_child(protocol, nodes, seed);
                println!(
                    "| {protocol} | {seed} | {}/{} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} | {:.0} | {:.0} | {:.3} |",
                    r.delivered,
                    r.expected,
                    r.duplicates,
                    r.p50,
                    r.p99,
                    r.max,
                    r.bytes_per_delivery,
                    r.cpu_us_per_delivery,
                    r.idle_bytes_per_sec,
                    r.peak_rss_mib,
                    r.idle_cores
                );
                for (c, v) in cols.iter_mut().zip([
                    r.p50,
                    r.p99,
                    r.bytes_per_delivery,
                    r.cpu_us_per_delivery,
                    r.idle_bytes_per_sec,
                    r.peak_rss_mib,
                    r.idle_cores,
                ]) {
                    c.push(v);
                }
                delivery.push(r.delivered as f64 / r.expected as f64);
            }
            let m = cols.map(common::median);
            let worst = delivery.iter().copied().fold(1.0, f64::min);
            medians.push((protocol, m, worst));
        }
        let base = medians
            .iter()
            .find(|(p, _, _)| *p == "gossipsub")
            .unwrap()
            .1;
        println!("\nmedians over seeds, and ratios to gossipsub:");
        println!(
            "| protocol | lowest delivery | p50 ms | p99 ms | wire bytes / delivery | CPU µs / delivery | idle bytes/s | peak RSS MiB | idle CPU cores | bytes vs gossipsub | CPU vs gossipsub | p99 vs gossipsub | RSS vs gossipsub | idle CPU vs gossipsub |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (protocol, m, worst) in &medians {
            println!(
                "| {protocol} | {worst:.4} | {:.1} | {:.1} | {:.0} | {:.1} | {:.0} | {:.0} | {:.3} | {} | {} | {} | {} | {} |",
                m[0],
                m[1],
                m[2],
                m[3],
                m[4],
                m[5],
                m[6],
                common::ratio(m[2], base[2]),
                common::ratio(m[3], base[3]),
                common::ratio(m[1], base[1]),
                common::ratio(m[5], base[5]),
                common::ratio(m[6], base[6])
            );
        }
    }
}
