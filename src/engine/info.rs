//! `ctm info`: what this host runs (systemd, nspawn, nftables, kernel,
//! cgroups) and whether ctm can drive it, each requirement with a verdict.

use serde::Serialize;

use crate::backend::live::LiveSystem;
use crate::backend::nft::Nft;
use crate::backend::probe;

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
    let supported = requirements.iter().all(|r| r.ok || !r.required);
    Info {
        ctm: env!("CARGO_PKG_VERSION"),
        requirements,
        supported,
    }
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
