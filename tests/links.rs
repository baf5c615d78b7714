//! Links between containers, end to end in a lab (`tests/lab/`): a veth
//! pair between two containers carries ping, a static route through the
//! other end reaches what lies behind it, the link survives a restart of
//! either end, and is gone once the host file drops it. Checked with `ip`
//! and `ping` inside the containers.

#[path = "lab/mod.rs"]
mod lab;
mod support;

use std::time::Duration;

use lab::Lab;
use lab::scenario::*;
use support::*;

/// `r1` is on a network and on a link to `r2`, which has no network; `r1`
/// routes 10.99.0.0/24 through `r2`, and `r2` the network through `r1`.
const HOST: &str = r#"
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

template "base" {
    image "guest"
    bind "/usr" read-only=#true
}

container "r1" {
    from "base"
    network "lan" ipv4="10.42.0.10"
    route "10.99.0.0/24" via="10.0.12.2"
}

container "r2" {
    from "base"
    route "10.42.0.0/24" via="10.0.12.1"
}

link "r1" "r2" {
    address "r1" "10.0.12.1/30"
    address "r2" "10.0.12.2/30"
    interface "r2" "eth1"
}
"#;

fn lab_unavailable() -> bool {
    let available = Lab::available();
    skip_unless(available.is_ok(), &available.err().unwrap_or_default())
}

fn pings(lab: &Lab, from: &str, address: &str) -> Result<(), String> {
    let out = lab.run_in(from, &["ping", "-c", "1", "-W", "1", address]);
    if out.status.success() {
        Ok(())
    } else {
        Err(lab::show_output(&out))
    }
}

#[test]
fn a_link_carries_ping_and_a_route_survives_restarts_and_goes_with_its_definition() {
    if lab_unavailable() {
        return;
    }
    let lab = lab_with("links", HOST);
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);

    eventually(
        "r1 pings r2 across the link",
        Duration::from_secs(30),
        || pings(&lab, "r1", "10.0.12.2"),
    );
    eventually(
        "r2 pings r1 across the link",
        Duration::from_secs(30),
        || pings(&lab, "r2", "10.0.12.1"),
    );
    // The named end is called what the host file says, the other after
    // its peer, and each is a veth.
    let r2_links = flat(&lab.run_in("r2", &["ip", "-d", "link", "show", "eth1"]));
    assert!(r2_links.contains("veth"), "{r2_links}");
    let r1_links = flat(&lab.run_in("r1", &["ip", "-d", "link", "show", "to-r2"]));
    assert!(r1_links.contains("veth"), "{r1_links}");

    // The static route: r2 holds 10.99.0.1; r1 reaches it through r2, and
    // r2 answers r1's network address through r1.
    let out = lab.run_in("r2", &["ip", "address", "add", "10.99.0.1/32", "dev", "lo"]);
    assert!(out.status.success(), "{}", lab::show_output(&out));
    let route = flat(&lab.run_in("r1", &["ip", "route", "show", "10.99.0.0/24"]));
    assert!(
        route.contains("via 10.0.12.2 dev to-r2"),
        "r1's route: {route}"
    );
    eventually(
        "r1 reaches 10.99.0.1 by its route",
        Duration::from_secs(20),
        || pings(&lab, "r1", "10.99.0.1"),
    );
    let route = flat(&lab.run_in("r2", &["ip", "route", "show", "10.42.0.0/24"]));
    assert!(
        route.contains("via 10.0.12.1 dev eth1"),
        "r2's route: {route}"
    );
    eventually(
        "the lab's bridge answers r2",
        Duration::from_secs(20),
        || pings(&lab, "r2", "10.42.0.10"),
    );

    // Either end restarts: the pair is made again once both run.
    for end in ["r1", "r2"] {
        ctm_ok(&lab, &["restart", end]);
        eventually(
            &format!("the link is back after {end} restarts"),
            Duration::from_secs(60),
            || pings(&lab, "r1", "10.0.12.2"),
        );
    }
    // Both ends started in one transaction, as at boot: the link unit's
    // `Requisite=` on each is met by the other's start job.
    lab.ok(&[
        "systemctl",
        "stop",
        "systemd-nspawn@r1.service",
        "systemd-nspawn@r2.service",
    ]);
    lab.ok(&["systemctl", "start", "machines.target"]);
    eventually(
        "the link is back when both ends start together",
        Duration::from_secs(60),
        || pings(&lab, "r1", "10.0.12.2"),
    );
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap_or_else(|out| panic!("{out}"));

    // The link removed from the host file: both ends lose it, and nothing
    // of it is left to drift.
    let unlinked = HOST
        .split("link \"r1\"")
        .next()
        .unwrap()
        .replace("    route \"10.99.0.0/24\" via=\"10.0.12.2\"\n", "")
        .replace("    route \"10.42.0.0/24\" via=\"10.0.12.1\"\n", "");
    lab.write("/root/unlinked.kdl", unlinked);
    ctm_ok(&lab, &["apply", "/root/unlinked.kdl", "--yes"]);
    for (end, interface) in [("r1", "to-r2"), ("r2", "eth1")] {
        let out = lab.run_in(end, &["ip", "link", "show", interface]);
        assert!(!out.status.success(), "{end} still has {interface}");
    }
    plan_is_empty(&lab, "/root/unlinked.kdl", &[]).unwrap_or_else(|out| panic!("{out}"));
}
