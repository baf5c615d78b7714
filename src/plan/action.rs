//! The changes to the running system that a plan calls for, performed
//! after the files are switched (docs/plan.md lists each with its undo).

use serde::{Deserialize, Serialize};

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
    /// The loopback forwards' socket units (`ctm-forward-tcp-PORT.socket`):
    /// new ones started, changed ones restarted with their proxy stopped
    /// (so that it connects to the new address), removed ones stopped
    /// with their proxy.
    ReloadLoopbackForwards {
        reason: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        start: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        restart: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        stop: Vec<String>,
    },
    /// The backup timers (`ctm-backup-NAME.timer`): new ones started,
    /// changed ones restarted (to take their new schedule), removed ones
    /// stopped. A backup that is running goes on to its end.
    ReloadBackupTimers {
        reason: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        start: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        restart: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        stop: Vec<String>,
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
    /// Make a volume (`layout::volume_dir`) and record it as ctm's, with
    /// its quota. Never undone: what a container writes in it is data.
    CreateVolume {
        name: String,
        /// In bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quota: Option<u64>,
        reason: String,
    },
    /// Change a volume's quota (`None`: no limit); undone by setting
    /// `from` back.
    SetVolumeQuota {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quota: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<u64>,
        reason: String,
    },
    /// Delete a volume ctm made that is no longer in the host file
    /// (`--prune`): set aside within the switch, deleted once committed,
    /// like [`Action::RemoveRootfs`].
    RemoveVolume {
        name: String,
        reason: String,
    },
    /// Undoes [`Action::RemoveVolume`].
    RestoreVolume {
        name: String,
        reason: String,
    },
}

/// `quota 1G`, `no quota`.
fn quota_text(quota: Option<u64>) -> String {
    match quota {
        Some(bytes) => format!("quota {}", crate::model::size_text(bytes)),
        None => "no quota".into(),
    }
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
            Action::ReloadLoopbackForwards {
                start,
                restart,
                stop,
                ..
            } => format!("loopback forwards: {}", unit_jobs(start, restart, stop)),
            Action::ReloadBackupTimers {
                start,
                restart,
                stop,
                ..
            } => format!("backup timers: {}", unit_jobs(start, restart, stop)),
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
                crate::layout::MACHINES
            ),
            Action::RestoreRootfs { name, .. } => {
                format!("put back the root file system of container {name}")
            }
            Action::CreateVolume { name, quota, .. } => {
                let quota = match quota {
                    Some(_) => format!(" ({})", quota_text(*quota)),
                    None => String::new(),
                };
                format!(
                    "create volume {name}{quota} at {}",
                    crate::layout::volume_path(name)
                )
            }
            Action::SetVolumeQuota {
                name, quota, from, ..
            } => format!(
                "set volume {name} to {} (was {})",
                quota_text(*quota),
                quota_text(*from)
            ),
            Action::RemoveVolume { name, .. } => format!(
                "delete volume {name} ({}) and its data",
                crate::layout::volume_path(name)
            ),
            Action::RestoreVolume { name, .. } => format!("put back volume {name}"),
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
            | Action::ReloadLoopbackForwards { reason, .. }
            | Action::ReloadBackupTimers { reason, .. }
            | Action::PrepareContainer { reason, .. }
            | Action::RestartContainer { reason, .. }
            | Action::StartContainer { reason, .. }
            | Action::ProvisionContainer { reason, .. }
            | Action::RemoveRootfs { reason, .. }
            | Action::RestoreRootfs { reason, .. }
            | Action::CreateVolume { reason, .. }
            | Action::SetVolumeQuota { reason, .. }
            | Action::RemoveVolume { reason, .. }
            | Action::RestoreVolume { reason, .. } => reason,
        }
    }
}

/// The units a reload starts, restarts and stops, as the plan lists
/// them: "start a, b; stop c".
fn unit_jobs(start: &[String], restart: &[String], stop: &[String]) -> String {
    let parts: Vec<String> = [("start", start), ("restart", restart), ("stop", stop)]
        .into_iter()
        .filter(|(_, units)| !units.is_empty())
        .map(|(verb, units)| format!("{verb} {}", units.join(", ")))
        .collect();
    parts.join("; ")
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
