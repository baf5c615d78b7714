//! `ctm destroy NAME`: delete a container's root file system, after the
//! user has seen what goes and typed the name.
//!
//! Not a generation: the container's files stay as the current generation
//! has them. A container still in the host file is made afresh from its
//! image by the next `ctm apply` or `ctm start`; this is how a user resets
//! one, or clears the tree of one removed without `--prune`.

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use miette::miette;

use super::output::{errln, errln_styled, say};
use super::{RootArgs, ask};
use crate::engine::containers;
use crate::model::Name;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container whose root file system is deleted.
    name: String,
    /// Delete without asking (ctm otherwise asks for the name to be typed).
    #[arg(long, short = 'y')]
    yes: bool,
    #[command(flatten)]
    root: RootArgs,
}

pub fn run(args: &Args) -> miette::Result<ExitCode> {
    let name = Name::parse(&args.name).map_err(|e| miette!("{e}"))?;
    let target = args.root.target();
    let preview = containers::destroy_preview(&target, &name, &mut say)?;
    errln(&format!(
        "Container {name}: root file system {}, {:.1} MB in {} files",
        preview.tree.display(),
        preview.bytes as f64 / 1_000_000.0,
        preview.files
    ));
    match &preview.made {
        Some(made) => errln(&format!(
            "  made by ctm from image {} on {}",
            made.image,
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(made.created))
        )),
        None => errln("  not made by ctm: it was there before, and the host file uses it"),
    }
    if preview.running {
        errln("  it is running: it is stopped first");
    }
    if let Some(n) = preview.in_generation {
        errln(&format!(
            "  it is in generation {n}: the next `ctm apply` or `ctm start {name}` makes it afresh from its image"
        ));
    }
    let warning = anstyle::AnsiColor::Red.on_default();
    errln_styled(&format!(
        "{warning}Everything in it is deleted; this cannot be undone.{warning:#}"
    ));
    // The name, as GitHub asks before deleting a repository: a `yes`
    // typed out of habit deletes nothing.
    let prompt = format!("Type the container's name ({name}) to delete it:");
    if !ask(&prompt, name.as_str(), args.yes)? {
        errln("Nothing deleted.");
        return Ok(ExitCode::FAILURE);
    }
    containers::destroy(&target, &name, &mut say)?;
    errln(&format!(
        "Deleted the root file system of container {name}."
    ));
    Ok(ExitCode::SUCCESS)
}
