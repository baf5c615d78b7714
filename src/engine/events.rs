//! What a long use case reports while it runs, as typed events: the
//! command line prints each as a line of text ([`Event`]'s `Display`),
//! the web editor streams them to the page as they come, and `ctm apply
//! --json` writes them as JSON lines, which is how `ctm fleet` follows
//! each host's ctm over SSH.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::apply::Progress;
use crate::clock::rfc3339;

/// Where a use case sends its events.
pub type Events<'a> = &'a mut dyn FnMut(Event);

/// "generation 3", or "no generation" before the first apply.
pub fn generation_name(n: Option<u64>) -> String {
    n.map_or("none".into(), |n| n.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// Another ctm holds the lock on the root; this one waits for it.
    WaitingForLock {
        path: String,
    },
    /// An interrupted switch had done all its work and was finished.
    FinishedInterrupted {
        generation: Option<u64>,
    },
    /// An interrupted switch was rolled back; `problems` are the actions
    /// whose undoing failed.
    RolledBackInterrupted {
        generation: Option<u64>,
        problems: Vec<String>,
    },
    /// The confirmation deadline of `generation` passed: it is reverted.
    NotConfirmedInTime {
        generation: u64,
    },
    /// After reverting an unconfirmed generation.
    BackOn {
        generation: Option<u64>,
    },
    /// A line the system printed while it performed an action or a
    /// check (a wait for a unit, a step's output), or a line of text a
    /// fleet host's ctm printed that is no event.
    Step {
        line: String,
    },
    /// An action of a switch is about to run (`rollback`: one undoing an
    /// earlier action). `performed` is false on a root that is not the
    /// running system: there only the files are switched, and the action
    /// is what would run on a live host.
    Action {
        action: String,
        rollback: bool,
        performed: bool,
    },
    /// The health checks of a switch are about to run.
    HealthChecks {
        rollback: bool,
    },
    /// The switch failed before its commit point; it is rolled back.
    SwitchFailed {
        cause: String,
    },
    /// An earlier switch was interrupted (a crash, a kill); it is rolled
    /// back now.
    Interrupted {
        from: Option<u64>,
        to: Option<u64>,
    },
    /// The saved plan the transient unit applies (it was shown already).
    PlanSummary {
        add: usize,
        change: usize,
        destroy: usize,
        actions: usize,
    },
    /// The switch runs as a transient unit; its output follows.
    Detached {
        unit: String,
        log: String,
    },
    /// A line of the transient unit's output.
    UnitOutput {
        line: String,
    },
    Applying {
        generation: u64,
    },
    /// The health checks passed (`live`), or there was nothing to check.
    Healthy {
        live: bool,
    },
    Applied {
        generation: u64,
    },
    /// The lock file next to the host file was written (or could not be).
    LockFile {
        message: String,
    },
    /// Waiting for `ctm confirm` until `deadline` (Unix seconds).
    ConfirmBefore {
        generation: u64,
        previous: Option<u64>,
        deadline: u64,
        seconds: u64,
        /// How to confirm from a shell (`ctm confirm --root DIR`).
        command: String,
    },
    Confirmed {
        generation: u64,
    },
    /// The generation was rolled back before anyone confirmed it.
    Unconfirmed {
        generation: u64,
        previous: Option<u64>,
    },
    RollingBackTo {
        generation: u64,
    },
    RolledBack {
        generation: u64,
    },
    RemovedGenerations {
        generations: Vec<u64>,
    },
    RemovedImage {
        path: String,
    },
    /// Blobs of the OCI blob cache that no image uses were removed.
    RemovedBlobs {
        count: usize,
    },
    /// Trees of the build cache that no image was built through were
    /// removed.
    RemovedBuildSteps {
        count: usize,
    },
    /// An OCI image's tag was resolved to a digest, which the lock file
    /// now pins.
    ImageResolved {
        image: String,
        reference: String,
        digest: String,
    },
    NothingToRemove,
    /// Something went wrong that does not stop the use case.
    Warning {
        message: String,
    },
    // ---- fleets (`ctm fleet`) ----
    /// What one host of a fleet said (its ctm's own events), or what was
    /// done to it.
    Host {
        host: String,
        what: Box<Event>,
    },
    /// The host's ctm answered, and is one this ctm can drive.
    RemoteCtm {
        version: String,
    },
    /// The switch is done: the controller reaches the host again, over a
    /// new SSH connection, to confirm it.
    ConfirmingOverNewConnection {
        generation: u64,
    },
    /// The host could not be reached again: nobody confirms generation
    /// `generation`, and the host returns to `previous` by itself at
    /// `deadline` (Unix seconds).
    NotReachedAgain {
        generation: u64,
        previous: Option<u64>,
        deadline: u64,
        reason: String,
    },
    /// The host's apply failed (the host rolled it back itself), or it
    /// could not be planned or reached.
    Failed {
        reason: String,
    },
    /// A later host failed: this one, switched earlier in the run, goes
    /// back to the generation it was on.
    UndoingRun {
        generation: u64,
    },
    /// The host's plan is empty: it is left alone.
    Unchanged {
        generation: Option<u64>,
    },
    /// The hosts that go next, together (the canary first).
    Wave {
        hosts: Vec<String>,
        canary: bool,
    },
    /// A host failed: no further host is started.
    Stopping {
        host: String,
    },
    /// This ctm was installed on the host, checked by its SHA-256.
    Installed {
        path: String,
        sha256: String,
    },
}

impl From<Progress> for Event {
    fn from(progress: Progress) -> Event {
        match progress {
            Progress::Action {
                action,
                rollback,
                performed,
            } => Event::Action {
                action,
                rollback,
                performed,
            },
            Progress::HealthChecks { rollback } => Event::HealthChecks { rollback },
            Progress::Output(line) => Event::Step { line },
            Progress::Failed { cause } => Event::SwitchFailed { cause },
            Progress::Interrupted { from, to } => Event::Interrupted { from, to },
            Progress::Warning(message) => Event::Warning {
                message: format!("warning: {message}"),
            },
        }
    }
}

impl Event {
    /// `action` is about to run on the running system.
    pub fn performing(action: &crate::plan::Action) -> Event {
        Event::Action {
            action: action.summary(),
            rollback: false,
            performed: true,
        }
    }

    /// Whether the line belongs under the one before it (the steps of a
    /// switch), which the command line indents.
    pub fn is_step(&self) -> bool {
        match self {
            Event::Host { what, .. } => what.is_step(),
            _ => matches!(
                self,
                Event::Step { .. }
                    | Event::Action { .. }
                    | Event::HealthChecks { .. }
                    | Event::SwitchFailed { .. }
                    | Event::Interrupted { .. }
            ),
        }
    }

    /// `what`, said by or of the fleet's host `host`.
    pub fn of_host(host: &str, what: Event) -> Event {
        Event::Host {
            host: host.to_string(),
            what: Box::new(what),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::WaitingForLock { path } => {
                write!(f, "waiting for another ctm to finish (it holds {path}) …")
            }
            Event::FinishedInterrupted { generation } => write!(
                f,
                "ctm: finished an interrupted switch; the host is on generation {}",
                generation_name(*generation)
            ),
            Event::RolledBackInterrupted {
                generation,
                problems,
            } => {
                write!(
                    f,
                    "ctm: rolled back an interrupted switch; the host is on generation {}",
                    generation_name(*generation)
                )?;
                for p in problems {
                    write!(f, "\nctm: while undoing its actions: {p}")?;
                }
                Ok(())
            }
            Event::NotConfirmedInTime { generation } => write!(
                f,
                "ctm: generation {generation} was not confirmed in time; rolling back"
            ),
            Event::BackOn { generation } => write!(
                f,
                "ctm: the host is back on generation {}",
                generation_name(*generation)
            ),
            Event::Step { line } | Event::UnitOutput { line } => f.write_str(line),
            Event::Action {
                action,
                rollback,
                performed,
            } => {
                if *rollback {
                    f.write_str("rollback: ")?;
                }
                if *performed {
                    write!(f, "{action} …")
                } else {
                    write!(f, "would {action} (files only: not done)")
                }
            }
            Event::HealthChecks { rollback: false } => f.write_str("health checks …"),
            Event::HealthChecks { rollback: true } => f.write_str("rollback: health checks …"),
            Event::SwitchFailed { cause } => write!(f, "failed: {cause}; rolling back"),
            Event::Interrupted { from, to } => write!(
                f,
                "an earlier switch from generation {} to generation {} did not finish; rolling it back",
                generation_name(*from),
                generation_name(*to)
            ),
            Event::PlanSummary {
                add,
                change,
                destroy,
                actions,
            } => write!(
                f,
                "Plan: {add} to add, {change} to change, {destroy} to destroy; {actions} actions."
            ),
            Event::Detached { unit, log } => write!(
                f,
                "Running the switch as {unit} (it finishes even if this session ends; its output: {log}) …"
            ),
            Event::Applying { generation } => write!(f, "Applying generation {generation} …"),
            Event::Healthy { live: true } => f.write_str("Health check passed."),
            Event::Healthy { live: false } => {
                f.write_str("Health check: nothing to check on a files-only root.")
            }
            Event::Applied { generation } => {
                write!(f, "Applied: the host is on generation {generation}.")
            }
            Event::LockFile { message } | Event::Warning { message } => f.write_str(message),
            Event::ConfirmBefore {
                previous,
                seconds,
                command,
                ..
            } => write!(
                f,
                "Confirm within {seconds} s with `{command}` (from another shell or a new SSH session), \
                 or the host returns to generation {}.",
                generation_name(*previous)
            ),
            Event::Confirmed { generation } => {
                write!(f, "Confirmed: the host stays on generation {generation}.")
            }
            Event::Unconfirmed {
                generation,
                previous,
            } => write!(
                f,
                "Generation {generation} was rolled back: it was not confirmed in time, and the host is back on generation {}.",
                generation_name(*previous)
            ),
            Event::RollingBackTo { generation } => {
                write!(f, "Rolling back to generation {generation} …")
            }
            Event::RolledBack { generation } => {
                write!(f, "Rolled back: the host is on generation {generation}.")
            }
            Event::RemovedGenerations { generations } => write!(
                f,
                "Removed generation{} {}.",
                if generations.len() == 1 { "" } else { "s" },
                generations
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Event::RemovedImage { path } => {
                write!(f, "Removed image {path} (no generation uses it).")
            }
            Event::RemovedBuildSteps { count } => write!(
                f,
                "Removed {count} step{} of the build cache (no image was built through {}).",
                if *count == 1 { "" } else { "s" },
                if *count == 1 { "it" } else { "them" }
            ),
            Event::RemovedBlobs { count } => write!(
                f,
                "Removed {count} blob{} of the OCI cache (no image uses {}).",
                if *count == 1 { "" } else { "s" },
                if *count == 1 { "it" } else { "them" }
            ),
            Event::ImageResolved {
                image,
                reference,
                digest,
            } => write!(
                f,
                "Image {image}: {reference} resolved to {digest}; the lock file pins it."
            ),
            Event::NothingToRemove => f.write_str("Nothing to remove."),
            Event::Host { host, what } => {
                // Every line of a many-line event carries the host's name.
                let text = what.to_string();
                let mut lines = text.lines();
                write!(f, "{host}: {}", lines.next().unwrap_or(""))?;
                for line in lines {
                    write!(f, "\n{host}: {line}")?;
                }
                Ok(())
            }
            Event::RemoteCtm { version } => write!(f, "reached; it runs ctm {version}."),
            Event::ConfirmingOverNewConnection { generation } => write!(
                f,
                "Confirming generation {generation} over a new SSH connection …"
            ),
            Event::NotReachedAgain {
                generation,
                previous,
                deadline,
                reason,
            } => write!(
                f,
                "cannot be reached again over a new SSH connection ({reason}): nobody confirms generation {generation}, \
                 and the host returns to generation {} by itself at {}.",
                generation_name(*previous),
                rfc3339(*deadline)
            ),
            Event::Failed { reason } => write!(f, "failed: {reason}"),
            Event::UndoingRun { generation } => write!(
                f,
                "A later host failed: returning to generation {generation} …"
            ),
            Event::Unchanged { generation } => write!(
                f,
                "No changes: the host stays on generation {}.",
                generation_name(*generation)
            ),
            Event::Wave { hosts, canary } => write!(
                f,
                "{} {} …",
                if *canary { "Canary:" } else { "Next:" },
                hosts.join(", ")
            ),
            Event::Stopping { host } => write!(f, "{host} failed: no further host is started."),
            Event::Installed { path, sha256 } => write!(
                f,
                "installed this ctm at {path} (sha256 {sha256}, checked on the host)."
            ),
        }
    }
}
