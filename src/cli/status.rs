//! `ctm status`: the containers, links and firewall of the current
//! generation, as they are now. Like every command on a root, it first
//! finishes or undoes a switch that was interrupted.

use std::collections::BTreeSet;
use std::process::ExitCode;

use miette::{IntoDiagnostic as _, miette};

use super::session::{RootArgs, Session};
use crate::compile::Artifacts;
use crate::compile::health;
use crate::status;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    root: RootArgs,
    /// Print JSON (the same fields as the table, and more).
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> miette::Result<ExitCode> {
    let mut session = Session::open(&args.root, false)?;
    let current = session.store.current()?;
    let (meta, artifacts) = match current {
        Some(n) => (
            Some(session.store.load(n)?.meta),
            session.store.artifacts(n)?,
        ),
        None => (None, Artifacts::default()),
    };
    let expect = health::of(&artifacts).map_err(|e| miette!("{e}"))?;
    // The plan back to the current generation names everything that drifted.
    let (plan, system) = session.plan_and_state(&artifacts, crate::plan::Options::default())?;
    let names: BTreeSet<String> = expect.containers.keys().cloned().collect();
    let containers = session.system.containers(&names)?;
    let pending = session.store.pending_confirm()?;
    let status = status::status(&status::Inputs {
        generation: meta.as_ref(),
        pending_confirm: pending.as_ref(),
        expect: &expect,
        plan: &plan,
        system: &system,
        containers: containers.as_ref(),
    });
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).into_diagnostic()?
        );
    } else {
        print!("{}", status::render(&status));
    }
    Ok(ExitCode::SUCCESS)
}
