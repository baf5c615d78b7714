//! The outside world, behind small traits: the file system ([`fs`]) and
//! the running system ([`System`]: systemd, networkd, nftables, machined).
//!
//! Under a root other than `/`, ctm manages files only: [`FilesOnly`]
//! performs no system action and says so, like `systemctl --root`. On `/`,
//! [`live::LiveSystem`] drives the real thing: [`systemd`] (D-Bus),
//! [`netlink`], [`nft`] and [`exec`] (commands inside containers).

pub mod exec;
pub mod fs;
pub mod live;
pub mod netlink;
pub mod nft;
pub mod provision;
pub mod rootfs;
pub mod systemd;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::compile::health::Health;

/// What the running system reports, for drift. Each part is `None` when
/// the system cannot be asked (a files-only root).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemState {
    /// Container name → running or not.
    pub containers: Option<BTreeMap<String, bool>>,
    /// The links the host file names that exist, with their addresses
    /// (`10.42.0.1/24`); a link missing from the map does not exist.
    #[serde(default)]
    pub links: Option<BTreeMap<String, BTreeSet<String>>>,
    #[serde(default)]
    pub firewall: Option<FirewallState>,
    /// The containers not in the desired host file whose root file system
    /// ctm made and still has (`rootfs`): the ones `--prune` may delete.
    #[serde(default)]
    pub made_rootfs: Option<BTreeSet<String>>,
    /// With `--check-steps`: running container → the ids of its installed
    /// provisioning steps whose check, run inside it, says not done.
    /// Containers with every step done are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undone_steps: Option<BTreeMap<String, Vec<String>>>,
}

/// `table inet ctm` as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallState {
    /// Chain → number of rules; `None` when the table does not exist.
    pub chains: Option<BTreeMap<String, usize>>,
    /// The table differs from what `nft` listed right after ctm loaded the
    /// ruleset that is installed now: someone changed it by hand.
    pub edited: bool,
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
    /// Links that drifted (lost an address) are reconfigured.
    ReloadNetworkd {
        reason: String,
        delete_links: Vec<String>,
        /// Links whose `.netdev` is new: undoing this deletes them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        created_links: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reconfigure_links: Vec<String>,
    },
    ReplaceFirewall {
        reason: String,
    },
    /// Run the steps that need the container's root file system before it
    /// boots: create it from its image. Never undone: a root file system
    /// belongs to its container once made.
    PrepareContainer {
        name: String,
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
    /// Run the provisioning steps that need the running container, each
    /// only if its check says it is not done. Never undone.
    ProvisionContainer {
        name: String,
        reason: String,
        /// The steps that are new or changed since the current generation
        /// (all of them are checked; these are the ones expected to run).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        steps: Vec<String>,
    },
    /// Delete the root file system ctm made for a container that is no
    /// longer in the host file (`--prune`). Within the switch the tree is
    /// only set aside, so that a rollback can put it back; it is deleted
    /// once the new generation is committed.
    RemoveRootfs {
        name: String,
        reason: String,
    },
    /// Undoes [`Action::RemoveRootfs`]: the set-aside tree goes back.
    RestoreRootfs {
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
            Action::ReloadNetworkd {
                delete_links,
                reconfigure_links,
                ..
            } => {
                let mut text = String::new();
                if !delete_links.is_empty() {
                    text.push_str(&format!("delete links {} and ", delete_links.join(", ")));
                }
                text.push_str("reload systemd-networkd");
                if !reconfigure_links.is_empty() {
                    text.push_str(&format!(", reconfigure {}", reconfigure_links.join(", ")));
                }
                text
            }
            Action::ReplaceFirewall { .. } => "replace nftables table inet ctm".to_string(),
            Action::PrepareContainer { name, .. } => {
                format!("prepare the root file system of container {name}")
            }
            Action::RestartContainer { name, .. } => format!("restart container {name}"),
            Action::StartContainer { name, .. } => format!("start container {name}"),
            Action::ProvisionContainer { name, steps, .. } if !steps.is_empty() => {
                format!("provision container {name} ({})", steps.join(", "))
            }
            Action::ProvisionContainer { name, .. } => format!("provision container {name}"),
            Action::RemoveRootfs { name, .. } => format!(
                "delete the root file system of container {name} (/{}/{name})",
                rootfs::MACHINES
            ),
            Action::RestoreRootfs { name, .. } => {
                format!("put back the root file system of container {name}")
            }
        }
    }

    /// The container this action is about, if any.
    pub fn container(&self) -> Option<&str> {
        match self {
            Action::StopContainer { name, .. }
            | Action::PrepareContainer { name, .. }
            | Action::RestartContainer { name, .. }
            | Action::StartContainer { name, .. }
            | Action::ProvisionContainer { name, .. }
            | Action::RemoveRootfs { name, .. }
            | Action::RestoreRootfs { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Actions of one kind on different containers are independent and
    /// run together; every other action runs alone.
    fn batch_kind(&self) -> Option<std::mem::Discriminant<Action>> {
        self.container().map(|_| std::mem::discriminant(self))
    }

    pub fn reason(&self) -> &str {
        match self {
            Action::StopContainer { reason, .. }
            | Action::DaemonReload { reason }
            | Action::ApplySysctl { reason }
            | Action::ReloadNetworkd { reason, .. }
            | Action::ReplaceFirewall { reason }
            | Action::PrepareContainer { reason, .. }
            | Action::RestartContainer { reason, .. }
            | Action::StartContainer { reason, .. }
            | Action::ProvisionContainer { reason, .. }
            | Action::RemoveRootfs { reason, .. }
            | Action::RestoreRootfs { reason, .. } => reason,
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

/// Splits actions, in order, into batches that may run at once: runs of
/// the same kind of action on containers (all starts, all restarts…).
pub fn batches(actions: &[Action]) -> Vec<&[Action]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=actions.len() {
        let ends = i == actions.len()
            || actions[i].batch_kind().is_none()
            || actions[i].batch_kind() != actions[start].batch_kind();
        if ends {
            out.push(&actions[start..i]);
            start = i;
        }
    }
    out
}

/// What one provisioning step of a container did in an apply; the new
/// generation keeps them (`provisioned.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub id: String,
    pub description: String,
    /// False when its check said it was done already.
    pub ran: bool,
    /// How long the check and the action took, in milliseconds.
    pub millis: u64,
    /// The end of what the action printed (empty when it did not run).
    pub output: String,
}

/// Where progress lines go (the terminal, the apply unit's log, the web UI).
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// The running system, as apply and plan need it.
pub trait System {
    /// Whether actions really happen (false for a files-only root).
    fn is_live(&self) -> bool;
    /// The live state that `expect` (the desired generation's
    /// expectations) is about.
    fn observe(&mut self, expect: &Health) -> Result<SystemState, SystemError>;
    /// Performs a batch of independent actions (see [`batches`]); the
    /// system may run them in parallel. The files of the generation being
    /// switched to, whose expectations are `expect`, are in place.
    fn perform(
        &mut self,
        batch: &[Action],
        expect: &Health,
        progress: Progress<'_>,
    ) -> Result<(), SystemError>;
    /// After all actions: is the system in the state `expect` describes,
    /// with the containers in `running` running and their checks passing?
    fn health_check(
        &mut self,
        expect: &Health,
        running: &BTreeSet<String>,
        progress: Progress<'_>,
    ) -> Result<(), SystemError>;
    /// The provisioning steps performed since the last call, by container.
    fn take_step_records(&mut self) -> BTreeMap<String, Vec<StepRecord>> {
        BTreeMap::new()
    }
    /// The named containers as the running system reports them (for
    /// `ctm status`); `None` on a files-only root.
    fn containers(
        &mut self,
        _names: &BTreeSet<String>,
    ) -> Result<Option<BTreeMap<String, crate::status::ContainerLive>>, SystemError> {
        Ok(None)
    }
    /// Arms the revert of an apply that waits for `ctm confirm`: at
    /// `deadline` (Unix seconds) `ctm recover` runs, whether or not any
    /// ctm process is left. A files-only root has nothing to arm: the
    /// deadline is in ctm's state, and the next ctm command reverts.
    fn arm_revert(&mut self, _deadline: u64) -> Result<(), SystemError> {
        Ok(())
    }
    /// Disarms it (confirmed, or reverted already).
    fn disarm_revert(&mut self) -> Result<(), SystemError> {
        Ok(())
    }
    /// Runs the checks of the installed provisioning steps inside each of
    /// the named containers that runs (`--check-steps`); returns the
    /// containers with steps not done. `None` on a files-only root.
    fn undone_steps(
        &mut self,
        _names: &BTreeSet<String>,
        _progress: Progress<'_>,
    ) -> Result<Option<BTreeMap<String, Vec<String>>>, SystemError> {
        Ok(None)
    }
    /// Deletes the root file systems that [`Action::RemoveRootfs`] set
    /// aside, once nothing can roll back to them; returns what failed
    /// (the next purge tries again).
    fn purge_removed(&mut self, _progress: Progress<'_>) -> Vec<SystemError> {
        Vec::new()
    }
}

/// A root that is not the running system: files only, no actions.
#[derive(Debug, Default)]
pub struct FilesOnly;

impl System for FilesOnly {
    fn is_live(&self) -> bool {
        false
    }

    fn observe(&mut self, _expect: &Health) -> Result<SystemState, SystemError> {
        Ok(SystemState::default())
    }

    fn perform(
        &mut self,
        batch: &[Action],
        _expect: &Health,
        _progress: Progress<'_>,
    ) -> Result<(), SystemError> {
        batch.iter().try_for_each(injected_failure)
    }

    fn health_check(
        &mut self,
        _expect: &Health,
        _running: &BTreeSet<String>,
        _progress: Progress<'_>,
    ) -> Result<(), SystemError> {
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
pub fn injected_failure(action: &Action) -> Result<(), SystemError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn start(name: &str) -> Action {
        Action::StartContainer {
            name: name.into(),
            reason: String::new(),
        }
    }

    #[test]
    fn runs_of_one_kind_on_containers_are_batched() {
        let actions = vec![
            Action::StopContainer {
                name: "old".into(),
                reason: String::new(),
            },
            Action::DaemonReload {
                reason: String::new(),
            },
            Action::ReplaceFirewall {
                reason: String::new(),
            },
            start("a"),
            start("b"),
            Action::ProvisionContainer {
                name: "a".into(),
                reason: String::new(),
                steps: Vec::new(),
            },
        ];
        let sizes: Vec<usize> = batches(&actions).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [1, 1, 1, 2, 1]);
        assert!(batches(&[]).is_empty());
    }
}
