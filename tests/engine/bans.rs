//! Peers whose gossip is stopped for a while (a violation, a stall) on a connection that stays
//! open for other protocols, and gossip resumed on it when the ban ends.

use crate::harness::*;
use secure_gossip::engine::{Engine, Input, Output};
use secure_gossip::{Config, Violation};
use std::time::Duration;

/// Found by review: the stopped side's peer is not told, so what it sent during the ban was
/// dropped unread while it believed it delivered; after the ban nothing corrected that
/// belief and those messages never arrived. The resumed side's complete digest now replaces
/// what it is believed to have, and the answer brings them.
#[test]
fn what_a_peer_sent_during_a_one_sided_ban_arrives_after_the_ban() {
    let mut net = Net::pair(Config::default());
    net.past_the_grace();
    let now = net.now;
    // 0 stops gossip with 1 (as the behaviour does on a slow write); 1 is not told.
    net.e(0).handle(Input::Stalled { peer: 1 }, now);
    net.discard();
    // 1 publishes during the ban; 0's engine does not read from a peer it is not gossiping with.
    let during: Vec<_> = (0..3)
        .map(|i| {
            let now = net.now;
            net.e(1)
                .publish(format!("during {i}").into_bytes(), now)
                .unwrap()
        })
        .collect();
    net.pump();
    while {
        let now = net.now;
        net.e(0).is_banned(&1, now)
    } {
        net.advance(1_000);
        net.discard();
    }
    // The ban is over: gossip resumes on the kept connection (the behaviour's `connect`).
    let now = net.now;
    net.e(0).connect(1, now);
    net.pump();
    for id in &during {
        assert!(net.e(0).knows(id), "{id:?} lost across the ban");
    }
}

/// With a zero `violation_ban` a violator is reported and its ban is over at once, in that
/// order, so a driver that stopped gossip with it resumes it (before, gossip stayed stopped).
#[test]
fn a_zero_ban_is_lifted_as_it_is_recorded_after_the_violation() {
    let config = Config::builder()
        .violation_ban(Duration::ZERO)
        .build()
        .unwrap();
    let mut v: Engine<u8> = Engine::new(keys(1), config, T0);
    v.connect(1, T0);
    while v.poll_output().is_some() {}
    let forged = {
        let mut bytes = sign(&keys(9), 1, T0, b"pay 10").encode();
        let at = bytes.windows(2).position(|w| w == b"10").unwrap();
        bytes[at] = b'9';
        secure_gossip::Envelope::decode(&bytes).unwrap()
    };
    v.handle_frame(1, push(vec![forged]), T0);
    let outputs: Vec<_> = std::iter::from_fn(|| v.poll_output())
        .filter(|o| matches!(o, Output::Violation { .. } | Output::BanLifted { .. }))
        .collect();
    assert!(
        matches!(
            outputs.as_slice(),
            [
                Output::Violation {
                    peer: 1,
                    violation: Violation::InvalidSignature { .. }
                },
                Output::BanLifted { peer: 1 }
            ]
        ),
        "{outputs:?}"
    );
    assert!(!v.is_banned(&1, T0));
    v.connect(1, T0);
    assert_eq!(v.peer_count(), 1, "gossiped with again at once");
}
