//! `ctm info`: what this host runs (systemd, nspawn, nftables, kernel,
//! cgroups, the kinds of link the kernel can make) and whether ctm can
//! drive it, each requirement with a verdict.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::backend::live::LiveSystem;
use crate::backend::nft::Nft;
use crate::backend::{netlink, probe};
use crate::plan::KindSupport;

/// The kinds of link ctm makes: bridges (networks), veth (nspawn's link
/// into a bridge) and the tunnels.
pub const LINK_KINDS: &[&str] = &["bridge", "veth", "gre", "ip6gre", "vxlan"];

/// Without these no network of a host file can work.
const NETWORK_KINDS: &[&str] = &["bridge", "veth"];

#[derive(Debug, Clone, Serialize)]
pub struct Requirement {
    pub what: &'static str,
    pub found: String,
    pub ok: bool,
    /// Whether ctm cannot drive the host without it (else only a feature,
    /// such as Docker inside containers, is missing).
    pub required: bool,
    /// Why ctm needs it, or what breaks without it.
    pub needed_for: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub ctm: &'static str,
    pub requirements: Vec<Requirement>,
    /// Every requirement holds: `ctm apply` can drive this host.
    pub supported: bool,
    /// Whether the kernel can make each kind of link ctm makes.
    pub link_kinds: BTreeMap<String, KindSupport>,
}

/// `6.1.0-27-amd64` → (6, 1).
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Looks at the running system and says what it has.
pub fn info() -> Info {
    let mut requirements = Vec::new();
    let (systemd, systemd_ok) = match LiveSystem::connect(std::path::Path::new("/")) {
        Ok(live) => (live.versions.systemd.clone(), true),
        Err(e) => (format!("not usable: {e}"), false),
    };
    requirements.push(Requirement {
        what: "systemd",
        required: true,
        found: systemd,
        ok: systemd_ok,
        needed_for: "every change to the running system (D-Bus: systemd1, machine1, network1); 252 or newer",
    });
    let nspawn = probe::first_line("systemd-nspawn", &["--version"]);
    requirements.push(Requirement {
        what: "systemd-nspawn",
        required: true,
        ok: nspawn.is_some(),
        found: nspawn.unwrap_or_else(|| "not installed (apt-get install systemd-container)".into()),
        needed_for: "running containers; systemd-machined comes with it",
    });
    let (nft, nft_ok) = match Nft::find() {
        Ok((_, version)) => (version, true),
        Err(e) => (e.why, false),
    };
    requirements.push(Requirement {
        what: "nftables",
        required: true,
        found: nft,
        ok: nft_ok,
        needed_for: "NAT and port forwards (table inet ctm); 1.0 or newer",
    });
    let kernel = probe::kernel_release();
    requirements.push(Requirement {
        what: "kernel",
        required: true,
        ok: kernel_version(&kernel).is_some_and(|v| v >= (5, 2)),
        found: kernel,
        needed_for: "NAT in the inet family needs Linux 5.2 or newer",
    });
    let (cgroup, unified) = probe::cgroup_layout();
    requirements.push(Requirement {
        what: "cgroups",
        required: false,
        found: cgroup,
        ok: unified,
        needed_for: "Docker inside containers needs a cgroup v2 tree (nspawn gives one on a hybrid host only with SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1)",
    });
    let userns = probe::max_user_namespaces();
    requirements.push(Requirement {
        what: "user namespaces",
        required: true,
        found: userns.map_or("unknown".into(), |n| format!("up to {n}")),
        ok: userns.is_some_and(|n| n > 0),
        needed_for: "containers without nested run user-namespaced (PrivateUsers, nspawn -U)",
    });
    let hosts = probe::nss_hosts();
    let mymachines = hosts
        .as_ref()
        .is_some_and(|sources| sources.iter().any(|s| s == "mymachines"));
    requirements.push(Requirement {
        what: "nss-mymachines",
        required: false,
        ok: mymachines,
        found: match hosts {
            Some(sources) if mymachines => format!("hosts: {}", sources.join(" ")),
            Some(sources) => format!(
                "hosts: {} (apt-get install libnss-mymachines adds it)",
                sources.join(" ")
            ),
            None => "no hosts line in /etc/nsswitch.conf".into(),
        },
        needed_for: "container names that resolve on the host (containers resolve each other's names by their network's hosts file)",
    });
    let link_kinds = netlink::probe_kinds(&LINK_KINDS.iter().map(|k| k.to_string()).collect());
    requirements.extend(link_requirements(&link_kinds));
    let supported = requirements.iter().all(|r| r.ok || !r.required);
    Info {
        ctm: env!("CARGO_PKG_VERSION"),
        requirements,
        supported,
        link_kinds,
    }
}

/// Two verdicts on the kinds of link: those every network needs, and the
/// tunnels', which only the host files that use them need.
fn link_requirements(kinds: &BTreeMap<String, KindSupport>) -> [Requirement; 2] {
    let verdict = |wanted: &mut dyn Iterator<Item = &str>| {
        let (mut has, mut lacks, mut unknown) = (Vec::new(), Vec::new(), BTreeSet::new());
        for kind in wanted {
            match kinds.get(kind) {
                Some(KindSupport::Supported) => has.push(kind),
                Some(KindSupport::Unsupported { .. }) => lacks.push(kind),
                Some(KindSupport::Unknown { reason }) => {
                    unknown.insert(reason.as_str());
                }
                None => {
                    unknown.insert("not probed");
                }
            }
        }
        let mut found = Vec::new();
        if !has.is_empty() {
            found.push(format!("has {}", has.join(", ")));
        }
        if !lacks.is_empty() {
            found.push(format!("lacks {}", lacks.join(", ")));
        }
        let ok = lacks.is_empty() && unknown.is_empty();
        if !unknown.is_empty() {
            found.push(format!(
                "unknown ({})",
                unknown.into_iter().collect::<Vec<_>>().join("; ")
            ));
        }
        (found.join("; "), ok)
    };
    let (network_found, network_ok) = verdict(&mut NETWORK_KINDS.iter().copied());
    let (tunnel_found, tunnel_ok) = verdict(
        &mut LINK_KINDS
            .iter()
            .copied()
            .filter(|k| !NETWORK_KINDS.contains(k)),
    );
    [
        Requirement {
            what: "network links",
            required: true,
            found: network_found,
            ok: network_ok,
            needed_for: "every network: a bridge, and a veth pair into it for each container",
        },
        Requirement {
            what: "tunnel links",
            required: false,
            found: tunnel_found,
            ok: tunnel_ok,
            needed_for: "tunnels of these kinds: an apply that uses a kind the kernel lacks is refused",
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_are_read_from_the_release() {
        assert_eq!(kernel_version("6.1.0-27-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("5.2.21"), Some((5, 2)));
        assert_eq!(kernel_version("weird"), None);
    }
}
