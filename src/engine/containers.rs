//! One container of the current generation, on the running system:
//! start, stop, restart, delete its root file system, read its journal.
//!
//! These act without making a generation: a container that starts at
//! boot and is stopped by hand is drift that the next plan shows (and the
//! next apply undoes).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use miette::miette;
use serde::Serialize;

use super::events::{Event, Events};
use super::refused::Refused;
use super::session::{Access, Session, Target};
use crate::backend::journal::{Journal, LogQuery};
use crate::backend::rootfs::{self, Made};
use crate::compile::health::{self, Health};
use crate::model::Name;
use crate::plan::{Action, batches};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
}

impl Verb {
    pub fn name(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
        }
    }

    /// "Started", "Stopped", "Restarted".
    pub fn done(self) -> &'static str {
        match self {
            Verb::Start => "Started",
            Verb::Stop => "Stopped",
            Verb::Restart => "Restarted",
        }
    }
}

/// A live session, or why there is none.
fn live_session(
    target: &Target,
    verb: &'static str,
    events: Events<'_>,
) -> miette::Result<Session> {
    let session = Session::open(target, Access::Change, events)?;
    if !session.system.is_live() {
        return Err(Refused::FilesOnly {
            root: target.root.display().to_string(),
            verb,
        }
        .into());
    }
    Ok(session)
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
                format!("generation {current} has no containers")
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

/// Starts, stops or restarts container `name`; a start makes its root
/// file system and runs its provisioning steps first if they are missing.
pub fn act(target: &Target, verb: Verb, name: &Name, events: Events<'_>) -> miette::Result<()> {
    let mut session = live_session(target, verb.name(), events)?;
    let name = name.as_str().to_string();
    let expect = expectations(&session, &name)?;
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
    let mut step = |line: &str| events(Event::Step { line: line.into() });
    for batch in batches(&actions) {
        for action in batch {
            step(&format!("{} …", action.summary()));
        }
        session.system.perform(batch, &expect, &mut step)?;
    }
    if verb != Verb::Stop {
        let running = BTreeSet::from([name.clone()]);
        session.system.health_check(&expect, &running, &mut step)?;
    }
    Ok(())
}

/// What `ctm destroy NAME` would delete, shown before it asks.
#[derive(Debug, Clone, Serialize)]
pub struct DestroyPreview {
    pub name: String,
    pub tree: PathBuf,
    pub bytes: u64,
    pub files: u64,
    /// ctm's record of making it; `None` for a tree it found there.
    pub made: Option<Made>,
    pub running: bool,
    /// The current generation, if it has the container (then the next
    /// apply or start makes the tree afresh).
    pub in_generation: Option<u64>,
}

/// Looks at container `name`'s root file system, refusing one that ctm
/// neither made nor manages.
pub fn destroy_preview(
    target: &Target,
    name: &Name,
    events: Events<'_>,
) -> miette::Result<DestroyPreview> {
    let name = name.as_str();
    let mut session = live_session(target, "destroy", events)?;
    let root = session.store.root().to_path_buf();
    let tree = rootfs::tree(&root, name);
    let current = session.store.current()?;
    let in_generation = match current {
        Some(n) => health::of(&session.store.artifacts(n)?)
            .map_err(|e| miette!("{e}"))?
            .containers
            .contains_key(name)
            .then_some(n),
        None => None,
    };
    if !tree.is_dir() {
        return Err(miette!(
            help = "`ctm status` lists the containers",
            "container {name} has no root file system at {}",
            tree.display()
        ));
    }
    let made = rootfs::made_by_ctm(&root, name);
    if made.is_none() && in_generation.is_none() {
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
    Ok(DestroyPreview {
        name: name.to_string(),
        tree,
        bytes,
        files,
        made,
        running,
        in_generation,
    })
}

/// Deletes container `name`'s root file system (stopping it first if it
/// runs); the tree is set aside, then deleted.
pub fn destroy(target: &Target, name: &Name, events: Events<'_>) -> miette::Result<()> {
    // Looked at again under the lock: what was shown may have changed.
    let preview = destroy_preview(target, name, events)?;
    let mut session = live_session(target, "destroy", events)?;
    let name = preview.name;
    let mut step = |line: &str| events(Event::Step { line: line.into() });
    if preview.running {
        let stop = [Action::StopContainer {
            name: name.clone(),
            reason: "its root file system is deleted (ctm destroy)".into(),
        }];
        step(&format!("{} …", stop[0].summary()));
        session
            .system
            .perform(&stop, &Health::default(), &mut step)?;
    }
    let remove = [Action::RemoveRootfs {
        name: name.clone(),
        reason: "asked for on the command line (ctm destroy)".into(),
    }];
    session
        .system
        .perform(&remove, &Health::default(), &mut step)?;
    let problems = session.system.purge_removed(&mut step);
    if let Some(first) = problems.into_iter().next() {
        return Err(miette!(
            help = "it is set aside where no container uses it; `ctm destroy` or the next apply tries again",
            "{first}"
        ));
    }
    Ok(())
}

/// The command that prints container `name`'s journal.
pub fn logs(journal: &dyn Journal, query: &LogQuery) -> miette::Result<Command> {
    query.check().map_err(|e| miette!("{e}"))?;
    journal.command(query).ok_or_else(|| {
        Refused::FilesOnly {
            root: "this root".into(),
            verb: "read the journal of",
        }
        .into()
    })
}

/// The current generation's container `name`, with the model the host
/// file stored with it gives (`None` for the model if that no longer
/// validates); refuses a container that is not in it.
fn managed(
    session: &Session,
    name: &Name,
) -> miette::Result<(u64, Option<crate::model::Container>)> {
    let Some(current) = session.store.current()? else {
        return Err(miette!(
            help = "ctm operates the containers it applied",
            "container {name} is not managed by ctm: nothing has been applied yet"
        ));
    };
    let expect = health::of(&session.store.artifacts(current)?).map_err(|e| miette!("{e}"))?;
    if !expect.containers.contains_key(name.as_str()) {
        let known: Vec<&str> = expect.containers.keys().map(String::as_str).collect();
        return Err(miette!(
            help = format!(
                "the containers of generation {current}: {}",
                known.join(", ")
            ),
            "container {name} is not managed by ctm: generation {current} has no container {name}"
        ));
    }
    let model = super::load::stored(&session.store, current)?
        .validated
        .and_then(|v| {
            v.host
                .containers
                .values()
                .find(|c| c.name == *name)
                .cloned()
        });
    Ok((current, model))
}

/// The leader of running container `name`, or why there is none.
fn running_leader(session: &mut Session, name: &Name) -> miette::Result<u32> {
    session.system.leader(name.as_str())?.ok_or_else(|| {
        miette!(
            help = format!("`ctm start {name}` starts it"),
            "container {name} is not running"
        )
    })
}

/// What to run inside a container (`ctm exec`, `ctm shell`, the console).
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub name: Name,
    /// The command and its arguments; empty for a login shell.
    pub argv: Vec<String>,
    /// Run as this user of the container (root when `None`).
    pub user: Option<crate::model::UserName>,
    /// The working directory inside the container.
    pub workdir: Option<String>,
    /// `TERM`, when the command gets a terminal.
    pub term: Option<String>,
}

/// A command ready to run inside a container.
pub struct Exec {
    pub command: Command,
    /// The container's root as the host reaches it (`/proc/LEADER/root`),
    /// where its terminal is made (`backend::pty`).
    pub container_root: PathBuf,
}

/// The command that runs `request` inside its running container: entered
/// through every namespace of its leader, with the environment the host
/// file gives the container. The caller runs it (attached to a pty, or
/// with its own standard streams); nothing is held meanwhile, so an
/// apply is not kept waiting by a long shell.
pub fn exec(target: &Target, request: &ExecRequest, events: Events<'_>) -> miette::Result<Exec> {
    let mut session = Session::open(target, Access::Read, events)?;
    if !session.system.is_live() {
        return Err(Refused::FilesOnly {
            root: target.root.display().to_string(),
            verb: "run a command in",
        }
        .into());
    }
    let (_, model) = managed(&session, &request.name)?;
    let leader = running_leader(&mut session, &request.name)?;
    if let Some(dir) = &request.workdir
        && (!dir.starts_with('/') || dir.chars().any(char::is_control))
    {
        return Err(miette!(
            "the working directory must be an absolute path inside the container, not {dir:?}"
        ));
    }
    let user = request
        .user
        .as_ref()
        .map_or("root", crate::model::UserName::as_str);
    // runuser (util-linux, in every Debian image) becomes the user as
    // the container's own /etc/passwd says, and gives a login shell its
    // environment.
    let argv: Vec<String> = if request.argv.is_empty() {
        ["runuser", "-l", user].map(String::from).to_vec()
    } else if request.user.is_some() {
        ["runuser", "-u", user, "--"]
            .map(String::from)
            .into_iter()
            .chain(request.argv.iter().cloned())
            .collect()
    } else {
        request.argv.clone()
    };
    let mut env: Vec<(String, String)> = model
        .map(|c| {
            c.environment
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.as_str().to_string()))
                .collect()
        })
        .unwrap_or_default();
    if let Some(term) = &request.term
        && !term.is_empty()
        && term
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._+".contains(c))
    {
        env.push(("TERM".into(), term.clone()));
    }
    Ok(Exec {
        command: crate::backend::exec::command_in(leader, &argv, &env, request.workdir.as_deref()),
        container_root: PathBuf::from(format!("/proc/{leader}/root")),
    })
}

/// Freezes every process of running container `name` (`paused`), or
/// thaws them. A paused container stays paused across applies.
pub fn set_paused(
    target: &Target,
    name: &Name,
    paused: bool,
    events: Events<'_>,
) -> miette::Result<()> {
    let mut session = live_session(target, if paused { "pause" } else { "resume" }, events)?;
    managed(&session, name)?;
    running_leader(&mut session, name)?;
    session.system.set_paused(name.as_str(), paused)?;
    Ok(())
}

/// A signal, by name (`TERM`, `SIGTERM`, any case) or number (`15`).
pub fn parse_signal(text: &str) -> Result<i32, String> {
    if let Ok(n) = text.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map(|s| s as i32)
            .map_err(|_| format!("{n} is not a signal number"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| {
            format!("{text:?} is not a signal (TERM, KILL, HUP, INT, USR1, … or a number)")
        })
}

/// Sends `signal` to every process of running container `name`.
pub fn kill(target: &Target, name: &Name, signal: i32, events: Events<'_>) -> miette::Result<()> {
    let mut session = live_session(target, "kill", events)?;
    managed(&session, name)?;
    running_leader(&mut session, name)?;
    session.system.kill(name.as_str(), signal)?;
    Ok(())
}

/// One container's use, with its CPU as a share of one core over the
/// sampling interval.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerStats {
    pub name: String,
    /// `running`, `paused` or `stopped`.
    pub state: String,
    /// CPU time over the interval, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// The sample at the end of the interval; `None` when not running.
    pub stats: Option<crate::backend::stats::Stats>,
}

/// `ctm stats`: what each container of the current generation (or the
/// named ones) uses, sampled twice `interval` apart.
pub fn stats(
    target: &Target,
    names: &[Name],
    interval: std::time::Duration,
    events: Events<'_>,
) -> miette::Result<Vec<ContainerStats>> {
    let session = live_session(target, "measure", events)?;
    let wanted: BTreeSet<String> = if names.is_empty() {
        match session.store.current()? {
            Some(n) => health::of(&session.store.artifacts(n)?)
                .map_err(|e| miette!("{e}"))?
                .containers
                .into_keys()
                .collect(),
            None => BTreeSet::new(),
        }
    } else {
        for name in names {
            managed(&session, name)?;
        }
        names.iter().map(|n| n.to_string()).collect()
    };
    // Measuring takes a while: let other ctm commands have the lock.
    let Session { mut system, .. } = session;
    let first = system.stats(&wanted)?.unwrap_or_default();
    let started = std::time::Instant::now();
    std::thread::sleep(interval);
    let second = system.stats(&wanted)?.unwrap_or_default();
    let elapsed = started.elapsed().as_micros() as f64;
    let live = system.containers(&wanted)?.unwrap_or_default();
    Ok(wanted
        .into_iter()
        .map(|name| {
            let cpu_percent = match (
                first.get(&name).and_then(|s| s.cpu_usec),
                second.get(&name).and_then(|s| s.cpu_usec),
            ) {
                (Some(a), Some(b)) if elapsed > 0.0 => {
                    Some(b.saturating_sub(a) as f64 * 100.0 / elapsed)
                }
                _ => None,
            };
            let state = match live.get(&name) {
                Some(l) if l.paused => "paused".to_string(),
                Some(l) => l.state.clone(),
                None => "stopped".to_string(),
            };
            ContainerStats {
                stats: second.get(&name).cloned(),
                cpu_percent,
                state,
                name,
            }
        })
        .collect())
}
