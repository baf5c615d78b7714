//! `ctm snapshot`, `ctm snapshots` and `ctm restore`: consistent copies
//! of a container's root file system (and, asked, its volumes), and
//! putting one back without losing what is replaced.
//!
//! A running container is frozen for the copy (the cgroup freezer, as
//! `ctm pause` freezes it), so that the copy is of one moment of its
//! files; or stopped and started again, when asked. A restore stops the
//! container, copies the snapshot beside the tree, keeps the current
//! tree as a snapshot of its own, swaps the two at once
//! (`RENAME_EXCHANGE`), and starts the container again if it ran.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use miette::miette;

use super::containers::no_such_container;
use super::events::{Event, Events};
use super::refused::Refused;
use super::session::{Access, Session, Target};
use crate::backend::snapshots::{self, Method, Snapshot};
use crate::backend::{ContainerLive, rootfs, volumes};
use crate::compile::health::{self, Health};
use crate::layout;
use crate::model::Name;
use crate::plan::Action;

/// How to take a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Copy the container's volumes too.
    pub volumes: bool,
    /// Stop a running container for the copy (and start it again),
    /// rather than freeze it.
    pub stop: bool,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub restored: Snapshot,
    /// The state it replaced, kept as a snapshot.
    pub kept: Snapshot,
    /// The container ran, and was started again.
    pub restarted: bool,
}

/// The current generation's expectations, refusing a container that is
/// not in it.
pub(super) fn generation_of(session: &Session, name: &Name) -> miette::Result<Health> {
    let (current, expect) = current_expectations(session)?;
    if current.is_none() || !expect.containers.contains_key(name.as_str()) {
        return Err(no_such_container(name, current, expect.containers.keys()).into());
    }
    Ok(expect)
}

/// The current generation's number and expectations (none when nothing
/// was applied).
pub(super) fn current_expectations(session: &Session) -> miette::Result<(Option<u64>, Health)> {
    let current = session.store.current()?;
    let expect = match current {
        Some(n) => health::of(&session.store.artifacts(n)?).map_err(|e| miette!("{e}"))?,
        None => Health::default(),
    };
    Ok((current, expect))
}

/// The volumes of the generation that container `name` mounts.
pub(super) fn volumes_of(expect: &Health, name: &str) -> Vec<String> {
    expect
        .volumes
        .iter()
        .filter(|(_, v)| v.containers.iter().any(|c| c == name))
        .map(|(volume, _)| volume.clone())
        .collect()
}

/// Container `name` as the running system reports it (`None`: it does
/// not run, or the root is not the running system).
pub(super) fn live(session: &mut Session, name: &str) -> miette::Result<Option<ContainerLive>> {
    Ok(session
        .system
        .containers(&BTreeSet::from([name.to_string()]))?
        .and_then(|mut all| all.remove(name))
        .filter(|c| c.state == "running"))
}

pub(super) fn step(events: Events<'_>, line: impl Into<String>) {
    events(Event::Step { line: line.into() });
}

/// Stops or starts container `name`, saying so.
pub(super) fn perform(
    session: &mut Session,
    action: Action,
    events: Events<'_>,
) -> miette::Result<()> {
    events(Event::performing(&action));
    let mut say = |line: &str| step(events, line);
    session
        .system
        .perform(&[action], &Health::default(), &mut say)?;
    Ok(())
}

/// Refuses a copy of `bytes` that does not fit where it goes.
pub(super) fn check_space(at: &Path, bytes: u64, method: Method) -> miette::Result<()> {
    if method == Method::BtrfsSnapshot {
        return Ok(());
    }
    let free = snapshots::free_bytes(at)?;
    if bytes > free {
        return Err(miette!(
            help = "free some space (`ctm snapshots` lists what snapshots there are), or copy less: without --volumes",
            "not enough space for the copy: it needs {:.1} MB, and {:.1} MB are free at {}",
            bytes as f64 / 1e6,
            free as f64 / 1e6,
            at.display()
        ));
    }
    Ok(())
}

/// Thaws the containers `frozen` names, each even if another fails; the
/// first failure is returned.
fn thaw(session: &mut Session, frozen: &[String], events: Events<'_>) -> miette::Result<()> {
    let mut first = None;
    for container in frozen {
        match session.system.set_paused(container, false) {
            Ok(()) => step(events, format!("thawed container {container}")),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    first.map_or(Ok(()), |e| Err(e.into()))
}

/// Of the containers `names`, those that run and that the user has not
/// paused: those a copy freezes. A container the user paused is frozen
/// already, and stays so.
pub(super) fn running_unpaused<'a>(
    session: &mut Session,
    names: impl IntoIterator<Item = &'a str>,
) -> miette::Result<Vec<String>> {
    let mut out = Vec::new();
    for name in names {
        if live(session, name)?.is_some_and(|c| !c.paused) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// Runs `copy` with the containers `to_freeze` frozen by the cgroup
/// freezer (as `ctm pause` freezes them), so that what it copies is of
/// one moment; and thaws them whatever `copy` gave. Gives `copy`'s result
/// and the thaw's, for the caller to deal with the copy before it reports
/// a failure to thaw. An error of its own: a container could not be
/// frozen (those frozen before it are thawed again, and nothing copied).
pub(super) fn while_frozen<T>(
    session: &mut Session,
    to_freeze: &[String],
    events: Events<'_>,
    copy: impl FnOnce(Events<'_>) -> miette::Result<T>,
) -> miette::Result<(miette::Result<T>, miette::Result<()>)> {
    let mut frozen: Vec<String> = Vec::new();
    for container in to_freeze {
        if let Err(e) = session.system.set_paused(container, true) {
            thaw(session, &frozen, events)?;
            return Err(e.into());
        }
        step(events, format!("froze container {container} for the copy"));
        frozen.push(container.clone());
    }
    let copied = copy(&mut *events);
    let thawed = thaw(session, &frozen, events);
    Ok((copied, thawed))
}

/// Takes a snapshot of container `name`: its root file system, and its
/// volumes with `options.volumes`. What writes to them is frozen for the
/// copy (see [`Options`]).
pub fn snapshot(
    target: &Target,
    name: &Name,
    options: Options,
    events: Events<'_>,
) -> miette::Result<Snapshot> {
    snapshot_for(target, name, options, "ctm snapshot", events)
}

/// [`snapshot`], recorded with `reason`.
pub(super) fn snapshot_for(
    target: &Target,
    name: &Name,
    options: Options,
    reason: &str,
    events: Events<'_>,
) -> miette::Result<Snapshot> {
    let mut session = Session::open(target, Access::Change, events)?;
    let expect = generation_of(&session, name)?;
    let root = session.store.root().to_path_buf();
    let name = name.as_str();
    let tree = rootfs::tree(&root, name);
    if !tree.is_dir() {
        return Err(miette!(
            help = "`ctm start {name}` makes it from its image",
            "container {name} has no root file system at {}",
            tree.display()
        ));
    }
    // An overlay root is copied as the container sees it, the merged
    // view: a snapshot stands alone (backups and exports are made of it).
    // After a reboot nothing mounted a stopped container's overlay.
    if rootfs::overlay(&root, name).is_dir() && rootfs::mount_overlay(&root, name)? {
        step(
            events,
            format!("mounted the overlay root at {}", tree.display()),
        );
    }
    let volumes = if options.volumes {
        volumes_of(&expect, name)
    } else {
        Vec::new()
    };
    for volume in &volumes {
        if volumes::made_by_ctm(&root, volume).is_none() {
            return Err(miette!(
                help = "`ctm apply` makes it",
                "volume {volume} of container {name} does not exist"
            ));
        }
    }
    let mut trees = vec![tree.clone()];
    trees.extend(volumes.iter().map(|v| volumes::path(&root, v)));
    let (mut bytes, mut files) = (0, 0);
    for t in &trees {
        let (b, f) = rootfs::size(t);
        bytes += b;
        files += f;
    }
    let id = snapshots::new_id(&root, name, crate::clock::now_unix());
    let dir = snapshots::dir(&root, name, &id);
    check_space(&dir, bytes, snapshots::method_for(&tree, &dir))?;

    let running = live(&mut session, name)?;
    let stopped = running.is_some() && options.stop;
    // Frozen for the copy: the container unless it is stopped, and every
    // other running container that writes to a volume being copied.
    let mut sharing: BTreeSet<&str> = BTreeSet::new();
    for volume in &volumes {
        if let Some(v) = expect.volumes.get(volume) {
            sharing.extend(v.containers.iter().map(String::as_str));
        }
    }
    sharing.remove(name);
    let itself = (!stopped).then_some(name);
    let to_freeze = running_unpaused(&mut session, itself.into_iter().chain(sharing))?;
    if stopped {
        perform(
            &mut session,
            Action::StopContainer {
                name: name.to_string(),
                reason: "stopped for a snapshot (--stop)".into(),
            },
            events,
        )?;
    }
    let started = std::time::Instant::now();
    let frozen = while_frozen(&mut session, &to_freeze, events, |events| {
        step(
            events,
            format!(
                "copying {:.1} MB in {files} files to {}",
                bytes as f64 / 1e6,
                dir.display()
            ),
        );
        let mut say = |line: &str| step(events, line);
        let method = snapshots::copy_tree(
            &tree,
            &snapshots::rootfs_in(&root, name, &id),
            false,
            bytes,
            &mut say,
        )?;
        for volume in &volumes {
            snapshots::copy_tree(
                &volumes::path(&root, volume),
                &snapshots::volume_in(&root, name, &id, volume),
                false,
                bytes,
                &mut say,
            )?;
        }
        Ok(method)
    });
    // Whatever the copy did, the container goes back as it was; a failure
    // to do so is reported after the copy is dealt with.
    let (copied, thawed) = match frozen {
        Ok(both) => both,
        Err(e) => (Err(e), Ok(())),
    };
    let restarted = if stopped {
        perform(
            &mut session,
            Action::StartContainer {
                name: name.to_string(),
                reason: "started again after its snapshot".into(),
            },
            events,
        )
    } else {
        Ok(())
    };
    let back = thawed.and(restarted);
    let method = match copied {
        Ok(method) => method,
        Err(e) => {
            let mut say = |line: &str| step(events, line);
            snapshots::delete(&root, name, &id, &mut say)?;
            back?;
            return Err(e);
        }
    };
    let snapshot = Snapshot {
        container: name.to_string(),
        id,
        created: crate::clock::now_unix(),
        reason: reason.into(),
        // Copied while it ran: frozen by ctm, or paused by the user.
        frozen: running.is_some() && !stopped,
        method,
        volumes,
        bytes,
        files,
    };
    snapshots::record(&root, &snapshot)?;
    step(
        events,
        format!(
            "snapshot {} of container {name} taken in {:.1} s",
            snapshot.id,
            started.elapsed().as_secs_f64()
        ),
    );
    back?;
    Ok(snapshot)
}

/// The snapshots of container `name`, or of every container; oldest
/// first.
pub fn list(target: &Target, name: Option<&Name>) -> miette::Result<Vec<Snapshot>> {
    let session = Session::open(target, Access::Read, &mut |_| {})?;
    let root = session.store.root();
    let names = match name {
        Some(n) => vec![n.to_string()],
        None => snapshots::containers(root),
    };
    Ok(names
        .iter()
        .flat_map(|n| snapshots::list(root, n))
        .collect())
}

/// Refuses an `id` that is not one of `all`, the snapshots of `name`.
fn find(all: &[Snapshot], name: &str, id: &str) -> Result<Snapshot, Refused> {
    all.iter()
        .find(|s| s.id == id)
        .cloned()
        .ok_or_else(|| Refused::NoSuchSnapshot {
            container: name.to_string(),
            id: id.to_string(),
            help: if all.is_empty() {
                format!("container {name} has no snapshots; `ctm snapshot {name}` takes one")
            } else {
                format!(
                    "its snapshots: {}",
                    all.iter()
                        .map(|s| s.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        })
}

/// Deletes snapshot `id` of container `name`: its trees and its record.
pub fn delete(
    target: &Target,
    name: &Name,
    id: &str,
    events: Events<'_>,
) -> miette::Result<Snapshot> {
    let session = Session::open(target, Access::Change, events)?;
    let root = session.store.root();
    let snapshot = find(&snapshots::list(root, name.as_str()), name.as_str(), id)?;
    let mut say = |line: &str| step(events, line);
    snapshots::delete(root, name.as_str(), id, &mut say)?;
    Ok(snapshot)
}

/// Deletes the snapshots of container `name` but the newest `keep`;
/// returns those it deleted, oldest first.
pub fn prune(
    target: &Target,
    name: &Name,
    keep: usize,
    events: Events<'_>,
) -> miette::Result<Vec<Snapshot>> {
    let session = Session::open(target, Access::Change, events)?;
    let root = session.store.root();
    let all = snapshots::list(root, name.as_str());
    let old = &all[..all.len().saturating_sub(keep)];
    let mut say = |line: &str| step(events, line);
    for snapshot in old {
        snapshots::delete(root, name.as_str(), &snapshot.id, &mut say)?;
    }
    Ok(old.to_vec())
}

/// Puts snapshot `id` of container `name` back. The state it replaces is
/// kept as a snapshot first; nothing is lost.
pub fn restore(
    target: &Target,
    name: &Name,
    id: &str,
    events: Events<'_>,
) -> miette::Result<Restored> {
    let mut session = Session::open(target, Access::Change, events)?;
    let expect = generation_of(&session, name)?;
    let root = session.store.root().to_path_buf();
    let name = name.as_str();
    let restored = find(&snapshots::list(&root, name), name, id)?;
    let tree = rootfs::tree(&root, name);
    if !tree.is_dir() {
        return Err(miette!(
            "container {name} has no root file system at {} to restore into",
            tree.display()
        ));
    }
    can_replace_volumes(
        &mut session,
        &expect,
        Some(name),
        &restored.volumes,
        "the snapshot",
    )?;
    let machines = root.join(layout::MACHINES);
    let method = snapshots::method_for(&snapshots::rootfs_in(&root, name, id), &machines);
    check_space(&machines, restored.bytes, method)?;

    let (kept, running) = stopped_for_restore(
        &mut session,
        name,
        &format!("snapshot {id}"),
        events,
        |events, unmount| swap_in(&root, name, &restored, events, unmount),
    )?;
    Ok(Restored {
        restored,
        kept,
        restarted: running,
    })
}

/// Unmounts the overlay root of the container a restore replaces (its
/// mount unit stopped), for [`swap_staged`] to swap in the new upper.
pub(super) type Unmount<'a> = &'a mut dyn FnMut() -> miette::Result<()>;

/// Runs `restore` (of `what`, e.g. "snapshot ID") with container `name`
/// stopped if it runs, and starts it again whatever `restore` gave: what
/// it replaced is kept either way. Also says whether it was running.
/// Starting it mounts an overlay root again (its mount unit).
pub(super) fn stopped_for_restore<T>(
    session: &mut Session,
    name: &str,
    what: &str,
    events: Events<'_>,
    restore: impl FnOnce(Events<'_>, Unmount<'_>) -> miette::Result<T>,
) -> miette::Result<(T, bool)> {
    let root = session.store.root().to_path_buf();
    let running = live(session, name)?.is_some();
    if running {
        perform(
            session,
            Action::StopContainer {
                name: name.to_string(),
                reason: format!("{what} is restored"),
            },
            events,
        )?;
    }
    let result = {
        let mut unmount = || -> miette::Result<()> {
            session.system.unmount_root(&root, name)?;
            Ok(())
        };
        restore(&mut *events, &mut unmount)
    };
    if running {
        perform(
            session,
            Action::StartContainer {
                name: name.to_string(),
                reason: format!("started again after {what} was restored"),
            },
            events,
        )?;
    }
    Ok((result?, running))
}

/// Refuses a restore of `volumes` that do not exist now, or that a
/// running container other than `except` (the one restored, stopped for
/// it) mounts: it would go on writing to the replaced one.
pub(super) fn can_replace_volumes(
    session: &mut Session,
    expect: &Health,
    except: Option<&str>,
    volumes: &[String],
    of: &str,
) -> miette::Result<()> {
    let root = session.store.root().to_path_buf();
    for volume in volumes {
        if volumes::made_by_ctm(&root, volume).is_none() {
            return Err(miette!(
                help = "`ctm apply` makes it; then restore",
                "volume {volume} of {of} does not exist now"
            ));
        }
        let users = expect
            .volumes
            .get(volume)
            .map(|v| v.containers.clone())
            .unwrap_or_default();
        for other in users.iter().filter(|c| Some(c.as_str()) != except) {
            if live(session, other)?.is_some() {
                return Err(miette!(
                    help = format!("stop it first: `ctm stop {other}`"),
                    "volume {volume} is mounted by container {other}, which runs"
                ));
            }
        }
    }
    Ok(())
}

/// Where the replacement of the tree at `at` is staged by a restore:
/// beside it, on its file system, so that the swap is a rename.
pub(super) fn staged(at: &Path) -> PathBuf {
    let file = at.file_name().and_then(|f| f.to_str()).unwrap_or("tree");
    at.with_file_name(format!(".#{file}.ctm-restoring"))
}

/// The trees a restore of container `name` with `volumes` replaces: its
/// root file system first.
pub(super) fn places(root: &Path, name: &str, volumes: &[String]) -> Vec<PathBuf> {
    let mut places = vec![rootfs::tree(root, name)];
    places.extend(volumes.iter().map(|v| volumes::path(root, v)));
    places
}

/// The copies of `snapshot` staged beside their places, the current trees
/// kept as a new snapshot, and the two swapped.
fn swap_in(
    root: &Path,
    name: &str,
    snapshot: &Snapshot,
    events: Events<'_>,
    unmount: Unmount<'_>,
) -> miette::Result<Snapshot> {
    let mut froms = vec![snapshots::rootfs_in(root, name, &snapshot.id)];
    for volume in &snapshot.volumes {
        froms.push(snapshots::volume_in(root, name, &snapshot.id, volume));
    }
    let mut say = |line: &str| step(events, line);
    for (from, to) in froms.iter().zip(places(root, name, &snapshot.volumes)) {
        let at = staged(&to);
        if at.symlink_metadata().is_ok() {
            snapshots::remove_tree(&at, &mut say)?;
        }
        say(&format!("copying {} to {}", from.display(), at.display()));
        // Of the kind of what it replaces: a volume that is a subvolume
        // stays one, and keeps its quota.
        let subvolume = snapshots::is_btrfs_subvolume(&to);
        snapshots::copy_tree(from, &at, subvolume, snapshot.bytes, &mut say)?;
    }
    swap_staged(
        root,
        name,
        &snapshot.volumes,
        &format!("the restore of {}", snapshot.id),
        unmount,
        &mut say,
    )
}

/// The trees staged beside container `name`'s root file system and
/// `volumes` (see [`staged`]) put in their places, each at once; the
/// trees they replace are kept as a new snapshot, recorded as kept by
/// `what`.
///
/// An overlay root (whose tree is a mount point, which cannot be
/// renamed) is kept as its merged view, copied into the new snapshot
/// before anything changes; the staged tree becomes its new upper
/// directory, built beside the old one ([`rootfs::build_overlay`]); the
/// overlay is unmounted (`unmount`) and the two overlay directories
/// swapped at once. Until the swap the old upper is untouched.
pub(super) fn swap_staged(
    root: &Path,
    name: &str,
    volumes: &[String],
    what: &str,
    unmount: Unmount<'_>,
    say: &mut dyn FnMut(&str),
) -> miette::Result<Snapshot> {
    let tree = rootfs::tree(root, name);
    let overlaid = rootfs::overlay(root, name).is_dir();
    // The merged view is what is kept; after a reboot nothing mounted a
    // stopped container's overlay.
    if overlaid && rootfs::mount_overlay(root, name)? {
        say(&format!("mounted the overlay root at {}", tree.display()));
    }
    // 2. The state being replaced is kept, under a record of its own.
    let (bytes, files) = places(root, name, volumes)
        .iter()
        .fold((0, 0), |(b, f), to| {
            let (tb, tf) = rootfs::size(to);
            (b + tb, f + tf)
        });
    let kept = Snapshot {
        container: name.to_string(),
        id: snapshots::new_id(root, name, crate::clock::now_unix()),
        created: crate::clock::now_unix(),
        reason: format!("kept by {what}"),
        frozen: false,
        method: Method::Copy,
        volumes: volumes.to_vec(),
        bytes,
        files,
    };
    let keep_dir = snapshots::dir(root, name, &kept.id);
    crate::fs::create_dirs(&keep_dir.join("volumes")).map_err(|e| miette!("{e}"))?;
    if overlaid {
        let copied = snapshots::copy_tree(
            &tree,
            &snapshots::rootfs_in(root, name, &kept.id),
            false,
            bytes,
            say,
        );
        if let Err(e) = copied {
            snapshots::delete(root, name, &kept.id, say)?;
            return Err(e.into());
        }
    }
    // Recorded before anything moves: `ctm snapshots` lists it as soon as
    // its root file system is in it.
    snapshots::record(root, &kept)?;
    // 3. Each swapped at once; what it replaced goes into the kept
    //    snapshot (a rename where the snapshots are on its file system, a
    //    copy otherwise). Until it is there it is at its staged path.
    if overlaid {
        rootfs::build_overlay(root, name, &staged(&tree), say)?;
        unmount()?;
        rootfs::swap_overlay(root, name, say)?;
    } else {
        let made = rootfs::made_by_ctm(root, name);
        snapshots::exchange(&tree, &staged(&tree))?;
        if let Some(made) = made {
            // The tree is ctm's still: `--prune` and `ctm destroy` know it.
            rootfs::record(root, name, &made.image, made.kind, &tree)?;
        }
        move_into(
            &staged(&tree),
            &snapshots::rootfs_in(root, name, &kept.id),
            say,
        )?;
    }
    for volume in volumes {
        let at = staged(&volumes::path(root, volume));
        volumes::replace(root, volume, &at, say)?;
        move_into(
            &at,
            &snapshots::volume_in(root, name, &kept.id, volume),
            say,
        )?;
    }
    say(&format!(
        "finished {what} of container {name}; what it replaced is snapshot {}",
        kept.id
    ));
    Ok(kept)
}

/// Moves a tree to `to`: a rename, or a copy and delete across file
/// systems.
pub(super) fn move_into(from: &Path, to: &Path, say: &mut dyn FnMut(&str)) -> miette::Result<()> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
            snapshots::copy_tree(from, to, snapshots::is_btrfs_subvolume(from), 0, say)?;
            snapshots::remove_tree(from, say)?;
            Ok(())
        }
        Err(e) => Err(miette!(
            "moving {} to {}: {e}; it stays where it is",
            from.display(),
            to.display()
        )),
    }
}
