//! The order of what an apply, a rollback and a recovery ask of the
//! running system, asserted call by call against the recording fake
//! (backend::recording), injected into every session of the use case.

use std::path::PathBuf;
use std::sync::Arc;

use ctm::backend::recording::Recording;
use ctm::clock::Timeout;
use ctm::engine::apply::{self, Applied, Runner};
use ctm::engine::load::{Desired, load_and_validate};
use ctm::engine::{Access, Event, Session, Target};
use ctm::plan::Options;

const HOST: &str = r#"
host "lab" {
    uplink "eth0"
}
image "guest" {
    directory "/srv/guest"
}
network "lan" {
    bridge "br-lan"
    ipv4 "10.42.0.1/24" { nat; }
}
container "web" {
    image "guest"
    network "lan"
    forward "tcp" host=8080 container=80
    bind "/srv/www" "/var/www" read-only=#true
    limits memory="1G" cpus=1.5
    environment TZ="Etc/UTC"
}
container "db" {
    image "guest"
    network "lan"
}
"#;

struct Host {
    dir: tempfile::TempDir,
    fake: Recording,
}

impl Host {
    fn new() -> Host {
        Host::with(HOST)
    }

    /// A host of another host file.
    fn with(text: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("host.kdl"), text).unwrap();
        let root = dir.path().join("root");
        let fake = Recording::new()
            .watching(root.join("etc/systemd/nspawn/web.nspawn"), "web.nspawn")
            .watching(root.join("etc/systemd/nspawn/db.nspawn"), "db.nspawn");
        Host { dir, fake }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("host.kdl")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn edit(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.file()).unwrap();
        assert!(text.contains(from));
        std::fs::write(self.file(), text.replacen(from, to, 1)).unwrap();
    }

    fn target(&self) -> Target {
        let fake = self.fake.clone();
        Target::new(self.root()).with_system(Arc::new(move || Box::new(fake.clone())))
    }

    fn desired(&self) -> Desired {
        let outcome = load_and_validate(&self.file(), None).unwrap();
        let diagnostics: Vec<&str> = outcome
            .diagnostics
            .iter()
            .map(|d| d.message.as_str())
            .collect();
        Desired::compile(&outcome, &Default::default()).unwrap_or_else(|| panic!("{diagnostics:?}"))
    }

    fn apply(&self, timeout: Option<Timeout>) -> miette::Result<Applied> {
        let target = self.target();
        let prepared = apply::prepare_apply(
            &target,
            self.desired(),
            Options::default(),
            timeout,
            None,
            &mut |_| {},
        )?;
        apply::apply(&target, prepared, timeout, Runner::Foreground, &mut |_| {})
    }

    fn current(&self) -> Option<u64> {
        ctm::state::Store::new(&self.root()).current().unwrap()
    }
}

/// The calls of a first apply of HOST, up to its health check.
const FIRST_APPLY: &[&str] = &[
    "observe",
    "perform: reload systemd's unit files [web.nspawn present, db.nspawn present]",
    "perform: apply sysctl settings [web.nspawn present, db.nspawn present]",
    "perform: reload systemd-networkd [web.nspawn present, db.nspawn present]",
    "perform: replace nftables table inet ctm [web.nspawn present, db.nspawn present]",
    "perform: loopback forwards: start ctm-forward-tcp-8080.socket [web.nspawn present, db.nspawn present]",
    "perform: prepare the root file system of container db + prepare the root file system of container web [web.nspawn present, db.nspawn present]",
    "perform: start container db + start container web [web.nspawn present, db.nspawn present]",
    "perform: provision container db (networkd, hosts) + provision container web (networkd, hosts) [web.nspawn present, db.nspawn present]",
];

/// What undoing a first apply of HOST asks, once its containers started.
const UNDO_FIRST_APPLY: &[&str] = &[
    "perform: stop container db + stop container web [web.nspawn absent, db.nspawn absent]",
    "perform: reload systemd's unit files [web.nspawn absent, db.nspawn absent]",
    "perform: apply sysctl settings [web.nspawn absent, db.nspawn absent]",
    "perform: delete links br-lan and reload systemd-networkd [web.nspawn absent, db.nspawn absent]",
    "perform: replace nftables table inet ctm [web.nspawn absent, db.nspawn absent]",
    "perform: loopback forwards: stop ctm-forward-tcp-8080.socket [web.nspawn absent, db.nspawn absent]",
    "health check: nothing must run",
];

fn calls(list: &[&[&str]]) -> Vec<String> {
    list.iter()
        .flat_map(|l| l.iter())
        .map(|c| c.to_string())
        .collect()
}

#[test]
fn a_first_apply_switches_the_files_then_reloads_then_starts_then_checks() {
    let h = Host::new();
    assert_eq!(h.apply(None).unwrap(), Applied::Generation(1));
    assert_eq!(
        h.fake.take_calls(),
        calls(&[
            FIRST_APPLY,
            &["health check: db, web must run", "purge removed trees"]
        ])
    );
    assert_eq!(h.current(), Some(1));
}

#[test]
fn a_removed_container_stops_once_its_files_are_gone_and_nothing_else_restarts() {
    let h = Host::new();
    h.apply(None).unwrap();
    h.fake.take_calls();
    // A forward (the firewall) changes and db goes.
    h.edit("host=8080", "host=8081");
    h.edit(
        "container \"db\" {\n    image \"guest\"\n    network \"lan\"\n}\n",
        "",
    );
    assert_eq!(h.apply(None).unwrap(), Applied::Generation(2));
    assert_eq!(
        h.fake.take_calls(),
        [
            "observe",
            "perform: stop container db [web.nspawn present, db.nspawn absent]",
            "perform: reload systemd's unit files [web.nspawn present, db.nspawn absent]",
            "perform: replace nftables table inet ctm [web.nspawn present, db.nspawn absent]",
            "perform: loopback forwards: start ctm-forward-tcp-8081.socket; stop ctm-forward-tcp-8080.socket [web.nspawn present, db.nspawn absent]",
            "health check: web must run",
            "purge removed trees",
        ]
    );
    assert_eq!(h.fake.running(), ["web".to_string()].into());
}

#[test]
fn a_failed_action_is_undone_in_reverse_after_the_files_are_restored() {
    let h = Host::new();
    h.fake.fail_on("start container db");
    let e = h.apply(None).unwrap_err().to_string();
    assert!(
        e.contains("start container db failed: injected by the test; rolled back"),
        "{e}"
    );
    assert_eq!(
        h.fake.take_calls(),
        calls(&[FIRST_APPLY[..8].as_ref(), UNDO_FIRST_APPLY])
    );
    assert_eq!(h.current(), None);
    assert!(h.fake.running().is_empty());
}

#[test]
fn a_tunnel_of_a_kind_the_kernel_lacks_is_refused_before_anything_changes() {
    let h = Host::new();
    h.apply(None).unwrap();
    h.fake.take_calls();
    let text = std::fs::read_to_string(h.file()).unwrap();
    std::fs::write(
        h.file(),
        text + "tunnel \"site-b\" {\n    gre local=\"192.0.2.1\" remote=\"198.51.100.7\"\n    address \"172.16.0.0/31\"\n}\n",
    )
    .unwrap();
    h.fake.without_kind("gre");
    let target = h.target();
    let prepared = apply::prepare_apply(
        &target,
        h.desired(),
        Options::default(),
        None,
        None,
        &mut |_| {},
    )
    .unwrap();
    let notes = &prepared.plan.unsupported_links;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].kind, "gre");
    assert_eq!(notes[0].links, ["site-b"]);
    assert!(prepared.plan.unchecked_links.is_empty());
    let text = ctm::plan::render::text(
        &prepared.plan,
        "ctm apply",
        ctm::plan::render::Show::NoDiffs,
    );
    assert!(
        text.contains("Not supported by the running kernel:"),
        "{text}"
    );
    assert!(
        text.contains("(site-b): the kernel has no such kind"),
        "{text}"
    );
    let e = apply::apply(&target, prepared, None, Runner::Foreground, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "the running kernel cannot make gre links (site-b: the kernel has no such kind of link"
        ) && e.contains("nothing was changed"),
        "{e}"
    );
    // Observed, then nothing: no file switched, no action performed.
    assert_eq!(h.fake.take_calls(), ["observe"]);
    assert_eq!(h.current(), Some(1));
    assert!(
        !h.root()
            .join("etc/systemd/network/50-ctm-site-b.netdev")
            .exists()
    );
}

#[test]
fn a_root_kind_the_file_system_cannot_make_is_refused_before_anything_changes() {
    let h = Host::new();
    let text = std::fs::read_to_string(h.file()).unwrap();
    std::fs::write(
        h.file(),
        text.replace(
            "    image \"guest\"\n    network \"lan\"\n}",
            "    image \"guest\"\n    network \"lan\"\n    root \"snapshot\"\n}",
        ),
    )
    .unwrap();
    h.fake.with_roots(ctm::plan::RootsState {
        fs: "ext4".into(),
        snapshot: Some("/var/lib/machines is on ext4, not btrfs".into()),
        reflink: Some("no reflinks on ext4".into()),
        overlay: None,
        missing: ["db", "web"].map(String::from).into(),
    });
    let target = h.target();
    let prepared = apply::prepare_apply(
        &target,
        h.desired(),
        Options::default(),
        None,
        None,
        &mut |_| {},
    )
    .unwrap();
    let new: Vec<(&str, &str)> = prepared
        .plan
        .new_roots
        .iter()
        .map(|n| (n.container.as_str(), n.kind.as_str()))
        .collect();
    assert_eq!(new, [("web", "copy")]);
    assert_eq!(prepared.plan.unavailable_roots.len(), 1);
    assert_eq!(prepared.plan.unavailable_roots[0].container, "db");
    let e = apply::apply(&target, prepared, None, Runner::Foreground, &mut |_| {}).unwrap_err();
    let text = format!("{e:?}");
    assert!(
        e.to_string().contains(
            "cannot make container db's root file system as a snapshot: /var/lib/machines is on ext4, not btrfs; nothing was changed"
        ),
        "{text}"
    );
    assert!(text.contains("ctm::root_unavailable"), "{text}");
    // Observed, then nothing: no generation, no file.
    assert_eq!(h.fake.take_calls(), ["observe"]);
    assert_eq!(h.current(), None);
    assert!(!h.root().join("etc/systemd/nspawn/db.nspawn").exists());
}

#[test]
fn a_switch_cut_short_by_a_crash_is_undone_whole_by_the_next_session() {
    let h = Host::new();
    h.fake.crash_on("start container db");
    let crashed = std::panic::catch_unwind(|| h.apply(None));
    assert!(
        crashed.is_err(),
        "the fake dies in the middle of the switch"
    );
    assert_eq!(h.fake.take_calls(), FIRST_APPLY[..8].to_vec());
    // The journal is left; the next session rolls every action back,
    // since which of them ran is not known.
    let mut said = Vec::new();
    drop(Session::open(&h.target(), Access::ChangeState, &mut |e| said.push(e)).unwrap());
    assert_eq!(h.fake.take_calls(), UNDO_FIRST_APPLY.to_vec());
    assert!(
        matches!(
            said.last(),
            Some(Event::RolledBackInterrupted { generation: None, problems }) if problems.is_empty()
        ),
        "{said:?}"
    );
    assert_eq!(h.current(), None);
}

#[test]
fn an_unconfirmed_apply_arms_its_revert_before_it_commits_and_is_reverted_after_the_deadline() {
    let h = Host::new();
    let timeout = Timeout::try_from(1).unwrap();
    let target = h.target();
    // As in the transient unit: switch, arm the revert, and return.
    let prepared = apply::prepare_apply(
        &target,
        h.desired(),
        Options::default(),
        Some(timeout),
        None,
        &mut |_| {},
    )
    .unwrap();
    let applied = apply::apply(
        &target,
        prepared,
        Some(timeout),
        Runner::InUnit,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(applied, Applied::Generation(1));
    assert_eq!(
        h.fake.take_calls(),
        calls(&[
            FIRST_APPLY,
            &[
                "health check: db, web must run",
                "arm revert",
                "purge removed trees"
            ]
        ])
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Any session after the deadline reverts, and disarms the timer.
    let mut said = Vec::new();
    drop(Session::open(&target, Access::ChangeState, &mut |e| said.push(e)).unwrap());
    let reverted = h.fake.take_calls();
    assert_eq!(reverted.first().map(String::as_str), Some("observe"));
    assert_eq!(reverted.last().map(String::as_str), Some("disarm revert"));
    assert!(
        reverted.contains(&"perform: stop container db + stop container web [web.nspawn absent, db.nspawn absent]".to_string()),
        "{reverted:#?}"
    );
    assert!(
        said.contains(&Event::NotConfirmedInTime { generation: 1 }),
        "{said:?}"
    );
    assert_eq!(h.current(), None);
    // A confirmation now comes too late, and says so.
    let late = apply::confirm(&target, None, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        late.starts_with("generation 1 was rolled back at ")
            && late.ends_with("for want of a confirmation; the host is on generation none"),
        "{late}"
    );
    let list = ctm::engine::generations::list(&target, Access::Read, &mut |_| {}).unwrap();
    assert!(list.generations[0].reverted.is_some());
}

/// A journal whose last lines are two, one of them hostile.
struct TwoLines;

impl ctm::backend::journal::Journal for TwoLines {
    fn command(&self, query: &ctm::backend::journal::LogQuery) -> Option<std::process::Command> {
        let mut c = std::process::Command::new("printf");
        c.arg(format!("{}: started\\n<b>hi</b>\\r\\n", query.name));
        Some(c)
    }
}

fn sources() -> ctm::engine::status::Sources<'static> {
    ctm::engine::status::Sources {
        host_file: None,
        resources: &ctm::backend::cgroups::NoResources,
        files_only_reason: None,
    }
}

#[test]
fn the_container_page_has_its_settings_steps_logs_and_a_sample() {
    use ctm::engine::containers::{detail, sample};
    use ctm::model::Name;
    let h = Host::new();
    h.apply(None).unwrap();
    let web = Name::parse("web").unwrap();
    let d = detail(&h.target(), &sources(), &TwoLines, &web, 20, &mut |_| {}).unwrap();
    assert_eq!(d.status.state.as_deref(), Some("running"));
    assert_eq!(d.status.forwards, ["tcp 8080 → 80"]);
    assert_eq!(d.generation, Some(1));
    assert_eq!(d.binds[0].source, "/srv/www");
    assert!(d.binds[0].read_only);
    assert_eq!(d.limits.memory_bytes, Some(1 << 30));
    assert_eq!(d.limits.cpus, Some(1.5));
    assert_eq!(d.environment["TZ"], "Etc/UTC");
    let ids: Vec<&str> = d.steps.iter().map(|s| s.id.as_str()).collect();
    assert!(ids.contains(&"networkd"), "{ids:?}");
    assert_eq!(d.logs, ["web: started", "<b>hi</b>"]);
    assert_eq!(d.logs_note, None);
    let e = detail(
        &h.target(),
        &sources(),
        &TwoLines,
        &Name::parse("nosuch").unwrap(),
        20,
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "container nosuch is not managed by ctm: generation 1 has no container nosuch"
    );
    // Successive samples: the CPU time grows, the page divides.
    let first = sample(&h.target(), &web, &mut |_| {}).unwrap();
    let second = sample(&h.target(), &web, &mut |_| {}).unwrap();
    assert_eq!(first.state, "running");
    let cpu = |s: &ctm::engine::containers::Sample| s.stats.as_ref().unwrap().cpu_usec.unwrap();
    assert_eq!(cpu(&second) - cpu(&first), 1_000_000);
    assert!(second.sampled_at_ms >= first.sampled_at_ms);
}

#[test]
fn metrics_report_each_container_the_drift_and_the_last_apply() {
    use ctm::engine::metrics::metrics;
    let h = Host::new();
    let target = h.target();
    let before = metrics(&target, &sources(), &mut |_| {}).unwrap().render();
    assert!(before.contains("ctm_generation 0\n"), "{before}");
    assert!(!before.contains("ctm_last_apply"), "{before}");
    h.apply(None).unwrap();
    let web = ctm::model::Name::parse("web").unwrap();
    ctm::engine::containers::set_paused(&target, &web, true, &mut |_| {}).unwrap();
    let text = metrics(&target, &sources(), &mut |_| {}).unwrap().render();
    for line in [
        "ctm_live 1",
        "ctm_generation 1",
        "ctm_last_apply_success 1",
        "ctm_last_apply_result{result=\"applied\"} 1",
        "ctm_drift{kind=\"file\"} 0",
        "ctm_container_state{container=\"web\",state=\"paused\"} 1",
        "ctm_container_state{container=\"web\",state=\"running\"} 0",
        "ctm_container_state{container=\"db\",state=\"running\"} 1",
        "ctm_container_paused{container=\"web\"} 1",
        "ctm_container_memory_bytes{container=\"db\"} 67108864",
        "ctm_container_network_receive_bytes_total{container=\"web\"} 5000",
        "# TYPE ctm_container_cpu_seconds_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    // Every sample's family has its help and type.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let family = line.split(['{', ' ']).next().unwrap();
        assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
    }
    let last = ctm::state::Store::new(&h.root())
        .last_apply()
        .unwrap()
        .unwrap();
    assert_eq!(last.result, "applied");
    assert_eq!(last.generation, Some(1));
}

#[test]
fn tunnel_status_reports_each_tunnel_of_the_generation_with_what_looks_wrong() {
    use ctm::engine::tunnels;
    let h = Host::new();
    let text = std::fs::read_to_string(h.file()).unwrap();
    std::fs::write(
        h.file(),
        text + "tunnel \"vx42\" {\n    vxlan id=42 local=\"192.0.2.1\" remote=\"198.51.100.7\"\n}\n",
    )
    .unwrap();
    h.apply(None).unwrap();
    h.fake.take_calls();

    let target = h.target();
    let all = tunnels::status(&target, None, Access::Read, &mut |_| {}).unwrap();
    assert_eq!(all.generation, Some(1));
    assert!(all.live_system);
    assert_eq!(all.tunnels.len(), 1);
    let vx = &all.tunnels[0];
    assert_eq!(
        (vx.name.as_str(), vx.kind, vx.id, vx.port, vx.expected_mtu),
        ("vx42", "vxlan", Some(42), Some(4789), Some(1450))
    );
    let live = vx.live.as_ref().unwrap();
    assert!(live.exists && live.up);
    assert_eq!(live.counters.unwrap().tx_packets, 20);
    assert!(vx.problems.is_empty(), "{:?}", vx.problems);
    assert_eq!(h.fake.take_calls(), ["tunnels: vx42"]);

    h.fake.without_link("vx42");
    let one = tunnels::status(&target, Some("vx42"), Access::Read, &mut |_| {}).unwrap();
    assert_eq!(
        one.tunnels[0].problems.len(),
        1,
        "{:?}",
        one.tunnels[0].problems
    );
    assert!(
        one.tunnels[0].problems[0].starts_with("link vx42 is missing"),
        "{:?}",
        one.tunnels[0].problems
    );

    let e = tunnels::status(&target, Some("nope"), Access::Read, &mut |_| {}).unwrap_err();
    assert_eq!(
        e.to_string(),
        "tunnel nope is not managed by ctm: generation 1 has no tunnel nope"
    );

    // A files-only root asks the kernel nothing.
    let files_only =
        tunnels::status(&Target::new(h.root()), None, Access::Read, &mut |_| {}).unwrap();
    assert!(!files_only.live_system);
    assert_eq!(files_only.tunnels[0].live, None);
    assert!(files_only.tunnels[0].problems.is_empty());
}

#[test]
fn tunnel_problems_name_a_link_down_a_wrong_mtu_a_missing_address_and_no_route() {
    use ctm::backend::{RouteTo, TunnelLive};
    use ctm::engine::tunnels::problems;
    use ctm::model::{Encapsulation, IfName, Port, Tunnel, Vni, VxlanPeer};
    let tunnel = Tunnel {
        name: IfName::parse("vx42").unwrap(),
        local: "192.0.2.1".parse().unwrap(),
        encapsulation: Encapsulation::Vxlan {
            id: Vni::from_integer(42).unwrap(),
            peer: VxlanPeer::Remote("198.51.100.7".parse().unwrap()),
            port: Port::from_integer(4789).unwrap(),
            device: None,
        },
        mtu: None,
        underlay_mtu: None,
        addresses: vec!["172.16.1.0/31".parse().unwrap()],
    };
    let addresses = ["172.16.1.0/31".to_string()];
    let healthy = TunnelLive {
        exists: true,
        kind: Some("vxlan".into()),
        up: true,
        oper_state: "unknown".into(),
        mtu: Some(1450),
        addresses: addresses.to_vec(),
        counters: None,
        route_to_remote: Some(RouteTo {
            device: Some("eth0".into()),
            device_mtu: Some(1500),
            gateway: None,
            source: None,
        }),
    };
    assert!(problems(&tunnel, &healthy, Some(1450), &addresses).is_empty());
    let broken = TunnelLive {
        up: false,
        oper_state: "down".into(),
        mtu: Some(1500),
        addresses: Vec::new(),
        route_to_remote: None,
        ..healthy
    };
    assert_eq!(
        problems(&tunnel, &broken, Some(1450), &addresses),
        [
            "link vx42 is down (`ip link set vx42 up`, or `networkctl reconfigure vx42`)",
            "link vx42 has an MTU of 1500, not 1450",
            "link vx42 lacks its address 172.16.1.0/31",
            "no route to the remote endpoint 198.51.100.7: the underlay cannot reach it",
        ]
    );
}

#[test]
fn a_volume_is_made_before_any_container_starts_and_a_rollback_keeps_it() {
    let h = Host::new();
    h.edit(
        "container \"web\" {\n",
        "volume \"data\"\ncontainer \"web\" {\n    volume \"data\" \"/srv/data\"\n",
    );
    h.fake.fail_on("start container db");
    let e = h.apply(None).unwrap_err().to_string();
    assert!(e.contains("rolled back"), "{e}");
    let calls = h.fake.take_calls();
    let at = |summary: &str| {
        calls
            .iter()
            .position(|c| c.starts_with(&format!("perform: {summary}")))
            .unwrap_or_else(|| panic!("no {summary:?} in {calls:#?}"))
    };
    let created = at("create volume data at /var/lib/ctm/volumes/data");
    assert_eq!(
        created + 1,
        at("prepare the root file system of container db"),
        "{calls:#?}"
    );
    // Undone are the starts, reloads and firewall, never the volume: a
    // container may have written to it.
    assert_eq!(
        calls[created + 3..],
        *UNDO_FIRST_APPLY
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
        "{calls:#?}"
    );
}

#[test]
fn a_snapshot_freezes_a_running_container_and_thaws_it_even_when_the_copy_fails() {
    use ctm::engine::snapshots::{self, Options};
    use ctm::model::Name;
    let h = Host::new();
    h.apply(None).unwrap();
    h.fake.take_calls();
    for name in ["web", "db"] {
        let tree = h.root().join("var/lib/machines").join(name).join("etc");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("motd"), name).unwrap();
    }
    let web = Name::parse("web").unwrap();
    let frozen = snapshots::snapshot(&h.target(), &web, Options::default(), &mut |_| {}).unwrap();
    assert!(frozen.frozen);
    assert_eq!(h.fake.take_calls(), ["pause web", "resume web"]);

    let stop = Options {
        stop: true,
        ..Options::default()
    };
    let stopped = snapshots::snapshot(&h.target(), &web, stop, &mut |_| {}).unwrap();
    assert!(!stopped.frozen);
    assert_stopped_then_started(&h.fake.take_calls(), "web");

    // Where the copy cannot go (a file in the way of db's snapshots), the
    // container is thawed all the same, and no snapshot is left.
    let snapshots_dir = h.root().join("var/lib/ctm/snapshots");
    std::fs::write(snapshots_dir.join("db"), "in the way").unwrap();
    let db = Name::parse("db").unwrap();
    snapshots::snapshot(&h.target(), &db, Options::default(), &mut |_| {}).unwrap_err();
    assert_eq!(h.fake.take_calls(), ["pause db", "resume db"]);
    assert_eq!(snapshots::list(&h.target(), Some(&db)).unwrap(), []);

    // A restore stops the running container, swaps, and starts it again.
    std::fs::write(h.root().join("var/lib/machines/web/etc/motd"), "changed").unwrap();
    let restored = snapshots::restore(&h.target(), &web, &frozen.id, &mut |_| {}).unwrap();
    assert!(restored.restarted);
    assert_eq!(
        std::fs::read_to_string(h.root().join("var/lib/machines/web/etc/motd")).unwrap(),
        "web"
    );
    assert_stopped_then_started(&h.fake.take_calls(), "web");
    let listed: Vec<String> = snapshots::list(&h.target(), Some(&web))
        .unwrap()
        .into_iter()
        .map(|s| s.reason)
        .collect();
    assert_eq!(
        listed,
        [
            "ctm snapshot".to_string(),
            "ctm snapshot".to_string(),
            format!("kept by the restore of {}", frozen.id)
        ]
    );
}

/// The calls are a stop of container `name`, then its start.
#[track_caller]
fn assert_stopped_then_started(calls: &[String], name: &str) {
    let summaries: Vec<&str> = calls
        .iter()
        .map(|c| c.split(" [").next().unwrap_or(c))
        .collect();
    assert_eq!(
        summaries,
        [
            format!("perform: stop container {name}"),
            format!("perform: start container {name}")
        ],
        "{calls:?}"
    );
}

#[test]
fn a_snapshot_with_volumes_freezes_every_running_container_that_shares_them() {
    use ctm::engine::snapshots::{self, Options};
    use ctm::model::Name;
    let h = Host::new();
    h.edit(
        "container \"web\" {\n",
        "volume \"data\"\ncontainer \"web\" {\n    volume \"data\" \"/srv/data\"\n",
    );
    h.edit(
        "container \"db\" {\n",
        "container \"db\" {\n    volume \"data\" \"/var/lib/db\"\n",
    );
    h.apply(None).unwrap();
    h.fake.take_calls();
    // The recording fake performs nothing: the tree and the volume are
    // made here as ctm would.
    std::fs::create_dir_all(h.root().join("var/lib/machines/web/etc")).unwrap();
    ctm::backend::volumes::create(&h.root(), "data", None, &mut |_| {}).unwrap();
    std::fs::write(
        ctm::backend::volumes::path(&h.root(), "data").join("table"),
        "rows",
    )
    .unwrap();

    let web = Name::parse("web").unwrap();
    let with_volumes = Options {
        volumes: true,
        ..Options::default()
    };
    let s = snapshots::snapshot(&h.target(), &web, with_volumes, &mut |_| {}).unwrap();
    assert_eq!(
        h.fake.take_calls(),
        ["pause web", "pause db", "resume web", "resume db"]
    );
    assert_eq!(s.volumes, ["data"]);
    let copied = ctm::backend::snapshots::volume_in(&h.root(), "web", &s.id, "data");
    assert_eq!(
        std::fs::read_to_string(copied.join("table")).unwrap(),
        "rows"
    );

    // A restore of the volume while db, which shares it, runs is refused:
    // db would go on writing to the replaced one.
    let e = snapshots::restore(&h.target(), &web, &s.id, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert_eq!(e, "volume data is mounted by container db, which runs");
    assert!(h.fake.take_calls().is_empty());
}

#[test]
fn the_container_page_lists_its_volumes_with_their_directories() {
    use ctm::engine::containers::detail;
    use ctm::model::Name;
    let h = Host::new();
    h.edit(
        "container \"web\" {\n",
        "volume \"data\"\ncontainer \"web\" {\n    volume \"data\" \"/srv/data\" read-only=#true\n",
    );
    h.apply(None).unwrap();
    let web = Name::parse("web").unwrap();
    let d = detail(&h.target(), &sources(), &TwoLines, &web, 20, &mut |_| {}).unwrap();
    assert_eq!(d.volumes.len(), 1);
    let v = &d.volumes[0];
    assert_eq!(
        (v.volume.as_str(), v.source.as_str(), v.target.as_str()),
        ("data", "/var/lib/ctm/volumes/data", "/srv/data")
    );
    assert!(v.read_only && !v.idmap);
}

/// A backup timer stopped by hand is drift: `ctm status` names it, and
/// the next apply of the same host file starts it again. The status shows
/// the last archive and the timer's failed run.
#[test]
fn a_backup_timer_stopped_by_hand_is_drift_and_the_status_shows_the_last_backup() {
    let h = Host::new();
    h.edit(
        "container \"db\" {",
        "container \"db\" {\n    backup {\n        to \"/srv/backups\"\n        every \"daily\"\n    }",
    );
    h.apply(None).unwrap();
    let target = h.target();
    let status =
        ctm::engine::status::status(&target, Access::Read, &sources(), &mut |_| {}).unwrap();
    let db = status.containers.iter().find(|c| c.name == "db").unwrap();
    let backup = db.backup.as_ref().unwrap();
    assert_eq!(backup.timer.as_deref(), Some("ctm-backup-db.timer"));
    assert_eq!(backup.to.as_deref(), Some("/srv/backups"));
    assert_eq!(backup.timer_active, Some(true));
    assert_eq!(
        (backup.last_result.as_deref(), backup.last_run_failed),
        (None, None)
    );
    assert_eq!(backup.last, None);
    assert!(db.drift_actions.is_empty(), "{:?}", db.drift_actions);
    // Neither a block nor archives: no backup part.
    let web = status.containers.iter().find(|c| c.name == "web").unwrap();
    assert_eq!(web.backup, None);

    // An archive in the block's directory (as the root sees it), the
    // timer's run failed, and the timer stopped by hand.
    let dir = h.root().join("srv/backups");
    std::fs::create_dir_all(&dir).unwrap();
    for id in ["20261201T030000Z", "20261203T030000Z"] {
        std::fs::write(dir.join(format!("db-{id}.ctm-backup.tar.zst")), b"12345").unwrap();
    }
    h.fake.timer_ran("db", "exit-code");
    h.fake.stop_timer("ctm-backup-db.timer");
    let status =
        ctm::engine::status::status(&target, Access::Read, &sources(), &mut |_| {}).unwrap();
    let db = status.containers.iter().find(|c| c.name == "db").unwrap();
    let backup = db.backup.as_ref().unwrap();
    assert_eq!(backup.timer_active, Some(false));
    assert_eq!(backup.last_result.as_deref(), Some("exit-code"));
    assert_eq!(backup.last_run_failed, Some(true));
    let last = backup.last.as_ref().unwrap();
    assert_eq!(last.id, "20261203T030000Z");
    assert_eq!(last.bytes, 5);
    assert_eq!(
        db.drift_actions,
        ["start ctm-backup-db.timer: not active (drift)"]
    );
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(
        json["containers"][0]["backup"]["last"]["id"],
        "20261203T030000Z"
    );

    // The plan of the same host file starts the timer, and names the backup.
    let mut session = Session::open(&target, Access::Read, &mut |_| {}).unwrap();
    let desired = h.desired();
    let (plan, _) = session
        .plan_and_state(&desired.artifacts, Options::default(), &mut |_| {})
        .unwrap();
    drop(session);
    let summaries: Vec<String> = plan.actions.iter().map(|a| a.summary()).collect();
    assert_eq!(summaries, ["backup timers: start ctm-backup-db.timer"]);
    let text = ctm::plan::render::text(&plan, "Plan", ctm::plan::render::Show::NoDiffs);
    assert!(
        text.contains("container db: last backup 20261203T030000Z"),
        "{text}"
    );
    assert!(
        text.contains("the last run of ctm-backup-db.timer failed (exit-code)"),
        "{text}"
    );

    // Apply puts it right; the health check passes.
    h.fake.take_calls();
    h.apply(None).unwrap();
    let calls = h.fake.take_calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("perform: backup timers: start ctm-backup-db.timer")),
        "{calls:?}"
    );
    let status =
        ctm::engine::status::status(&target, Access::Read, &sources(), &mut |_| {}).unwrap();
    let db = status.containers.iter().find(|c| c.name == "db").unwrap();
    assert_eq!(db.backup.as_ref().unwrap().timer_active, Some(true));
    assert!(db.drift_actions.is_empty());
}

/// examples/topology.kdl: routers r1 and r2 on network ab (bridge br-ab)
/// with a link between them, all in topology bgp; web on lan, outside it.
const TOPOLOGY_HOST: &str = include_str!("../examples/topology.kdl");

fn names<const N: usize>(list: [&str; N]) -> std::collections::BTreeSet<String> {
    list.iter().map(|n| n.to_string()).collect()
}

#[test]
fn a_topology_goes_down_and_up_as_applies_and_a_rollback_returns_to_the_set_before() {
    use ctm::engine::topologies::{self, Direction};
    use ctm::model::Name;
    use ctm::state::Store;
    let h = Host::with(TOPOLOGY_HOST);
    assert_eq!(h.apply(None).unwrap(), Applied::Generation(1));
    assert_eq!(h.fake.running(), names(["r1", "r2", "web"]));
    h.fake.take_calls();
    let target = h.target();
    let store = Store::new(&h.root());
    let files =
        |n: u64| -> Vec<String> { store.manifest(n).unwrap().files.keys().cloned().collect() };
    // What the web shows first (a read-only plan) is what the apply plans.
    let shown =
        topologies::plan(&target, "bgp", Direction::Down, Access::Read, &mut |_| {}).unwrap();
    assert!(h.fake.take_calls().iter().all(|c| c == "observe"));
    // The files of its members that it drops say why: the topology is
    // down, not gone from the host file.
    let dropped: Vec<_> = shown
        .files
        .iter()
        .filter(|f| f.change == ctm::plan::Change::Destroy && f.owner != ctm::compile::Owner::Host)
        .collect();
    assert!(!dropped.is_empty(), "{:?}", shown.files);
    for f in dropped {
        assert_eq!(
            f.reason, "left out while topology bgp is down",
            "{}",
            f.path
        );
    }
    let moved = |direction, seen: Option<&str>| {
        let seen = seen.map(|fingerprint| apply::Seen {
            fingerprint,
            from_generation: None,
            when: "the plan was shown".into(),
            what: "the host",
        });
        let prepared = topologies::prepare(&target, "bgp", direction, seen.as_ref(), &mut |_| {})?;
        apply::apply(&target, prepared, None, Runner::Foreground, &mut |_| {})
    };
    let stale = moved(Direction::Down, Some("stale"))
        .unwrap_err()
        .to_string();
    assert!(stale.contains("stale plan"), "{stale}");
    assert_eq!(h.current(), Some(1));
    h.fake.take_calls();

    // Down: r1 and r2 stop, br-ab and the link go; web is not touched.
    assert_eq!(
        moved(Direction::Down, Some(&shown.fingerprint)).unwrap(),
        Applied::Generation(2)
    );
    let calls = h.fake.take_calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("perform: stop container r1 + stop container r2")),
        "{calls:#?}"
    );
    assert!(
        calls.iter().any(|c| c.contains("delete links br-ab")),
        "{calls:#?}"
    );
    assert!(
        !calls.iter().any(|c| c.contains("container web")),
        "{calls:#?}"
    );
    assert_eq!(h.fake.running(), names(["web"]));
    let bgp = Name::parse("bgp").unwrap();
    assert_eq!(store.meta(2).unwrap().down, [bgp.clone()].into());
    let gone: Vec<String> = files(1)
        .into_iter()
        .filter(|f| !files(2).contains(f))
        .collect();
    assert!(
        gone.contains(&"etc/systemd/network/50-ctm-br-ab.netdev".to_string())
            && gone.contains(&"etc/systemd/system/ctm-link-r1:to-r2.service".to_string()),
        "{gone:#?}"
    );
    assert!(
        gone.iter()
            .all(|f| !f.contains("web") && !f.contains("br-lan")),
        "{gone:#?}"
    );
    assert!(files(2).contains(&"etc/systemd/nspawn/r1.nspawn".to_string()));
    let list = topologies::list(&target).unwrap();
    assert_eq!((list[0].name.as_str(), list[0].down), ("bgp", true));
    assert_eq!(list[0].containers, ["r1", "r2"]);
    // Down again: nothing to change, no new generation.
    assert_eq!(moved(Direction::Down, None).unwrap(), Applied::NoChanges);
    assert_eq!(h.current(), Some(2));
    h.fake.take_calls();

    // Up: they start again, with the files of the first generation.
    assert_eq!(moved(Direction::Up, None).unwrap(), Applied::Generation(3));
    let calls = h.fake.take_calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("perform: start container r1 + start container r2")),
        "{calls:#?}"
    );
    assert!(
        !calls.iter().any(|c| c.contains("container web")),
        "{calls:#?}"
    );
    assert_eq!(h.fake.running(), names(["r1", "r2", "web"]));
    assert!(store.meta(3).unwrap().down.is_empty());
    assert_eq!(files(3), files(1));
    assert!(!topologies::list(&target).unwrap()[0].down);

    // A rollback to generation 2 returns to its down set.
    let prepared = apply::prepare_rollback(&target, Some(2), None, &mut |_| {}).unwrap();
    apply::roll_back(&target, prepared, Runner::Foreground, &mut |_| {}).unwrap();
    assert_eq!(h.current(), Some(2));
    assert_eq!(store.current_down().unwrap(), [bgp].into());
    assert!(topologies::list(&target).unwrap()[0].down);
    assert_eq!(h.fake.running(), names(["web"]));

    // A topology the generation does not have.
    let e = topologies::plan(
        &target,
        "nosuch",
        Direction::Down,
        Access::Read,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(
            e.downcast_ref::<ctm::engine::Refused>(),
            Some(ctm::engine::Refused::NoSuchTopology { .. })
        ),
        "{e}"
    );
}

/// HOST with volume `data` mounted by both containers, applied, and the
/// volume made as ctm makes it (the recording fake performs nothing),
/// holding `table`.
fn with_shared_volume(table: &str) -> Host {
    let h = Host::new();
    h.edit(
        "container \"web\" {\n",
        "volume \"data\"\ncontainer \"web\" {\n    volume \"data\" \"/srv/data\"\n",
    );
    h.edit(
        "container \"db\" {\n",
        "container \"db\" {\n    volume \"data\" \"/var/lib/db\"\n",
    );
    h.apply(None).unwrap();
    h.fake.take_calls();
    ctm::backend::volumes::create(&h.root(), "data", None, &mut |_| {}).unwrap();
    std::fs::write(h.volume().join("table"), table).unwrap();
    h
}

impl Host {
    fn volume(&self) -> PathBuf {
        ctm::backend::volumes::path(&self.root(), "data")
    }

    fn table(&self) -> String {
        std::fs::read_to_string(self.volume().join("table")).unwrap()
    }
}

/// The archives of volume `data` in `dir`, oldest first.
fn volume_archives(dir: &std::path::Path) -> Vec<PathBuf> {
    let subject = ctm::backend::archive::Subject::Volume("data".into());
    ctm::backend::archive::list(dir, &subject)
        .into_iter()
        .map(|l| l.path)
        .collect()
}

/// Every container that mounts the volume is frozen for the copy and
/// thawed after; the archive verifies whole and holds the volume alone;
/// the copy it was made from is gone; the oldest beyond `keep` are
/// deleted only once the new one is whole, and a backup that fails
/// deletes none.
#[test]
fn a_volumes_backup_freezes_its_containers_verifies_and_prunes_only_after_success() {
    use ctm::backend::archive::{self, Subject};
    use ctm::engine::backups::{self, BackupOptions};
    use ctm::model::Name;
    let h = with_shared_volume("v1");
    let data = Name::parse("data").unwrap();
    let dir = h.dir.path().join("backups");
    let keep = |keep| BackupOptions {
        to: Some(dir.clone()),
        keep,
        stop: false,
    };

    let first = backups::backup_volume(&h.target(), &data, &keep(None), &mut |_| {}).unwrap();
    let mut calls = h.fake.take_calls();
    let resumes = calls.split_off(2);
    calls.sort();
    assert_eq!(calls, ["pause db", "pause web"], "{resumes:?}");
    let mut resumes = resumes;
    resumes.sort();
    assert_eq!(resumes, ["resume db", "resume web"]);
    assert_eq!(first.subject, Subject::Volume("data".into()));
    assert!(first.pruned.is_empty());
    let verified = archive::verify(&first.path, &mut |_| {}).unwrap();
    assert_eq!(verified.manifest.subject, Subject::Volume("data".into()));
    assert_eq!(verified.manifest.volumes, ["data"]);
    assert!(verified.host.is_empty());
    assert_eq!(verified.manifest.bytes, 2);
    assert!(
        !h.root()
            .join("var/lib/ctm/volumes/.#data.ctm-backing-up")
            .exists()
    );

    let mut made = vec![first.path];
    for _ in 0..2 {
        let m = backups::backup_volume(&h.target(), &data, &keep(None), &mut |_| {}).unwrap();
        made.push(m.path);
    }
    assert_eq!(volume_archives(&dir), made);
    let newest = backups::backup_volume(&h.target(), &data, &keep(Some(2)), &mut |_| {}).unwrap();
    assert_eq!(newest.pruned, made[..2]);
    made.push(newest.path.clone());
    assert_eq!(volume_archives(&dir), made[2..]);
    // Listed as the command lists them.
    let listed = backups::list_volume(&h.target(), &data, Some(&dir)).unwrap();
    assert_eq!(
        listed.into_iter().map(|l| l.path).collect::<Vec<_>>(),
        made[2..]
    );

    // A backup that fails (the volume is gone) deletes no archive.
    std::fs::rename(h.volume(), h.dir.path().join("away")).unwrap();
    let e = backups::backup_volume(&h.target(), &data, &keep(Some(1)), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("volume data does not exist"), "{e}");
    assert_eq!(volume_archives(&dir), made[2..]);
}

/// A restore is refused while a container that mounts the volume runs,
/// and changes nothing; once none runs, the volume as it is is kept as a
/// new archive and the backup swapped in. Restoring the kept archive
/// undoes the restore.
#[test]
fn a_volumes_restore_waits_for_its_containers_and_keeps_what_it_replaces() {
    use ctm::engine::backups::{self, BackupOptions};
    use ctm::engine::containers::{Verb, act};
    use ctm::model::Name;
    let h = with_shared_volume("v1");
    let data = Name::parse("data").unwrap();
    let dir = h.dir.path().join("backups");
    let options = BackupOptions {
        to: Some(dir.clone()),
        ..BackupOptions::default()
    };
    let backup = backups::backup_volume(&h.target(), &data, &options, &mut |_| {}).unwrap();
    std::fs::write(h.volume().join("table"), "v2").unwrap();
    std::fs::write(h.volume().join("new"), "new").unwrap();
    h.fake.take_calls();

    let e = backups::restore_volume(&h.target(), &data, &backup.path, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert_eq!(e, "volume data is mounted by container db, which runs");
    assert_eq!(h.table(), "v2");
    assert_eq!(volume_archives(&dir), std::slice::from_ref(&backup.path));
    assert!(h.fake.take_calls().is_empty());

    for name in ["web", "db"] {
        act(
            &h.target(),
            Verb::Stop,
            &Name::parse(name).unwrap(),
            &mut |_| {},
        )
        .unwrap();
    }
    assert!(h.fake.running().is_empty());
    h.fake.take_calls();
    let restored = backups::restore_volume(&h.target(), &data, &backup.path, &mut |_| {}).unwrap();
    assert_eq!(h.table(), "v1");
    assert!(!h.volume().join("new").exists());
    // Nothing was asked of the system: no container is started by it.
    assert!(h.fake.take_calls().is_empty());
    assert_eq!(restored.id, backup.id);
    let kept = restored.kept.path.clone();
    assert_eq!(kept.parent(), Some(dir.as_path()));
    assert_eq!(volume_archives(&dir), [backup.path.clone(), kept.clone()]);
    assert!(
        !h.root()
            .join("var/lib/ctm/volumes/.#data.ctm-restoring")
            .exists()
    );
    // Still ctm's volume: the plan has nothing to do about it.
    assert!(ctm::backend::volumes::made_by_ctm(&h.root(), "data").is_some());

    let undone = backups::restore_volume(&h.target(), &data, &kept, &mut |_| {}).unwrap();
    assert_eq!(h.table(), "v2");
    assert_eq!(
        std::fs::read_to_string(h.volume().join("new")).unwrap(),
        "new"
    );
    assert_eq!(volume_archives(&dir).len(), 3, "{undone:?}");
}

/// A plan and the status show each volume with what it holds, its quota
/// and its newest archive; the status names its timer and its last run.
#[test]
fn plan_and_status_show_each_volume_with_its_usage_quota_and_last_backup() {
    let h = Host::new();
    h.edit(
        "container \"web\" {\n",
        "volume \"data\" {\n    backup {\n        to \"/srv/backups\"\n        \
         every \"daily\"\n        keep 3\n    }\n}\nvolume \"logs\"\n\
         container \"web\" {\n    volume \"data\" \"/srv/data\"\n    volume \"logs\" \"/var/log/web\"\n",
    );
    h.apply(None).unwrap();
    // A quota the file system here cannot enforce: planned, not applied.
    h.edit(
        "volume \"data\" {\n",
        "volume \"data\" {\n    quota \"8M\"\n",
    );
    let target = h.target();
    let plan_of = || {
        let mut session = Session::open(&target, Access::Read, &mut |_| {}).unwrap();
        let (plan, _) = session
            .plan_and_state(&h.desired().artifacts, Options::default(), &mut |_| {})
            .unwrap();
        plan
    };
    // Not made (the fake performs nothing), no archive.
    let plan = plan_of();
    type Row<'a> = (&'a str, Option<u64>, Option<u64>, Option<&'a str>);
    let names: Vec<Row> = plan
        .volumes
        .iter()
        .map(|v| (v.name.as_str(), v.quota, v.used, v.timer.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            (
                "data",
                Some(8 << 20),
                None,
                Some("ctm-volume-backup-data.timer")
            ),
            ("logs", None, None, None)
        ]
    );

    // Made, holding 64 KiB (measured once: the count is reused for a
    // minute).
    ctm::backend::volumes::create(&h.root(), "data", None, &mut |_| {}).unwrap();
    std::fs::write(h.volume().join("blob"), vec![7u8; 64 << 10]).unwrap();
    let plan = plan_of();
    assert!(
        plan.volumes[0].used.is_some_and(|u| u >= 64 << 10),
        "{:?}",
        plan.volumes
    );
    assert_eq!(plan.volumes[0].last, None);
    let fingerprint = plan.fingerprint.clone();

    // Two archives and more data; the timer's last run failed.
    std::fs::write(h.volume().join("more"), vec![7u8; 64 << 10]).unwrap();
    let dir = h.root().join("srv/backups");
    std::fs::create_dir_all(&dir).unwrap();
    for id in ["20261201T030000Z", "20261203T030000Z"] {
        std::fs::write(dir.join(format!("data-{id}.ctm-volume.tar.zst")), b"123456").unwrap();
    }
    // A container's archive of the same name is not the volume's.
    std::fs::write(dir.join("data-20261209T030000Z.ctm-backup.tar.zst"), b"1").unwrap();
    h.fake.volume_timer_ran("data", "exit-code");
    let plan = plan_of();
    let data = &plan.volumes[0];
    let last = data.last.as_ref().unwrap();
    assert_eq!((last.id.as_str(), last.bytes), ("20261203T030000Z", 6));
    assert_eq!(data.last_run.as_ref().unwrap().result, "exit-code");
    // Data written and backups made change nothing an apply does.
    assert_eq!(plan.fingerprint, fingerprint);
    let text = ctm::plan::render::text(&plan, "Plan", ctm::plan::render::Show::NoDiffs);
    assert!(text.contains("\nVolumes:\n"), "{text}");
    // Red: its timer's last run failed.
    assert!(
        text.contains("volume data: 0.1 MB used, quota 8M; last backup 20261203T030000Z"),
        "{text}"
    );
    assert!(
        text.contains("the last run of ctm-volume-backup-data.timer failed (exit-code)"),
        "{text}"
    );
    assert!(
        text.contains("  volume logs: not made yet, no quota; no backup yet"),
        "{text}"
    );
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["volumes"][0]["name"], "data");
    assert_eq!(json["volumes"][0]["quota"], 8 << 20);
    assert_eq!(json["volumes"][0]["last"]["id"], "20261203T030000Z");
    assert!(json["volumes"][0]["used"].as_u64().is_some(), "{json}");

    let status =
        ctm::engine::status::status(&target, Access::Read, &sources(), &mut |_| {}).unwrap();
    let data = status.volumes.iter().find(|v| v.name == "data").unwrap();
    // The generation's quota: none.
    assert_eq!(data.quota, None);
    assert!(data.used.is_some_and(|u| u >= 64 << 10));
    let backup = data.backup.as_ref().unwrap();
    assert_eq!(
        backup.timer.as_deref(),
        Some("ctm-volume-backup-data.timer")
    );
    assert_eq!(backup.to.as_deref(), Some("/srv/backups"));
    assert_eq!(backup.timer_active, Some(true));
    assert_eq!(backup.last_result.as_deref(), Some("exit-code"));
    assert_eq!(backup.last_run_failed, Some(true));
    assert_eq!(backup.last.as_ref().unwrap().id, "20261203T030000Z");
    let logs = status.volumes.iter().find(|v| v.name == "logs").unwrap();
    assert_eq!(logs.backup, None);
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(
        json["volumes"][0]["backup"]["last"]["id"],
        "20261203T030000Z"
    );
    assert!(json["volumes"][1].get("backup").is_none(), "{json}");

    // A volume's timer stopped by hand is drift the plan puts right.
    h.fake.stop_timer("ctm-volume-backup-data.timer");
    let status =
        ctm::engine::status::status(&target, Access::Read, &sources(), &mut |_| {}).unwrap();
    let data = status.volumes.iter().find(|v| v.name == "data").unwrap();
    assert_eq!(data.backup.as_ref().unwrap().timer_active, Some(false));
    assert!(
        data.drift.contains(
            &"ctm-volume-backup-data.timer is not active: the next apply starts it".to_string()
        ),
        "{:?}",
        data.drift
    );
    let summaries: Vec<String> = plan_of()
        .actions
        .iter()
        .map(|a| a.summary())
        .filter(|a| a.starts_with("backup timers"))
        .collect();
    assert_eq!(
        summaries,
        ["backup timers: start ctm-volume-backup-data.timer"]
    );
}
