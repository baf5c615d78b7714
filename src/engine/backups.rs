//! `ctm backup`, `ctm restore --from`, `ctm export` and `ctm import`:
//! archives of a container (its root file system, its volumes, its part
//! of the host file and its lock entry, and a manifest with the sha256 of
//! every member: `backend/archive.rs`).
//!
//! A backup is made from a snapshot (the container frozen, or stopped,
//! for the copy only: a reflink or btrfs snapshot where the file system
//! offers one), archived while the container runs on, then the snapshot
//! is deleted. Old archives are pruned only after a new one is whole.
//!
//! A restore verifies the whole archive before it changes anything, then
//! unpacks it beside the trees it replaces and swaps them in as a
//! snapshot's restore does: what it replaces is kept as a snapshot.
//!
//! A volume has archives of its own too (`ctm backup --volume`): the
//! containers that mount it are frozen while it is copied, and its restore
//! keeps what it replaces as another archive of the volume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use miette::miette;
use serde::Serialize;

use super::events::Events;
use super::session::{Access, Session, Target};
use super::snapshots::{
    Options, can_replace_volumes, check_space, current_expectations, generation_of, places,
    running_unpaused, snapshot_for, staged, step, stopped_for_restore, swap_staged, while_frozen,
};
use crate::backend::archive::{self, ArchiveError, Contents, Listed, Subject, Verified};
use crate::backend::snapshots::{self as snaps, Method, Snapshot};
use crate::backend::{rootfs, volumes};
use crate::compile::health::Health;
use crate::config::{self, Format, Source};
use crate::layout;
use crate::lock::Lock;
use crate::model::Name;

/// How to make a backup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupOptions {
    /// The directory the archive goes into; `var/lib/ctm/backups` under
    /// the root when not given.
    pub to: Option<PathBuf>,
    /// Keep only this many archives of the container (or volume) there
    /// (the newest), deleting older ones after the new one is whole.
    pub keep: Option<usize>,
    /// Stop a running container for the copy rather than freeze it (a
    /// container's backup only).
    pub stop: bool,
}

/// An archive made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Made {
    /// `"container": NAME` or `"volume": NAME`.
    #[serde(flatten)]
    pub subject: Subject,
    pub id: String,
    pub path: PathBuf,
    /// Its size on disk.
    pub bytes: u64,
    /// The bytes of file data in it, uncompressed, and its members.
    pub data: u64,
    pub members: usize,
    pub volumes: Vec<String>,
    /// Older archives deleted by `keep`.
    pub pruned: Vec<PathBuf>,
}

/// Where archives go when no directory is given.
pub fn default_dir(root: &Path) -> PathBuf {
    root.join(layout::BACKUPS)
}

fn archive_error(e: ArchiveError) -> miette::Report {
    match e {
        ArchiveError::Refused { .. } => miette!(
            help = "nothing was changed; an archive is verified whole before it is used",
            "{e}"
        ),
        other => miette!("{other}"),
    }
}

/// The text of the host file's nodes a container needs (itself, its
/// image, its template and its volumes), in the file's order, and the
/// name of its image.
fn host_part(text: &str, format: Format, name: &str) -> (String, Option<String>) {
    let (doc, _) = config::parse(&Source::new("host", text, format));
    let first = |node: &config::Node| -> String {
        node.arg(0)
            .and_then(|v| v.value.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let Some(container) = doc.nodes_named("container").find(|n| first(n) == name) else {
        return (String::new(), None);
    };
    let child = |key: &str| container.child(key).map(first);
    let image = child("image");
    let template = child("from");
    let mounted: Vec<String> = container.children_named("volume").map(first).collect();
    let mut nodes: Vec<&config::Node> = doc
        .nodes
        .iter()
        .filter(|n| match n.name.value.as_str() {
            "container" => first(n) == name,
            "image" => image.as_deref() == Some(first(n).as_str()),
            "template" => template.as_deref() == Some(first(n).as_str()),
            "volume" => mounted.contains(&first(n)),
            _ => false,
        })
        .collect();
    nodes.sort_by_key(|n| n.span.offset());
    let parts: Vec<&str> = nodes
        .iter()
        .filter_map(|n| text.get(n.span.offset()..node_end(text, format, n)))
        .collect();
    (parts.join("\n\n") + "\n", image)
}

/// Where `node`'s text ends, its children included: a node's own span
/// ends with its arguments, so the end is its last child's, and in KDL
/// the `}` that closes its block.
fn node_end(text: &str, format: Format, node: &config::Node) -> usize {
    let own = node.span.offset() + node.span.len();
    let Some(last) = node.children.iter().max_by_key(|c| c.span.offset()) else {
        return own;
    };
    let end = node_end(text, format, last).max(own);
    if format == Format::Toml {
        return end;
    }
    let rest = text.get(end..).unwrap_or_default();
    let skipped = rest.len() - rest.trim_start_matches([' ', '\t', '\n', '\r', ';']).len();
    match rest[skipped..].starts_with('}') {
        true => end + skipped + 1,
        false => end,
    }
}

/// The lock entries of container `name` and its image.
fn lock_part(text: &str, name: &str, image: Option<&str>) -> Option<String> {
    let lock = Lock::parse(text).ok()?;
    let mut part = Lock::empty();
    part.containers = lock
        .containers
        .into_iter()
        .filter(|(c, _)| c == name)
        .collect();
    part.images = lock
        .images
        .into_iter()
        .filter(|(i, _)| Some(i.as_str()) == image)
        .collect();
    (!part.containers.is_empty() || !part.images.is_empty()).then(|| part.render())
}

/// Deletes archives of `subject` in `dir` but the newest `keep`;
/// returns what it deleted.
fn prune(
    dir: &Path,
    subject: &Subject,
    keep: usize,
    events: Events<'_>,
) -> miette::Result<Vec<PathBuf>> {
    let all = archive::list(dir, subject);
    let mut pruned = Vec::new();
    for old in all.iter().take(all.len().saturating_sub(keep)) {
        crate::fs::remove(&old.path).map_err(|e| miette!("{e}"))?;
        step(
            events,
            format!("deleted the older archive {}", old.path.display()),
        );
        pruned.push(old.path.clone());
    }
    Ok(pruned)
}

/// Writes an archive of container `name` to `to` (a file that must not
/// exist), from a snapshot taken for it.
fn archive_to(
    target: &Target,
    name: &Name,
    to: &Path,
    id: &str,
    stop: bool,
    events: Events<'_>,
) -> miette::Result<archive::Manifest> {
    let (root, host, image) = {
        let session = Session::open(target, Access::Read, events)?;
        generation_of(&session, name)?;
        let current = session.store.current()?.unwrap_or_default();
        let (source, text, lock) = session.store.source(current)?;
        let format = Format::from_path(Path::new(&source));
        let (part, image) = host_part(&text, format, name.as_str());
        let lock = lock.and_then(|l| lock_part(&l, name.as_str(), image.as_deref()));
        let file = if format == Format::Toml {
            "host.toml"
        } else {
            "host.kdl"
        };
        let mut host = vec![(file, part)];
        if let Some(lock) = lock {
            host.push(("lock.toml", lock));
        }
        (session.store.root().to_path_buf(), host, image)
    };
    if to.symlink_metadata().is_ok() {
        return Err(miette!("{} exists; ctm never writes over it", to.display()));
    }
    let options = Options {
        volumes: true,
        stop,
    };
    let snapshot = snapshot_for(target, name, options, "taken for a backup", events)?;
    let made_image = rootfs::made_by_ctm(&root, name.as_str()).map(|m| m.image);
    let contents = Contents {
        subject: Subject::Container(name.to_string()),
        id,
        created: crate::clock::now_unix(),
        image: made_image.as_deref().or(image.as_deref()),
        rootfs: Some(&snaps::rootfs_in(&root, name.as_str(), &snapshot.id)),
        volumes: snapshot
            .volumes
            .iter()
            .map(|v| {
                (
                    v.clone(),
                    snaps::volume_in(&root, name.as_str(), &snapshot.id, v),
                )
            })
            .collect(),
        host,
        total: snapshot.bytes,
    };
    step(
        events,
        format!(
            "archiving {:.1} MB in {} files to {}",
            snapshot.bytes as f64 / 1e6,
            snapshot.files,
            to.display()
        ),
    );
    let written = {
        let mut say = |line: &str| step(events, line);
        archive::write(to, &contents, &mut say)
    };
    // The snapshot was the archive's source only.
    let mut say = |line: &str| step(events, line);
    let deleted = snaps::delete(&root, name.as_str(), &snapshot.id, &mut say);
    let manifest = written.map_err(archive_error)?;
    deleted?;
    Ok(manifest)
}

fn made(manifest: &archive::Manifest, path: &Path, pruned: Vec<PathBuf>) -> Made {
    Made {
        subject: manifest.subject.clone(),
        id: manifest.id.clone(),
        path: path.to_path_buf(),
        bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        data: manifest.bytes,
        members: manifest.members.len(),
        volumes: manifest.volumes.clone(),
        pruned,
    }
}

/// `ctm backup NAME`: an archive of container `name` in the directory of
/// `options`, then the retention of `options.keep`.
pub fn backup(
    target: &Target,
    name: &Name,
    options: &BackupOptions,
    events: Events<'_>,
) -> miette::Result<Made> {
    let subject = Subject::Container(name.to_string());
    let (dir, id, path) = new_archive(target, &subject, options, events)?;
    let manifest = archive_to(target, name, &path, &id, options.stop, events)?;
    kept_to(&dir, &subject, &manifest, &path, options, events)
}

/// The directory, id and path of a new archive of `subject` by
/// `options`, the directory made.
fn new_archive(
    target: &Target,
    subject: &Subject,
    options: &BackupOptions,
    events: Events<'_>,
) -> miette::Result<(PathBuf, String, PathBuf)> {
    let dir = match &options.to {
        Some(dir) => dir.clone(),
        None => default_dir(Session::open(target, Access::Read, events)?.store.root()),
    };
    if options.keep == Some(0) {
        return Err(miette!(
            "--keep 0 would delete the backup just made; keep 1 or more"
        ));
    }
    crate::fs::create_dirs(&dir).map_err(|e| miette!("{e}"))?;
    let id = archive::new_id(&dir, subject, crate::clock::now_unix());
    let path = dir.join(archive::file_name(subject, &id));
    Ok((dir, id, path))
}

/// The retention of `options.keep` in `dir`, once the archive at `path`
/// is whole; what was made.
fn kept_to(
    dir: &Path,
    subject: &Subject,
    manifest: &archive::Manifest,
    path: &Path,
    options: &BackupOptions,
    events: Events<'_>,
) -> miette::Result<Made> {
    let pruned = match options.keep {
        Some(keep) => prune(dir, subject, keep, events)?,
        None => Vec::new(),
    };
    Ok(made(manifest, path, pruned))
}

/// `ctm export NAME -o FILE`: the archive of a backup, at `to`.
pub fn export(
    target: &Target,
    name: &Name,
    to: &Path,
    stop: bool,
    events: Events<'_>,
) -> miette::Result<Made> {
    let id = archive::id_at(crate::clock::now_unix());
    let manifest = archive_to(target, name, to, &id, stop, events)?;
    Ok(made(&manifest, to, Vec::new()))
}

/// The archives of container `name` in `dir` (the default directory when
/// `None`), oldest first.
pub fn list(target: &Target, name: &Name, dir: Option<&Path>) -> miette::Result<Vec<Listed>> {
    list_of(target, &Subject::Container(name.to_string()), dir)
}

/// The archives of volume `name` in `dir` (the default directory when
/// `None`), oldest first.
pub fn list_volume(
    target: &Target,
    name: &Name,
    dir: Option<&Path>,
) -> miette::Result<Vec<Listed>> {
    list_of(target, &Subject::Volume(name.to_string()), dir)
}

/// Every archive of container `name` ctm knows where to find: in the
/// default directory and in the directory of its `backup` block in the
/// current generation, oldest first. An archive of either is listed once.
pub fn archives(target: &Target, name: &Name) -> miette::Result<Vec<Listed>> {
    let session = Session::open(target, Access::ReadShared, &mut |_| {})?;
    let (_, expect) = current_expectations(&session)?;
    let root = session.store.root();
    let block = expect
        .backups
        .get(name.as_str())
        .map(|b| crate::layout::under_root(root, &b.to));
    Ok(listed_in(
        root,
        block.as_deref(),
        &Subject::Container(name.to_string()),
    ))
}

/// The archives of `subject` in the default directory under `root` and in
/// `block` (a `backup` block's directory), oldest first, each once.
pub(super) fn listed_in(root: &Path, block: Option<&Path>, subject: &Subject) -> Vec<Listed> {
    let default = default_dir(root);
    let mut all = archive::list(&default, subject);
    if let Some(block) = block.filter(|b| *b != default) {
        all.extend(archive::list(block, subject));
    }
    all.sort_by(|a, b| (a.modified, &a.id, &a.path).cmp(&(b.modified, &b.id, &b.path)));
    all.dedup_by(|a, b| a.path == b.path);
    all
}

fn list_of(target: &Target, subject: &Subject, dir: Option<&Path>) -> miette::Result<Vec<Listed>> {
    let dir = match dir {
        Some(dir) => dir.to_path_buf(),
        None => default_dir(
            Session::open(target, Access::Read, &mut |_| {})?
                .store
                .root(),
        ),
    };
    Ok(archive::list(&dir, subject))
}

fn verify(path: &Path, events: Events<'_>) -> miette::Result<Verified> {
    step(events, format!("verifying {}", path.display()));
    let mut say = |line: &str| step(events, line);
    let verified = archive::verify(path, &mut say).map_err(archive_error)?;
    step(
        events,
        format!(
            "verified {} members of archive {} of {}",
            verified.manifest.members.len(),
            verified.manifest.id,
            verified.manifest.subject
        ),
    );
    Ok(verified)
}

/// Makes an empty tree at `at` for an archive to be unpacked into: a
/// btrfs subvolume when `subvolume` and `at` is on btrfs.
fn empty_tree(at: &Path, subvolume: bool, say: &mut dyn FnMut(&str)) -> miette::Result<()> {
    if at.symlink_metadata().is_ok() {
        snaps::remove_tree(at, say)?;
    }
    snaps::make_tree(at, subvolume)?;
    Ok(())
}

/// Unpacks `verified` into empty trees at `rootfs` (none for a volume's
/// archive) and `volumes`; on failure they are deleted again.
fn unpack(
    verified: &Verified,
    rootfs: Option<&Path>,
    volumes: &BTreeMap<String, PathBuf>,
    events: Events<'_>,
) -> miette::Result<()> {
    let mut say = |line: &str| step(events, line);
    let unpacked = verified.unpack(rootfs, volumes, &mut say);
    if let Err(e) = unpacked {
        for tree in rootfs
            .into_iter()
            .chain(volumes.values().map(PathBuf::as_path))
        {
            snaps::remove_tree(tree, &mut say)?;
        }
        return Err(archive_error(e));
    }
    Ok(())
}

/// What a restore from an archive did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredArchive {
    pub archive: PathBuf,
    pub id: String,
    /// The state it replaced, kept as a snapshot.
    pub kept: Snapshot,
    pub restarted: bool,
}

/// `ctm restore NAME --from ARCHIVE`: the archive verified whole, then its
/// trees put in place of container `name`'s; what they replace is kept as
/// a snapshot.
pub fn restore(
    target: &Target,
    name: &Name,
    path: &Path,
    events: Events<'_>,
) -> miette::Result<RestoredArchive> {
    restore_expecting(target, name, path, None, events)
}

/// [`restore`], refused after the archive is verified if it holds other
/// volumes than `volumes` (those a preview of the restore showed).
pub(super) fn restore_expecting(
    target: &Target,
    name: &Name,
    path: &Path,
    volumes: Option<&[String]>,
    events: Events<'_>,
) -> miette::Result<RestoredArchive> {
    // Before the lock: reading a large archive takes long, and changes
    // nothing.
    let verified = verify(path, events)?;
    let manifest = &verified.manifest;
    let set = |v: &[String]| v.iter().cloned().collect::<std::collections::BTreeSet<_>>();
    if let Some(shown) = volumes
        && set(shown) != set(&manifest.volumes)
    {
        return Err(miette!(
            help = format!(
                "`ctm restore {name} --from {}` restores it with the volumes it holds",
                path.display()
            ),
            "{} holds the volumes [{}], not the [{}] the restore showed; nothing was changed",
            path.display(),
            manifest.volumes.join(", "),
            shown.join(", ")
        ));
    }
    match &manifest.subject {
        Subject::Container(c) if c == name.as_str() => {}
        Subject::Container(c) => {
            return Err(miette!(
                help = format!(
                    "`ctm restore {c} --from …` restores it into container {c}; `ctm import` makes a new container of it"
                ),
                "{} is a backup of container {c}, not of {name}",
                path.display(),
            ));
        }
        Subject::Volume(v) => return Err(not_a_containers(path, v)),
    }
    let mut session = Session::open(target, Access::Change, events)?;
    let expect = generation_of(&session, name)?;
    let root = session.store.root().to_path_buf();
    let name = name.as_str();
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
        &manifest.volumes,
        "the backup",
    )?;
    let machines = root.join(layout::MACHINES);
    check_space(&machines, manifest.bytes, Method::Copy)?;

    let (kept, restarted) = stopped_for_restore(
        &mut session,
        name,
        &format!("backup {}", manifest.id),
        events,
        |events, unmount| {
            let mut say = |line: &str| step(events, line);
            let trees = places(&root, name, &manifest.volumes);
            for at in &trees {
                // Of the kind of what it replaces (a subvolume keeps its quota).
                empty_tree(&staged(at), snaps::is_btrfs_subvolume(at), &mut say)?;
            }
            let volumes: BTreeMap<String, PathBuf> = manifest
                .volumes
                .iter()
                .map(|v| (v.clone(), staged(&volumes::path(&root, v))))
                .collect();
            unpack(&verified, Some(&staged(&tree)), &volumes, events)?;
            let mut say = |line: &str| step(events, line);
            swap_staged(
                &root,
                name,
                &manifest.volumes,
                &format!("the restore of backup {}", manifest.id),
                unmount,
                &mut say,
            )
        },
    )?;
    Ok(RestoredArchive {
        archive: path.to_path_buf(),
        id: manifest.id.clone(),
        kept,
        restarted,
    })
}

/// The refusal of a volume's archive where a container's is needed.
fn not_a_containers(path: &Path, volume: &str) -> miette::Report {
    miette!(
        help = format!(
            "`ctm restore --volume {volume} --from {}` puts it back",
            path.display()
        ),
        "{} is a backup of volume {volume} alone, not of a container",
        path.display()
    )
}

// ---- a volume alone ------------------------------------------------------------

/// The current generation's expectations, refusing a volume that is not
/// in it or that is not there, made by ctm.
fn generation_with_volume(session: &Session, volume: &Name) -> miette::Result<Health> {
    let (current, expect) = current_expectations(session)?;
    if !expect.volumes.contains_key(volume.as_str()) {
        let known: Vec<&str> = expect.volumes.keys().map(String::as_str).collect();
        return Err(miette!(
            help = match current {
                None => "ctm backs up the volumes it applied".to_string(),
                Some(n) if known.is_empty() => format!("generation {n} has no volumes"),
                Some(n) => format!("the volumes of generation {n}: {}", known.join(", ")),
            },
            "volume {volume} is not managed by ctm: {}",
            match current {
                Some(n) => format!("generation {n} has no volume {volume}"),
                None => "nothing has been applied yet".into(),
            }
        ));
    }
    if volumes::made_by_ctm(session.store.root(), volume.as_str()).is_none() {
        return Err(miette!(
            help = "`ctm apply` makes it",
            "volume {volume} does not exist (ctm did not make the directory at {})",
            volumes::path(session.store.root(), volume.as_str()).display()
        ));
    }
    Ok(expect)
}

/// Where a volume is copied to be archived: beside it, on its file
/// system (a btrfs snapshot or reflinks share its data), under a name no
/// volume has (none starts with a dot).
fn scratch(root: &Path, volume: &str) -> PathBuf {
    volumes::path(root, volume).with_file_name(format!(".#{volume}.ctm-backing-up"))
}

/// Writes an archive of the tree at `tree`, volume `volume`'s, to `to`.
fn archive_volume(
    volume: &str,
    tree: &Path,
    to: &Path,
    id: &str,
    events: Events<'_>,
) -> miette::Result<archive::Manifest> {
    let (bytes, files) = rootfs::size(tree);
    step(
        events,
        format!(
            "archiving {:.1} MB in {files} files to {}",
            bytes as f64 / 1e6,
            to.display()
        ),
    );
    let contents = Contents {
        subject: Subject::Volume(volume.to_string()),
        id,
        created: crate::clock::now_unix(),
        image: None,
        rootfs: None,
        volumes: vec![(volume.to_string(), tree.to_path_buf())],
        host: Vec::new(),
        total: bytes,
    };
    let mut say = |line: &str| step(events, line);
    archive::write(to, &contents, &mut say).map_err(archive_error)
}

/// `ctm backup --volume NAME`: an archive of volume `volume` alone in the
/// directory of `options`, then the retention of `options.keep`. Every
/// running container that mounts it is frozen while it is copied beside
/// itself, and thawed whatever the copy gives; the copy is archived while
/// they run on, then deleted.
pub fn backup_volume(
    target: &Target,
    volume: &Name,
    options: &BackupOptions,
    events: Events<'_>,
) -> miette::Result<Made> {
    if options.stop {
        return Err(miette!(
            help = "a volume's backup freezes the containers that mount it for the copy only",
            "--stop is for a container's backup"
        ));
    }
    let subject = Subject::Volume(volume.to_string());
    let (dir, id, path) = new_archive(target, &subject, options, events)?;
    let name = volume.as_str();
    let copy = {
        let mut session = Session::open(target, Access::Change, events)?;
        let expect = generation_with_volume(&session, volume)?;
        let root = session.store.root().to_path_buf();
        let tree = volumes::path(&root, name);
        let copy = scratch(&root, name);
        if copy.symlink_metadata().is_ok() {
            // Left by a backup that died: ctm alone makes this name.
            let mut say = |line: &str| step(events, line);
            snaps::remove_tree(&copy, &mut say)?;
        }
        let (bytes, files) = rootfs::size(&tree);
        check_space(
            tree.parent().unwrap_or(&root),
            bytes,
            snaps::method_for(&tree, &copy),
        )?;
        let mounting = expect
            .volumes
            .get(name)
            .map(|v| v.containers.clone())
            .unwrap_or_default();
        let to_freeze = running_unpaused(&mut session, mounting.iter().map(String::as_str))?;
        let (copied, thawed) = while_frozen(&mut session, &to_freeze, events, |events| {
            step(
                events,
                format!(
                    "copying volume {name}, {:.1} MB in {files} files, to {}",
                    bytes as f64 / 1e6,
                    copy.display()
                ),
            );
            let mut say = |line: &str| step(events, line);
            Ok(snaps::copy_tree(&tree, &copy, false, bytes, &mut say)?)
        })?;
        if let Err(e) = copied {
            thawed?;
            return Err(e);
        }
        thawed?;
        copy
    };
    let written = archive_volume(name, &copy, &path, &id, events);
    // The copy was the archive's source only.
    let mut say = |line: &str| step(events, line);
    let deleted = snaps::remove_tree(&copy, &mut say);
    let manifest = written?;
    deleted?;
    // Only now that the new archive is whole.
    kept_to(&dir, &subject, &manifest, &path, options, events)
}

/// What a restore of a volume from an archive did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoredVolume {
    pub archive: PathBuf,
    pub id: String,
    /// The state it replaced, kept as a new archive of the volume beside
    /// the one restored.
    pub kept: Made,
}

/// `ctm restore --volume NAME --from ARCHIVE`: the archive verified whole,
/// then, while no container that mounts the volume runs, the volume as it
/// is kept as a new archive in the archive's directory, the archive
/// unpacked beside the volume and swapped in at once. On a failure
/// nothing changes.
pub fn restore_volume(
    target: &Target,
    volume: &Name,
    path: &Path,
    events: Events<'_>,
) -> miette::Result<RestoredVolume> {
    // Before the lock: reading a large archive takes long, and changes
    // nothing.
    let verified = verify(path, events)?;
    let manifest = &verified.manifest;
    let name = volume.as_str();
    match &manifest.subject {
        Subject::Volume(v) if v == name => {}
        Subject::Volume(v) => {
            return Err(miette!(
                help = format!("`ctm restore --volume {v} --from …` restores it into volume {v}"),
                "{} is a backup of volume {v}, not of {name}",
                path.display()
            ));
        }
        Subject::Container(c) => {
            return Err(miette!(
                help = format!(
                    "`ctm restore {c} --from {}` restores the container with its volumes",
                    path.display()
                ),
                "{} is a backup of container {c}, not of volume {name}",
                path.display()
            ));
        }
    }
    let mut session = Session::open(target, Access::Change, events)?;
    let expect = generation_with_volume(&session, volume)?;
    can_replace_volumes(
        &mut session,
        &expect,
        None,
        std::slice::from_ref(&name.to_string()),
        "the backup",
    )?;
    let root = session.store.root().to_path_buf();
    let tree = volumes::path(&root, name);
    let dir = path.parent().unwrap_or(Path::new("."));
    check_volume_restore_space(name, &tree, manifest.bytes, dir, rootfs::size(&tree).0)?;

    // 1. What is replaced is kept first, as an archive like any other: a
    //    restore loses nothing, and the kept state is listed and pruned
    //    with the rest. No container that mounts the volume runs, and the
    //    lock is held: it does not change while it is archived.
    let subject = Subject::Volume(name.to_string());
    let kept_id = archive::new_id(dir, &subject, crate::clock::now_unix());
    let kept_path = dir.join(archive::file_name(&subject, &kept_id));
    step(
        events,
        format!("keeping volume {name} as it is in {}", kept_path.display()),
    );
    let kept = archive_volume(name, &tree, &kept_path, &kept_id, events)?;

    // 2. Unpacked beside the volume, of its kind (a subvolume keeps its
    //    quota), then swapped in at once.
    let mut say = |line: &str| step(events, line);
    let at = staged(&tree);
    empty_tree(&at, snaps::is_btrfs_subvolume(&tree), &mut say)?;
    let places = BTreeMap::from([(name.to_string(), at.clone())]);
    unpack(&verified, None, &places, events)?;
    let mut say = |line: &str| step(events, line);
    let replaced = volumes::replace(&root, name, &at, &mut say);
    // Either the unpacked tree, not put in place, or what it replaced,
    // which is in the kept archive.
    let removed = snaps::remove_tree(&at, &mut say);
    replaced?;
    removed?;
    step(
        events,
        format!(
            "restored volume {name} from backup {}; what it replaced is {}",
            manifest.id,
            kept_path.display()
        ),
    );
    Ok(RestoredVolume {
        archive: path.to_path_buf(),
        id: manifest.id.clone(),
        kept: made(&kept, &kept_path, Vec::new()),
    })
}

/// Refuses a restore of volume `volume` (at `tree`) that cannot fit,
/// before anything is written: the archive's `unpacked` bytes go beside
/// the volume, and the volume as it is (`current` bytes, at most that
/// much compressed) is kept as an archive in `dir`. Where both are on one
/// file system, it must take both.
fn check_volume_restore_space(
    volume: &str,
    tree: &Path,
    unpacked: u64,
    dir: &Path,
    current: u64,
) -> miette::Result<()> {
    let beside = tree.parent().unwrap_or(tree);
    let free_beside = snaps::free_bytes(beside)?;
    let same = device(beside).is_some() && device(beside) == device(dir);
    let mut needs = vec![(
        beside,
        unpacked + if same { current } else { 0 },
        free_beside,
    )];
    if !same {
        needs.push((dir, current, snaps::free_bytes(dir)?));
    }
    for (at, needed, free) in needs {
        if let Some(refused) = volume_space_refusal(volume, at, needed, free, unpacked, current) {
            return Err(refused);
        }
    }
    Ok(())
}

/// The device of the nearest directory at or above `path`.
fn device(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    path.ancestors()
        .find_map(|p| std::fs::metadata(p).ok().filter(std::fs::Metadata::is_dir))
        .map(|m| m.dev())
}

/// The refusal of a volume's restore that needs `needed` bytes at `at`,
/// where `free` are free; `None` when it fits.
fn volume_space_refusal(
    volume: &str,
    at: &Path,
    needed: u64,
    free: u64,
    unpacked: u64,
    current: u64,
) -> Option<miette::Report> {
    if needed <= free {
        return None;
    }
    let mb = |bytes: u64| format!("{:.1} MB", bytes as f64 / 1e6);
    Some(miette!(
        help = format!(
            "restoring volume {volume} needs {} at {} ({} unpacked from the backup beside the \
             volume, and up to {} to keep the volume as it is as an archive first), and {} \
             are free there; nothing was changed: free some space there (older archives of \
             the volume: `ctm backups --volume {volume}`) and restore again",
            mb(needed),
            at.display(),
            mb(unpacked),
            mb(current),
            mb(free)
        ),
        "not enough space to restore volume {volume}: it needs {}, and {} are free at {}",
        mb(needed),
        mb(free),
        at.display()
    ))
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Imported {
    pub container: String,
    /// The backup's own container, when imported under another name.
    pub from: String,
    pub id: String,
    pub volumes: Vec<String>,
    /// The host file's part to add (renamed with `--as`), in its syntax.
    pub host: String,
    pub toml: bool,
    /// The lock entries it had.
    pub lock: Option<String>,
}

/// `host`'s container node `from` called `to` instead.
fn renamed(host: &str, toml: bool, from: &str, to: &str) -> String {
    let format = if toml { Format::Toml } else { Format::Kdl };
    let (doc, _) = config::parse(&Source::new("host", host, format));
    let arg = doc
        .nodes_named("container")
        .filter_map(|n| n.arg(0))
        .find(|a| a.value.as_str() == Some(from));
    match arg {
        Some(arg) => {
            let (start, end) = (arg.span.offset(), arg.span.offset() + arg.span.len());
            // Names are plain (letters, digits, `-`): quoted as they are.
            let quoted = if toml {
                to.to_string()
            } else {
                format!("\"{to}\"")
            };
            format!("{}{quoted}{}", &host[..start], &host[end..])
        }
        None => host.to_string(),
    }
}

/// `ctm import FILE [--as NAME]`: a container's archive (`ctm export`,
/// `ctm backup`) put in place on this host as a new container's root file
/// system and volumes, recorded as ctm's. Nothing that exists is written
/// over; the host file is the user's, so its part is returned to add.
pub fn import(
    target: &Target,
    path: &Path,
    as_name: Option<&Name>,
    events: Events<'_>,
) -> miette::Result<Imported> {
    let verified = verify(path, events)?;
    let manifest = &verified.manifest;
    let container = match &manifest.subject {
        Subject::Container(c) => c.clone(),
        Subject::Volume(v) => return Err(not_a_containers(path, v)),
    };
    let name = match as_name {
        Some(n) => n.to_string(),
        None => container.clone(),
    };
    let session = Session::open(target, Access::Change, events)?;
    let root = session.store.root().to_path_buf();
    let tree = rootfs::tree(&root, &name);
    let mut there: Vec<String> = Vec::new();
    if tree.symlink_metadata().is_ok() {
        there.push(format!(
            "container {name}'s root file system at {}",
            tree.display()
        ));
    }
    for volume in &manifest.volumes {
        let at = volumes::path(&root, volume);
        if at.symlink_metadata().is_ok() {
            there.push(format!("volume {volume} at {}", at.display()));
        }
    }
    if !there.is_empty() {
        return Err(miette!(
            help = "ctm import never writes over anything: import under another name (--as NAME), or move what is there away",
            "{} exists already",
            there.join(", and ")
        ));
    }
    let importing = |at: &Path| -> PathBuf {
        let file = at.file_name().and_then(|f| f.to_str()).unwrap_or("tree");
        at.with_file_name(format!(".#{file}.ctm-importing"))
    };
    let mut say = |line: &str| step(events, line);
    empty_tree(&importing(&tree), true, &mut say)?;
    let mut staged_volumes = BTreeMap::new();
    for volume in &manifest.volumes {
        let at = importing(&volumes::path(&root, volume));
        empty_tree(&at, true, &mut say)?;
        staged_volumes.insert(volume.clone(), at);
    }
    unpack(&verified, Some(&importing(&tree)), &staged_volumes, events)?;
    // Recorded before the rename, as a tree ctm makes is.
    let image = manifest.image.clone().unwrap_or_else(|| "imported".into());
    // Unpacked from the archive file by file: a copy, sharing nothing.
    rootfs::record(
        &root,
        &name,
        &image,
        Some(crate::model::RootMode::Copy),
        &importing(&tree),
    )?;
    nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &importing(&tree),
        nix::fcntl::AT_FDCWD,
        &tree,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(|e| miette!("putting {} in place: {e}", tree.display()))?;
    for (volume, at) in &staged_volumes {
        volumes::adopt(&root, volume, at)?;
    }
    step(
        events,
        format!(
            "imported container {name} ({} volumes) from {}",
            manifest.volumes.len(),
            path.display()
        ),
    );
    let toml = verified.host.contains_key("host.toml");
    let host = verified
        .host
        .get("host.kdl")
        .or(verified.host.get("host.toml"))
        .cloned()
        .unwrap_or_default();
    Ok(Imported {
        host: renamed(&host, toml, &container, &name),
        container: name,
        from: container,
        id: manifest.id.clone(),
        volumes: manifest.volumes.clone(),
        toml,
        lock: verified.host.get("lock.toml").cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_restore_that_cannot_fit_names_the_volume_the_space_needed_and_free() {
        let at = Path::new("/var/lib/ctm/volumes");
        assert!(volume_space_refusal("data", at, 5_000_000, 5_000_000, 3, 4).is_none());
        let refused =
            volume_space_refusal("data", at, 12_300_000, 5_000_000, 11_000_000, 1_300_000)
                .expect("refused");
        assert_eq!(
            refused.to_string(),
            "not enough space to restore volume data: it needs 12.3 MB, and 5.0 MB are free at \
             /var/lib/ctm/volumes"
        );
        let help = refused.help().map(|h| h.to_string()).unwrap_or_default();
        assert_eq!(
            help,
            "restoring volume data needs 12.3 MB at /var/lib/ctm/volumes (11.0 MB unpacked from \
             the backup beside the volume, and up to 1.3 MB to keep the volume as it is as an \
             archive first), and 5.0 MB are free there; nothing was changed: free some space \
             there (older archives of the volume: `ctm backups --volume data`) and restore again"
        );
    }

    const HOST: &str = r#"network "lan" {
    bridge "br0"
}
image "guest" {
    directory "/srv/images/guest"
}
volume "data" {
    quota "8M"
}
volume "other"
container "web" {
    image "guest"
    volume "data" "/srv/data"
    forward "tcp" host=8080 container=80 { loopback #true; }
}
container "db" {
    image "guest"
}
"#;

    #[test]
    fn a_containers_part_of_the_host_file_is_its_nodes_whole() {
        let (part, image) = host_part(HOST, Format::Kdl, "web");
        assert_eq!(image.as_deref(), Some("guest"));
        assert_eq!(
            part,
            "image \"guest\" {\n    directory \"/srv/images/guest\"\n}\n\n\
             volume \"data\" {\n    quota \"8M\"\n}\n\n\
             container \"web\" {\n    image \"guest\"\n    volume \"data\" \"/srv/data\"\n    \
             forward \"tcp\" host=8080 container=80 { loopback #true; }\n}\n"
        );
        assert_eq!(
            renamed(&part, false, "web", "web2")
                .matches("container \"web2\"")
                .count(),
            1
        );
    }
}
