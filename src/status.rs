//! What `ctm status` (and the web dashboard) shows: each container of the
//! current generation with its live state, addresses, autostart and
//! drift; each bridge and tunnel; the firewall table.
//!
//! A pure function of the current generation's expectations, the plan
//! back to it (which names every drifted file and stopped container), and
//! what the running system reports. On a files-only root the live parts
//! are `None`: unknown, not "stopped".

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::backend::ContainerLive;
use crate::compile::Owner;
use crate::compile::health::Health;
use crate::plan::Plan;
use crate::plan::{Action, SystemState};
use crate::state::{Meta, PendingConfirm};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub name: String,
    pub autostart: bool,
    /// The addresses the host file (and lock file) give it.
    pub addresses: Vec<IpAddr>,
    /// `None` on a files-only root.
    pub live: Option<ContainerLive>,
    /// What differs from the current generation: a changed or missing
    /// file of the container's, or a container that should run but does
    /// not. Empty: as applied.
    pub drift: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    pub name: String,
    pub kind: String,
    pub addresses: Vec<String>,
    /// The link's addresses now; `None` on a files-only root, empty if
    /// the link does not exist.
    pub live_addresses: Option<BTreeSet<String>>,
    pub exists: Option<bool>,
    pub drift: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The current generation; `None` before the first apply.
    pub generation: Option<Meta>,
    pub pending_confirm: Option<PendingConfirm>,
    /// False on a files-only root: nothing live is known.
    pub live_system: bool,
    pub containers: Vec<ContainerStatus>,
    pub links: Vec<LinkStatus>,
    /// What differs in `table inet ctm` (empty: as applied, or unknown on
    /// a files-only root).
    pub firewall_drift: Vec<String>,
    /// Files not owned by a container or a link that differ.
    pub other_drift: Vec<String>,
}

pub struct Inputs<'a> {
    pub generation: Option<&'a Meta>,
    pub pending_confirm: Option<&'a PendingConfirm>,
    pub expect: &'a Health,
    /// The plan from the live host back to the current generation.
    pub plan: &'a Plan,
    pub system: &'a SystemState,
    pub containers: Option<&'a BTreeMap<String, ContainerLive>>,
}

pub fn status(input: &Inputs<'_>) -> Status {
    let mut container_drift: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut link_drift: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut other_drift = Vec::new();
    for file in &input.plan.files {
        let line = format!("{} {}", file.path, file.reason);
        match &file.owner {
            Owner::Container(name) => container_drift
                .entry(name.to_string())
                .or_default()
                .push(line),
            Owner::Network(_) | Owner::Tunnel(_) => {
                let link = file
                    .path
                    .rsplit('/')
                    .next()
                    .and_then(|f| f.strip_prefix("50-ctm-"))
                    .and_then(|f| f.rsplit_once('.'))
                    .map(|(name, _)| name.to_string())
                    .unwrap_or_default();
                link_drift.entry(link).or_default().push(line);
            }
            Owner::Firewall | Owner::Host => other_drift.push(line),
        }
    }
    let mut firewall_drift = Vec::new();
    for action in &input.plan.actions {
        match action {
            Action::StartContainer { name, reason } | Action::RestartContainer { name, reason } => {
                container_drift
                    .entry(name.clone())
                    .or_default()
                    .push(reason.clone());
            }
            Action::ReplaceFirewall { reason } if input.system.firewall.is_some() => {
                firewall_drift.push(reason.clone())
            }
            _ => {}
        }
    }
    for conflict in &input.plan.conflicts {
        other_drift.push(format!("{} {}", conflict.path, conflict.reason));
    }
    let containers = input
        .expect
        .containers
        .iter()
        .map(|(name, c)| ContainerStatus {
            name: name.clone(),
            autostart: c.autostart,
            addresses: c.addresses.clone(),
            live: input.containers.map(|live| {
                live.get(name).cloned().unwrap_or(ContainerLive {
                    state: "stopped".into(),
                    unit: "unknown".into(),
                    since_usec: 0,
                    addresses: Vec::new(),
                })
            }),
            drift: dedup(container_drift.remove(name).unwrap_or_default()),
        })
        .collect();
    let links = input
        .expect
        .links
        .iter()
        .map(|(name, l)| {
            let live = input.system.links.as_ref().map(|links| links.get(name));
            let mut drift = link_drift.remove(name).unwrap_or_default();
            if let Some(live) = live {
                match live {
                    None => drift.push("missing".into()),
                    Some(have) => drift.extend(
                        l.addresses
                            .iter()
                            .filter(|a| !have.contains(*a))
                            .map(|a| format!("lacks {a}")),
                    ),
                }
            }
            LinkStatus {
                name: name.clone(),
                kind: l.kind.clone(),
                addresses: l.addresses.clone(),
                live_addresses: live.map(|l| l.cloned().unwrap_or_default()),
                exists: live.map(|l| l.is_some()),
                drift,
            }
        })
        .collect();
    Status {
        generation: input.generation.cloned(),
        pending_confirm: input.pending_confirm.cloned(),
        live_system: input.containers.is_some(),
        containers,
        links,
        firewall_drift,
        other_drift,
    }
}

fn dedup(mut lines: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    lines.retain(|l| seen.insert(l.clone()));
    lines
}

/// The table `ctm status` prints.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    match &status.generation {
        Some(meta) => out.push_str(&format!(
            "Generation {} (applied {} from {}: {})\n",
            meta.number, meta.created, meta.source_name, meta.summary
        )),
        None => out.push_str("No generation applied yet.\n"),
    }
    if let Some(p) = &status.pending_confirm {
        out.push_str(&format!(
            "Waiting for `ctm confirm` until {} (Unix time); otherwise the host returns to generation {}.\n",
            p.deadline,
            p.previous.map_or("none".into(), |n| n.to_string())
        ));
    }
    if !status.live_system {
        out.push_str(
            "Files-only root: the live state of containers, links and the firewall is unknown.\n",
        );
    }
    if !status.containers.is_empty() {
        out.push('\n');
        let rows: Vec<[String; 5]> = status
            .containers
            .iter()
            .map(|c| {
                [
                    c.name.clone(),
                    c.live
                        .as_ref()
                        .map_or("unknown".into(), |l| l.state.clone()),
                    join(&c.addresses),
                    if c.autostart { "yes" } else { "no" }.into(),
                    drift_text(&c.drift),
                ]
            })
            .collect();
        table(
            &mut out,
            ["CONTAINER", "STATE", "ADDRESSES", "AUTOSTART", "DRIFT"],
            &rows,
        );
    }
    if !status.links.is_empty() {
        out.push('\n');
        let rows: Vec<[String; 5]> = status
            .links
            .iter()
            .map(|l| {
                [
                    l.name.clone(),
                    l.kind.clone(),
                    match l.exists {
                        None => "unknown".into(),
                        Some(true) => "up".into(),
                        Some(false) => "missing".into(),
                    },
                    l.addresses.join(", "),
                    drift_text(&l.drift),
                ]
            })
            .collect();
        table(
            &mut out,
            ["LINK", "KIND", "STATE", "ADDRESSES", "DRIFT"],
            &rows,
        );
    }
    if status.live_system {
        out.push('\n');
        if status.firewall_drift.is_empty() {
            out.push_str("Firewall: table inet ctm as applied.\n");
        } else {
            out.push_str(&format!("Firewall: {}\n", status.firewall_drift.join("; ")));
        }
    }
    for line in &status.other_drift {
        out.push_str(&format!("Drift: {line}\n"));
    }
    out
}

fn join(addresses: &[IpAddr]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn drift_text(drift: &[String]) -> String {
    if drift.is_empty() {
        "-".into()
    } else {
        drift.join("; ")
    }
}

fn table<const N: usize>(out: &mut String, header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        text.trim_end().to_string() + "\n"
    };
    out.push_str(&line(header.to_vec()));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::health::{ContainerHealth, LinkHealth};
    use crate::fs::Entry;
    use crate::plan::{Change, FileChange, Summary};

    fn health() -> Health {
        let mut h = Health::default();
        h.containers.insert(
            "web".into(),
            ContainerHealth {
                autostart: true,
                bridge: Some("br-lan".into()),
                addresses: vec!["10.42.0.10".parse().unwrap()],
                checks: Vec::new(),
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
            live_system: true,
            summary: Summary::default(),
            fingerprint: String::new(),
        }
    }

    #[test]
    fn a_files_only_root_knows_nothing_live() {
        let plan = empty_plan();
        let s = status(&Inputs {
            generation: None,
            pending_confirm: None,
            expect: &health(),
            plan: &plan,
            system: &SystemState::default(),
            containers: None,
        });
        assert!(!s.live_system);
        assert!(
            s.containers
                .iter()
                .all(|c| c.live.is_none() && c.drift.is_empty())
        );
        let text = render(&s);
        assert!(text.contains("Files-only root"), "{text}");
        assert!(
            text.contains("web        unknown  10.42.0.10  yes        -"),
            "{text}"
        );
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
            },
        );
        let system = SystemState {
            containers: Some(BTreeMap::new()),
            links: Some(BTreeMap::new()),
            ..SystemState::default()
        };
        let s = status(&Inputs {
            generation: None,
            pending_confirm: None,
            expect: &health(),
            plan: &plan,
            system: &system,
            containers: Some(&running),
        });
        let web = s.containers.iter().find(|c| c.name == "web").unwrap();
        assert_eq!(web.live.as_ref().unwrap().state, "stopped");
        assert_eq!(
            web.drift,
            [
                "etc/systemd/nspawn/web.nspawn changed on disk since ctm wrote it (drift); ctm restores it",
                "stopped, but should be running (drift)"
            ]
        );
        let db = s.containers.iter().find(|c| c.name == "db").unwrap();
        assert!(db.drift.is_empty());
        assert_eq!(s.links[0].drift, ["missing"]);
        assert_eq!(s.links[0].exists, Some(false));
    }
}
