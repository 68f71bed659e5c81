//! A terminal chat over secure-gossip: TCP + noise + yamux, peers found by mDNS on the LAN
//! or dialled with `--dial`. Each line typed is published; each message received is printed
//! with its author.
//!
//! ```text
//! cargo run --example chat                      # run it in two terminals: they find each other
//! cargo run --example chat -- --key me.key      # sign with an ssb-keys file (created if absent)
//! cargo run --example chat -- --dial /ip4/127.0.0.1/tcp/4001 --listen /ip4/0.0.0.0/tcp/4002
//! cargo run --example chat -- --metrics 127.0.0.1:9464   # Prometheus metrics at /metrics
//! cargo run --example chat -- --data chat-data  # history and key kept across restarts
//! ```
//!
//! With `--data DIR` the messages, the ids already shown and the next sequence are kept in
//! `DIR/gossip.redb`, and the key in `DIR/chat.key` (unless `--key` names one): a restarted
//! chat shows no message twice and serves its history to peers that join later.

#[path = "common/metrics_http.rs"]
mod metrics_http;

use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, mdns, noise, tcp, yamux};
use secure_gossip::{Behaviour, Config, Event, Keypair};
use std::error::Error;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(NetworkBehaviour)]
struct Chat {
    gossip: Behaviour,
    mdns: mdns::tokio::Behaviour,
}

struct Args {
    dial: Vec<Multiaddr>,
    listen: Multiaddr,
    key: Option<String>,
    metrics: Option<std::net::SocketAddr>,
    data: Option<std::path::PathBuf>,
}

const USAGE: &str = "usage: chat [--key <ssb-keys file>] [--dial <multiaddr>]... \
                     [--listen <multiaddr>] [--metrics <ip:port>] [--data <dir>]";

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut args = Args {
        dial: Vec::new(),
        listen: "/ip4/0.0.0.0/tcp/0".parse()?,
        key: None,
        metrics: None,
        data: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--dial" => args.dial.push(value()?.parse()?),
            "--listen" => args.listen = value()?.parse()?,
            "--key" => args.key = Some(value()?),
            "--metrics" => args.metrics = Some(value()?.parse()?),
            "--data" => args.data = Some(value()?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let args = parse_args()?;
    if let Some(dir) = &args.data {
        std::fs::create_dir_all(dir).map_err(|e| format!("--data {}: {e}", dir.display()))?;
    }
    // Without --key (or --data) every run is a new author, so two terminals chat as two
    // people.
    let key_file = (args.key.clone().map(std::path::PathBuf::from))
        .or_else(|| args.data.as_ref().map(|dir| dir.join("chat.key")));
    let keys = match &key_file {
        Some(path) => Keypair::load_or_generate(path)?,
        None => Keypair::generate(),
    };
    let me = keys.public();
    let mut registry = prometheus_client::registry::Registry::default();
    let mut gossip = match &args.data {
        Some(dir) => {
            let store = secure_gossip::store::Redb::open(dir.join("gossip.redb"))?;
            Behaviour::with_store(keys, Config::default(), store)?
        }
        None => Behaviour::new(keys, Config::default()),
    };
    if args.metrics.is_some() {
        gossip.register_metrics(&mut registry);
    }
    if let Some(addr) = args.metrics {
        let bound = metrics_http::serve(addr, registry).await?;
        println!("metrics at http://{bound}/metrics");
    }

    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| {
            Ok(Chat {
                gossip,
                mdns: mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    key.public().to_peer_id(),
                )?,
            })
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.listen_on(args.listen)?;
    for addr in args.dial {
        swarm.dial(addr)?;
    }
    println!("you are {me}");
    println!("type a line and press enter to send it; ctrl-d quits");

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            line = stdin.next_line(), if stdin_open => match line? {
                Some(line) if line.trim().is_empty() => {}
                Some(line) => {
                    if let Err(e) = swarm.behaviour_mut().gossip.publish(line.into_bytes()) {
                        eprintln!("not sent: {e}");
                    }
                }
                None => stdin_open = false,
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(ChatEvent::Gossip(Event::Message { message, .. })) => {
                    println!("{}: {}", message.author, String::from_utf8_lossy(&message.payload));
                }
                // The behaviour stops gossip with a peer that breaks the protocol or stalls and
                // leaves the connection to the application: this chat disconnects it.
                SwarmEvent::Behaviour(ChatEvent::Gossip(Event::PeerViolation { peer, violation })) => {
                    eprintln!("disconnecting {peer}: {violation}");
                    let _ = swarm.disconnect_peer_id(peer);
                }
                SwarmEvent::Behaviour(ChatEvent::Gossip(Event::SlowPeer { peer, .. })) => {
                    eprintln!("disconnecting {peer}: too slow");
                    let _ = swarm.disconnect_peer_id(peer);
                }
                SwarmEvent::Behaviour(ChatEvent::Gossip(Event::StoreFailed { error, unwritten })) => {
                    eprintln!("{error} ({unwritten} messages wait to be shown)");
                }
                SwarmEvent::Behaviour(ChatEvent::Gossip(Event::ClockSkew { estimated_offset_ms })) => {
                    eprintln!(
                        "most messages from peers are outside this node's time window; \
                         their clocks are {estimated_offset_ms} ms from ours: check the system clock"
                    );
                }
                SwarmEvent::Behaviour(ChatEvent::Mdns(mdns::Event::Discovered(found))) => {
                    // Both sides discover each other at once: only the smaller id dials, so
                    // two dials never cross.
                    let me = *swarm.local_peer_id();
                    for (peer, addr) in found {
                        if me < peer
                            && !swarm.is_connected(&peer)
                            && let Err(e) = swarm.dial(addr.clone())
                        {
                            eprintln!("could not dial {addr}: {e}");
                        }
                    }
                }
                SwarmEvent::NewListenAddr { address, .. } => {
                    println!("listening on {address}/p2p/{}", swarm.local_peer_id());
                }
                SwarmEvent::ConnectionEstablished { peer_id, num_established, .. }
                    if num_established.get() == 1 => println!("connected to {peer_id}"),
                SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                    eprintln!("could not connect to {peer_id:?}: {error}");
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    println!("disconnected from {peer_id}");
                }
                _ => {}
            },
        }
        if !stdin_open {
            return Ok(());
        }
    }
}
