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
pub fn logs(journal: &dyn Journal, query: &LogQuery) -> Result<Command, Refused> {
    journal.command(query).ok_or_else(|| Refused::FilesOnly {
        root: "this root".into(),
        verb: "read the journal of",
    })
}
