//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ctm::compile::{Artifacts, Content};
use ctm::config::{self, Format, Source};
use ctm::lock::Lock;
use ctm::validate::{self, Validated};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Parses and validates a host file's text; panics with the rendered
/// diagnostics if it is not valid.
pub fn validated(name: &str, text: &str, format: Format, lock: &Lock) -> Validated {
    let source = Source::new(name, text, format);
    let (doc, diagnostics) = config::parse(&source);
    let result = if diagnostics.is_empty() {
        validate::validate(&doc, lock)
    } else {
        Err(diagnostics)
    };
    match result {
        Ok(v) => v,
        Err(diagnostics) => {
            let rendered: Vec<String> = diagnostics
                .iter()
                .map(|d| format!("{:?}", d.report(name, text)))
                .collect();
            panic!("{name} is not valid:\n{}", rendered.join("\n"));
        }
    }
}

/// An example and the lock committed beside it.
pub fn example(path: &Path) -> (String, Lock) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = match std::fs::read_to_string(&lock_path) {
        Ok(t) => Lock::parse(&t).unwrap_or_else(|d| panic!("{}: {}", path.display(), d.message)),
        Err(_) => Lock::empty(),
    };
    (text, lock)
}

/// All artifacts as one text, for golden files: each file under a header
/// line with its path and mode, symlinks as `path -> target`.
pub fn flatten(artifacts: &Artifacts) -> String {
    let mut out = String::new();
    for (path, artifact) in &artifacts.files {
        match &artifact.content {
            Content::File { text, mode } => {
                out.push_str(&format!("=== {path} (mode {mode:o})\n"));
                out.push_str(text);
            }
            Content::Symlink { target } => out.push_str(&format!("=== {path} -> {target}\n")),
        }
    }
    out
}

/// Compares `actual` with the golden file, or rewrites the golden file
/// when CTM_UPDATE_GOLDEN=1.
pub fn assert_golden(golden: &Path, actual: &str) {
    if std::env::var_os("CTM_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(golden, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(golden).unwrap_or_else(|_| {
        panic!(
            "golden file {} is missing; run `CTM_UPDATE_GOLDEN=1 cargo test` and review it",
            golden.display()
        )
    });
    if expected != actual {
        let diff = similar_diff(&expected, actual);
        panic!(
            "{} differs from the compiled output (CTM_UPDATE_GOLDEN=1 rewrites it after review):\n{diff}",
            golden.display()
        );
    }
}

fn similar_diff(a: &str, b: &str) -> String {
    let mut out = String::new();
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    for i in 0..a.len().max(b.len()) {
        match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => {
                out.push_str(&format!(
                    "line {}:\n- {}\n+ {}\n",
                    i + 1,
                    x.unwrap_or(&""),
                    y.unwrap_or(&"")
                ));
                if out.len() > 4000 {
                    break;
                }
            }
        }
    }
    out
}

/// True when running under CI (`CI` set to any non-empty value, as
/// `CI=true` and `CI=1` both are), where tests that would skip must run.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skips (returns true after saying so loudly) when a requirement is
/// missing, except under CI, where a missing requirement is a failure.
pub fn skip_unless(requirement_met: bool, what: &str) -> bool {
    if requirement_met {
        return false;
    }
    if in_ci() {
        panic!("CI must run this test, but {what}");
    }
    say_skipped(what);
    true
}

/// Prints `SKIPPED: why` where it is seen without `--nocapture`: the test
/// harness captures the print macros of a passing test, not a write to
/// the process's standard error. `.ci/run` counts these lines.
pub fn say_skipped(why: &str) {
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED ({}): {why}",
        std::thread::current().name().unwrap_or("a test")
    );
}

/// A scratch directory with a copy of an example and its lock (if it has
/// one); returns the directory and the copy's path.
pub fn scratch_example(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join(name);
    std::fs::copy(repo().join("examples").join(name), &host).unwrap();
    let lock = repo().join("examples").join(format!("{name}.lock"));
    if lock.exists() {
        std::fs::copy(&lock, dir.path().join(format!("{name}.lock"))).unwrap();
    }
    (dir, host)
}

/// The metric families of a Prometheus text, as the reference client
/// library's parser reads them (Debian's python3-prometheus-client):
/// `{name: {type, samples: [[name, labels, value]]}}`; `None` (after a
/// loud skip) where that parser is missing outside CI.
pub fn prometheus_parse(text: &str) -> Option<serde_json::Value> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "documentation": f.documentation,
                   "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
"#;
    let available = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import prometheus_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if skip_unless(
        available,
        "Debian's python3-prometheus-client is missing (apt-get install python3-prometheus-client)",
    ) {
        return None;
    }
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the text:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// Runs `f` on a thread with a stack of `bytes`, and gives back its
/// result; a panic in `f` fails the caller.
pub fn on_stack<T: Send + 'static>(bytes: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(bytes)
        .spawn(f)
        .expect("a thread")
        .join()
        .expect("no panic")
}

/// Runs `f` on a thread with a 256 KiB stack (a tenth of a Rust thread's
/// default): no input may make ctm recurse deeper than that allows.
pub fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    on_stack(256 << 10, f)
}

/// Resource use of `web` only, as a cgroup would report it (the web
/// tests' dashboard and container page).
pub struct OneBusyContainer;

impl ctm::backend::cgroups::Resources for OneBusyContainer {
    fn usage(&self, machine: &str) -> Option<ctm::backend::cgroups::Usage> {
        (machine == "web").then_some(ctm::backend::cgroups::Usage {
            cpu_usec: 1_500_000,
            memory_bytes: 64 << 20,
        })
    }
}
