//! A restore shown before it is done: what putting a snapshot or an
//! archive back into a container does (which container is stopped and
//! started again, which volumes are replaced, what is kept as a safety
//! snapshot, the space it needs), with a key; and the restore itself,
//! done only while the key is still the one shown (as an apply is done
//! only while its plan has the fingerprint shown).
//!
//! The preview is [`preview_of`], a pure function of what was read;
//! [`preview`] reads it. The restore is [`snapshots::restore`] or
//! [`backups::restore`]'s, after the check.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::backups;
use super::events::Events;
use super::refused::Refused;
use super::session::{Access, Session, Target};
use super::snapshots::{self, generation_of, places, volumes_of};
use crate::backend::snapshots::{self as snaps, Method};
use crate::backend::{rootfs, volumes};
use crate::layout;
use crate::model::Name;

/// What is restored: a snapshot of the container or one of its archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Snapshot,
    Archive,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot",
            Kind::Archive => "archive",
        }
    }
}

/// What was read for a preview: the inputs of [`preview_of`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub generation: Option<u64>,
    pub container: String,
    pub kind: Kind,
    pub id: String,
    /// The archive file (none for a snapshot).
    pub path: Option<PathBuf>,
    /// When the snapshot was taken or the archive written (Unix seconds).
    pub created: u64,
    /// The snapshot's size, or the archive file's.
    pub bytes: u64,
    /// The volumes it replaces: a snapshot's own; for an archive those
    /// the container mounts now (its manifest is read when the restore
    /// verifies it, which refuses other volumes).
    pub volumes: Vec<String>,
    /// Whether the container runs: `None` on a files-only root.
    pub running: Option<bool>,
    /// Its root is an overlay of its image: the restore rebuilds the
    /// overlay's upper directory rather than swapping a whole tree.
    pub overlay: bool,
    /// Its root file system is there.
    pub has_tree: bool,
    /// Of `volumes`, those that are not there.
    pub missing_volumes: Vec<String>,
    /// Running containers other than this one that mount one of `volumes`,
    /// as (volume, container).
    pub other_users: Vec<(String, String)>,
    /// What the restored trees take there: `None` for an archive, whose
    /// uncompressed size its manifest says.
    pub needed: Option<u64>,
    /// Free bytes where the trees are unpacked or copied.
    pub free: Option<u64>,
    /// Where that is, `/var/lib/machines`.
    pub space_at: String,
    /// The size of the trees that are replaced: kept as a snapshot.
    pub replaced: u64,
}

/// The space a restore needs, and what there is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Space {
    /// Bytes the copy takes; `null` for an archive (its manifest, read
    /// when it is verified, says; the restore refuses if it does not fit).
    pub needed: Option<u64>,
    /// Bytes free there now; `null` when it cannot be read.
    pub free: Option<u64>,
    pub at: String,
    /// Whether it fits, when both are known.
    pub enough: Option<bool>,
}

/// What a restore will do, shown before it is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestorePreview {
    pub container: String,
    pub kind: Kind,
    pub id: String,
    /// The archive file, as the host sees it (`null` for a snapshot).
    pub path: Option<String>,
    pub created: u64,
    pub bytes: u64,
    /// The generation the host is on.
    pub generation: Option<u64>,
    /// The container runs, and is stopped for the restore and started
    /// again after it; `null` on a files-only root.
    pub restarts: Option<bool>,
    /// The volumes whose contents are replaced too.
    pub volumes: Vec<String>,
    /// What the restore replaces, kept as a new snapshot of the container
    /// (`ctm snapshots` lists it; restoring it undoes the restore).
    pub kept: String,
    /// The size of what is kept.
    pub kept_bytes: u64,
    pub space: Space,
    /// What it does, in order, one line each.
    pub steps: Vec<String>,
    /// Why it cannot be done now (empty: it can).
    pub blocked: Vec<String>,
    /// The key to send with the restore: it is refused if what the
    /// restore would do changed since (another generation, the container
    /// started or stopped, the snapshot or archive changed, a volume's
    /// container started…).
    pub key: String,
}

impl RestorePreview {
    /// `snapshot ID`, `archive ID`.
    pub fn what(&self) -> String {
        format!("{} {}", self.kind.as_str(), self.id)
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The preview of a restore of what `facts` describe. Pure.
pub fn preview_of(facts: &Facts) -> RestorePreview {
    let name = &facts.container;
    let what = format!("{} {}", facts.kind.as_str(), facts.id);
    let mut blocked = Vec::new();
    if !facts.has_tree {
        blocked.push(format!(
            "container {name} has no root file system to restore into: `ctm start {name}` makes it"
        ));
    }
    for volume in &facts.missing_volumes {
        blocked.push(format!(
            "volume {volume} does not exist now: `ctm apply` makes it"
        ));
    }
    for (volume, other) in &facts.other_users {
        blocked.push(format!(
            "volume {volume} is mounted by container {other}, which runs: stop it first"
        ));
    }
    let enough = match (facts.needed, facts.free) {
        (Some(needed), Some(free)) => Some(needed <= free),
        _ => None,
    };
    if enough == Some(false) {
        blocked.push(format!(
            "not enough space: it needs {}, and {} are free at {}",
            mb(facts.needed.unwrap_or(0)),
            mb(facts.free.unwrap_or(0)),
            facts.space_at
        ));
    }
    let (trees, are) = if facts.volumes.is_empty() {
        ("its root file system".to_string(), "it is")
    } else {
        (
            format!(
                "its root file system and volumes {}",
                facts.volumes.join(", ")
            ),
            "they are",
        )
    };
    let mut steps = Vec::new();
    if facts.kind == Kind::Archive {
        steps.push(format!(
            "verify the archive {} whole; nothing changes if it is damaged or holds other volumes than {}",
            facts
                .path
                .as_deref()
                .map_or_else(|| facts.id.clone(), |p| p.display().to_string()),
            if facts.volumes.is_empty() {
                "none".to_string()
            } else {
                facts.volumes.join(", ")
            }
        ));
    }
    match facts.running {
        Some(true) => steps.push(format!("stop container {name}")),
        Some(false) => {}
        None => steps.push(format!(
            "(a files-only root: container {name} is not stopped or started)"
        )),
    }
    steps.push(format!(
        "{} {trees} from {what} beside the current ones ({})",
        if facts.kind == Kind::Archive {
            "unpack"
        } else {
            "copy"
        },
        facts
            .needed
            .map_or_else(|| "the archive's uncompressed size".into(), mb)
    ));
    if facts.overlay {
        steps.push(format!(
            "keep the root file system as it is now ({}) as a new snapshot of container {name}, \
             then rebuild its overlay's upper directory from {what}: only what differs from the image",
            mb(facts.replaced)
        ));
    }
    steps.push(if facts.overlay && facts.volumes.is_empty() {
        "swap the new upper directory in at once".to_string()
    } else {
        format!(
            "swap them in at once, keeping what they replace ({}) as a new snapshot of container {name}",
            mb(facts.replaced)
        )
    });
    if facts.running == Some(true) {
        steps.push(format!("start container {name} again"));
    }
    let key = key_of(facts, &blocked);
    RestorePreview {
        container: name.clone(),
        kind: facts.kind,
        id: facts.id.clone(),
        path: facts.path.as_ref().map(|p| p.display().to_string()),
        created: facts.created,
        bytes: facts.bytes,
        generation: facts.generation,
        restarts: facts.running,
        volumes: facts.volumes.clone(),
        kept: format!(
            "{trees} as {are} now, as a new snapshot of container {name} (restoring it undoes this restore)"
        ),
        kept_bytes: facts.replaced,
        space: Space {
            needed: facts.needed,
            free: facts.free,
            at: facts.space_at.clone(),
            enough,
        },
        steps,
        blocked,
        key,
    }
}

/// The key of a preview: the sha256 of what decides what the restore
/// does. Not the free space nor the size of what is replaced, which
/// change as the container runs and are checked again by the restore.
fn key_of(facts: &Facts, blocked: &[String]) -> String {
    let basis = serde_json::json!({
        "generation": facts.generation,
        "container": facts.container,
        "kind": facts.kind,
        "id": facts.id,
        "path": facts.path,
        "created": facts.created,
        "bytes": facts.bytes,
        "volumes": facts.volumes,
        "running": facts.running,
        // Restored another way: the overlay's upper rebuilt.
        "overlay": facts.overlay,
        "blocked": blocked,
    });
    crate::fs::sha256_hex(basis.to_string().as_bytes())
}

/// Reads what a restore of `kind` `id` into container `name` would do.
pub fn preview(
    target: &Target,
    name: &Name,
    kind: Kind,
    id: &str,
    events: Events<'_>,
) -> miette::Result<RestorePreview> {
    let mut session = Session::open(target, Access::ReadShared, events)?;
    let expect = generation_of(&session, name)?;
    let generation = session.store.current()?;
    let root = session.store.root().to_path_buf();
    let container = name.as_str();
    let machines = root.join(layout::MACHINES);
    let (path, created, bytes, volumes, needed) = match kind {
        Kind::Snapshot => {
            let all = snaps::list(&root, container);
            let Some(s) = all.iter().find(|s| s.id == id) else {
                return Err(no_such(container, kind, id, all.iter().map(|s| &s.id)).into());
            };
            let method = snaps::method_for(&snaps::rootfs_in(&root, container, id), &machines);
            let needed = if method == Method::BtrfsSnapshot {
                0
            } else {
                s.bytes
            };
            (None, s.created, s.bytes, s.volumes.clone(), Some(needed))
        }
        Kind::Archive => {
            let block = expect
                .backups
                .get(container)
                .map(|b| layout::under_root(&root, &b.to));
            let subject = crate::backend::archive::Subject::Container(container.to_string());
            let all = backups::listed_in(&root, block.as_deref(), &subject);
            let Some(a) = all.iter().find(|a| a.id == id) else {
                return Err(no_such(container, kind, id, all.iter().map(|a| &a.id)).into());
            };
            (
                Some(a.path.clone()),
                a.modified,
                a.bytes,
                volumes_of(&expect, container),
                None,
            )
        }
    };
    let running = running_state(&mut session, container)?;
    let mut missing_volumes = Vec::new();
    let mut other_users = Vec::new();
    for volume in &volumes {
        if volumes::made_by_ctm(&root, volume).is_none() {
            missing_volumes.push(volume.clone());
        }
        let users = expect
            .volumes
            .get(volume)
            .map(|v| v.containers.clone())
            .unwrap_or_default();
        for other in users.iter().filter(|c| c.as_str() != container) {
            if running_state(&mut session, other)? == Some(true) {
                other_users.push((volume.clone(), other.clone()));
            }
        }
    }
    let tree = rootfs::tree(&root, container);
    let replaced = places(&root, container, &volumes)
        .iter()
        .map(|p| rootfs::size(p).0)
        .sum();
    let facts = Facts {
        generation,
        container: container.to_string(),
        kind,
        id: id.to_string(),
        path,
        created,
        bytes,
        volumes,
        running,
        overlay: rootfs::overlay(&root, container).is_dir(),
        has_tree: tree.is_dir(),
        missing_volumes,
        other_users,
        needed,
        free: snaps::free_bytes(&machines).ok(),
        space_at: format!("/{}", layout::MACHINES.trim_start_matches('/')),
        replaced,
    };
    Ok(preview_of(&facts))
}

/// Whether container `name` runs (paused counts); `None` on a files-only
/// root.
fn running_state(session: &mut Session, name: &str) -> miette::Result<Option<bool>> {
    let live = session
        .system
        .containers(&BTreeSet::from([name.to_string()]))?;
    Ok(live.map(|all| {
        all.get(name)
            .is_some_and(|c| c.state == "running" || c.paused)
    }))
}

fn no_such<'a>(
    container: &str,
    kind: Kind,
    id: &str,
    known: impl Iterator<Item = &'a String>,
) -> Refused {
    let known: Vec<&str> = known.map(String::as_str).collect();
    let help = match (kind, known.is_empty()) {
        (Kind::Snapshot, true) => {
            format!("container {container} has no snapshots; `ctm snapshot {container}` takes one")
        }
        (Kind::Archive, true) => {
            format!("container {container} has no archives; `ctm backup {container}` makes one")
        }
        (_, false) => format!("its {}s: {}", kind.as_str(), known.join(", ")),
    };
    match kind {
        Kind::Snapshot => Refused::NoSuchSnapshot {
            container: container.to_string(),
            id: id.to_string(),
            help,
        },
        Kind::Archive => Refused::NoSuchArchive {
            container: container.to_string(),
            id: id.to_string(),
            help,
        },
    }
}

/// What a restore did: the snapshot that keeps what it replaced, and
/// whether the container was started again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Done {
    pub kept: String,
    pub restarted: bool,
}

/// Checks that a restore of `kind` `id` into container `name` would still
/// do what the preview with `key` showed, and that nothing blocks it; the
/// preview then. Refused otherwise, nothing changed.
pub fn check(
    target: &Target,
    name: &Name,
    kind: Kind,
    id: &str,
    key: &str,
    events: Events<'_>,
) -> miette::Result<RestorePreview> {
    let now = preview(target, name, kind, id, events)?;
    if now.key != key {
        return Err(Refused::StaleRestore {
            container: name.to_string(),
            what: now.what(),
        }
        .into());
    }
    if !now.blocked.is_empty() {
        return Err(Refused::RestoreBlocked {
            container: name.to_string(),
            what: now.what(),
            reasons: now.blocked.clone(),
        }
        .into());
    }
    Ok(now)
}

/// The restore [`check`] let through, as its preview showed.
pub fn restore(
    target: &Target,
    name: &Name,
    shown: &RestorePreview,
    events: Events<'_>,
) -> miette::Result<Done> {
    match (shown.kind, &shown.path) {
        (Kind::Archive, Some(path)) => {
            let done = backups::restore_expecting(
                target,
                name,
                Path::new(path),
                Some(&shown.volumes),
                events,
            )?;
            Ok(Done {
                kept: done.kept.id,
                restarted: done.restarted,
            })
        }
        _ => {
            let done = snapshots::restore(target, name, &shown.id, events)?;
            Ok(Done {
                kept: done.kept.id,
                restarted: done.restarted,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            generation: Some(3),
            container: "web".into(),
            kind: Kind::Snapshot,
            id: "20261204T100000Z".into(),
            path: None,
            created: 1_800_000_000,
            bytes: 5_000_000,
            volumes: vec!["data".into()],
            running: Some(true),
            overlay: false,
            has_tree: true,
            missing_volumes: Vec::new(),
            other_users: Vec::new(),
            needed: Some(5_000_000),
            free: Some(50_000_000),
            space_at: "/var/lib/machines".into(),
            replaced: 7_000_000,
        }
    }

    #[test]
    fn a_running_containers_restore_stops_and_starts_it_and_keeps_what_it_replaces() {
        let p = preview_of(&facts());
        assert!(p.blocked.is_empty(), "{:?}", p.blocked);
        assert_eq!(p.restarts, Some(true));
        assert_eq!(p.steps.first().unwrap(), "stop container web");
        assert_eq!(p.steps.last().unwrap(), "start container web again");
        assert!(p.kept.contains("volumes data"), "{}", p.kept);
        assert_eq!(p.kept_bytes, 7_000_000);
        assert_eq!(p.space.enough, Some(true));
    }

    #[test]
    fn what_blocks_a_restore_is_named_each() {
        let mut f = facts();
        f.free = Some(1);
        f.other_users = vec![("data".into(), "db".into())];
        let p = preview_of(&f);
        assert_eq!(p.blocked.len(), 2, "{:?}", p.blocked);
        assert_eq!(p.space.enough, Some(false));
        assert!(p.blocked.iter().any(|b| b.contains("container db")));
    }

    #[test]
    fn an_overlay_root_is_restored_by_rebuilding_its_upper_directory() {
        let mut f = facts();
        f.overlay = true;
        let p = preview_of(&f);
        assert!(p.blocked.is_empty(), "{:?}", p.blocked);
        assert!(
            p.steps
                .iter()
                .any(|s| s.contains("rebuild its overlay's upper directory")),
            "{:?}",
            p.steps
        );
        assert_ne!(p.key, preview_of(&facts()).key);
    }

    #[test]
    fn the_key_follows_what_the_restore_does_not_the_free_space() {
        let base = preview_of(&facts()).key;
        let mut f = facts();
        f.free = Some(60_000_000);
        f.replaced = 1;
        assert_eq!(preview_of(&f).key, base);
        for change in [
            |f: &mut Facts| f.running = Some(false),
            |f: &mut Facts| f.generation = Some(4),
            |f: &mut Facts| f.bytes += 1,
            |f: &mut Facts| f.volumes.clear(),
        ] {
            let mut f = facts();
            change(&mut f);
            assert_ne!(preview_of(&f).key, base);
        }
    }

    #[test]
    fn an_archives_restore_is_verified_first_and_its_space_known_then() {
        let mut f = facts();
        f.kind = Kind::Archive;
        f.path = Some("/var/lib/ctm/backups/web-20261204T100000Z.ctm-backup.tar.zst".into());
        f.needed = None;
        f.running = Some(false);
        let p = preview_of(&f);
        assert!(p.steps[0].starts_with("verify the archive /var/lib/ctm/backups/"));
        assert_eq!(p.space.enough, None);
        assert!(!p.steps.iter().any(|s| s.starts_with("stop")));
    }
}
