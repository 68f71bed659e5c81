//! `examples/node.rs` as real processes on this host: TCP and QUIC connections, messages in
//! JSON lines, and its Prometheus metrics scraped over real HTTP.

mod common;

use common::process::{NodeProcess, metric, metrics_address, scrape};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_processes_gossip_over_tcp_and_quic_and_serve_metrics_over_http() {
    let mut a = NodeProcess::start(
        "a",
        None,
        &args(&[
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
        ]),
    )
    .await;
    let tcp = a.address(|s| s.contains("/tcp/")).await;
    let quic = a.address(|s| s.contains("/quic-v1")).await;
    let mut b = NodeProcess::start(
        "b",
        None,
        &args(&[
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--dial",
            &tcp,
            "--metrics",
            "127.0.0.1:0",
        ]),
    )
    .await;
    let metrics = metrics_address(&mut b).await;
    let mut c = NodeProcess::start(
        "c",
        None,
        &args(&["--listen", "/ip4/127.0.0.1/tcp/0", "--dial", &quic]),
    )
    .await;
    b.connected_to(&a.peer_id).await;
    c.connected_to(&a.peer_id).await;
    a.connected_to(&c.peer_id).await;

    let mut ids = Vec::new();
    for k in 0..3 {
        ids.push(a.publish(&format!("hello {k}")).await);
    }
    for node in [&mut b, &mut c] {
        for (k, id) in ids.iter().enumerate() {
            let m = node
                .wait_for(|v| {
                    (v["event"] == "message" && v["id"] == id.as_str()).then(|| v.clone())
                })
                .await;
            assert_eq!(m["payload"], format!("hello {k}"));
            assert_eq!(m["author"], a.author.as_str());
        }
    }
    let text = scrape(&metrics).await;
    assert_eq!(metric(&text, "secure_gossip_messages_delivered_total"), 3.0);
    assert_eq!(metric(&text, "secure_gossip_peers"), 1.0);
    assert_eq!(metric(&text, "secure_gossip_stored_messages"), 3.0);
    assert!(metric(&text, "secure_gossip_wire_bytes_total{direction=\"in\"}") > 0.0);
    assert!(
        b.drain_messages().await.is_empty(),
        "nothing more, nothing twice"
    );
    for mut node in [a, b, c] {
        node.kill().await;
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// `--max-connections 1`: a second peer's connection is denied, the first one stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_enforces_its_connection_limits() {
    let mut a = NodeProcess::start(
        "a",
        None,
        &args(&["--listen", "/ip4/127.0.0.1/tcp/0", "--max-connections", "1"]),
    )
    .await;
    let tcp = a.address(|s| s.contains("/tcp/")).await;
    let mut b = NodeProcess::start("b", None, &args(&["--dial", &tcp])).await;
    b.connected_to(&a.peer_id).await;
    a.connected_to(&b.peer_id).await;
    let mut c = NodeProcess::start("c", None, &args(&["--dial", &tcp])).await;
    // A denies it once the handshake is done: C sees it fail or close.
    let denied = c
        .wait_for(|v| (v["event"] == "error" || v["event"] == "disconnected").then(|| v.clone()))
        .await;
    println!("over the limit: {denied}");
    a.command("stats").await;
    let stats = a.wait_event("stats").await;
    assert_eq!(stats["connected"], 1, "{stats}");
    for mut node in [a, b, c] {
        node.kill().await;
    }
}

/// A reader of stdout that stops reading never holds up the swarm: 6,000 messages are
/// delivered (the metrics say so, over HTTP) while no output is read; the lines that did not
/// fit in the queue are dropped and counted, and reported once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_of_the_output_does_not_stall_the_node() {
    let mut slow = NodeProcess::start(
        "slow",
        None,
        &args(&[
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--metrics",
            "127.0.0.1:0",
        ]),
    )
    .await;
    let tcp = slow.address(|s| s.contains("/tcp/")).await;
    let metrics = metrics_address(&mut slow).await;
    let mut author = NodeProcess::start("author", None, &args(&["--dial", &tcp])).await;
    author.connected_to(&slow.peer_id).await;
    slow.connected_to(&author.peer_id).await;
    slow.pause_reading();
    const N: usize = 6_000;
    // In batches, so the author's own output queue never fills.
    for batch in 0..N / 500 {
        let commands: String = (0..500)
            .map(|k| format!("publish message {}\n", batch * 500 + k))
            .collect();
        author.command(commands.trim_end()).await;
        for _ in 0..500 {
            author.wait_event("published").await;
        }
    }
    // Delivered while nobody reads the node's stdout.
    let started = std::time::Instant::now();
    loop {
        let delivered = metric(
            &scrape(&metrics).await,
            "secure_gossip_messages_delivered_total",
        );
        if delivered as usize >= N {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "only {delivered} of {N} delivered while stdout was not read"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    slow.resume_reading();
    // The next line written after the queue drained reports what was dropped. A `stats`
    // answered while the queue is still full is itself dropped (and counted), so the command
    // is repeated until an answer gets through.
    let asked = std::time::Instant::now();
    let stats = loop {
        slow.command("stats").await;
        let answer = slow
            .wait_within(std::time::Duration::from_secs(2), |v| {
                (v["event"] == "stats").then(|| v.clone())
            })
            .await;
        if let Some(stats) = answer {
            break stats;
        }
        assert!(
            asked.elapsed() < common::process::WAIT,
            "slow: no stats answer in {:?} after reading resumed",
            common::process::WAIT
        );
    };
    let dropped = slow.wait_event("dropped").await;
    println!("{dropped}; {stats}");
    assert!(stats["output_dropped"].as_u64().unwrap() > 0);
    for mut node in [slow, author] {
        node.kill().await;
    }
}
