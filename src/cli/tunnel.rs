//! `ctm tunnel status [NAME]`: each tunnel of the current generation, as
//! the host file says and as the kernel has it.

use std::fmt::Write as _;
use std::process::ExitCode;

use miette::IntoDiagnostic as _;

use super::RootArgs;
use super::output::errln;
use super::output::{out, outln, say};
use super::plan::print_plan;
use super::{DiffArgs, confirm};
use crate::engine::Access;
use crate::engine::apply::{self, Runner};
use crate::engine::tunnels::{Diagnosis, TunnelStatus, Tunnels, diagnose, status};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Each tunnel's link state, MTU, counters and the underlay's route to
    /// its remote endpoint, with what looks wrong; exit 1 if anything does.
    Status(StatusArgs),
    /// Why a tunnel does not carry traffic: its link, its MTU against the
    /// underlay's, the route to and an answer from the remote endpoint,
    /// its counters, and whether the kernel has its kind; each cause with
    /// its fix. Exit 1 if anything was found.
    Diagnose(DiagnoseArgs),
}

#[derive(Debug, clap::Args)]
pub struct DiagnoseArgs {
    /// The tunnel, by the name the host file gives it.
    name: String,
    #[command(flatten)]
    root: RootArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Repair what an apply of the current generation repairs (a link
    /// missing, down, or without its addresses): shows that apply's plan,
    /// asks, and applies it.
    #[arg(long, conflicts_with = "json")]
    fix: bool,
    /// With --fix: apply without asking.
    #[arg(long, requires = "fix")]
    yes: bool,
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
        Command::Diagnose(args) => run_diagnose(args),
    }
}

fn run_diagnose(args: &DiagnoseArgs) -> miette::Result<ExitCode> {
    let target = args.root.target();
    let found = diagnose(&target, &args.name, Access::Read, &mut say)?;
    if args.json {
        outln(&serde_json::to_string_pretty(&found).into_diagnostic()?);
        return Ok(exit(&found));
    }
    out(&render_diagnosis(&found));
    if !args.fix || !found.fixable() {
        if args.fix {
            outln("Nothing here that an apply repairs.");
        }
        return Ok(exit(&found));
    }
    let prepared = apply::prepare_reapply(&target, &mut say)?;
    print_plan(
        &prepared.plan,
        "ctm tunnel diagnose --fix",
        &DiffArgs::default(),
    );
    if let Some(refused) = prepared.refusal() {
        return Err(refused.into());
    }
    if !prepared.plan.is_empty() && !confirm("Apply these changes?", args.yes)? {
        errln("Nothing applied.");
        return Ok(ExitCode::FAILURE);
    }
    apply::apply(&target, prepared, None, Runner::Auto, &mut say)?;
    let after = diagnose(&target, &args.name, Access::Read, &mut say)?;
    outln("");
    out(&render_diagnosis(&after));
    Ok(exit(&after))
}

fn exit(found: &Diagnosis) -> ExitCode {
    if found.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The tunnel's status, then each cause with its evidence and its fix.
pub fn render_diagnosis(d: &Diagnosis) -> String {
    let mut text = String::new();
    tunnel(&mut text, &d.tunnel, true);
    let _ = writeln!(
        text,
        "  kernel    {}",
        match d.kernel_has_kind {
            Some(true) => format!("makes {} links", d.tunnel.kind),
            Some(false) => format!("cannot make {} links", d.tunnel.kind),
            None => "not known".to_string(),
        }
    );
    let _ = writeln!(
        text,
        "  remote    {}",
        match d.remote_answers {
            Some(true) => format!("{} answers ping", d.tunnel.remote),
            Some(false) => format!("{} does not answer ping", d.tunnel.remote),
            None => "not asked (a multicast group)".to_string(),
        }
    );
    if d.findings.is_empty() {
        let _ = writeln!(text, "\nNothing wrong found from this end.");
        return text;
    }
    for (i, f) in d.findings.iter().enumerate() {
        let _ = writeln!(text, "\n{}. {}", i + 1, f.cause);
        let _ = writeln!(text, "   seen: {}", f.evidence);
        let _ = writeln!(
            text,
            "   fix:  {}{}",
            f.fix,
            if f.fixed_by_apply {
                " (--fix does this)"
            } else {
                ""
            }
        );
    }
    text
}

fn run_status(args: &StatusArgs) -> miette::Result<ExitCode> {
    let target = args.root.target();
    let tunnels = status(&target, args.name.as_deref(), Access::Read, &mut say)?;
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
