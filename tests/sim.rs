//! Deterministic simulations of many engines: after any mix of loss, partitions and churn,
//! once the faults stop every node holds every retained message, each delivered once, and an
//! idle network sends nothing. Every test prints its seed; `SEED=<n>` replays one.

mod common;

use common::seed_from_env;
use secure_gossip::Config;
use secure_gossip::sim::{Report, Rng, Scenario, SimConfig, Simulation};
use std::time::Duration;

fn assert_clean(report: &Report, seed: u64) {
    println!("{}\n{report}", Report::HEADER);
    assert_eq!(
        report.delivery_ratio, 1.0,
        "seed {seed}: not every message arrived"
    );
    assert_eq!(
        report.duplicate_deliveries, 0,
        "seed {seed}: duplicate delivery"
    );
    assert_eq!(
        report.late_deliveries, 0,
        "seed {seed}: delivered after max_age"
    );
}

#[test]
fn without_faults_every_message_reaches_every_node_once_and_idle_is_silent() {
    let seed = seed_from_env(7);
    println!("seed {seed}");
    let mut sim = Simulation::new(SimConfig {
        nodes: 100,
        seed,
        ..SimConfig::default()
    });
    let mut rng = Rng::new(seed);
    sim.run_for(1_000);
    for k in 0..50 {
        let node = rng.index(sim.len());
        sim.publish(node, format!("message {k}"));
        sim.run_for(rng.below(50));
    }
    assert!(
        sim.run_until_converged(100, 60_000),
        "seed {seed}: {:?}",
        sim.missing()
    );
    sim.run_for(2_000);
    let report = sim.report();
    assert_clean(&report, seed);
    sim.check_invariants();

    // Idle: no new messages, no gossip bytes.
    sim.run_for(10_000);
    assert_eq!(
        sim.report().bytes,
        report.bytes,
        "seed {seed}: idle network sent bytes"
    );
}

/// Loss, a partition while both sides publish, churn with and without state; then the
/// faults stop.
fn faulty_run(seed: u64, nodes: usize, messages: usize) -> Report {
    Scenario {
        sim: SimConfig {
            nodes,
            loss: 0.05,
            seed,
            ..SimConfig::default()
        },
        messages,
        partition: true,
        churn: true,
    }
    .run()
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn loss_partitions_and_churn_heal_over_many_seeds() {
    let first = seed_from_env(0);
    for seed in first..first + 24 {
        println!("seed {seed}");
        let report = faulty_run(seed, 40, 60);
        assert_clean(&report, seed);
        assert!(report.link_failures > 0, "seed {seed}: loss was exercised");
    }
}

#[test]
fn a_thousand_nodes_converge_after_loss_and_a_partition() {
    let seed = seed_from_env(1000);
    println!("seed {seed}");
    let report = faulty_run(seed, 1_000, 20);
    assert_clean(&report, seed);
}

#[test]
fn nothing_is_delivered_after_max_age() {
    let seed = seed_from_env(3);
    println!("seed {seed}");
    let engine = Config::builder()
        .max_age(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut sim = Simulation::new(SimConfig {
        nodes: 30,
        engine,
        seed,
        ..SimConfig::default()
    });
    sim.run_for(1_000);
    let far: Vec<usize> = (15..30).collect();
    sim.partition(&far);
    let old = sim.publish(0, "published during the partition").unwrap();
    sim.run_for(2_000);
    // The near side has it; the far side cannot.
    assert!(sim.engine(1).knows(&old));
    assert!(!sim.engine(20).knows(&old));
    // The partition outlasts max_age: once healed, the message is too old to deliver.
    sim.run_for(6_000);
    assert!(
        sim.engine(1).message(&old).is_none(),
        "expired from the store"
    );
    assert!(sim.engine(1).knows(&old), "its id stays known");
    sim.heal();
    let fresh = sim.publish(20, "after the heal").unwrap();
    assert!(sim.run_until_converged(100, 30_000));
    sim.run_for(2_000);
    let report = sim.report();
    assert_eq!(report.late_deliveries, 0);
    assert_eq!(report.duplicate_deliveries, 0);
    assert!(
        !sim.engine(20).knows(&old),
        "an expired message crossed the heal"
    );
    assert!(sim.engine(0).knows(&fresh));
    sim.check_invariants();
}

#[test]
fn over_many_seeds_nothing_is_delivered_after_max_age_and_everything_retained_arrives() {
    let first = seed_from_env(100);
    for seed in first..first + 16 {
        println!("seed {seed}");
        let mut rng = Rng::new(seed);
        let engine = Config::builder()
            .max_age(Duration::from_secs(4))
            .build()
            .unwrap();
        let mut sim = Simulation::new(SimConfig {
            nodes: 30,
            loss: 0.02,
            engine,
            seed,
            ..SimConfig::default()
        });
        sim.run_for(1_000);
        let far: Vec<usize> = (0..30).filter(|_| rng.chance(0.5)).collect();
        sim.partition(&far);
        // Publish for a random 1–8 s while partitioned: some messages outlive the partition,
        // some expire before it heals.
        let until = sim.now() + 1_000 + rng.below(7_000);
        let mut k = 0;
        while sim.now() < until {
            sim.publish(rng.index(30), format!("message {k}"));
            k += 1;
            sim.run_for(50 + rng.below(200));
        }
        sim.set_loss(0.0);
        sim.heal();
        let converged = sim.run_until_converged(100, 60_000);
        sim.check_invariants();
        assert!(converged, "seed {seed}: missing {:?}", sim.missing());
        sim.run_for(10_000);
        let report = sim.report();
        assert_eq!(
            report.late_deliveries, 0,
            "seed {seed}: delivered after max_age"
        );
        assert_eq!(report.duplicate_deliveries, 0, "seed {seed}");
        assert_eq!(
            sim.engine(0).stored().0,
            0,
            "seed {seed}: all expired from the store"
        );
    }
}
