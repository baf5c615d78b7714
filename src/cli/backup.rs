//! `ctm backup NAME`, `ctm backups NAME`, `ctm backup --volume NAME`,
//! `ctm backups --volume NAME`, `ctm export NAME -o FILE`,
//! `ctm import FILE [--as NAME]`.

use std::path::PathBuf;
use std::process::ExitCode;

use miette::{IntoDiagnostic as _, miette};

use super::RootArgs;
use super::output::{errln, outln, say};
use crate::engine::backups::{self, BackupOptions, Made};
use crate::model::Name;

fn name(text: &str) -> miette::Result<Name> {
    Name::parse(text).map_err(|e| miette!("{e}"))
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container's name.
    #[arg(required_unless_present = "volume")]
    name: Option<String>,
    /// Back up this volume alone: every running container that mounts it
    /// is frozen while it is copied (see docs/backups.md).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["name", "stop"])]
    volume: Option<String>,
    /// The directory the archive goes into (default:
    /// /var/lib/ctm/backups under the root).
    #[arg(long, value_name = "DIR")]
    to: Option<PathBuf>,
    /// After the new archive is whole, delete the container's (or the
    /// volume's) older archives in that directory but the newest N (this
    /// one included).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    keep: Option<u32>,
    /// Stop a running container for the copy and start it again, rather
    /// than freeze its processes while it is copied.
    #[arg(long)]
    stop: bool,
    #[command(flatten)]
    root: RootArgs,
}

fn describe(m: &Made) -> String {
    let mut text = format!(
        "{:.1} MB ({:.1} MB of data in {} members",
        m.bytes as f64 / 1e6,
        m.data as f64 / 1e6,
        m.members
    );
    if !m.volumes.is_empty() {
        text.push_str(&format!(", with volumes {}", m.volumes.join(", ")));
    }
    text.push(')');
    text
}

pub fn backup(args: &Args) -> miette::Result<ExitCode> {
    let options = BackupOptions {
        to: args.to.clone(),
        keep: args.keep.map(|k| k as usize),
        stop: args.stop,
    };
    if let Some(volume) = &args.volume {
        let volume = name(volume)?;
        let m = backups::backup_volume(&args.root.target(), &volume, &options, &mut say)?;
        errln(&format!(
            "Backed up volume {volume} to {}, {:.1} MB ({:.1} MB of data in {} members); `ctm restore --volume {volume} --from {}` puts it back.",
            m.path.display(),
            m.bytes as f64 / 1e6,
            m.data as f64 / 1e6,
            m.members,
            m.path.display()
        ));
        pruned(&m, args.keep);
        return Ok(ExitCode::SUCCESS);
    }
    // clap requires a name without --volume.
    let name = name(args.name.as_deref().unwrap_or_default())?;
    let m = backups::backup(&args.root.target(), &name, &options, &mut say)?;
    errln(&format!(
        "Backed up container {name} to {}, {}; `ctm restore {name} --from {}` puts it back.",
        m.path.display(),
        describe(&m),
        m.path.display()
    ));
    pruned(&m, args.keep);
    Ok(ExitCode::SUCCESS)
}

fn pruned(m: &Made, keep: Option<u32>) {
    if !m.pruned.is_empty() {
        errln(&format!(
            "Deleted {} older archive{} (--keep {}).",
            m.pruned.len(),
            if m.pruned.len() == 1 { "" } else { "s" },
            keep.unwrap_or_default()
        ));
    }
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The container's name.
    #[arg(required_unless_present = "volume")]
    name: Option<String>,
    /// List the archives of this volume alone (`ctm backup --volume`).
    #[arg(long, value_name = "NAME", conflicts_with = "name")]
    volume: Option<String>,
    /// The directory of the archives (default: /var/lib/ctm/backups
    /// under the root).
    #[arg(long = "in", value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    root: RootArgs,
}

pub fn list(args: &ListArgs) -> miette::Result<ExitCode> {
    let (all, what) = match &args.volume {
        Some(volume) => {
            let volume = name(volume)?;
            let all = backups::list_volume(&args.root.target(), &volume, args.dir.as_deref())?;
            (all, format!("volume {volume}"))
        }
        None => {
            // clap requires a name without --volume.
            let name = name(args.name.as_deref().unwrap_or_default())?;
            let all = backups::list(&args.root.target(), &name, args.dir.as_deref())?;
            (all, format!("container {name}"))
        }
    };
    if args.json {
        outln(&serde_json::to_string_pretty(&all).into_diagnostic()?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        errln(&format!("No backups of {what}."));
        return Ok(ExitCode::SUCCESS);
    }
    outln(&format!("{:<20} {:>10}  {}", "BACKUP", "SIZE", "ARCHIVE"));
    for b in &all {
        outln(&format!(
            "{:<20} {:>7.1} MB  {}",
            b.id,
            b.bytes as f64 / 1e6,
            b.path.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The container's name.
    name: String,
    /// The archive to write (it must not exist).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Stop a running container for the copy and start it again, rather
    /// than freeze its processes while it is copied.
    #[arg(long)]
    stop: bool,
    #[command(flatten)]
    root: RootArgs,
}

pub fn export(args: &ExportArgs) -> miette::Result<ExitCode> {
    let name = name(&args.name)?;
    let m = backups::export(
        &args.root.target(),
        &name,
        &args.output,
        args.stop,
        &mut say,
    )?;
    errln(&format!(
        "Exported container {name} to {}, {}; on another host `ctm import {}` puts it in place.",
        m.path.display(),
        describe(&m),
        m.path.display()
    ));
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The archive (`ctm export`, `ctm backup`).
    file: PathBuf,
    /// Import the container under this name.
    #[arg(long = "as", value_name = "NAME")]
    as_name: Option<String>,
    #[command(flatten)]
    root: RootArgs,
}

pub fn import(args: &ImportArgs) -> miette::Result<ExitCode> {
    let as_name = args.as_name.as_deref().map(name).transpose()?;
    let i = backups::import(&args.root.target(), &args.file, as_name.as_ref(), &mut say)?;
    errln(&format!(
        "Imported container {}{} with {}. Add this to the host file; the next apply starts it with its data:",
        i.container,
        if i.container != i.from {
            format!(" (container {} of the archive)", i.from)
        } else {
            String::new()
        },
        if i.volumes.is_empty() {
            "no volumes".to_string()
        } else {
            format!("volumes {}", i.volumes.join(", "))
        }
    ));
    outln(i.host.trim_end());
    if let Some(lock) = &i.lock {
        errln("Its lock entries on the old host (addresses, the image's digest):");
        outln(lock.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}
