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

use std::time::Duration;

use lab::Lab;
use lab::scenario::*;
use support::*;

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

    // From the lab's own loopback, over both families: through the
    // forward's socket unit and systemd-socket-proxyd. Without `-N`: the
    // proxy passes the client's half-close on as soon as it reaches web,
    // and web's `nc -N -l` may take that end of input before it has sent
    // its line (seen in CI: connections that answered nothing).
    let through_loopback = |address: &str| {
        eventually(
            &format!("the forward from {address} on the lab"),
            Duration::from_secs(20),
            || {
                let out = lab.run(&["nc", "-w", "3", address, "8080"]);
                let text = String::from_utf8_lossy(&out.stdout);
                if text.contains("hello-from-web") {
                    Ok(())
                } else {
                    Err(lab::show_output(&out))
                }
            },
        )
    };
    through_loopback("127.0.0.1");
    through_loopback("::1");

    // A socket that stopped listening is drift: the plan starts it again.
    lab.ok(&["systemctl", "stop", "ctm-forward-tcp-8080.socket"]);
    let plan = ctm(&lab, &["plan", "/root/host.kdl", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", lab::show_output(&plan));
    let text = flat(&plan);
    assert!(
        text.contains("loopback forwards: start ctm-forward-tcp-8080.socket")
            && text.contains("not listening (drift)"),
        "{text}"
    );
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    through_loopback("::1");

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

fn start_times(lab: &Lab) -> Vec<(String, u64)> {
    ["web", "app", "db"]
        .iter()
        .map(|n| (n.to_string(), started_at(lab, n)))
        .collect()
}

fn addresses_of(lab: &Lab, link: &str) -> String {
    lab.ok(&["ip", "-br", "address", "show", "dev", link])
}

#[test]
fn a_change_restarts_only_what_it_must() {
    if lab_unavailable() {
        return;
    }
    let lab = lab_with("restart-only-what-changed", HOST);
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    let before = start_times(&lab);

    // One container's limits: only that container restarts.
    lab.write(
        "/root/host.kdl",
        HOST.replace(
            "container \"app\" {\n    from \"base\"\n",
            "container \"app\" {\n    from \"base\"\n    limits memory=\"512M\"\n",
        ),
    );
    let out = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(out.contains("restart container app"), "{out}");
    let after = start_times(&lab);
    for ((name, t0), (_, t1)) in before.iter().zip(&after) {
        assert_eq!(
            t0 != t1,
            name == "app",
            "{name}: started at {t0}, then at {t1}\n{out}"
        );
    }
    let memory = lab.ok(&[
        "systemctl",
        "show",
        "systemd-nspawn@app.service",
        "--property=MemoryMax",
        "--value",
    ]);
    assert_eq!(memory.trim(), "536870912");

    // A network's address: networkd reloads; only the container whose
    // own files (its host0 address and gateway) changed restarts.
    let host = HOST
        .replace(
            "container \"app\" {\n    from \"base\"\n",
            "container \"app\" {\n    from \"base\"\n    limits memory=\"512M\"\n",
        )
        .replace("ipv6 \"fd42:43::1/64\"", "ipv6 \"fd42:44::1/64\"");
    lab.write("/root/host.kdl", &host);
    let out = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(out.contains("reload systemd-networkd"), "{out}");
    let last = start_times(&lab);
    for ((name, t0), (_, t1)) in after.iter().zip(&last) {
        assert_eq!(
            t0 != t1,
            name == "db",
            "{name}: started at {t0}, then at {t1}\n{out}"
        );
    }
    let back = addresses_of(&lab, "br-back");
    assert!(back.contains("fd42:44::1/64"), "{back}");
    assert!(
        !back.contains("fd42:43::1/64"),
        "the old address stayed: {back}"
    );
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap();
}

#[test]
fn a_container_that_cannot_start_rolls_the_apply_back() {
    if lab_unavailable() {
        return;
    }
    let lab = lab_with("cannot-start", HOST);
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    lab.write("/root/v1.kdl", HOST);
    let before = start_times(&lab);

    // An image directory that does not exist: its root file system cannot
    // be made.
    lab.write(
        "/root/host.kdl",
        format!(
            "{HOST}\nimage \"gone\" {{\n    directory \"/srv/images/gone\"\n}}\n\
             container \"extra\" {{\n    image \"gone\"\n    network \"lan\"\n}}\n"
        ),
    );
    let out = ctm(&lab, &["apply", "/root/host.kdl", "--yes"]);
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("/srv/images/gone"), "{text}");
    assert!(
        text.contains("rolled back: the host is on generation 1 again"),
        "{text}"
    );
    plan_is_empty(&lab, "/root/v1.kdl", &[]).unwrap();
    assert_eq!(
        start_times(&lab),
        before,
        "a running container was disturbed"
    );

    // A tree that is there but does not boot (no init, no /usr): the start
    // job fails, and the apply with it.
    lab.sh_ok("mkdir -p /srv/images/broken/etc && cp /usr/lib/os-release /srv/images/broken/etc/");
    lab.write(
        "/root/host.kdl",
        format!(
            "{HOST}\nimage \"broken\" {{\n    directory \"/srv/images/broken\"\n}}\n\
             container \"extra\" {{\n    image \"broken\"\n    network \"lan\"\n}}\n"
        ),
    );
    let out = ctm(&lab, &["apply", "/root/host.kdl", "--yes"]);
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("systemd-nspawn@extra.service"), "{text}");
    assert!(
        text.contains("rolled back: the host is on generation 1 again"),
        "{text}"
    );
    plan_is_empty(&lab, "/root/v1.kdl", &[]).unwrap();
    assert_eq!(
        start_times(&lab),
        before,
        "a running container was disturbed"
    );
    let machines = lab.ok(&["machinectl", "list", "--no-legend", "--no-pager"]);
    assert!(!machines.contains("extra"), "{machines}");
    let generations = ctm_ok(&lab, &["generations"]);
    assert!(!generations.contains("   2"), "{generations}");
}

/// Generation 2 of HOST: one more container, and the forward moved.
fn host_v2() -> String {
    HOST.replace("host=8080", "host=8081")
        + "\ncontainer \"extra\" {\n    from \"base\"\n    network \"lan\"\n}\n"
}

#[test]
fn rollback_returns_the_live_host_to_generation_1() {
    if lab_unavailable() {
        return;
    }
    let lab = lab_with("rollback", HOST);
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    lab.write("/root/v1.kdl", HOST);
    lab.write("/root/host.kdl", host_v2());
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    let table = lab.ok(&["nft", "list", "table", "inet", "ctm"]);
    assert!(table.contains("dport 8081"), "{table}");
    assert!(
        lab.ok(&["machinectl", "list", "--no-legend"])
            .contains("extra")
    );

    let out = ctm_ok(&lab, &["rollback", "1", "--yes"]);
    assert!(
        out.contains("ctm-apply.service"),
        "not run as a unit:\n{out}"
    );
    assert!(
        out.contains("Rolled back: the host is on generation 1."),
        "{out}"
    );
    let table = lab.ok(&["nft", "list", "table", "inet", "ctm"]);
    assert!(
        table.contains("dport 8080") && !table.contains("dport 8081"),
        "{table}"
    );
    let machines = lab.ok(&["machinectl", "list", "--no-legend", "--no-pager"]);
    assert!(!machines.contains("extra"), "{machines}");
    plan_is_empty(&lab, "/root/v1.kdl", &[]).unwrap();
    let status = ctm_ok(&lab, &["status"]);
    assert!(status.contains("Generation 1 "), "{status}");
}

#[test]
fn a_switch_killed_midway_is_rolled_back_by_the_next_command() {
    if lab_unavailable() {
        return;
    }
    let lab = lab_with("killed-midway", HOST);
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    lab.write("/root/v1.kdl", HOST);
    lab.write("/root/host.kdl", host_v2());
    // The switch in the unit stops at its fourth step; SIGKILL it there,
    // as a power cut or an OOM kill would.
    lab.sh_ok(
        "CTM_FAULT_PAUSE_AT=4 nohup ctm apply /root/host.kdl --yes >/root/apply.out 2>&1 & echo $! >/root/apply.pid",
    );
    eventually("the switch to pause", Duration::from_secs(60), || {
        let log = lab.read("/run/ctm/switch.log");
        if log.contains("paused at fault point 4") {
            Ok(())
        } else {
            Err(log)
        }
    });
    lab.ok(&["systemctl", "kill", "--signal=KILL", "ctm-apply.service"]);
    eventually(
        "ctm apply to report the failure",
        Duration::from_secs(30),
        || {
            let pid = lab.read("/root/apply.pid");
            if lab.run(&["kill", "-0", pid.trim()]).status.success() {
                Err(lab.read("/root/apply.out"))
            } else {
                Ok(())
            }
        },
    );
    let out = lab.read("/root/apply.out");
    assert!(
        out.contains("Running the switch as ctm-apply.service"),
        "{out}"
    );
    let status = ctm_ok(&lab, &["status"]);
    assert!(
        status.contains("rolled back an interrupted switch; the host is on generation 1"),
        "{status}"
    );
    plan_is_empty(&lab, "/root/v1.kdl", &[]).unwrap();
    let machines = lab.ok(&["machinectl", "list", "--no-legend", "--no-pager"]);
    assert!(!machines.contains("extra"), "{machines}");
}

#[test]
fn a_dropped_session_does_not_stop_the_switch() {
    if lab_unavailable() {
        return;
    }
    let lab = lab_with("dropped-session", HOST);
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    lab.write("/root/host.kdl", host_v2());
    // Every step of the switch slowed down, so that the client is killed
    // while the unit is mid-way.
    lab.sh_ok(
        "CTM_FAULT_SLOW_MS=300 nohup ctm apply /root/host.kdl --yes >/root/apply.out 2>&1 & echo $! >/root/apply.pid",
    );
    eventually("the switch to start", Duration::from_secs(60), || {
        let log = lab.read("/run/ctm/switch.log");
        if log.contains("Applying generation 2") {
            Ok(())
        } else {
            Err(log)
        }
    });
    lab.sh_ok("kill -KILL $(cat /root/apply.pid)");
    eventually("the unit to finish", Duration::from_secs(120), || {
        let out = lab.run(&["systemctl", "is-active", "ctm-apply.service"]);
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if state == "active" || state == "activating" {
            Err(state)
        } else {
            Ok(())
        }
    });
    let log = lab.read("/run/ctm/switch.log");
    assert!(
        log.contains("Applied: the host is on generation 2."),
        "{log}"
    );
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap();
    assert!(
        lab.ok(&["machinectl", "list", "--no-legend"])
            .contains("extra")
    );
}

#[test]
fn an_unconfirmed_apply_reverts_by_itself() {
    if lab_unavailable() {
        return;
    }
    let lab = lab_with("confirm-timeout", HOST);
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    lab.write("/root/v1.kdl", HOST);

    // Nobody confirms: the revert timer brings generation 1 back.
    lab.write("/root/host.kdl", host_v2());
    let out = ctm(
        &lab,
        &["apply", "/root/host.kdl", "--yes", "--confirm-timeout", "4"],
    );
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("Generation 2 was rolled back"), "{text}");
    plan_is_empty(&lab, "/root/v1.kdl", &[]).unwrap();
    let reverts = lab.ok(&[
        "journalctl",
        "--no-pager",
        "-o",
        "cat",
        "-u",
        "ctm-revert.service",
    ]);
    assert!(reverts.contains("not confirmed in time"), "{reverts}");

    // Again, and the apply's own process is killed as soon as it has
    // switched: the timer, which belongs to systemd, still reverts.
    lab.sh_ok(
        "nohup ctm apply /root/host.kdl --yes --confirm-timeout 6 >/root/apply.out 2>&1 & echo $! >/root/apply.pid",
    );
    eventually(
        "the apply to wait for confirmation",
        Duration::from_secs(60),
        || {
            let out = lab.read("/root/apply.out");
            if out.contains("Confirm within") {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    lab.sh_ok("kill -KILL $(cat /root/apply.pid)");
    let table = lab.ok(&["nft", "list", "table", "inet", "ctm"]);
    assert!(
        table.contains("dport 8081"),
        "generation 2 is not in place: {table}"
    );
    eventually("the revert", Duration::from_secs(30), || {
        plan_is_empty(&lab, "/root/v1.kdl", &[])
    });
    let table = lab.ok(&["nft", "list", "table", "inet", "ctm"]);
    assert!(table.contains("dport 8080"), "{table}");

    // Confirmed in time: it stays, and the timer is gone.
    lab.sh_ok("nohup ctm apply /root/host.kdl --yes --confirm-timeout 30 >/root/apply.out 2>&1 &");
    eventually(
        "the apply to wait for confirmation",
        Duration::from_secs(60),
        || {
            let out = lab.read("/root/apply.out");
            if out.contains("Confirm within") {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    let out = ctm_ok(&lab, &["confirm"]);
    assert!(
        out.contains("Confirmed: the host stays on generation"),
        "{out}"
    );
    let timer = lab.run(&["systemctl", "is-active", "ctm-revert.timer"]);
    assert!(!timer.status.success(), "{}", lab::show_output(&timer));
    eventually(
        "the apply to report the confirmation",
        Duration::from_secs(10),
        || {
            let out = lab.read("/root/apply.out");
            if out.contains("Confirmed: the host stays on generation") {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap();
}

#[test]
fn status_start_stop_restart_logs_and_info() {
    if lab_unavailable() {
        return;
    }
    let lab = lab_with("everyday", HOST);
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);

    let status = ctm_ok(&lab, &["status"]);
    assert!(status.contains("Generation 1 "), "{status}");
    let web = status
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_default();
    assert!(
        web.contains("running") && web.contains("10.42.0.10, fd42:42::10") && web.ends_with("-"),
        "{status}"
    );
    assert!(
        status.contains("Firewall: table inet ctm as applied."),
        "{status}"
    );

    let out = ctm_ok(&lab, &["stop", "app"]);
    assert!(out.contains("Stopped container app."), "{out}");
    let machines = lab.ok(&["machinectl", "list", "--no-legend", "--no-pager"]);
    assert!(!machines.contains("app"), "{machines}");
    let out = ctm(&lab, &["status", "--json"]);
    assert!(out.status.success(), "{}", lab::show_output(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", lab::show_output(&out)));
    let app = json["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "app")
        .unwrap();
    // The status document (docs/status.md): machined's state, and what
    // an apply would do about it.
    assert_eq!(app["state"], "stopped", "{json:#}");
    assert_eq!(
        app["drift_actions"][0], "stopped, but should be running (drift)",
        "{json:#}"
    );

    let out = ctm_ok(&lab, &["start", "app"]);
    assert!(out.contains("Started container app."), "{out}");
    eventually("app to answer", Duration::from_secs(20), || {
        let lock = lab.read("/root/host.kdl.lock");
        let app = lock.split("[containers.app]").nth(1).unwrap_or_default();
        let v4 = app
            .lines()
            .find_map(|l| l.strip_prefix("ipv4 = "))
            .unwrap_or_default()
            .trim_matches('"')
            .to_string();
        ping(&lab, &v4)
    });

    let before = started_at(&lab, "web");
    ctm_ok(&lab, &["restart", "web"]);
    assert_ne!(started_at(&lab, "web"), before);

    let out = ctm(&lab, &["start", "nope"]);
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("there is no container nope in generation 1"),
        "{text}"
    );
    assert!(text.contains("its containers: app, db, web"), "{text}");

    let logs = ctm_ok(&lab, &["logs", "web", "-n", "200"]);
    assert!(logs.contains("systemd-networkd"), "{logs}");
    let unit_log = ctm_ok(&lab, &["logs", "web", "--unit", "-n", "200"]);
    assert!(unit_log.contains("Container web"), "{unit_log}");

    let info = ctm_ok(&lab, &["info"]);
    assert!(info.contains("ok   systemd"), "{info}");
    assert!(info.contains("This host can be managed by ctm"), "{info}");
}

#[test]
fn drift_in_the_firewall_and_the_links_is_seen_and_undone() {
    if lab_unavailable() {
        return;
    }
    let lab = lab_with("live-drift", HOST);
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);

    lab.ok(&["nft", "delete", "table", "inet", "ctm"]);
    let out = ctm(&lab, &["plan", "/root/host.kdl", "--detailed-exitcode"]);
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("table inet ctm is missing (drift)"), "{text}");
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(
        lab.ok(&["nft", "list", "table", "inet", "ctm"])
            .contains("masquerade")
    );

    // An edit by hand that keeps the number of rules: only the recorded
    // listing shows it.
    lab.sh_ok("nft flush chain inet ctm postrouting && nft add rule inet ctm postrouting ip saddr 10.99.0.0/24 masquerade");
    let out = ctm(&lab, &["plan", "/root/host.kdl", "--detailed-exitcode"]);
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("edited since ctm loaded it (drift)"),
        "{text}"
    );
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    let table = lab.ok(&["nft", "list", "table", "inet", "ctm"]);
    assert!(
        !table.contains("10.99.0.0") && table.contains("10.42.0.0/24"),
        "{table}"
    );

    lab.ok(&["ip", "address", "del", "10.42.0.1/24", "dev", "br-lan"]);
    let out = ctm(&lab, &["plan", "/root/host.kdl", "--detailed-exitcode"]);
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("link br-lan lacks 10.42.0.1/24 (drift)"),
        "{text}"
    );
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(addresses_of(&lab, "br-lan").contains("10.42.0.1/24"));
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap();
}

#[test]
fn health_checks_pass_or_roll_the_apply_back() {
    if lab_unavailable() {
        return;
    }
    let checked = HOST.replace(
        "container \"db\" {\n    from \"base\"\n",
        "container \"db\" {\n    from \"base\"\n    check command=\"systemctl is-active --quiet systemd-networkd\"\n",
    );
    let lab = lab_with("health-checks", &checked);
    let out = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(
        out.contains("db: command `systemctl is-active --quiet systemd-networkd` passed"),
        "{out}"
    );

    // Nothing listens on port 81 in web: the check fails, the apply is
    // rolled back, and generation 1 stays.
    lab.write("/root/v1.kdl", &checked);
    lab.write(
        "/root/host.kdl",
        checked.replace(
            "forward \"tcp\" host=8080 container=80\n",
            "forward \"tcp\" host=8080 container=80\n    check tcp=81 timeout=\"3s\"\n",
        ),
    );
    let out = ctm(&lab, &["apply", "/root/host.kdl", "--yes"]);
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("check tcp port 81 of container web"),
        "{text}"
    );
    assert!(text.contains("10.42.0.10:81"), "{text}");
    assert!(
        text.contains("rolled back: the host is on generation 1 again"),
        "{text}"
    );
    plan_is_empty(&lab, "/root/v1.kdl", &[]).unwrap();
}

/// A GRE tunnel: many kernels (this project's test machine's among them)
/// have no GRE at all.
const GRE_HOST: &str = r#"
host "lab" {
    uplink "host0"
}

tunnel "site-b" {
    gre local="192.0.2.1" remote="198.51.100.7"
    address "172.16.0.0/31"
}
"#;

/// Whether the lab's kernel (the test machine's) can make a link of
/// `kind`, asked as ctm does not: with `ip`, in a namespace of its own.
fn kernel_has(lab: &Lab, kind: &str) -> bool {
    lab.sh(&format!("unshare --net ip link add probe0 type {kind}"))
        .status
        .success()
}

#[test]
fn a_tunnel_the_kernel_cannot_make_is_refused_at_once_and_changes_nothing() {
    if lab_unavailable() {
        return;
    }
    let lab = lab_with("gre-refused", GRE_HOST);
    let info = ctm_ok(&lab, &["info"]);
    if kernel_has(&lab, "gre") {
        // Nothing to refuse here: the kernel's GRE is seen, and used.
        assert!(info.contains("has gre, ip6gre, vxlan"), "{info}");
        let plan = ctm_ok(&lab, &["plan", "/root/host.kdl"]);
        assert!(
            !plan.contains("Not supported by the running kernel"),
            "{plan}"
        );
        return;
    }
    assert!(info.contains("warn tunnel links"), "{info}");
    assert!(info.contains("lacks gre"), "{info}");
    assert!(
        info.contains("ok   network links    has bridge, veth"),
        "{info}"
    );

    let out = ctm(&lab, &["plan", "/root/host.kdl"]);
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("Not supported by the running kernel:"),
        "{text}"
    );
    assert!(
        text.contains("gre (site-b): the kernel has no such kind of link"),
        "{text}"
    );

    let started = std::time::Instant::now();
    let out = ctm(&lab, &["apply", "/root/host.kdl", "--yes"]);
    let took = started.elapsed();
    eprintln!("the apply was refused after {took:?}");
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "the running kernel cannot make gre links (site-b: the kernel has no such kind of link"
        ),
        "{text}"
    );
    assert!(text.contains("nothing was changed"), "{text}");
    // networkd's own wait (30 s) never starts: refused before any change.
    assert!(took < Duration::from_secs(10), "took {took:?}: {text}");

    // The host is as it was: no file, no generation, no link.
    assert!(
        !lab.sh("test -e /etc/systemd/network/50-ctm-site-b.netdev")
            .status
            .success(),
        "the tunnel's .netdev was written"
    );
    let generations = ctm_ok(&lab, &["generations"]);
    assert!(generations.contains("No generations yet"), "{generations}");
    assert!(!lab.run(&["ip", "link", "show", "site-b"]).status.success());
}

#[test]
fn a_vxlan_tunnel_comes_up_with_its_id_port_and_derived_mtu() {
    if lab_unavailable() {
        return;
    }
    let host = r#"
host "lab" {
    uplink "host0"
}

tunnel "vx42" {
    vxlan id=42 local="192.0.2.1" remote="192.0.2.2"
    address "172.16.42.0/31"
}
"#;
    let lab = lab_with("vxlan-up", host);
    // The underlay: the local endpoint's address, and a route to the remote.
    lab.ok(&["ip", "address", "add", "192.0.2.1/24", "dev", "host0"]);
    lab.ok(&["ip", "link", "set", "host0", "up"]);
    let plan = ctm_ok(&lab, &["plan", "/root/host.kdl"]);
    assert!(!plan.contains("Not supported"), "{plan}");
    assert!(!plan.contains("not checked"), "{plan}");
    let applied = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(
        applied.contains("Applied: the host is on generation 1."),
        "{applied}"
    );
    let link = lab.ok(&["ip", "-d", "link", "show", "vx42"]);
    for expected in [
        "vxlan id 42",
        "remote 192.0.2.2",
        "local 192.0.2.1",
        "dstport 4789",
        "mtu 1450",
    ] {
        assert!(link.contains(expected), "no `{expected}` in:\n{link}");
    }
    assert!(addresses_of(&lab, "vx42").contains("172.16.42.0/31"));
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap();

    // `ctm tunnel status`: the link as the kernel has it, and the route.
    let status = ctm_ok(&lab, &["tunnel", "status", "vx42"]);
    for expected in [
        "vx42 (vxlan id 42 port 4789): 192.0.2.1 -> 192.0.2.2",
        "mtu 1450 (expected 1450)",
        "addresses 172.16.42.0/31",
        "underlay  to 192.0.2.2 via host0",
    ] {
        assert!(status.contains(expected), "no `{expected}` in:\n{status}");
    }
    assert!(!status.contains("problem"), "{status}");
    let json: serde_json::Value =
        serde_json::from_str(&ctm_ok(&lab, &["tunnel", "status", "--json"])).unwrap();
    assert_eq!(json["tunnels"][0]["live"]["mtu"], 1450, "{json}");
    assert_eq!(json["tunnels"][0]["id"], 42, "{json}");

    // Broken by hand: the status names it, and exits 1.
    lab.ok(&["ip", "link", "set", "vx42", "down"]);
    let out = ctm(&lab, &["tunnel", "status"]);
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("problem: link vx42 is down"), "{text}");
}

#[test]
fn a_container_is_called_by_its_name_whatever_its_image_says() {
    if lab_unavailable() {
        return;
    }
    // An image built elsewhere carries its builder's /etc/hostname, as
    // debootstrap's do (it copies the building host's).
    let host = r#"
host "lab" {
    uplink "host0"
}

image "built-on-vm" {
    directory "/srv/images/built-on-vm"
}

container "web" {
    image "built-on-vm"
    bind "/usr" read-only=#true
}
"#;
    let lab = lab_with("hostname", host);
    lab.sh_ok("cp -a /srv/images/guest /srv/images/built-on-vm && echo vm > /srv/images/built-on-vm/etc/hostname");
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    eventually("web calls itself web", Duration::from_secs(30), || {
        let out = lab.run_in(
            "web",
            &["cat", "/proc/sys/kernel/hostname", "/etc/hostname"],
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && text == "web\nweb\n" {
            Ok(())
        } else {
            Err(format!("{text:?} {}", lab::show_output(&out)))
        }
    });
}

/// Three networks, one of each egress policy, and a world beyond the
/// uplink: a network namespace of the lab on the other end of `up0`.
const EGRESS_HOST: &str = r#"
host "lab" {
    uplink "up0"
}

image "guest" {
    directory "/srv/images/guest"
}

network "routed" {
    bridge "br-routed"
    ipv4 "10.51.0.1/24"
}

network "iso" {
    bridge "br-iso"
    ipv4 "10.52.0.1/24"
    egress "isolated"
}

network "nat" {
    bridge "br-nat"
    ipv4 "10.53.0.1/24" { nat; }
}

template "base" {
    image "guest"
    bind "/usr" read-only=#true
}

container "r" {
    from "base"
    network "routed" ipv4="10.51.0.10"
}

container "i" {
    from "base"
    network "iso" ipv4="10.52.0.10"
    allow "tcp" port=7000 from="routed"
}

container "n" {
    from "base"
    network "nat" ipv4="10.53.0.10"
}
"#;

/// Whether `from` (a container, or `world`) gets an answer to one ping.
fn pings(lab: &Lab, from: &str, address: &str) -> bool {
    let ping = ["ping", "-c", "1", "-W", "1", address];
    let out = if from == "world" {
        let mut cmd = vec!["ip", "netns", "exec", "world"];
        cmd.extend_from_slice(&ping);
        lab.run(&cmd)
    } else {
        lab.run_in(from, &ping)
    };
    out.status.success()
}

/// What `nc` in `from` reads from `address`:`port` (empty if nothing).
fn reads(lab: &Lab, from: &str, address: &str, port: &str) -> String {
    let out = lab.run_in(from, &["nc", "-N", "-w", "2", address, port]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn egress_policies_and_rules_hold_for_real_traffic() {
    if lab_unavailable() {
        return;
    }
    let lab = lab_with("egress", EGRESS_HOST);
    // The world: 192.168.88.2 behind the uplink, routing everything back
    // through the lab (so a routed container's own address is answered).
    lab.sh_ok(
        "ip netns add world
         ip link add up0 type veth peer name world0
         ip link set world0 netns world
         ip address add 192.168.88.1/24 dev up0
         ip link set up0 up
         ip netns exec world ip address add 192.168.88.2/24 dev world0
         ip netns exec world ip link set world0 up
         ip netns exec world ip link set lo up
         ip netns exec world ip route add default via 192.168.88.1",
    );
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    for (from, to) in [("r", "10.51.0.1"), ("i", "10.52.0.1"), ("n", "10.53.0.1")] {
        eventually(
            &format!("{from} reaches its bridge"),
            Duration::from_secs(30),
            || {
                pings(&lab, from, to)
                    .then_some(())
                    .ok_or_else(|| "no answer".into())
            },
        );
    }
    for (name, port) in [("i", "7000"), ("i", "7001"), ("n", "7000")] {
        let served = lab.run_in(
            name,
            &[
                "sh",
                "-c",
                &format!(
                    "nohup sh -c 'while true; do echo {name}-{port} | nc -N -l {port}; done' >/dev/null 2>&1 &"
                ),
            ],
        );
        assert!(served.status.success(), "{}", lab::show_output(&served));
    }

    // What gets through: out of the routed and the NAT network, into the
    // routed one from the world, and the one port `i` allows from `routed`.
    for (from, to, why) in [
        ("r", "192.168.88.2", "a routed network reaches the world"),
        ("n", "192.168.88.2", "a NAT network reaches the world"),
        ("world", "10.51.0.10", "the world reaches a routed network"),
    ] {
        eventually(why, Duration::from_secs(20), || {
            pings(&lab, from, to)
                .then_some(())
                .ok_or_else(|| format!("{from} does not reach {to}"))
        });
    }
    eventually(
        "`allow tcp port=7000 from=routed` lets r reach i's port 7000",
        Duration::from_secs(20),
        || match reads(&lab, "r", "10.52.0.10", "7000").as_str() {
            "i-7000" => Ok(()),
            other => Err(format!("read {other:?}")),
        },
    );
    // The host itself reaches every network (output, not forward).
    for address in ["10.51.0.10", "10.52.0.10", "10.53.0.10"] {
        ping(&lab, address).unwrap_or_else(|e| panic!("the lab does not reach {address}: {e}"));
    }

    // What does not: out of the isolated network, into it or the NAT
    // network from the world, between networks but for the allowed port.
    for (from, to, why) in [
        ("i", "192.168.88.2", "an isolated network reaches the world"),
        (
            "world",
            "10.52.0.10",
            "the world reaches an isolated network",
        ),
        (
            "world",
            "10.53.0.10",
            "the world reaches a NAT network unasked",
        ),
        ("r", "10.52.0.10", "a routed network pings an isolated one"),
        ("i", "10.51.0.10", "an isolated network pings a routed one"),
        ("n", "10.51.0.10", "one network pings another"),
        ("r", "10.53.0.10", "one network pings another"),
    ] {
        assert!(!pings(&lab, from, to), "{why}: {from} → {to} answered");
    }
    assert_eq!(
        reads(&lab, "r", "10.52.0.10", "7001"),
        "",
        "i's port 7001 is not allowed from routed"
    );
    assert_eq!(
        reads(&lab, "r", "10.53.0.10", "7000"),
        "",
        "n allows nothing from routed"
    );

    // The kernel holds the same table the plan says it does.
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap_or_else(|out| panic!("{out}"));
}

#[test]
fn a_loopback_forward_on_a_port_in_use_rolls_the_apply_back() {
    if lab_unavailable() {
        return;
    }
    let host = r#"
host "lab" {
    uplink "host0"
}

image "guest" {
    directory "/srv/images/guest"
}

network "lan" {
    bridge "br-lan"
    ipv4 "10.42.0.1/24"
}

container "web" {
    image "guest"
    bind "/usr" read-only=#true
    network "lan" ipv4="10.42.0.10"
    forward "tcp" host=9090 container=80
}
"#;
    let lab = lab_with("loopback-in-use", host);
    // Something of the host's own already listens on every address.
    lab.ok(&["systemd-run", "--unit=squatter", "nc", "-k", "-l", "9090"]);
    eventually("the squatter listens", Duration::from_secs(10), || {
        let out = lab.ok(&["ss", "-Hltn", "sport = :9090"]);
        (!out.trim().is_empty())
            .then_some(())
            .ok_or_else(|| "not yet".into())
    });
    let out = ctm(&lab, &["apply", "/root/host.kdl", "--yes"]);
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("restart ctm-forward-tcp-9090.socket failed")
            && text.contains("Address already in use")
            && text.contains("rolled back"),
        "{text}"
    );
    // Nothing of the apply is left: no generation, no unit, no container.
    assert!(!lab.path("/var/lib/ctm/current").exists());
    assert!(
        !lab.path("/etc/systemd/system/ctm-forward-tcp-9090.socket")
            .exists()
    );
    let machines = lab.ok(&["machinectl", "list", "--no-legend", "--no-pager"]);
    assert!(!machines.contains("web"), "{machines}");

    // With the port free, the same host file applies.
    lab.ok(&["systemctl", "stop", "squatter"]);
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    let socket = lab.ok(&["systemctl", "is-active", "ctm-forward-tcp-9090.socket"]);
    assert_eq!(socket.trim(), "active");
}

/// `getent ahosts NAME` in the lab (`None`) or in a container: every
/// address NAME resolves to, or the failure.
fn resolves(lab: &Lab, from: Option<&str>, name: &str) -> Result<String, String> {
    let cmd = ["getent", "ahosts", name];
    let out = match from {
        None => lab.run(&cmd),
        Some(container) => lab.run_in(container, &cmd),
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "{name} does not resolve: {}",
            lab::show_output(&out)
        ))
    }
}

#[test]
fn names_resolve_on_the_host_and_between_containers_and_follow_a_rename() {
    if lab_unavailable() {
        return;
    }
    let host = r#"
host "lab" {
    uplink "host0"
}

image "guest" {
    directory "/srv/images/guest"
}

network "lan" {
    bridge "br-lan"
    ipv4 "10.42.0.1/24"
    ipv6 "fd42:42::1/64"
}

template "base" {
    image "guest"
    bind "/usr" read-only=#true
}

container "web" {
    from "base"
    network "lan" ipv4="10.42.0.10" ipv6="fd42:42::10"
}

container "app" {
    from "base"
    network "lan" ipv4="10.42.0.11" ipv6="fd42:42::11"
}
"#;
    let lab = lab_with("names", host);
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    let both = |text: &str, v4: &str, v6: &str| {
        if text.contains(v4) && text.contains(v6) {
            Ok(())
        } else {
            Err(format!("want {v4} and {v6}, got:\n{text}"))
        }
    };
    // On the host, through nss-mymachines and machined.
    eventually("web resolves on the host", Duration::from_secs(30), || {
        both(&resolves(&lab, None, "web")?, "10.42.0.10", "fd42:42::10")
    });
    // In a container on the same network, through its hosts file.
    eventually("web resolves in app", Duration::from_secs(30), || {
        both(
            &resolves(&lab, Some("app"), "web")?,
            "10.42.0.10",
            "fd42:42::10",
        )
    });
    eventually("app pings web by name", Duration::from_secs(30), || {
        let out = lab.run_in("app", &["ping", "-c", "1", "-W", "1", "web"]);
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| lab::show_output(&out))
    });
    let info = ctm_ok(&lab, &["info"]);
    assert!(info.contains("nss-mymachines"), "{info}");

    // Renamed: the new name resolves, the old one no more; app is not
    // restarted for it (its network's hosts file changed, not its own).
    let before = started_at(&lab, "app");
    lab.write(
        "/root/host.kdl",
        host.replace("container \"web\"", "container \"www\""),
    );
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    eventually("www resolves in app", Duration::from_secs(30), || {
        both(
            &resolves(&lab, Some("app"), "www")?,
            "10.42.0.10",
            "fd42:42::10",
        )
    });
    assert!(
        resolves(&lab, Some("app"), "web").is_err(),
        "web still resolves in app"
    );
    eventually("www resolves on the host", Duration::from_secs(30), || {
        both(&resolves(&lab, None, "www")?, "10.42.0.10", "fd42:42::10")
    });
    assert!(
        resolves(&lab, None, "web").is_err(),
        "web still resolves on the host"
    );
    assert_eq!(started_at(&lab, "app"), before, "app was restarted");
}

/// Runs `ip ARGS` on this machine (the labs' host).
fn ip_here(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        lab::show_output(&out)
    );
}

/// Deletes a link of this machine's when dropped (the end of a veth pair
/// that a failed test did not move into a lab).
struct LinkHere(String);

impl Drop for LinkHere {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .output();
    }
}

#[test]
fn a_vxlan_tunnel_between_two_labs_carries_ping_both_ways() {
    if lab_unavailable() {
        return;
    }
    let host = |me: u8, peer: u8| {
        format!(
            r#"
host "lab" {{
    uplink "host0"
}}

tunnel "vx42" {{
    vxlan id=42 local="10.99.0.{me}" remote="10.99.0.{peer}"
    address "172.16.42.{}/31"
}}
"#,
            me - 1
        )
    };
    let labs = [
        lab_with("vxlan-a", &host(1, 2)),
        lab_with("vxlan-b", &host(2, 1)),
    ];
    // The underlay: a veth pair from one lab's namespace to the other's.
    let tag = std::process::id() % 100_000;
    let ends = [format!("ctu{tag}a"), format!("ctu{tag}b")];
    let _guard = LinkHere(ends[0].clone());
    ip_here(&[
        "link", "add", &ends[0], "type", "veth", "peer", "name", &ends[1],
    ]);
    for (i, (lab, end)) in labs.iter().zip(&ends).enumerate() {
        ip_here(&["link", "set", end, "netns", &lab.leader().to_string()]);
        lab.ok(&[
            "ip",
            "address",
            "add",
            &format!("10.99.0.{}/24", i + 1),
            "dev",
            end,
        ]);
        lab.ok(&["ip", "link", "set", end, "up"]);
    }
    for lab in &labs {
        ctm_ok(lab, &["apply", "/root/host.kdl", "--yes"]);
    }
    for (lab, peer) in labs.iter().zip(["172.16.42.1", "172.16.42.0"]) {
        eventually(
            &format!("{} pings {peer} through the tunnel", lab.name()),
            Duration::from_secs(30),
            || {
                let out = lab.run(&["ping", "-c", "1", "-W", "1", peer]);
                if out.status.success() {
                    Ok(())
                } else {
                    Err(lab::show_output(&out))
                }
            },
        );
    }
    // The packets went through the tunnel: its counters say so.
    let json: serde_json::Value =
        serde_json::from_str(&ctm_ok(&labs[0], &["tunnel", "status", "vx42", "--json"])).unwrap();
    let counters = &json["tunnels"][0]["live"]["counters"];
    assert!(counters["rx_packets"].as_u64().unwrap_or(0) > 0, "{json}");
    assert!(counters["tx_packets"].as_u64().unwrap_or(0) > 0, "{json}");
    assert_eq!(
        json["tunnels"][0]["problems"],
        serde_json::json!([]),
        "{json}"
    );

    // Diagnose: nothing wrong while it works.
    let a = &labs[0];
    let diagnose = |extra: &[&str]| {
        let mut args = vec!["tunnel", "diagnose", "vx42"];
        args.extend_from_slice(extra);
        let out = ctm(a, &args);
        (out.status.code(), flat(&out))
    };
    let (code, text) = diagnose(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("10.99.0.2 answers ping") && text.contains("Nothing wrong found"),
        "{text}"
    );

    // Broken one way: the link is set down. Diagnosed, and --fix repairs
    // it through an apply of the current generation.
    a.ok(&["ip", "link", "set", "vx42", "down"]);
    let (code, text) = diagnose(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("1. link vx42 is down") && text.contains("(--fix does this)"),
        "{text}"
    );
    let (code, text) = diagnose(&["--fix", "--yes"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("link vx42 is down (drift)") && text.contains("Nothing wrong found"),
        "{text}"
    );
    eventually(
        "the tunnel carries ping again",
        Duration::from_secs(30),
        || {
            let out = a.run(&["ping", "-c", "1", "-W", "1", "172.16.42.1"]);
            out.status
                .success()
                .then_some(())
                .ok_or_else(|| lab::show_output(&out))
        },
    );

    // Another: the underlay carries less than the tunnel's packets need.
    a.ok(&["ip", "link", "set", &ends[0], "mtu", "1400"]);
    let (code, text) = diagnose(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("the MTU of vx42 is too large for the underlay")
            && text.contains("a packet of 1450 bytes becomes 1500 on")
            && text.contains("which carries 1400")
            && text.contains("give the tunnel `mtu 1350`"),
        "{text}"
    );
    a.ok(&["ip", "link", "set", &ends[0], "mtu", "1500"]);

    // And another: the host file names the wrong remote endpoint.
    a.write(
        "/root/host.kdl",
        host(1, 2).replace("remote=\"10.99.0.2\"", "remote=\"10.99.0.7\""),
    );
    ctm_ok(a, &["apply", "/root/host.kdl", "--yes"]);
    let (code, text) = diagnose(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("the remote endpoint 10.99.0.7 does not answer")
            && text.contains("check `remote` in the host file"),
        "{text}"
    );
}
