//! The status document: what `ctm status --json` prints and the web
//! dashboard shows (`GET /api/status`), one typed document for both
//! (docs/status.md describes every field).
//!
//! A pure function of the current generation (its expectations, and the
//! host file stored with it when that still validates), the plan back to
//! it (which names every drifted file and stopped container), and what
//! the running system reports. On a files-only root the live parts are
//! `null`: unknown, not "stopped".

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::backend::ContainerLive;
use crate::backend::cgroups::{Resources, Usage};
use crate::backend::volumes::Measured;
use crate::compile::Owner;
use crate::compile::health::Health;
use crate::model::Host;
use crate::plan::render::owner_label;
use crate::plan::{Action, Change, Conflict, Plan, Present, SystemState};
use crate::state::{Meta, PendingConfirm};

/// A file that differs from what the current generation wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriftedFile {
    pub path: String,
    /// `container web`, `network lan`, `firewall`, `host`.
    pub owner: String,
    pub change: Change,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerStatus {
    pub name: String,
    /// From the host file stored with the generation (`null` if it no
    /// longer validates: see `notes`).
    pub image: Option<String>,
    pub network: Option<String>,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    /// `tcp 8080 → 80`.
    pub forwards: Vec<String>,
    pub docker: bool,
    pub nested: bool,
    pub autostart: bool,
    /// The addresses the host file (and lock file) give it.
    pub addresses: Vec<IpAddr>,
    /// machined's state (`running`, `opening`, `closing`, or `stopped`),
    /// or `paused` when its processes are frozen (`ctm pause`); `null` on
    /// a files-only root.
    pub state: Option<String>,
    /// `systemd-nspawn@NAME.service`'s active and sub state.
    pub unit: Option<String>,
    /// When the unit last became active, microseconds since the epoch.
    pub since_usec: Option<u64>,
    /// The addresses machined sees inside the container.
    pub live_addresses: Option<Vec<IpAddr>>,
    /// CPU time and memory from its cgroup, while it runs.
    pub usage: Option<Usage>,
    /// Its files that differ from the generation.
    pub drift: Vec<DriftedFile>,
    /// What an apply would do to it besides files: start it, because it
    /// should run and does not; start its backup timer, stopped by hand.
    pub drift_actions: Vec<String>,
    /// Its backups, when it has a `backup` block or archives (left out
    /// otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,
}

/// A container's backups: its `backup` block's timer, and its newest
/// archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupStatus {
    /// The timer of its `backup` block (`ctm-backup-web.timer`); `null`
    /// without one.
    pub timer: Option<String>,
    /// The directory the block's archives go into.
    pub to: Option<String>,
    /// Whether the timer is active; `null` without a block, or on a
    /// files-only root.
    pub timer_active: Option<bool>,
    /// How the timer's service last ran, as systemd's `Result` says it
    /// (`success`, `exit-code`, `signal`, `timeout`…); `null` when it has
    /// not run since boot, or on a files-only root.
    pub last_result: Option<String>,
    /// Whether that last run failed; `null` when not known.
    pub last_run_failed: Option<bool>,
    /// The newest archive, in the block's directory or the default one.
    pub last: Option<crate::plan::LastBackup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkStatus {
    pub name: String,
    /// `bridge`, `gre`, `ip6gre`.
    pub kind: String,
    pub addresses: Vec<String>,
    /// The link's addresses now; `null` on a files-only root, empty if
    /// the link does not exist.
    pub live_addresses: Option<Vec<String>>,
    pub exists: Option<bool>,
    /// Its files that differ, and addresses it lacks.
    pub drift: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkStatus {
    pub name: String,
    pub bridge: String,
    pub ipv4: Option<String>,
    pub ipv4_nat: bool,
    pub ipv6: Option<String>,
    pub ipv6_nat: bool,
    /// How many containers are attached.
    pub containers: usize,
    pub link: Option<LinkStatus>,
    pub drift: Vec<DriftedFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelStatus {
    pub name: String,
    pub local: String,
    pub remote: String,
    pub addresses: Vec<String>,
    pub link: Option<LinkStatus>,
    pub drift: Vec<DriftedFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeStatus {
    pub name: String,
    /// Where it is on the host (`/var/lib/ctm/volumes/NAME`).
    pub path: String,
    /// `btrfs subvolume` or `directory`; `null` while ctm has not made it.
    pub kind: Option<String>,
    /// The quota the generation sets, in bytes (`null`: none).
    pub quota: Option<u64>,
    /// What it holds, in bytes: its project's usage where it has a project
    /// quota, else its files' blocks counted like `du`; `null` while ctm
    /// has not made it.
    pub used: Option<u64>,
    /// The containers of the generation that mount it.
    pub containers: Vec<String>,
    /// No longer in the generation: kept until `ctm apply --prune`.
    pub kept: bool,
    /// How it differs from the generation: missing, not ctm's, another
    /// quota.
    pub drift: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub files: Vec<DriftedFile>,
    pub conflicts: Vec<Conflict>,
    /// What an apply of the current generation would do.
    pub actions: Vec<Action>,
    /// How `table inet ctm` differs (empty: as applied, or unknown).
    pub firewall: Vec<String>,
}

/// A generation rolled back because nobody confirmed it in time, newer
/// than the one the host is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unconfirmed {
    pub generation: u64,
    /// When (Unix seconds).
    pub at: u64,
    pub back_to: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The root ctm manages (`/` for the running system).
    pub root: String,
    /// The host file `ctm serve` edits; `null` for `ctm status`.
    pub host_file: Option<String>,
    /// Whether the running system is driven (false: files only).
    pub live: bool,
    /// Why live columns are empty, when they are.
    pub live_note: Option<String>,
    /// Why there are no logs to read, when there are none.
    pub logs_note: Option<String>,
    /// On `/`: why the running system cannot be driven (no systemd as
    /// PID 1, no D-Bus…), so that ctm manages files only.
    pub files_only_reason: Option<String>,
    /// When this was sampled (milliseconds since the epoch), for rates.
    pub sampled_at_ms: u64,
    /// The current generation; `null` before the first apply.
    pub generation: Option<Meta>,
    pub pending_confirm: Option<PendingConfirm>,
    pub unconfirmed: Option<Unconfirmed>,
    /// Whether the host file differs from the one the generation was
    /// made from (`null` without a host file, or before the first apply).
    pub host_file_changed: Option<bool>,
    pub containers: Vec<ContainerStatus>,
    pub networks: Vec<NetworkStatus>,
    pub tunnels: Vec<TunnelStatus>,
    /// Every bridge and tunnel of the generation.
    pub links: Vec<LinkStatus>,
    /// The generation's volumes, and those ctm made that it no longer has
    /// (left out when there are none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeStatus>,
    /// The generation's topologies, up or down (left out when there are
    /// none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub topologies: Vec<TopologyStatus>,
    pub drift: Drift,
    /// Things worth knowing that are not drift (a stored host file that
    /// no longer validates).
    pub notes: Vec<String>,
}

/// A topology of the generation (`ctm up`, `ctm down`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopologyStatus {
    pub name: String,
    pub down: bool,
    pub networks: Vec<String>,
    pub containers: Vec<String>,
    /// Links by their ends, `r1–r2`.
    pub links: Vec<String>,
}

/// The topologies a generation's expectations name, by name.
pub fn topologies(expect: &Health) -> Vec<TopologyStatus> {
    expect
        .topologies
        .iter()
        .map(|(name, t)| TopologyStatus {
            name: name.clone(),
            down: t.down,
            networks: t.networks.clone(),
            containers: t.containers.clone(),
            links: t.links.clone(),
        })
        .collect()
}

/// What the status is made of.
pub struct Inputs<'a> {
    pub root: String,
    pub host_file: Option<String>,
    pub host_file_changed: Option<bool>,
    pub files_only_reason: Option<String>,
    pub sampled_at_ms: u64,
    pub generation: Option<&'a Meta>,
    pub pending_confirm: Option<&'a PendingConfirm>,
    pub unconfirmed: Option<Unconfirmed>,
    /// The host file stored with the generation, validated; `None`
    /// before the first apply or when it no longer validates.
    pub host: Option<&'a Host>,
    pub notes: Vec<String>,
    pub expect: &'a Health,
    /// The plan from the live host back to the current generation.
    pub plan: &'a Plan,
    pub system: &'a SystemState,
    /// `None` on a files-only root.
    pub containers: Option<&'a BTreeMap<String, ContainerLive>>,
    pub resources: &'a dyn Resources,
    /// The volumes ctm made that are there, measured.
    pub volumes: &'a BTreeMap<String, Measured>,
}

/// The note shown in live columns when the system cannot be asked.
pub const FILES_ONLY: &str = "unknown: files-only root";

/// The note shown where logs would be.
pub const LOGS_NEED_LIVE: &str = "logs need the live system: this root is not the running system, \
     so there is no journal of its containers to read";

pub fn status(input: &Inputs<'_>) -> Status {
    let live = input.containers.is_some();
    let files: Vec<DriftedFile> = input
        .plan
        .files
        .iter()
        .map(|f| DriftedFile {
            path: f.path.clone(),
            owner: owner_label(&f.owner),
            change: f.change,
            reason: f.reason.clone(),
        })
        .collect();
    let drift_of = |owner: &Owner| -> Vec<DriftedFile> {
        let label = owner_label(owner);
        files.iter().filter(|f| f.owner == label).cloned().collect()
    };
    let mut container_actions: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for name in input.expect.backups.keys() {
        let timer = crate::layout::backup_timer(name);
        let idle = input
            .system
            .backup_timers
            .as_ref()
            .is_some_and(|t| t.get(&timer) == Some(&false));
        if idle {
            container_actions
                .entry(name)
                .or_default()
                .push(format!("start {timer}: not active (drift)"));
        }
    }
    let mut firewall = Vec::new();
    for action in &input.plan.actions {
        match action {
            Action::StartContainer { name, reason } | Action::RestartContainer { name, reason } => {
                container_actions
                    .entry(name)
                    .or_default()
                    .push(reason.clone());
            }
            Action::ReplaceFirewall { reason } if input.system.firewall.is_some() => {
                firewall.push(reason.clone())
            }
            Action::ReloadLoopbackForwards { reason, .. } if input.system.sockets.is_some() => {
                firewall.push(reason.clone())
            }
            _ => {}
        }
    }
    let links: Vec<LinkStatus> = input
        .expect
        .links
        .iter()
        .map(|(name, l)| link_status(input, name, l, &files))
        .collect();
    let link_of = |name: &str| links.iter().find(|l| l.name == name).cloned();

    let containers = input
        .expect
        .containers
        .iter()
        .map(|(name, c)| {
            let model = input
                .host
                .and_then(|h| h.containers.values().find(|m| m.name.as_str() == name));
            let net = model.and_then(|m| m.network.as_ref());
            let known = input.containers.map(|all| {
                all.get(name).cloned().unwrap_or(ContainerLive {
                    state: "stopped".into(),
                    unit: "unknown".into(),
                    since_usec: 0,
                    addresses: Vec::new(),
                    paused: false,
                })
            });
            let owner = model.map_or_else(
                || crate::model::Name::parse(name).map(Owner::Container).ok(),
                |m| Some(Owner::Container(m.name.clone())),
            );
            ContainerStatus {
                name: name.clone(),
                image: model.map(|m| m.image.to_string()),
                network: net.map(|a| a.network.to_string()),
                ipv4: net.and_then(|a| a.ipv4).map(|a| a.to_string()),
                ipv6: net.and_then(|a| a.ipv6).map(|a| a.to_string()),
                forwards: model.map_or_else(Vec::new, |m| {
                    m.forwards
                        .iter()
                        .map(|f| {
                            format!(
                                "{} {} → {}",
                                f.protocol.as_str(),
                                f.host.get(),
                                f.container.get()
                            )
                        })
                        .collect()
                }),
                docker: model.is_some_and(|m| m.docker),
                nested: model.is_some_and(|m| m.nested),
                autostart: c.autostart,
                addresses: c.addresses.clone(),
                state: known.as_ref().map(|l| {
                    if l.paused {
                        "paused".to_string()
                    } else {
                        l.state.clone()
                    }
                }),
                unit: known.as_ref().map(|l| l.unit.clone()),
                since_usec: known.as_ref().map(|l| l.since_usec),
                live_addresses: known.as_ref().map(|l| l.addresses.clone()),
                usage: input.resources.usage(name),
                drift: owner.as_ref().map_or_else(Vec::new, drift_of),
                drift_actions: dedup(container_actions.remove(name.as_str()).unwrap_or_default()),
                backup: backup_status(input, name),
            }
        })
        .collect();
    let (networks, tunnels) = match input.host {
        None => (Vec::new(), Vec::new()),
        Some(host) => (
            host.networks
                .values()
                .map(|n| NetworkStatus {
                    name: n.name.to_string(),
                    bridge: n.bridge.to_string(),
                    ipv4: n.ipv4.map(|s| s.address.to_string()),
                    ipv4_nat: n.ipv4.is_some_and(|s| s.nat),
                    ipv6: n.ipv6.map(|s| s.address.to_string()),
                    ipv6_nat: n.ipv6.is_some_and(|s| s.nat),
                    containers: host
                        .containers
                        .values()
                        .filter(|c| c.network.as_ref().is_some_and(|a| a.network == n.name))
                        .count(),
                    link: link_of(n.bridge.as_str()),
                    drift: drift_of(&Owner::Network(n.name.clone())),
                })
                .collect(),
            host.tunnels
                .values()
                .map(|t| TunnelStatus {
                    name: t.name.to_string(),
                    local: t.local.to_string(),
                    remote: t.remote().to_string(),
                    addresses: t.addresses.iter().map(ToString::to_string).collect(),
                    link: link_of(t.name.as_str()),
                    drift: drift_of(&Owner::Tunnel(t.name.clone())),
                })
                .collect(),
        ),
    };
    Status {
        root: input.root.clone(),
        host_file: input.host_file.clone(),
        live,
        live_note: (!live).then(|| FILES_ONLY.to_string()),
        logs_note: (!live).then(|| LOGS_NEED_LIVE.to_string()),
        files_only_reason: input.files_only_reason.clone(),
        sampled_at_ms: input.sampled_at_ms,
        generation: input.generation.cloned(),
        pending_confirm: input.pending_confirm.cloned(),
        unconfirmed: input.unconfirmed.clone(),
        host_file_changed: input.host_file_changed,
        containers,
        networks,
        tunnels,
        links,
        volumes: volumes(input),
        topologies: topologies(input.expect),
        drift: Drift {
            files,
            conflicts: input.plan.conflicts.clone(),
            actions: input.plan.actions.clone(),
            firewall,
        },
        notes: input.notes.clone(),
    }
}

/// The generation's volumes, then those it no longer has, each with what
/// it holds and how it differs.
fn volumes(input: &Inputs<'_>) -> Vec<VolumeStatus> {
    let other = |name: &str| {
        input
            .system
            .volumes
            .as_ref()
            .is_some_and(|v| v.present.get(name) == Some(&Present::Other))
    };
    let wanted = input.expect.volumes.iter().map(|(name, v)| {
        let measured = input.volumes.get(name);
        let mut drift = Vec::new();
        match measured {
            None if other(name) => drift.push(
                "something ctm did not make is at its path: a conflict, the next apply is refused"
                    .to_string(),
            ),
            None => drift.push("missing: the next apply makes it".to_string()),
            Some(m) if m.quota != v.quota => drift.push(format!(
                "its quota is {}, the generation sets {}",
                quota_text(m.quota),
                quota_text(v.quota)
            )),
            Some(_) => {}
        }
        (name, v.quota, v.containers.clone(), false, measured, drift)
    });
    let kept = input
        .volumes
        .iter()
        .filter(|(name, _)| !input.expect.volumes.contains_key(*name))
        .map(|(name, m)| (name, m.quota, Vec::new(), true, Some(m), Vec::new()));
    wanted
        .chain(kept)
        .map(
            |(name, quota, containers, kept, measured, drift)| VolumeStatus {
                name: name.clone(),
                path: crate::layout::volume_path(name),
                kind: measured.map(|m| m.kind.describe().to_string()),
                quota,
                used: measured.map(|m| m.used),
                containers,
                kept,
                drift,
            },
        )
        .collect()
}

/// Container `name`'s backups, when it has a `backup` block or archives.
fn backup_status(input: &Inputs<'_>, name: &str) -> Option<BackupStatus> {
    let block = input.expect.backups.get(name);
    let last = input.system.last_backups.get(name).cloned();
    if block.is_none() && last.is_none() {
        return None;
    }
    let timer = block.map(|_| crate::layout::backup_timer(name));
    let run = input
        .system
        .timer_runs
        .get(name)
        .filter(|r| block.is_some() && r.last_trigger_usec != 0);
    Some(BackupStatus {
        timer_active: match (&timer, &input.system.backup_timers) {
            (Some(timer), Some(timers)) => timers.get(timer).copied(),
            _ => None,
        },
        timer,
        to: block.map(|b| b.to.clone()),
        last_result: run.map(|r| r.result.clone()),
        last_run_failed: run.map(crate::plan::TimerRun::failed),
        last,
    })
}

fn quota_text(quota: Option<u64>) -> String {
    quota.map_or("none".into(), crate::model::size_text)
}

/// A bridge or tunnel: its files that drifted, and on the running system
/// whether it exists with every address.
fn link_status(
    input: &Inputs<'_>,
    name: &str,
    expected: &crate::compile::health::LinkHealth,
    files: &[DriftedFile],
) -> LinkStatus {
    // A link's files are named after it: `50-ctm-NAME.netdev`.
    let mut drift: Vec<String> = files
        .iter()
        .filter(|f| f.owner.starts_with("network ") || f.owner.starts_with("tunnel "))
        .filter(|f| {
            f.path
                .rsplit('/')
                .next()
                .and_then(|file| file.strip_prefix("50-ctm-"))
                .and_then(|file| file.rsplit_once('.'))
                .is_some_and(|(link, _)| link == name)
        })
        .map(|f| format!("{} {}", f.path, f.reason))
        .collect();
    let live = input.system.links.as_ref().map(|links| links.get(name));
    if let Some(live) = live {
        match live {
            None => drift.push("missing".into()),
            Some(have) => drift.extend(
                expected
                    .addresses
                    .iter()
                    .filter(|a| !have.contains(*a))
                    .map(|a| format!("lacks {a}")),
            ),
        }
    }
    LinkStatus {
        name: name.to_string(),
        kind: expected.kind.clone(),
        addresses: expected.addresses.clone(),
        live_addresses: live.map(|l| l.map(|a| a.iter().cloned().collect()).unwrap_or_default()),
        exists: live.map(|l| l.is_some()),
        drift,
    }
}

fn dedup(mut lines: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    lines.retain(|l| seen.insert(l.clone()));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cgroups::NoResources;
    use crate::compile::health::{ContainerHealth, LinkHealth};
    use crate::fs::Entry;
    use crate::plan::{FileChange, Summary};

    fn health() -> Health {
        let mut h = Health::default();
        h.containers.insert(
            "web".into(),
            ContainerHealth {
                autostart: true,
                bridge: Some("br-lan".into()),
                addresses: vec!["10.42.0.10".parse().unwrap()],
                checks: Vec::new(),
                ..ContainerHealth::default()
            },
        );
        h.containers.insert(
            "db".into(),
            ContainerHealth {
                autostart: false,
                ..ContainerHealth::default()
            },
        );
        h.links.insert(
            "br-lan".into(),
            LinkHealth {
                kind: "bridge".into(),
                addresses: vec!["10.42.0.1/24".into()],
            },
        );
        h
    }

    fn empty_plan() -> Plan {
        Plan {
            from_generation: Some(1),
            files: Vec::new(),
            conflicts: Vec::new(),
            actions: Vec::new(),
            provisioning: Vec::new(),
            kept_rootfs: Vec::new(),
            held: Vec::new(),
            unsupported_links: Vec::new(),
            unchecked_links: Vec::new(),
            unenforceable_quotas: Vec::new(),
            kept_volumes: Vec::new(),
            new_roots: Vec::new(),
            unavailable_roots: Vec::new(),
            backups: Vec::new(),
            live_system: true,
            summary: Summary::default(),
            fingerprint: String::new(),
        }
    }

    fn inputs<'a>(
        expect: &'a Health,
        plan: &'a Plan,
        system: &'a SystemState,
        containers: Option<&'a BTreeMap<String, ContainerLive>>,
    ) -> Inputs<'a> {
        Inputs {
            root: "/".into(),
            host_file: None,
            host_file_changed: None,
            files_only_reason: None,
            sampled_at_ms: 0,
            generation: None,
            pending_confirm: None,
            unconfirmed: None,
            host: None,
            notes: Vec::new(),
            expect,
            plan,
            system,
            containers,
            resources: &NoResources,
            volumes: &NO_VOLUMES,
        }
    }

    static NO_VOLUMES: BTreeMap<String, Measured> = BTreeMap::new();

    #[test]
    fn a_files_only_root_knows_nothing_live() {
        let (plan, expect, system) = (empty_plan(), health(), SystemState::default());
        let s = status(&inputs(&expect, &plan, &system, None));
        assert!(!s.live);
        assert_eq!(s.live_note.as_deref(), Some(FILES_ONLY));
        assert!(
            s.containers
                .iter()
                .all(|c| c.state.is_none() && c.drift.is_empty() && c.drift_actions.is_empty())
        );
        assert_eq!(s.links[0].exists, None);
    }

    #[test]
    fn drift_is_attributed_to_its_container_and_link() {
        let mut plan = empty_plan();
        plan.files.push(FileChange {
            path: "etc/systemd/nspawn/web.nspawn".into(),
            change: Change::Change,
            owner: Owner::Container(crate::model::Name::parse("web").unwrap()),
            reason: "changed on disk since ctm wrote it (drift); ctm restores it".into(),
            before: Entry::Absent,
            after: Entry::Absent,
            diff: String::new(),
        });
        plan.actions.push(Action::StartContainer {
            name: "web".into(),
            reason: "stopped, but should be running (drift)".into(),
        });
        let mut running = BTreeMap::new();
        running.insert(
            "db".to_string(),
            ContainerLive {
                state: "running".into(),
                unit: "active/running".into(),
                since_usec: 1,
                addresses: Vec::new(),
                paused: false,
            },
        );
        let system = SystemState {
            containers: Some(BTreeMap::new()),
            links: Some(BTreeMap::new()),
            ..SystemState::default()
        };
        let expect = health();
        let s = status(&inputs(&expect, &plan, &system, Some(&running)));
        let web = s.containers.iter().find(|c| c.name == "web").unwrap();
        assert_eq!(web.state.as_deref(), Some("stopped"));
        assert_eq!(web.drift[0].path, "etc/systemd/nspawn/web.nspawn");
        assert_eq!(
            web.drift[0].reason,
            "changed on disk since ctm wrote it (drift); ctm restores it"
        );
        assert_eq!(
            web.drift_actions,
            ["stopped, but should be running (drift)"]
        );
        let db = s.containers.iter().find(|c| c.name == "db").unwrap();
        assert!(db.drift.is_empty() && db.drift_actions.is_empty());
        assert_eq!(s.links[0].drift, ["missing"]);
        assert_eq!(s.links[0].exists, Some(false));
    }

    #[test]
    fn volumes_show_what_they_hold_and_how_they_differ() {
        use crate::backend::volumes::Kind;
        use crate::compile::health::VolumeHealth;
        use crate::plan::VolumesState;
        let mut expect = health();
        for (name, quota) in [("data", Some(1 << 30)), ("logs", None), ("theirs", None)] {
            expect.volumes.insert(
                name.into(),
                VolumeHealth {
                    quota,
                    containers: vec!["db".into()],
                    backup_to: None,
                },
            );
        }
        let measured = BTreeMap::from([
            (
                "data".to_string(),
                Measured {
                    kind: Kind::BtrfsSubvolume,
                    quota: Some(1 << 20),
                    used: 4096,
                },
            ),
            (
                "old".to_string(),
                Measured {
                    kind: Kind::Directory,
                    quota: None,
                    used: 8192,
                },
            ),
        ]);
        let system = SystemState {
            volumes: Some(VolumesState {
                fs: "btrfs".into(),
                quota: crate::plan::QuotaSupport::Btrfs,
                present: BTreeMap::from([("theirs".to_string(), Present::Other)]),
                no_quota: BTreeMap::new(),
            }),
            ..SystemState::default()
        };
        let plan = empty_plan();
        let mut input = inputs(&expect, &plan, &system, None);
        input.volumes = &measured;
        let s = status(&input);
        type Row<'a> = (&'a str, Option<&'a str>, Option<u64>, bool, Vec<String>);
        let rows: Vec<Row> = s
            .volumes
            .iter()
            .map(|v| {
                (
                    v.name.as_str(),
                    v.kind.as_deref(),
                    v.used,
                    v.kept,
                    v.drift.clone(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (
                    "data",
                    Some("btrfs subvolume"),
                    Some(4096),
                    false,
                    vec!["its quota is 1M, the generation sets 1G".to_string()]
                ),
                (
                    "logs",
                    None,
                    None,
                    false,
                    vec!["missing: the next apply makes it".to_string()]
                ),
                (
                    "theirs",
                    None,
                    None,
                    false,
                    vec![
                        "something ctm did not make is at its path: a conflict, the next apply is refused"
                            .to_string()
                    ]
                ),
                ("old", Some("directory"), Some(8192), true, vec![]),
            ]
        );
        assert_eq!(s.volumes[0].path, "/var/lib/ctm/volumes/data");
        assert_eq!(s.volumes[0].containers, ["db"]);
    }
}
