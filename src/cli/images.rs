//! `ctm images`, `ctm image pull NAME [FILE]`, `ctm image build NAME
//! [FILE]`, `ctm image rm NAME`.

use std::path::PathBuf;
use std::process::ExitCode;

use miette::IntoDiagnostic as _;

use super::RootArgs;
use super::output::{outln, say};
use crate::engine::Access;
use crate::engine::images::{self, Definition};

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    root: RootArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Build, pull or unpack an image into the store now, as a container's
    /// first apply would (nothing if it is there already).
    Pull(PullArgs),
    /// Build an image from its recipe (`from`, `run`, `copy`, `env`) into
    /// the store now, showing each step; the steps an earlier build ran
    /// unchanged come from the build cache (nothing runs if none changed).
    Build(PullArgs),
    /// Remove an image from the store (refused while a container of the
    /// current generation is made from it).
    Rm(RmArgs),
}

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// The image's name.
    name: String,
    /// The host file that defines it (default: the current generation).
    file: Option<PathBuf>,
    #[command(flatten)]
    root: RootArgs,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// The image's name.
    name: String,
    #[command(flatten)]
    root: RootArgs,
}

pub fn list(args: &ListArgs) -> miette::Result<ExitCode> {
    let list = images::list(&args.root.target(), Access::Read, &mut say)?;
    if args.json {
        outln(&serde_json::to_string_pretty(&list).into_diagnostic()?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        outln("No images: the current generation uses none, and the store keeps none.");
        return Ok(ExitCode::SUCCESS);
    }
    outln(&format!(
        "{:<20}  {:<44}  {:<19}  {:>10}  containers",
        "name", "source", "digest", "size"
    ));
    for i in &list {
        let digest = i
            .digest
            .as_deref()
            .map_or("-".to_string(), |d| d.chars().take(19).collect::<String>());
        let size = i.size.map_or("-".to_string(), |s| {
            format!("{:.1} MiB", s as f64 / f64::from(1 << 20))
        });
        let containers = if i.current {
            i.containers.join(", ")
        } else {
            "(an older generation's; `ctm gc` removes it)".into()
        };
        outln(&format!(
            "{:<20}  {:<44}  {:<19}  {:>10}  {containers}",
            i.name, i.source, digest, size
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(command: &Command) -> miette::Result<ExitCode> {
    match command {
        Command::Pull(args) | Command::Build(args) => {
            let from = match &args.file {
                Some(file) => Definition::HostFile(file),
                None => Definition::Current,
            };
            let make = match command {
                Command::Build(_) => images::build,
                _ => images::pull,
            };
            let tree = make(&args.root.target(), &args.name, from, &mut say)?;
            outln(&format!("Image {} is at {tree}.", args.name));
        }
        Command::Rm(args) => {
            images::remove(&args.root.target(), &args.name, &mut say)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
