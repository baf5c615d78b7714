//! The outside world, behind small traits: the file system ([`fs`]) and
//! the running system ([`System`]: systemd, networkd, nftables, machined).
//!
//! Under a root other than `/`, ctm manages files only: [`FilesOnly`]
//! performs no system action and says so, like `systemctl --root`.

pub mod fs;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the running system reports about containers, for drift.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemState {
    /// Container name → running or not; `None` when the system cannot be
    /// asked (a files-only root).
    pub containers: Option<BTreeMap<String, bool>>,
}

/// A change to the running system, performed after files are switched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum Action {
    StopContainer {
        name: String,
        reason: String,
    },
    DaemonReload {
        reason: String,
    },
    ApplySysctl {
        reason: String,
    },
    /// Reload networkd; links whose `.netdev` changed or went away are
    /// deleted first, since networkd never changes an existing netdev.
    ReloadNetworkd {
        reason: String,
        delete_links: Vec<String>,
    },
    ReplaceFirewall {
        reason: String,
    },
    RestartContainer {
        name: String,
        reason: String,
    },
    StartContainer {
        name: String,
        reason: String,
    },
}

impl Action {
    /// One line for people, without the reason.
    pub fn summary(&self) -> String {
        match self {
            Action::StopContainer { name, .. } => format!("stop container {name}"),
            Action::DaemonReload { .. } => "reload systemd's unit files".to_string(),
            Action::ApplySysctl { .. } => "apply sysctl settings".to_string(),
            Action::ReloadNetworkd { delete_links, .. } if delete_links.is_empty() => {
                "reload systemd-networkd".to_string()
            }
            Action::ReloadNetworkd { delete_links, .. } => {
                format!(
                    "delete links {} and reload systemd-networkd",
                    delete_links.join(", ")
                )
            }
            Action::ReplaceFirewall { .. } => "replace nftables table inet ctm".to_string(),
            Action::RestartContainer { name, .. } => format!("restart container {name}"),
            Action::StartContainer { name, .. } => format!("start container {name}"),
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Action::StopContainer { reason, .. }
            | Action::DaemonReload { reason }
            | Action::ApplySysctl { reason }
            | Action::ReloadNetworkd { reason, .. }
            | Action::ReplaceFirewall { reason }
            | Action::RestartContainer { reason, .. }
            | Action::StartContainer { reason, .. } => reason,
        }
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{what} failed: {why}")]
#[diagnostic(code(ctm::system))]
pub struct SystemError {
    pub what: String,
    pub why: String,
}

/// The running system, as apply and plan need it.
pub trait System {
    /// Whether actions really happen (false for a files-only root).
    fn is_live(&self) -> bool;
    fn observe(&mut self) -> Result<SystemState, SystemError>;
    fn perform(&mut self, action: &Action) -> Result<(), SystemError>;
    /// After all actions: is the system in the state the files describe?
    fn health_check(&mut self) -> Result<(), SystemError>;
}

/// A root that is not the running system: files only, no actions.
#[derive(Debug, Default)]
pub struct FilesOnly;

impl System for FilesOnly {
    fn is_live(&self) -> bool {
        false
    }

    fn observe(&mut self) -> Result<SystemState, SystemError> {
        Ok(SystemState::default())
    }

    fn perform(&mut self, action: &Action) -> Result<(), SystemError> {
        injected_failure(action)
    }

    fn health_check(&mut self) -> Result<(), SystemError> {
        match std::env::var("CTM_FAULT_HEALTH") {
            Ok(why) if cfg!(feature = "fault-injection") => Err(SystemError {
                what: "health check".into(),
                why,
            }),
            _ => Ok(()),
        }
    }
}

/// With fault injection compiled in, `CTM_FAULT_ACTION=SUMMARY` makes the
/// action with that summary fail, once, so tests can drive a rollback
/// through the real binary (and see the rollback's own actions succeed).
fn injected_failure(action: &Action) -> Result<(), SystemError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static FIRED: AtomicBool = AtomicBool::new(false);
    if cfg!(feature = "fault-injection")
        && let Ok(wanted) = std::env::var("CTM_FAULT_ACTION")
        && action.summary() == wanted
        && !FIRED.swap(true, Ordering::SeqCst)
    {
        return Err(SystemError {
            what: action.summary(),
            why: "injected failure (CTM_FAULT_ACTION)".into(),
        });
    }
    Ok(())
}
