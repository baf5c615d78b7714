//! Applying a host file (or a saved plan) as a new generation, waiting for
//! its confirmation, confirming it, and rolling back to an earlier one.
//!
//! Each use case comes in two steps, so that a face can show the plan and
//! ask (the command line), or answer the request (the web server), between
//! them: `prepare_*` takes the lock, recovers, plans and checks what the
//! user saw against the host; `apply` / `roll_back` performs it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use miette::{IntoDiagnostic as _, WrapErr as _, miette};
use serde::{Deserialize, Serialize};

use super::events::{Event, Events};
use super::images;
use super::load::{Desired, Outcome, lock_path_for, read_at_most, read_lock, validate_text};
use super::planning::{Read, compile_while, desired_key, with_manifest};
use super::refused::Refused;
use super::session::{Access, Prefetch, Session, Target};
use crate::apply::{Progress, Stage, SwitchSpec};
use crate::backend::live::{APPLY_UNIT, LiveSystem};
use crate::clock::{Timeout, now_rfc3339, now_unix};
use crate::compile::Artifacts;
use crate::fs;
use crate::plan::{self, Manifest, Plan};
use crate::state::{Memory, Meta, Store};

/// A plan saved with `ctm plan -o`: the plan, and what it was made from,
/// so that `ctm apply` can check that nothing has changed since.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedPlan {
    pub ctm_saved_plan: u32,
    pub root: PathBuf,
    pub source_path: PathBuf,
    pub source_text: String,
    pub lock_text: Option<String>,
    /// `adopt`, `prune`, `check_steps`: the plan is made again with them.
    #[serde(flatten)]
    pub options: plan::Options,
    pub plan: Plan,
    /// The topologies it was compiled with down.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub down: std::collections::BTreeSet<crate::model::Name>,
}

impl SavedPlan {
    pub fn new(
        target: &Target,
        desired: &Desired,
        options: plan::Options,
        plan: Plan,
    ) -> SavedPlan {
        SavedPlan {
            ctm_saved_plan: 1,
            root: target
                .root
                .canonicalize()
                .unwrap_or_else(|_| target.root.clone()),
            source_path: desired.source_path.clone(),
            source_text: desired.source_text.clone(),
            lock_text: desired.previous_lock.clone(),
            options,
            plan,
            down: desired.down.clone(),
        }
    }

    /// Writes the plan to `path`.
    pub fn save(&self, path: &Path) -> miette::Result<()> {
        let text = serde_json::to_string_pretty(self).into_diagnostic()?;
        std::fs::write(path, text + "\n")
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write the plan to {}", path.display()))
    }

    /// Reads a plan saved with `ctm plan -o`, refusing one made for another
    /// root; the host file and lock it holds, validated again.
    pub fn load(path: &Path, target: &Target) -> miette::Result<(SavedPlan, Outcome)> {
        let text = std::fs::read_to_string(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read the plan {}", path.display()))?;
        let saved: SavedPlan = serde_json::from_str(&text)
            .into_diagnostic()
            .wrap_err_with(|| format!("{} is not a plan saved by `ctm plan -o`", path.display()))?;
        if saved.ctm_saved_plan != 1 {
            return Err(miette!(
                "{}: unsupported saved plan version {}",
                path.display(),
                saved.ctm_saved_plan
            ));
        }
        let root = target
            .root
            .canonicalize()
            .unwrap_or_else(|_| target.root.clone());
        if saved.root != root {
            return Err(miette!(
                "{} was planned for root {}, not {}",
                path.display(),
                saved.root.display(),
                root.display()
            ));
        }
        let outcome = validate_text(
            &saved.source_path,
            saved.source_text.clone(),
            lock_path_for(&saved.source_path),
            saved.lock_text.clone(),
        );
        Ok((saved, outcome))
    }
}

/// What the user saw before deciding: the plan's fingerprint, and where
/// it was shown (for the message if the host has moved since).
pub struct Seen<'a> {
    pub fingerprint: &'a str,
    pub from_generation: Option<u64>,
    /// "plan.json was made", "the plan was shown".
    pub when: String,
    /// What may have changed: "the host", "the host or the host file".
    pub what: &'static str,
}

fn check_seen(seen: Option<&Seen<'_>>, plan: &Plan) -> Result<(), Refused> {
    match seen {
        Some(seen) if seen.fingerprint != plan.fingerprint => Err(Refused::Stale {
            what: seen.what,
            since: seen.when.clone(),
            planned: seen.from_generation,
            now: plan.from_generation,
        }),
        _ => Ok(()),
    }
}

/// Where a switch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// On the running system, in the transient unit `ctm-apply.service`,
    /// so that a dropped SSH session cannot leave it half done; elsewhere
    /// in this process.
    Auto,
    /// In this process (`--foreground`, the web server).
    Foreground,
    /// This process is the transient unit another ctm started.
    InUnit,
}

/// An apply, planned and checked, ready to go.
pub struct PreparedApply {
    pub desired: Desired,
    /// `Manifest::of(desired.artifacts)`, made once for the plan and the
    /// switch.
    pub manifest: Arc<Manifest>,
    pub session: Session,
    pub plan: Plan,
    pub options: plan::Options,
}

impl PreparedApply {
    /// Why it must not go ahead, if anything: a conflict, a kind of link
    /// the kernel cannot make, or a quota the file system cannot enforce.
    pub fn refusal(&self) -> Option<Refused> {
        refusal(&self.plan)
    }
}

fn refusal(plan: &Plan) -> Option<Refused> {
    if !plan.conflicts.is_empty() {
        return Some(Refused::Conflicts {
            conflicts: plan.conflicts.clone(),
        });
    }
    let kinds = plan.blocking_links();
    if !kinds.is_empty() {
        return Some(Refused::UnsupportedLinks {
            kinds: kinds.to_vec(),
        });
    }
    if !plan.unenforceable_quotas.is_empty() {
        return Some(Refused::UnenforceableQuotas {
            quotas: plan.unenforceable_quotas.clone(),
        });
    }
    (!plan.unavailable_roots.is_empty()).then(|| Refused::UnavailableRoots {
        roots: plan.unavailable_roots.clone(),
    })
}

/// Takes the lock, recovers, and plans `desired` against the host; if the
/// user saw a plan (`seen`), refuses when the host has moved since.
pub fn prepare_apply(
    target: &Target,
    desired: Desired,
    options: plan::Options,
    confirm_timeout: Option<Timeout>,
    seen: Option<&Seen<'_>>,
    events: Events<'_>,
) -> miette::Result<PreparedApply> {
    refuse_options(options, confirm_timeout)?;
    let target = with_memory(target);
    let session = Session::open(&target, Access::Change, events)?;
    let manifest = Arc::new(session.store.manifest_of(&desired.artifacts));
    prepare_opened(
        Opened {
            session,
            prefetch: None,
            desired,
            manifest,
        },
        options,
        seen,
        events,
    )
}

/// Reads, checks and compiles the host file at `file` (at most `limit`
/// bytes), takes the lock, recovers and plans it: [`prepare_apply`] of
/// the file, compiled while the plan reads what it compares with
/// (`planning::compile_while`). Gives the file as checked, its
/// diagnostics to show first, and the apply unless the file has errors.
pub fn prepare_apply_file(
    target: &Target,
    file: &Path,
    limit: usize,
    options: plan::Options,
    confirm_timeout: Option<Timeout>,
    events: Events<'_>,
) -> miette::Result<(Outcome, Option<miette::Result<PreparedApply>>)> {
    refuse_options(options, confirm_timeout)?;
    let bytes = read_at_most(file, limit)
        .map_err(|e| miette!("cannot read host file {}: {e}", file.display()))?;
    let lock_path = lock_path_for(file);
    let lock_text = read_lock(&lock_path)?;
    let target = with_memory(target);
    let store = target.store();
    let down = store.current_down()?;
    // A session that cannot be opened is reported only if the host file
    // compiles: the file's own errors come first.
    let opened = Session::open(&target, Access::Change, events);
    let read = Read {
        file,
        bytes,
        limit,
        lock_path,
        lock_text,
    };
    let (loaded, opened) = compile_while(read, &down, &store, || {
        opened.and_then(|session| Ok((session.prefetch()?, session)))
    });
    let (mut outcome, mut compiled) = loaded;
    if images::unresolved(&outcome) {
        compiled = images::compile_resolved(&target.root, &mut outcome, &down, events)?
            .map(|desired| with_manifest(&store, desired));
    }
    let prepared = compiled.map(|(desired, manifest)| {
        let (prefetch, session) = opened?;
        prepare_opened(
            Opened {
                session,
                prefetch: Some(prefetch),
                desired,
                manifest,
            },
            options,
            None,
            events,
        )
    });
    Ok((outcome, prepared))
}

/// Options that cannot go together, refused before anything is read.
fn refuse_options(options: plan::Options, confirm_timeout: Option<Timeout>) -> Result<(), Refused> {
    if options.prune && confirm_timeout.is_some() {
        return Err(Refused::PruneWithConfirm);
    }
    Ok(())
}

/// The target an apply plans and switches with: the plan and then the
/// switch read the current generation's manifest, kept in memory for
/// this apply so that it is read once (the manifest of 5,000 containers
/// is 5 MB of JSON). A long-lived process's own memory is kept.
fn with_memory(target: &Target) -> Target {
    let mut target = target.clone();
    target
        .memory
        .get_or_insert_with(|| Arc::new(Memory::once()));
    target
}

/// A session opened for an apply, with what it read ahead and the
/// desired files' manifest.
struct Opened {
    session: Session,
    prefetch: Option<Prefetch>,
    desired: Desired,
    manifest: Arc<Manifest>,
}

fn prepare_opened(
    opened: Opened,
    options: plan::Options,
    seen: Option<&Seen<'_>>,
    events: Events<'_>,
) -> miette::Result<PreparedApply> {
    let Opened {
        mut session,
        prefetch,
        desired,
        manifest,
    } = opened;
    let (plan, _) = session.plan_with(
        &desired.artifacts,
        Some(manifest.clone()),
        options,
        events,
        prefetch,
    )?;
    check_seen(seen, &plan)?;
    Ok(PreparedApply {
        desired,
        manifest,
        session,
        plan,
        options,
    })
}

/// How an apply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The plan was empty: nothing was switched.
    NoChanges,
    /// The host is on the new generation (confirmed, if that was asked).
    Generation(u64),
    /// The generation was applied, then rolled back because nobody
    /// confirmed it in time.
    Unconfirmed(u64),
}

/// Performs a prepared apply: switches to a new generation (in a
/// transient unit on the running system unless `runner` says otherwise),
/// writes the lock file next to the host file, and with a confirmation
/// timeout waits for `ctm confirm` (except in the unit: the ctm that
/// started it waits).
pub fn apply(
    target: &Target,
    prepared: PreparedApply,
    confirm_timeout: Option<Timeout>,
    runner: Runner,
    events: Events<'_>,
) -> miette::Result<Applied> {
    if let Some(refused) = prepared.refusal() {
        return Err(refused.into());
    }
    let started = std::time::Instant::now();
    let applied = apply_prepared(target, prepared, confirm_timeout, runner, events);
    // The ctm that started an apply's unit records it, once; a root ctm
    // never managed gets nothing written.
    let store = target.store();
    if runner != Runner::InUnit && store.dir().is_dir() {
        let result = match &applied {
            Ok(Applied::Generation(_)) => "applied",
            Ok(Applied::NoChanges) => "no-changes",
            Ok(Applied::Unconfirmed(_)) => "unconfirmed",
            Err(_) => "failed",
        };
        let last = crate::state::LastApply {
            at: crate::clock::now_unix(),
            seconds: started.elapsed().as_secs_f64(),
            result: result.into(),
            generation: store.current().ok().flatten(),
        };
        if let Err(e) = store.set_last_apply(&last) {
            events(Event::Warning {
                message: format!("cannot record how the apply ended: {e}"),
            });
        }
    }
    applied
}

fn apply_prepared(
    target: &Target,
    prepared: PreparedApply,
    confirm_timeout: Option<Timeout>,
    runner: Runner,
    events: Events<'_>,
) -> miette::Result<Applied> {
    let PreparedApply {
        desired,
        manifest,
        mut session,
        plan,
        options,
    } = prepared;
    if plan.is_empty() {
        if runner != Runner::InUnit {
            write_lock(&desired, events);
        }
        return Ok(Applied::NoChanges);
    }
    let number = session.store.next_number()?;
    let from = plan.from_generation;
    let live = session.system.is_live();
    if runner == Runner::Auto && live {
        // What was shown and confirmed is what the unit applies: as a saved
        // plan, refused there if the host changed in between.
        let request = SavedPlan::new(target, &desired, options, plan);
        drop(session);
        let text = serde_json::to_vec_pretty(&request).into_diagnostic()?;
        let mut args = vec![
            "apply".to_string(),
            "--root".to_string(),
            target.root.display().to_string(),
        ];
        if let Some(timeout) = confirm_timeout {
            args.extend(["--confirm-timeout".to_string(), timeout.to_string()]);
        }
        let description = format!(
            "ctm apply {} (generation {number})",
            desired.source_path.display()
        );
        if !switch_in_unit(
            target,
            &description,
            &args,
            Some(("apply-plan.json", &text)),
            events,
        )? {
            return Err(miette!(
                "the switch to generation {number} failed (its output is above)"
            ));
        }
        write_lock(&desired, events);
        return match confirm_timeout {
            Some(timeout) => await_confirmation(target, number, from, timeout, true, events),
            None => Ok(Applied::Generation(number)),
        };
    }
    if runner == Runner::InUnit {
        events(Event::PlanSummary {
            add: plan.summary.add,
            change: plan.summary.change,
            destroy: plan.summary.destroy,
            actions: plan.summary.actions,
        });
    }
    let deadline = confirm_timeout.map(Timeout::deadline);
    events(Event::Applying { generation: number });
    switch_to_new(
        &mut session,
        number,
        (&desired, &manifest),
        &plan,
        deadline,
        events,
    )?;
    events(Event::Healthy { live });
    if runner != Runner::InUnit {
        // In the unit the host file's path may be relative to another
        // directory: the ctm that started the unit writes the lock.
        write_lock(&desired, events);
    }
    events(Event::Applied { generation: number });
    match confirm_timeout {
        // The revert timer is armed; the ctm that started this unit waits.
        Some(_) if runner == Runner::InUnit => Ok(Applied::Generation(number)),
        Some(timeout) => {
            // Let `ctm confirm` take the lock while this process waits.
            drop(session);
            await_confirmation(target, number, from, timeout, live, events)
        }
        None => Ok(Applied::Generation(number)),
    }
}

/// Switches the host to generation `number`, made from `desired` by
/// `plan`.
fn switch_to_new(
    session: &mut Session,
    number: u64,
    (desired, manifest): (&Desired, &Manifest),
    plan: &Plan,
    confirm_deadline: Option<u64>,
    events: Events<'_>,
) -> miette::Result<()> {
    let meta = Meta {
        number,
        created: now_rfc3339(),
        source_name: desired
            .source_path
            .file_name()
            .map_or("host.kdl".into(), |n| n.to_string_lossy().into_owned()),
        source_sha256: fs::sha256_hex(desired.source_text.as_bytes()),
        summary: desired.summary.clone(),
        ctm_version: env!("CARGO_PKG_VERSION").into(),
        plan_key: desired_key(&session.store, desired),
        down: desired.down.clone(),
    };
    let mut step = |p: Progress| events(Event::from(p));
    session.engine(&mut step).switch(&SwitchSpec {
        from: plan.from_generation,
        to: Some(number),
        desired: &desired.artifacts,
        files: &plan.files,
        actions: &plan.actions,
        confirm_deadline,
        stage: Some(Stage {
            meta: &meta,
            manifest,
            source_text: &desired.source_text,
            lock_text: &desired.lock_text,
        }),
    })?;
    Ok(())
}

/// Records the assigned addresses next to the host file. The generation
/// holds them too, so failing here loses nothing: the message says so.
pub fn write_lock(desired: &Desired, events: Events<'_>) {
    if desired.previous_lock.as_deref() == Some(desired.lock_text.as_str()) {
        return;
    }
    let path = lock_path_for(&desired.source_path);
    let message = match fs::write_file(&path, desired.lock_text.as_bytes(), 0o644) {
        Ok(()) => format!("updated {}", path.display()),
        Err(e) => format!("warning: {e}; the generation keeps a copy of the lock"),
    };
    events(Event::LockFile { message });
}

/// Where the process in the transient unit writes its output, for the
/// ctm that started it to follow (and for later reading).
const RUN_DIR: &str = "run/ctm";

/// Runs `ctm ARGS --in-unit` as the transient unit that performs a switch,
/// following its output; the unit outlives this process, so a dropped SSH
/// session cannot leave a switch half done. Returns whether it succeeded.
fn switch_in_unit(
    target: &Target,
    description: &str,
    args: &[String],
    request: Option<(&str, &[u8])>,
    events: Events<'_>,
) -> miette::Result<bool> {
    let dir = target.root.join(RUN_DIR);
    std::fs::create_dir_all(&dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot create {}", dir.display()))?;
    let mut argv = vec![
        std::env::current_exe()
            .into_diagnostic()
            .wrap_err("cannot find ctm's own binary")?
            .display()
            .to_string(),
    ];
    argv.extend(args.iter().cloned());
    if let Some((name, bytes)) = request {
        let path = dir.join(name);
        fs::write_file(&path, bytes, 0o600)?;
        argv.push(path.display().to_string());
    }
    argv.push("--in-unit".into());
    let log = dir.join("switch.log");
    fs::write_file(&log, b"", 0o600)?;
    // ctm's own settings (and, in tests, its fault injection) go along.
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CTM_"))
        .collect();
    let live = LiveSystem::connect(&target.root)?;
    events(Event::Detached {
        unit: APPLY_UNIT.into(),
        log: log.display().to_string(),
    });
    Ok(
        live.run_in_unit(APPLY_UNIT, description, &argv, &env, &log, &mut |line| {
            events(Event::UnitOutput { line: line.into() })
        })?,
    )
}

/// Says how to confirm, then waits for it (see [`wait_for_confirmation`]).
fn await_confirmation(
    target: &Target,
    number: u64,
    from: Option<u64>,
    timeout: Timeout,
    timer_armed: bool,
    events: Events<'_>,
) -> miette::Result<Applied> {
    let store = target.store();
    let deadline = store
        .pending_confirm()?
        .filter(|p| p.generation == number)
        .map_or_else(|| timeout.deadline(), |p| p.deadline);
    events(Event::ConfirmBefore {
        generation: number,
        previous: from,
        deadline,
        seconds: timeout.seconds(),
        command: if target.root.as_os_str() == "/" {
            "ctm confirm".to_string()
        } else {
            format!("ctm confirm --root {}", target.root.display())
        },
    });
    wait_for_confirmation(target, number, timer_armed, events)
}

/// Waits until generation `number` is confirmed or rolled back. When its
/// deadline passes, the revert timer rolls it back if one is armed
/// (`timer_armed`, the running system); else this process does.
pub fn wait_for_confirmation(
    target: &Target,
    number: u64,
    timer_armed: bool,
    events: Events<'_>,
) -> miette::Result<Applied> {
    let store = target.store();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        match store.pending_confirm()? {
            None => {
                // Confirmed, or rolled back by another ctm that saw the
                // deadline pass.
                if store.current()? == Some(number) {
                    events(Event::Confirmed { generation: number });
                    return Ok(Applied::Generation(number));
                }
                let previous = store.current()?;
                events(Event::Unconfirmed {
                    generation: number,
                    previous,
                });
                return Ok(Applied::Unconfirmed(number));
            }
            // The timer reverts; this process only reports, unless the
            // timer is long overdue.
            Some(p) if timer_armed && now_unix() < p.deadline + 60 => {}
            Some(p) if p.generation == number && now_unix() >= p.deadline => {
                // Opening the session rolls back an expired confirmation.
                let mut session = Session::open(target, Access::ChangeState, events)?;
                session.revert_unconfirmed(events)?;
                let previous = session.store.current()?;
                events(Event::Unconfirmed {
                    generation: number,
                    previous,
                });
                return Ok(Applied::Unconfirmed(number));
            }
            Some(_) => {}
        }
    }
}

/// `ctm confirm [GEN]`: keeps the generation waiting for confirmation. A
/// confirmation that comes after the deadline is refused, saying which
/// generation the host went back to.
pub fn confirm(
    target: &Target,
    asked: Option<u64>,
    events: Events<'_>,
) -> miette::Result<Option<u64>> {
    // Opening the session rolls back an apply whose deadline has passed.
    let mut session = Session::open(target, Access::ChangeState, events)?;
    let store = &session.store;
    match store.pending_confirm()? {
        Some(p) if asked.is_none_or(|n| n == p.generation) => {
            store.clear_pending_confirm()?;
            // With the confirmation gone from the state, a timer that
            // fired anyway would find nothing to revert.
            if let Err(e) = session.system.disarm_revert() {
                events(Event::Warning {
                    message: format!("warning: {e}; the revert timer will find nothing to do"),
                });
            }
            events(Event::Confirmed {
                generation: p.generation,
            });
            Ok(Some(p.generation))
        }
        pending => {
            let current = store.current()?;
            let candidate = match asked {
                Some(n) => Some(n),
                None => store
                    .generations()?
                    .last()
                    .copied()
                    .filter(|n| Some(*n) != current),
            };
            if let Some(n) = candidate
                && let Some(reverted) = store.reverted(n)?
            {
                return Err(Refused::ConfirmTooLate {
                    generation: n,
                    at: reverted.at,
                    host_on: current,
                }
                .into());
            }
            if let Some(asked) = asked {
                return Err(Refused::ConfirmOther {
                    asked,
                    waiting: pending.map(|p| p.generation),
                }
                .into());
            }
            Ok(None)
        }
    }
}

/// A rollback, planned and checked, ready to go.
pub struct PreparedRollback {
    pub session: Session,
    pub generation: u64,
    pub desired: Artifacts,
    pub plan: Plan,
}

impl PreparedRollback {
    pub fn refusal(&self) -> Option<Refused> {
        refusal(&self.plan)
    }
}

/// Takes the lock, recovers, and plans the current generation's own host
/// file against the host again: what undoes drift in the running system
/// (a link set down, a container stopped) without a host file at hand
/// (`ctm tunnel diagnose --fix`). Applied with [`apply`] like any other,
/// into a new generation with the same files.
pub fn prepare_reapply(target: &Target, events: Events<'_>) -> miette::Result<PreparedApply> {
    prepare_reapply_with(target, None, None, events)
}

/// [`prepare_reapply`] with the topologies in `down` down instead of the
/// current generation's (`ctm up`, `ctm down`); if the user saw a plan
/// (`seen`), refuses when the host has moved since.
pub fn prepare_reapply_with(
    target: &Target,
    down: Option<&std::collections::BTreeSet<crate::model::Name>>,
    seen: Option<&Seen<'_>>,
    events: Events<'_>,
) -> miette::Result<PreparedApply> {
    let desired = reapplied(target, down, events)?;
    prepare_apply(
        target,
        desired,
        plan::Options::default(),
        None,
        seen,
        events,
    )
}

/// The current generation's own host file, compiled again with the
/// topologies in `down` down (the current generation's when `None`):
/// what [`prepare_reapply_with`] applies, and what a preview of it plans.
pub fn reapplied(
    target: &Target,
    down: Option<&std::collections::BTreeSet<crate::model::Name>>,
    events: Events<'_>,
) -> miette::Result<Desired> {
    let store = target.store();
    let Some(current) = store.current()? else {
        return Err(miette!(
            "nothing has been applied yet, so there is nothing to apply again"
        ));
    };
    let mut outcome = super::load::stored(&store, current)?;
    // What its OCI images run is in the blob cache since they were
    // pulled: read again, not stored with the generation.
    if let Some(validated) = &mut outcome.validated {
        super::images::read_configs(&target.root, validated, events)?;
    }
    let down = match down {
        Some(down) => down.clone(),
        None => store.meta(current)?.down,
    };
    Desired::compile(&outcome, &down).ok_or_else(|| {
        miette!("the host file stored with generation {current} no longer validates")
    })
}

/// Takes the lock, recovers, and plans the return to `generation` (the
/// one before the current when `None`).
pub fn prepare_rollback(
    target: &Target,
    generation: Option<u64>,
    seen: Option<&Seen<'_>>,
    events: Events<'_>,
) -> miette::Result<PreparedRollback> {
    let mut session = Session::open(target, Access::Change, events)?;
    let generation = rollback_target(&session.store, generation)?;
    if session.store.current()? == Some(generation) {
        return Err(Refused::AlreadyOn(generation).into());
    }
    let desired = session.store.artifacts(generation)?;
    let plan = session.plan(&desired, plan::Options::default(), events)?;
    check_seen(seen, &plan)?;
    Ok(PreparedRollback {
        session,
        generation,
        desired,
        plan,
    })
}

/// The generation `ctm rollback [GEN]` returns to: the one asked for, or
/// the one before the current.
fn rollback_target(store: &Store, asked: Option<u64>) -> miette::Result<u64> {
    if let Some(n) = asked {
        return Ok(n);
    }
    let Some(current) = store.current()? else {
        return Err(miette!(
            "nothing has been applied yet, so there is nothing to roll back"
        ));
    };
    store
        .generations()?
        .iter()
        .rev()
        .find(|n| **n < current)
        .copied()
        .ok_or_else(|| miette!("generation {current} is the oldest; there is nothing before it"))
}

/// Returns the host to the prepared generation (in a transient unit on
/// the running system unless `runner` says otherwise). A rollback settles
/// any pending confirmation.
pub fn roll_back(
    target: &Target,
    prepared: PreparedRollback,
    runner: Runner,
    events: Events<'_>,
) -> miette::Result<()> {
    if let Some(refused) = prepared.refusal() {
        return Err(refused.into());
    }
    let PreparedRollback {
        mut session,
        generation,
        desired,
        plan,
    } = prepared;
    if runner == Runner::Auto && session.system.is_live() {
        drop(session);
        let args = [
            "rollback".to_string(),
            generation.to_string(),
            "--root".to_string(),
            target.root.display().to_string(),
        ];
        let description = format!("ctm rollback to generation {generation}");
        if !switch_in_unit(target, &description, &args, None, events)? {
            return Err(miette!(
                "the rollback to generation {generation} failed (its output is above)"
            ));
        }
        return Ok(());
    }
    events(Event::RollingBackTo { generation });
    session.switch_back(Some(generation), &desired, &plan, None, events)?;
    events(Event::RolledBack { generation });
    Ok(())
}

/// Commits the host file and its lock (when there is one) in the git
/// repository that holds them, after an apply that made `generation`;
/// says what happened, or why it failed.
pub fn commit_host_file(host_file: &Path, generation: u64) -> Result<String, String> {
    let dir = host_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = host_file
        .file_name()
        .ok_or("the host file has no file name")?
        .to_string_lossy()
        .into_owned();
    let lock = format!("{name}.lock");
    let mut files = vec![name.as_str()];
    if dir.join(&lock).exists() {
        files.push(&lock);
    }
    crate::backend::git::commit(dir, &files, &format!("ctm apply: generation {generation}"))
}
