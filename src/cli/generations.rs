//! Commands on the generations: list, diff, roll back, confirm, recover,
//! collect garbage.

use std::process::ExitCode;

use miette::IntoDiagnostic as _;

use super::output::{errln, out_styled, outln, reporter, say};
use super::plan::print_plan;
use super::{DiffArgs, RootArgs, SwitchArgs, confirm as ask_yes};
use crate::clock::rfc3339;
use crate::engine::apply::{self, Runner};
use crate::engine::events::generation_name;
use crate::engine::{Access, Refused, generations};

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    root: RootArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn list(args: &ListArgs) -> miette::Result<ExitCode> {
    let list = generations::list(&args.root.target(), Access::Read, &mut say)?;
    if args.json {
        outln(&serde_json::to_string_pretty(&list.generations).into_diagnostic()?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.generations.is_empty() {
        outln(&format!(
            "No generations yet: nothing has been applied under {}.",
            args.root.root.display()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    outln(&format!(
        "{:>4}  {:<20}  {:<24}  {:<12}  summary",
        "gen", "created", "source", "sha256"
    ));
    for g in &list.generations {
        let m = &g.generation;
        let mark = if g.current { "*" } else { " " };
        let note = match &g.reverted {
            Some(r) => format!(
                "  (rolled back at {}: not confirmed in time)",
                rfc3339(r.at)
            ),
            None => String::new(),
        };
        outln(&format!(
            "{:>4}{mark} {:<20}  {:<24}  {:<12}  {}{note}",
            m.number,
            m.created,
            m.source_name,
            &m.source_sha256[..12.min(m.source_sha256.len())],
            m.summary
        ));
    }
    outln("(* current)");
    if let Some(p) = &list.pending_confirm {
        outln(&format!(
            "Generation {} waits for `ctm confirm` until {}; otherwise the host returns to generation {}.",
            p.generation,
            rfc3339(p.deadline),
            generation_name(p.previous)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The older generation.
    a: u64,
    /// The newer generation.
    b: u64,
    #[command(flatten)]
    root: RootArgs,
}

pub fn diff(args: &CompareArgs) -> miette::Result<ExitCode> {
    let diffs = generations::diff(&args.root.target(), args.a, args.b, Access::Read, &mut say)?;
    let changed = diffs.len();
    for d in diffs {
        let mut text = String::new();
        for line in d.diff.lines() {
            let style = match line.chars().next() {
                Some('+') if !line.starts_with("+++") => anstyle::AnsiColor::Green.on_default(),
                Some('-') if !line.starts_with("---") => anstyle::AnsiColor::Red.on_default(),
                Some('@') => anstyle::AnsiColor::Cyan.on_default(),
                _ => anstyle::Style::new(),
            };
            text.push_str(&format!("{style}{line}{style:#}\n"));
        }
        out_styled(&text);
    }
    errln(&format!(
        "{changed} file{} differ between generations {} and {}",
        if changed == 1 { "" } else { "s" },
        args.a,
        args.b
    ));
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The generation to return to (default: the one before the current).
    generation: Option<u64>,
    #[command(flatten)]
    root: RootArgs,
    /// Roll back without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    #[command(flatten)]
    diff: DiffArgs,
    #[command(flatten)]
    switch: SwitchArgs,
    /// Report what happens as JSON lines on standard output, one event
    /// each, and leave the plan out (for programs, as `ctm apply --json`).
    #[arg(long)]
    json: bool,
}

pub fn rollback(args: &RollbackArgs) -> miette::Result<ExitCode> {
    let target = args.root.target();
    let mut say = reporter(args.json);
    let prepared = match apply::prepare_rollback(&target, args.generation, None, &mut say) {
        Err(e) if matches!(e.downcast_ref::<Refused>(), Some(Refused::AlreadyOn(_))) => {
            errln(&format!("{e}."));
            return Ok(ExitCode::SUCCESS);
        }
        other => other?,
    };
    let runner = args.switch.runner();
    if runner != Runner::InUnit && !args.json {
        print_plan(
            &prepared.plan,
            &format!("ctm rollback to generation {}", prepared.generation),
            &args.diff,
        );
    }
    if prepared.refusal().is_some() {
        return Ok(ExitCode::FAILURE);
    }
    let question = format!("Roll back to generation {}?", prepared.generation);
    if runner != Runner::InUnit && !ask_yes(&question, args.yes)? {
        errln("Nothing changed.");
        return Ok(ExitCode::FAILURE);
    }
    apply::roll_back(&target, prepared, runner, &mut say)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct ConfirmArgs {
    /// The generation to keep (default: the one waiting for confirmation);
    /// refused if it is not the one waiting, or was rolled back already.
    generation: Option<u64>,
    #[command(flatten)]
    root: RootArgs,
}

pub fn confirm(args: &ConfirmArgs) -> miette::Result<ExitCode> {
    if apply::confirm(&args.root.target(), args.generation, &mut say)?.is_none() {
        errln("Nothing is waiting for confirmation.");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn recover(root: &RootArgs) -> miette::Result<ExitCode> {
    let current = generations::recover(&root.target(), &mut say)?;
    errln(&format!(
        "The host is on generation {}; no switch is in progress.",
        generation_name(current)
    ));
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// How many of the newest generations to keep (the current one is
    /// always kept).
    #[arg(long, value_name = "N")]
    keep: usize,
    #[command(flatten)]
    root: RootArgs,
}

pub fn gc(args: &GcArgs) -> miette::Result<ExitCode> {
    generations::gc(&args.root.target(), args.keep, &mut say)?;
    Ok(ExitCode::SUCCESS)
}
