//! `ctm info`: what this host runs (systemd, nspawn, nftables, kernel,
//! cgroups) and whether ctm can drive it, each requirement with a verdict.

use std::path::Path;
use std::process::{Command, ExitCode};

use miette::IntoDiagnostic as _;
use serde::Serialize;

use crate::backend::live::{LiveSystem, MIN_SYSTEMD};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Requirement {
    what: &'static str,
    found: String,
    ok: bool,
    /// Whether ctm cannot drive the host without it (else only a feature,
    /// such as Docker inside containers, is missing).
    required: bool,
    /// Why ctm needs it, or what breaks without it.
    needed_for: &'static str,
}

#[derive(Debug, Serialize)]
struct Info {
    ctm: &'static str,
    requirements: Vec<Requirement>,
    /// Every requirement holds: `ctm apply` can drive this host.
    supported: bool,
}

fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

/// `6.1.0-27-amd64` → (6, 1).
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn cgroup_layout() -> (String, bool) {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        ("v2 (unified)".into(), true)
    } else if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        (
            "hybrid (v1 with v2 at /sys/fs/cgroup/unified)".into(),
            false,
        )
    } else {
        ("v1".into(), false)
    }
}

pub fn run(args: &Args) -> miette::Result<ExitCode> {
    let mut requirements = Vec::new();
    let live = LiveSystem::connect(Path::new("/"));
    let (systemd, systemd_ok) = match &live {
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
    let nspawn = first_line("systemd-nspawn", &["--version"]);
    requirements.push(Requirement {
        what: "systemd-nspawn",
        required: true,
        ok: nspawn.is_some(),
        found: nspawn.unwrap_or_else(|| "not installed (apt-get install systemd-container)".into()),
        needed_for: "running containers; systemd-machined comes with it",
    });
    let (nft, nft_ok) = match crate::backend::nft::Nft::find() {
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
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    requirements.push(Requirement {
        what: "kernel",
        required: true,
        ok: kernel_version(&kernel).is_some_and(|v| v >= (5, 2)),
        found: kernel,
        needed_for: "NAT in the inet family needs Linux 5.2 or newer",
    });
    let (cgroup, unified) = cgroup_layout();
    requirements.push(Requirement {
        what: "cgroups",
        required: false,
        found: cgroup,
        ok: unified,
        needed_for: "Docker inside containers needs a cgroup v2 tree (nspawn gives one on a hybrid host only with SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1)",
    });
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    requirements.push(Requirement {
        what: "user namespaces",
        required: true,
        found: userns.map_or("unknown".into(), |n| format!("up to {n}")),
        ok: userns.is_some_and(|n| n > 0),
        needed_for: "containers without nested run user-namespaced (PrivateUsers, nspawn -U)",
    });
    let supported = requirements.iter().all(|r| r.ok || !r.required);
    let info = Info {
        ctm: env!("CARGO_PKG_VERSION"),
        requirements,
        supported,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info).into_diagnostic()?);
    } else {
        println!("ctm {}", info.ctm);
        let width = info
            .requirements
            .iter()
            .map(|r| r.what.len())
            .max()
            .unwrap_or(0);
        for r in &info.requirements {
            println!(
                "{} {:<width$}  {}",
                match (r.ok, r.required) {
                    (true, _) => "ok  ",
                    (false, true) => "FAIL",
                    (false, false) => "warn",
                },
                r.what,
                r.found
            );
            if !r.ok {
                println!("     {:<width$}  needed for: {}", "", r.needed_for);
            }
        }
        println!(
            "{}",
            if info.supported {
                format!("This host can be managed by ctm (systemd {MIN_SYSTEMD} or newer found).")
            } else {
                "ctm can plan and compile here, but cannot drive this host until the FAIL lines are fixed.".to_string()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
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
