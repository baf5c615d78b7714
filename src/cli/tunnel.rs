//! `ctm tunnel status [NAME]`: each tunnel of the current generation, as
//! the host file says and as the kernel has it.

use std::fmt::Write as _;
use std::process::ExitCode;

use miette::IntoDiagnostic as _;

use super::RootArgs;
use super::output::{out, outln, say};
use crate::engine::tunnels::{TunnelStatus, Tunnels, status};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Each tunnel's link state, MTU, counters and the underlay's route to
    /// its remote endpoint, with what looks wrong; exit 1 if anything does.
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Only this tunnel.
    name: Option<String>,
    #[command(flatten)]
    root: RootArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(command: &Command) -> miette::Result<ExitCode> {
    match command {
        Command::Status(args) => run_status(args),
    }
}

fn run_status(args: &StatusArgs) -> miette::Result<ExitCode> {
    let target = args.root.target();
    let tunnels = status(&target, args.name.as_deref(), &mut say)?;
    if args.json {
        outln(&serde_json::to_string_pretty(&tunnels).into_diagnostic()?);
    } else {
        out(&render(&tunnels));
    }
    Ok(if tunnels.tunnels.iter().any(|t| !t.problems.is_empty()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The tunnels for people: one block each.
pub fn render(tunnels: &Tunnels) -> String {
    let mut text = String::new();
    if let Some(note) = &tunnels.note {
        let _ = writeln!(text, "Note: {note}.");
    }
    if tunnels.tunnels.is_empty() {
        let _ = writeln!(
            text,
            "No tunnels{}.",
            match tunnels.generation {
                Some(n) => format!(" in generation {n}"),
                None => ": nothing has been applied yet".into(),
            }
        );
        return text;
    }
    for (i, t) in tunnels.tunnels.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        tunnel(&mut text, t, tunnels.live_system);
    }
    text
}

fn tunnel(text: &mut String, t: &TunnelStatus, live_system: bool) {
    let mut head = format!("{} ({}", t.name, t.kind);
    if let Some(id) = t.id {
        let _ = write!(head, " id {id}");
    }
    if let Some(port) = t.port {
        let _ = write!(head, " port {port}");
    }
    let _ = write!(head, "): {} -> {}", t.local, t.remote);
    if let Some(device) = &t.device {
        let _ = write!(head, " via {device}");
    }
    let _ = writeln!(text, "{head}");
    let Some(live) = &t.live else {
        let _ = writeln!(
            text,
            "  {}",
            if live_system {
                "the system did not report this tunnel"
            } else {
                "not the running system: nothing asked of the kernel"
            }
        );
        return;
    };
    if live.exists {
        let _ = writeln!(
            text,
            "  link      {}, {}, mtu {} (expected {})",
            if live.up {
                "up"
            } else {
                "administratively down"
            },
            live.oper_state,
            live.mtu.map_or("?".to_string(), |m| m.to_string()),
            t.expected_mtu.map_or("?".to_string(), |m| m.to_string())
        );
        let _ = writeln!(
            text,
            "  addresses {}",
            if live.addresses.is_empty() {
                "none".to_string()
            } else {
                live.addresses.join(", ")
            }
        );
        if let Some(c) = live.counters {
            let _ = writeln!(
                text,
                "  received  {} packets, {} bytes ({} errors, {} dropped)",
                c.rx_packets, c.rx_bytes, c.rx_errors, c.rx_dropped
            );
            let _ = writeln!(
                text,
                "  sent      {} packets, {} bytes ({} errors, {} dropped)",
                c.tx_packets, c.tx_bytes, c.tx_errors, c.tx_dropped
            );
        }
    } else {
        let _ = writeln!(text, "  link      missing");
    }
    match &live.route_to_remote {
        Some(route) => {
            let mut line = format!(
                "  underlay  to {} via {}",
                t.remote,
                route.device.as_deref().unwrap_or("?")
            );
            if let Some(gateway) = route.gateway {
                let _ = write!(line, ", gateway {gateway}");
            }
            if let Some(source) = route.source {
                let _ = write!(line, ", from {source}");
            }
            let _ = writeln!(text, "{line}");
        }
        None => {
            let _ = writeln!(text, "  underlay  no route to {}", t.remote);
        }
    }
    for problem in &t.problems {
        let _ = writeln!(text, "  problem:  {problem}");
    }
}
