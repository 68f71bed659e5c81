//! `examples/node.rs` as real processes on this host: TCP and QUIC connections, messages in
//! JSON lines, and its Prometheus metrics scraped over real HTTP.

mod common;

use common::process::NodeProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /metrics` from `addr`; the body.
async fn scrape(addr: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("metrics server");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_processes_gossip_over_tcp_and_quic_and_serve_metrics_over_http() {
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
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
    let metrics = b.wait_event("metrics").await["address"]
        .as_str()
        .unwrap()
        .to_string();
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
