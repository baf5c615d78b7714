//! `ctm status`: the containers, links and firewall of the current
//! generation, as they are now. Like every command on a root, it first
//! finishes or undoes a switch that was interrupted.

use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use miette::IntoDiagnostic as _;

use super::RootArgs;
use super::output::{out, outln, say};
use crate::backend::cgroups::{Cgroups, NoResources, Resources};
use crate::clock::rfc3339;
use crate::engine::Access;
use crate::engine::events::generation_name;
use crate::engine::status::{Sources, status};
use crate::status::Status;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    root: RootArgs,
    /// Print JSON (the status document of docs/status.md).
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> miette::Result<ExitCode> {
    let target = args.root.target();
    let resources: Box<dyn Resources> = if target.is_system_root() {
        Box::new(Cgroups::new(Path::new("/sys/fs/cgroup")))
    } else {
        Box::new(NoResources)
    };
    let sources = Sources {
        host_file: None,
        resources: resources.as_ref(),
        files_only_reason: None,
    };
    let status = status(&target, Access::Read, &sources, &mut say)?;
    if args.json {
        outln(&serde_json::to_string_pretty(&status).into_diagnostic()?);
    } else {
        out(&render(&status));
    }
    Ok(ExitCode::SUCCESS)
}

/// The tables `ctm status` prints.
fn render(status: &Status) -> String {
    let mut out = String::new();
    match &status.generation {
        Some(meta) => out.push_str(&format!(
            "Generation {} (applied {} from {}: {})\n",
            meta.number, meta.created, meta.source_name, meta.summary
        )),
        None => out.push_str("No generation applied yet.\n"),
    }
    for t in &status.topologies {
        out.push_str(&format!(
            "Topology {} is {}: {}\n",
            t.name,
            if t.down { "down" } else { "up" },
            t.containers
                .iter()
                .chain(&t.networks)
                .chain(&t.links)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(p) = &status.pending_confirm {
        out.push_str(&format!(
            "Waiting for `ctm confirm` until {}; otherwise the host returns to generation {}.\n",
            rfc3339(p.deadline),
            generation_name(p.previous)
        ));
    }
    if let Some(u) = &status.unconfirmed {
        out.push_str(&format!(
            "Generation {} was rolled back at {}: it was not confirmed in time.\n",
            u.generation,
            rfc3339(u.at)
        ));
    }
    if !status.live {
        out.push_str(
            "Files-only root: the live state of containers, links and the firewall is unknown.\n",
        );
    }
    for note in &status.notes {
        out.push_str(&format!("Note: {note}\n"));
    }
    if !status.containers.is_empty() {
        out.push('\n');
        let rows: Vec<[String; 5]> = status
            .containers
            .iter()
            .map(|c| {
                let drift: Vec<String> = c
                    .drift
                    .iter()
                    .map(|f| format!("{} {}", f.path, f.reason))
                    .chain(c.drift_actions.iter().cloned())
                    .collect();
                [
                    c.name.clone(),
                    c.state.clone().unwrap_or_else(|| "unknown".into()),
                    addresses(c),
                    if c.autostart { "yes" } else { "no" }.into(),
                    drift_text(&drift),
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
    if !status.volumes.is_empty() {
        out.push('\n');
        let rows: Vec<[String; 5]> = status
            .volumes
            .iter()
            .map(|v| {
                let mut drift = v.drift.clone();
                if v.kept {
                    drift.push("not in the host file: kept until `ctm apply --prune`".into());
                }
                [
                    v.name.clone(),
                    v.used.map_or("-".into(), super::container::megabytes),
                    v.quota.map_or("none".into(), crate::model::size_text),
                    v.containers.join(", "),
                    drift_text(&drift),
                ]
            })
            .collect();
        table(
            &mut out,
            ["VOLUME", "USED", "QUOTA", "CONTAINERS", "DRIFT"],
            &rows,
        );
    }
    // Containers' by name, volumes' as `volume NAME`.
    let backed_up = status
        .containers
        .iter()
        .filter_map(|c| Some((c.name.clone(), c.backup.as_ref()?)))
        .chain(
            status
                .volumes
                .iter()
                .filter_map(|v| Some((format!("volume {}", v.name), v.backup.as_ref()?))),
        );
    let backups: Vec<[String; 5]> = backed_up
        .map(|(name, b)| {
            let timer = match (&b.timer, b.timer_active) {
                (None, _) => "none".to_string(),
                (Some(t), Some(false)) => format!("{t} (not active)"),
                (Some(t), _) => t.clone(),
            };
            let last_run = match (&b.last_result, b.last_run_failed) {
                (Some(result), Some(true)) => format!("failed ({result})"),
                (Some(result), _) => result.clone(),
                (None, _) => "-".into(),
            };
            let last = b.last.as_ref().map_or_else(
                || ("none".to_string(), "-".to_string()),
                |l| {
                    (
                        format!("{} {}", rfc3339(l.at), l.path),
                        super::container::megabytes(l.bytes),
                    )
                },
            );
            [name, timer, last_run, last.1, last.0]
        })
        .collect();
    if !backups.is_empty() {
        out.push('\n');
        table(
            &mut out,
            ["BACKUP OF", "TIMER", "LAST RUN", "SIZE", "LAST ARCHIVE"],
            &backups,
        );
    }
    if status.live {
        out.push('\n');
        if status.drift.firewall.is_empty() {
            out.push_str("Firewall: table inet ctm as applied.\n");
        } else {
            out.push_str(&format!("Firewall: {}\n", status.drift.firewall.join("; ")));
        }
    }
    let linked = |owner: &str| {
        owner.starts_with("container ")
            || owner.starts_with("network ")
            || owner.starts_with("tunnel ")
    };
    for f in status.drift.files.iter().filter(|f| !linked(&f.owner)) {
        out.push_str(&format!("Drift: {} {}\n", f.path, f.reason));
    }
    for c in &status.drift.conflicts {
        out.push_str(&format!("Drift: {} {}\n", c.path, c.reason));
    }
    out
}

/// A container's addresses: those of its first network, then each other
/// network's, with the interface they are on.
fn addresses(c: &crate::status::ContainerStatus) -> String {
    if c.networks.len() < 2 {
        return join(&c.addresses);
    }
    c.networks
        .iter()
        .filter(|n| !n.addresses.is_empty())
        .map(|n| {
            let listed = join(&n.addresses);
            match &n.host_interface {
                None => listed,
                Some(_) => format!("{listed} ({})", n.interface),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
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
    use crate::status::{ContainerStatus, Drift, VolumeStatus};

    #[test]
    fn a_files_only_root_shows_unknown_states() {
        let mut status = Status {
            root: "/tmp/root".into(),
            host_file: None,
            live: false,
            live_note: None,
            logs_note: None,
            files_only_reason: None,
            sampled_at_ms: 0,
            generation: None,
            pending_confirm: None,
            unconfirmed: None,
            host_file_changed: None,
            containers: vec![ContainerStatus {
                name: "web".into(),
                image: None,
                network: None,
                ipv4: None,
                ipv6: None,
                forwards: Vec::new(),
                docker: false,
                nested: false,
                autostart: true,
                addresses: vec!["10.42.0.10".parse().unwrap()],
                networks: Vec::new(),
                state: None,
                unit: None,
                since_usec: None,
                live_addresses: None,
                usage: None,
                drift: Vec::new(),
                drift_actions: Vec::new(),
                backup: Some(crate::status::BackupStatus {
                    timer: Some("ctm-backup-web.timer".into()),
                    to: Some("/srv/backups".into()),
                    timer_active: Some(false),
                    last_result: Some("exit-code".into()),
                    last_run_failed: Some(true),
                    last: Some(crate::plan::LastBackup {
                        id: "20261203T171500Z".into(),
                        path: "/srv/backups/web-20261203T171500Z.ctm-backup.tar.zst".into(),
                        bytes: 2_500_000,
                        at: 1_796_318_100,
                    }),
                }),
            }],
            networks: Vec::new(),
            tunnels: Vec::new(),
            links: Vec::new(),
            volumes: vec![
                VolumeStatus {
                    name: "pgdata".into(),
                    path: "/var/lib/ctm/volumes/pgdata".into(),
                    kind: Some("directory".into()),
                    quota: Some(10 << 30),
                    used: Some(2_500_000),
                    containers: vec!["db".into(), "web".into()],
                    kept: false,
                    drift: Vec::new(),
                    backup: Some(crate::status::BackupStatus {
                        timer: Some("ctm-volume-backup-pgdata.timer".into()),
                        to: Some("/srv/backups".into()),
                        timer_active: Some(true),
                        last_result: Some("success".into()),
                        last_run_failed: Some(false),
                        last: Some(crate::plan::LastBackup {
                            id: "20261203T171500Z".into(),
                            path: "/srv/backups/pgdata-20261203T171500Z.ctm-volume.tar.zst".into(),
                            bytes: 1_500_000,
                            at: 1_796_318_100,
                        }),
                    }),
                },
                VolumeStatus {
                    name: "old".into(),
                    path: "/var/lib/ctm/volumes/old".into(),
                    kind: Some("directory".into()),
                    quota: None,
                    used: Some(0),
                    containers: Vec::new(),
                    kept: true,
                    drift: Vec::new(),
                    backup: None,
                },
            ],
            topologies: Vec::new(),
            drift: Drift {
                files: Vec::new(),
                conflicts: Vec::new(),
                actions: Vec::new(),
                firewall: Vec::new(),
            },
            notes: Vec::new(),
        };
        let text = render(&status);
        assert!(text.contains("Files-only root"), "{text}");
        assert!(
            text.contains("web        unknown  10.42.0.10  yes        -"),
            "{text}"
        );
        assert!(
            text.contains("VOLUME  USED    QUOTA  CONTAINERS  DRIFT"),
            "{text}"
        );
        assert!(
            text.contains("pgdata  2.5 MB  10G    db, web     -"),
            "{text}"
        );
        assert!(
            text.contains("old     0.0 MB  none               not in the host file: kept until `ctm apply --prune`"),
            "{text}"
        );
        assert!(
            text.contains(
                "web            ctm-backup-web.timer (not active)  failed (exit-code)  2.5 MB  \
                 2026-12-03T17:15:00Z /srv/backups/web-20261203T171500Z.ctm-backup.tar.zst"
            ),
            "{text}"
        );
        // A volume's backups are in the same table, named as a volume.
        assert!(
            text.contains(
                "volume pgdata  ctm-volume-backup-pgdata.timer     success             1.5 MB  \
                 2026-12-03T17:15:00Z /srv/backups/pgdata-20261203T171500Z.ctm-volume.tar.zst"
            ),
            "{text}"
        );

        // On two networks: each network's addresses, the second's with its
        // interface.
        let attachment = |network: &str, interface: &str, end: Option<&str>, address: &str| {
            crate::status::AttachmentStatus {
                network: network.into(),
                bridge: Some(format!("br-{network}")),
                interface: interface.into(),
                host_interface: end.map(str::to_string),
                addresses: vec![address.parse().unwrap()],
                bridged: None,
            }
        };
        status.containers[0].networks = vec![
            attachment("lan", "host0", None, "10.42.0.10"),
            attachment("back", "eth1", Some("vn-web-1"), "10.60.0.10"),
        ];
        let text = render(&status);
        assert!(
            text.contains("web        unknown  10.42.0.10, 10.60.0.10 (eth1)  yes"),
            "{text}"
        );
    }
}
