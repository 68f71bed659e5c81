//! Sybil-scale attacks in the simulator, at a tenth of the full scale (100 honest nodes
//! among 400 Sybils, 80 % of each honest node's connections to Sybils): every attack of
//! `sim::attack`, each against the same network without Sybils. `SEED=<n>` replays one.
//!
//! The full table (1,000 honest nodes, 4,000 Sybils) is `cargo run --release --example
//! simulate -- sybil`; its figures are in `docs/simulation.md`.

mod common;

use common::seed_from_env;
use secure_gossip::sim::Attack;
use secure_gossip::sim::attack::{AttackReport, AttackScenario};

/// What every attack must keep: every honest message at every honest node, once.
fn assert_whole(report: &AttackReport, seed: u64) {
    println!("{report}");
    assert!(
        report.converged,
        "seed {seed}: {}: did not converge",
        report.name
    );
    assert_eq!(
        report.delivery, 1.0,
        "seed {seed}: {}: delivery",
        report.name
    );
    assert_eq!(
        report.duplicates, 0,
        "seed {seed}: {}: duplicates",
        report.name
    );
}

#[test]
fn every_attack_at_a_tenth_of_the_scale_delivers_every_honest_message_once() {
    let seed = seed_from_env(1);
    println!("seed {seed}\n{}", AttackReport::HEADER);
    let scenario = AttackScenario::small(seed);
    let baseline = scenario.run(Attack::SilentSink, false);
    assert_whole(&baseline, seed);
    for attack in Attack::ALL {
        let report = scenario.run(attack, true);
        assert_whole(&report, seed);
        match attack {
            // Forged copies are violations: each costs the Sybil its link.
            Attack::Forger => assert!(report.violations > 0, "seed {seed}: no violation"),
            // Prune and graft only steer this node's own pushes to the Sybils.
            Attack::PruneGraft => assert!(
                report.p99 <= 2 * baseline.p99,
                "seed {seed}: prune/graft abuse: p99 {} against {}",
                report.p99,
                baseline.p99
            ),
            _ => {}
        }
    }
}

#[test]
fn a_late_joiner_gets_the_whole_history_with_and_without_liars() {
    let seed = seed_from_env(1);
    println!("seed {seed}\n{}", AttackReport::HEADER);
    let scenario = AttackScenario::small(seed);
    for with_sybils in [false, true] {
        let report = scenario.run_late_joiner(with_sybils);
        println!("{report}");
        assert!(
            report.late_join_ms.is_some(),
            "seed {seed}: {}: the joiner never held the history",
            report.name
        );
    }
}
