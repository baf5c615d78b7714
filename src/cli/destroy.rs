//! `ctm destroy NAME`: delete a container's root file system, after the
//! user has seen what goes and typed the name.
//!
//! Not a generation: the container's files stay as the current generation
//! has them. A container still in the host file is made afresh from its
//! image by the next `ctm apply` or `ctm start`; this is how a user resets
//! one, or clears the tree of one removed without `--prune`.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use miette::miette;

use super::session::{RootArgs, Session, ask, progress};
use crate::backend::rootfs;
use crate::compile::health::{self, Health};
use crate::model::Name;
use crate::plan::Action;

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
    let name = name.as_str();
    let mut session = Session::open(&args.root, true)?;
    if !session.system.is_live() {
        return Err(miette!(
            help = "`ctm destroy` acts on the running system (--root /)",
            "{} is a files-only root: ctm makes no root file systems there",
            args.root.root.display()
        ));
    }
    let root = session.store.root().to_path_buf();
    let tree = rootfs::tree(&root, name);
    let current = session.store.current()?;
    let in_current = match current {
        Some(n) => health::of(&session.store.artifacts(n)?)
            .map_err(|e| miette!("{e}"))?
            .containers
            .contains_key(name),
        None => false,
    };
    if !tree.is_dir() {
        return Err(miette!(
            help = "`ctm status` lists the containers",
            "container {name} has no root file system at {}",
            tree.display()
        ));
    }
    let made = rootfs::made_by_ctm(&root, name);
    if made.is_none() && !in_current {
        return Err(miette!(
            help = "ctm deletes only the trees of the containers it manages; `machinectl remove {name}` deletes any",
            "{} was not made by ctm, and {name} is not a container of the current generation",
            tree.display()
        ));
    }
    let running = session
        .system
        .containers(&BTreeSet::from([name.to_string()]))?
        .is_some_and(|c| c.get(name).is_some_and(|c| c.state == "running"));

    let (bytes, files) = rootfs::size(&tree);
    eprintln!(
        "Container {name}: root file system {}, {} in {files} files",
        tree.display(),
        megabytes(bytes)
    );
    match &made {
        Some(made) => eprintln!(
            "  made by ctm from image {} on {}",
            made.image,
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(made.created))
        ),
        None => eprintln!("  not made by ctm: it was there before, and the host file uses it"),
    }
    if running {
        eprintln!("  it is running: it is stopped first");
    }
    if let (true, Some(n)) = (in_current, current) {
        eprintln!(
            "  it is in generation {n}: the next `ctm apply` or `ctm start {name}` makes it afresh from its image"
        );
    }
    let warning = anstyle::AnsiColor::Red.on_default();
    let mut err = anstream::stderr();
    let _ = writeln!(
        err,
        "{warning}Everything in it is deleted; this cannot be undone.{warning:#}"
    );
    // The name, as GitHub asks before deleting a repository: a `yes`
    // typed out of habit deletes nothing.
    let prompt = format!("Type the container's name ({name}) to delete it:");
    if !ask(&prompt, name, args.yes)? {
        eprintln!("Nothing deleted.");
        return Ok(ExitCode::FAILURE);
    }

    let mut report = progress;
    if running {
        let stop = [Action::StopContainer {
            name: name.to_string(),
            reason: "its root file system is deleted (ctm destroy)".into(),
        }];
        report(&format!("{} …", stop[0].summary()));
        session
            .system
            .perform(&stop, &Health::default(), &mut report)?;
    }
    let remove = [Action::RemoveRootfs {
        name: name.to_string(),
        reason: "asked for on the command line (ctm destroy)".into(),
    }];
    session
        .system
        .perform(&remove, &Health::default(), &mut report)?;
    let problems = session.system.purge_removed(&mut report);
    if let Some(first) = problems.into_iter().next() {
        return Err(miette!(
            help = "it is set aside where no container uses it; `ctm destroy` or the next apply tries again",
            "{first}"
        ));
    }
    eprintln!("Deleted the root file system of container {name}.");
    Ok(ExitCode::SUCCESS)
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}
