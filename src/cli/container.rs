//! `ctm start|stop|restart NAME` and `ctm logs NAME`: one container of the
//! current generation, on the running system.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::ExitCode;

use miette::{IntoDiagnostic as _, WrapErr as _, miette};

use super::RootArgs;
use super::output::{errln, say};
use crate::backend::journal::{Journalctl, LogQuery};
use crate::engine::containers::{self, Verb};
use crate::model::Name;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container's name.
    name: String,
    #[command(flatten)]
    root: RootArgs,
}

pub fn run(verb: Verb, args: &Args) -> miette::Result<ExitCode> {
    let name = Name::parse(&args.name).map_err(|e| miette!("{e}"))?;
    containers::act(&args.root.target(), verb, &name, &mut say)?;
    errln(&format!("{} container {name}.", verb.done()));
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The container's name.
    name: String,
    /// Keep printing new entries as they come.
    #[arg(long, short = 'f')]
    follow: bool,
    /// How many of the last entries to show.
    #[arg(long, short = 'n', default_value_t = 50)]
    lines: u32,
    /// The host's log of the container's unit (systemd-nspawn's own
    /// messages and the boot console) instead of the container's journal.
    #[arg(long)]
    unit: bool,
}

/// Replaces this process with `journalctl`, so that following and ^C
/// behave as they do there.
pub fn logs(args: &LogsArgs) -> miette::Result<ExitCode> {
    let name = Name::parse(&args.name).map_err(|e| miette!("{e}"))?;
    let query = LogQuery {
        name: name.to_string(),
        follow: args.follow,
        lines: args.lines,
        unit: args.unit,
    };
    let journal = Journalctl {
        root: PathBuf::from("/"),
    };
    let mut command = containers::logs(&journal, &query)?;
    let error = command.exec();
    Err(error)
        .into_diagnostic()
        .wrap_err("cannot run journalctl (from systemd)")
}
