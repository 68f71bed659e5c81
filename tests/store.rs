//! The durable store (`store::Redb`, `Behaviour::with_store`, `--data DIR`): real redb files,
//! real swarms, real node processes killed with SIGKILL again and again, a real full disk.
//!
//! Asserted: across every run of a node each message is reported at most once; everything it
//! reported is still held and served to a late joiner; it never reuses a sequence; a file
//! that is truncated, altered, foreign or in use is refused with an error naming the file
//! and what is wrong (never a panic, never a silent reset); a write that fails is an event
//! and a metric, and no message is reported until it is written.

mod common;

use common::now_ms;
use common::process::{NodeProcess, run_to_exit};
use common::seed_from_env;
use common::swarm::{Node, NodeEvent, connect};
use secure_gossip::engine::Engine;
use secure_gossip::sim::Rng;
use secure_gossip::store::{Changes, Redb, Snapshot, Store, StoreError};
use secure_gossip::{Behaviour, Config, Keypair};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A fresh directory of its own for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("secure-gossip-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A store at `path` holding `n` messages published by a node, read back.
fn filled(path: &Path, n: usize) -> Snapshot {
    let mut store = Redb::open(path).unwrap();
    let now = now_ms();
    let mut engine: Engine<u8> = Engine::new(Keypair::generate(), Config::default(), now);
    engine.restore(store.load().unwrap(), now);
    // As `Behaviour::with_store`: the reservation of sequences written first.
    let reservation = engine.take_changes();
    store.commit(&reservation).unwrap();
    engine.written(&reservation);
    for i in 0..n {
        engine
            .publish(format!("message {i} {}", "x".repeat(200)), now)
            .unwrap();
    }
    store.commit(&engine.take_changes()).unwrap();
    store.load().unwrap()
}

/// What a snapshot holds, comparable.
fn contents(s: &Snapshot) -> (BTreeSet<Vec<u8>>, usize, Option<u64>) {
    (
        s.messages.iter().map(|e| e.encode()).collect(),
        s.authors.len(),
        s.next_sequence,
    )
}

/// Opening `path` either fails with an error about the file, or gives back exactly
/// `expected` (the damage was in space the store does not use): never a panic, never less.
fn refused_or_intact(path: &Path, expected: &Snapshot) -> Option<StoreError> {
    match Redb::open(path).and_then(|mut s| s.load()) {
        Err(e) => {
            assert!(
                e.to_string().contains(&path.display().to_string()),
                "the error names the file: {e}"
            );
            assert!(!matches!(e, StoreError::InUse { .. }), "{e}");
            Some(e)
        }
        Ok(loaded) => {
            assert_eq!(
                contents(&loaded),
                contents(expected),
                "opened, but not everything is there: a silent loss"
            );
            None
        }
    }
}

#[test]
fn a_store_reopens_with_everything_it_held() {
    let dir = scratch("reopen");
    let path = dir.join("gossip.redb");
    let written = filled(&path, 50);
    assert_eq!(written.messages.len(), 50);
    let mut again = Redb::open(&path).unwrap();
    assert_eq!(contents(&again.load().unwrap()), contents(&written));
}

#[test]
fn a_truncated_file_is_refused_with_its_path_and_what_is_wrong() {
    let dir = scratch("truncated");
    let path = dir.join("gossip.redb");
    let written = filled(&path, 200);
    let len = std::fs::metadata(&path).unwrap().len();
    let mut refused = 0;
    for cut in [len - 1, len * 3 / 4, len / 2, len / 4, 4096, 100, 1] {
        let copy = dir.join(format!("cut-{cut}.redb"));
        std::fs::copy(&path, &copy).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&copy)
            .unwrap()
            .set_len(cut)
            .unwrap();
        if let Some(e) = refused_or_intact(&copy, &written) {
            println!("cut to {cut} of {len} bytes: {e}");
            refused += 1;
        }
    }
    assert!(refused >= 5, "only {refused} of 7 truncations refused");
}

#[test]
fn an_altered_file_is_refused_never_trusted() {
    let seed = seed_from_env(31);
    println!("seed {seed}");
    let dir = scratch("altered");
    let path = dir.join("gossip.redb");
    let written = filled(&path, 200);
    let bytes = std::fs::read(&path).unwrap();
    let mut rng = Rng::new(seed);
    let (mut refused, tries) = (0, 48);
    for k in 0..tries {
        let mut altered = bytes.clone();
        // A run of bytes somewhere in the file, flipped.
        let at = rng.index(altered.len());
        for b in altered.iter_mut().skip(at).take(8) {
            *b ^= 0x5a;
        }
        let copy = dir.join(format!("altered-{k}.redb"));
        std::fs::write(&copy, &altered).unwrap();
        if let Some(e) = refused_or_intact(&copy, &written) {
            if refused == 0 {
                println!("altered at {at}: {e}");
            }
            refused += 1;
        }
    }
    println!(
        "seed {seed}: {refused} of {tries} alterations refused, the rest were in unused space"
    );
    assert!(refused > 0, "seed {seed}: no alteration was noticed");
}

#[test]
fn a_foreign_file_is_refused_and_left_alone() {
    let dir = scratch("foreign");
    let text = dir.join("notes.txt");
    std::fs::write(&text, "not a database\n".repeat(100)).unwrap();
    let e = Redb::open(&text).unwrap_err();
    assert!(matches!(e, StoreError::Foreign { .. }), "{e}");
    assert!(e.to_string().contains("notes.txt"), "{e}");
    assert_eq!(
        std::fs::read(&text).unwrap(),
        "not a database\n".repeat(100).as_bytes(),
        "the file is untouched"
    );
    // Another program's redb database.
    let other = dir.join("other.redb");
    redb_other(&other);
    let e = Redb::open(&other).unwrap_err();
    assert!(matches!(e, StoreError::Foreign { .. }), "{e}");
    println!("{e}");
}

/// A redb database of another program: a table of its own, none of ours.
fn redb_other(path: &Path) {
    let db = redb::Database::create(path).unwrap();
    let write = db.begin_write().unwrap();
    {
        let table: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("posts");
        write.open_table(table).unwrap().insert(1, 2).unwrap();
    }
    write.commit().unwrap();
}

#[test]
fn an_open_store_cannot_be_opened_twice() {
    let dir = scratch("twice");
    let path = dir.join("gossip.redb");
    let first = Redb::open(&path).unwrap();
    let e = Redb::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::InUse { .. }), "{e}");
    assert!(e.to_string().contains("already open"), "{e}");
    drop(first);
    Redb::open(&path).expect("free again once closed");
}

/// A redb store whose writes fail while `fail` is set (a disk that is full for a while).
struct Flaky {
    inner: Redb,
    fail: Arc<AtomicBool>,
}

impl Store for Flaky {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        self.inner.load()
    }

    fn commit(&mut self, changes: &Changes) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Io {
                path: self.inner.path().to_path_buf(),
                reason: "No space left on device (os error 28)".into(),
            });
        }
        self.inner.commit(changes)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_message_is_reported_before_it_is_written_and_a_failed_write_is_an_event_and_a_metric() {
    let dir = scratch("flaky");
    let path = dir.join("gossip.redb");
    let fail = Arc::new(AtomicBool::new(false));
    let store = Flaky {
        inner: Redb::open(&path).unwrap(),
        fail: fail.clone(),
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let mut behaviour =
        Behaviour::with_store(Keypair::generate(), Config::default(), store).unwrap();
    behaviour.register_metrics(&mut registry);
    let mut b = Node::spawn_behaviour(behaviour).await;
    let mut a = Node::spawn(Config::default()).await;
    connect(&mut a, &mut b).await;
    let first = a.publish("written at once").await;
    b.message(first).await;
    fail.store(true, Ordering::SeqCst);
    let second = a.publish("waits for the disk").await;
    let (error, unwritten) = b
        .wait_for(|e| match e {
            NodeEvent::StoreFailed(error, unwritten) => Some((error.clone(), *unwritten)),
            _ => None,
        })
        .await;
    assert!(error.contains("No space left"), "{error}");
    assert_eq!(unwritten, 1);
    assert!(
        b.pending_messages().await.is_empty(),
        "reported before it was written"
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("secure_gossip_store_writes_total{result=\"failed\"} "),
        "{text}"
    );
    assert!(
        text.contains("secure_gossip_store_unwritten_messages 1"),
        "{text}"
    );
    fail.store(false, Ordering::SeqCst);
    assert_eq!(
        b.message(second).await.payload.as_ref(),
        b"waits for the disk"
    );
    // Written: a new node on the same file knows both and reports neither again.
    b.shutdown();
    let store = loop {
        match Redb::open(&path) {
            Ok(store) => break store,
            // The old node's task is still closing the file.
            Err(StoreError::InUse { .. }) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => panic!("{e}"),
        }
    };
    let mut b = Node::spawn_behaviour(
        Behaviour::with_store(Keypair::generate(), Config::default(), store).unwrap(),
    )
    .await;
    connect(&mut a, &mut b).await;
    let third = a.publish("after the restart").await;
    b.message(third).await;
    let again = b.pending_messages().await;
    assert!(
        again.is_empty(),
        "reported again after a restart: {again:?}"
    );
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_data_dir_stops_with_a_clear_error() {
    let dir = scratch("second-process");
    let data = dir.join("data").display().to_string();
    let mut first = NodeProcess::start("first", None, &args(&["--data", &data])).await;
    let (code, lines, stderr) = run_to_exit(&args(&["--data", &data])).await;
    assert_eq!(code, Some(2), "{stderr}");
    let error = lines
        .iter()
        .find(|l| l["event"] == "error")
        .expect("an error line");
    let text = error["error"].as_str().unwrap();
    assert!(
        text.contains("already open") && text.contains("gossip.redb"),
        "{text}"
    );
    assert!(stderr.contains("already open"), "{stderr}");
    first.kill().await;
    // A damaged file stops the node the same way, and is left as it was.
    let file = dir.join("data").join("gossip.redb");
    std::fs::write(&file, b"garbage, not a store").unwrap();
    let (code, lines, _) = run_to_exit(&args(&["--data", &data])).await;
    assert_eq!(code, Some(2));
    let text = lines.iter().find(|l| l["event"] == "error").unwrap()["error"].clone();
    assert!(text.as_str().unwrap().contains("not a store"), "{text}");
    assert_eq!(std::fs::read(&file).unwrap(), b"garbage, not a store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_again_and_again_reports_each_message_once_and_keeps_its_history() {
    let seed = seed_from_env(29);
    println!("seed {seed} (SECURE_GOSSIP_SEED to repeat)");
    let mut rng = Rng::new(seed);
    let dir = scratch("killed");
    let key_a = dir.join("a.key").display().to_string();
    let key_b = dir.join("b.key").display().to_string();
    let data = dir.join("b-data").display().to_string();
    let mut a = NodeProcess::start("a", None, &args(&["--key", &key_a])).await;
    let a_addr = a.address(|x| x.contains("/tcp/")).await;
    let b_args = args(&["--key", &key_b, "--data", &data, "--dial", &a_addr]);
    // Every message line b wrote, over all its runs, by id; a's ids; b's sequences.
    let mut reported: BTreeMap<String, usize> = BTreeMap::new();
    let mut from_a: Vec<String> = Vec::new();
    let mut b_sequences: Vec<u64> = Vec::new();
    let kills = 24;
    for round in 0..kills {
        // It opens its file cleanly (`started` comes after the store is read).
        let mut b = NodeProcess::start(&format!("b run {round}"), None, &b_args).await;
        b.connected_to(&a.peer_id.clone()).await;
        for k in 0..2 + rng.below(6) {
            from_a.push(a.publish(&format!("a {round}.{k}")).await);
        }
        b.command(&format!("publish b {round}")).await;
        // A random point of the stream: anywhere from at once to after most has arrived.
        tokio::time::sleep(Duration::from_millis(rng.below(120))).await;
        for line in b.kill_and_take_lines().await {
            if line["event"] == "message" {
                let id = line["id"].as_str().unwrap().to_string();
                let n = reported.entry(id.clone()).or_default();
                *n += 1;
                assert_eq!(*n, 1, "seed {seed}: {id} reported again in run {round}");
            } else if line["event"] == "published" {
                let published = line["sequence"].as_u64().unwrap();
                assert!(
                    b_sequences.last().is_none_or(|last| published > *last),
                    "seed {seed}: sequence {published} reused after {b_sequences:?}"
                );
                b_sequences.push(published);
            }
        }
    }
    // Once more, to the end: it catches up with a, reports what it never reported, and
    // nothing twice.
    let mut b = NodeProcess::start("b last run", None, &b_args).await;
    b.connected_to(&a.peer_id.clone()).await;
    b.wait_event("caught_up").await;
    let last = b.publish("b last").await;
    let stats = {
        b.command("stats").await;
        b.wait_event("stats").await
    };
    for line in b.drain_messages().await {
        let id = line["id"].as_str().unwrap().to_string();
        let n = reported.entry(id.clone()).or_default();
        *n += 1;
        assert_eq!(*n, 1, "seed {seed}: {id} reported again in the last run");
    }
    println!(
        "seed {seed}: {kills} kills, {} messages from a, {} reported by b, {} held at the end",
        from_a.len(),
        reported.len(),
        stats["stored"]
    );
    // A late joiner that can only reach b gets everything: a is gone.
    a.kill().await;
    let b_addr = b.address(|x| x.contains("/tcp/")).await;
    let mut late = NodeProcess::start("late", None, &args(&["--dial", &b_addr])).await;
    for id in from_a.iter().chain([&last]) {
        late.wait_for(|v| (v["event"] == "message" && v["id"] == id.as_str()).then_some(()))
            .await;
    }
    for id in reported.keys() {
        assert!(
            from_a.contains(id),
            "b reported {id}, which a never published"
        );
    }
    late.kill().await;
    b.kill().await;
}

/// A tmpfs of `size` mounted at `at` for the test's lifetime (a real disk that fills).
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// `None` (the test skips) when this process may not mount: not root.
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        let uid = std::process::Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return None;
        }
        std::fs::create_dir_all(at).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount runs");
        assert!(status.success(), "root, yet mounting a tmpfs failed");
        Some(SmallDisk(at.to_path_buf()))
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![7u8; 4096];
        while file.write_all(&chunk).and_then(|_| file.sync_all()).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_full_disk_messages_wait_for_the_write_then_arrive_once() {
    let test = "on_a_full_disk_messages_wait_for_the_write_then_arrive_once";
    let dir = scratch("full-disk");
    let Some(disk) = SmallDisk::mount(&dir.join("disk"), "4m") else {
        eprintln!("{test}: skipped: needs root to mount a small tmpfs");
        return;
    };
    let data = disk.0.join("b").display().to_string();
    let mut a = NodeProcess::start("a", None, &[]).await;
    let a_addr = a.address(|x| x.contains("/tcp/")).await;
    let b_args = args(&[
        "--data",
        &data,
        "--metrics",
        "127.0.0.1:0",
        "--dial",
        &a_addr,
    ]);
    let mut b = NodeProcess::start("b", None, &b_args).await;
    let metrics = common::process::metrics_address(&mut b).await;
    b.connected_to(&a.peer_id.clone()).await;
    let first = a.publish("before the disk filled").await;
    b.wait_for(|v| (v["event"] == "message" && v["id"] == first.as_str()).then_some(()))
        .await;
    let filler = disk.fill();
    let second = a.publish(&"after the disk filled ".repeat(100)).await;
    let failed = b.wait_event("store_failed").await;
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("gossip.redb"), "{error}");
    println!("{test}: {error}");
    assert!(
        b.drain_messages().await.is_empty(),
        "reported though not written"
    );
    let scraped = common::process::scrape(&metrics).await;
    let failures = common::process::metric(
        &scraped,
        "secure_gossip_store_writes_total{result=\"failed\"}",
    );
    assert!(failures >= 1.0, "{scraped}");
    std::fs::remove_file(filler).unwrap();
    b.wait_for(|v| (v["event"] == "message" && v["id"] == second.as_str()).then_some(()))
        .await;
    // Written: after a restart on the same disk neither comes again.
    b.kill().await;
    let mut b = NodeProcess::start("b again", None, &b_args).await;
    b.connected_to(&a.peer_id.clone()).await;
    b.wait_event("caught_up").await;
    let again = b.drain_messages().await;
    assert!(again.is_empty(), "reported again: {again:?}");
    b.kill().await;
    a.kill().await;
    drop(disk);
}
