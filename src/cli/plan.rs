//! `ctm plan FILE`: what `ctm apply FILE` would change, and why.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use miette::{IntoDiagnostic as _, WrapErr as _, miette};
use serde::{Deserialize, Serialize};

use super::session::{RootArgs, Session};
use super::{Outcome, OutputFormat, load_and_validate};
use crate::compile::{self, Artifacts};
use crate::model::Host;
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
    /// Leave out the diffs of file contents.
    #[arg(long)]
    no_diff: bool,
}

/// A plan saved with `-o`: the plan, and what it was made from, so that
/// `ctm apply` can check that nothing has changed since.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedPlan {
    pub ctm_saved_plan: u32,
    pub root: PathBuf,
    pub source_path: PathBuf,
    pub source_text: String,
    pub lock_text: Option<String>,
    /// `adopt`, `prune`, `check_steps`: the plan is made again with them.
    #[serde(flatten)]
    pub options: crate::plan::Options,
    pub plan: Plan,
}

/// The host file compiled, with what it was compiled from.
pub struct Desired {
    pub source_path: PathBuf,
    pub source_text: String,
    pub previous_lock: Option<String>,
    pub lock_text: String,
    pub artifacts: Artifacts,
    pub summary: String,
}

/// Validates and compiles a host file, printing its problems if any.
pub fn desired(path: &Path) -> miette::Result<Option<Desired>> {
    desired_from(load_and_validate(path, None)?)
}

/// The same, for a host file's text held elsewhere (a saved plan).
pub fn desired_from(outcome: Outcome) -> miette::Result<Option<Desired>> {
    outcome.print_diagnostics(OutputFormat::Human);
    Ok(Desired::compile(&outcome))
}

impl Desired {
    /// Compiles a validated host file; `None` when it has errors.
    pub fn compile(outcome: &Outcome) -> Option<Desired> {
        let path = &outcome.host_file.path;
        let validated = outcome.validated.as_ref()?;
        let host = &validated.host;
        Some(Desired {
            source_path: path.to_path_buf(),
            source_text: outcome.host_file.text.clone(),
            previous_lock: outcome.lock_file.as_ref().map(|l| l.text.clone()),
            lock_text: validated.lock.render(),
            artifacts: compile::compile(host),
            summary: summary(host),
        })
    }
}

/// What a host holds, in a few words: `3 containers, 1 network, 0 tunnels`.
pub fn summary(host: &Host) -> String {
    [
        (host.containers.len(), "container"),
        (host.networks.len(), "network"),
        (host.tunnels.len(), "tunnel"),
    ]
    .iter()
    .map(|(n, what)| format!("{n} {what}{}", if *n == 1 { "" } else { "s" }))
    .collect::<Vec<_>>()
    .join(", ")
}

pub fn print_plan(plan: &Plan, title: &str, diffs: bool) {
    use std::io::Write as _;
    let mut out = anstream::stdout();
    let _ = out.write_all(render::text(plan, title, diffs).as_bytes());
}

pub fn run(args: &Args) -> miette::Result<ExitCode> {
    let Some(desired) = desired(&args.file)? else {
        return Ok(ExitCode::FAILURE);
    };
    let mut session = Session::open(&args.root, false)?;
    let plan = session.plan(&desired.artifacts, args.options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan).into_diagnostic()?);
    } else {
        print_plan(
            &plan,
            &format!("ctm plan {}", args.file.display()),
            !args.no_diff,
        );
    }
    if let Some(out) = &args.out {
        let saved = SavedPlan {
            ctm_saved_plan: 1,
            root: args
                .root
                .root
                .canonicalize()
                .unwrap_or_else(|_| args.root.root.clone()),
            source_path: desired.source_path.clone(),
            source_text: desired.source_text.clone(),
            lock_text: desired.previous_lock.clone(),
            options: args.options,
            plan: plan.clone(),
        };
        let text = serde_json::to_string_pretty(&saved).into_diagnostic()?;
        std::fs::write(out, text + "\n")
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write the plan to {}", out.display()))?;
        eprintln!(
            "saved the plan to {}; apply it with `ctm apply {}`",
            out.display(),
            out.display()
        );
    }
    if !plan.conflicts.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(match (args.detailed_exitcode, plan.is_empty()) {
        (true, false) => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    })
}

/// Reads a plan saved with `ctm plan -o`.
pub fn read_saved(path: &Path) -> miette::Result<SavedPlan> {
    let text = std::fs::read_to_string(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the plan {}", path.display()))?;
    let saved: SavedPlan = serde_json::from_str(&text)
        .into_diagnostic()
        .wrap_err_with(|| format!("{} is not a plan saved by `ctm plan -o`", path.display()))?;
    if saved.ctm_saved_plan != 1 {
        return Err(miette!(
            "{}: unsupported saved plan version {}",
            path.display(),
            saved.ctm_saved_plan
        ));
    }
    Ok(saved)
}
