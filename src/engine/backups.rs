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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use miette::miette;
use serde::Serialize;

use super::events::Events;
use super::session::{Access, Session, Target};
use super::snapshots::{
    Options, can_replace_volumes, check_space, generation_of, places, snapshot_for, staged, step,
    stopped_for_restore, swap_staged,
};
use crate::backend::archive::{self, ArchiveError, Contents, Listed, Verified};
use crate::backend::snapshots::{self as snaps, Method, Snapshot};
use crate::backend::{rootfs, volumes};
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
    /// Keep only this many archives of the container there (the newest),
    /// deleting older ones after the new one is whole.
    pub keep: Option<usize>,
    /// Stop a running container for the copy rather than freeze it.
    pub stop: bool,
}

/// An archive made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Made {
    pub container: String,
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

/// Deletes archives of `container` in `dir` but the newest `keep`;
/// returns what it deleted.
fn prune(
    dir: &Path,
    container: &str,
    keep: usize,
    events: Events<'_>,
) -> miette::Result<Vec<PathBuf>> {
    let all = archive::list(dir, container);
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
        container: name.as_str(),
        id,
        created: crate::clock::now_unix(),
        image: made_image.as_deref().or(image.as_deref()),
        rootfs: &snaps::rootfs_in(&root, name.as_str(), &snapshot.id),
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
        container: manifest.container.clone(),
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
    let id = archive::new_id(&dir, name.as_str(), crate::clock::now_unix());
    let path = dir.join(archive::file_name(name.as_str(), &id));
    let manifest = archive_to(target, name, &path, &id, options.stop, events)?;
    // Only now that the new archive is whole.
    let pruned = match options.keep {
        Some(keep) => prune(&dir, name.as_str(), keep, events)?,
        None => Vec::new(),
    };
    Ok(made(&manifest, &path, pruned))
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
    let dir = match dir {
        Some(dir) => dir.to_path_buf(),
        None => default_dir(
            Session::open(target, Access::Read, &mut |_| {})?
                .store
                .root(),
        ),
    };
    Ok(archive::list(&dir, name.as_str()))
}

fn verify(path: &Path, events: Events<'_>) -> miette::Result<Verified> {
    step(events, format!("verifying {}", path.display()));
    let mut say = |line: &str| step(events, line);
    let verified = archive::verify(path, &mut say).map_err(archive_error)?;
    step(
        events,
        format!(
            "verified {} members of archive {} of container {}",
            verified.manifest.members.len(),
            verified.manifest.id,
            verified.manifest.container
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

/// Unpacks `verified` into empty trees at `rootfs` and `volumes`; on
/// failure they are deleted again.
fn unpack(
    verified: &Verified,
    rootfs: &Path,
    volumes: &BTreeMap<String, PathBuf>,
    events: Events<'_>,
) -> miette::Result<()> {
    let mut say = |line: &str| step(events, line);
    let unpacked = verified.unpack(rootfs, volumes, &mut say);
    if let Err(e) = unpacked {
        for tree in std::iter::once(rootfs).chain(volumes.values().map(PathBuf::as_path)) {
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
    // Before the lock: reading a large archive takes long, and changes
    // nothing.
    let verified = verify(path, events)?;
    let manifest = &verified.manifest;
    if manifest.container != name.as_str() {
        return Err(miette!(
            help = format!(
                "`ctm restore {0} --from …` restores it into container {0}; `ctm import` makes a new container of it",
                manifest.container
            ),
            "{} is a backup of container {}, not of {name}",
            path.display(),
            manifest.container
        ));
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
    can_replace_volumes(&mut session, &expect, name, &manifest.volumes, "the backup")?;
    let machines = root.join(layout::MACHINES);
    check_space(&machines, manifest.bytes, Method::Copy)?;

    let (kept, restarted) = stopped_for_restore(
        &mut session,
        name,
        &format!("backup {}", manifest.id),
        events,
        |events| {
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
            unpack(&verified, &staged(&tree), &volumes, events)?;
            let mut say = |line: &str| step(events, line);
            swap_staged(
                &root,
                name,
                &manifest.volumes,
                &format!("the restore of backup {}", manifest.id),
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
    let name = match as_name {
        Some(n) => n.to_string(),
        None => manifest.container.clone(),
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
    unpack(&verified, &importing(&tree), &staged_volumes, events)?;
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
        host: renamed(&host, toml, &manifest.container, &name),
        container: name,
        from: manifest.container.clone(),
        id: manifest.id.clone(),
        volumes: manifest.volumes.clone(),
        toml,
        lock: verified.host.get("lock.toml").cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
