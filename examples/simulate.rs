//! Figures from the deterministic simulator.
//!
//! ```text
//! cargo run --release --example simulate            # seed 1
//! cargo run --release --example simulate -- 42      # another seed
//! cargo run --release --example simulate -- sybil   # the attack table (seed 1)
//! cargo run --release --example simulate -- sybil 2 small   # 100 honest, 400 Sybils
//! cargo run --release --example simulate -- sybil 1 full sink  # the attacks named so
//! cargo run --release --example simulate -- sybil 1 small '' tags  # Sybils that read tags
//! cargo run --release --example simulate -- tree 1000 1      # the tree's steady state only
//! cargo run --release --example simulate -- tree 10000 1 20  # at 10,000 nodes, 20 messages
//! cargo run --release --example simulate -- tree 1000 1 100 5  # the same with 5 % of frames lost
//! cargo run --release --example simulate -- faults 1         # the fault table only
//! ```
//!
//! 1. Faults: networks of 100 and 1,000 nodes with 5 % loss and one partition (and with churn
//!    too): delivery, duplicates, RMR, hops, bytes.
//! 2. The broadcast tree in steady state (no faults), at 1,000 and 10,000 nodes, for three
//!    publishing patterns: one author, random authors, every node at once. RMR and the last
//!    delivery's hop count, with the tree and with flooding (`broadcast_tree(false)`).
//! 3. `sybil`: 1,000 honest nodes among 4,000 Sybils (80 % of each honest node's connections),
//!    one row per attack against the same network without Sybils (`sim::attack`).

use secure_gossip::Config;
use secure_gossip::sim::attack::{AttackReport, AttackScenario};
use secure_gossip::sim::{Attack, Report, Rng, Scenario, SimConfig, Simulation};
use std::time::Instant;

fn faults(seed: u64) {
    println!("faults: seed {seed}; degree 6, latency 10-100 ms, 100 messages, 5 % loss");
    println!("{:<26}{}", "scenario", Report::HEADER);
    for nodes in [100, 1_000] {
        for (name, churn) in [
            ("loss + partition", false),
            ("loss + partition + churn", true),
        ] {
            let scenario = Scenario {
                sim: SimConfig {
                    nodes,
                    loss: 0.05,
                    seed,
                    ..SimConfig::default()
                },
                messages: 100,
                partition: true,
                churn,
            };
            let started = Instant::now();
            match scenario.run() {
                Ok(report) => println!(
                    "{name:<26}{report}   ({:.1} s)",
                    started.elapsed().as_secs_f64()
                ),
                Err(e) => println!("{name:<26}did not converge: {e}"),
            }
        }
    }
}

/// One publishing pattern on a settled network: RMR, delivery and last hop of its messages.
struct Pattern {
    rmr: f64,
    delivery: f64,
    hop: u32,
}

/// `messages` per pattern (and at most that many publishers at once).
/// `loss`: the share of frames lost (each breaks its link, which is re-dialled).
fn steady(nodes: usize, tree: bool, seed: u64, messages: usize, loss: f64) -> [Pattern; 3] {
    let engine = Config::builder().broadcast_tree(tree).build().unwrap();
    let mut sim = Simulation::new(SimConfig {
        nodes,
        seed,
        engine,
        loss,
        ..SimConfig::default()
    });
    let mut rng = Rng::new(seed ^ 0x57EA);
    sim.run_for(2_000);
    // Warm-up: the tree forms from the first messages' duplicates.
    for k in 0..50 {
        sim.publish(rng.index(nodes), format!("warm {k}"));
        sim.run_for(50);
    }
    // Then a minute and a bit: the warm-up's grafts keep their links eager for up to a
    // minute (`tree.rs`), and the steady state is what is left after that.
    sim.run_for(65_000);
    let measure = |sim: &mut Simulation, publish: &mut dyn FnMut(&mut Simulation)| {
        sim.reset_extremes();
        let before = sim.report();
        publish(sim);
        sim.run_for(10_000);
        let after = sim.report();
        Pattern {
            rmr: after.rmr_since(&before),
            delivery: after.delivery_ratio,
            hop: after.last_delivery_hop,
        }
    };
    let author = rng.index(nodes);
    let one = measure(&mut sim, &mut |sim| {
        for k in 0..messages / 2 {
            sim.publish(author, format!("one {k}"));
            sim.run_for(50);
        }
    });
    let random = measure(&mut sim, &mut |sim| {
        for k in 0..messages {
            sim.publish(rng.index(nodes), format!("random {k}"));
            sim.run_for(50);
        }
    });
    let all = measure(&mut sim, &mut |sim| {
        for i in 0..nodes.min(messages * 10) {
            sim.publish(i, format!("all {i}"));
        }
    });
    [one, random, all]
}

/// The attack table: every attack, each beside the same network without Sybils.
/// `only`: the attacks whose names contain it (empty: every one).
fn sybil(seed: u64, small: bool, only: String, tags: bool) {
    let mut scenario = if small {
        AttackScenario::small(seed)
    } else {
        AttackScenario::full(seed)
    };
    scenario.sybils_read_tags = tags;
    println!(
        "attacks: seed {seed}; {} honest nodes, {} Sybils, {} Sybil links per honest node, \
         degree {}, latency 10-100 ms, {} messages",
        scenario.honest, scenario.sybils, scenario.sybil_links, scenario.degree, scenario.messages
    );
    println!("{}", AttackReport::HEADER);
    let baseline = scenario.run(Attack::SilentSink, false);
    println!("{baseline}");
    for attack in Attack::ALL {
        if !attack.name().contains(only.as_str()) {
            continue;
        }
        if attack == Attack::Eclipse {
            // Its own network: the target keeps one honest link.
            println!("{}", scenario.run(attack, false));
        }
        println!("{}", scenario.run(attack, true));
    }
    if "late joiner".contains(only.as_str()) {
        println!("{}", scenario.run_late_joiner(false));
        println!("{}", scenario.run_late_joiner(true));
    }
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let command = match args.peek().map(String::as_str) {
        Some(c @ ("sybil" | "tree" | "faults")) => {
            let c = c.to_string();
            args.next();
            Some(c)
        }
        _ => None,
    };
    let mut number = |default: u64| {
        args.next()
            .map_or(default, |s| s.parse().expect("a number"))
    };
    match command.as_deref() {
        Some("sybil") => {
            let seed = number(1);
            let small = args.next().as_deref() == Some("small");
            let only = args.next().unwrap_or_default();
            let tags = args.next().as_deref() == Some("tags");
            sybil(seed, small, only, tags);
        }
        Some("tree") => {
            let nodes = number(1_000) as usize;
            let seed = number(1);
            let messages = number(100) as usize;
            let loss = args
                .next()
                .map_or(0.0, |s| s.parse().expect("a loss in percent"));
            tree_only(nodes, seed, messages, loss / 100.0);
        }
        Some("faults") => faults(number(1)),
        _ => everything(number(1)),
    }
}

/// The tree's steady state alone, at `nodes`, `messages` per pattern.
fn tree_only(nodes: usize, seed: u64, messages: usize, loss: f64) {
    let started = Instant::now();
    let tree = steady(nodes, true, seed, messages, loss);
    println!(
        "tree, {nodes} nodes, seed {seed}, {} % loss: RMR / last hop / delivery",
        loss * 100.0
    );
    for (k, name) in ["one author", "random authors", "every node at once"]
        .iter()
        .enumerate()
    {
        println!(
            "{name:<20} {:.3} / {} / {:.4}",
            tree[k].rmr, tree[k].hop, tree[k].delivery
        );
    }
    println!("({:.1} s)", started.elapsed().as_secs_f64());
}

/// The fault table, then the steady state with the tree and with flooding.
fn everything(seed: u64) {
    faults(seed);
    println!();
    println!("steady state: seed {seed}; degree 6, latency 10-100 ms, no faults");
    println!(
        "| nodes | pattern | tree RMR | flooding RMR | tree last hop | flooding last hop | delivery |"
    );
    println!(
        "(every node at once: at most 10 × the pattern's messages publishers; 10,000 nodes: tree only)"
    );
    println!("|---|---|---|---|---|---|---|");
    // 10,000 nodes is a scale check: fewer messages, the tree only.
    for (nodes, messages) in [(1_000, 100), (10_000, 20)] {
        let started = Instant::now();
        let tree = steady(nodes, true, seed, messages, 0.0);
        let flood = if nodes <= 1_000 {
            steady(nodes, false, seed, messages, 0.0)
        } else {
            [0, 1, 2].map(|_| Pattern {
                rmr: f64::NAN,
                delivery: 1.0,
                hop: 0,
            })
        };
        for (k, name) in ["one author", "random authors", "every node at once"]
            .iter()
            .enumerate()
        {
            println!(
                "| {nodes} | {name} | {:.3} | {:.3} | {} | {} | {:.4} |",
                tree[k].rmr,
                flood[k].rmr,
                tree[k].hop,
                flood[k].hop,
                tree[k].delivery.min(flood[k].delivery)
            );
        }
        eprintln!("({nodes} nodes: {:.1} s)", started.elapsed().as_secs_f64());
    }
}
