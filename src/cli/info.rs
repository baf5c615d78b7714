//! `ctm info`: what this host runs and whether ctm can drive it.

use std::process::ExitCode;

use miette::IntoDiagnostic as _;

use super::output::outln;
use crate::backend::live::MIN_SYSTEMD;
use crate::engine::info::info;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> miette::Result<ExitCode> {
    let info = info();
    if args.json {
        outln(&serde_json::to_string_pretty(&info).into_diagnostic()?);
        return Ok(ExitCode::SUCCESS);
    }
    outln(&format!("ctm {}", info.ctm));
    let width = info
        .requirements
        .iter()
        .map(|r| r.what.len())
        .max()
        .unwrap_or(0);
    for r in &info.requirements {
        let verdict = match (r.ok, r.required) {
            (true, _) => "ok  ",
            (false, true) => "FAIL",
            (false, false) => "warn",
        };
        outln(&format!("{verdict} {:<width$}  {}", r.what, r.found));
        if !r.ok {
            outln(&format!(
                "     {:<width$}  needed for: {}",
                "", r.needed_for
            ));
        }
    }
    outln(&if info.supported {
        format!("This host can be managed by ctm (systemd {MIN_SYSTEMD} or newer found).")
    } else {
        "ctm can plan and compile here, but cannot drive this host until the FAIL lines are fixed."
            .to_string()
    });
    Ok(ExitCode::SUCCESS)
}
