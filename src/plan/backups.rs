//! Backups in the plan: the backup timers to start because they were
//! stopped by hand (drift), and what the plan says about each container's
//! backups (its last archive, its timer's last run). The archives and the
//! timers' runs are read by the engine and the system and come in as
//! part of [`super::SystemState`]: the plan reads no disk.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Inputs;

/// A container's newest archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastBackup {
    /// `20261203T171500Z`.
    pub id: String,
    /// The archive file, as the host sees it.
    pub path: String,
    /// Its size on disk.
    pub bytes: u64,
    /// When it was written (Unix seconds).
    pub at: u64,
}

/// How a backup timer's service last ran, as systemd reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerRun {
    /// The service's `Result`: `success`, `exit-code`, `signal`,
    /// `timeout`…
    pub result: String,
    /// When the timer last started it, microseconds since the epoch; `0`:
    /// never (since boot or the timer's making).
    pub last_trigger_usec: u64,
}

impl TimerRun {
    /// Whether the timer ran its service and that run failed.
    pub fn failed(&self) -> bool {
        self.last_trigger_usec != 0 && self.result != "success"
    }
}

/// What the plan says about a container's backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupNote {
    pub container: String,
    /// `ctm-backup-NAME.timer`, when the container has a `backup` block.
    pub timer: Option<String>,
    /// `null`: none found (or not looked for).
    pub last: Option<LastBackup>,
    /// The timer's last run, on a live system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<TimerRun>,
}

impl BackupNote {
    /// One line for people.
    pub fn describe(&self) -> String {
        let mut line = match &self.last {
            Some(last) => format!(
                "last backup {} ({}, {:.1} MB) at {}",
                last.id,
                crate::clock::rfc3339(last.at),
                last.bytes as f64 / 1e6,
                last.path
            ),
            None => "no backup yet".to_string(),
        };
        if let Some(run) = &self.last_run
            && run.failed()
        {
            line.push_str(&format!(
                "; the last run of {} failed ({})",
                self.timer.as_deref().unwrap_or("its timer"),
                run.result
            ));
        }
        line
    }
}

/// The containers of the desired generation with a `backup` block, each
/// with its newest archive and its timer's last run.
pub(super) fn notes(input: &Inputs<'_>) -> Vec<BackupNote> {
    input
        .expect
        .backups
        .keys()
        .map(|name| BackupNote {
            container: name.clone(),
            timer: Some(crate::layout::backup_timer(name)),
            last: input.system.last_backups.get(name).cloned(),
            last_run: input.system.timer_runs.get(name).cloned(),
        })
        .collect()
}

/// The backup timers of the desired generation that are not active and
/// whose unit files do not change (those are started or restarted for
/// their change already): stopped by hand, drift an apply undoes.
pub(super) fn idle_timers(input: &Inputs<'_>, changed: &[String]) -> Vec<String> {
    let Some(timers) = &input.system.backup_timers else {
        return Vec::new();
    };
    timer_units(input.expect)
        .filter(|t| !changed.contains(t) && timers.get(t) == Some(&false))
        .collect()
}

/// The backup timers of `expect`: its containers', then its volumes'.
fn timer_units(expect: &crate::compile::health::Health) -> impl Iterator<Item = String> + '_ {
    let containers = expect
        .backups
        .keys()
        .map(|n| crate::layout::backup_timer(n));
    let volumes = expect
        .volumes
        .iter()
        .filter(|(_, v)| v.backup.is_some())
        .map(|(n, _)| crate::layout::volume_backup_timer(n));
    containers.chain(volumes)
}

/// The `backup_timers` part of the state of a system whose timers are
/// all `active`: the recording fake's, for instance.
pub fn all_active(expect: &crate::compile::health::Health) -> BTreeMap<String, bool> {
    timer_units(expect).map(|timer| (timer, true)).collect()
}
