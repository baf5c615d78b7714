//! `ctm start|stop|restart NAME` and `ctm logs NAME`: one container of the
//! current generation, on the running system.
//!
//! These act on the running system without making a generation: a
//! container that starts at boot and is stopped by hand is drift that the
//! next `ctm plan` shows (and `ctm apply` undoes).

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, ExitCode};

use miette::{IntoDiagnostic as _, WrapErr as _, miette};

use super::session::{RootArgs, Session, progress};
use crate::compile::health::{self, Health};
use crate::model::Name;
use crate::plan::{Action, batches};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container's name.
    name: String,
    #[command(flatten)]
    root: RootArgs,
}

#[derive(Debug, Clone, Copy)]
pub enum Verb {
    Start,
    Stop,
    Restart,
}

/// The current generation's expectations, narrowed to one container.
fn expectations(session: &Session, name: &str) -> miette::Result<Health> {
    let Some(current) = session.store.current()? else {
        return Err(miette!(
            "nothing has been applied yet, so there is no container {name}"
        ));
    };
    let all = health::of(&session.store.artifacts(current)?).map_err(|e| miette!("{e}"))?;
    let Some(container) = all.containers.get(name) else {
        let known: Vec<&str> = all.containers.keys().map(String::as_str).collect();
        return Err(miette!(
            help = if known.is_empty() {
                "generation {current} has no containers".to_string()
            } else {
                format!("its containers: {}", known.join(", "))
            },
            "there is no container {name} in generation {current}"
        ));
    };
    let mut one = Health::default();
    one.containers.insert(name.to_string(), container.clone());
    Ok(one)
}

pub fn run(verb: Verb, args: &Args) -> miette::Result<ExitCode> {
    let mut session = Session::open(&args.root, true)?;
    if !session.system.is_live() {
        return Err(miette!(
            help = "these commands act on the running system (--root /)",
            "{} is a files-only root: there is no container to {}",
            args.root.root.display(),
            verb_name(verb)
        ));
    }
    let expect = expectations(&session, &args.name)?;
    let name = args.name.clone();
    let reason = "asked for on the command line".to_string();
    let actions = match verb {
        // Idempotent on either side: the root file system is made if it is
        // missing, and steps whose check passes do not run.
        Verb::Start => vec![
            Action::PrepareContainer {
                name: name.clone(),
                reason: reason.clone(),
            },
            Action::StartContainer {
                name: name.clone(),
                reason: reason.clone(),
            },
            Action::ProvisionContainer {
                name: name.clone(),
                reason,
                steps: Vec::new(),
            },
        ],
        Verb::Stop => vec![Action::StopContainer {
            name: name.clone(),
            reason,
        }],
        Verb::Restart => vec![Action::RestartContainer {
            name: name.clone(),
            reason,
        }],
    };
    let mut report = progress;
    for batch in batches(&actions) {
        for action in batch {
            report(&format!("{} …", action.summary()));
        }
        session.system.perform(batch, &expect, &mut report)?;
    }
    if !matches!(verb, Verb::Stop) {
        let running = BTreeSet::from([name.clone()]);
        session
            .system
            .health_check(&expect, &running, &mut report)?;
    }
    eprintln!(
        "{} container {name}.",
        match verb {
            Verb::Start => "Started",
            Verb::Stop => "Stopped",
            Verb::Restart => "Restarted",
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn verb_name(verb: Verb) -> &'static str {
    match verb {
        Verb::Start => "start",
        Verb::Stop => "stop",
        Verb::Restart => "restart",
    }
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
    // A machine name cannot start with `-`, so it cannot pass for an option.
    let name = Name::parse(&args.name).map_err(|e| miette!("{e}"))?;
    let mut command = Command::new("journalctl");
    command.args(["--no-pager", "--lines"]);
    command.arg(args.lines.to_string());
    if args.follow {
        command.arg("--follow");
    }
    if args.unit {
        command.args(["--unit", &crate::layout::unit(name.as_str())]);
    } else {
        let root = Path::new("/").join(crate::layout::machine_dir(name.as_str()));
        if !root.exists() {
            return Err(miette!(
                help = "`ctm status` lists the containers",
                "container {name} has no root file system at {}",
                root.display()
            ));
        }
        // A running container's journal is read through machined; a
        // stopped one's from its root file system.
        if machine_running(name.as_str()) {
            command.args(["--machine", name.as_str()]);
        } else {
            command.arg("--root").arg(&root);
        }
    }
    let error = command.exec();
    Err(error)
        .into_diagnostic()
        .wrap_err("cannot run journalctl (from systemd)")
}

fn machine_running(name: &str) -> bool {
    crate::backend::live::LiveSystem::connect(Path::new("/"))
        .and_then(|live| live.machines())
        .is_ok_and(|machines| machines.get(name).is_some_and(|m| m.state == "running"))
}
