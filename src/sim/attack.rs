//! Attack scenarios at Sybil scale: a network of honest engines with a share of every honest
//! node's connections going to Sybils that behave as one [`Attack`], measured against the
//! same network and seed without the Sybils.
//!
//! What a run measures, for honest messages at honest nodes only: delivery, the delay from
//! publication to each delivery (p50, p99, and the target's own messages' p99), bytes sent
//! by honest nodes per honest delivery, duplicate deliveries, and violations reported of
//! Sybils. A late joiner's run measures how long a fresh node takes to hold the whole
//! retained history.

use super::{Attack, SimConfig, Simulation, SybilConfig};
use crate::config::Config;
use crate::engine::Millis;
use crate::sim::Rng;
use std::fmt;
use std::time::Instant;

/// One network, run with and without an attack.
#[derive(Clone, Debug)]
pub struct AttackScenario {
    /// Honest nodes.
    pub honest: usize,
    /// Sybil nodes.
    pub sybils: usize,
    /// Honest links per honest node (on average).
    pub degree: usize,
    /// Sybil links per honest node (`4 × degree`: 80 % of its connections).
    pub sybil_links: usize,
    /// Honest messages published, from random honest nodes, a random 0–99 ms apart.
    pub messages: usize,
    /// Every honest node's config.
    pub engine: Config,
    /// The seed.
    pub seed: u64,
    /// Whether the Sybils read tags ([`SybilConfig::reads_tags`]; by default they do not, so
    /// honest nodes announce to them as digests).
    pub sybils_read_tags: bool,
}

impl AttackScenario {
    /// 1,000 honest nodes among 4,000 Sybils, degree 6, 80 % of each honest node's
    /// connections to Sybils.
    pub fn full(seed: u64) -> Self {
        AttackScenario {
            honest: 1_000,
            sybils: 4_000,
            degree: 6,
            sybil_links: 24,
            messages: 200,
            engine: Config::default(),
            seed,
            sybils_read_tags: false,
        }
    }

    /// The same shape at a tenth: 100 honest nodes, 400 Sybils.
    pub fn small(seed: u64) -> Self {
        AttackScenario {
            honest: 100,
            sybils: 400,
            messages: 100,
            ..Self::full(seed)
        }
    }

    /// The honest node attacks aim at (the last one: no other node depends on its links).
    pub fn target(&self) -> usize {
        self.honest - 1
    }

    fn sim_config(&self, attack: Attack, with_sybils: bool) -> SimConfig {
        SimConfig {
            nodes: self.honest,
            degree: self.degree,
            latency: (10, 100),
            engine: self.engine.clone(),
            seed: self.seed,
            sybils: with_sybils.then(|| SybilConfig {
                count: self.sybils,
                links_per_node: self.sybil_links,
                attack,
                target: self.target(),
                flood_per_tick: 4,
                reads_tags: self.sybils_read_tags,
            }),
            single_link: (attack == Attack::Eclipse).then(|| self.target()),
            ..SimConfig::default()
        }
    }

    /// Runs `attack` (or, with `with_sybils` false, the same network without Sybils): a
    /// warm-up, the messages (the target publishes every tenth; a covert flash comes half-way),
    /// then until every honest node holds every message (at most a simulated minute).
    pub fn run(&self, attack: Attack, with_sybils: bool) -> AttackReport {
        let started = Instant::now();
        let mut sim = Simulation::new(self.sim_config(attack, with_sybils));
        let mut rng = Rng::new(self.seed ^ 0x00A7_7AC4);
        sim.run_for(2_000);
        if with_sybils && attack == Attack::Flood {
            // Each honest node is pushed this many throwaway authors over the run.
            sim.prepare_flood(self.messages * 2);
        }
        let target = self.target();
        for k in 0..self.messages {
            let node = if k % 10 == 0 {
                target
            } else {
                rng.index(self.honest)
            };
            sim.publish(node, format!("message {k} from {node}"));
            if with_sybils && attack == Attack::CovertFlash && k == self.messages / 2 {
                sim.withhold();
            }
            sim.run_for(rng.below(100));
        }
        let converged = sim.run_until_converged(100, 60_000);
        sim.run_for(2_000);
        let report = sim.report();
        let delays = sim.delays(None);
        let deliveries = delays.len() as u64;
        AttackReport {
            name: if with_sybils {
                attack.name()
            } else {
                "no attack"
            },
            converged,
            delivery: report.delivery_ratio,
            duplicates: report.duplicate_deliveries,
            p50: percentile(&delays, 0.50),
            p99: percentile(&delays, 0.99),
            target_p99: percentile(&sim.delays(Some(target)), 0.99),
            bytes_per_delivery: report.honest_bytes as f64 / deliveries.max(1) as f64,
            violations: report.violations,
            late_join_ms: None,
            seconds: started.elapsed().as_secs_f64(),
        }
    }

    /// A late joiner: the target is down while [`LATE_JOIN_HISTORY`] messages of 1 KiB are
    /// published (from random other honest nodes, a random 0–99 ms apart: more than a
    /// catch-up's pushed half frame, so most of it is pulled), then starts fresh, with 80 % of
    /// its connections to liars when `with_sybils`. Measures how long until it holds every
    /// retained message (at most a simulated minute).
    ///
    /// With Sybils, only the joiner's own Sybil links come up, when it starts, and the liars
    /// know every author of the history by then (one connection to any honest node tells
    /// them: its first frame names them all). What the other honest nodes' Sybil links would
    /// do meanwhile does not reach the joiner's catch-up, and simulating it (1,000 messages
    /// past 24,000 liar links) took 300–620 s.
    pub fn run_late_joiner(&self, with_sybils: bool) -> AttackReport {
        let started = Instant::now();
        let mut sim = Simulation::new(self.sim_config(Attack::Liar, with_sybils));
        let mut rng = Rng::new(self.seed ^ 0x1A7E);
        let joiner = self.target();
        sim.take_down(joiner);
        sim.sybil_links(false);
        sim.run_for(2_000);
        for k in 0..LATE_JOIN_HISTORY {
            let node = rng.index(self.honest - 1);
            let mut payload = format!("history {k} from {node} ").into_bytes();
            payload.resize(1024, b'.');
            sim.publish(node, payload);
            sim.run_for(rng.below(100));
        }
        sim.run_until_converged(100, 60_000);
        sim.sybils_hear_of_authors();
        sim.bring_up(joiner, false);
        let joined = sim.now();
        let mut late_join_ms = None;
        while sim.now() - joined <= 60_000 {
            if sim.holds_all(joiner) {
                late_join_ms = Some(sim.now() - joined);
                break;
            }
            sim.run_for(10);
        }
        let report = sim.report();
        AttackReport {
            name: if with_sybils {
                "late joiner among liars"
            } else {
                "late joiner, no attack"
            },
            converged: late_join_ms.is_some(),
            delivery: report.delivery_ratio,
            duplicates: report.duplicate_deliveries,
            p50: 0,
            p99: 0,
            target_p99: 0,
            bytes_per_delivery: 0.0,
            violations: report.violations,
            late_join_ms,
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// Messages of 1 KiB in the late joiner's history: about 1.1 MB, two frames.
pub const LATE_JOIN_HISTORY: usize = 1_000;

/// The `q`-quantile of sorted `values` (0 when empty).
fn percentile(values: &[Millis], q: f64) -> Millis {
    if values.is_empty() {
        return 0;
    }
    let i = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
    values[i]
}

/// What one run measured.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AttackReport {
    /// The scenario.
    pub name: &'static str,
    /// Whether every honest node held every honest message within the limit.
    pub converged: bool,
    /// Honest deliveries made / expected.
    pub delivery: f64,
    /// Deliveries of a message a node had already delivered (must be 0).
    pub duplicates: u64,
    /// Median delay from publication to delivery, ms.
    pub p50: Millis,
    /// 99th percentile of that delay, ms.
    pub p99: Millis,
    /// The target's own messages' p99, ms.
    pub target_p99: Millis,
    /// Bytes sent by honest nodes per honest delivery.
    pub bytes_per_delivery: f64,
    /// Violations honest nodes reported of Sybils.
    pub violations: u64,
    /// How long the late joiner took to hold the whole history, ms.
    pub late_join_ms: Option<Millis>,
    /// Wall-clock seconds the run took.
    pub seconds: f64,
}

impl AttackReport {
    /// The column names of the `Display` row.
    pub const HEADER: &'static str = "scenario                      delivery   p50 ms   p99 ms  target p99  B/delivery   dup  violations  late join ms    (s)";
}

impl fmt::Display for AttackReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let late = self
            .late_join_ms
            .map_or_else(|| "-".to_string(), |ms| ms.to_string());
        write!(
            f,
            "{:<28} {:>9.4} {:>8} {:>8} {:>11} {:>11.0} {:>5} {:>11} {:>13} {:>6.1}",
            self.name,
            self.delivery,
            self.p50,
            self.p99,
            self.target_p99,
            self.bytes_per_delivery,
            self.duplicates,
            self.violations,
            late,
            self.seconds
        )
    }
}
