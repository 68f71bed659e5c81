//! What the propagation benchmarks share: the seeded graph, gossipsub's configuration and
//! readings from `/proc`.

use libp2p::gossipsub;
use secure_gossip::sim::Rng;
use std::collections::BTreeSet;
use std::time::Duration;

/// A seeded random connected graph: a random tree, then random edges up to `degree` on
/// average.
pub fn topology(nodes: usize, degree: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut rng = Rng::new(seed);
    let mut edges = BTreeSet::new();
    for i in 1..nodes {
        edges.insert((rng.index(i), i));
    }
    while edges.len() < nodes * degree / 2 {
        let (a, b) = (rng.index(nodes), rng.index(nodes));
        if a != b && !edges.contains(&(b, a)) {
            edges.insert((a, b));
        }
    }
    edges.into_iter().collect()
}

/// CPU time (user + system) of process `pid` so far (`"self"`: this one), from /proc.
pub fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime 13th.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// Peak RSS of process `pid` (`"self"`: this one), MiB.
pub fn peak_rss_mib(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The median (the upper one of an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The `q` quantile of `sorted` (NaN if it is empty).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let at = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(at).copied().unwrap_or(f64::NAN)
}

/// The topic every gossipsub node subscribes to.
pub const TOPIC: &str = "bench";

/// gossipsub as both benchmarks run it: signed by the author and verified by every receiver
/// (like secure-gossip), heartbeat 100 ms, flood publish; subscribed to [`TOPIC`].
pub fn gossipsub(key: &libp2p::identity::Keypair) -> gossipsub::Behaviour {
    let config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(100))
        .validation_mode(gossipsub::ValidationMode::Strict)
        .flood_publish(true)
        .build()
        .expect("gossipsub config");
    let mut b: gossipsub::Behaviour =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
            .expect("gossipsub");
    b.subscribe(&gossipsub::IdentTopic::new(TOPIC))
        .expect("subscribe");
    b
}

/// `value` against gossipsub's `base`, or "–" where gossipsub's is zero (idle CPU).
pub fn ratio(value: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.2}×", value / base)
    } else {
        "–".to_string()
    }
}
