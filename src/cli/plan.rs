//! `ctm plan FILE`: what `ctm apply FILE` would change, and why.

use std::path::PathBuf;
use std::process::ExitCode;

use miette::IntoDiagnostic as _;

use super::output::{errln, out_styled, outln, say};
use super::{DiffArgs, OutputFormat, RootArgs, print_diagnostics};
use crate::engine::apply::SavedPlan;
use crate::engine::load::{Desired, load_and_validate};
use crate::engine::{Access, Session};
use crate::plan::{Plan, render};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The host file (`.kdl`, or `.toml` for the TOML form).
    file: PathBuf,
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
    // The host file is read, checked and compiled on one thread while
    // this one takes the lock and reads what the plan compares it with
    // (the manifest, the stat cache, the live files): neither needs the
    // other, and a no-op plan of 1,000 containers spends about as long on
    // each. What the user sees comes in the same order as before: the
    // host file's errors and diagnostics first.
    let (loaded, opened) = std::thread::scope(|scope| {
        let loading = scope.spawn(|| -> miette::Result<_> {
            let outcome = load_and_validate(&args.file, None)?;
            let desired = Desired::compile(&outcome);
            Ok((outcome, desired))
        });
        let opened = Session::open(&target, Access::Read, &mut say)
            .and_then(|session| Ok((session.prefetch()?, session)));
        let loaded = loading
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (loaded, opened)
    });
    let (outcome, desired) = loaded?;
    print_diagnostics(&outcome, OutputFormat::Human);
    let Some(desired) = desired else {
        return Ok(ExitCode::FAILURE);
    };
    let (prefetched, mut session) = opened?;
    let (plan, _) =
        session.plan_prefetched(&desired.artifacts, args.options, &mut say, Some(prefetched))?;
    drop(session);
    if args.json {
        outln(&serde_json::to_string_pretty(&plan).into_diagnostic()?);
    } else {
        print_plan(
            &plan,
            &format!("ctm plan {}", args.file.display()),
            &args.diff,
        );
    }
    let (conflicts, empty) = (!plan.conflicts.is_empty(), plan.is_empty());
    if let Some(out) = &args.out {
        SavedPlan::new(&target, &desired, args.options, plan).save(out)?;
        errln(&format!(
            "saved the plan to {}; apply it with `ctm apply {}`",
            out.display(),
            out.display()
        ));
    }
    if conflicts {
        return Ok(ExitCode::FAILURE);
    }
    Ok(match (args.detailed_exitcode, empty) {
        (true, false) => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    })
}
