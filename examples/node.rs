//! A headless secure-gossip node, for operators and for tests: every event is one JSON line on
//! stdout, commands come one per line on stdin.
//!
//! ```text
//! cargo run --example node -- --tcp --quic --key node.key --metrics 127.0.0.1:9464 \
//!     --dial /ip4/10.0.0.2/tcp/4001
//! ```
//!
//! Arguments: `--listen ADDR` (repeatable; default: what `--tcp` / `--quic` ask for, or TCP on
//! the loopback interface only), `--tcp [PORT]` (listen on TCP, all interfaces), `--quic
//! [PORT]` (listen on QUIC v1, UDP, all interfaces), `--dial ADDR` (repeatable), `--key FILE`
//! (an ssb-keys file, created if absent; the node's transport identity too, so its peer id
//! survives restarts), `--metrics ADDR` (serve `/metrics` over HTTP), `--max-connections N`
//! (established connections in all, default 128), `--max-per-peer N` (established
//! connections per peer id, default 2), `--max-pending N` (incoming connections still in
//! their handshake, default 32), `--data DIR` (keep messages, the ids delivered and the next
//! sequence in `DIR/gossip.redb`, so a restarted node reports nothing twice and still serves
//! its history; without it everything is in memory). Other settings come from
//! `Config::default()`.
//!
//! Output never holds up the swarm: lines go through a bounded queue (4,096 lines) to a
//! writer task; when stdout is read too slowly the lines that do not fit are dropped and
//! counted (`output_dropped` in `stats`, and a `dropped` event once there is room again).
//!
//! Commands: `publish <text>`, `dial <addr>`, `stats`, `quit`.
//!
//! A store that cannot be opened (in use by another process, damaged, not a store) ends the
//! process at once with exit code 2, an `error` line and the reason on stderr.
//!
//! Output, one JSON object per line, `"event"` saying which: `started` (peer id, author),
//! `listening` (address with `/p2p/<peer id>`), `metrics` (address), `connected`,
//! `disconnected`, `published` (id, sequence), `message` (author, sequence, id, timestamp,
//! payload as UTF-8 text, from), `violation`, `equivocation`, `slow_peer`,
//! `unsupported_peer`, `store_failed`, `stats`, `dropped` (count), `error`.

#[path = "common/metrics_http.rs"]
mod metrics_http;

use futures::StreamExt;
use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, Swarm, noise, tcp, yamux};
use prometheus_client::registry::Registry;
use secure_gossip::{Behaviour, Config, Event, Keypair, Message};
use serde_json::{Value, json};
use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

const USAGE: &str = "usage: node [--listen ADDR]... [--tcp [PORT]] [--quic [PORT]] \
                     [--dial ADDR]... [--key FILE] [--metrics ADDR] [--max-connections N] \
                     [--max-per-peer N] [--max-pending N] [--data DIR]";

/// Lines of output that may wait for a slow reader of stdout.
const OUTPUT_QUEUE: usize = 4096;

struct Args {
    listen: Vec<Multiaddr>,
    dial: Vec<Multiaddr>,
    key: Option<String>,
    metrics: Option<SocketAddr>,
    max_connections: u32,
    max_per_peer: u32,
    max_pending: u32,
    data: Option<std::path::PathBuf>,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            listen: Vec::new(),
            dial: Vec::new(),
            key: None,
            metrics: None,
            max_connections: 128,
            max_per_peer: 2,
            max_pending: 32,
            data: None,
        }
    }
}

/// The gossip behaviour, behind connection limits (as the README recommends).
#[derive(NetworkBehaviour)]
struct NodeBehaviour {
    limits: connection_limits::Behaviour,
    gossip: Behaviour,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1).peekable();
    while let Some(flag) = it.next() {
        // An optional port after --tcp / --quic.
        let port = |it: &mut std::iter::Peekable<std::iter::Skip<std::env::Args>>| {
            it.next_if(|v| v.parse::<u16>().is_ok())
                .map_or(0, |v| v.parse().expect("checked"))
        };
        match flag.as_str() {
            "--listen" => args.listen.push(value(&mut it, &flag)?.parse()?),
            "--dial" => args.dial.push(value(&mut it, &flag)?.parse()?),
            "--key" => args.key = Some(value(&mut it, &flag)?),
            "--metrics" => args.metrics = Some(value(&mut it, &flag)?.parse()?),
            "--max-connections" => args.max_connections = value(&mut it, &flag)?.parse()?,
            "--max-per-peer" => args.max_per_peer = value(&mut it, &flag)?.parse()?,
            "--max-pending" => args.max_pending = value(&mut it, &flag)?.parse()?,
            "--data" => args.data = Some(value(&mut it, &flag)?.into()),
            "--tcp" => {
                let port = port(&mut it);
                args.listen
                    .push(format!("/ip4/0.0.0.0/tcp/{port}").parse()?);
            }
            "--quic" => {
                let port = port(&mut it);
                args.listen
                    .push(format!("/ip4/0.0.0.0/udp/{port}/quic-v1").parse()?);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    if args.listen.is_empty() {
        args.listen.push("/ip4/127.0.0.1/tcp/0".parse()?);
    }
    Ok(args)
}

fn value(it: &mut impl Iterator<Item = String>, flag: &str) -> Result<String, String> {
    it.next()
        .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
}

/// Where event lines go: a bounded queue to the writer task. `emit` never waits.
#[derive(Clone)]
struct Output {
    lines: mpsc::Sender<String>,
    dropped: Arc<AtomicU64>,
    /// Dropped lines not yet reported by a `dropped` event.
    unreported: Arc<AtomicU64>,
}

impl Output {
    /// The queue and its writer task (which ends when every `Output` is gone and the queue
    /// is written out).
    fn start() -> (Output, tokio::task::JoinHandle<()>) {
        let (lines, mut rx) = mpsc::channel::<String>(OUTPUT_QUEUE);
        let writer = tokio::spawn(async move {
            let mut stdout = tokio::io::stdout();
            while let Some(line) = rx.recv().await {
                if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err()
                {
                    return;
                }
            }
        });
        let output = Output {
            lines,
            dropped: Arc::new(AtomicU64::new(0)),
            unreported: Arc::new(AtomicU64::new(0)),
        };
        (output, writer)
    }

    /// Queues one event line; drops and counts it if the queue is full.
    fn emit(&self, event: &str, mut fields: Value) {
        let missed = self.unreported.swap(0, Ordering::Relaxed);
        if missed > 0 {
            let line = format!("{}\n", json!({ "event": "dropped", "count": missed }));
            if self.lines.try_send(line).is_err() {
                self.unreported.fetch_add(missed, Ordering::Relaxed);
            }
        }
        fields["event"] = json!(event);
        if self.lines.try_send(format!("{fields}\n")).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.unreported.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The gossip behaviour: in memory, or kept in `DIR/gossip.redb` with `--data DIR`.
fn gossip_behaviour(
    keys: &Keypair,
    data: Option<&std::path::Path>,
) -> Result<Behaviour, Box<dyn Error>> {
    let Some(dir) = data else {
        return Ok(Behaviour::new(keys.clone(), Config::default()));
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("--data {}: {e}", dir.display()))?;
    let store = secure_gossip::store::Redb::open(dir.join("gossip.redb"))?;
    Ok(Behaviour::with_store(
        keys.clone(),
        Config::default(),
        store,
    )?)
}

fn message_json(message: &Message, from: &libp2p::PeerId) -> Value {
    json!({
        "author": message.author.to_string(),
        "sequence": message.sequence,
        "id": message.id.to_string(),
        "timestamp": message.timestamp,
        "payload": String::from_utf8_lossy(&message.payload),
        "from": from.to_string(),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let args = parse_args()?;
    let keys = match &args.key {
        Some(path) => Keypair::load_or_generate(path)?,
        None => Keypair::generate(),
    };
    let mut registry = Registry::default();
    let (out, writer) = Output::start();
    let mut gossip = match gossip_behaviour(&keys, args.data.as_deref()) {
        Ok(gossip) => gossip,
        Err(e) => {
            eprintln!("node: {e}");
            out.emit("error", json!({ "error": e.to_string() }));
            drop(out);
            let _ = writer.await;
            std::process::exit(2);
        }
    };
    gossip.register_metrics(&mut registry);
    let limits = ConnectionLimits::default()
        .with_max_established(Some(args.max_connections))
        .with_max_established_per_peer(Some(args.max_per_peer))
        .with_max_pending_incoming(Some(args.max_pending));
    let behaviour = NodeBehaviour {
        limits: connection_limits::Behaviour::new(limits),
        gossip,
    };
    let mut swarm: Swarm<NodeBehaviour> =
        libp2p::SwarmBuilder::with_existing_identity(keys.to_libp2p())
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_quic()
            .with_behaviour(|_| behaviour)?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
    out.emit(
        "started",
        json!({ "peer_id": swarm.local_peer_id().to_string(), "author": keys.public().to_string() }),
    );
    if let Some(addr) = args.metrics {
        let bound = metrics_http::serve(addr, registry).await?;
        out.emit("metrics", json!({ "address": bound.to_string() }));
    }
    for addr in args.listen {
        swarm.listen_on(addr)?;
    }
    for addr in args.dial {
        if let Err(e) = swarm.dial(addr.clone()) {
            out.emit("error", json!({ "error": format!("dial {addr}: {e}") }));
        }
    }

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = stdin.next_line() => {
                let Some(line) = line? else { break };
                if !command(&mut swarm, &out, line.trim()) {
                    break;
                }
            }
            event = swarm.select_next_some() => on_event(&mut swarm, &out, event),
        }
    }
    // What is queued is written out before the process ends.
    drop(out);
    let _ = writer.await;
    Ok(())
}

/// Runs one stdin command; `false` to quit.
fn command(swarm: &mut Swarm<NodeBehaviour>, out: &Output, line: &str) -> bool {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    match verb {
        "" => {}
        "publish" => match swarm
            .behaviour_mut()
            .gossip
            .publish(rest.as_bytes().to_vec())
        {
            Ok(id) => out.emit(
                "published",
                json!({ "id": id.to_string(), "sequence": id.sequence }),
            ),
            Err(e) => out.emit("error", json!({ "error": e.to_string() })),
        },
        "dial" => match rest.parse::<Multiaddr>() {
            Ok(addr) => {
                if let Err(e) = swarm.dial(addr) {
                    out.emit("error", json!({ "error": e.to_string() }));
                }
            }
            Err(e) => out.emit("error", json!({ "error": format!("{rest}: {e}") })),
        },
        "stats" => {
            let b = &swarm.behaviour().gossip;
            let s = b.stats();
            out.emit(
                "stats",
                json!({
                    "published": s.published,
                    "delivered": s.delivered,
                    "duplicates": s.duplicates,
                    "verified": s.verified,
                    "equivocations": s.equivocations,
                    "stored": b.stored().0,
                    "gossip_peers": b.gossip_peers().count(),
                    "connected": swarm.connected_peers().count(),
                    "output_dropped": out.dropped.load(Ordering::Relaxed),
                }),
            );
        }
        "quit" => return false,
        other => out.emit(
            "error",
            json!({ "error": format!("unknown command {other:?}: publish, dial, stats, quit") }),
        ),
    }
    true
}

fn on_event(swarm: &mut Swarm<NodeBehaviour>, out: &Output, event: SwarmEvent<NodeBehaviourEvent>) {
    // The behaviour stops gossip with a peer that breaks the protocol or stalls, and leaves
    // the connection to the application: this node disconnects it.
    if let SwarmEvent::Behaviour(NodeBehaviourEvent::Gossip(
        Event::PeerViolation { peer, .. } | Event::SlowPeer { peer, .. },
    )) = &event
    {
        let _ = swarm.disconnect_peer_id(*peer);
    }
    match event {
        SwarmEvent::NewListenAddr { address, .. } => out.emit(
            "listening",
            json!({ "address": format!("{address}/p2p/{}", swarm.local_peer_id()) }),
        ),
        SwarmEvent::ConnectionEstablished {
            peer_id,
            num_established,
            endpoint,
            ..
        } if num_established.get() == 1 => out.emit(
            "connected",
            json!({ "peer": peer_id.to_string(), "address": endpoint.get_remote_address().to_string() }),
        ),
        SwarmEvent::ConnectionClosed {
            peer_id,
            num_established: 0,
            ..
        } => out.emit("disconnected", json!({ "peer": peer_id.to_string() })),
        SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => out.emit(
            "error",
            json!({ "error": format!("connecting to {peer_id:?}: {error}") }),
        ),
        SwarmEvent::Behaviour(NodeBehaviourEvent::Gossip(event)) => match event {
            Event::Message {
                message,
                propagation_source,
            } => out.emit("message", message_json(&message, &propagation_source)),
            Event::PeerViolation { peer, violation } => out.emit(
                "violation",
                json!({ "peer": peer.to_string(), "violation": violation.to_string() }),
            ),
            Event::Equivocation {
                author,
                first,
                propagation_source,
                ..
            } => out.emit(
                "equivocation",
                json!({
                    "author": author.to_string(),
                    "sequence": first.sequence(),
                    "from": propagation_source.to_string(),
                }),
            ),
            Event::SlowPeer {
                peer,
                waited,
                queued_bytes,
            } => out.emit(
                "slow_peer",
                json!({
                    "peer": peer.to_string(),
                    "waited_ms": waited.as_millis() as u64,
                    "queued_bytes": queued_bytes,
                }),
            ),
            Event::UnsupportedPeer { peer } => {
                out.emit("unsupported_peer", json!({ "peer": peer.to_string() }))
            }
            Event::PeerUp { peer } => out.emit("peer_up", json!({ "peer": peer.to_string() })),
            Event::PeerDown { peer } => out.emit("peer_down", json!({ "peer": peer.to_string() })),
            Event::CaughtUp { peer } => out.emit("caught_up", json!({ "peer": peer.to_string() })),
            Event::ClockSkew {
                estimated_offset_ms,
            } => out.emit(
                "clock_skew",
                json!({ "estimated_offset_ms": estimated_offset_ms }),
            ),
            Event::StoreFailed { error, unwritten } => out.emit(
                "store_failed",
                json!({ "error": error.to_string(), "unwritten": unwritten }),
            ),
            _ => {}
        },
        _ => {}
    }
}
