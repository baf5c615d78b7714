//! The lab itself works: a booted systemd host with D-Bus, machined,
//! networkd and nftables, the ctm under test inside, and nested containers
//! that start and can be reached. The end-to-end tests build on this.

#[path = "lab/mod.rs"]
mod lab;
mod support;

use std::time::{Duration, Instant};

use lab::Lab;
use support::*;

/// Skips loudly (fails under CI) where a lab cannot run.
fn lab_unavailable() -> bool {
    let available = Lab::available();
    skip_unless(available.is_ok(), &available.err().unwrap_or_default())
}

/// The `.nspawn` file of a tiny guest: no boot, one sleeping process, the
/// lab's `/usr` read-only, a veth pair to the lab.
const TINY_GUEST: &str = "\
[Exec]
Boot=no
Parameters=/bin/sleep infinity

[Files]
BindReadOnly=/usr

[Network]
VirtualEthernet=yes
";

/// Starts `name` as a tiny guest inside the lab with `machinectl start`,
/// and waits until machined says it is running.
fn start_tiny_guest(lab: &Lab, name: &str) {
    lab.tiny_guest(name);
    lab.write(format!("/etc/systemd/nspawn/{name}.nspawn"), TINY_GUEST);
    lab.ok(&["machinectl", "start", name]);
    wait_for(lab, &format!("machine {name} running"), || {
        lab.run(&["machinectl", "show", name, "--property=State", "--value"])
            .stdout
            .starts_with(b"running")
    });
}

fn wait_for(lab: &Lab, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        if Instant::now() > deadline {
            let journal = lab.run(&["journalctl", "--no-pager", "-n", "40"]);
            panic!(
                "lab {}: not seen within 30 s: {what}\n{}",
                lab.name(),
                String::from_utf8_lossy(&journal.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn lab_is_a_real_systemd_host_that_runs_ctm_and_nested_containers() {
    if lab_unavailable() {
        return;
    }
    let t = Instant::now();
    let rootfs = Lab::rootfs();
    eprintln!(
        "lab rootfs {} ready in {:.1} s",
        rootfs.display(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let lab = Lab::boot("smoke", env!("CARGO_BIN_EXE_ctm"));
    eprintln!(
        "lab booted from the cached rootfs in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let state = lab.run(&["systemctl", "is-system-running"]);
    let state = String::from_utf8_lossy(&state.stdout);
    assert!(
        matches!(state.trim(), "running" | "degraded"),
        "is-system-running: {state}"
    );

    let version = lab.ok(&["ctm", "--version"]);
    assert!(version.starts_with("ctm "), "ctm --version: {version}");
    // A host file written from outside, checked by ctm inside.
    let example = repo().join("examples/minimal.kdl");
    lab.write("/root/host.kdl", std::fs::read(&example).unwrap());
    let checked = lab.run(&["ctm", "check", "/root/host.kdl"]);
    assert!(
        checked.status.success(),
        "ctm check inside the lab:\n{}",
        lab::show_output(&checked)
    );

    lab.ok(&["systemctl", "start", "systemd-networkd", "systemd-machined"]);
    let names = lab.ok(&["busctl", "list", "--no-pager", "--no-legend"]);
    for name in [
        "org.freedesktop.systemd1",
        "org.freedesktop.machine1",
        "org.freedesktop.network1",
    ] {
        assert!(
            names
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} is not on the lab's bus:\n{names}"
        );
    }
    assert!(
        lab.bus_socket().exists(),
        "no bus socket at {}",
        lab.bus_socket().display()
    );

    lab.ok(&["nft", "add", "table", "inet", "ctm_lab_smoke"]);
    let tables = lab.ok(&["nft", "list", "tables"]);
    assert!(
        tables.contains("table inet ctm_lab_smoke"),
        "nft list tables:\n{tables}"
    );

    let t = Instant::now();
    start_tiny_guest(&lab, "g1");
    eprintln!(
        "nested container g1 running in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let machines = lab.ok(&["machinectl", "list", "--no-pager", "--no-legend"]);
    assert!(
        machines
            .lines()
            .any(|l| l.split_whitespace().next() == Some("g1")),
        "machinectl list:\n{machines}"
    );
    wait_for(&lab, "networkd sees ve-g1", || {
        lab.run(&["networkctl", "list", "--no-pager", "--no-legend"])
            .stdout
            .windows(5)
            .any(|w| w == b"ve-g1")
    });

    lab.ok(&["machinectl", "terminate", "g1"]);
    wait_for(&lab, "g1 gone", || {
        !lab.run(&["machinectl", "list", "--no-pager", "--no-legend"])
            .stdout
            .windows(2)
            .any(|w| w == b"g1")
    });
    let unit = lab.run(&["systemctl", "is-active", "systemd-nspawn@g1.service"]);
    assert!(
        !unit.status.success(),
        "systemd-nspawn@g1 still active: {}",
        lab::show_output(&unit)
    );
}

#[test]
fn nested_container_answers_ping_and_tcp_from_the_lab() {
    if lab_unavailable() {
        return;
    }
    let lab = Lab::boot_with(
        "reach",
        lab::Options {
            ctm: Some(env!("CARGO_BIN_EXE_ctm").into()),
            image_at: Some("/srv/images/bookworm".into()),
            ..lab::Options::default()
        },
    );
    // The cached rootfs, offered read-only as an image for nested containers.
    lab.ok(&["test", "-x", "/srv/images/bookworm/usr/bin/systemctl"]);
    let write = lab.run(&["touch", "/srv/images/bookworm/x"]);
    assert!(
        !write.status.success(),
        "the image is writable inside the lab"
    );

    // No networkd here: the addresses below are the only ones.
    start_tiny_guest(&lab, "g1");
    let leader = lab.machine_leader("g1");
    lab.sh_ok(&format!(
        "ip address add 10.99.0.1/24 dev ve-g1
         ip link set ve-g1 up
         nsenter -t {leader} -n ip address add 10.99.0.2/24 dev host0
         nsenter -t {leader} -n ip link set host0 up"
    ));

    // The links take a moment to come up.
    wait_for(&lab, "ping from the lab to g1", || {
        lab.run(&["ping", "-c", "1", "-W", "1", "10.99.0.2"])
            .status
            .success()
    });
    let out = lab.run_in("g1", &["ping", "-c", "1", "-W", "2", "10.99.0.1"]);
    assert!(
        out.status.success(),
        "ping from g1 to the lab:\n{}",
        lab::show_output(&out)
    );

    // A TCP listener inside g1 (its own namespaces and root), a client in
    // the lab.
    let got = lab.sh_ok(&format!(
        "nsenter -t {leader} -a sh -c 'nc -l 7777 > /tmp/got' </dev/null >/dev/null 2>&1 &
         listener=$!
         for i in $(seq 100); do
             nsenter -t {leader} -n ss -Hltn 'sport = :7777' | grep -q . && break
             sleep 0.1
         done
         echo hello-from-the-lab | nc -N -w 5 10.99.0.2 7777
         wait $listener
         nsenter -t {leader} -a cat /tmp/got"
    ));
    assert_eq!(got.trim(), "hello-from-the-lab");
    lab.ok(&["machinectl", "terminate", "g1"]);
}
