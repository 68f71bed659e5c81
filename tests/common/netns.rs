//! Real hosts on one machine: every host a Linux network namespace with its own stack, joined
//! by veth pairs to bridges in a hub namespace, one `examples/node.rs` process per host.
//!
//! The hosts are split over two bridges joined by a trunk veth pair, so taking the trunk down
//! partitions the network while each side stays connected. Packet loss is an nftables rule
//! (`numgen random`) in every host. Everything made here (namespaces, links, processes, key
//! files) is removed when the [`Network`] is dropped, also when a test fails.
//!
//! These tests change the host's networking (namespaces, veth pairs, bridges, nftables rules
//! inside the namespaces), so they run only when asked: `SECURE_GOSSIP_NETNS=1` (CI sets it).
//! Asked, they need root and `ip` (iproute2), and `nft` for loss, and fail without them; not
//! asked, each says how to run it and skips.

use super::process::NodeProcess;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The port every node listens on, TCP and UDP (QUIC).
pub const PORT: u16 = 4001;

/// Runs a command; its stderr on failure.
fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    run(args).unwrap_or_else(|e| panic!("{e}"));
}

/// Why these tests cannot run here, if they cannot (checked once per test).
pub fn unavailable(need_nft: bool) -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("needs root (network namespaces)".into());
    }
    if run(&["ip", "-V"]).is_err() {
        return Some("needs `ip` from iproute2".into());
    }
    if need_nft && run(&["nft", "--version"]).is_err() {
        return Some("needs `nft` from nftables (packet loss)".into());
    }
    None
}

/// The variable that asks for the network-namespace tests.
pub const ASK: &str = "SECURE_GOSSIP_NETNS";

/// Skips the test (returns `true`) unless [`ASK`] is set to `1`; when asked, fails if the
/// machine cannot run it.
pub fn skip(test: &str, need_nft: bool) -> bool {
    if std::env::var(ASK).as_deref() != Ok("1") {
        eprintln!(
            "{test}: skipped: it changes this host's networking (network namespaces, veth, \
             bridges, nftables); run it with {ASK}=1 as root with iproute2 and nftables \
             (`sudo -E env {ASK}=1 cargo test --test netns`)"
        );
        return true;
    }
    if let Some(why) = unavailable(need_nft) {
        panic!("{test}: {why}, and {ASK}=1 asks for it");
    }
    false
}

/// Which transport nodes listen and dial on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Quic,
}

/// A set of hosts.
pub struct Network {
    prefix: String,
    hub: String,
    hosts: Vec<String>,
    /// Host `i` is on bridge `side[i]` (0 or 1).
    pub side: Vec<u8>,
    dir: PathBuf,
}

impl Network {
    /// `n` hosts; the first `left` on one bridge, the rest on the other.
    pub fn create(n: usize, left: usize) -> Network {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "sg{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut net = Network {
            hub: format!("{prefix}-hub"),
            hosts: Vec::new(),
            side: Vec::new(),
            prefix,
            dir,
        };
        must(&["ip", "netns", "add", &net.hub]);
        let hub = net.hub.clone();
        for br in ["br0", "br1"] {
            must(&["ip", "-n", &hub, "link", "add", br, "type", "bridge"]);
            must(&["ip", "-n", &hub, "link", "set", br, "up"]);
        }
        must(&[
            "ip", "-n", &hub, "link", "add", "trunk0", "type", "veth", "peer", "name", "trunk1",
        ]);
        must(&[
            "ip", "-n", &hub, "link", "set", "trunk0", "master", "br0", "up",
        ]);
        must(&[
            "ip", "-n", &hub, "link", "set", "trunk1", "master", "br1", "up",
        ]);
        for i in 0..n {
            net.add_host(i, u8::from(i >= left));
        }
        net
    }

    fn add_host(&mut self, i: usize, side: u8) {
        let ns = format!("{}-h{i}", self.prefix);
        let hub = self.hub.clone();
        must(&["ip", "netns", "add", &ns]);
        self.hosts.push(ns.clone());
        self.side.push(side);
        let port = format!("v{i}");
        must(&[
            "ip", "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ]);
        let bridge = if side == 0 { "br0" } else { "br1" };
        must(&[
            "ip", "-n", &hub, "link", "set", &port, "master", bridge, "up",
        ]);
        must(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/16", self.ip(i)),
            "dev",
            "eth0",
        ]);
        must(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> String {
        format!("10.77.{}.{}", i / 200, i % 200 + 1)
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// The address to dial host `i` on.
    pub fn addr(&self, i: usize, transport: Transport) -> String {
        match transport {
            Transport::Tcp => format!("/ip4/{}/tcp/{PORT}", self.ip(i)),
            Transport::Quic => format!("/ip4/{}/udp/{PORT}/quic-v1", self.ip(i)),
        }
    }

    /// Starts the node of host `i` (its key file persists across restarts).
    pub async fn start(&self, i: usize) -> NodeProcess {
        self.start_with(i, &[]).await
    }

    /// As [`Network::start`], with `extra` arguments; `--data` with the host's own data
    /// directory if `extra` is `["--data"]`.
    pub async fn start_with(&self, i: usize, extra: &[&str]) -> NodeProcess {
        let key = self.dir.join(format!("h{i}.key"));
        let mut args = vec![
            "--listen".to_string(),
            format!("/ip4/0.0.0.0/tcp/{PORT}"),
            "--listen".to_string(),
            format!("/ip4/0.0.0.0/udp/{PORT}/quic-v1"),
            "--key".to_string(),
            key.display().to_string(),
        ];
        for arg in extra {
            args.push(arg.to_string());
            if *arg == "--data" {
                args.push(self.dir.join(format!("h{i}.data")).display().to_string());
            }
        }
        let mut node = NodeProcess::start(&format!("host {i}"), Some(&self.hosts[i]), &args).await;
        // Listening on both transports before anyone dials.
        node.address(|a| a.contains("/tcp/")).await;
        node.address(|a| a.contains("/quic-v1")).await;
        node
    }

    /// Drops `percent` % of the packets every host sends and receives.
    pub fn set_loss(&self, percent: u32) {
        for ns in &self.hosts {
            let _ = run(&[
                "ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "loss",
            ]);
            if percent == 0 {
                continue;
            }
            must(&[
                "ip", "netns", "exec", ns, "nft", "add", "table", "inet", "loss",
            ]);
            for (chain, hook) in [("out", "output"), ("in", "input")] {
                must(&[
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "nft",
                    "add",
                    "chain",
                    "inet",
                    "loss",
                    chain,
                    &format!("{{ type filter hook {hook} priority 0; }}"),
                ]);
                must(&[
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "nft",
                    "add",
                    "rule",
                    "inet",
                    "loss",
                    chain,
                    "meta",
                    "l4proto",
                    "{",
                    "tcp",
                    ",",
                    "udp",
                    "}",
                    "numgen",
                    "random",
                    "mod",
                    "100",
                    "<",
                    &percent.to_string(),
                    "counter",
                    "drop",
                ]);
            }
        }
    }

    /// Bytes host `i` has sent on its link (IP packets, headers included).
    pub fn tx_bytes(&self, i: usize) -> u64 {
        let path = "/sys/class/net/eth0/statistics/tx_bytes";
        Command::new("ip")
            .args(["netns", "exec", &self.hosts[i], "cat", path])
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(0)
    }

    /// Packets the loss rules have dropped so far, over all hosts.
    pub fn dropped_packets(&self) -> u64 {
        let mut total = 0;
        for ns in &self.hosts {
            let Ok(out) = Command::new("ip")
                .args(["netns", "exec", ns, "nft", "list", "table", "inet", "loss"])
                .output()
            else {
                continue;
            };
            let text = String::from_utf8_lossy(&out.stdout);
            let mut words = text.split_whitespace();
            while let Some(w) = words.next() {
                if w == "packets" {
                    total += words
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
        total
    }

    /// Takes the trunk between the two bridges down (`false`) or up (`true`).
    pub fn trunk(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        must(&["ip", "-n", &self.hub, "link", "set", "trunk0", state]);
        must(&["ip", "-n", &self.hub, "link", "set", "trunk1", state]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(std::iter::once(&self.hub)) {
            // Any process still inside is killed first, so the namespace really goes.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = run(&["ip", "netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
