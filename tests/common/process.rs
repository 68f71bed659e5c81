//! `examples/node.rs` as a real process, driven through its stdin commands and read through
//! its JSON lines, optionally inside a network namespace (`ip netns exec`).

use serde_json::Value;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// How long a wait for a node's output may take before the test fails (a hung test).
pub const WAIT: Duration = Duration::from_secs(90);

/// The path of the `node` example, built if it is not there yet.
pub fn node_binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest.join("target"));
        let path = target.join("debug").join("examples").join("node");
        // `cargo test` builds the examples too; a filtered run (`--test x`) does not, so the
        // binary is built here when it is missing or older than the sources.
        let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let newest_source = ["src", "examples", "Cargo.toml"]
            .iter()
            .filter_map(|p| newest(&manifest.join(p)))
            .max();
        if built.is_none() || built < newest_source {
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "--quiet", "--example", "node"])
                .current_dir(&manifest)
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building examples/node.rs failed");
        }
        assert!(path.exists(), "{} missing after the build", path.display());
        path
    })
    .clone()
}

/// The newest modification time of a file, or of any file below a directory.
fn newest(path: &std::path::Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| newest(&e.ok()?.path()))
        .max()
}

/// Runs `examples/node.rs` with `args` until it exits by itself (it is expected to fail at
/// start): its exit code, its JSON lines and its stderr.
pub async fn run_to_exit(args: &[String]) -> (Option<i32>, Vec<Value>, String) {
    let output = tokio::time::timeout(
        WAIT,
        Command::new(node_binary())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the node exits by itself")
    .expect("node starts");
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), lines, stderr)
}

/// One node process.
pub struct NodeProcess {
    pub name: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<Value>,
    backlog: VecDeque<Value>,
    /// Whether the test reads the process's stdout (a slow reader when it does not).
    reading: tokio::sync::watch::Sender<bool>,
    pub peer_id: String,
    pub author: String,
}

impl NodeProcess {
    /// Starts `examples/node.rs` with `args`, inside network namespace `netns` if given, and
    /// waits for its `started` line.
    pub async fn start(name: &str, netns: Option<&str>, args: &[String]) -> NodeProcess {
        let binary = node_binary();
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("node starts");
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::unbounded_channel();
        let (reading, mut allowed) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            loop {
                while !*allowed.borrow_and_update() {
                    if allowed.changed().await.is_err() {
                        return;
                    }
                }
                let Ok(Some(line)) = reader.next_line().await else {
                    return;
                };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Err(e) => panic!("not a JSON line: {line:?}: {e}"),
                }
            }
        });
        let mut node = NodeProcess {
            name: name.to_string(),
            child,
            stdin,
            lines,
            backlog: VecDeque::new(),
            reading,
            peer_id: String::new(),
            author: String::new(),
        };
        let started = node.wait_event("started").await;
        node.peer_id = started["peer_id"].as_str().unwrap().to_string();
        node.author = started["author"].as_str().unwrap().to_string();
        node
    }

    /// Stops reading the process's stdout (after the line being read), as a slow reader.
    pub fn pause_reading(&self) {
        let _ = self.reading.send(false);
    }

    /// Reads its stdout again.
    pub fn resume_reading(&self) {
        let _ = self.reading.send(true);
    }

    /// Sends one command line.
    pub async fn command(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{}: stdin: {e}", self.name));
        self.stdin.flush().await.expect("flush");
    }

    /// The first line (queued or new) that `pick` accepts; others stay queued, in order.
    pub async fn wait_for<T>(&mut self, pick: impl FnMut(&Value) -> Option<T>) -> T {
        let name = self.name.clone();
        self.wait_within(WAIT, pick)
            .await
            .unwrap_or_else(|| panic!("{name}: no awaited line in {WAIT:?}"))
    }

    /// As [`NodeProcess::wait_for`], or `None` if no line that `pick` accepts came within
    /// `limit` of the call.
    pub async fn wait_within<T>(
        &mut self,
        limit: Duration,
        mut pick: impl FnMut(&Value) -> Option<T>,
    ) -> Option<T> {
        if let Some(i) = self.backlog.iter().position(|v| pick(v).is_some()) {
            let v = self.backlog.remove(i).expect("found");
            return pick(&v);
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .ok()?
                .unwrap_or_else(|| panic!("{}: the process ended", self.name));
            if let Some(t) = pick(&line) {
                return Some(t);
            }
            self.backlog.push_back(line);
        }
    }

    /// The next line with `"event": event`.
    pub async fn wait_event(&mut self, event: &str) -> Value {
        self.wait_for(|v| (v["event"] == event).then(|| v.clone()))
            .await
    }

    /// Publishes `text`; returns the message id.
    pub async fn publish(&mut self, text: &str) -> String {
        self.command(&format!("publish {text}")).await;
        let published = self.wait_event("published").await;
        published["id"].as_str().unwrap().to_string()
    }

    /// The listening addresses reported so far, waiting for at least one that `matches`.
    pub async fn address(&mut self, matches: impl Fn(&str) -> bool) -> String {
        self.wait_for(|v| {
            let a = v["address"].as_str()?;
            (v["event"] == "listening" && matches(a)).then(|| a.to_string())
        })
        .await
    }

    /// Waits until the node reports a connection to `peer`.
    pub async fn connected_to(&mut self, peer: &str) {
        self.wait_for(|v| (v["event"] == "connected" && v["peer"] == peer).then_some(()))
            .await
    }

    /// Every `message` line so far and not yet taken, after a `stats` round trip (which the
    /// node answers after every line before it).
    pub async fn drain_messages(&mut self) -> Vec<Value> {
        self.command("stats").await;
        self.wait_event("stats").await;
        while let Ok(v) = self.lines.try_recv() {
            self.backlog.push_back(v);
        }
        let (messages, rest): (Vec<Value>, Vec<Value>) = self
            .backlog
            .drain(..)
            .partition(|v| v["event"] == "message");
        self.backlog = rest.into();
        messages
    }

    /// The process id (the node itself: `ip netns exec` execs it).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The `message` lines received so far and not yet taken, without waiting.
    pub fn take_messages(&mut self) -> Vec<Value> {
        while let Ok(v) = self.lines.try_recv() {
            self.backlog.push_back(v);
        }
        let (messages, rest): (Vec<Value>, Vec<Value>) = self
            .backlog
            .drain(..)
            .partition(|v| v["event"] == "message");
        self.backlog = rest.into();
        messages
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Kills the process (SIGKILL), then reads what it wrote before it died: every line not
    /// yet taken.
    pub async fn kill_and_take_lines(&mut self) -> Vec<Value> {
        let _ = self.child.kill().await;
        while let Some(v) = self.lines.recv().await {
            self.backlog.push_back(v);
        }
        self.backlog.drain(..).collect()
    }
}

/// `GET /metrics` from `addr`; the body.
pub async fn scrape(addr: &str) -> String {
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

/// The address `node` serves `/metrics` on.
pub async fn metrics_address(node: &mut NodeProcess) -> String {
    node.wait_event("metrics").await["address"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The value of metric `name` (with its labels, if any) in a scrape.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
