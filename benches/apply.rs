//! `ctm plan` and `ctm apply` end to end, through the release binary, on
//! synthetic hosts of 100, 1,000 and 5,000 containers (100 networks, 50
//! tunnels), against scratch roots:
//!
//! - `apply`: a first apply into an empty root (every file written with
//!   temp file + fsync + rename + directory fsync, a generation staged);
//! - `no-op plan`: `ctm plan` against a root where that host is applied
//!   (compile, read and hash every managed file, compare).
//!
//! `cargo bench --bench apply`. Prints the median and the spread of a few
//! runs each (apply is slow enough that a handful of runs is the budget),
//! and how each grows with the host. Figures: docs/benchmarks.md.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ctm::synthetic::host_kdl;

fn ctm(args: &[&str], root: &Path, cwd: &Path) -> Duration {
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_ctm"))
        .args(args)
        .arg("--root")
        .arg(root)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("ctm runs");
    let elapsed = started.elapsed();
    assert!(status.success(), "ctm {args:?} failed");
    elapsed
}

fn median(mut runs: Vec<Duration>) -> (Duration, Duration, Duration) {
    runs.sort();
    (runs[runs.len() / 2], runs[0], runs[runs.len() - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would run this
    // too, so only measure when asked to.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mut rows = Vec::new();
    for (containers, apply_runs, plan_runs) in [(100, 5, 15), (1000, 5, 15), (5000, 3, 7)] {
        let work = tempfile::tempdir().expect("temp dir");
        let host = work.path().join("host.kdl");
        std::fs::write(&host, host_kdl(containers, 100, 50)).expect("write host");
        let mut applies = Vec::new();
        let mut last_root = None;
        for _ in 0..apply_runs {
            let root = tempfile::tempdir().expect("temp dir");
            applies.push(ctm(
                &["apply", "host.kdl", "--yes", "--no-diff"],
                root.path(),
                work.path(),
            ));
            last_root = Some(root);
        }
        let root = last_root.expect("at least one run");
        let plans: Vec<Duration> = (0..plan_runs)
            .map(|_| {
                ctm(
                    &["plan", "host.kdl", "--no-diff", "--detailed-exitcode"],
                    root.path(),
                    work.path(),
                )
            })
            .collect();
        let (a, a_min, a_max) = median(applies);
        let (p, p_min, p_max) = median(plans);
        println!(
            "{containers:>5} containers: apply into empty root median {:8.1} ms (min {:.1}, max {:.1}, {apply_runs} runs); \
             no-op plan median {:6.1} ms (min {:.1}, max {:.1}, {plan_runs} runs)",
            ms(a),
            ms(a_min),
            ms(a_max),
            ms(p),
            ms(p_min),
            ms(p_max)
        );
        rows.push((containers, a, p));
    }
    let base = &rows[0];
    for (containers, a, p) in &rows[1..] {
        println!(
            "{} → {containers} containers ({}×): apply {:.1}×, no-op plan {:.1}×",
            base.0,
            containers / base.0,
            a.as_secs_f64() / base.1.as_secs_f64(),
            p.as_secs_f64() / base.2.as_secs_f64()
        );
    }
}
