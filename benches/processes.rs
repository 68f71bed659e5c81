//! Propagation with one OS process per node over real TCP on the loopback interface, so
//! every node has its own runtime, its own scheduler and its own share of the cores, and the
//! signature checks of one node's connections run on its own threads: secure-gossip nodes
//! (default configuration) and gossipsub nodes (the in-process benchmark's configuration),
//! each a process of this binary with the same transport, stdin commands and stdout lines,
//! and optionally `examples/node.rs` processes. The same seeded random graph (degree 6) and
//! the same schedule as `benches/propagation.rs`: 256-byte messages from random nodes, one
//! every `--interval` ms, after a warm-up that is not measured. Ratios are to gossipsub.
//!
//! ```text
//! cargo bench --bench processes                         # 100 nodes, seeds 1-3, both
//! cargo bench --bench processes -- --nodes 100 --seeds 1
//! cargo bench --bench processes -- --node-example       # and examples/node.rs processes
//! ```
//!
//! Both protocols run as this binary (`--secure-gossip-node`, `--gossipsub-node`): the same
//! runtime, transport, output and build, so they differ only in the protocol.
//!
//! Columns: delivery; latency from the author's signed timestamp to the line on the
//! receiver's stdout (wall clock, whole milliseconds, so it includes the JSON line's trip
//! through a pipe); CPU microseconds per delivery over all node processes while busy; bytes
//! on the loopback interface per delivery while busy (the kernel's count: TCP and IP headers
//! included, unlike the in-process benchmark's bytes above TCP); the largest peak RSS of one
//! node process and their sum.

mod common;

use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Swarm, gossipsub, noise, tcp, yamux};
use secure_gossip::sim::Rng;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

const DEGREE: usize = 6;
const PAYLOAD: usize = 256;
const WARMUP: usize = 20;

struct Params {
    nodes: usize,
    messages: usize,
    interval: Duration,
    seed: u64,
}

/// The release build of `examples/node.rs`, built first.
fn node_binary() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--example", "node"])
        .current_dir(&manifest)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building examples/node.rs failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("target"));
    target.join("release").join("examples").join("node")
}

/// A line of one node's output.
struct Line {
    node: usize,
    value: Value,
    /// Wall-clock milliseconds when it was read.
    at_ms: u64,
}

struct Node {
    child: Child,
    stdin: ChildStdin,
    /// Its process id, as `/proc` names it.
    pid: String,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A node process of `protocol`.
async fn start(
    protocol: Protocol,
    binary: &Path,
    i: usize,
    tx: mpsc::UnboundedSender<Line>,
) -> Node {
    let this = || std::env::current_exe().expect("this binary");
    let (binary, args): (PathBuf, &[&str]) = match protocol {
        Protocol::NodeExample => (binary.to_path_buf(), &["--listen", "/ip4/127.0.0.1/tcp/0"]),
        Protocol::SecureGossip => (this(), &["--secure-gossip-node"]),
        Protocol::Gossipsub => (this(), &["--gossipsub-node"]),
    };
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let pid = child.id().expect("running").to_string();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let at_ms = wall_ms();
            if let Ok(value) = serde_json::from_str(&line) {
                let _ = tx.send(Line {
                    node: i,
                    value,
                    at_ms,
                });
            }
        }
    });
    Node { child, stdin, pid }
}

/// Bytes sent on the loopback interface so far.
fn loopback_bytes() -> u64 {
    let dev = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    dev.lines()
        .find_map(|l| l.trim_start().strip_prefix("lo:"))
        .and_then(|rest| rest.split_whitespace().nth(8))
        .and_then(|tx| tx.parse().ok())
        .unwrap_or(0)
}

/// Reads lines until `want` of them are `event` lines or `timeout` passes; returns those.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<Line>,
    want: usize,
    timeout: Duration,
    event: &str,
) -> Vec<Line> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut got = Vec::with_capacity(want);
    while got.len() < want {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(line)) if line.value["event"] == event => got.push(line),
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    got
}

struct Row {
    delivered: usize,
    expected: usize,
    p50: f64,
    p99: f64,
    cpu_us_per_delivery: f64,
    loopback_bytes_per_delivery: f64,
    max_rss_mib: f64,
    total_rss_mib: f64,
}

#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    /// `examples/node.rs`.
    NodeExample,
    SecureGossip,
    Gossipsub,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::NodeExample => "examples/node.rs",
            Protocol::SecureGossip => "secure-gossip",
            Protocol::Gossipsub => "gossipsub",
        }
    }
}

/// Milliseconds of wall clock at the front of a gossipsub payload (zero-padded, then a
/// space): gossipsub messages carry no timestamp of their own.
const STAMP: usize = 14;

/// A node process's swarm of `behaviour` over TCP on loopback, noise and yamux.
fn swarm<B: NetworkBehaviour>(behaviour: impl FnOnce(&libp2p::identity::Keypair) -> B) -> Swarm<B> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("transport")
        .with_behaviour(behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("address"))
        .expect("listen");
    swarm
}

/// Serves one node process: reads `dial ADDRESS` and `publish TEXT` lines (a publish goes to
/// `publish`), writes `listening`, `connected` and `message` JSON lines as
/// `examples/node.rs` does (`delivered` says whether an event is a delivery, and of a message
/// published when).
async fn serve<B: NetworkBehaviour>(
    mut swarm: Swarm<B>,
    publish: impl Fn(&mut B, &str),
    delivered: impl Fn(B::ToSwarm) -> Option<Option<u64>>,
) {
    let emit = |event: &str, mut fields: Value| {
        fields["event"] = json!(event);
        println!("{fields}");
    };
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = commands.next_line() => {
                let Ok(Some(line)) = line else { break };
                if let Some(address) = line.strip_prefix("dial ") {
                    if let Ok(address) = address.trim().parse::<libp2p::Multiaddr>() {
                        let _ = swarm.dial(address);
                    }
                } else if let Some(text) = line.strip_prefix("publish ") {
                    publish(swarm.behaviour_mut(), text);
                }
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => emit(
                    "listening",
                    json!({ "address": format!("{address}/p2p/{}", swarm.local_peer_id()) }),
                ),
                SwarmEvent::ConnectionEstablished { num_established, .. }
                    if num_established.get() == 1 => emit("connected", json!({})),
                SwarmEvent::Behaviour(event) => {
                    if let Some(timestamp) = delivered(event) {
                        emit("message", json!({ "timestamp": timestamp }));
                    }
                }
                _ => {}
            },
        }
    }
}

/// One gossipsub node (`--gossipsub-node`), as `benches/propagation.rs` runs gossipsub.
async fn gossipsub_node() {
    let publish = |b: &mut gossipsub::Behaviour, text: &str| {
        // The same length as the text: the publication time, then the text without its last
        // STAMP bytes (padding).
        let mut payload = format!("{:013} ", wall_ms()).into_bytes();
        let keep = text.len().saturating_sub(STAMP);
        payload.extend_from_slice(&text.as_bytes()[..keep]);
        let _ = b.publish(gossipsub::IdentTopic::new(common::TOPIC), payload);
    };
    let delivered = |event: gossipsub::Event| match event {
        gossipsub::Event::Message { message, .. } => {
            let stamp = message
                .data
                .get(..STAMP)
                .and_then(|s| std::str::from_utf8(s).ok());
            Some(stamp.and_then(|s| s.trim().parse().ok()))
        }
        _ => None,
    };
    serve(swarm(common::gossipsub), publish, delivered).await;
}

/// One secure-gossip node (`--secure-gossip-node`): the default configuration
/// (`examples/node.rs`, with QUIC, a store, metrics and more output, is measured apart:
/// `--node-example`).
async fn secure_gossip_node() {
    let behaviour = |key: &libp2p::identity::Keypair| {
        let keys = secure_gossip::Keypair::try_from_libp2p(key).expect("ed25519");
        let config = secure_gossip::Config::builder().build().expect("config");
        secure_gossip::Behaviour::new(keys, config)
    };
    let publish = |b: &mut secure_gossip::Behaviour, text: &str| {
        let _ = b.publish(text.as_bytes().to_vec());
    };
    let delivered = |event: secure_gossip::Event| match event {
        secure_gossip::Event::Message { message, .. } => Some(Some(message.timestamp)),
        _ => None,
    };
    serve(swarm(behaviour), publish, delivered).await;
}

async fn run(protocol: Protocol, binary: &Path, p: &Params) -> Row {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut nodes = Vec::new();
    for i in 0..p.nodes {
        nodes.push(start(protocol, binary, i, tx.clone()).await);
    }
    // Every node's listening address, then the graph's dials.
    let mut addrs: HashMap<usize, String> = HashMap::new();
    while addrs.len() < p.nodes {
        let line = rx.recv().await.expect("node output");
        if line.value["event"] == "listening" {
            let addr = line.value["address"].as_str().expect("address").to_string();
            addrs.insert(line.node, addr);
        }
    }
    let edges = common::topology(p.nodes, DEGREE, p.seed);
    for &(a, b) in &edges {
        let command = format!("dial {}\n", addrs[&b]);
        nodes[a].stdin.write_all(command.as_bytes()).await.unwrap();
    }
    let connected = collect(
        &mut rx,
        2 * edges.len(),
        Duration::from_secs(60),
        "connected",
    )
    .await;
    assert_eq!(connected.len(), 2 * edges.len(), "every link up");
    // Let the digests settle, as the in-process benchmark does.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut rng = Rng::new(p.seed ^ 0xBEEF);
    let publish = |k: usize| {
        // The payload names the message; padded to PAYLOAD bytes.
        let mut text = format!("m{k} ");
        text.extend(std::iter::repeat_n('x', PAYLOAD.saturating_sub(text.len())));
        format!("publish {text}\n")
    };
    for k in 0..WARMUP {
        let node = rng.index(p.nodes);
        nodes[node]
            .stdin
            .write_all(publish(k).as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(p.interval).await;
    }
    let warm = collect(
        &mut rx,
        WARMUP * (p.nodes - 1),
        Duration::from_secs(60),
        "message",
    )
    .await;
    assert_eq!(
        warm.len(),
        WARMUP * (p.nodes - 1),
        "the warm-up arrived everywhere"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    while rx.try_recv().is_ok() {}

    let cpu_before: Duration = nodes.iter().map(|n| common::cpu_time(&n.pid)).sum();
    let bytes_before = loopback_bytes();
    let expected = p.messages * (p.nodes - 1);
    // Deliveries are read while messages are published.
    let collector = tokio::spawn(async move {
        let got = collect(&mut rx, expected, Duration::from_secs(120), "message").await;
        (rx, got)
    });
    for k in 0..p.messages {
        let node = rng.index(p.nodes);
        let line = publish(WARMUP + k);
        nodes[node].stdin.write_all(line.as_bytes()).await.unwrap();
        tokio::time::sleep(p.interval).await;
    }
    let (_rx, got) = collector.await.expect("collector");
    let cpu = nodes
        .iter()
        .map(|n| common::cpu_time(&n.pid))
        .sum::<Duration>()
        .saturating_sub(cpu_before);
    let bytes = loopback_bytes().saturating_sub(bytes_before);
    let rss: Vec<f64> = nodes.iter().map(|n| common::peak_rss_mib(&n.pid)).collect();
    for n in &mut nodes {
        let _ = n.child.start_kill();
    }
    let mut delays: Vec<f64> = got
        .iter()
        .filter_map(|l| {
            let sent = l.value["timestamp"].as_u64()?;
            Some(l.at_ms.saturating_sub(sent) as f64)
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    let delivered = got.len().max(1) as f64;
    Row {
        delivered: got.len(),
        expected,
        p50: common::percentile(&delays, 0.50),
        p99: common::percentile(&delays, 0.99),
        cpu_us_per_delivery: cpu.as_secs_f64() * 1e6 / delivered,
        loopback_bytes_per_delivery: bytes as f64 / delivered,
        max_rss_mib: rss.iter().copied().fold(0.0, f64::max),
        total_rss_mib: rss.iter().sum(),
    }
}

fn main() {
    let role = std::env::args().nth(1);
    if let Some(role @ ("--gossipsub-node" | "--secure-gossip-node")) = role.as_deref() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        if role == "--gossipsub-node" {
            runtime.block_on(gossipsub_node());
        } else {
            runtime.block_on(secure_gossip_node());
        }
        return;
    }
    let mut args = std::env::args().skip(1);
    let (mut seeds, mut nodes, mut messages, mut interval) = (vec![1u64, 2, 3], 100, 200, 50);
    let mut with_example = false;
    while let Some(flag) = args.next() {
        let mut number = || -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--seeds" => seeds = (1..=number()).collect(),
            "--nodes" => nodes = number() as usize,
            "--messages" => messages = number() as usize,
            "--interval" => interval = number(),
            "--node-example" => with_example = true,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let binary = if with_example {
        node_binary()
    } else {
        PathBuf::new()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "\n{nodes} node processes over TCP on loopback, degree {DEGREE}, {messages} messages of \
         {PAYLOAD} bytes every {interval} ms after a {WARMUP}-message warm-up; seeds {seeds:?}"
    );
    println!(
        "| protocol | seed | delivered | p50 ms | p99 ms | CPU µs / delivery | loopback bytes / delivery | largest peak RSS MiB | sum of peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut protocols = vec![Protocol::SecureGossip, Protocol::Gossipsub];
    if with_example {
        protocols.insert(0, Protocol::NodeExample);
    }
    let mut medians = Vec::new();
    for protocol in protocols {
        let mut cols: [Vec<f64>; 6] = Default::default();
        for &seed in &seeds {
            let p = Params {
                nodes,
                messages,
                interval: Duration::from_millis(interval),
                seed,
            };
            let r = runtime.block_on(run(protocol, &binary, &p));
            println!(
                "| {} | {seed} | {}/{} | {:.0} | {:.0} | {:.1} | {:.0} | {:.1} | {:.0} |",
                protocol.name(),
                r.delivered,
                r.expected,
                r.p50,
                r.p99,
                r.cpu_us_per_delivery,
                r.loopback_bytes_per_delivery,
                r.max_rss_mib,
                r.total_rss_mib
            );
            for (c, v) in cols.iter_mut().zip([
                r.p50,
                r.p99,
                r.cpu_us_per_delivery,
                r.loopback_bytes_per_delivery,
                r.max_rss_mib,
                r.total_rss_mib,
            ]) {
                c.push(v);
            }
        }
        medians.push((protocol, cols.map(common::median)));
    }
    println!("\nmedians over seeds, and ratios to gossipsub:");
    println!(
        "| protocol | p50 ms | p99 ms | CPU µs / delivery | loopback bytes / delivery | largest peak RSS MiB | sum of peak RSS MiB | p99 vs gossipsub | CPU vs gossipsub | bytes vs gossipsub | RSS vs gossipsub |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let base = medians
        .iter()
        .find(|(p, _)| *p == Protocol::Gossipsub)
        .map(|(_, m)| *m)
        .expect("gossipsub ran");
    for (protocol, m) in &medians {
        println!(
            "| {} | {:.0} | {:.0} | {:.1} | {:.0} | {:.1} | {:.0} | {} | {} | {} | {} |",
            protocol.name(),
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5],
            common::ratio(m[1], base[1]),
            common::ratio(m[2], base[2]),
            common::ratio(m[3], base[3]),
            common::ratio(m[5], base[5])
        );
    }
}
