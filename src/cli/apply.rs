//! `ctm apply FILE|PLAN.json`: move the host to a new generation, or leave
//! it exactly as it was.

use std::path::PathBuf;
use std::process::ExitCode;

use super::output::{errln, reporter};
use super::plan::print_plan;
use super::{DiffArgs, OutputFormat, RootArgs, SwitchArgs, confirm, print_diagnostics};
use crate::clock::Timeout;
use crate::engine::apply::{self, Applied, Runner, SavedPlan, Seen};
use crate::engine::images;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The host file, or a plan saved with `ctm plan -o PLAN.json`.
    file: PathBuf,
    #[command(flatten)]
    size: super::SizeLimit,
    #[command(flatten)]
    root: RootArgs,
    /// Apply without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    #[command(flatten)]
    options: crate::plan::Options,
    /// After applying, wait this many seconds for `ctm confirm`, else roll
    /// back (1 to 604800, 7 days).
    #[arg(long, value_name = "SECONDS")]
    confirm_timeout: Option<Timeout>,
    #[command(flatten)]
    diff: DiffArgs,
    #[command(flatten)]
    switch: SwitchArgs,
    /// Report what happens as JSON lines on standard output, one event
    /// each, and leave the plan out: for programs (`ctm fleet apply`
    /// drives each host this way). Needs --yes, or a saved plan.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> miette::Result<ExitCode> {
    let target = args.root.target();
    let mut say = reporter(args.json);
    let is_saved = args.file.extension().is_some_and(|e| e == "json");
    let prepared = if is_saved {
        let (saved, mut outcome) = SavedPlan::load(&args.file, &target)?;
        print_diagnostics(&outcome, OutputFormat::Human);
        // Compiled with the topologies that were down when it was saved.
        let Some(desired) =
            images::compile_resolved(&target.root, &mut outcome, &saved.down, &mut say)?
        else {
            return Ok(ExitCode::FAILURE);
        };
        let seen = Seen {
            fingerprint: &saved.plan.fingerprint,
            from_generation: saved.plan.from_generation,
            when: format!("{} was made", args.file.display()),
            what: "the host",
        };
        apply::prepare_apply(
            &target,
            desired,
            saved.options,
            args.confirm_timeout,
            Some(&seen),
            &mut say,
        )?
    } else {
        let (outcome, prepared) = apply::prepare_apply_file(
            &target,
            &args.file,
            args.size.bytes(),
            args.options,
            args.confirm_timeout,
            &mut say,
        )?;
        print_diagnostics(&outcome, OutputFormat::Human);
        match prepared {
            Some(prepared) => prepared?,
            None => return Ok(ExitCode::FAILURE),
        }
    };
    let runner = args.switch.runner();
    if runner != Runner::InUnit && !args.json {
        // The ctm that started the unit showed the plan already.
        print_plan(
            &prepared.plan,
            &format!("ctm apply {}", args.file.display()),
            &args.diff,
        );
    }
    match prepared.refusal() {
        // The plan above lists the conflicts.
        Some(crate::engine::refused::Refused::Conflicts { .. }) => return Ok(ExitCode::FAILURE),
        // A kernel without a kind of link: the reason, said once more.
        Some(refused) => return Err(refused.into()),
        None => {}
    }
    let asks = !is_saved && runner != Runner::InUnit && !prepared.plan.is_empty();
    if asks && !confirm("Apply these changes?", args.yes)? {
        errln("Nothing applied.");
        return Ok(ExitCode::FAILURE);
    }
    Ok(
        match apply::apply(&target, prepared, args.confirm_timeout, runner, &mut say)? {
            Applied::NoChanges | Applied::Generation(_) => ExitCode::SUCCESS,
            Applied::Unconfirmed(_) => ExitCode::FAILURE,
        },
    )
}
