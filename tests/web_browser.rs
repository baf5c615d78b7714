//! The web editor in a real browser: `ctm serve` against a sandbox root,
//! driven by tests/web/browser.mjs in Debian's headless Chromium (through
//! playwright-core from web/node_modules); and the container page on a
//! live host, a lab (docs/lab.md), driven by tests/web/live.mjs.
//! Screenshots of every page, at laptop and phone widths, land in
//! target/web-screenshots/.

#[path = "lab/mod.rs"]
mod lab;
mod support;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Kills the server when the test ends, passed or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where this test's screenshots go: its own directory under
/// target/web-screenshots/, emptied first so that a stale failure.png
/// cannot mislead.
fn screenshots_dir(test: &str) -> PathBuf {
    // CARGO_TARGET_TMPDIR is target/tmp; the screenshots go beside it.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("web-screenshots")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Chromium, or `None` after a loud skip (a failure under CI).
fn chromium() -> Option<String> {
    let chromium = std::env::var("CTM_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if skip_unless(
        Path::new(&chromium).exists(),
        &format!("{chromium} is missing (apt-get install chromium)"),
    ) || skip_unless(has("node"), "node is missing (apt-get install nodejs npm)")
        || skip_unless(
            repo().join("web/node_modules/playwright-core").exists(),
            "web/node_modules/playwright-core is missing (cargo build runs npm ci)",
        )
    {
        return None;
    }
    Some(chromium)
}

#[test]
fn the_editor_works_in_a_browser() {
    let Some(chromium) = chromium() else {
        return;
    };
    let (dir, host) = scratch_example("homelab.kdl");
    let root = dir.path().join("root");
    // An archive of container web where backups go (not a real one: the
    // page lists it, downloads it, and shows its restore's preview).
    let backups = root.join("var/lib/ctm/backups");
    std::fs::create_dir_all(&backups).unwrap();
    std::fs::write(
        backups.join("web-20261204T100000Z.ctm-backup.tar.zst"),
        "archive bytes",
    )
    .unwrap();
    // A fleet beside it, of one host that refuses SSH: the fleet page
    // shows why.
    let fleet = dir.path().join("fleet.kdl");
    std::fs::write(
        &fleet,
        "host \"h1\" {\n    ssh \"127.0.0.1\" port=1\n    file \"homelab.kdl\"\n    tags \"lab\"\n}\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ctm"))
        .args(["serve", host.to_str().unwrap(), "--fleet"])
        .arg(&fleet)
        .arg("--root")
        .arg(&root)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Server(child);
    let mut url = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some((_, rest)) = line.split_once("listening on ") {
            url = Some(rest.trim().to_string());
            break;
        }
    }
    let url = url.expect("ctm serve printed its URL");
    let token = std::fs::read_to_string(root.join("var/lib/ctm/web-token")).unwrap();
    let started = Instant::now();
    let output = Command::new("node")
        .arg(repo().join("tests/web/browser.mjs"))
        .env("CTM_URL", &url)
        .env("CTM_TOKEN", token.trim())
        .env("CTM_HOST_FILE", &host)
        .env("CTM_SHOTS", screenshots_dir("editor"))
        .env("CTM_CHROMIUM", &chromium)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser tests failed after {:?}:\n{stdout}\n{stderr}",
        started.elapsed()
    );
    assert!(stdout.contains("all steps passed"), "{stdout}\n{stderr}");
    // The page weight it measured, for `--nocapture`.
    print!("{stdout}");
    assert!(started.elapsed() < Duration::from_secs(120));
}

const LIVE_HOST: &str = r#"
host "lab" {
    uplink "host0"
}

image "guest" {
    directory "/srv/images/guest"
}

network "lan" {
    bridge "br-lan"
    ipv4 "10.42.0.1/24" { nat; }
}

container "work" {
    image "guest"
    bind "/usr" read-only=#true
    network "lan"
    limits memory="512M"
}
"#;

#[test]
fn the_container_page_acts_and_its_console_runs_commands_on_a_live_host() {
    use lab::scenario::*;
    let available = lab::Lab::available();
    if skip_unless(available.is_ok(), &available.err().unwrap_or_default()) {
        return;
    }
    let Some(chromium) = chromium() else {
        return;
    };
    let lab = lab_with("web-live", LIVE_HOST);
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    let token = serve_in_lab(&lab);
    // The browser runs here, in the lab's network namespace, where the
    // server listens on the loopback.
    let started = Instant::now();
    let output = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", lab.leader()))
        .arg("--")
        .arg("node")
        .arg(repo().join("tests/web/live.mjs"))
        .env("CTM_URL", format!("http://127.0.0.1:{SERVE_PORT}/"))
        .env("CTM_TOKEN", &token)
        .env("CTM_SHOTS", screenshots_dir("live"))
        .env("CTM_CHROMIUM", &chromium)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("all steps passed"),
        "live browser tests failed after {:?}:\n{stdout}\n{stderr}\nctm serve's log:\n{}",
        started.elapsed(),
        lab::show_output(&lab.run(&["journalctl", "-u", "ctm-web", "--no-pager", "-n", "40"]))
    );
    // The browser is gone: so is the shell it opened, and what it ran.
    eventually(
        "the console's shell to end",
        Duration::from_secs(10),
        || {
            // (The brackets keep pgrep from finding the `timeout` it runs under.)
            let left = lab.run(&["pgrep", "-f", "runuser -[l] root"]);
            (!left.status.success())
                .then_some(())
                .ok_or_else(|| String::from_utf8_lossy(&left.stdout).into_owned())
        },
    );
}
