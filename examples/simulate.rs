//! Figures from the deterministic simulator: delivery, duplicates, RMR, hops and bytes for
//! networks of 100 and 1,000 nodes with 5 % loss and one partition (and with churn too).
//!
//! ```text
//! cargo run --release --example simulate            # seed 1
//! cargo run --release --example simulate -- 42      # another seed
//! ```

use secure_gossip::sim::{Report, Scenario, SimConfig};

fn main() {
    let seed = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("a seed is a number"))
        .unwrap_or(1);
    println!("seed {seed}; degree 6, latency 10-100 ms, 100 messages, 5 % loss");
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
            let started = std::time::Instant::now();
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
