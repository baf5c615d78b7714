//! End to end on a real systemd host: ctm applies, plans, rolls back and
//! recovers inside a lab (`tests/lab/`, docs/lab.md), and the outcome is
//! checked with systemd's own tools (`machinectl`, `networkctl`, `nft`,
//! `ip`, `systemctl`), never with ctm's view of itself.
//!
//! Containers are made from the lab's slim guest image, bound read-only
//! at /srv/images/guest, and bind the lab's /usr: real systemd-nspawn
//! containers booting a real systemd, at 9 MB of copying each.

#[path = "lab/mod.rs"]
mod lab;
mod support;

use std::time::{Duration, Instant};

use lab::Lab;
use support::*;

const GUEST: &str = "/srv/images/guest";

/// Two dual-stack networks, three containers: `web` with static addresses
/// and a port forward, `app` and `db` with addresses ctm assigns.
const HOST: &str = r#"
host "lab" {
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

network "back" {
    bridge "br-back"
    ipv4 "10.43.0.1/24"
    ipv6 "fd42:43::1/64"
}

template "base" {
    image "guest"
    bind "/usr" read-only=#true          // the guest image has no /usr of its own
}

container "web" {
    from "base"
    network "lan" ipv4="10.42.0.10" ipv6="fd42:42::10"
    forward "tcp" host=8080 container=80
}

container "app" {
    from "base"
    network "lan"
}

container "db" {
    from "base"
    network "back"
}
"#;

fn lab_unavailable() -> bool {
    let available = Lab::available();
    skip_unless(available.is_ok(), &available.err().unwrap_or_default())
}

/// A lab with ctm and the guest image, and `host` at /root/host.kdl.
fn lab_with(name: &str, host: &str) -> Lab {
    let lab = Lab::boot_with(
        name,
        lab::Options {
            ctm: Some(env!("CARGO_BIN_EXE_ctm").into()),
            guest_at: Some(GUEST.into()),
            ..lab::Options::default()
        },
    );
    lab.write("/root/host.kdl", host);
    lab
}

fn ctm(lab: &Lab, args: &[&str]) -> std::process::Output {
    let mut cmd = vec!["ctm"];
    cmd.extend_from_slice(args);
    lab.run_timeout(&cmd, Duration::from_secs(600))
}

fn ctm_ok(lab: &Lab, args: &[&str]) -> String {
    let out = ctm(lab, args);
    assert!(
        out.status.success(),
        "ctm {} failed in lab {}:\n{}",
        args.join(" "),
        lab.name(),
        lab::show_output(&out)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Retries `probe` for up to `timeout`; the last failure is the message.
fn eventually(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => {
                panic!("not within {} s: {what}: {e}", timeout.as_secs())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn ping(lab: &Lab, address: &str) -> Result<(), String> {
    let out = lab.run(&["ping", "-c", "1", "-W", "2", address]);
    if out.status.success() {
        Ok(())
    } else {
        Err(lab::show_output(&out))
    }
}

#[test]
fn apply_brings_up_two_networks_and_three_containers() {
    if lab_unavailable() {
        return;
    }
    let lab = lab_with("apply-two-networks", HOST);
    let applied = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(
        applied.contains("Applied: the host is on generation 1."),
        "{applied}"
    );

    let machines = lab.ok(&["machinectl", "list", "--no-legend", "--no-pager"]);
    for name in ["web", "app", "db"] {
        assert!(
            machines
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} is not running:\n{machines}"
        );
    }

    for (bridge, v4, v6) in [
        ("br-lan", "10.42.0.1/24", "fd42:42::1/64"),
        ("br-back", "10.43.0.1/24", "fd42:43::1/64"),
    ] {
        let status = lab.ok(&["networkctl", "status", bridge, "--no-pager"]);
        assert!(status.contains("configured"), "{bridge}:\n{status}");
        let addresses = lab.ok(&["ip", "-br", "address", "show", "dev", bridge]);
        assert!(
            addresses.contains(v4) && addresses.contains(v6),
            "{bridge}: {addresses}"
        );
    }

    let table = lab.ok(&["nft", "list", "table", "inet", "ctm"]);
    assert!(table.contains("masquerade"), "{table}");
    assert!(table.contains("dnat ip to 10.42.0.10:80"), "{table}");
    assert!(table.contains("dnat ip6 to [fd42:42::10]:80"), "{table}");

    // Every container answers over both families, at the addresses in the
    // host file or the ones ctm recorded in the lock file.
    let lock = lab.read("/root/host.kdl.lock");
    let mut addresses = vec!["10.42.0.10".to_string(), "fd42:42::10".to_string()];
    for line in lock.lines() {
        if let Some(value) = line.split('=').nth(1) {
            let value = value.trim().trim_matches('"');
            if value.parse::<std::net::IpAddr>().is_ok() {
                addresses.push(value.to_string());
            }
        }
    }
    assert_eq!(addresses.len(), 6, "lock file:\n{lock}");
    for address in &addresses {
        eventually(&format!("ping {address}"), Duration::from_secs(20), || {
            ping(&lab, address)
        });
    }

    // A TCP service in `web`, reached through the forwarded port: from a
    // client network namespace of the lab (prerouting DNAT), and from the
    // lab itself (output DNAT).
    let served = lab.run_in(
        "web",
        &[
            "sh",
            "-c",
            "nohup sh -c 'while true; do echo hello-from-web | nc -N -l 80; done' >/dev/null 2>&1 &",
        ],
    );
    assert!(served.status.success(), "{}", lab::show_output(&served));
    lab.sh_ok(
        "ip netns add client
         ip link add veth-client type veth peer name veth-lab
         ip link set veth-client netns client
         ip address add 192.168.77.1/24 dev veth-lab
         ip link set veth-lab up
         ip netns exec client ip address add 192.168.77.2/24 dev veth-client
         ip netns exec client ip link set veth-client up
         ip netns exec client ip link set lo up
         ip netns exec client ip route add default via 192.168.77.1",
    );
    eventually("the forward from a client", Duration::from_secs(20), || {
        let out = lab.run(&[
            "ip",
            "netns",
            "exec",
            "client",
            "nc",
            "-N",
            "-w",
            "3",
            "192.168.77.1",
            "8080",
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("hello-from-web") {
            Ok(())
        } else {
            Err(lab::show_output(&out))
        }
    });
    eventually(
        "the forward from the lab itself",
        Duration::from_secs(20),
        || {
            let out = lab.run(&["nc", "-N", "-w", "3", "10.42.0.1", "8080"]);
            let text = String::from_utf8_lossy(&out.stdout);
            if text.contains("hello-from-web") {
                Ok(())
            } else {
                Err(lab::show_output(&out))
            }
        },
    );

    // Scenario 2: planning again finds nothing to do.
    let out = ctm(&lab, &["plan", "/root/host.kdl", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a second plan is not empty:\n{}",
        lab::show_output(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("No changes."));
}
