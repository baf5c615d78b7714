//! What the dashboard shows: the containers, networks and tunnels of the
//! generation the host is on (from the host file stored with it), the
//! drift between that generation and the host (the plan back to it), and
//! what the running system reports. On a files-only root the system
//! reports nothing, and the dashboard says so rather than guess.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::cli::{lock_path_for, validate_text};
use crate::compile::Owner;
use crate::compile::health;
use crate::fs::sha256_hex;
use crate::plan::render::owner_label;
use crate::status;

/// A container's use of the machine, as its cgroup counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// CPU time used since the container started, in microseconds; the
    /// page turns two samples into a percentage.
    pub cpu_usec: u64,
    pub memory_bytes: u64,
}

/// Where resource use comes from: the cgroup tree on the running system;
/// a fixed table in tests.
pub trait Resources: Send + Sync {
    /// `None` when nothing is known (not running, or not the live system).
    fn usage(&self, machine: &str) -> Option<Usage>;
}

/// A root that is not the running system: no cgroups to read.
pub struct NoResources;

impl Resources for NoResources {
    fn usage(&self, _machine: &str) -> Option<Usage> {
        None
    }
}

/// The cgroup v2 tree: `BASE/machine.slice/systemd-nspawn@NAME.service/`.
pub struct Cgroups {
    base: PathBuf,
}

impl Cgroups {
    pub fn new(base: &Path) -> Cgroups {
        Cgroups {
            base: base.to_path_buf(),
        }
    }
}

impl Resources for Cgroups {
    fn usage(&self, machine: &str) -> Option<Usage> {
        let dir = self
            .base
            .join("machine.slice")
            .join(crate::layout::unit(machine));
        let cpu = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
        let cpu_usec = cpu
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))?
            .trim()
            .parse()
            .ok()?;
        let memory_bytes = std::fs::read_to_string(dir.join("memory.current"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some(Usage {
            cpu_usec,
            memory_bytes,
        })
    }
}

/// The note shown in live columns when the system cannot be asked.
pub const FILES_ONLY: &str = "unknown: files-only root";

fn millis_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// The dashboard's data (`GET /api/status`).
pub fn status(state: &AppState) -> Result<Value, ApiError> {
    let config = &state.config;
    let mut session = state.reading_session()?;
    let live = session.system.is_live();
    let store = session.store.clone();
    let current = store.current()?;
    let on_disk = std::fs::read(&config.host_file)
        .ok()
        .map(|b| sha256_hex(&b));
    let mut doc = json!({
        "root": config.root.display().to_string(),
        "host_file": config.host_file.display().to_string(),
        "live": live,
        "live_note": if live { Value::Null } else { json!(FILES_ONLY) },
        "logs_note": if live { Value::Null } else { json!(super::logs::NOT_LIVE) },
        "sampled_at_ms": millis_now() as u64,
        "pending_confirm": store.pending_confirm()?,
        "generation": null,
        "host_file_changed": null,
        "containers": [],
        "networks": [],
        "tunnels": [],
        "drift": { "files": [], "conflicts": [], "actions": [] },
    });
    let Some(n) = current else {
        return Ok(doc);
    };
    let meta = store.load(n)?.meta;
    doc["host_file_changed"] = json!(on_disk.as_deref() != Some(meta.source_sha256.as_str()));
    let (name, text, lock) = store.source(n)?;
    let stored = PathBuf::from(&name);
    let outcome = validate_text(&stored, text, lock_path_for(&stored), lock);
    let Some(validated) = outcome.validated else {
        return Err(ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("the host file stored with generation {n} no longer validates"),
        )
        .with("check", outcome.diagnostics_json()));
    };
    let host = validated.host;
    // Drift: what it would take to bring the host back to its generation.
    let desired = store.artifacts(n)?;
    let (plan, system) = session.plan_and_state(&desired, crate::plan::Options::default())?;
    // What `ctm status` shows: live state and addresses, links, firewall.
    let expect = health::of(&desired)
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let names: BTreeSet<String> = expect.containers.keys().cloned().collect();
    let containers_live = session
        .system
        .containers(&names)
        .map_err(|e| ApiError::from(miette::Report::new(e)))?;
    let live_status = status::status(&status::Inputs {
        generation: Some(&meta),
        pending_confirm: None,
        expect: &expect,
        plan: &plan,
        system: &system,
        containers: containers_live.as_ref(),
    });
    let live_of = |name: &str| {
        live_status
            .containers
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.live.clone())
    };
    let link_of = |name: &str| live_status.links.iter().find(|l| l.name == name).cloned();
    let mut drift: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for f in &plan.files {
        drift.entry(owner_label(&f.owner)).or_default().push(json!({
            "path": f.path, "change": f.change, "reason": f.reason,
        }));
    }
    let drift_of = |owner: Owner| drift.get(&owner_label(&owner)).cloned().unwrap_or_default();
    let state_of = |name: &str| match live_of(name) {
        Some(l) => json!(l.state),
        None => Value::Null,
    };

    doc["generation"] = json!(meta);
    doc["containers"] = host
        .containers
        .values()
        .map(|c| {
            let net = c.network.as_ref();
            json!({
                "name": c.name.as_str(),
                "image": c.image.as_str(),
                "network": net.map(|a| a.network.as_str()),
                "ipv4": net.and_then(|a| a.ipv4).map(|a| a.to_string()),
                "ipv6": net.and_then(|a| a.ipv6).map(|a| a.to_string()),
                "forwards": c.forwards.iter().map(|f| format!(
                    "{} {} → {}", f.protocol.as_str(), f.host.get(), f.container.get()
                )).collect::<Vec<_>>(),
                "autostart": c.autostart,
                "docker": c.docker,
                "nested": c.nested,
                "state": state_of(c.name.as_str()),
                "unit": live_of(c.name.as_str()).map(|l| l.unit),
                "live_addresses": live_of(c.name.as_str())
                    .map(|l| l.addresses.iter().map(ToString::to_string).collect::<Vec<_>>()),
                "usage": config.resources.usage(c.name.as_str()),
                "drift": drift_of(Owner::Container(c.name.clone())),
            })
        })
        .collect::<Vec<_>>()
        .into();
    doc["networks"] = host
        .networks
        .values()
        .map(|n| {
            json!({
                "name": n.name.as_str(),
                "bridge": n.bridge.as_str(),
                "ipv4": n.ipv4.map(|s| s.address.to_string()),
                "ipv4_nat": n.ipv4.is_some_and(|s| s.nat),
                "ipv6": n.ipv6.map(|s| s.address.to_string()),
                "ipv6_nat": n.ipv6.is_some_and(|s| s.nat),
                "containers": host.containers.values()
                    .filter(|c| c.network.as_ref().is_some_and(|a| a.network == n.name))
                    .count(),
                "link": link_of(n.bridge.as_str()),
                "drift": drift_of(Owner::Network(n.name.clone())),
            })
        })
        .collect::<Vec<_>>()
        .into();
    doc["tunnels"] = host
        .tunnels
        .values()
        .map(|t| {
            json!({
                "name": t.name.as_str(),
                "local": t.local.to_string(),
                "remote": t.remote.to_string(),
                "addresses": t.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "link": link_of(t.name.as_str()),
                "drift": drift_of(Owner::Tunnel(t.name.clone())),
            })
        })
        .collect::<Vec<_>>()
        .into();
    doc["drift"] = json!({
        "files": plan.files.iter().map(|f| json!({
            "path": f.path, "owner": owner_label(&f.owner), "change": f.change, "reason": f.reason,
        })).collect::<Vec<_>>(),
        "conflicts": plan.conflicts,
        "actions": plan.actions,
        "firewall": live_status.firewall_drift,
    });
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_usage_is_read_from_the_machine_slice() {
        let dir = tempfile::tempdir().unwrap();
        let unit = dir.path().join("machine.slice/systemd-nspawn@web.service");
        std::fs::create_dir_all(&unit).unwrap();
        std::fs::write(
            unit.join("cpu.stat"),
            "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n",
        )
        .unwrap();
        std::fs::write(unit.join("memory.current"), "52428800\n").unwrap();
        let cgroups = Cgroups::new(dir.path());
        assert_eq!(
            cgroups.usage("web"),
            Some(Usage {
                cpu_usec: 123456,
                memory_bytes: 52428800
            })
        );
        assert_eq!(cgroups.usage("stopped"), None);
    }
}
