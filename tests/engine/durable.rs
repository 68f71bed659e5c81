//! What outlives a restart (`engine/durable.rs`): the changes an engine hands its durable
//! store, applied to a model store, rebuild a new engine that delivers nothing twice, serves
//! its history, never reuses a sequence, and keeps the disk within the configured bounds.

use crate::harness::*;
use secure_gossip::engine::{AuthorRecord, Changes, Engine, Millis, Output, Snapshot};
use secure_gossip::{Config, Digest, Envelope, Frame, MessageId, PublicKey, RangeSet};
use std::collections::BTreeMap;

/// A store that applies changes as a database would: the model every real store must match.
#[derive(Default)]
struct Model {
    messages: BTreeMap<MessageId, Envelope>,
    authors: BTreeMap<PublicKey, AuthorRecord>,
    next_sequence: Option<u64>,
    commits: usize,
}

impl Model {
    fn commit(&mut self, changes: &Changes) {
        if changes.is_empty() {
            return;
        }
        self.commits += 1;
        if changes.replaces_everything() {
            self.messages.clear();
            self.authors.clear();
        }
        for id in changes.delete_messages() {
            self.messages.remove(id);
        }
        for envelope in changes.put_messages() {
            self.messages.insert(envelope.id(), envelope.clone());
        }
        for author in changes.delete_authors() {
            self.authors.remove(author);
        }
        for (author, record) in changes.put_authors() {
            self.authors.insert(*author, record.clone());
        }
        if let Some(next) = changes.next_sequence() {
            self.next_sequence = Some(next);
        }
    }

    fn write(&mut self, engine: &mut Engine<u8>) {
        let changes = engine.take_changes();
        self.commit(&changes);
        engine.written(&changes);
        assert!(!engine.has_changes(), "all taken");
    }

    fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        s.messages = self.messages.values().cloned().collect();
        s.authors = self.authors.iter().map(|(a, r)| (*a, r.clone())).collect();
        s.next_sequence = self.next_sequence;
        s
    }
}

/// A new engine for node `keys(1)` restored from `model` at `now`, `peers` connected.
fn restart(model: &mut Model, config: Config, now: Millis, peers: &[u8]) -> Engine<u8> {
    let mut v: Engine<u8> = Engine::new(keys(1), config, now);
    v.restore(model.snapshot(), now);
    // As `Behaviour::with_store`: written before anything is sent.
    model.write(&mut v);
    for &peer in peers {
        v.connect(peer, now);
    }
    v
}

fn delivered(v: &mut Engine<u8>) -> Vec<MessageId> {
    let mut ids = Vec::new();
    while let Some(output) = v.poll_output() {
        if let Output::Deliver { message, .. } = output {
            ids.push(message.id);
        }
    }
    ids
}

#[test]
fn nothing_delivered_before_a_restart_is_delivered_after_it() {
    let author = keys(9);
    let envelopes: Vec<Envelope> = (1..=6).map(|s| sign(&author, s, T0, b"m")).collect();
    let mut model = Model::default();
    let mut v = restart(&mut model, Config::default(), T0, &[2]);
    v.handle_frame(2, push(envelopes[..4].to_vec()), T0);
    assert_eq!(delivered(&mut v).len(), 4);
    model.write(&mut v);
    // The process dies here (the engine is dropped; nothing else is written).
    drop(v);
    let mut v = restart(&mut model, Config::default(), T0 + 1_000, &[2, 3]);
    assert_eq!(v.stored().0, 4, "history back");
    // The same envelopes again, from another peer, and the rest: only the rest delivered.
    v.handle_frame(3, push(envelopes.clone()), T0 + 1_000);
    let ids = delivered(&mut v);
    assert_eq!(
        ids.iter().map(|id| id.sequence).collect::<Vec<_>>(),
        vec![5, 6]
    );
    // A complete digest of everything draws no want for what was delivered before.
    v.handle_frame(
        2,
        Frame {
            have: vec![Digest {
                author: author.public(),
                ranges: RangeSet::from_range(1, 6),
            }],
            complete: true,
            ..Frame::default()
        },
        T0 + 1_000,
    );
    let mut wanted = RangeSet::new();
    while let Some(output) = v.poll_output() {
        if let Output::Send { frame, .. } = output {
            for d in frame.want {
                wanted.union_with(&d.ranges);
            }
        }
    }
    assert!(wanted.is_empty(), "asked again for {wanted:?}");
}

#[test]
fn a_restored_node_serves_its_history_to_a_late_joiner() {
    let author = keys(9);
    let mut model = Model::default();
    let mut v = restart(&mut model, Config::default(), T0, &[2]);
    v.handle_frame(
        2,
        push((1..=5).map(|s| sign(&author, s, T0, b"h")).collect()),
        T0,
    );
    model.write(&mut v);
    drop(v);
    let mut v = restart(&mut model, Config::default(), T0 + 10, &[]);
    v.connect(7, T0 + 10);
    let mut advertised = RangeSet::new();
    while let Some(output) = v.poll_output() {
        if let Output::Send { peer: 7, frame } = output {
            for d in frame.have.iter().filter(|d| d.author == author.public()) {
                advertised.union_with(&d.ranges);
            }
        }
    }
    assert_eq!(
        advertised,
        RangeSet::from_range(1, 5),
        "the digest offers it"
    );
    v.handle_frame(
        7,
        want(author.public(), RangeSet::from_range(1, 5)),
        T0 + 10,
    );
    let mut served = Vec::new();
    while let Some(output) = v.poll_output() {
        if let Output::Send { peer: 7, frame } = output {
            served.extend(frame.messages.iter().map(|e| e.sequence()));
        }
    }
    assert_eq!(served, vec![1, 2, 3, 4, 5]);
}

#[test]
fn a_held_message_awaiting_its_verdict_is_not_delivered_again() {
    let config = Config::builder().validate_messages(true).build().unwrap();
    let author = keys(9);
    let m = sign(&author, 1, T0, b"v");
    let mut model = Model::default();
    let mut v = restart(&mut model, config.clone(), T0, &[2]);
    v.handle_frame(2, push(vec![m.clone()]), T0);
    assert_eq!(
        delivered(&mut v).len(),
        1,
        "delivered, awaiting the verdict"
    );
    model.write(&mut v);
    drop(v);
    let mut v = restart(&mut model, config, T0 + 5, &[2]);
    v.handle_frame(2, push(vec![m]), T0 + 5);
    assert!(delivered(&mut v).is_empty());
}

#[test]
fn a_restarted_author_never_reuses_a_sequence_even_if_the_clock_went_back() {
    let mut model = Model::default();
    let mut v = restart(&mut model, Config::default(), T0, &[2]);
    let used: Vec<u64> = (0..3)
        .map(|i| v.publish(vec![i], T0).unwrap().sequence)
        .collect();
    // The process dies before these are written.
    drop(v);
    // The clock is an hour behind now: its microseconds would be far below.
    let earlier = T0 - 3_600_000;
    let mut v = restart(&mut model, Config::default(), earlier, &[2]);
    let next = v.publish(b"after".to_vec(), earlier).unwrap().sequence;
    assert!(next > *used.iter().max().unwrap(), "{next} after {used:?}");
}

#[test]
fn expired_history_is_dropped_at_start_up_and_deleted_from_disk() {
    let config = Config::default();
    let max_age = config.max_age().as_millis() as Millis;
    let author = keys(9);
    let mut model = Model::default();
    let mut v = restart(&mut model, config.clone(), T0, &[2]);
    v.handle_frame(
        2,
        push(vec![
            sign(&author, 1, T0, b"old"),
            sign(&author, 2, T0 + 10, b"new"),
        ]),
        T0 + 10,
    );
    model.write(&mut v);
    drop(v);
    // Past the first message's age, not the second's.
    let later = T0 + max_age + 5;
    let mut v: Engine<u8> = Engine::new(keys(1), config.clone(), later);
    let restored = v.restore(model.snapshot(), later);
    assert_eq!((restored.messages, restored.dropped), (1, 1));
    model.write(&mut v);
    assert_eq!(model.messages.len(), 1, "the expired one deleted");
    // Both ids still count: the expired one is outside the window anyway.
    v.connect(2, later);
    v.handle_frame(2, push(vec![sign(&author, 2, T0 + 10, b"new")]), later);
    assert!(delivered(&mut v).is_empty());
    // Once every message of the author has left the window, the record goes too.
    let gone = T0 + 10 + max_age + 5;
    v.handle_timeout(gone);
    let mut v2: Engine<u8> = Engine::new(keys(1), config, gone);
    model.write(&mut v);
    let restored = v2.restore(model.snapshot(), gone);
    assert_eq!(restored.messages, 0);
    model.write(&mut v2);
    assert!(model.messages.is_empty());
    assert!(model.authors.is_empty(), "{:?}", model.authors.keys());
}

#[test]
fn a_store_that_keeps_failing_costs_one_rewrite_not_a_growing_list() {
    let config = Config::builder().max_stored_messages(8).build().unwrap();
    let author = keys(9);
    let mut model = Model::default();
    let mut v = restart(&mut model, config.clone(), T0, &[2]);
    // 40 messages, nothing taken (every write failed): the marks collapse into a rewrite.
    for s in 1..=40 {
        v.handle_frame(2, push(vec![sign(&author, s, T0, b"x")]), T0);
    }
    delivered(&mut v);
    let changes = v.take_changes();
    assert!(changes.replaces_everything());
    assert_eq!(changes.put_messages().len(), 8, "the store's bound, not 40");
    model.commit(&changes);
    drop(v);
    let mut v = restart(&mut model, config, T0 + 1, &[2]);
    v.handle_frame(
        2,
        push((1..=40).map(|s| sign(&author, s, T0, b"x")).collect()),
        T0 + 1,
    );
    assert!(delivered(&mut v).is_empty(), "every id still known");
}

#[test]
fn changes_taken_then_lost_are_merged_into_the_next_write() {
    let author = keys(9);
    let mut model = Model::default();
    let mut v = restart(&mut model, Config::default(), T0, &[2]);
    v.handle_frame(2, push(vec![sign(&author, 1, T0, b"a")]), T0);
    let mut failed = v.take_changes();
    v.handle_frame(2, push(vec![sign(&author, 2, T0, b"b")]), T0);
    failed.merge(v.take_changes());
    model.commit(&failed);
    assert_eq!(model.messages.len(), 2);
    assert_eq!(
        model.authors[&author.public()].ids,
        RangeSet::from_range(1, 2)
    );
    assert_eq!(model.commits, 2, "the restart's write, then one for both");
}

#[test]
fn a_flood_of_new_authors_after_a_restart_never_makes_a_delivered_id_new() {
    let config = Config::builder().max_tracked_authors(4).build().unwrap();
    let early: Vec<Envelope> = (20..28).map(|k| sign(&keys(k), 1, T0, b"early")).collect();
    let mut model = Model::default();
    let mut v = restart(&mut model, config.clone(), T0, &[2]);
    for e in &early {
        v.handle_frame(2, push(vec![e.clone()]), T0);
    }
    let first = delivered(&mut v).len();
    model.write(&mut v);
    drop(v);
    let mut v = restart(&mut model, config, T0 + 10, &[2, 3]);
    // Peer 2 brings 40 new authors: they displace whatever is tracked.
    for k in 100..140 {
        v.handle_frame(2, push(vec![sign(&keys(k), 1, T0 + 10, b"flood")]), T0 + 10);
    }
    delivered(&mut v);
    // The early messages again, from peer 3: none is new.
    v.handle_frame(3, push(early.clone()), T0 + 20);
    let again = delivered(&mut v);
    assert!(
        again.is_empty(),
        "{} of {first} delivered twice after the flood",
        again.len()
    );
}

#[test]
fn an_author_refused_by_the_filter_at_restart_is_not_delivered_again_once_allowed() {
    let author = keys(9);
    let m = sign(&author, 1, T0, b"f");
    let mut model = Model::default();
    let mut v = restart(&mut model, Config::default(), T0, &[2]);
    v.handle_frame(2, push(vec![m.clone()]), T0);
    assert_eq!(delivered(&mut v).len(), 1);
    model.write(&mut v);
    drop(v);
    let only_others = Config::builder()
        .author_filter(secure_gossip::AuthorFilter::allow([keys(10).public()]))
        .build()
        .unwrap();
    let mut v = restart(&mut model, only_others, T0 + 5, &[2]);
    v.allow_author(author.public());
    v.handle_frame(2, push(vec![m]), T0 + 5);
    assert!(delivered(&mut v).is_empty());
}

#[test]
fn nothing_is_signed_above_the_reservation_the_store_has_written() {
    let model = Model::default();
    let mut v: Engine<u8> = Engine::new(keys(1), Config::default(), T0);
    v.restore(model.snapshot(), T0);
    // The first write (the reservation) failed: nothing may be signed yet.
    let lost = v.take_changes();
    assert!(lost.next_sequence().is_some());
    assert_eq!(
        v.publish(b"early".to_vec(), T0),
        Err(secure_gossip::PublishError::NotWritten)
    );
    v.written(&lost);
    assert!(v.publish(b"now".to_vec(), T0).is_ok());
}
