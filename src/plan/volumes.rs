//! Volumes in the plan: which to make, whose quota to change, which to
//! delete (`--prune`) or keep, and the quotas the file system cannot
//! enforce. A pure function of the desired volumes (`Health::volumes`)
//! and what the system reports of the volumes directory
//! ([`VolumesState`], read by `backend::volumes::observe`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Action, Conflict, Inputs};
use crate::layout;

/// The volumes directory and what is in it, as the system reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumesState {
    /// The file system the volumes are (or will be) on, as `statfs` tells
    /// it: `btrfs`, `xfs`, `ext4`, `tmpfs`, `overlayfs`…
    pub fs: String,
    /// How a quota is enforced there, or why it cannot be.
    pub quota: QuotaSupport,
    /// What is at the path of each desired volume, and every volume ctm
    /// made that is still there, by name. A name missing: nothing there.
    pub present: BTreeMap<String, Present>,
    /// Volumes ctm made that cannot take a quota whatever their file
    /// system does, with why (a plain directory on btrfs, made where
    /// btrfs-progs was missing: btrfs limits subvolumes only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub no_quota: BTreeMap<String, String>,
}

/// How the volumes' file system enforces a quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "method")]
pub enum QuotaSupport {
    /// btrfs: a subvolume per volume, its qgroup limited.
    Btrfs,
    /// XFS, or ext4 with the `project` feature, mounted with `prjquota`: a
    /// project ID per volume, its block limit set.
    Project,
    /// Not at all, and why.
    Unsupported { reason: String },
}

impl Default for QuotaSupport {
    fn default() -> Self {
        QuotaSupport::Unsupported {
            reason: "not checked".into(),
        }
    }
}

/// What is at a volume's path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "made-by")]
pub enum Present {
    /// The volume ctm made (its record matches it), with the quota it set.
    Ctm { quota: Option<u64> },
    /// Something ctm did not make.
    Other,
}

/// A desired quota the volumes' file system cannot enforce: the apply is
/// refused before it changes anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaNote {
    pub volume: String,
    /// In bytes.
    pub quota: u64,
    pub reason: String,
}

/// A volume ctm made that is no longer in the host file, kept until
/// `--prune`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptVolume {
    pub name: String,
    /// Where it is on the host (`/var/lib/ctm/volumes/NAME`).
    pub path: String,
}

/// What the plan does about volumes.
#[derive(Debug, Default)]
pub(super) struct VolumePlan {
    /// Deletions (`--prune`): run with the other deletions, after stops.
    pub remove: Vec<Action>,
    /// New volumes and quota changes: before any container starts.
    pub make: Vec<Action>,
    pub conflicts: Vec<Conflict>,
    pub quotas: Vec<QuotaNote>,
    pub kept: Vec<KeptVolume>,
}

pub(super) fn plan(input: &Inputs<'_>) -> VolumePlan {
    let mut out = VolumePlan::default();
    let Some(state) = &input.system.volumes else {
        return out;
    };
    let fs_unsupported = match &state.quota {
        QuotaSupport::Unsupported { reason } => Some(reason),
        _ => None,
    };
    for (name, wanted) in &input.expect.volumes {
        let unsupported = fs_unsupported.or(state.no_quota.get(name));
        let note = |quota: u64, reason: &String| QuotaNote {
            volume: name.clone(),
            quota,
            reason: reason.clone(),
        };
        match state.present.get(name) {
            None => {
                if let (Some(quota), Some(reason)) = (wanted.quota, unsupported) {
                    out.quotas.push(note(quota, reason));
                }
                out.make.push(Action::CreateVolume {
                    name: name.clone(),
                    quota: wanted.quota,
                    reason: "new volume".into(),
                });
            }
            Some(Present::Ctm { quota }) if *quota != wanted.quota => {
                if let (Some(quota), Some(reason)) = (wanted.quota, unsupported) {
                    out.quotas.push(note(quota, reason));
                }
                out.make.push(Action::SetVolumeQuota {
                    name: name.clone(),
                    quota: wanted.quota,
                    from: *quota,
                    reason: "its quota changed in the host file".into(),
                });
            }
            Some(Present::Ctm { .. }) => {}
            Some(Present::Other) => out.conflicts.push(Conflict {
                path: layout::volume_dir(name),
                reason: format!(
                    "is where volume {name} goes, but ctm did not make it; ctm will not use or \
                     change it: move it away, and its data into the volume once ctm made it"
                ),
            }),
        }
    }
    for (name, present) in &state.present {
        if input.expect.volumes.contains_key(name) || *present == Present::Other {
            continue;
        }
        if input.options.prune {
            out.remove.push(Action::RemoveVolume {
                name: name.clone(),
                reason: "no longer in the host file (--prune)".into(),
            });
        } else {
            out.kept.push(KeptVolume {
                name: name.clone(),
                path: layout::volume_path(name),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::Artifacts;
    use crate::compile::health::{Health, VolumeHealth};
    use crate::plan::{Manifest, Options, SystemState};

    const GIB: u64 = 1 << 30;

    fn planned(
        wanted: &[(&str, Option<u64>)],
        state: Option<VolumesState>,
        options: Options,
    ) -> VolumePlan {
        let expect = Health {
            volumes: wanted
                .iter()
                .map(|(name, quota)| {
                    (
                        name.to_string(),
                        VolumeHealth {
                            quota: *quota,
                            containers: vec!["db".into()],
                            backup_to: None,
                        },
                    )
                })
                .collect(),
            ..Health::default()
        };
        let system = SystemState {
            volumes: state,
            ..SystemState::default()
        };
        let desired = Artifacts::default();
        let live = BTreeMap::new();
        let manifest = Manifest::default();
        plan(&Inputs {
            desired: &desired,
            desired_manifest: &manifest,
            expect: &expect,
            current: None,
            live: &live,
            system: &system,
            options,
        })
    }

    fn state(quota: QuotaSupport, present: &[(&str, Present)]) -> Option<VolumesState> {
        Some(VolumesState {
            fs: "test".into(),
            quota,
            present: present
                .iter()
                .map(|(n, p)| (n.to_string(), p.clone()))
                .collect(),
            no_quota: BTreeMap::new(),
        })
    }

    fn ext4() -> QuotaSupport {
        QuotaSupport::Unsupported {
            reason: "ext4 without prjquota".into(),
        }
    }

    #[test]
    fn a_missing_volume_is_made_with_its_quota() {
        let p = planned(
            &[("data", Some(GIB)), ("logs", None)],
            state(QuotaSupport::Btrfs, &[]),
            Options::default(),
        );
        let made: Vec<String> = p.make.iter().map(Action::summary).collect();
        assert_eq!(
            made,
            [
                "create volume data (quota 1G) at /var/lib/ctm/volumes/data",
                "create volume logs at /var/lib/ctm/volumes/logs",
            ]
        );
        assert!(p.quotas.is_empty() && p.conflicts.is_empty() && p.kept.is_empty());
    }

    #[test]
    fn a_quota_the_file_system_cannot_enforce_is_noted_only_where_one_is_wanted() {
        let p = planned(
            &[("data", Some(GIB)), ("logs", None)],
            state(ext4(), &[]),
            Options::default(),
        );
        assert_eq!(
            p.quotas,
            [QuotaNote {
                volume: "data".into(),
                quota: GIB,
                reason: "ext4 without prjquota".into(),
            }]
        );
        // A volume made before, with the quota it has, needs nothing.
        let p = planned(
            &[("data", Some(GIB))],
            state(ext4(), &[("data", Present::Ctm { quota: Some(GIB) })]),
            Options::default(),
        );
        assert!(p.quotas.is_empty() && p.make.is_empty());
    }

    #[test]
    fn a_changed_quota_is_set_and_remembers_the_old_one() {
        let p = planned(
            &[("data", Some(2 * GIB))],
            state(
                QuotaSupport::Project,
                &[("data", Present::Ctm { quota: Some(GIB) })],
            ),
            Options::default(),
        );
        assert_eq!(
            p.make,
            [Action::SetVolumeQuota {
                name: "data".into(),
                quota: Some(2 * GIB),
                from: Some(GIB),
                reason: "its quota changed in the host file".into(),
            }]
        );
        // Lifting a quota needs no support from the file system.
        let p = planned(
            &[("data", None)],
            state(ext4(), &[("data", Present::Ctm { quota: Some(GIB) })]),
            Options::default(),
        );
        assert_eq!(p.make.len(), 1);
        assert!(p.quotas.is_empty());
    }

    #[test]
    fn a_volume_that_cannot_take_a_quota_is_noted_on_a_file_system_that_can() {
        let mut with = state(
            QuotaSupport::Btrfs,
            &[("data", Present::Ctm { quota: None })],
        );
        if let Some(s) = &mut with {
            s.no_quota
                .insert("data".into(), "a plain directory on btrfs".into());
        }
        let p = planned(&[("data", Some(GIB))], with, Options::default());
        assert_eq!(p.quotas.len(), 1);
        assert_eq!(p.quotas[0].reason, "a plain directory on btrfs");
    }

    #[test]
    fn something_else_at_a_volumes_path_is_a_conflict() {
        let p = planned(
            &[("data", None)],
            state(QuotaSupport::Btrfs, &[("data", Present::Other)]),
            Options::default(),
        );
        assert!(p.make.is_empty());
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!(p.conflicts[0].path, "var/lib/ctm/volumes/data");
    }

    #[test]
    fn a_volume_no_longer_wanted_is_kept_unless_pruned_and_only_if_ctms() {
        let present = [
            ("old", Present::Ctm { quota: None }),
            ("theirs", Present::Other),
        ];
        let p = planned(
            &[],
            state(QuotaSupport::Btrfs, &present),
            Options::default(),
        );
        assert_eq!(
            p.kept,
            [KeptVolume {
                name: "old".into(),
                path: "/var/lib/ctm/volumes/old".into(),
            }]
        );
        assert!(p.remove.is_empty());
        let pruned = Options {
            prune: true,
            ..Options::default()
        };
        let p = planned(&[], state(QuotaSupport::Btrfs, &present), pruned);
        assert!(p.kept.is_empty());
        let removed: Vec<String> = p.remove.iter().map(Action::summary).collect();
        assert_eq!(
            removed,
            ["delete volume old (/var/lib/ctm/volumes/old) and its data"]
        );
    }

    #[test]
    fn without_a_report_of_the_volumes_nothing_is_planned() {
        let p = planned(&[("data", Some(GIB))], None, Options::default());
        assert!(p.make.is_empty() && p.quotas.is_empty());
    }
}
