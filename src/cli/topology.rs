//! `ctm up NAME`, `ctm down NAME` and `ctm topologies`: a topology of the
//! host file brought up or down as one apply of the current generation's
//! host file (`engine::topologies`).

use std::fmt::Write as _;
use std::process::ExitCode;

use miette::IntoDiagnostic as _;

use super::RootArgs;
use super::output::{errln, out, outln, say};
use super::plan::print_plan;
use super::{DiffArgs, confirm};
use crate::engine::apply::{self, Runner};
use crate::engine::topologies::{self, Direction, TopologyState};

#[derive(Debug, clap::Args)]
pub struct MoveArgs {
    /// The topology, by the name the host file gives it.
    name: String,
    #[command(flatten)]
    root: RootArgs,
    /// Apply without asking.
    #[arg(long)]
    yes: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    root: RootArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `ctm up NAME` or `ctm down NAME`: the plan, the question, the apply.
pub fn run_move(args: &MoveArgs, direction: Direction) -> miette::Result<ExitCode> {
    let target = args.root.target();
    let mut say = say;
    let prepared = topologies::prepare(&target, &args.name, direction, None, &mut say)?;
    let title = format!("ctm {} {}", direction.as_str(), args.name);
    print_plan(&prepared.plan, &title, &DiffArgs::default());
    if let Some(refused) = prepared.refusal() {
        return Err(refused.into());
    }
    if !prepared.plan.is_empty() && !confirm("Apply these changes?", args.yes)? {
        errln("Nothing applied.");
        return Ok(ExitCode::FAILURE);
    }
    let applied = apply::apply(&target, prepared, None, Runner::Auto, &mut say)?;
    outln(&topologies::ended(&args.name, direction, applied));
    Ok(ExitCode::SUCCESS)
}

/// `ctm topologies`: each topology of the current generation with its
/// state and members.
pub fn run_list(args: &ListArgs) -> miette::Result<ExitCode> {
    let list = topologies::list(&args.root.target())?;
    if args.json {
        outln(&serde_json::to_string_pretty(&list).into_diagnostic()?);
    } else {
        out(&render(&list));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn render(list: &[TopologyState]) -> String {
    let mut text = String::new();
    if list.is_empty() {
        text.push_str("No topologies.\n");
    }
    for t in list {
        let _ = writeln!(text, "{}  {}", t.name, if t.down { "down" } else { "up" });
        for (what, names) in [
            ("networks", &t.networks),
            ("containers", &t.containers),
            ("links", &t.links),
        ] {
            if !names.is_empty() {
                let _ = writeln!(text, "  {what:<11}{}", names.join(", "));
            }
        }
    }
    text
}
