//! Stage 6: moving the host from one generation to another, all or nothing.
//!
//! The order of a switch (docs/apply-safety.md explains each step):
//!
//! 1. the room it needs is checked (`space`);
//! 2. the journal is written, durably: which paths will change and what
//!    each holds now, the contents the new generation adds to the state,
//!    and the actions to undo;
//! 3. everything is written without fsync: the new generation (only the
//!    contents the state does not hold yet; the rest is shared with the
//!    generations before), a hard link keeping what each touched path
//!    holds, and each new file beside its path (`files`); then all of it
//!    is made durable at once (`fs::Batch`);
//! 4. the generation is renamed into place, and the files are renamed
//!    over their paths directory by directory, one fsync per directory;
//! 5. the system actions run, then the health checks;
//! 6. `current` moves to the target (the commit point); then the kept
//!    links and the journal go.
//!
//! Any failure before 6 puts every touched path back from what was kept,
//! undoes the actions, removes what the switch added to the state and the
//! journal, all without needing any new space. A crash anywhere leaves
//! the journal behind, and [`Engine::recover`] finishes the job: forward
//! if `current` already moved, else back.

mod files;
mod space;

use std::collections::BTreeSet;

use crate::backend::{System, SystemError};
use crate::compile::Artifacts;
use crate::compile::health::{self, Health};
use crate::fs::{self, Batch};
use crate::plan::FileChange;
use crate::plan::{Action, Manifest, batches};
use crate::state::{Journal, Meta, PendingConfirm, Staged, StateError, Store, TouchedPath};

/// A failed switch and what became of the host.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{cause}; {outcome}")]
#[diagnostic(code(ctm::apply_failed))]
pub struct ApplyFailure {
    pub cause: String,
    pub outcome: String,
    /// The rollback itself failed: the host may be between generations.
    pub rollback_failed: bool,
}

pub struct SwitchSpec<'a> {
    pub from: Option<u64>,
    /// `None` switches to no generation at all (undoing a first apply).
    pub to: Option<u64>,
    pub desired: &'a Artifacts,
    pub files: &'a [FileChange],
    pub actions: &'a [Action],
    /// Arms `ctm confirm`: recorded before `current` moves.
    pub confirm_deadline: Option<u64>,
    /// A new generation to stage (after the journal, so that a crash
    /// while staging is undone like any other).
    pub stage: Option<Stage<'a>>,
}

pub struct Stage<'a> {
    pub meta: &'a Meta,
    /// `Manifest::of(desired)`: made once, by the plan that this switch
    /// carries out (hashing 1,000 containers' files again was a fifth of
    /// an apply).
    pub manifest: &'a Manifest,
    pub source_text: &'a str,
    pub lock_text: &'a str,
}

/// What recovery found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    Nothing,
    /// The switch had completed; only its journal was left.
    Finished {
        generation: Option<u64>,
    },
    /// The switch was undone.
    RolledBack {
        to: Option<u64>,
        problems: Vec<String>,
    },
}

/// What a switch reports while it runs; the application layer turns each
/// into an event for the terminal, the web page or `--json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// An action is about to run; on a root that is not the running system
    /// (files only) it is not performed (`performed` false).
    Action {
        action: String,
        rollback: bool,
        performed: bool,
    },
    /// The health checks are about to run (on the running system only).
    HealthChecks { rollback: bool },
    /// A line the system printed while performing actions or checking.
    Output(String),
    /// The switch failed before its commit point and is rolled back.
    Failed { cause: String },
    /// An earlier switch was interrupted and is rolled back now.
    Interrupted { from: Option<u64>, to: Option<u64> },
    /// Something went wrong that does not stop the switch.
    Warning(String),
}

pub struct Engine<'a> {
    pub store: &'a Store,
    pub system: &'a mut dyn System,
    pub progress: &'a mut dyn FnMut(Progress),
}

/// An error with its causes, for a message that carries them on (a full
/// disk is told by the cause of "cannot create …").
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn generation_name(n: Option<u64>) -> String {
    n.map_or(
        "no generation (as before the first apply)".to_string(),
        |n| format!("generation {n}"),
    )
}

impl Engine<'_> {
    /// Performs a switch, or leaves the host as it was.
    pub fn switch(&mut self, spec: &SwitchSpec<'_>) -> Result<(), ApplyFailure> {
        let unchanged = |cause: String| ApplyFailure {
            cause,
            outcome: format!(
                "nothing was changed; the host is on {}",
                generation_name(spec.from)
            ),
            rollback_failed: false,
        };
        let staged = match &spec.stage {
            Some(stage) => {
                let new = self
                    .store
                    .new_objects(spec.from, stage.manifest)
                    .map_err(|e| unchanged(describe(&e)))?;
                Some((stage.manifest, new))
            }
            None => None,
        };
        if !crate::fault::skip_space_check() {
            space::check(
                self.store,
                spec.files,
                spec.desired,
                staged.as_ref().map(|(m, new)| (*m, new)),
            )
            .map_err(unchanged)?;
        }
        let journal = Journal {
            from: spec.from,
            to: spec.to,
            new_generation: spec.stage.is_some(),
            touched: spec
                .files
                .iter()
                .map(|f| {
                    (
                        f.path.clone(),
                        TouchedPath {
                            before: f.before.clone(),
                            owner: f.owner.clone(),
                        },
                    )
                })
                .collect(),
            actions: spec.actions.to_vec(),
            new_objects: staged
                .as_ref()
                .map(|(_, new)| new.iter().cloned().collect())
                .unwrap_or_default(),
        };
        if let Err(e) = self.store.begin_journal(&journal) {
            // Not recorded, so nothing was changed: only the journal's own
            // temporary file may be left.
            if let Err(left) = self.store.clean_leftovers() {
                (self.progress)(Progress::Warning(left.to_string()));
            }
            return Err(unchanged(format!(
                "could not record the switch: {}",
                describe(&e)
            )));
        }
        let mut attempted = 0;
        let staged = staged.as_ref().map(|(manifest, new)| (*manifest, new));
        match self.forward(spec, staged, &mut attempted) {
            Ok(()) => {
                self.close(&journal);
                Ok(())
            }
            Err(cause) => {
                (self.progress)(Progress::Failed {
                    cause: cause.clone(),
                });
                let problems = self.roll_back(&journal, Some(attempted));
                Err(match problems {
                    Ok(problems) if problems.is_empty() => ApplyFailure {
                        cause,
                        outcome: format!(
                            "rolled back: the host is on {} again",
                            generation_name(spec.from)
                        ),
                        rollback_failed: false,
                    },
                    Ok(problems) => ApplyFailure {
                        cause,
                        outcome: format!(
                            "rolled back the files to {}, but undoing these actions failed: {}",
                            generation_name(spec.from),
                            problems.join("; ")
                        ),
                        rollback_failed: true,
                    },
                    Err(e) => ApplyFailure {
                        cause,
                        outcome: format!(
                            "and the rollback failed too ({}); the journal is kept and the next ctm command retries it",
                            describe(&e)
                        ),
                        rollback_failed: true,
                    },
                })
            }
        }
    }

    /// Everything up to `current` moving: the commit point. `attempted`
    /// counts the actions started, so a rollback undoes only those (the
    /// failed one included: it may have half happened).
    fn forward(
        &mut self,
        spec: &SwitchSpec<'_>,
        staged: Option<(&Manifest, &BTreeSet<String>)>,
        attempted: &mut usize,
    ) -> Result<(), String> {
        let root = self.store.root().to_path_buf();
        // Everything is written first, and made durable at once.
        let mut batch = Batch::default();
        if let (Some(stage), Some((manifest, new_objects))) = (&spec.stage, staged) {
            self.store
                .stage(
                    &Staged {
                        meta: stage.meta,
                        source_text: stage.source_text,
                        lock_text: stage.lock_text,
                        artifacts: spec.desired,
                        manifest,
                        new_objects,
                    },
                    &mut batch,
                )
                .map_err(|e| describe(&e))?;
        }
        files::prepare(&root, spec.files, spec.desired, &mut batch).map_err(|e| describe(&e))?;
        batch.sync().map_err(|e| describe(&e))?;
        crate::fault::point("switch synced");
        // The renames, made durable together.
        let mut renames = Batch::default();
        if let Some(stage) = &spec.stage {
            self.store
                .place_staged(stage.meta.number, &mut renames)
                .map_err(|e| describe(&e))?;
            crate::fault::point("generation in place");
        }
        files::switch(&root, spec.files, spec.desired, renames).map_err(|e| describe(&e))?;
        let expect = health::of(spec.desired)?;
        for batch in batches(spec.actions) {
            self.announce(batch, false);
            *attempted += batch.len();
            self.perform(batch, &expect).map_err(|e| e.to_string())?;
            crate::fault::point("action performed");
        }
        self.health_check(&expect, &must_run(&expect, spec.actions), false)
            .map_err(|e| e.to_string())?;
        crate::fault::point("health checked");
        let records = self.system.take_step_records();
        if let (Some(_), Some(generation)) = (&spec.stage, spec.to)
            && !records.is_empty()
        {
            self.store
                .set_provisioned(generation, &records)
                .map_err(|e| describe(&e))?;
        }
        if let Some(deadline) = spec.confirm_deadline
            && let Some(generation) = spec.to
        {
            self.store
                .set_pending_confirm(&PendingConfirm {
                    generation,
                    previous: spec.from,
                    deadline,
                })
                .map_err(|e| describe(&e))?;
            // Before `current` moves: an apply whose revert cannot be
            // armed is not applied at all.
            self.system
                .arm_revert(deadline)
                .map_err(|e| format!("could not arm the automatic revert: {e}"))?;
            crate::fault::point("revert armed");
        }
        self.set_current(spec.to).map_err(|e| describe(&e))?;
        crate::fault::point("current moved");
        Ok(())
    }

    /// After the commit point: drops what the switch kept, closes the
    /// journal, and deletes the root file systems it set aside. A failure
    /// here is a warning: the host is on the new generation, and the next
    /// ctm command finishes the cleanup (see [`Self::recover`]).
    fn close(&mut self, journal: &Journal) {
        let closed = files::commit(self.store.root(), &journal.touched, false)
            .and_then(|()| self.store.end_journal());
        if let Err(e) = closed {
            (self.progress)(Progress::Warning(format!(
                "the switch is done, but cleaning up after it failed ({}); the next ctm command finishes it",
                describe(&e)
            )));
        }
        self.purge_removed();
    }

    /// Says which actions run next (or, files only, would).
    fn announce(&mut self, batch: &[Action], rollback: bool) {
        let performed = self.system.is_live();
        for action in batch {
            (self.progress)(Progress::Action {
                action: action.summary(),
                rollback,
                performed,
            });
        }
    }

    fn perform(&mut self, batch: &[Action], expect: &Health) -> Result<(), SystemError> {
        let progress = &mut *self.progress;
        self.system.perform(batch, expect, &mut |line: &str| {
            progress(Progress::Output(line.to_string()))
        })
    }

    fn health_check(
        &mut self,
        expect: &Health,
        running: &BTreeSet<String>,
        rollback: bool,
    ) -> Result<(), SystemError> {
        if self.system.is_live() {
            (self.progress)(Progress::HealthChecks { rollback });
        }
        let progress = &mut *self.progress;
        self.system
            .health_check(expect, running, &mut |line: &str| {
                progress(Progress::Output(line.to_string()))
            })
    }

    /// Deletes the root file systems set aside by this switch (or left by
    /// an earlier one whose purge failed). Committed already, so a failure
    /// is a warning: the tree stays set aside, and the next switch or
    /// `ctm destroy` tries again.
    fn purge_removed(&mut self) {
        let progress = &mut *self.progress;
        let problems = self
            .system
            .purge_removed(&mut |line: &str| progress(Progress::Output(line.to_string())));
        for problem in problems {
            (self.progress)(Progress::Warning(format!(
                "{problem}; it stays set aside, and the next apply deletes it"
            )));
        }
    }

    fn set_current(&self, to: Option<u64>) -> Result<(), StateError> {
        match to {
            Some(n) => self.store.set_current(n),
            None => Ok(fs::remove(&self.store.dir().join("current"))?),
        }
    }

    /// Restores every touched path as it was, undoes the first `attempted`
    /// actions (all when unknown, after a crash; best effort: their
    /// failures are returned, not fatal), removes what the switch added to
    /// the state, and closes the journal. Needs no new space on disk (only
    /// renames and removals), and is safe to repeat after a crash part-way.
    fn roll_back(
        &mut self,
        journal: &Journal,
        attempted: Option<usize>,
    ) -> Result<Vec<String>, StateError> {
        files::restore(self.store, &journal.touched)?;
        // A pending confirmation for the target no longer applies.
        if let (Some(pending), Some(to)) = (self.store.pending_confirm()?, journal.to)
            && pending.generation == to
        {
            self.store.clear_pending_confirm()?;
            if let Err(e) = self.system.disarm_revert() {
                (self.progress)(Progress::Warning(e.to_string()));
            }
        }
        let mut problems = Vec::new();
        let attempted = attempted
            .unwrap_or(journal.actions.len())
            .min(journal.actions.len());
        let expect = match journal.from {
            Some(n) => health::of(&self.store.artifacts(n)?).unwrap_or_else(|e| {
                problems.push(e);
                Health::default()
            }),
            None => Health::default(),
        };
        let undone = undo(&journal.actions[..attempted]);
        for batch in batches(&undone) {
            self.announce(batch, true);
            if let Err(e) = self.perform(batch, &expect) {
                problems.push(e.to_string());
            }
        }
        if self.system.is_live()
            && !undone.is_empty()
            && let Err(e) = self.health_check(&expect, &must_run(&expect, &undone), true)
        {
            problems.push(format!("after the rollback, {e}"));
        }
        // `current` moves only at the commit point, after which a switch
        // is finished rather than undone: it still names the generation
        // switched from (and writing it again would need space).
        if self.store.current()? != journal.from {
            self.set_current(journal.from)?;
        }
        if let (true, Some(n)) = (journal.new_generation, journal.to) {
            self.store.remove_generation(n)?;
        }
        self.store.remove_objects(&journal.new_objects)?;
        self.store.end_journal()?;
        Ok(problems)
    }

    /// Finishes whatever an interrupted ctm left: a switch in progress, or
    /// an apply whose confirmation deadline has passed. What never took
    /// effect goes first, so that on a full disk the rest has room.
    pub fn recover(&mut self) -> Result<Recovered, StateError> {
        self.store.clean_leftovers()?;
        if let Some(journal) = self.store.journal()? {
            let current = self.store.current()?;
            if current == journal.to && current != journal.from {
                files::commit(self.store.root(), &journal.touched, true)?;
                self.store.end_journal()?;
                return Ok(Recovered::Finished {
                    generation: current,
                });
            }
            (self.progress)(Progress::Interrupted {
                from: journal.from,
                to: journal.to,
            });
            let problems = self.roll_back(&journal, None)?;
            return Ok(Recovered::RolledBack {
                to: journal.from,
                problems,
            });
        }
        Ok(Recovered::Nothing)
    }
}

/// The containers that must run once `actions` are done: those that start
/// at boot, and those the actions started, less those they stopped.
pub fn must_run(expect: &Health, actions: &[Action]) -> BTreeSet<String> {
    let mut running: BTreeSet<String> = expect
        .containers
        .iter()
        .filter(|(_, c)| c.autostart)
        .map(|(name, _)| name.clone())
        .collect();
    for action in actions {
        match action {
            Action::StartContainer { name, .. } | Action::RestartContainer { name, .. } => {
                running.insert(name.clone());
            }
            Action::StopContainer { name, .. } => {
                running.remove(name);
            }
            _ => {}
        }
    }
    running
}

/// The actions that undo `actions`, in the order they must run.
/// Provisioning is not undone: its steps are idempotent and what they made
/// (a root file system, installed packages) belongs to the container.
pub fn undo(actions: &[Action]) -> Vec<Action> {
    let reason = |r: &str| format!("rollback of: {r}");
    let mut undone: Vec<Action> = actions
        .iter()
        .filter_map(|a| {
            Some(match a {
                Action::StopContainer { name, reason: r } => Action::StartContainer {
                    name: name.clone(),
                    reason: reason(r),
                },
                Action::StartContainer { name, reason: r } => Action::StopContainer {
                    name: name.clone(),
                    reason: reason(r),
                },
                Action::RestartContainer { name, reason: r } => Action::RestartContainer {
                    name: name.clone(),
                    reason: reason(r),
                },
                Action::DaemonReload { reason: r } => Action::DaemonReload { reason: reason(r) },
                Action::ApplySysctl { reason: r } => Action::ApplySysctl { reason: reason(r) },
                // The links the forward created or changed go (networkd
                // then makes the old generation's again from its files);
                // those it deleted come back from the restored files.
                Action::ReloadNetworkd {
                    reason: r,
                    delete_links,
                    created_links,
                    reconfigure_links,
                } => Action::ReloadNetworkd {
                    reason: reason(r),
                    delete_links: delete_links.iter().chain(created_links).cloned().collect(),
                    created_links: Vec::new(),
                    reconfigure_links: reconfigure_links.clone(),
                },
                Action::ReplaceFirewall { reason: r } => {
                    Action::ReplaceFirewall { reason: reason(r) }
                }
                // The restored unit files are what the sockets then read.
                Action::ReloadLoopbackForwards {
                    reason: r,
                    start,
                    restart,
                    stop,
                } => Action::ReloadLoopbackForwards {
                    reason: reason(r),
                    start: stop.clone(),
                    restart: restart.clone(),
                    stop: start.clone(),
                },
                Action::ReloadBackupTimers {
                    reason: r,
                    start,
                    restart,
                    stop,
                } => Action::ReloadBackupTimers {
                    reason: reason(r),
                    start: stop.clone(),
                    restart: restart.clone(),
                    stop: start.clone(),
                },
                Action::RemoveRootfs { name, reason: r } => Action::RestoreRootfs {
                    name: name.clone(),
                    reason: reason(r),
                },
                Action::RemoveVolume { name, reason: r } => Action::RestoreVolume {
                    name: name.clone(),
                    reason: reason(r),
                },
                Action::SetVolumeQuota {
                    name,
                    quota,
                    from,
                    reason: r,
                } => Action::SetVolumeQuota {
                    name: name.clone(),
                    quota: *from,
                    from: *quota,
                    reason: reason(r),
                },
                // A volume stays: a container may have written to it.
                Action::PrepareContainer { .. }
                | Action::ProvisionContainer { .. }
                | Action::RestoreRootfs { .. }
                | Action::CreateVolume { .. }
                | Action::RestoreVolume { .. } => {
                    return None;
                }
            })
        })
        .collect();
    undone.sort_by_key(rank);
    undone
}

/// Trees and volumes come back first, then stops, reloads, restarts and
/// starts.
fn rank(action: &Action) -> u8 {
    match action {
        Action::RestoreRootfs { .. }
        | Action::RemoveRootfs { .. }
        | Action::RestoreVolume { .. }
        | Action::RemoveVolume { .. }
        | Action::StopContainer { .. } => 0,
        Action::DaemonReload { .. } => 1,
        Action::ApplySysctl { .. } => 2,
        Action::ReloadNetworkd { .. } => 3,
        Action::ReplaceFirewall { .. }
        | Action::ReloadLoopbackForwards { .. }
        | Action::ReloadBackupTimers { .. } => 4,
        Action::PrepareContainer { .. }
        | Action::CreateVolume { .. }
        | Action::SetVolumeQuota { .. } => 5,
        Action::RestartContainer { .. } => 6,
        Action::StartContainer { .. } => 7,
        Action::ProvisionContainer { .. } => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(kind: fn(String, String) -> Action, name: &str) -> Action {
        kind(name.to_string(), "why".to_string())
    }

    #[test]
    fn a_volume_is_never_undone_but_its_quota_and_deletion_are() {
        let forward = [
            named(|name, reason| Action::RemoveVolume { name, reason }, "old"),
            Action::CreateVolume {
                name: "new".into(),
                quota: Some(1 << 30),
                reason: "why".into(),
            },
            Action::SetVolumeQuota {
                name: "data".into(),
                quota: None,
                from: Some(1 << 20),
                reason: "why".into(),
            },
        ];
        let summaries: Vec<String> = undo(&forward).iter().map(Action::summary).collect();
        assert_eq!(
            summaries,
            [
                "put back volume old",
                "set volume data to quota 1M (was no quota)"
            ]
        );
    }

    #[test]
    fn a_set_aside_tree_is_put_back_before_its_container_starts_again() {
        let forward = [
            named(|name, reason| Action::StopContainer { name, reason }, "old"),
            named(|name, reason| Action::RemoveRootfs { name, reason }, "old"),
            Action::DaemonReload {
                reason: "why".into(),
            },
        ];
        let summaries: Vec<String> = undo(&forward).iter().map(Action::summary).collect();
        assert_eq!(
            summaries,
            [
                "put back the root file system of container old",
                "reload systemd's unit files",
                "start container old"
            ]
        );
    }
}
