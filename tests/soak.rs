//! The soak run: 20 hosts (network namespaces), 5 % packet loss, one message every 50 ms
//! from a random host for ten minutes, with random kills (SIGKILL, restart with the same key
//! and no state) and partitions; then the faults stop and every node must converge. It
//! reports delivery, duplicate deliveries, peak RSS per node and bytes per delivery.
//!
//! Not part of `cargo test`'s work: it runs only when `SECURE_GOSSIP_SOAK` gives its length
//! in seconds (as root, with `ip` and `nft`):
//!
//! ```text
//! SECURE_GOSSIP_NETNS=1 SECURE_GOSSIP_SOAK=600 cargo test --test soak -- --nocapture
//! ```

mod common;

use common::netns::{Network, Transport, skip};
use common::process::NodeProcess;
use common::seed_from_env;
use secure_gossip::sim::Rng;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

const HOSTS: usize = 20;

fn graph(seed: u64) -> Vec<(usize, usize)> {
    let mut rng = Rng::new(seed);
    let mut edges = BTreeSet::new();
    for i in 1..HOSTS {
        edges.insert((rng.index(i), i));
    }
    while edges.len() < HOSTS * 3 / 2 {
        let (a, b) = (rng.index(HOSTS), rng.index(HOSTS));
        if a != b {
            edges.insert((a.min(b), a.max(b)));
        }
    }
    edges.into_iter().collect()
}

/// What one node process delivered: ids and how often.
#[derive(Default)]
struct Deliveries {
    counts: HashMap<String, u32>,
}

impl Deliveries {
    fn take(&mut self, node: &mut NodeProcess) {
        for m in node.take_messages() {
            *self
                .counts
                .entry(m["id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn dial_neighbours(
    net: &Network,
    nodes: &mut [NodeProcess],
    edges: &[(usize, usize)],
    i: usize,
) {
    for &(a, b) in edges.iter().filter(|(a, b)| *a == i || *b == i) {
        let other = if a == i { b } else { a };
        nodes[i]
            .command(&format!("dial {}", net.addr(other, Transport::Tcp)))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak() {
    let Some(seconds) = std::env::var("SECURE_GOSSIP_SOAK")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        println!("soak: not run (set SECURE_GOSSIP_SOAK=<seconds> to run it)");
        return;
    };
    if skip("soak", true) {
        return;
    }
    let seed = seed_from_env(23);
    println!("soak: {HOSTS} hosts, {seconds} s, seed {seed}");
    let net = Network::create(HOSTS, HOSTS / 2);
    let mut nodes = Vec::new();
    for i in 0..HOSTS {
        nodes.push(net.start(i).await);
    }
    let mut edges = graph(seed);
    edges.extend([(0, 10), (4, 15), (9, 19)]);
    for i in 0..HOSTS {
        dial_neighbours(&net, &mut nodes, &edges, i).await;
    }
    net.set_loss(5);
    let mut rng = Rng::new(seed ^ 0x50A4);
    // Deliveries per node process (a restart starts a new one).
    let mut lifetimes: Vec<Vec<Deliveries>> =
        (0..HOSTS).map(|_| vec![Deliveries::default()]).collect();
    let mut published: Vec<(usize, String)> = Vec::new();
    let mut peak_rss: Vec<u64> = vec![0; HOSTS];
    let mut down: Option<(usize, Instant)> = None;
    let mut cut_until: Option<Instant> = None;
    let (mut kills, mut partitions) = (0, 0);
    let start = Instant::now();
    let mut next_fault = Instant::now() + Duration::from_secs(20);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while start.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        let host = rng.index(HOSTS);
        if down.is_none_or(|(d, _)| d != host) {
            let id = nodes[host]
                .publish(&format!("soak {} from {host}", published.len()))
                .await;
            published.push((host, id));
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            lifetimes[i].last_mut().unwrap().take(node);
            if let Some(pid) = node.pid() {
                peak_rss[i] = peak_rss[i].max(peak_rss_kib(pid));
            }
        }
        if let Some((d, since)) = down
            && since.elapsed() > Duration::from_secs(5)
        {
            nodes[d] = net.start(d).await;
            lifetimes[d].push(Deliveries::default());
            dial_neighbours(&net, &mut nodes, &edges, d).await;
            down = None;
        }
        if cut_until.is_some_and(|t| Instant::now() > t) {
            net.trunk(true);
            cut_until = None;
        }
        if Instant::now() > next_fault && down.is_none() && cut_until.is_none() {
            if rng.chance(0.5) {
                let victim = rng.index(HOSTS);
                nodes[victim].kill().await;
                down = Some((victim, Instant::now()));
                kills += 1;
            } else {
                net.trunk(false);
                cut_until = Some(Instant::now() + Duration::from_secs(10));
                partitions += 1;
            }
            next_fault = Instant::now() + Duration::from_secs(15 + rng.below(30));
        }
    }
    // Faults stop.
    if let Some((d, _)) = down.take() {
        nodes[d] = net.start(d).await;
        lifetimes[d].push(Deliveries::default());
        dial_neighbours(&net, &mut nodes, &edges, d).await;
    }
    net.trunk(true);
    let dropped = net.dropped_packets();
    net.set_loss(0);
    // Converge: every live node process has every message not its own.
    let authors: Vec<String> = nodes.iter().map(|n| n.author.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut missing = 0;
        for (i, node) in nodes.iter_mut().enumerate() {
            let current = lifetimes[i].last_mut().unwrap();
            current.take(node);
            missing += published
                .iter()
                .filter(|(_, id)| !id.starts_with(&authors[i]) && !current.counts.contains_key(id))
                .count();
        }
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "soak: {missing} deliveries still missing after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let converged = start.elapsed();
    for (i, node) in nodes.iter_mut().enumerate() {
        if let Some(pid) = node.pid() {
            peak_rss[i] = peak_rss[i].max(peak_rss_kib(pid));
        }
    }
    let bytes: u64 = (0..HOSTS).map(|i| net.tx_bytes(i)).sum();
    let deliveries: u64 = lifetimes
        .iter()
        .flatten()
        .map(|d| d.counts.len() as u64)
        .sum();
    let duplicates: u64 = lifetimes
        .iter()
        .flatten()
        .flat_map(|d| d.counts.values())
        .map(|c| u64::from(c.saturating_sub(1)))
        .sum();
    let unexpected: HashSet<&String> = lifetimes
        .iter()
        .flatten()
        .flat_map(|d| d.counts.keys())
        .filter(|id| !published.iter().any(|(_, p)| p == *id))
        .collect();
    let mut rss = peak_rss.clone();
    rss.sort_unstable();
    println!(
        "soak: {} messages published, {kills} kills, {partitions} partitions, {dropped} packets \
         dropped by the loss rules",
        published.len()
    );
    println!(
        "soak: converged {:.0} s after the start; delivery 1.0000 ({deliveries} deliveries over \
         {} node processes), {duplicates} duplicate deliveries, {} unexpected",
        converged.as_secs_f64(),
        lifetimes.iter().map(Vec::len).sum::<usize>(),
        unexpected.len()
    );
    println!(
        "soak: peak RSS per node: median {} MiB, max {} MiB; bytes on the wire per delivery \
         (IP, all traffic): {:.0}",
        rss[HOSTS / 2] / 1024,
        rss[HOSTS - 1] / 1024,
        bytes as f64 / deliveries as f64
    );
    assert_eq!(
        duplicates, 0,
        "a message was delivered twice to one node process"
    );
    assert!(unexpected.is_empty());
    for mut node in nodes {
        node.kill().await;
    }
}
