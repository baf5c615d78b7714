//! The `ctm serve` process: where it listens (TCP, a unix socket, the
//! socket systemd passes), the token it prints once, and a clean stop.

mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A host file (the minimal example) and a root, in a scratch directory.
fn sandbox() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (dir, host) = scratch_example("minimal.kdl");
    let root = dir.path().join("root");
    (dir, host, root)
}

fn serve(prefix: &[&str], host: &Path, root: &Path, listen: &str) -> (Server, ChildStdout) {
    let (program, args) = match prefix.split_first() {
        Some((p, rest)) => (p.to_string(), rest.iter().map(|s| s.to_string()).collect()),
        None => (env!("CARGO_BIN_EXE_ctm").to_string(), Vec::<String>::new()),
    };
    let mut command = Command::new(program);
    command.args(args);
    if !prefix.is_empty() {
        command.arg(env!("CARGO_BIN_EXE_ctm"));
    }
    let mut child = command
        .arg("serve")
        .arg(host)
        .arg("--root")
        .arg(root)
        .args(["--listen", listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    (Server(child), stdout)
}

/// The first line ctm serve prints, and every line that follows until
/// `until` says stop.
fn read_until(stdout: ChildStdout, until: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        text.push_str(&line);
        text.push('\n');
        if until(&line) {
            break;
        }
    }
    text
}

/// One HTTP/1.0 request over any stream; the whole answer.
fn http(mut stream: impl std::io::Read + std::io::Write, path: &str, token: &str) -> String {
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

fn token(root: &Path) -> String {
    std::fs::read_to_string(root.join("var/lib/ctm/web-token"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn tcp_prints_the_token_once_and_stops_cleanly() {
    let (_dir, host, root) = sandbox();
    let (mut server, stdout) = serve(&[], &host, &root, "127.0.0.1:0");
    // Up to the metrics token, printed after the login token.
    let metrics_said = std::cell::Cell::new(false);
    let printed = read_until(stdout, |l| {
        metrics_said.set(metrics_said.get() || l.contains("made a metrics token"));
        metrics_said.get() && l.starts_with("    ")
    });
    let url = printed
        .lines()
        .next()
        .unwrap()
        .split("listening on ")
        .nth(1)
        .unwrap()
        .to_string();
    let token = token(&root);
    assert!(printed.contains(&format!("\n    {token}\n")), "{printed}");
    assert!(printed.contains("(mode 0600)"), "{printed}");
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let answer = http(
        std::net::TcpStream::connect(&addr).unwrap(),
        "/api/status",
        &token,
    );
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    assert!(answer.contains("\"live\":false"), "{answer}");
    // The metrics token, printed once too, reads /metrics and no more.
    let metrics_token = std::fs::read_to_string(root.join("var/lib/ctm/web-metrics-token"))
        .unwrap()
        .trim()
        .to_string();
    assert!(
        printed.contains(&format!("\n    {metrics_token}\n")),
        "{printed}"
    );
    let connect = || std::net::TcpStream::connect(&addr).unwrap();
    let answer = http(connect(), "/metrics", &metrics_token);
    assert!(
        answer.contains(" 200 OK") && answer.contains("ctm_live 0"),
        "{answer}"
    );
    let answer = http(connect(), "/api/status", &metrics_token);
    assert!(answer.contains(" 401 "), "{answer}");

    let killed = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");

    // A second start keeps the token and does not print it.
    let (_server, stdout) = serve(&[], &host, &root, "127.0.0.1:0");
    let printed = read_until(stdout, |_| true);
    assert!(printed.contains("listening on"), "{printed}");
    assert!(!printed.contains(&token), "{printed}");
    assert!(!printed.contains(&metrics_token), "{printed}");
}

#[test]
fn a_unix_socket_is_for_its_owner_only() {
    let (dir, host, root) = sandbox();
    let socket = dir.path().join("web.sock");
    // A stale socket file from an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let (_server, stdout) = serve(&[], &host, &root, socket.to_str().unwrap());
    let printed = read_until(stdout, |l| l.starts_with("Open "));
    assert!(
        printed.contains(&format!("listening on unix:{}", socket.display())),
        "{printed}"
    );
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let answer = http(
        std::os::unix::net::UnixStream::connect(&socket).unwrap(),
        "/api/generations",
        &token(&root),
    );
    assert!(answer.contains(" 200 OK"), "{answer}");
    assert!(answer.contains("\"generations\":[]"), "{answer}");
}

#[test]
fn systemd_socket_activation_hands_over_the_socket() {
    let activate = "/usr/bin/systemd-socket-activate";
    if skip_unless(
        Path::new(activate).exists(),
        "systemd-socket-activate is missing (it comes with systemd)",
    ) {
        return;
    }
    // A free port: bind, note it, let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let (dir, host, root) = sandbox();
    let unused = dir.path().join("never.sock");
    let (_server, stdout) = serve(
        &[activate, "-l", &listen],
        &host,
        &root,
        unused.to_str().unwrap(),
    );
    // systemd-socket-activate starts ctm on the first connection.
    let stream = {
        let started = Instant::now();
        loop {
            match std::net::TcpStream::connect(&listen) {
                Ok(s) => break s,
                Err(_) if started.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => panic!("{e}"),
            }
        }
    };
    let mut reader = BufReader::new(stdout);
    let mut first = String::new();
    // Written by the request that starts it: ctm answers on the passed socket.
    let token_wait = Instant::now();
    let answer = loop {
        if root.join("var/lib/ctm/web-token").exists() {
            break http(stream, "/api/status", &token(&root));
        }
        assert!(token_wait.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    };
    reader.read_line(&mut first).unwrap();
    assert!(answer.contains(" 200 OK"), "{answer}");
    assert!(
        first.contains(&format!("listening on http://{listen}/")),
        "{first}"
    );
    assert!(
        !unused.exists(),
        "--listen is not used under socket activation"
    );
}

/// Issue 13: one logged-in request of 1.2 KB, nested 400 levels deep,
/// killed the `ctm serve` process (a worker's stack overflowed). The
/// real process, on its real threads, answers it with a diagnostic and
/// goes on serving.
#[test]
fn a_text_nested_too_deep_does_not_kill_the_server() {
    let (_dir, host, root) = sandbox();
    let (mut server, stdout) = serve(&[], &host, &root, "127.0.0.1:0");
    let printed = read_until(stdout, |_| true);
    let addr = printed
        .split("listening on http://")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches('/')
        .to_string();
    let token = token(&root);
    let deep = format!("a{}{}", "{a".repeat(400), "}".repeat(400));
    for path in ["/api/validate", "/api/plan", "/api/edit/read", "/api/edit"] {
        let body = serde_json::json!({
            "text": deep,
            "kind": "container",
            "name": "web",
            "values": { "name": "web" },
        })
        .to_string();
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
        assert!(
            answer.contains(" 200 OK") || answer.contains(" 422 "),
            "{path}: {answer}"
        );
        assert!(
            server.0.try_wait().unwrap().is_none(),
            "{path} killed the server"
        );
    }
    let answer = http(
        std::net::TcpStream::connect(&addr).unwrap(),
        "/api/status",
        &token,
    );
    assert!(answer.contains(" 200 OK"), "{answer}");
}
