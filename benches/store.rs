//! Durable store benchmark (`store::Redb` against in memory), over real swarms on loopback TCP
//! (noise, yamux):
//!
//! ```text
//! cargo bench --bench store              # every figure, 3 runs each (medians)
//! cargo bench --bench store -- --runs 1  # one run each
//! ```
//!
//! - **receive rate**: one node publishes a burst, the other receives it; messages received
//!   per second (first publish to last `Event::Message`), for 256 B and 16 KiB payloads, the
//!   receiver in memory and with a redb file. The receiver's inbound budget is raised so
//!   the figure is the node's own speed, not the budget's;
//! - **start-up**: `Redb::open` (with its integrity check) and `Behaviour::with_store` of a
//!   file holding 100,000 messages of 256 B;
//! - **disk**: bytes of that file per stored message.
//!
//! Each run is its own process, so its peak RSS is its own.

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm, noise, tcp, yamux};
use secure_gossip::engine::Engine;
use secure_gossip::store::{Redb, Store};
use secure_gossip::{Behaviour, Config, Event, Keypair};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Messages in a burst of each size.
const BURSTS: [(usize, usize); 2] = [(256, 20_000), (16 * 1024, 2_000)];
/// Messages in the start-up file.
const STARTUP_MESSAGES: usize = 100_000;

fn config() -> Config {
    Config::builder()
        .max_inbound_messages_per_sec(1_000_000)
        .max_inbound_bytes_per_sec(1 << 30)
        .build()
        .expect("valid")
}

fn swarm(behaviour: Behaviour) -> Swarm<Behaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

async fn listen(swarm: &mut Swarm<Behaviour>) -> Multiaddr {
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return address;
        }
    }
}

/// Messages per second received by a node in memory (`store` `None`) or on a redb file.
async fn receive_rate(payload: usize, count: usize, store: Option<&Path>) -> f64 {
    let receiver = match store {
        Some(path) => {
            Behaviour::with_store(Keypair::generate(), config(), Redb::open(path).unwrap()).unwrap()
        }
        None => Behaviour::new(Keypair::generate(), config()),
    };
    let mut receiver = swarm(receiver);
    let addr = listen(&mut receiver).await;
    let mut sender = swarm(Behaviour::new(Keypair::generate(), config()));
    sender.dial(addr).unwrap();
    // Warm-up: one message through, so the connection and substreams are up.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Duration>();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let receiving = tokio::spawn(async move {
        let mut got = 0;
        let mut start = None;
        loop {
            if let SwarmEvent::Behaviour(Event::Message { .. }) = receiver.select_next_some().await
            {
                got += 1;
                if got == 1 {
                    start = Some(Instant::now());
                    let _ = ready_tx.send(());
                }
                if got == count + 1 {
                    let _ = done_tx.send(start.unwrap().elapsed());
                    // Keep the swarm alive until the sender is done.
                    loop {
                        receiver.select_next_some().await;
                    }
                }
            }
        }
    });
    let body = vec![b'x'; payload];
    let mut published = 0;
    let mut warmed = false;
    let mut done = std::pin::pin!(done_rx);
    loop {
        tokio::select! {
            biased;
            elapsed = &mut done => {
                receiving.abort();
                let elapsed = elapsed.expect("receiver ran");
                return count as f64 / elapsed.as_secs_f64();
            }
            _ = ready_rx.recv(), if !warmed => warmed = true,
            _ = sender.select_next_some() => {}
            _ = std::future::ready(()), if published == 0 || (warmed && published <= count) => {
                // The warm-up message alone; then the burst, 64 at a time between polls.
                let batch = if published == 0 { 1 } else { 64.min(count + 1 - published) };
                for _ in 0..batch {
                    sender.behaviour_mut().publish(body.clone()).expect("publish");
                    published += 1;
                }
            }
        }
    }
}

/// A redb file at `path` with `count` messages of 256 B from one author.
fn fill(path: &Path, count: usize) {
    let mut store = Redb::open(path).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut engine: Engine<u8> = Engine::new(Keypair::generate(), Config::default(), now);
    engine.restore(store.load().unwrap(), now);
    let reservation = engine.take_changes();
    store.commit(&reservation).unwrap();
    engine.written(&reservation);
    let body = vec![b'y'; 256];
    for chunk in 0..count.div_ceil(10_000) {
        for _ in 0..10_000.min(count - chunk * 10_000) {
            engine.publish(body.clone(), now).unwrap();
        }
        store.commit(&engine.take_changes()).unwrap();
    }
}

fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// A memory figure of this process from `/proc/self/status`, in MiB.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "secure-gossip-bench-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One measurement in this process: prints `key value` lines.
fn child(what: &str) {
    let dir = scratch();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match what.split_once(':') {
        Some(("receive", rest)) => {
            let (mode, size) = rest.split_once(':').unwrap();
            let payload: usize = size.parse().unwrap();
            let count = BURSTS.iter().find(|(p, _)| *p == payload).unwrap().1;
            let path = dir.join("receiver.redb");
            let store = (mode == "redb").then_some(path.as_path());
            let rate = runtime.block_on(receive_rate(payload, count, store));
            println!("rate {rate}");
        }
        Some(("fill", path)) => fill(Path::new(path), STARTUP_MESSAGES),
        Some(("startup", path)) => {
            let path = Path::new(path);
            let start = Instant::now();
            let behaviour = runtime.block_on(async {
                let store = Redb::open(path).unwrap();
                Behaviour::with_store(Keypair::generate(), Config::default(), store).unwrap()
            });
            let startup = start.elapsed();
            assert_eq!(behaviour.stored().0, STARTUP_MESSAGES, "all restored");
            println!("startup {}", startup.as_secs_f64());
            println!("rss {}", peak_rss_mib());
            println!("now {}", status_mib("VmRSS:"));
        }
        _ => {
            // The same messages held by a node that never had a store.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let mut engine: Engine<u8> = Engine::new(Keypair::generate(), Config::default(), now);
            for _ in 0..STARTUP_MESSAGES {
                engine.publish(vec![b'y'; 256], now).unwrap();
            }
            assert_eq!(engine.stored().0, STARTUP_MESSAGES);
            println!("rss {}", peak_rss_mib());
            println!("now {}", status_mib("VmRSS:"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn run_child(what: &str) -> Vec<(String, f64)> {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--child", what])
        .output()
        .expect("child runs");
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1]);
        return;
    }
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(3usize);
    let value = |what: &str, key: &str| -> Vec<f64> {
        (0..runs)
            .map(|_| {
                run_child(what)
                    .into_iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v)
                    .unwrap()
            })
            .collect()
    };
    println!("| payload | in memory (msg/s) | redb (msg/s) | redb / memory |");
    println!("|---|---|---|---|");
    for (payload, _) in BURSTS {
        let memory = value(&format!("receive:memory:{payload}"), "rate");
        let redb = value(&format!("receive:redb:{payload}"), "rate");
        let (m, r) = (median(memory.clone()), median(redb.clone()));
        println!(
            "| {payload} B | {m:.0} ({}) | {r:.0} ({}) | {:.2} |",
            spread(&memory),
            spread(&redb),
            r / m
        );
    }
    let dir = scratch();
    let file = dir.join("startup.redb");
    run_child(&format!("fill:{}", file.display()));
    let disk = std::fs::metadata(&file).unwrap().len() as f64 / STARTUP_MESSAGES as f64;
    let startup: Vec<Vec<(String, f64)>> = (0..runs)
        .map(|_| run_child(&format!("startup:{}", file.display())))
        .collect();
    let pick = |key: &str| -> Vec<f64> {
        startup
            .iter()
            .map(|r| r.iter().find(|(k, _)| k == key).unwrap().1)
            .collect()
    };
    let (s, rss, now) = (pick("startup"), pick("rss"), pick("now"));
    let memory_rss = value("memory", "rss");
    let memory_now = value("memory", "now");
    println!();
    println!("| {STARTUP_MESSAGES} messages of 256 B | figure |");
    println!("|---|---|");
    println!(
        "| start-up (`Redb::open` + `Behaviour::with_store`) | {:.3} s ({}) |",
        median(s.clone()),
        spread(&s)
    );
    println!("| bytes on disk per message | {disk:.0} |");
    println!(
        "| RSS after start-up from the file: peak, then | {:.0} MiB, {:.0} MiB |",
        median(rss),
        median(now)
    );
    println!(
        "| RSS of an in-memory node holding the same: peak, then | {:.0} MiB, {:.0} MiB |",
        median(memory_rss),
        median(memory_now)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn spread(v: &[f64]) -> String {
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(0.0, f64::max);
    if hi >= 100.0 {
        format!("{lo:.0}–{hi:.0}")
    } else {
        format!("{lo:.3}–{hi:.3}")
    }
}
