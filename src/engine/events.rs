//! What a long use case reports while it runs, as typed events: the
//! command line prints each as a line of text ([`Event`]'s `Display`),
//! the web editor streams them to the page as they come.

use std::fmt;

use serde::Serialize;

/// Where a use case sends its events.
pub type Events<'a> = &'a mut dyn FnMut(Event);

/// "generation 3", or "no generation" before the first apply.
pub fn generation_name(n: Option<u64>) -> String {
    n.map_or("none".into(), |n| n.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// A step of the switch: an action, a health check, a rollback, or a
    /// line the system printed (`apply::Engine`'s progress).
    Step {
        line: String,
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
    NothingToRemove,
    /// Something went wrong that does not stop the use case.
    Warning {
        message: String,
    },
}

impl Event {
    /// Whether the line belongs under the one before it (the steps of a
    /// switch), which the command line indents.
    pub fn is_step(&self) -> bool {
        matches!(self, Event::Step { .. })
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
            Event::NothingToRemove => f.write_str("Nothing to remove."),
        }
    }
}
