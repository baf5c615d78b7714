//! `GET /metrics` of `ctm serve`: the host and its containers in the
//! Prometheus text format (version 0.0.4), for a Prometheus server to
//! scrape. Gathered from the same use cases as the dashboard (the status
//! document) and `ctm stats` (one sample of each container), and from the
//! record of the last apply; rendered here, so that the web face only
//! sends the text.

use std::fmt::Write as _;

use super::containers::{Sample, samples};
use super::events::Events;
use super::session::{Access, Target};
use super::status::{Sources, status};
use crate::state::LastApply;
use crate::status::Status;

/// What `/metrics` reports.
pub struct Metrics {
    pub status: Status,
    /// One sample of each container; `None` on a files-only root.
    pub samples: Option<Vec<Sample>>,
    pub last_apply: Option<LastApply>,
}

/// The states a container's `ctm_container_state` reports, one series
/// each (1 for the one it is in): machined's, and `paused`.
const STATES: [&str; 5] = ["running", "paused", "opening", "closing", "stopped"];

pub fn metrics(
    target: &Target,
    sources: &Sources<'_>,
    events: Events<'_>,
) -> miette::Result<Metrics> {
    let status = status(target, Access::ReadShared, sources, events)?;
    let samples = if status.live {
        samples(target, events)?
    } else {
        None
    };
    Ok(Metrics {
        status,
        samples,
        last_apply: target.store().last_apply()?,
    })
}

/// A label value, escaped as the text format wants it.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A family of per-container samples: name, type, help, samples.
struct Family(&'static str, &'static str, &'static str, Vec<(String, f64)>);

/// Writes one metric family: its help, its type, and its samples (label
/// pairs already written out, and the value).
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(self.0, "{name} {value}");
            } else {
                let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
            }
        }
    }
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

impl Metrics {
    /// The text format: every family with `# HELP` and `# TYPE`, counters
    /// ending in `_total`, units in the name (`_bytes`, `_seconds`).
    pub fn render(&self) -> String {
        let s = &self.status;
        let mut out = Out(String::new());
        out.family(
            "ctm_live",
            "gauge",
            "1 when ctm drives the running system, 0 on a files-only root.",
            &[(String::new(), flag(s.live))],
        );
        out.family(
            "ctm_generation",
            "gauge",
            "The generation the host is on (0: nothing applied yet).",
            &[(
                String::new(),
                s.generation.as_ref().map_or(0.0, |g| g.number as f64),
            )],
        );
        out.family(
            "ctm_pending_confirm",
            "gauge",
            "1 while an apply waits for `ctm confirm`.",
            &[(String::new(), flag(s.pending_confirm.is_some()))],
        );
        out.family(
            "ctm_drift",
            "gauge",
            "What differs from the current generation: files, conflicts, and actions an apply would take.",
            &[
                ("kind=\"file\"".into(), s.drift.files.len() as f64),
                ("kind=\"conflict\"".into(), s.drift.conflicts.len() as f64),
                ("kind=\"action\"".into(), s.drift.actions.len() as f64),
            ],
        );
        if let Some(last) = &self.last_apply {
            out.family(
                "ctm_last_apply_success",
                "gauge",
                "1 when the last apply switched the host or found nothing to change, 0 when it failed or was not confirmed.",
                &[(
                    String::new(),
                    flag(matches!(last.result.as_str(), "applied" | "no-changes")),
                )],
            );
            out.family(
                "ctm_last_apply_result",
                "gauge",
                "How the last apply ended: 1 for its result (applied, no-changes, unconfirmed, failed).",
                &[(format!("result=\"{}\"", label(&last.result)), 1.0)],
            );
            out.family(
                "ctm_last_apply_duration_seconds",
                "gauge",
                "How long the last apply took, a wait for confirmation included.",
                &[(String::new(), last.seconds)],
            );
            out.family(
                "ctm_last_apply_timestamp_seconds",
                "gauge",
                "When the last apply ended, in Unix seconds.",
                &[(String::new(), last.at as f64)],
            );
        }
        let samples = self.samples.as_deref().unwrap_or_default();
        let sample = |name: &str| samples.iter().find(|x| x.name == name);
        let mut families: Vec<Family> = vec![
            Family(
                "ctm_container_state",
                "gauge",
                "1 for the state each container is in (running, paused, opening, closing, stopped); absent on a files-only root.",
                Vec::new(),
            ),
            Family(
                "ctm_container_paused",
                "gauge",
                "1 while a container's processes are frozen (`ctm pause`).",
                Vec::new(),
            ),
            Family(
                "ctm_container_autostart",
                "gauge",
                "1 when a container starts at boot.",
                Vec::new(),
            ),
            Family(
                "ctm_container_drift_files",
                "gauge",
                "A container's files that differ from the current generation.",
                Vec::new(),
            ),
            Family(
                "ctm_container_cpu_seconds_total",
                "counter",
                "CPU time a running container used since it started.",
                Vec::new(),
            ),
            Family(
                "ctm_container_memory_bytes",
                "gauge",
                "Memory a running container uses now.",
                Vec::new(),
            ),
            Family(
                "ctm_container_memory_peak_bytes",
                "gauge",
                "The most memory a running container used.",
                Vec::new(),
            ),
            Family(
                "ctm_container_memory_limit_bytes",
                "gauge",
                "A running container's memory limit, when it has one.",
                Vec::new(),
            ),
            Family(
                "ctm_container_io_read_bytes_total",
                "counter",
                "Bytes a running container read from block devices.",
                Vec::new(),
            ),
            Family(
                "ctm_container_io_write_bytes_total",
                "counter",
                "Bytes a running container wrote to block devices.",
                Vec::new(),
            ),
            Family(
                "ctm_container_network_receive_bytes_total",
                "counter",
                "Bytes received on a running container's interfaces.",
                Vec::new(),
            ),
            Family(
                "ctm_container_network_transmit_bytes_total",
                "counter",
                "Bytes sent on a running container's interfaces.",
                Vec::new(),
            ),
            Family(
                "ctm_container_network_receive_packets_total",
                "counter",
                "Packets received on a running container's interfaces.",
                Vec::new(),
            ),
            Family(
                "ctm_container_network_transmit_packets_total",
                "counter",
                "Packets sent on a running container's interfaces.",
                Vec::new(),
            ),
            Family(
                "ctm_container_tasks",
                "gauge",
                "Processes and threads in a running container.",
                Vec::new(),
            ),
        ];
        let mut put = |family: &str, labels: &str, value: f64| {
            if let Some(f) = families.iter_mut().find(|f| f.0 == family) {
                f.3.push((labels.to_string(), value));
            }
        };
        for c in &s.containers {
            let name = format!("container=\"{}\"", label(&c.name));
            if let Some(state) = &c.state {
                for each in STATES {
                    put(
                        "ctm_container_state",
                        &format!("{name},state=\"{each}\""),
                        flag(state == each),
                    );
                }
                put("ctm_container_paused", &name, flag(state == "paused"));
            }
            put("ctm_container_autostart", &name, flag(c.autostart));
            put("ctm_container_drift_files", &name, c.drift.len() as f64);
            let Some(stats) = sample(&c.name).and_then(|x| x.stats.as_ref()) else {
                continue;
            };
            if let Some(usec) = stats.cpu_usec {
                put("ctm_container_cpu_seconds_total", &name, usec as f64 / 1e6);
            }
            if let Some(m) = &stats.memory {
                put("ctm_container_memory_bytes", &name, m.current_bytes as f64);
                if let Some(peak) = m.peak_bytes {
                    put("ctm_container_memory_peak_bytes", &name, peak as f64);
                }
                if let Some(limit) = m.limit_bytes {
                    put("ctm_container_memory_limit_bytes", &name, limit as f64);
                }
            }
            if let Some(io) = &stats.io {
                put(
                    "ctm_container_io_read_bytes_total",
                    &name,
                    io.read_bytes as f64,
                );
                put(
                    "ctm_container_io_write_bytes_total",
                    &name,
                    io.write_bytes as f64,
                );
            }
            if let Some(n) = &stats.network {
                for (family, value) in [
                    ("receive_bytes", n.rx_bytes),
                    ("transmit_bytes", n.tx_bytes),
                    ("receive_packets", n.rx_packets),
                    ("transmit_packets", n.tx_packets),
                ] {
                    put(
                        &format!("ctm_container_network_{family}_total"),
                        &name,
                        value as f64,
                    );
                }
            }
            if let Some(p) = &stats.pids {
                put("ctm_container_tasks", &name, p.current as f64);
            }
        }
        for Family(name, kind, help, samples) in &families {
            out.family(name, kind, help, samples);
        }
        out.0
    }
}
