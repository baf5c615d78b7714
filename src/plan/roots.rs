//! Root file systems in the plan: which kind each new container's tree
//! is (`root` in the host file: a btrfs snapshot of the image, a reflink
//! copy, a plain copy), and the kinds asked for that the file system
//! cannot make. A pure function of the desired containers
//! (`Health::containers`) and what the system reports of the file system
//! of `/var/lib/machines` and the image store ([`RootsState`], read by
//! `backend::rootfs::observe`).
//!
//! `choose` is also what `backend::provision` asks when it makes the tree,
//! so that the kind the plan showed is the kind that is made.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::Inputs;
use crate::model::RootMode;

/// What the file system of the containers' trees and the image store can
/// do, as the system reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootsState {
    /// The file system of `/var/lib/machines`, as `statfs` tells it.
    pub fs: String,
    /// `None`: a btrfs snapshot of an image can be made; else why not.
    pub snapshot: Option<String>,
    /// `None`: a file of the image store can be cloned into
    /// `/var/lib/machines` (`FICLONE`); else why not.
    pub reflink: Option<String>,
    /// `None`: an overlayfs of an image can be mounted at
    /// `/var/lib/machines/NAME` with its changes kept under
    /// `/var/lib/ctm/overlays`; else why not.
    #[serde(default)]
    pub overlay: Option<String>,
    /// The desired containers whose tree is not there yet: the ones an
    /// apply makes.
    pub missing: BTreeSet<String>,
}

/// The kind of tree `mode` makes on a file system that can do what
/// `state` says, or why it cannot be made. `auto` takes the first of
/// snapshot, reflink and copy that works.
pub fn choose(mode: RootMode, state: &RootsState) -> Result<RootMode, String> {
    match mode {
        RootMode::Auto => Ok(if state.snapshot.is_none() {
            RootMode::Snapshot
        } else if state.reflink.is_none() {
            RootMode::Reflink
        } else {
            RootMode::Copy
        }),
        RootMode::Snapshot => state.snapshot.clone().map_or(Ok(mode), Err),
        RootMode::Reflink => state.reflink.clone().map_or(Ok(mode), Err),
        RootMode::Copy => Ok(mode),
        RootMode::Overlay => state.overlay.clone().map_or(Ok(mode), Err),
    }
}

/// How a new container's tree will be made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootNote {
    pub container: String,
    /// The kind made (`snapshot`, `reflink`, `copy`), or, for a kind the
    /// file system cannot make, the one asked for.
    pub kind: RootMode,
    /// What the host file asked for (`auto` by default).
    pub asked: RootMode,
    /// Why this kind (or why the one asked for cannot be made).
    pub reason: String,
}

/// What the plan says about root file systems: the kinds of the new
/// trees, and those that cannot be made (an apply is refused).
#[derive(Debug, Default)]
pub(super) struct RootPlan {
    pub new: Vec<RootNote>,
    pub unavailable: Vec<RootNote>,
}

pub(super) fn plan(input: &Inputs<'_>) -> RootPlan {
    let mut out = RootPlan::default();
    let Some(state) = &input.system.roots else {
        return out;
    };
    for (name, container) in &input.expect.containers {
        if !state.missing.contains(name) {
            continue;
        }
        let asked = container.root;
        match choose(asked, state) {
            Ok(kind) => out.new.push(RootNote {
                container: name.clone(),
                kind,
                asked,
                reason: describe(kind, asked, state),
            }),
            Err(reason) => out.unavailable.push(RootNote {
                container: name.clone(),
                kind: asked,
                asked,
                reason,
            }),
        }
    }
    out
}

fn describe(kind: RootMode, asked: RootMode, state: &RootsState) -> String {
    let fs = &state.fs;
    let what = match kind {
        RootMode::Snapshot => format!(
            "a btrfs snapshot of the image: shares its blocks ({fs}; a reflink copy where the \
             image is not a subvolume)"
        ),
        RootMode::Reflink => format!("a reflink copy of the image: shares its blocks ({fs})"),
        RootMode::Overlay => format!(
            "an overlay of the image: shares its files, the container's changes kept apart ({fs})"
        ),
        _ => format!("a copy of the image ({fs})"),
    };
    if asked.is_auto() && kind == RootMode::Copy {
        let why = state.reflink.as_deref().unwrap_or("no reflinks");
        // The one way to share on this file system is asked for by name.
        let hint = if state.overlay.is_none() {
            "; `root \"overlay\"` would share the image's files"
        } else {
            ""
        };
        format!("{what}: {why}{hint}")
    } else {
        what
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::Artifacts;
    use crate::compile::health::{ContainerHealth, Health};
    use crate::plan::{Manifest, Options, SystemState};
    use std::collections::BTreeMap;

    fn planned(wanted: &[(&str, RootMode)], roots: Option<RootsState>) -> RootPlan {
        let expect = Health {
            containers: wanted
                .iter()
                .map(|(name, root)| {
                    (
                        name.to_string(),
                        ContainerHealth {
                            root: *root,
                            ..ContainerHealth::default()
                        },
                    )
                })
                .collect(),
            ..Health::default()
        };
        let system = SystemState {
            roots,
            ..SystemState::default()
        };
        let (desired, manifest, live) =
            (Artifacts::default(), Manifest::default(), BTreeMap::new());
        plan(&Inputs {
            desired: &desired,
            desired_manifest: &manifest,
            expect: &expect,
            current: None,
            live: &live,
            system: &system,
            options: Options::default(),
        })
    }

    #[test]
    fn each_new_tree_is_noted_with_its_kind_and_one_that_cannot_be_made_is_refused() {
        let mut xfs = state(false, true);
        xfs.fs = "xfs".into();
        xfs.missing = ["a", "b", "c"].map(String::from).into();
        let p = planned(
            &[
                ("a", RootMode::Auto),
                ("b", RootMode::Snapshot),
                ("c", RootMode::Copy),
                ("made", RootMode::Snapshot),
            ],
            Some(xfs),
        );
        let new: Vec<(&str, RootMode)> = p
            .new
            .iter()
            .map(|n| (n.container.as_str(), n.kind))
            .collect();
        assert_eq!(new, [("a", RootMode::Reflink), ("c", RootMode::Copy)]);
        assert_eq!(
            p.new[0].reason,
            "a reflink copy of the image: shares its blocks (xfs)"
        );
        // A tree that is there is not made again: its kind is not asked.
        assert_eq!(
            p.unavailable,
            [RootNote {
                container: "b".into(),
                kind: RootMode::Snapshot,
                asked: RootMode::Snapshot,
                reason: "not btrfs".into(),
            }]
        );
        // Without a report (not the running system), nothing is said.
        let p = planned(&[("a", RootMode::Snapshot)], None);
        assert!(p.new.is_empty() && p.unavailable.is_empty());
    }

    fn state(snapshot: bool, reflink: bool) -> RootsState {
        RootsState {
            fs: "test".into(),
            snapshot: (!snapshot).then(|| "not btrfs".to_string()),
            reflink: (!reflink).then(|| "no FICLONE".to_string()),
            overlay: None,
            missing: BTreeSet::new(),
        }
    }

    #[test]
    fn auto_takes_the_first_kind_the_file_system_can_make() {
        assert_eq!(
            choose(RootMode::Auto, &state(true, true)),
            Ok(RootMode::Snapshot)
        );
        assert_eq!(
            choose(RootMode::Auto, &state(false, true)),
            Ok(RootMode::Reflink)
        );
        assert_eq!(
            choose(RootMode::Auto, &state(false, false)),
            Ok(RootMode::Copy)
        );
        // Not even where an overlay is the only way to share.
        let mut ext4 = state(false, false);
        ext4.overlay = None;
        assert_eq!(choose(RootMode::Auto, &ext4), Ok(RootMode::Copy));
    }

    #[test]
    fn an_overlay_is_made_where_the_kernel_and_file_system_can_and_refused_else() {
        let ext4 = state(false, false);
        assert_eq!(choose(RootMode::Overlay, &ext4), Ok(RootMode::Overlay));
        // On btrfs too: asked for, it is what is made.
        assert_eq!(
            choose(RootMode::Overlay, &state(true, true)),
            Ok(RootMode::Overlay)
        );
        let mut without = ext4.clone();
        without.overlay = Some("no overlay in /proc/filesystems".into());
        assert_eq!(
            choose(RootMode::Overlay, &without),
            Err("no overlay in /proc/filesystems".to_string())
        );
    }

    #[test]
    fn a_copy_auto_chose_says_an_overlay_would_share() {
        let mut ext4 = state(false, false);
        ext4.fs = "ext4".into();
        ext4.missing = ["a", "b"].map(String::from).into();
        let p = planned(
            &[("a", RootMode::Auto), ("b", RootMode::Overlay)],
            Some(ext4.clone()),
        );
        assert_eq!(
            p.new[0].reason,
            "a copy of the image (ext4): no FICLONE; `root \"overlay\"` would share the image's files"
        );
        assert_eq!(p.new[1].kind, RootMode::Overlay);
        assert_eq!(
            p.new[1].reason,
            "an overlay of the image: shares its files, the container's changes kept apart (ext4)"
        );
        // No hint where an overlay cannot be made either.
        ext4.overlay = Some("no overlay".into());
        let p = planned(&[("a", RootMode::Auto)], Some(ext4));
        assert_eq!(p.new[0].reason, "a copy of the image (ext4): no FICLONE");
    }

    #[test]
    fn a_kind_asked_for_is_made_or_refused_with_why() {
        let ext4 = state(false, false);
        assert_eq!(
            choose(RootMode::Snapshot, &ext4),
            Err("not btrfs".to_string())
        );
        assert_eq!(
            choose(RootMode::Reflink, &ext4),
            Err("no FICLONE".to_string())
        );
        assert_eq!(choose(RootMode::Copy, &ext4), Ok(RootMode::Copy));
        // A copy is a copy even where the file system could share.
        assert_eq!(
            choose(RootMode::Copy, &state(true, true)),
            Ok(RootMode::Copy)
        );
        assert_eq!(
            choose(RootMode::Reflink, &state(true, true)),
            Ok(RootMode::Reflink)
        );
    }
}
