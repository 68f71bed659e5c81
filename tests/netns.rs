//! Across real hosts: 12–20 network namespaces on one machine, each its own network stack,
//! one `examples/node.rs` process per host, real TCP and QUIC between them (see
//! `tests/common/netns.rs`). Each scenario asserts that every node ends with every message
//! exactly once and nothing else.
//!
//! They change the host's networking, so they run only with `SECURE_GOSSIP_NETNS=1` (CI sets
//! it), as root with `ip` and `nft`; otherwise each says how to run it and skips.

mod common;

use common::netns::{Network, Transport, skip};
use common::process::NodeProcess;
use common::seed_from_env;
use secure_gossip::sim::Rng;
use std::collections::BTreeSet;

/// A seeded random connected graph: a spanning tree, then random edges up to about 3 per node.
fn graph(n: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut rng = Rng::new(seed);
    let mut edges = BTreeSet::new();
    for i in 1..n {
        edges.insert((rng.index(i), i));
    }
    while edges.len() < n * 3 / 2 {
        let (a, b) = (rng.index(n), rng.index(n));
        if a != b {
            edges.insert((a.min(b), a.max(b)));
        }
    }
    edges.into_iter().collect()
}

async fn start_all(net: &Network) -> Vec<NodeProcess> {
    let mut nodes = Vec::new();
    for i in 0..net.len() {
        nodes.push(net.start(i).await);
    }
    nodes
}

/// The higher host of each edge dials the lower; returns when both ends see the connection.
async fn link(net: &Network, nodes: &mut [NodeProcess], edges: &[(usize, usize)], t: Transport) {
    for &(a, b) in edges {
        nodes[b].command(&format!("dial {}", net.addr(a, t))).await;
    }
    for &(a, b) in edges {
        let (pa, pb) = (nodes[a].peer_id.clone(), nodes[b].peer_id.clone());
        nodes[a].connected_to(&pb).await;
        nodes[b].connected_to(&pa).await;
    }
}

/// A published message: its author's host and its id.
type Published = (usize, String);

/// `count` messages from hosts chosen in turn among `from`.
async fn publish(
    nodes: &mut [NodeProcess],
    from: &[usize],
    count: usize,
    tag: &str,
) -> Vec<Published> {
    let mut out = Vec::new();
    for k in 0..count {
        let host = from[k % from.len()];
        let id = nodes[host].publish(&format!("{tag} {k} from {host}")).await;
        out.push((host, id));
    }
    out
}

/// Waits until node `i` has every message of `published` not its own.
async fn receive(node: &mut NodeProcess, i: usize, published: &[Published]) {
    for (author, id) in published {
        if *author == i {
            continue;
        }
        node.wait_for(|v| (v["event"] == "message" && v["id"] == id.as_str()).then_some(()))
            .await;
    }
}

/// Every node has every message of `published` (not its own) exactly once, and nothing else.
async fn everyone_has_exactly(nodes: &mut [NodeProcess], published: &[Published]) {
    for (i, node) in nodes.iter_mut().enumerate() {
        receive(node, i, published).await;
    }
    for node in nodes.iter_mut() {
        let extra = node.drain_messages().await;
        assert!(
            extra.is_empty(),
            "{}: extra or repeated deliveries {extra:?}",
            node.name
        );
    }
}

async fn kill_all(nodes: Vec<NodeProcess>) {
    for mut node in nodes {
        node.kill().await;
    }
}

async fn random_graph(transport: Transport, test: &str) {
    if skip(test, false) {
        return;
    }
    let seed = seed_from_env(7);
    println!("{test}: seed {seed}");
    let net = Network::create(12, 12);
    let mut nodes = start_all(&net).await;
    link(&net, &mut nodes, &graph(net.len(), seed), transport).await;
    let all: Vec<usize> = (0..net.len()).collect();
    let published = publish(&mut nodes, &all, 36, "graph").await;
    everyone_has_exactly(&mut nodes, &published).await;
    kill_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_graph_of_12_hosts_over_tcp() {
    random_graph(Transport::Tcp, "a_random_graph_of_12_hosts_over_tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_graph_of_12_hosts_over_quic() {
    random_graph(Transport::Quic, "a_random_graph_of_12_hosts_over_quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_packet_loss_on_every_host_200_messages() {
    let test = "five_percent_packet_loss_on_every_host_200_messages";
    if skip(test, true) {
        return;
    }
    let seed = seed_from_env(11);
    println!("{test}: seed {seed}");
    let net = Network::create(12, 12);
    let mut nodes = start_all(&net).await;
    link(&net, &mut nodes, &graph(net.len(), seed), Transport::Tcp).await;
    net.set_loss(5);
    let all: Vec<usize> = (0..net.len()).collect();
    let published = publish(&mut nodes, &all, 200, "lossy").await;
    everyone_has_exactly(&mut nodes, &published).await;
    let dropped = net.dropped_packets();
    println!("{test}: the loss rules dropped {dropped} packets");
    assert!(dropped > 0, "no packet was lost");
    net.set_loss(0);
    kill_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_while_both_sides_publish_heals() {
    let test = "a_partition_while_both_sides_publish_heals";
    if skip(test, false) {
        return;
    }
    let seed = seed_from_env(13);
    println!("{test}: seed {seed}");
    // Hosts 0-6 on one bridge, 7-13 on the other: each side is connected within itself, and
    // the graph has edges across.
    let net = Network::create(14, 7);
    let mut nodes = start_all(&net).await;
    let mut edges = graph(7, seed);
    edges.extend(graph(7, seed + 1).into_iter().map(|(a, b)| (a + 7, b + 7)));
    edges.extend([(0, 7), (3, 10), (6, 13)]);
    link(&net, &mut nodes, &edges, Transport::Tcp).await;
    net.trunk(false);
    let left: Vec<usize> = (0..7).collect();
    let right: Vec<usize> = (7..14).collect();
    let from_left = publish(&mut nodes, &left, 14, "left").await;
    let from_right = publish(&mut nodes, &right, 14, "right").await;
    // While cut, each side gets its own side's messages.
    for (i, node) in nodes.iter_mut().enumerate() {
        let own = if i < 7 { &from_left } else { &from_right };
        receive(node, i, own).await;
    }
    net.trunk(true);
    for (i, node) in nodes.iter_mut().enumerate() {
        let theirs = if i < 7 { &from_right } else { &from_left };
        receive(node, i, theirs).await;
    }
    for node in nodes.iter_mut() {
        let extra = node.drain_messages().await;
        assert!(
            extra.is_empty(),
            "{}: extra deliveries {extra:?}",
            node.name
        );
    }
    kill_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_restarts_with_its_key_and_no_state() {
    let test = "a_node_killed_mid_stream_restarts_with_its_key_and_no_state";
    if skip(test, false) {
        return;
    }
    let seed = seed_from_env(17);
    println!("{test}: seed {seed}");
    let net = Network::create(12, 12);
    let mut nodes = start_all(&net).await;
    let edges = graph(net.len(), seed);
    link(&net, &mut nodes, &edges, Transport::Tcp).await;
    let victim = 5;
    let all: Vec<usize> = (0..net.len()).collect();
    let others: Vec<usize> = all.iter().copied().filter(|i| *i != victim).collect();
    let sequence = |id: &str| -> u64 { id.rsplit('#').next().unwrap().parse().unwrap() };
    let mut published = publish(&mut nodes, &all, 24, "before").await;
    // Killed mid-stream: SIGKILL the moment it has published, while the others go on
    // publishing. That last message may or may not have left the process.
    let last = nodes[victim].publish("last words").await;
    let old_sequence = sequence(&last);
    nodes[victim].kill().await;
    published.extend(publish(&mut nodes, &others, 12, "during").await);
    // Restart: same key file, no state; it dials its old neighbours again.
    nodes[victim] = net.start(victim).await;
    for &(a, b) in edges.iter().filter(|(a, b)| *a == victim || *b == victim) {
        let other = if a == victim { b } else { a };
        let addr = net.addr(other, Transport::Tcp);
        nodes[victim].command(&format!("dial {addr}")).await;
        let peer = nodes[other].peer_id.clone();
        nodes[victim].connected_to(&peer).await;
    }
    // It catches up on everything (its own old messages come back but are not delivered to
    // it), and its new message uses a fresh sequence that everyone gets.
    let new_id = nodes[victim].publish("back").await;
    assert!(
        sequence(&new_id) > old_sequence,
        "a restarted author reused a sequence"
    );
    published.push((victim, new_id));
    for (i, node) in nodes.iter_mut().enumerate() {
        receive(node, i, &published).await;
    }
    last_words_once_or_nowhere(test, &mut nodes, victim, &last).await;
    kill_all(nodes).await;
}

/// The victim's last words (published just before it was killed): delivered to every other
/// node exactly once if any node got them, else to none; nothing else anywhere.
async fn last_words_once_or_nowhere(
    test: &str,
    nodes: &mut [NodeProcess],
    victim: usize,
    last: &str,
) {
    let mut got_last = Vec::new();
    for node in nodes.iter_mut() {
        let extra = node.drain_messages().await;
        let last_words = extra.iter().filter(|m| m["id"] == last).count();
        assert!(last_words <= 1, "{}: last words delivered twice", node.name);
        assert_eq!(
            extra.len(),
            last_words,
            "{}: extra deliveries {extra:?}",
            node.name
        );
        got_last.push(last_words == 1);
    }
    if got_last.iter().any(|g| *g) {
        for (i, node) in nodes.iter_mut().enumerate() {
            if i != victim && !got_last[i] {
                receive(node, i, &[(victim, last.to_string())]).await;
            }
        }
    }
    println!(
        "{test}: the last words left the killed process: {}",
        got_last.iter().any(|g| *g)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_with_its_data_reports_nothing_twice_and_keeps_its_history() {
    let test = "a_node_killed_mid_stream_with_its_data_reports_nothing_twice_and_keeps_its_history";
    if skip(test, false) {
        return;
    }
    let seed = seed_from_env(23);
    println!("{test}: seed {seed}");
    let net = Network::create(12, 12);
    let victim = 5;
    let mut nodes = Vec::new();
    for i in 0..net.len() {
        let extra: &[&str] = if i == victim { &["--data"] } else { &[] };
        nodes.push(net.start_with(i, extra).await);
    }
    let edges = graph(net.len(), seed);
    link(&net, &mut nodes, &edges, Transport::Tcp).await;
    let all: Vec<usize> = (0..net.len()).collect();
    let others: Vec<usize> = all.iter().copied().filter(|i| *i != victim).collect();
    let sequence = |id: &str| -> u64 { id.rsplit('#').next().unwrap().parse().unwrap() };
    let mut published = publish(&mut nodes, &all, 24, "before").await;
    let last = nodes[victim].publish("last words").await;
    // Killed mid-stream; what it reported before it died is on record.
    let first_run: BTreeSet<String> = nodes[victim]
        .kill_and_take_lines()
        .await
        .into_iter()
        .filter(|l| l["event"] == "message")
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    let during = publish(&mut nodes, &others, 12, "during").await;
    published.extend(during.clone());
    // Restart with the same key and the same data directory.
    nodes[victim] = net.start_with(victim, &["--data"]).await;
    for &(a, b) in edges.iter().filter(|(a, b)| *a == victim || *b == victim) {
        let other = if a == victim { b } else { a };
        let addr = net.addr(other, Transport::Tcp);
        nodes[victim].command(&format!("dial {addr}")).await;
        let peer = nodes[other].peer_id.clone();
        nodes[victim].connected_to(&peer).await;
    }
    let new_id = nodes[victim].publish("back").await;
    assert!(
        sequence(&new_id) > sequence(&last),
        "a restarted author reused a sequence"
    );
    published.push((victim, new_id));
    // Everyone else gets everything; the victim what was published while it was down.
    for (i, node) in nodes.iter_mut().enumerate() {
        let expected = if i == victim { &during } else { &published };
        receive(node, i, expected).await;
    }
    // Its history survived: it comes to hold every other author's message (those it had
    // written from its file, the rest pulled again).
    let others_messages = published.iter().filter(|(a, _)| *a != victim).count();
    let deadline = tokio::time::Instant::now() + common::process::WAIT;
    let stored = loop {
        nodes[victim].command("stats").await;
        let stats = nodes[victim].wait_event("stats").await;
        let stored = stats["stored"].as_u64().unwrap() as usize;
        if stored >= others_messages {
            break stored;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{test}: holds {stored} of {others_messages}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    // After the restart it reported nothing it had reported before, and nothing twice (a
    // message written but not yet reported when it died is not reported: at most once).
    let again = nodes[victim].drain_messages().await;
    let mut second_run = BTreeSet::new();
    for line in &again {
        let id = line["id"].as_str().unwrap().to_string();
        assert!(!first_run.contains(&id), "{test}: {id} reported again");
        assert!(
            !during.iter().any(|(_, d)| *d == id) && second_run.insert(id.clone()),
            "{test}: {id} reported twice after the restart"
        );
    }
    last_words_once_or_nowhere(test, &mut nodes, victim, &last).await;
    println!(
        "{test}: reported {} before the kill, {} after (and the {} published meanwhile); \
         holds {stored}",
        first_run.len(),
        second_run.len(),
        during.len()
    );
    kill_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_joins_late_dialling_one_node_gets_everything() {
    let test = "a_host_that_joins_late_dialling_one_node_gets_everything";
    if skip(test, false) {
        return;
    }
    let seed = seed_from_env(19);
    println!("{test}: seed {seed}");
    let net = Network::create(13, 13);
    let mut nodes = Vec::new();
    for i in 0..12 {
        nodes.push(net.start(i).await);
    }
    link(&net, &mut nodes, &graph(12, seed), Transport::Tcp).await;
    let all: Vec<usize> = (0..12).collect();
    let mut published = publish(&mut nodes, &all, 24, "early").await;
    for (i, node) in nodes.iter_mut().enumerate() {
        receive(node, i, &published).await;
    }
    let mut late = net.start(12).await;
    late.command(&format!("dial {}", net.addr(4, Transport::Tcp)))
        .await;
    late.connected_to(&nodes[4].peer_id.clone()).await;
    nodes.push(late);
    let more = publish(&mut nodes, &[0, 12], 4, "after").await;
    // The early nodes already took the early messages; check the late one gets them all.
    receive(&mut nodes[12], 12, &published).await;
    published.extend(more.clone());
    for (i, node) in nodes.iter_mut().enumerate() {
        receive(node, i, &more).await;
    }
    for node in nodes.iter_mut() {
        let extra = node.drain_messages().await;
        assert!(
            extra.is_empty(),
            "{}: extra deliveries {extra:?}",
            node.name
        );
    }
    kill_all(nodes).await;
}
