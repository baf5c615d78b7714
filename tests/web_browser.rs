//! The web editor in a real browser: `ctm serve` against a sandbox root,
//! driven by tests/web/browser.mjs in Debian's headless Chromium (through
//! playwright-core from web/node_modules). Screenshots of every page, at
//! laptop and phone widths, land in target/web-screenshots/.

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

fn screenshots_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is target/tmp; the screenshots go beside it.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("web-screenshots");
    // Only this run's pictures, so a stale failure.png cannot mislead.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_editor_works_in_a_browser() {
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
        return;
    }
    let (dir, host) = scratch_example("homelab.kdl");
    let root = dir.path().join("root");
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
        .env("CTM_SHOTS", screenshots_dir())
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
