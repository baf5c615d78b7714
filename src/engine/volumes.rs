//! The volumes view (`GET /api/volumes`): each volume of the current
//! generation, and each ctm made that the generation no longer has, with
//! what it holds, its quota, the containers that mount it, and its
//! archives (`ctm backup --volume`) in the default directory and in its
//! `backup` block's.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::backups::listed_in;
use super::events::Events;
use super::session::{Access, Session, Target};
use super::snapshots::current_expectations;
use crate::backend::archive::{Listed, Subject};
use crate::backend::volumes::{self, Measured};
use crate::compile::health::VolumeHealth;
use crate::plan::LastBackup;

/// One volume as the volumes view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeView {
    pub name: String,
    /// Where it is on the host (`/var/lib/ctm/volumes/NAME`).
    pub path: String,
    /// `btrfs subvolume` or `directory`; `null` while ctm has not made it.
    pub kind: Option<String>,
    /// What it holds, in bytes (as `ctm status` counts it); `null` while
    /// ctm has not made it.
    pub used: Option<u64>,
    /// The quota the generation sets (or, for a volume it no longer has,
    /// the one ctm set), in bytes; `null`: none.
    pub quota: Option<u64>,
    /// The containers of the generation that mount it.
    pub containers: Vec<String>,
    /// No longer in the generation: kept until `ctm apply --prune`.
    pub kept: bool,
    /// The directory of its `backup` block, as the host sees it; `null`
    /// without one.
    pub backup_to: Option<String>,
    /// How many archives of it there are.
    pub archives: usize,
    /// The newest of them.
    pub last_backup: Option<LastBackup>,
}

/// The view of one volume from what was read. Pure.
pub fn view_of(
    name: &str,
    wanted: Option<&VolumeHealth>,
    measured: Option<&Measured>,
    archives: &[Listed],
) -> VolumeView {
    VolumeView {
        name: name.to_string(),
        path: crate::layout::volume_path(name),
        kind: measured.map(|m| m.kind.describe().to_string()),
        used: measured.map(|m| m.used),
        quota: match wanted {
            Some(w) => w.quota,
            None => measured.and_then(|m| m.quota),
        },
        containers: wanted.map(|w| w.containers.clone()).unwrap_or_default(),
        kept: wanted.is_none(),
        backup_to: wanted.and_then(|w| w.backup.as_ref()).map(|b| b.to.clone()),
        archives: archives.len(),
        last_backup: archives
            .iter()
            .max_by_key(|a| a.modified)
            .map(|a| LastBackup {
                id: a.id.clone(),
                path: a.path.display().to_string(),
                bytes: a.bytes,
                at: a.modified,
            }),
    }
}

/// Every volume of the current generation, then those ctm made that it
/// no longer has; by name.
pub fn list(target: &Target, events: Events<'_>) -> miette::Result<Vec<VolumeView>> {
    let session = Session::open(target, Access::ReadShared, events)?;
    let (_, expect) = current_expectations(&session)?;
    let root = session.store.root();
    let measured: BTreeMap<String, Measured> = volumes::measure(root);
    let names: BTreeSet<&String> = expect.volumes.keys().chain(measured.keys()).collect();
    Ok(names
        .into_iter()
        .map(|name| {
            let wanted = expect.volumes.get(name);
            let block = wanted
                .and_then(|w| w.backup.as_ref())
                .map(|b| crate::layout::under_root(root, &b.to));
            let archives = listed_in(root, block.as_deref(), &Subject::Volume(name.clone()));
            view_of(name, wanted, measured.get(name), &archives)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::health::BackupHealth;
    use std::path::PathBuf;

    #[test]
    fn a_volume_shows_its_users_quota_and_newest_archive() {
        let wanted = VolumeHealth {
            quota: Some(1 << 20),
            containers: vec!["db".into(), "web".into()],
            backup: Some(BackupHealth {
                to: "/srv/backups".into(),
            }),
        };
        let listed = |id: &str, at: u64| Listed {
            subject: Subject::Volume("data".into()),
            id: id.into(),
            path: PathBuf::from(format!("/srv/backups/data-{id}.ctm-volume.tar.zst")),
            bytes: 10,
            modified: at,
        };
        let v = view_of(
            "data",
            Some(&wanted),
            None,
            &[listed("20261201T000000Z", 5), listed("20261202T000000Z", 9)],
        );
        assert_eq!(v.containers, ["db", "web"]);
        assert_eq!(v.quota, Some(1 << 20));
        assert_eq!(v.used, None);
        assert!(!v.kept);
        assert_eq!(v.archives, 2);
        assert_eq!(v.last_backup.unwrap().id, "20261202T000000Z");
        let gone = view_of("old", None, None, &[]);
        assert!(gone.kept && gone.last_backup.is_none());
    }
}
