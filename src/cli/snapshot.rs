//! `ctm snapshot NAME`, `ctm snapshots [NAME]`, `ctm restore NAME ID`.

use std::path::PathBuf;
use std::process::ExitCode;

use miette::{IntoDiagnostic as _, miette};

use super::RootArgs;
use super::output::{errln, outln, say};
use crate::backend::snapshots::{Method, Snapshot};
use crate::engine::backups;
use crate::engine::snapshots::{self, Options};
use crate::model::Name;

fn name(text: &str) -> miette::Result<Name> {
    Name::parse(text).map_err(|e| miette!("{e}"))
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container's name.
    name: String,
    /// Copy the container's volumes too.
    #[arg(long)]
    volumes: bool,
    /// Stop a running container for the copy and start it again, rather
    /// than freeze its processes while it is copied.
    #[arg(long)]
    stop: bool,
    #[command(flatten)]
    root: RootArgs,
}

pub fn take(args: &Args) -> miette::Result<ExitCode> {
    let name = name(&args.name)?;
    let options = Options {
        volumes: args.volumes,
        stop: args.stop,
    };
    let s = snapshots::snapshot(&args.root.target(), &name, options, &mut say)?;
    errln(&format!(
        "Took snapshot {} of container {name} ({}); `ctm restore {name} {}` puts it back.",
        s.id,
        describe(&s),
        s.id
    ));
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this container's snapshots.
    name: Option<String>,
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
    /// Delete this snapshot of the container (its trees and record).
    #[arg(long, value_name = "ID", requires = "name", conflicts_with = "keep")]
    delete: Option<String>,
    /// Delete the container's snapshots but the newest N.
    #[arg(long, value_name = "N", requires = "name")]
    keep: Option<usize>,
    #[command(flatten)]
    root: RootArgs,
}

pub fn list(args: &ListArgs) -> miette::Result<ExitCode> {
    let name = args.name.as_deref().map(name).transpose()?;
    if let (Some(name), Some(id)) = (&name, &args.delete) {
        let s = snapshots::delete(&args.root.target(), name, id, &mut say)?;
        errln(&format!(
            "Deleted snapshot {} of container {name} ({}).",
            s.id,
            describe(&s)
        ));
        return Ok(ExitCode::SUCCESS);
    }
    if let (Some(name), Some(keep)) = (&name, args.keep) {
        let gone = snapshots::prune(&args.root.target(), name, keep, &mut say)?;
        errln(&format!(
            "Deleted {} snapshot{} of container {name}; the newest {keep} are kept.",
            gone.len(),
            if gone.len() == 1 { "" } else { "s" }
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let all = snapshots::list(&args.root.target(), name.as_ref())?;
    if args.json {
        outln(&serde_json::to_string_pretty(&all).into_diagnostic()?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        errln("No snapshots.");
        return Ok(ExitCode::SUCCESS);
    }
    outln(&format!(
        "{:<16} {:<20} {:<20} {}",
        "CONTAINER", "SNAPSHOT", "TAKEN", "WHAT"
    ));
    for s in &all {
        outln(&format!(
            "{:<16} {:<20} {:<20} {}",
            s.container,
            s.id,
            crate::clock::rfc3339(s.created),
            describe(s)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `12.3 MB in 456 files, with volumes pgdata, frozen; ctm snapshot`.
fn describe(s: &Snapshot) -> String {
    let mut parts = vec![format!(
        "{:.1} MB in {} files",
        s.bytes as f64 / 1e6,
        s.files
    )];
    if !s.volumes.is_empty() {
        parts.push(format!("with volumes {}", s.volumes.join(", ")));
    }
    if s.frozen {
        parts.push("frozen for the copy".into());
    }
    if s.method == Method::BtrfsSnapshot {
        parts.push("btrfs snapshot".into());
    }
    parts.push(s.reason.clone());
    parts.join(", ")
}

#[derive(Debug, clap::Args)]
// One of the two, named together in the usage line and in the error
// when neither is given.
#[command(group(clap::ArgGroup::new("what").required(true).args(["snapshot", "from"])))]
pub struct RestoreArgs {
    /// The container's name.
    #[arg(required_unless_present = "volume")]
    name: Option<String>,
    /// The snapshot to put back (`ctm snapshots NAME` lists them).
    snapshot: Option<String>,
    /// Put back a backup archive instead (`ctm backup`): it is verified
    /// whole before anything changes.
    #[arg(long, value_name = "ARCHIVE")]
    from: Option<PathBuf>,
    /// Restore this volume alone from its archive (`ctm backup --volume`),
    /// given with --from; refused while a container that mounts it runs.
    /// What it replaces is kept as a new archive beside the one restored.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["name", "snapshot"], requires = "from")]
    volume: Option<String>,
    #[command(flatten)]
    root: RootArgs,
}

pub fn restore(args: &RestoreArgs) -> miette::Result<ExitCode> {
    if let (Some(volume), Some(from)) = (&args.volume, &args.from) {
        let volume = name(volume)?;
        let r = backups::restore_volume(&args.root.target(), &volume, from, &mut say)?;
        errln(&format!(
            "Restored backup {} of volume {volume} from {}. What it replaced is kept as {}.",
            r.id,
            from.display(),
            r.kept.path.display()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    // clap requires a name without --volume.
    let name = name(args.name.as_deref().unwrap_or_default())?;
    if let Some(from) = &args.from {
        let r = backups::restore(&args.root.target(), &name, from, &mut say)?;
        errln(&format!(
            "Restored backup {} of container {name} from {}{}. What it replaced is kept as snapshot {}.",
            r.id,
            from.display(),
            if r.restarted {
                " and started it again"
            } else {
                ""
            },
            r.kept.id
        ));
        return Ok(ExitCode::SUCCESS);
    }
    // clap requires one of the two.
    let id = args.snapshot.as_deref().unwrap_or_default();
    let r = snapshots::restore(&args.root.target(), &name, id, &mut say)?;
    errln(&format!(
        "Restored snapshot {} of container {name}{}. What it replaced is kept as snapshot {}.",
        r.restored.id,
        if r.restarted {
            " and started it again"
        } else {
            ""
        },
        r.kept.id
    ));
    Ok(ExitCode::SUCCESS)
}
