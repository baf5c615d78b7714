//! examples/bgp-lab.kdl end to end, in a lab (`tests/lab/`): three
//! containers on a triangle of links install Debian's `frr` with their
//! `packages` step, start it with their own configuration, and peer with
//! eBGP; every session comes up Established (FRR's own `vtysh`), and the
//! prefix each announces is in the others' kernel routing tables (`ip
//! route`), carrying traffic between the loopbacks (`ping`).
//!
//! A lab has no route to a mirror, so the package comes from a local
//! repository: `frr` and those of its dependencies the lab rootfs lacks,
//! fetched once with this machine's own apt (the mirror the rootfs is
//! built from) into the lab cache, and bound into the lab and the
//! routers, whose apt knows only it. The routers' image is the whole lab
//! rootfs: the slim guest image shares the lab's `/usr` read-only, where
//! dpkg could not unpack a package.

#[path = "lab/mod.rs"]
mod lab;
mod support;

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lab::scenario::*;
use lab::{Lab, Options};
use sha2::{Digest, Sha256};
use support::*;

/// Where the local repository is bound, in the lab and in the routers.
const REPO: &str = "/srv/repo";

/// Where the whole lab rootfs is bound in the lab, as the routers' image.
const IMAGE: &str = "/srv/images/bookworm";

const ROUTERS: [&str; 3] = ["r1", "r2", "r3"];

fn lab_unavailable() -> bool {
    let available = Lab::available();
    skip_unless(available.is_ok(), &available.err().unwrap_or_default())
        || skip_unless(
            Path::new("/usr/bin/apt-get").exists(),
            "the BGP lab test fetches frr with this machine's apt, and there is no /usr/bin/apt-get",
        )
}

fn progress(msg: &str) {
    // Straight to the real standard error, past the test harness's capture,
    // as the lab's own messages: a first run downloads for a while.
    let _ = writeln!(std::io::stderr(), "bgp-lab: {msg}");
}

/// Runs a command on this machine; its standard output, or why it failed.
fn run_here(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{cmd:?} failed:\n{}", lab::show_output(&out)))
    }
}

/// The packages apt would install for `frr` on top of the lab rootfs, as
/// `name=version`: its simulation, with the rootfs's dpkg status in place
/// of this machine's.
fn missing_from_rootfs(rootfs: &Path) -> Result<Vec<String>, String> {
    let status = rootfs.join("var/lib/dpkg/status");
    let said = run_here(
        Command::new("apt-get")
            .args(["--simulate", "--no-install-recommends", "-o"])
            .arg(format!("Dir::State::status={}", status.display()))
            .args(["install", "frr"]),
    )?;
    // `Inst NAME [OLD] (VERSION ARCHIVES [ARCH])`
    let wanted: Vec<String> = said
        .lines()
        .filter_map(|line| line.strip_prefix("Inst "))
        .filter_map(|rest| {
            let name = rest.split_whitespace().next()?;
            let version = rest.split_once('(')?.1.split_whitespace().next()?;
            Some(format!("{name}={version}"))
        })
        .collect();
    if !wanted.iter().any(|w| w.starts_with("frr=")) {
        return Err(format!(
            "apt would not install frr on the lab rootfs (is this machine's package list current? `apt-get update`):\n{said}"
        ));
    }
    Ok(wanted)
}

/// A flat repository of `frr` and what it needs beyond the lab rootfs,
/// made once per rootfs in the lab cache: the .debs `apt-get download`
/// fetches, a `Packages` index and a `Release`, and the `sources.list`
/// that names it, for the routers.
fn frr_repository(rootfs: &Path) -> Result<PathBuf, String> {
    let cache = lab::cache_dir();
    let key = rootfs
        .file_name()
        .ok_or_else(|| format!("{} has no name", rootfs.display()))?
        .to_string_lossy()
        .into_owned();
    let done = cache.join(format!("frr-repo-{key}"));
    if done.join("Release").is_file() {
        return Ok(done);
    }
    let _lock = lab::lock_cache(&cache.join("frr-repo.lock"), "the FRR repository")?;
    if done.join("Release").is_file() {
        return Ok(done);
    }
    let build = cache.join(format!("build-frr-repo-{}", std::process::id()));
    let _ = fs::remove_dir_all(&build);
    fs::create_dir_all(&build).map_err(|e| format!("{}: {e}", build.display()))?;
    let wanted = missing_from_rootfs(rootfs)?;
    progress(&format!(
        "fetching {} packages into {}: {}",
        wanted.len(),
        done.display(),
        wanted.join(" ")
    ));
    run_here(
        Command::new("apt-get")
            .current_dir(&build)
            // The download goes to a directory of root's: apt's own user
            // could not write there.
            .args(["-o", "APT::Sandbox::User=root", "download"])
            .args(&wanted),
    )?;
    let mut debs: Vec<PathBuf> = fs::read_dir(&build)
        .map_err(|e| format!("{}: {e}", build.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    if debs.len() != wanted.len() {
        return Err(format!(
            "apt-get download gave {} files for {} packages in {}",
            debs.len(),
            wanted.len(),
            build.display()
        ));
    }
    let mut index = String::new();
    for deb in &debs {
        let fields = run_here(Command::new("dpkg-deb").arg("--field").arg(deb))?;
        let bytes = fs::read(deb).map_err(|e| format!("{}: {e}", deb.display()))?;
        let name = deb.file_name().unwrap_or_default().to_string_lossy();
        let _ = write!(
            index,
            "{}\nFilename: ./{name}\nSize: {}\nSHA256: {:x}\n\n",
            fields.trim_end(),
            bytes.len(),
            Sha256::digest(&bytes)
        );
    }
    let release = format!(
        "Origin: ctm-tests\nSHA256:\n {:x} {} Packages\n",
        Sha256::digest(index.as_bytes()),
        index.len()
    );
    for (name, text) in [
        ("Packages", index.as_str()),
        ("Release", release.as_str()),
        ("sources.list", "deb [trusted=yes] file:/srv/repo ./\n"),
    ] {
        let path = build.join(name);
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    fs::rename(&build, &done).map_err(|e| format!("rename into {}: {e}", done.display()))?;
    Ok(done)
}

/// The routers' image: the lab rootfs, as a tree of hard links to its
/// files made once in the lab cache. Not the rootfs itself (the lab's
/// `image_at`): a lab's nspawn mounts its overlay on the rootfs's path, so
/// a bind of that path is the lab's own root, and copying it into the
/// lab's /var/lib/machines would copy a tree into itself. Both are only
/// ever read: the overlay's lower layer, and a read-only bind.
fn router_image(rootfs: &Path) -> Result<PathBuf, String> {
    let key = rootfs
        .file_name()
        .ok_or_else(|| format!("{} has no name", rootfs.display()))?
        .to_string_lossy()
        .into_owned();
    let cache = lab::cache_dir();
    let done = cache.join(format!("frr-image-{key}"));
    if done.is_dir() {
        return Ok(done);
    }
    let _lock = lab::lock_cache(&cache.join("frr-repo.lock"), "the router image")?;
    if done.is_dir() {
        return Ok(done);
    }
    let build = cache.join(format!("build-frr-image-{}", std::process::id()));
    let _ = fs::remove_dir_all(&build);
    run_here(Command::new("cp").arg("-al").arg(rootfs).arg(&build))?;
    fs::rename(&build, &done).map_err(|e| format!("rename into {}: {e}", done.display()))?;
    Ok(done)
}

/// examples/bgp-lab.kdl as the lab runs it: its uplink is the lab's, its
/// image the lab rootfs, and its routers' apt sees only the local
/// repository. Each change must apply, so that the example cannot drift
/// away from what this test runs.
fn lab_host_file() -> String {
    let example = fs::read_to_string(repo().join("examples/bgp-lab.kdl")).unwrap();
    let mut text = example.clone();
    for (from, to) in [
        (r#"uplink "eth0""#, r#"uplink "host0""#.to_string()),
        (
            r#"debootstrap suite="bookworm""#,
            format!(r#"directory "{IMAGE}""#),
        ),
        (
            "    packages \"frr\"\n",
            format!(
                "    packages \"frr\"\n    bind \"{REPO}\" read-only=#true\n    bind \"{REPO}/sources.list\" \"/etc/apt/sources.list\" read-only=#true\n"
            ),
        ),
    ] {
        assert!(
            text.contains(from),
            "examples/bgp-lab.kdl no longer has {from:?}"
        );
        text = text.replacen(from, &to, 1);
    }
    text
}

/// Copies examples/bgp-lab/ (the routers' FRR files) to /srv/bgp-lab in
/// the lab, where the example's binds take them from.
fn copy_router_files(lab: &Lab) {
    let source = repo().join("examples/bgp-lab");
    for sub in ["frr.service.d", "r1", "r2", "r3"] {
        let dir = source.join(sub);
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let text = fs::read(entry.path()).unwrap();
            lab.write(
                Path::new("/srv/bgp-lab").join(sub).join(entry.file_name()),
                text,
            );
        }
    }
}

/// `vtysh -c COMMAND` inside `router`; its output, or why it failed.
fn vtysh(lab: &Lab, router: &str, command: &str) -> Result<String, String> {
    let out = lab.run_in(router, &["vtysh", "-c", command]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(lab::show_output(&out))
    }
}

/// Ok when `router` has `peers` BGP sessions, every one Established.
fn established(lab: &Lab, router: &str, peers: usize) -> Result<(), String> {
    let text = vtysh(lab, router, "show bgp summary json")?;
    let summary: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    let sessions = summary["ipv4Unicast"]["peers"]
        .as_object()
        .ok_or_else(|| format!("no IPv4 peers: {text}"))?;
    let up = sessions
        .values()
        .filter(|p| p["state"] == "Established")
        .count();
    if sessions.len() == peers && up == peers {
        Ok(())
    } else {
        Err(format!(
            "{up} of {} sessions Established, {peers} expected",
            sessions.len()
        ))
    }
}

/// What a failed wait shows of each router: its BGP summary as people
/// read it, and the state of its FRR service.
fn routers_report(lab: &Lab) -> String {
    let mut report = String::new();
    for router in ROUTERS {
        let summary = vtysh(lab, router, "show bgp summary").unwrap_or_else(|e| e);
        let service = lab.run_in(
            router,
            &["systemctl", "status", "--no-pager", "--lines=15", "frr"],
        );
        let _ = write!(
            report,
            "\n--- {router}: vtysh -c 'show bgp summary'\n{summary}\n--- {router}: systemctl status frr\n{}",
            lab::show_output(&service)
        );
    }
    report
}

/// Waits up to `timeout` for `probe` to hold; on timeout, panics with its
/// last failure and the routers' report.
fn wait_for(
    lab: &Lab,
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<(), String>,
) {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => panic!(
                "not within {} s: {what}: {e}{}",
                timeout.as_secs(),
                routers_report(lab)
            ),
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// `ip route show PREFIX` in `router`, which must be a BGP route through
/// `via`.
fn bgp_route(lab: &Lab, router: &str, prefix: &str, via: &str) -> Result<(), String> {
    let out = lab.run_in(router, &["ip", "route", "show", prefix]);
    let route = String::from_utf8_lossy(&out.stdout).into_owned();
    if route.contains(&format!("via {via} ")) && route.contains("proto bgp") {
        Ok(())
    } else {
        Err(format!("{router}'s route to {prefix}: {route:?}"))
    }
}

#[test]
fn three_frr_routers_peer_with_ebgp_and_learn_each_others_prefixes() {
    if lab_unavailable() {
        return;
    }
    let started = Instant::now();
    let rootfs = Lab::rootfs();
    let repository = frr_repository(&rootfs).unwrap_or_else(|e| panic!("the frr repository: {e}"));
    let image = router_image(&rootfs).unwrap_or_else(|e| panic!("the routers' image: {e}"));
    let lab = Lab::boot_with(
        "bgp",
        Options {
            ctm: Some(env!("CARGO_BIN_EXE_ctm").into()),
            nspawn_args: vec![
                format!("--bind-ro={}:{REPO}", repository.display()),
                format!("--bind-ro={}:{IMAGE}", image.display()),
            ],
            ..Options::default()
        },
    );
    copy_router_files(&lab);
    lab.write("/root/host.kdl", lab_host_file());
    let out = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(out.contains("install the container's packages"), "{out}");
    for router in ROUTERS {
        let status = lab.run_in(
            router,
            &[
                "dpkg-query",
                "--show",
                "--showformat=${db:Status-Status}",
                "frr",
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&status.stdout),
            "installed",
            "frr in {router}: {}",
            lab::show_output(&status)
        );
    }
    progress(&format!(
        "routers applied {:.0} s into the test",
        started.elapsed().as_secs_f64()
    ));

    // Every router peers with both others.
    wait_for(
        &lab,
        "every BGP session Established",
        Duration::from_secs(120),
        || {
            ROUTERS
                .iter()
                .try_for_each(|r| established(&lab, r, 2).map_err(|e| format!("{r}: {e}")))
        },
    );
    progress(&format!(
        "all sessions Established {:.0} s into the test",
        started.elapsed().as_secs_f64()
    ));

    // r1's loopback, which it announces, is in the others' kernels by the
    // direct link; and theirs in r1's, so that traffic between loopbacks
    // goes both ways.
    wait_for(
        &lab,
        "r1's prefix in r2's and r3's routing tables",
        Duration::from_secs(60),
        || {
            bgp_route(&lab, "r2", "10.255.0.1", "10.0.12.1")?;
            bgp_route(&lab, "r3", "10.255.0.1", "10.0.13.1")?;
            bgp_route(&lab, "r1", "10.255.0.2", "10.0.12.2")?;
            bgp_route(&lab, "r1", "10.255.0.3", "10.0.13.2")
        },
    );
    for (router, own) in [("r2", "10.255.0.2"), ("r3", "10.255.0.3")] {
        let out = lab.run_in(
            router,
            &["ping", "-c", "1", "-W", "2", "-I", own, "10.255.0.1"],
        );
        assert!(
            out.status.success(),
            "{router} ({own}) pings r1's loopback: {}",
            lab::show_output(&out)
        );
    }
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap_or_else(|out| panic!("{out}"));
    progress(&format!("done in {:.0} s", started.elapsed().as_secs_f64()));
}
