//! What the running system must look like once a generation is applied,
//! as data: `etc/ctm/health.json`.
//!
//! Apply's health checks, `ctm plan`'s drift detection and `ctm status`
//! all compare the live system against this file. It is compiled with the
//! rest of the generation, so a rollback checks the older generation
//! against its own expectations, and a plan needs no model, only files.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::nft::Chains;
use super::{Artifacts, Owner};
use crate::model::{Host, Probe};

pub const HEALTH: &str = "etc/ctm/health.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub containers: BTreeMap<String, ContainerHealth>,
    /// Bridges and tunnels, by interface name.
    pub links: BTreeMap<String, LinkHealth>,
    /// Chain of `table inet ctm` → number of rules in it.
    pub firewall: BTreeMap<String, usize>,
    /// The socket units of the loopback forwards, which must be active.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sockets: Vec<String>,
    /// The volumes that must exist (`layout::volume_dir`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, VolumeHealth>,
    /// The host file's topologies, by name, with their members and
    /// whether they are down: for the plan (which stops the containers of
    /// a down one) and for `ctm status`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub topologies: BTreeMap<String, TopologyHealth>,
    /// The containers with a `backup` block, whose timer
    /// (`layout::backup_timer`) must be active, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backups: BTreeMap<String, BackupHealth>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyHealth {
    pub down: bool,
    pub networks: Vec<String>,
    pub containers: Vec<String>,
    /// Links by their ends, `r1–r2`.
    pub links: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHealth {
    /// The directory its archives go into, as the host sees it.
    pub to: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeHealth {
    /// The most it may hold, in bytes, enforced by the file system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    /// The containers that mount it, sorted.
    pub containers: Vec<String>,
    /// The directory its `backup` block's archives go into, as the host
    /// sees it; `None` without a block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_to: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerHealth {
    /// Started at boot, so it must be running after every apply.
    pub autostart: bool,
    /// The down topology it belongs to: it must not run, and an apply
    /// stops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<String>,
    /// The bridge the container's `host0` is attached to.
    pub bridge: Option<String>,
    /// Its addresses, IPv4 first.
    pub addresses: Vec<IpAddr>,
    pub checks: Vec<Check>,
    /// How its root file system is made (`root`), for the plan to say.
    #[serde(default, skip_serializing_if = "crate::model::RootMode::is_auto")]
    pub root: crate::model::RootMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Check {
    Tcp {
        port: u16,
        timeout_seconds: u32,
    },
    Command {
        argv: Vec<String>,
        timeout_seconds: u32,
    },
}

impl Check {
    pub fn timeout_seconds(&self) -> u32 {
        match self {
            Check::Tcp {
                timeout_seconds, ..
            }
            | Check::Command {
                timeout_seconds, ..
            } => *timeout_seconds,
        }
    }

    /// One line for people: `tcp port 80`, `command systemctl is-system-running`.
    pub fn describe(&self) -> String {
        match self {
            Check::Tcp { port, .. } => format!("tcp port {port}"),
            Check::Command { argv, .. } => format!("command `{}`", argv.join(" ")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkHealth {
    /// `bridge`, `gre`, `ip6gre` or `vxlan`, as in the `.netdev`.
    pub kind: String,
    /// Address and prefix, as networkd is told to configure them.
    pub addresses: Vec<String>,
}

pub fn health(host: &Host, chains: &Chains, sockets: Vec<String>) -> Health {
    let containers = host
        .containers
        .values()
        .map(|c| {
            let attachment = c.network.as_ref();
            let bridge = attachment
                .and_then(|a| host.networks.get(&a.network))
                .map(|n| n.bridge.to_string());
            let addresses = attachment
                .map(|a| {
                    a.ipv4
                        .map(IpAddr::V4)
                        .into_iter()
                        .chain(a.ipv6.map(IpAddr::V6))
                        .collect()
                })
                .unwrap_or_default();
            let checks = c
                .checks
                .iter()
                .map(|check| {
                    let timeout_seconds = check.timeout.seconds();
                    match &check.probe {
                        Probe::Tcp(port) => Check::Tcp {
                            port: port.get(),
                            timeout_seconds,
                        },
                        Probe::Command(command) => Check::Command {
                            argv: command.argv().to_vec(),
                            timeout_seconds,
                        },
                    }
                })
                .collect();
            (
                c.name.to_string(),
                ContainerHealth {
                    autostart: c.autostart && host.container_down(&c.name).is_none(),
                    down: host.container_down(&c.name).map(ToString::to_string),
                    bridge,
                    addresses,
                    checks,
                    root: c.root,
                },
            )
        })
        .collect();
    let mut links = BTreeMap::new();
    for network in host.networks.values() {
        if host.network_down(&network.name) {
            continue;
        }
        let addresses = network
            .ipv4
            .map(|s| s.address.to_string())
            .into_iter()
            .chain(network.ipv6.map(|s| s.address.to_string()))
            .collect();
        links.insert(
            network.bridge.to_string(),
            LinkHealth {
                kind: "bridge".into(),
                addresses,
            },
        );
    }
    for tunnel in host.tunnels.values() {
        links.insert(
            tunnel.name.to_string(),
            LinkHealth {
                kind: tunnel.kind().into(),
                addresses: tunnel.addresses.iter().map(ToString::to_string).collect(),
            },
        );
    }
    let volumes = host
        .volumes
        .values()
        .map(|v| {
            let users = host
                .containers
                .values()
                .filter(|c| c.volumes.iter().any(|m| m.volume == v.name))
                .map(|c| c.name.to_string())
                .collect();
            (
                v.name.to_string(),
                VolumeHealth {
                    quota: v.quota.map(|q| q.bytes()),
                    containers: users,
                    backup_to: v.backup.as_ref().map(|b| b.to.to_string()),
                },
            )
        })
        .collect();
    let topologies = host
        .topologies
        .values()
        .map(|t| {
            let names = |set: &std::collections::BTreeSet<crate::model::Name>| {
                set.iter().map(ToString::to_string).collect()
            };
            (
                t.name.to_string(),
                TopologyHealth {
                    down: t.down,
                    networks: names(&t.networks),
                    containers: names(&t.containers),
                    links: t.links.iter().map(|(a, b)| format!("{a}–{b}")).collect(),
                },
            )
        })
        .collect();
    let backups = host
        .containers
        .values()
        .filter_map(|c| {
            let backup = c.backup.as_ref()?;
            Some((
                c.name.to_string(),
                BackupHealth {
                    to: backup.to.to_string(),
                },
            ))
        })
        .collect();
    Health {
        containers,
        links,
        firewall: chains.rule_counts(),
        sockets,
        volumes,
        topologies,
        backups,
    }
}

pub fn write(health: &Health, out: &mut Artifacts) {
    // Plain structs with string keys: serialization has no way to fail.
    let mut json = serde_json::to_string_pretty(health).expect("health expectations serialize");
    json.push('\n');
    out.file(HEALTH.into(), Owner::Host, json);
}

/// The expectations in a compiled tree; a generation made before ctm wrote
/// them (or a tree without them) expects nothing.
pub fn of(artifacts: &Artifacts) -> Result<Health, String> {
    match artifacts.files.get(HEALTH).map(|a| &a.content) {
        Some(super::Content::File { text, .. }) => {
            serde_json::from_str(text).map_err(|e| format!("{HEALTH} is not valid: {e}"))
        }
        _ => Ok(Health::default()),
    }
}
