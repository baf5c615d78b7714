//! One container of the current generation, on the running system:
//! start, stop, restart, delete its root file system, read its journal.
//!
//! These act without making a generation: a container that starts at
//! boot and is stopped by hand is drift that the next plan shows (and the
//! next apply undoes).

use std::collections::{BTreeMap, BTreeSet};
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
    let reason = "asked for by hand".to_string();
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
    for batch in batches(&actions) {
        for action in batch {
            events(Event::performing(action));
        }
        let mut step = |line: &str| events(Event::Step { line: line.into() });
        session.system.perform(batch, &expect, &mut step)?;
    }
    let mut step = |line: &str| events(Event::Step { line: line.into() });
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
    // An overlay root's own bytes are its changes; the image stays.
    let overlaid = rootfs::upper(&root, name);
    let (bytes, files) = rootfs::size(if overlaid.is_dir() { &overlaid } else { &tree });
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
    if preview.running {
        let stop = [Action::StopContainer {
            name: name.clone(),
            reason: "its root file system is deleted (ctm destroy)".into(),
        }];
        events(Event::performing(&stop[0]));
        let mut step = |line: &str| events(Event::Step { line: line.into() });
        session
            .system
            .perform(&stop, &Health::default(), &mut step)?;
    }
    let remove = [Action::RemoveRootfs {
        name: name.clone(),
        reason: "asked for on the command line (ctm destroy)".into(),
    }];
    let mut step = |line: &str| events(Event::Step { line: line.into() });
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
    let current = session.store.current()?;
    let expect = match current {
        Some(n) => health::of(&session.store.artifacts(n)?).map_err(|e| miette!("{e}"))?,
        None => Health::default(),
    };
    let Some(current) = current.filter(|_| expect.containers.contains_key(name.as_str())) else {
        return Err(no_such_container(name, current, expect.containers.keys()).into());
    };
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

pub(super) fn no_such_container<'a>(
    name: &Name,
    generation: Option<u64>,
    known: impl Iterator<Item = &'a String>,
) -> Refused {
    let known: Vec<&str> = known.map(String::as_str).collect();
    Refused::NoSuchContainer {
        name: name.to_string(),
        generation,
        help: match generation {
            None => "ctm operates the containers it applied".into(),
            Some(n) if known.is_empty() => format!("generation {n} has no containers"),
            Some(n) => format!("the containers of generation {n}: {}", known.join(", ")),
        },
    }
}

/// Whether `verb` can be done to container `name`: the root is the
/// running system and the container is one of the current generation's.
/// Looked at without holding anything, for a face to answer before it
/// starts a job (the use case looks again).
pub fn check(
    target: &Target,
    name: &Name,
    verb: &'static str,
    events: Events<'_>,
) -> miette::Result<()> {
    managed(&live_reader(target, verb, events)?, name)?;
    Ok(())
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

/// A bind mount as the container page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BindView {
    pub source: String,
    pub target: String,
    pub read_only: bool,
    pub idmap: bool,
}

/// A volume a container mounts, with where it is on the host.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeMountView {
    pub volume: String,
    /// The volume's directory (`/var/lib/ctm/volumes/NAME`).
    pub source: String,
    pub target: String,
    pub read_only: bool,
    pub idmap: bool,
}

/// A container's limits; `null`: none.
#[derive(Debug, Clone, Serialize)]
pub struct LimitsView {
    pub memory_bytes: Option<u64>,
    /// CPU time in CPUs (`1.5`: 150 % of one).
    pub cpus: Option<f64>,
}

/// One provisioning step of the current generation, with what it did
/// the last time an apply checked it.
#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    pub id: String,
    pub description: String,
    /// `before-boot` or `running`.
    pub phase: crate::compile::provision::Phase,
    /// What the last apply that checked it found and did; `null` when no
    /// apply has recorded it (files-only roots record none).
    pub result: Option<crate::backend::StepRecord>,
    /// The generation whose apply that was.
    pub recorded_in: Option<u64>,
}

/// Everything the container page shows (`GET /api/containers/{name}`).
#[derive(Debug, Clone, Serialize)]
pub struct ContainerDetail {
    /// As the status document has it (`containers[]`).
    pub status: crate::status::ContainerStatus,
    /// Whether the running system is driven (false: files only).
    pub live: bool,
    pub generation: Option<u64>,
    pub binds: Vec<BindView>,
    pub volumes: Vec<VolumeMountView>,
    pub limits: LimitsView,
    pub environment: BTreeMap<String, String>,
    pub steps: Vec<StepView>,
    /// The last lines of its journal.
    pub logs: Vec<String>,
    /// Why there are no log lines, when there are none to read.
    pub logs_note: Option<String>,
}

/// The container page's document: container `name` of the current
/// generation as the status document shows it, with its binds, limits,
/// environment, provisioning steps and their results, and the last
/// `log_lines` lines of its journal.
pub fn detail(
    target: &Target,
    sources: &super::status::Sources<'_>,
    journal: &dyn Journal,
    name: &Name,
    log_lines: u32,
    events: Events<'_>,
) -> miette::Result<ContainerDetail> {
    let mut status = super::status::status(target, Access::ReadShared, sources, events)?;
    let generation = status.generation.as_ref().map(|m| m.number);
    let Some(at) = status
        .containers
        .iter()
        .position(|c| c.name == name.as_str())
    else {
        let known: Vec<String> = status.containers.iter().map(|c| c.name.clone()).collect();
        return Err(no_such_container(name, generation, known.iter()).into());
    };
    let container = status.containers.swap_remove(at);
    let store = target.store();
    let model = match generation {
        Some(n) => super::load::stored(&store, n)?.validated.and_then(|v| {
            v.host
                .containers
                .values()
                .find(|c| c.name == *name)
                .cloned()
        }),
        None => None,
    };
    let steps = match generation {
        Some(n) => steps_of(&store, n, name.as_str())?,
        None => Vec::new(),
    };
    let (logs, logs_note) = match journal.last_lines(name.as_str(), log_lines) {
        Some(Ok(lines)) => (lines, None),
        Some(Err(why)) => (Vec::new(), Some(why)),
        None => (Vec::new(), status.logs_note.clone()),
    };
    Ok(ContainerDetail {
        status: container,
        live: status.live,
        generation,
        binds: model.as_ref().map_or_else(Vec::new, |m| {
            m.binds
                .iter()
                .map(|b| BindView {
                    source: b.source.as_str().to_string(),
                    target: b.target.as_str().to_string(),
                    read_only: b.read_only,
                    idmap: b.idmap,
                })
                .collect()
        }),
        volumes: model.as_ref().map_or_else(Vec::new, |m| {
            m.volumes
                .iter()
                .map(|v| VolumeMountView {
                    volume: v.volume.to_string(),
                    source: crate::layout::volume_path(v.volume.as_str()),
                    target: v.target.as_str().to_string(),
                    read_only: v.read_only,
                    idmap: v.idmap,
                })
                .collect()
        }),
        limits: LimitsView {
            memory_bytes: model
                .as_ref()
                .and_then(|m| m.limits.memory.map(|b| b.bytes())),
            cpus: model
                .as_ref()
                .and_then(|m| m.limits.cpu_quota.map(|q| f64::from(q.percent()) / 100.0)),
        },
        environment: model.as_ref().map_or_else(BTreeMap::new, |m| {
            m.environment
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.as_str().to_string()))
                .collect()
        }),
        steps,
        logs,
        logs_note,
    })
}

/// Container `name`'s steps in generation `current`, each with the record
/// of the newest apply up to it that checked the step.
fn steps_of(
    store: &crate::state::Store,
    current: u64,
    name: &str,
) -> miette::Result<Vec<StepView>> {
    let artifacts = store.artifacts(current)?;
    let path = crate::compile::provision::steps_path(name);
    let Some(crate::compile::Content::File { text, .. }) =
        artifacts.files.get(&path).map(|a| &a.content)
    else {
        return Ok(Vec::new());
    };
    let steps: Vec<crate::compile::provision::Step> =
        serde_json::from_str(text).map_err(|e| miette!("{path} of generation {current}: {e}"))?;
    let mut views: Vec<StepView> = steps
        .into_iter()
        .map(|s| StepView {
            id: s.id,
            description: s.description,
            phase: s.phase,
            result: None,
            recorded_in: None,
        })
        .collect();
    for n in store
        .generations()?
        .into_iter()
        .rev()
        .filter(|&n| n <= current)
    {
        if views.iter().all(|v| v.result.is_some()) {
            break;
        }
        let records = store.provisioned(n)?;
        for record in records.get(name).into_iter().flatten() {
            if let Some(view) = views
                .iter_mut()
                .find(|v| v.id == record.id && v.result.is_none())
            {
                view.result = Some(record.clone());
                view.recorded_in = Some(n);
            }
        }
    }
    Ok(views)
}

/// One sample of what a container uses (the page computes rates from
/// successive samples, as the dashboard does).
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub name: String,
    /// `running`, `paused` or `stopped`.
    pub state: String,
    /// When it was taken (milliseconds since the epoch).
    pub sampled_at_ms: u64,
    /// `null` when it does not run.
    pub stats: Option<crate::backend::stats::Stats>,
}

/// A session under the shared lock on the running system (looking need
/// not keep an apply waiting), or why there is none to `verb` in.
fn live_reader(target: &Target, verb: &'static str, events: Events<'_>) -> miette::Result<Session> {
    let session = Session::open(target, Access::ReadShared, events)?;
    if !session.system.is_live() {
        return Err(Refused::FilesOnly {
            root: target.root.display().to_string(),
            verb,
        }
        .into());
    }
    Ok(session)
}

/// What each of `names` uses now.
fn samples_of(session: &mut Session, names: &BTreeSet<String>) -> miette::Result<Vec<Sample>> {
    let stats = session.system.stats(names)?.unwrap_or_default();
    let live = session.system.containers(names)?.unwrap_or_default();
    let at = super::status::millis_now();
    Ok(names
        .iter()
        .map(|name| Sample {
            name: name.clone(),
            state: match live.get(name) {
                Some(l) if l.paused => "paused".to_string(),
                Some(l) => l.state.clone(),
                None => "stopped".to_string(),
            },
            sampled_at_ms: at,
            stats: stats.get(name).cloned(),
        })
        .collect())
}

/// One sample of container `name` of the current generation.
pub fn sample(target: &Target, name: &Name, events: Events<'_>) -> miette::Result<Sample> {
    let mut session = live_reader(target, "measure", events)?;
    managed(&session, name)?;
    let mut one = samples_of(&mut session, &BTreeSet::from([name.to_string()]))?;
    Ok(one.remove(0))
}

/// One sample of every container of the current generation (`/metrics`);
/// `None` on a files-only root.
pub fn samples(target: &Target, events: Events<'_>) -> miette::Result<Option<Vec<Sample>>> {
    let mut session = Session::open(target, Access::ReadShared, events)?;
    if !session.system.is_live() {
        return Ok(None);
    }
    let names: BTreeSet<String> = match session.store.current()? {
        Some(n) => health::of(&session.store.artifacts(n)?)
            .map_err(|e| miette!("{e}"))?
            .containers
            .into_keys()
            .collect(),
        None => BTreeSet::new(),
    };
    samples_of(&mut session, &names).map(Some)
}
