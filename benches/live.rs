//! `ctm apply` on a real systemd host (a lab, docs/lab.md): the time from
//! `ctm apply` to every container running and provisioned (SSH: host keys,
//! authorized keys, sshd enabled; health checks passed), for 1, 5 and 20
//! containers, each run in a fresh lab; how long creating each root file
//! system from the image took (from the generation's `provisioned.json`);
//! and a no-op apply and plan on the applied host (and a plan with
//! `--check-steps`, which runs every step's check inside the containers).
//!
//! `cargo bench --bench live` (root, and what the lab needs). Prints
//! medians with the spread, and how 5 and 20 containers compare with one.
//! Figures: docs/benchmarks.md.

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::time::{Duration, Instant};

use lab::Lab;
use lab::scenario::lab_with;

fn host(containers: usize) -> String {
    let mut text = String::from(
        r#"host "bench" {
    uplink "host0"
}
image "guest" {
    directory "/srv/images/guest"
}
network "lan" {
    bridge "br-lan"
    ipv4 "10.42.0.1/24" { nat; }
    ipv6 "fd42:42::1/64"
}
template "base" {
    image "guest"
    bind "/usr" read-only=#true
    network "lan"
    ssh {
        authorized-key "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMp0tjDw5Qn0NKqAdy/eivAd6YR/Tj3jVA/0sAkX+k4+ admin@laptop"
    }
}
"#,
    );
    for i in 0..containers {
        text.push_str(&format!("container \"c{i}\" {{\n    from \"base\"\n}}\n"));
    }
    text
}

fn timed(lab: &Lab, args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = lab.run_timeout(args, Duration::from_secs(900));
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        args.join(" "),
        lab::show_output(&out)
    );
    elapsed
}

/// How long each container's `rootfs` step (a copy of the image) took in
/// the first apply, as generation 1 recorded it.
fn rootfs_times(lab: &Lab) -> Vec<Duration> {
    let text = lab.read("/var/lib/ctm/generations/1/provisioned.json");
    let records: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => panic!("provisioned.json: {e}"),
    };
    let mut out = Vec::new();
    for steps in records.as_object().into_iter().flat_map(|o| o.values()) {
        for step in steps.as_array().into_iter().flatten() {
            if step["id"] == "rootfs" && step["ran"] == true {
                out.push(Duration::from_millis(step["millis"].as_u64().unwrap_or(0)));
            }
        }
    }
    out
}

fn median(mut runs: Vec<Duration>) -> (Duration, Duration, Duration) {
    runs.sort();
    (runs[runs.len() / 2], runs[0], runs[runs.len() - 1])
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if let Err(missing) = Lab::available() {
        eprintln!("SKIPPED: {missing}");
        return;
    }
    let runs = 5;
    // Every container's systemd takes inotify instances, all counted
    // against root on the machine running the labs; a lab cannot raise
    // the limit (its /proc/sys is read-only), so it must be high enough
    // here (docs/benchmarks.md).
    let inotify: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(128);
    let mut rows = Vec::new();
    for containers in [1usize, 5, 20] {
        if 16 + 8 * containers > inotify {
            println!(
                "SKIPPED {containers} containers: fs.inotify.max_user_instances is {inotify} on this \
                 machine, too few for {containers} containers' systemds; raise it (sysctl \
                 fs.inotify.max_user_instances=1024) to measure"
            );
            continue;
        }
        let mut applies = Vec::new();
        let mut noop_applies = Vec::new();
        let mut noop_plans = Vec::new();
        let mut checked_plans = Vec::new();
        let mut rootfs = Vec::new();
        for _ in 0..runs {
            let lab = lab_with(&format!("bench-{containers}"), &host(containers));
            applies.push(timed(&lab, &["ctm", "apply", "/root/host.kdl", "--yes"]));
            let machines = lab.ok(&["machinectl", "list", "--no-legend", "--no-pager"]);
            assert_eq!(
                machines.lines().count(),
                containers,
                "not all running:\n{machines}"
            );
            rootfs.extend(rootfs_times(&lab));
            noop_applies.push(timed(&lab, &["ctm", "apply", "/root/host.kdl", "--yes"]));
            noop_plans.push(timed(
                &lab,
                &["ctm", "plan", "/root/host.kdl", "--detailed-exitcode"],
            ));
            checked_plans.push(timed(
                &lab,
                &[
                    "ctm",
                    "plan",
                    "/root/host.kdl",
                    "--check-steps",
                    "--detailed-exitcode",
                ],
            ));
        }
        let (a, a_min, a_max) = median(applies);
        let (n, n_min, n_max) = median(noop_applies);
        let (p, p_min, p_max) = median(noop_plans);
        let (r, r_min, r_max) = median(rootfs);
        let (c, c_min, c_max) = median(checked_plans);
        println!(
            "{containers:>2} containers: apply to all running and provisioned median {:.2} s ({:.2}–{:.2}); \
             one root file system from the image {:.2} s ({:.2}–{:.2}); \
             no-op apply {:.3} s ({:.3}–{:.3}); no-op plan {:.3} s ({:.3}–{:.3}); \
             no-op plan --check-steps {:.3} s ({:.3}–{:.3}); {runs} runs",
            secs(a),
            secs(a_min),
            secs(a_max),
            secs(r),
            secs(r_min),
            secs(r_max),
            secs(n),
            secs(n_min),
            secs(n_max),
            secs(p),
            secs(p_min),
            secs(p_max),
            secs(c),
            secs(c_min),
            secs(c_max),
        );
        rows.push((containers, a));
    }
    let Some(&(_, one)) = rows.first() else {
        return;
    };
    for (containers, a) in &rows[1..] {
        println!(
            "{containers} containers take {:.1}× the time of one ({}× the containers)",
            secs(*a) / secs(one),
            containers
        );
    }
}
