//! `ctm serve` under hostile load: the editor's ordinary plan requests
//! (the 1,000-container host, a body that differs on every request) while
//! eight clients send hostile ones without pause — a 100,000-property
//! file, a file nested just under the depth limit, a 4 MiB body — and
//! what each kind of request was answered.
//!
//! `cargo bench --bench web_hostile`. The release binary serves on a
//! loopback port of its own against a scratch root with the host applied;
//! clients are plain HTTP/1.1 over `TcpStream`, one connection a request.
//! Prints the median and the 99th percentile of the ordinary requests,
//! alone and beside the hostile ones (docs/benchmarks.md, "Hostile
//! load"); no figure is asserted.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ctm::synthetic::host_kdl;

/// Ordinary requests measured per round.
const ORDINARY: usize = 300;
const HOSTILE_CLIENTS: usize = 8;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends one request; returns the status and how long the answer took.
fn request(port: u16, token: &str, path: &str, body: &[u8]) -> (u16, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // The server may answer (413) and close before the body is all sent.
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body));
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    if reader.read_line(&mut status_line).is_err() {
        return (0, started.elapsed());
    }
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    (status, started.elapsed())
}

fn json_text(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "text": text })).expect("json")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Sends ORDINARY plan requests one after another, each with a text of
/// its own; returns the sorted latencies and how many were not 200.
fn ordinary_round(port: u16, token: &str, text: &str) -> (Vec<Duration>, usize) {
    let mut times = Vec::with_capacity(ORDINARY);
    let mut failed = 0;
    for i in 0..ORDINARY {
        // A comment that differs: no cache keyed by the text helps.
        let body = json_text(&format!("{text}\n// request {i}\n"));
        let (status, took) = request(port, token, "/api/plan", &body);
        if status != 200 {
            failed += 1;
        }
        times.push(took);
    }
    times.sort();
    (times, failed)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let work = tempfile::tempdir().expect("temp dir");
    let host = work.path().join("host.kdl");
    let root = work.path().join("root");
    let text = host_kdl(1000, 100, 50);
    std::fs::write(&host, &text).expect("write host");
    let ctm = env!("CARGO_BIN_EXE_ctm");
    let applied = Command::new(ctm)
        .args(["apply", "host.kdl", "--yes", "--no-diff", "--root"])
        .arg(&root)
        .current_dir(work.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("ctm runs");
    assert!(applied.success(), "ctm apply failed");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new(ctm)
        .args(["serve", "host.kdl", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--root")
        .arg(&root)
        .current_dir(work.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ctm serve");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("ctm serve says where it listens");
    let _server = Server(child);
    let token = std::fs::read_to_string(root.join("var/lib/ctm/web-token"))
        .expect("token")
        .trim()
        .to_string();
    // Files are trusted by the stat cache once their ctime is 2 s old.
    std::thread::sleep(Duration::from_secs(3));

    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("100,000 properties", {
            let props: String = (0..100_000).map(|i| format!(" p{i}=1")).collect();
            json_text(&format!("container \"c\"{props}\n"))
        }),
        ("nested just under the limit", {
            let depth = ctm::config::MAX_DEPTH - 1;
            json_text(&format!("a{}{}\n", " {a".repeat(depth), " }".repeat(depth)))
        }),
        ("a 4 MiB body", json_text(&"x".repeat((4 << 20) - 64))),
    ];

    println!(
        "ctm serve, POST /api/plan, 1,000 containers, {ORDINARY} requests a round, one at a time"
    );
    let (alone, failed) = ordinary_round(port, &token, &text);
    println!(
        "  alone:                         median {:7.2} ms   p99 {:7.2} ms   ({failed} not 200)",
        percentile(&alone, 0.5),
        percentile(&alone, 0.99)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<Mutex<Vec<(usize, u16, Duration)>>> = Arc::default();
    let hostile = Arc::new(hostile);
    let clients: Vec<_> = (0..HOSTILE_CLIENTS)
        .map(|i| {
            let (stop, outcomes, hostile, token) = (
                stop.clone(),
                outcomes.clone(),
                hostile.clone(),
                token.clone(),
            );
            std::thread::spawn(move || {
                let kind = i % hostile.len();
                while !stop.load(Ordering::SeqCst) {
                    let (status, took) = request(port, &token, "/api/validate", &hostile[kind].1);
                    outcomes.lock().expect("lock").push((kind, status, took));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (beside, failed) = ordinary_round(port, &token, &text);
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let _ = c.join();
    }
    println!(
        "  beside {HOSTILE_CLIENTS} hostile clients:     median {:7.2} ms   p99 {:7.2} ms   ({failed} not 200)",
        percentile(&beside, 0.5),
        percentile(&beside, 0.99)
    );
    let outcomes = outcomes.lock().expect("lock");
    for (kind, (name, _)) in hostile.iter().enumerate() {
        let mut statuses: std::collections::BTreeMap<u16, usize> = Default::default();
        let mut times: Vec<Duration> = Vec::new();
        for (k, status, took) in outcomes.iter() {
            if *k == kind {
                *statuses.entry(*status).or_default() += 1;
                times.push(*took);
            }
        }
        times.sort();
        let answered: Vec<String> = statuses.iter().map(|(s, n)| format!("{n}× {s}")).collect();
        println!(
            "  hostile, {name:<28} {}  (median {:.0} ms)",
            answered.join(", "),
            if times.is_empty() {
                0.0
            } else {
                percentile(&times, 0.5)
            }
        );
    }
}
