//! `ctm plan FILE`: what `ctm apply FILE` would change, and why.

use std::path::PathBuf;
use std::process::ExitCode;

use miette::IntoDiagnostic as _;

use super::output::{errln, out_styled, outln, say};
use super::{DiffArgs, OutputFormat, RootArgs, print_diagnostics};
use crate::engine::apply::SavedPlan;
use crate::engine::planning::plan_file;
use crate::plan::{Plan, render};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The host file (`.kdl`, or `.toml` for the TOML form).
    file: PathBuf,
    #[command(flatten)]
    size: super::SizeLimit,
    #[command(flatten)]
    root: RootArgs,
    /// Print the plan as JSON (documented in docs/plan.md).
    #[arg(long)]
    json: bool,
    /// Exit 0 when there is nothing to change, 2 when there is, 1 on error.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Save the plan, for `ctm apply PLAN.json` to apply exactly it.
    #[arg(long, short = 'o', value_name = "PLAN.json")]
    out: Option<PathBuf>,
    #[command(flatten)]
    options: crate::plan::Options,
    #[command(flatten)]
    diff: DiffArgs,
}

pub fn print_plan(plan: &Plan, title: &str, diff: &DiffArgs) {
    out_styled(&render::text(plan, title, diff.show()));
}

pub fn run(args: &Args) -> miette::Result<ExitCode> {
    let target = args.root.target();
    let planned = plan_file(
        &target,
        &args.file,
        args.size.bytes(),
        args.options,
        args.out.is_some(),
        &mut say,
    )?;
    if let Some(outcome) = &planned.outcome {
        print_diagnostics(outcome, OutputFormat::Human);
    }
    let Some(plan) = planned.plan else {
        return Ok(ExitCode::FAILURE);
    };
    let plan = plan?;
    if args.json {
        outln(&serde_json::to_string_pretty(&plan).into_diagnostic()?);
    } else {
        print_plan(
            &plan,
            &format!("ctm plan {}", args.file.display()),
            &args.diff,
        );
    }
    let empty = plan.is_empty();
    // What `ctm apply` would refuse: conflicts, a kind of link the
    // kernel cannot make, a quota the file system cannot enforce, or a
    // kind of root file system it cannot make.
    let refused = !plan.conflicts.is_empty()
        || !plan.blocking_links().is_empty()
        || !plan.unenforceable_quotas.is_empty()
        || !plan.unavailable_roots.is_empty();
    if let Some(out) = &args.out {
        let desired = planned.desired.ok_or_else(|| {
            miette::miette!("the plan of {} was not compiled", args.file.display())
        })?;
        SavedPlan::new(&target, &desired, args.options, plan).save(out)?;
        errln(&format!(
            "saved the plan to {}; apply it with `ctm apply {}`",
            out.display(),
            out.display()
        ));
    }
    if refused {
        return Ok(ExitCode::FAILURE);
    }
    Ok(match (args.detailed_exitcode, empty) {
        (true, false) => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    })
}
