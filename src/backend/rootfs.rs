//! Which container root file systems ctm made, and deleting them.
//!
//! A tree under `/var/lib/machines` may be the user's own (a container
//! ctm only configures); ctm deletes only the trees it made, or the one a
//! user names in `ctm destroy`. When [`super::provision`] makes a tree it
//! first records it here: `var/lib/ctm/rootfs/NAME.json`, with the
//! tree's inode, so that a tree someone later puts at the same path is not
//! taken for ctm's.
//!
//! Deleting is two steps, so that it can sit inside an apply that may
//! still roll back: [`set_aside`] renames the tree to
//! `/var/lib/machines/.#NAME.ctm-removed` (atomic, undone by [`put_back`]),
//! and [`purge`], once the apply is committed, deletes what was set
//! aside. machined does not list names that start with `.#` (its own
//! temporary files), and no machine name starts with a dot, so a set-aside
//! tree can be neither started nor mistaken for a container.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Progress, SystemError};
use super::{btrfs, exec};
use crate::fs;
use crate::model::RootMode;
use crate::plan::RootsState;

use crate::layout::MACHINES;
use crate::layout::ROOTFS_RECORDS as RECORDS;
const SET_ASIDE_PREFIX: &str = ".#";
const SET_ASIDE_SUFFIX: &str = ".ctm-removed";
/// Deleting a large tree takes long; a hung file system must not hang ctm.
const PURGE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// ctm's record of a root file system it made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Made {
    pub image: String,
    /// How the tree was made from the image (`snapshot`, `reflink`,
    /// `copy`); absent in records of older ctm, which copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<crate::model::RootMode>,
    /// The tree's inode: a rename keeps it, a new tree has another.
    pub inode: u64,
    /// When it was made (Unix seconds).
    pub created: u64,
}

fn error(what: impl Into<String>, why: impl std::fmt::Display) -> SystemError {
    SystemError {
        what: what.into(),
        why: why.to_string(),
    }
}

pub fn tree(root: &Path, name: &str) -> PathBuf {
    root.join(MACHINES).join(name)
}

fn set_aside_path(root: &Path, name: &str) -> PathBuf {
    root.join(MACHINES)
        .join(format!("{SET_ASIDE_PREFIX}{name}{SET_ASIDE_SUFFIX}"))
}

fn record_path(root: &Path, name: &str) -> PathBuf {
    root.join(RECORDS).join(format!("{name}.json"))
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| m.ino())
}

/// Records that ctm made `made_at` (a directory about to be renamed to
/// container `name`'s tree). Written before the rename: a crash between
/// the two leaves a record without its tree, which is ignored.
pub fn record(
    root: &Path,
    name: &str,
    image: &str,
    kind: Option<crate::model::RootMode>,
    made_at: &Path,
) -> Result<(), SystemError> {
    let inode = inode(made_at).ok_or_else(|| {
        error(
            format!("recording {}", made_at.display()),
            "it is not a directory",
        )
    })?;
    let made = Made {
        image: image.to_string(),
        kind,
        inode,
        created: crate::clock::now_unix(),
    };
    // Plain data: serializing it cannot fail.
    let text = serde_json::to_vec_pretty(&made).unwrap_or_default();
    let path = record_path(root, name);
    fs::create_dirs(path.parent().unwrap_or(root))
        .and_then(|()| fs::write_file(&path, &text, 0o644))
        .map_err(|e| error(format!("recording container {name}'s root file system"), e))
}

/// The record of container `name`'s tree, if ctm made the tree that is
/// there now. An overlay root is known by its upper directory (the tree
/// is a mount point, whose inode the mount hides).
pub fn made_by_ctm(root: &Path, name: &str) -> Option<Made> {
    let text = std::fs::read(record_path(root, name)).ok()?;
    let made: Made = serde_json::from_slice(&text).ok()?;
    let ours = if made.kind == Some(RootMode::Overlay) {
        tree(root, name).is_dir() && inode(&upper(root, name)) == Some(made.inode)
    } else {
        inode(&tree(root, name)) == Some(made.inode)
    };
    ours.then_some(made)
}

/// Container `name`'s overlay directory (`lower`, `upper`, `work`), if
/// its root is an overlay.
pub fn overlay(root: &Path, name: &str) -> PathBuf {
    root.join(crate::layout::overlay_dir(name))
}

/// Where an overlay root keeps the container's changes.
pub fn upper(root: &Path, name: &str) -> PathBuf {
    overlay(root, name).join("upper")
}

fn overlay_set_aside_path(root: &Path, name: &str) -> PathBuf {
    root.join(crate::layout::OVERLAYS)
        .join(format!("{SET_ASIDE_PREFIX}{name}{SET_ASIDE_SUFFIX}"))
}

/// Whether `path` is a mount point: on another device than its parent.
pub fn is_mounted(path: &Path) -> bool {
    let dev = |p: &Path| std::fs::symlink_metadata(p).ok().map(|m| m.dev());
    match (dev(path), path.parent().and_then(dev)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

/// Mounts container `name`'s overlay root at its tree, as its mount unit
/// does, unless something is mounted there: for a copy of the merged
/// view while the container is stopped (after a reboot nothing mounted
/// it). Returns whether it mounted.
pub fn mount_overlay(root: &Path, name: &str) -> Result<bool, SystemError> {
    let at = tree(root, name);
    if is_mounted(&at) {
        return Ok(false);
    }
    let dir = overlay(root, name);
    let what = || format!("mounting the overlay root of container {name}");
    let dir_text = dir.display().to_string();
    // The options are a comma-separated list with `:` between lower
    // directories: a path with either cannot be said in it.
    if dir_text.contains([',', ':']) {
        return Err(error(what(), format!("{dir_text} has a `,` or `:`")));
    }
    let options = format!(
        "lowerdir={dir_text}/lower,upperdir={dir_text}/upper,workdir={dir_text}/work,metacopy=on"
    );
    run_quiet(
        &["mount", "-t", "overlay", "-o", &options, "overlay", "--"],
        &at,
    )
    .map_err(|why| error(what(), why))?;
    Ok(true)
}

/// Unmounts what is mounted at `path` (an overlay root), if anything.
pub fn unmount(path: &Path) -> Result<(), SystemError> {
    if !is_mounted(path) {
        return Ok(());
    }
    run_quiet(&["umount", "--"], path)
        .map_err(|why| error(format!("unmounting {}", path.display()), why))
}

fn run_quiet(words: &[&str], path: &Path) -> Result<(), String> {
    let mut argv: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    argv.push(path.display().to_string());
    let ran =
        exec::on_host(&argv, Duration::from_secs(60), &mut |_| {}).map_err(|e| e.to_string())?;
    if ran.success() {
        Ok(())
    } else {
        Err(format!("{}: {}; {}", words[0], ran.describe(), ran.tail(5)))
    }
}

/// Where a restore builds container `name`'s new overlay directory,
/// beside the one it replaces (on its file system, so that the swap is a
/// rename).
pub fn overlay_staged(root: &Path, name: &str) -> PathBuf {
    root.join(crate::layout::OVERLAYS)
        .join(format!("{SET_ASIDE_PREFIX}{name}.ctm-restoring"))
}

/// What [`build_overlay`] made: the size of the new upper directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rebuilt {
    /// Bytes and entries the new upper holds (whiteouts included).
    pub bytes: u64,
    pub files: u64,
    /// Entries of the image the restored tree has not: one whiteout each.
    pub whiteouts: u64,
    /// Files whose bytes are the image's and whose metadata is not: kept
    /// as metadata only, their data read from the image.
    pub metadata_only: u64,
}

/// Builds, at [`overlay_staged`], an overlay directory for container
/// `name` whose merged view is the tree `wanted` (a restored snapshot or
/// archive, which holds a merged view): the same `lower` (the image),
/// an empty `work`, and as `upper` the tree `wanted` itself, moved (or
/// copied, from another file system), then stripped of every entry the image has alike (so that the upper stays
/// as small as the container's changes are, and the image's files stay
/// shared), a file of the image's bytes with other metadata made
/// metadata only ([`metadata_only`]), and with a whiteout (a character
/// device 0/0, as overlayfs makes them) for each entry of the image that
/// `wanted` has not. The
/// current overlay directory is not touched: a failure leaves it as it
/// was, and what was staged is deleted by the next try.
pub fn build_overlay(
    root: &Path,
    name: &str,
    wanted: &Path,
    progress: Progress<'_>,
) -> Result<Rebuilt, SystemError> {
    let dir = overlay(root, name);
    let lower = dir.join("lower");
    let what = || format!("building the new overlay root of container {name}");
    let target = std::fs::read_link(&lower)
        .map_err(|e| error(what(), format!("reading {}: {e}", lower.display())))?;
    if !lower.is_dir() {
        return Err(error(
            what(),
            format!("its image's tree {} is not there", target.display()),
        ));
    }
    let staged = overlay_staged(root, name);
    if staged.symlink_metadata().is_ok() {
        purge_one(&staged, progress)?;
    }
    let made = (|| -> std::io::Result<()> {
        std::fs::create_dir(&staged)?;
        std::fs::create_dir(staged.join("work"))?;
        std::os::unix::fs::symlink(&target, staged.join("lower"))
    })();
    made.map_err(|e| error(format!("creating {}", staged.display()), e))?;
    // Moved onto the overlays' file system first: whiteouts are made
    // there, where an upper directory can be (overlayfs refuses to make
    // one in a tree it shows, and `/var/lib/machines` may be another file
    // system).
    let upper = staged.join("upper");
    match std::fs::rename(wanted, &upper) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
            // Copied, with owners, times, links and extended attributes.
            let argv: Vec<String> = ["cp", "--archive", "--no-target-directory", "--"]
                .iter()
                .map(|w| w.to_string())
                .chain([wanted.display().to_string(), upper.display().to_string()])
                .collect();
            let ran = exec::on_host(&argv, PURGE_TIMEOUT, &mut |l| progress(l))?;
            if !ran.success() {
                return Err(error(
                    what(),
                    format!("cp: {}; {}", ran.describe(), ran.tail(5)),
                ));
            }
            purge_one(wanted, progress)?;
        }
        Err(e) => {
            return Err(error(
                what(),
                format!("moving {} to {}: {e}", wanted.display(), upper.display()),
            ));
        }
    }
    progress(&format!(
        "comparing {} with the image's tree {}",
        upper.display(),
        target.display()
    ));
    let mut rebuilt = Rebuilt::default();
    strip(&upper, &lower, &mut rebuilt)
        .map_err(|e| error(what(), format!("comparing with the image: {e}")))?;
    let (bytes, files) = size(&upper);
    rebuilt.bytes = bytes;
    rebuilt.files = files;
    progress(&format!(
        "the new upper directory holds {:.1} MB in {files} entries: {} whiteouts, {} files of the image's bytes with metadata of their own",
        bytes as f64 / 1e6,
        rebuilt.whiteouts,
        rebuilt.metadata_only
    ));
    Ok(rebuilt)
}

/// Puts the overlay directory [`build_overlay`] staged in place of
/// container `name`'s, at once (`RENAME_EXCHANGE`), records the new upper
/// as ctm's, and deletes the old one. The overlay must be unmounted.
pub fn swap_overlay(root: &Path, name: &str, progress: Progress<'_>) -> Result<(), SystemError> {
    let dir = overlay(root, name);
    let staged = overlay_staged(root, name);
    if is_mounted(&tree(root, name)) {
        return Err(error(
            format!("swapping in the new overlay root of container {name}"),
            "it is still mounted",
        ));
    }
    let made = made_by_ctm(root, name);
    super::snapshots::exchange(&dir, &staged)?;
    if let Some(made) = made {
        record(root, name, &made.image, made.kind, &upper(root, name))?;
    }
    purge_one(&staged, progress)
}

/// Strips `upper` (a directory) of what `lower` (the image's directory
/// at the same place) has alike, and whites out what `lower` has and
/// `upper` has not; see [`build_overlay`]. A directory left is given back
/// its times, which the changes in it moved.
fn strip(upper: &Path, lower: &Path, rebuilt: &mut Rebuilt) -> std::io::Result<()> {
    clear_overlay_attributes(upper)?;
    let own = std::fs::symlink_metadata(upper)?;
    let names: BTreeSet<std::ffi::OsString> = std::fs::read_dir(upper)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    for entry in std::fs::read_dir(lower)? {
        let file = entry?.file_name();
        if !names.contains(&file) {
            nix::sys::stat::mknod(
                &upper.join(&file),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .map_err(std::io::Error::from)?;
            rebuilt.whiteouts += 1;
        }
    }
    for file in &names {
        let (u, l) = (upper.join(file), lower.join(file));
        let lm = std::fs::symlink_metadata(&l).ok();
        let um = std::fs::symlink_metadata(&u)?;
        let merged = um.is_dir() && lm.as_ref().is_some_and(|m| m.is_dir());
        if !merged {
            // Kept whole, or compared as a file: cleared here (a
            // directory merged with the image's is cleared by `strip`).
            clear_overlay_attributes_below(&u)?;
        }
        let Some(lm) = lm else {
            continue;
        };
        let um = std::fs::symlink_metadata(&u)?;
        if merged {
            strip(&u, &l, rebuilt)?;
            if same_attributes(&u, &um, &l, &lm)? && std::fs::read_dir(&u)?.next().is_none() {
                std::fs::remove_dir(&u)?;
            }
        } else if !um.is_dir() {
            if same_entry(&u, &um, &l, &lm)? {
                std::fs::remove_file(&u)?;
            } else if um.is_file()
                && lm.is_file()
                && um.nlink() == 1
                && um.size() == lm.size()
                && same_bytes(&u, &l)?
            {
                metadata_only(&u, &um)?;
                rebuilt.metadata_only += 1;
            }
        }
    }
    let times = |s: i64, ns: i64| nix::sys::time::TimeSpec::new(s, ns);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        upper,
        &times(own.atime(), own.atime_nsec()),
        &times(own.mtime(), own.mtime_nsec()),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(std::io::Error::from)
}

/// Makes the file at `path` (whose bytes are the image's at the same
/// place, its metadata `meta` not) what overlayfs makes of a file whose
/// owner, permissions or times alone changed (`metacopy=on`, which the
/// mount unit sets): a sparse file of the same size, with its metadata
/// and the `trusted.overlay.metacopy` attribute, whose data overlayfs
/// reads from the image. A container whose tree nspawn chowned (its user
/// namespace) changes the owner of every file; without this its restored
/// upper would hold a copy of the whole image.
fn metadata_only(path: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.set_len(0)?;
    file.set_len(meta.size())?;
    drop(file);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    xattr::set(path, "trusted.overlay.metacopy", b"")?;
    let times = |s: i64, ns: i64| nix::sys::time::TimeSpec::new(s, ns);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &times(meta.atime(), meta.atime_nsec()),
        &times(meta.mtime(), meta.mtime_nsec()),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(std::io::Error::from)
}

/// Removes overlayfs's own attributes (`trusted.overlay.*`) from an
/// entry of a restored tree: a merged view never shows them, so one in an
/// archive was put there, and in an upper directory it would hide the
/// image's files (`opaque`) or point elsewhere in it (`redirect`).
fn clear_overlay_attributes(path: &Path) -> std::io::Result<()> {
    let names: Vec<std::ffi::OsString> = xattr::list(path)?
        .filter(|n| n.as_encoded_bytes().starts_with(b"trusted.overlay."))
        .collect();
    for name in names {
        xattr::remove(path, &name)?;
    }
    Ok(())
}

/// [`clear_overlay_attributes`] of `path` and, a directory, of all in it.
fn clear_overlay_attributes_below(path: &Path) -> std::io::Result<()> {
    clear_overlay_attributes(path)?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            clear_overlay_attributes_below(&entry?.path())?;
        }
    }
    Ok(())
}

/// Whether two entries have the same type, permissions, owner,
/// modification time and extended attributes.
fn same_attributes(
    a: &Path,
    am: &std::fs::Metadata,
    b: &Path,
    bm: &std::fs::Metadata,
) -> std::io::Result<bool> {
    if am.mode() != bm.mode()
        || am.uid() != bm.uid()
        || am.gid() != bm.gid()
        || am.mtime() != bm.mtime()
        || am.mtime_nsec() != bm.mtime_nsec()
    {
        return Ok(false);
    }
    let attributes = |p: &Path| -> std::io::Result<BTreeMap<std::ffi::OsString, Option<Vec<u8>>>> {
        xattr::list(p)?
            .map(|n| xattr::get(p, &n).map(|v| (n, v)))
            .collect()
    };
    Ok(attributes(a)? == attributes(b)?)
}

/// Whether two entries that are not both directories are alike: as
/// [`same_attributes`], and the same size, the same target (a link), device (a device) or bytes (a file).
fn same_entry(
    a: &Path,
    am: &std::fs::Metadata,
    b: &Path,
    bm: &std::fs::Metadata,
) -> std::io::Result<bool> {
    if am.size() != bm.size() || am.rdev() != bm.rdev() || !same_attributes(a, am, b, bm)? {
        return Ok(false);
    }
    let kind = am.file_type();
    if kind.is_symlink() {
        return Ok(std::fs::read_link(a)? == std::fs::read_link(b)?);
    }
    if !kind.is_file() {
        return Ok(true);
    }
    same_bytes(a, b)
}

/// Whether two files hold the same bytes.
fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::io::Read as _;
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(fb.read(&mut bb[..1])? == 0);
        }
        let mut got = 0;
        while got < n {
            let m = fb.read(&mut bb[got..n])?;
            if m == 0 {
                return Ok(false);
            }
            got += m;
        }
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// The image trees that overlay roots are made of (what each `lower`
/// link points at), with the containers: an image under an overlay is
/// never deleted (`ctm gc`, `ctm image rm`).
pub fn overlay_lowers(root: &Path) -> BTreeMap<PathBuf, Vec<String>> {
    let mut lowers: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(root.join(crate::layout::OVERLAYS)) else {
        return lowers;
    };
    for entry in entries.filter_map(Result::ok) {
        let Ok(target) = std::fs::read_link(entry.path().join("lower")) else {
            continue;
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        lowers.entry(target).or_default().push(name);
    }
    lowers
}

/// The containers, other than those `wanted` names, whose tree ctm made
/// and is there now. Every plan asks (for `--prune`), so the records of
/// wanted containers, all but a few, are not even read.
pub fn made_by_ctm_except<T>(root: &Path, wanted: &BTreeMap<String, T>) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(root.join(RECORDS)) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let file = e.file_name();
            let name = file.to_str()?.strip_suffix(".json")?;
            if wanted.contains_key(name) {
                return None;
            }
            crate::model::Name::parse(name).ok()?;
            made_by_ctm(root, name)?;
            Some(name.to_string())
        })
        .collect()
}

/// Moves container `name`'s tree out of the way, to be purged once the
/// change that removes it is committed. Done already is fine.
pub fn set_aside(root: &Path, name: &str) -> Result<(), SystemError> {
    let from = tree(root, name);
    let overlaid = overlay(root, name);
    if overlaid.is_dir() {
        // An overlay root: unmounted (a mount point cannot be renamed),
        // and its changes set aside with it.
        unmount(&from)?;
        let to = overlay_set_aside_path(root, name);
        if inode(&to).is_some() {
            purge_one(&to, &mut |_| {})?;
        }
        fs::rename(&overlaid, &to)
            .map_err(|e| error(format!("setting aside {}", overlaid.display()), e))?;
    }
    let to = set_aside_path(root, name);
    let what = || format!("setting aside {}", from.display());
    if inode(&from).is_none() {
        return if inode(&to).is_some() {
            Ok(())
        } else {
            Err(error(what(), "there is no such directory"))
        };
    }
    if inode(&to).is_some() {
        // Left by an earlier removal whose purge failed: it goes first.
        purge_one(&to, &mut |_| {})?;
    }
    fs::rename(&from, &to).map_err(|e| error(what(), e))
}

/// Undoes [`set_aside`]. Nothing set aside is fine.
pub fn put_back(root: &Path, name: &str) -> Result<(), SystemError> {
    let overlaid = overlay_set_aside_path(root, name);
    if inode(&overlaid).is_some() && inode(&overlay(root, name)).is_none() {
        let to = overlay(root, name);
        fs::rename(&overlaid, &to)
            .map_err(|e| error(format!("putting back {}", to.display()), e))?;
    }
    let from = set_aside_path(root, name);
    let to = tree(root, name);
    if inode(&from).is_none() {
        return Ok(());
    }
    if to.symlink_metadata().is_ok() {
        return Err(error(
            format!("putting back {}", to.display()),
            format!(
                "something is at its path again; the old tree stays at {}",
                from.display()
            ),
        ));
    }
    fs::rename(&from, &to).map_err(|e| error(format!("putting back {}", to.display()), e))
}

/// Deletes every tree that was set aside, and the records of trees that
/// are gone. Returns what could not be deleted; the next purge tries again.
pub fn purge(root: &Path, progress: Progress<'_>) -> Vec<SystemError> {
    let mut problems = Vec::new();
    let machines = root.join(MACHINES);
    let overlays = root.join(crate::layout::OVERLAYS);
    let set_aside: Vec<PathBuf> = [std::fs::read_dir(&machines), std::fs::read_dir(&overlays)]
        .into_iter()
        .filter_map(Result::ok)
        .flat_map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name().to_str().is_some_and(|n| {
                        n.len() > SET_ASIDE_PREFIX.len() + SET_ASIDE_SUFFIX.len()
                            && n.starts_with(SET_ASIDE_PREFIX)
                            && n.ends_with(SET_ASIDE_SUFFIX)
                    })
                })
                .map(|e| e.path())
                .collect::<Vec<_>>()
        })
        .collect();
    for path in set_aside {
        if let Err(e) = purge_one(&path, progress) {
            problems.push(e);
        }
    }
    if let Ok(entries) = std::fs::read_dir(root.join(RECORDS)) {
        for entry in entries.filter_map(Result::ok) {
            let file = entry.file_name();
            let Some(name) = file.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if made_by_ctm(root, name).is_none()
                && let Err(e) = fs::remove(&entry.path())
            {
                problems.push(error("forgetting a removed root file system", e));
            }
        }
    }
    problems
}

/// Deletes one tree, never crossing into another file system: a mount
/// left inside it (a bind mount of host data) stops the deletion instead
/// of being emptied.
pub(super) fn purge_one(path: &Path, progress: Progress<'_>) -> Result<(), SystemError> {
    progress(&format!("deleting {}", path.display()));
    let started = std::time::Instant::now();
    if btrfs::is_subvolume(path) && btrfs::available() {
        // A snapshot's tree: one call, and `rm --one-file-system` would
        // stop at the boundary a subvolume is.
        return btrfs::run(
            &["subvolume", "delete", &path.display().to_string()],
            progress,
        );
    }
    let ran = exec::on_host(
        &[
            "rm".to_string(),
            "--recursive".to_string(),
            "--force".to_string(),
            "--one-file-system".to_string(),
            "--preserve-root=all".to_string(),
            "--".to_string(),
            path.display().to_string(),
        ],
        PURGE_TIMEOUT,
        &mut |line| progress(line),
    )?;
    if !ran.success() {
        return Err(error(
            format!("deleting {}", path.display()),
            format!("rm: {}; {}", ran.describe(), ran.tail(10)),
        ));
    }
    progress(&format!(
        "deleted {} in {:.1} s",
        path.display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// What the file system of the containers' trees can share with the
/// image store (for `plan::choose_root`), and which of `wanted` (the
/// desired containers) have no tree yet. Asked of the nearest existing
/// directories, so that a host without either yet is asked about the
/// file system they will be made on; nothing is made.
pub fn observe<T>(root: &Path, wanted: &BTreeMap<String, T>) -> RootsState {
    let machines = root.join(MACHINES);
    let fs = super::volumes::file_system(&machines).map_or_else(|e| e.to_string(), |f| f.name);
    let reflink = can_reflink(
        &nearest(&root.join(crate::layout::IMAGE_STORE)),
        &nearest(&machines),
    )
    .err();
    let snapshot = if fs != "btrfs" {
        Some(format!("/{MACHINES} is on {fs}, not btrfs"))
    } else if !btrfs::available() {
        Some("the `btrfs` command (btrfs-progs) is not installed".to_string())
    } else {
        // A snapshot stays inside one btrfs file system, as a clone does.
        reflink.clone()
    };
    let missing = wanted
        .keys()
        .filter(|name| tree(root, name).symlink_metadata().is_err())
        .cloned()
        .collect();
    RootsState {
        fs,
        snapshot,
        reflink,
        overlay: can_overlay(root).err(),
        missing,
    }
}

/// Whether an overlay with its upper directory in `/var/lib/ctm/overlays`
/// (under `root`) can be mounted: the kernel has overlayfs, and the file
/// system there can hold an upper directory (not an overlay itself, and
/// one whose directory entries carry their type, `d_type`, which
/// overlayfs needs: XFS made with `ftype=0` has not). `Err` says why not.
/// Where the directory does not exist yet its nearest existing ancestor
/// is looked at, but the reason names the directory: the plan's
/// fingerprint holds it, and an apply that made a directory on the way
/// must not find its own plan stale.
///
/// The `d_type` probe writes a directory; it is made once per file
/// system and boot, not on every plan: see [`carries_type`].
pub fn can_overlay(root: &Path) -> Result<(), String> {
    let dir = root.join(crate::layout::OVERLAYS);
    let filesystems = std::fs::read_to_string("/proc/filesystems")
        .map_err(|e| format!("reading /proc/filesystems: {e}"))?;
    if !filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        return Err(
            "the kernel has no overlay file system (not in /proc/filesystems: `modprobe overlay`)"
                .to_string(),
        );
    }
    let at = nearest(&dir);
    let fs = super::volumes::file_system(&at).map_err(|e| e.to_string())?;
    if fs.name == "overlayfs" {
        return Err(format!(
            "{} is on an overlay file system, which cannot hold an overlay's upper directory",
            dir.display()
        ));
    }
    let record = root.join(crate::layout::STATE_DIR).join(PROBE_RECORD);
    let typed = carries_type(&record, &at, &fs.name, &PROBED)
        .map_err(|e| format!("probing {}: {e}", dir.display()))?;
    if !typed {
        return Err(format!(
            "the file system of {} does not record the type of directory entries (d_type), \
             which overlayfs needs (XFS made with ftype=0)",
            dir.display()
        ));
    }
    Ok(())
}

/// Where the answers of the `d_type` probe are kept, in ctm's state
/// directory.
const PROBE_RECORD: &str = "overlay-probe.json";

/// The answers of the `d_type` probe this process found, by file system.
static PROBED: std::sync::Mutex<BTreeMap<(u64, String), bool>> =
    std::sync::Mutex::new(BTreeMap::new());

/// The answers of the `d_type` probe, kept for the boot they were found
/// in: a file system is known by its device number and type, which only
/// a reboot (or an unmount, which a type check mostly catches) gives to
/// another.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ProbeRecord {
    boot_id: String,
    /// `DEVICE:TYPE` → whether entries carry their type.
    typed: BTreeMap<String, bool>,
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Whether the file system of `at` (of type `fs`) tells a file's type in
/// directory entries: the answer this process found already (`memory`),
/// or the one `record` keeps for this boot, or else probed
/// ([`entries_carry_type`]) and kept in both. A record that cannot be
/// read is probed over; one that cannot be written (no state directory
/// yet, a read-only file system) is not made: the answer is the same,
/// only probed again. A probe that fails is not kept.
fn carries_type(
    record: &Path,
    at: &Path,
    fs: &str,
    memory: &std::sync::Mutex<BTreeMap<(u64, String), bool>>,
) -> std::io::Result<bool> {
    let device = std::fs::metadata(at)?.dev();
    let key = (device, fs.to_string());
    if let Some(&typed) = memory.lock().ok().as_ref().and_then(|m| m.get(&key)) {
        return Ok(typed);
    }
    let boot = boot_id();
    let label = format!("{device}:{fs}");
    let mut kept = std::fs::read(record)
        .ok()
        .and_then(|text| serde_json::from_slice::<ProbeRecord>(&text).ok())
        .filter(|r| boot.as_deref() == Some(r.boot_id.as_str()))
        .unwrap_or_default();
    let typed = match kept.typed.get(&label) {
        Some(&typed) => typed,
        None => {
            let typed = entries_carry_type(at)?;
            if let (Some(boot), Some(dir)) = (boot, record.parent())
                && dir.is_dir()
            {
                kept.boot_id = boot;
                kept.typed.insert(label, typed);
                // Plain data: serializing it cannot fail.
                let text = serde_json::to_vec_pretty(&kept).unwrap_or_default();
                let _ = fs::write_file(record, &text, 0o644);
            }
            typed
        }
    };
    if let Ok(mut m) = memory.lock() {
        m.insert(key, typed);
    }
    Ok(typed)
}

/// Whether `readdir` in a directory made in `dir` tells a file's type
/// (`d_type` other than `DT_UNKNOWN`), tried on a directory of one file.
fn entries_carry_type(dir: &Path) -> std::io::Result<bool> {
    use std::os::unix::ffi::OsStrExt as _;
    let probe = dir.join(format!(".#ctm-overlay-probe-{}", std::process::id()));
    std::fs::create_dir(&probe)?;
    let found = (|| {
        std::fs::write(probe.join("f"), b"")?;
        let path = std::ffi::CString::new(probe.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `path` is a valid C string; the stream is closed below
        // and its entries are read only while it is open.
        unsafe {
            let stream = nix::libc::opendir(path.as_ptr());
            if stream.is_null() {
                return Err(std::io::Error::last_os_error());
            }
            let mut typed = false;
            loop {
                let entry = nix::libc::readdir(stream);
                if entry.is_null() {
                    break;
                }
                if std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()).to_bytes() == b"f" {
                    typed = (*entry).d_type != nix::libc::DT_UNKNOWN;
                }
            }
            nix::libc::closedir(stream);
            Ok(typed)
        }
    })();
    let _ = std::fs::remove_dir_all(&probe);
    found
}

fn nearest(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| p.is_dir())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

nix::ioctl_write_int!(ficlone, 0x94, 9);

/// Clones `from`'s data into `to` (`FICLONE`: the extents are shared, not
/// copied); both are open files.
pub fn clone_file(from: &std::fs::File, to: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: FICLONE takes the source's fd as its argument; both fds are
    // open for the call.
    unsafe { ficlone(to.as_raw_fd(), from.as_raw_fd() as nix::libc::c_ulong) }
        .map(|_| ())
        .map_err(std::io::Error::from)
}

/// Whether a file in directory `from` can be cloned into directory `to`:
/// tried on two unlinked files of a block each, the only test that
/// answers for both file systems and the kernel. `Err` says why not.
pub fn can_reflink(from: &Path, to: &Path) -> Result<(), String> {
    use std::io::Write as _;
    fn unlinked(dir: &Path) -> std::io::Result<std::fs::File> {
        let path = dir.join(format!(".#ctm-reflink-probe-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(file)
    }
    let what = |dir: &Path, e: std::io::Error| format!("probing {}: {e}", dir.display());
    let mut source = unlinked(from).map_err(|e| what(from, e))?;
    source
        .write_all(&[0x5a; 4096])
        .and_then(|()| source.sync_data())
        .map_err(|e| what(from, e))?;
    let target = unlinked(to).map_err(|e| what(to, e))?;
    clone_file(&source, &target).map_err(|e| match e.raw_os_error() {
        Some(nix::libc::EXDEV) => format!(
            "{} and {} are on different file systems, and blocks are shared only within one",
            from.display(),
            to.display()
        ),
        Some(nix::libc::EOPNOTSUPP) | Some(nix::libc::EINVAL) | Some(nix::libc::ENOTTY) => {
            format!(
                "the file system of {} cannot share blocks between files (reflinks: btrfs, XFS made with reflink=1)",
                to.display()
            )
        }
        _ => format!("cloning a file into {}: {e}", to.display()),
    })
}

/// The size of a tree in bytes and files, without crossing into another
/// file system (for `ctm destroy` to say what it deletes).
pub fn size(path: &Path) -> (u64, u64) {
    fn walk(dir: &Path, device: u64, bytes: &mut u64, files: &mut u64) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(meta) = entry.metadata() else { continue };
            *files += 1;
            *bytes += meta.blocks() * 512;
            if meta.is_dir() && meta.dev() == device {
                walk(&entry.path(), device, bytes, files);
            }
        }
    }
    let (mut bytes, mut files) = (0, 0);
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        walk(path, meta.dev(), &mut bytes, &mut files);
    }
    (bytes, files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::skip_test as skip;

    fn make_tree(root: &Path, name: &str) -> PathBuf {
        let tree = tree(root, name);
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/os-release"), "ID=test\n").unwrap();
        tree
    }

    #[test]
    fn a_recorded_tree_is_ctms_until_another_takes_its_place() {
        let root = tempfile::tempdir().unwrap();
        let tree = make_tree(root.path(), "web");
        assert_eq!(made_by_ctm(root.path(), "web"), None);
        record(
            root.path(),
            "web",
            "bookworm",
            Some(crate::model::RootMode::Copy),
            &tree,
        )
        .unwrap();
        let made = made_by_ctm(root.path(), "web").unwrap();
        assert_eq!(made.image, "bookworm");
        let none = BTreeMap::<String, ()>::new();
        assert_eq!(
            made_by_ctm_except(root.path(), &none)
                .iter()
                .collect::<Vec<_>>(),
            ["web"]
        );
        // A container the host file still has is left out.
        let web = BTreeMap::from([("web".to_string(), ())]);
        assert!(made_by_ctm_except(root.path(), &web).is_empty());
        // Someone replaces the tree by hand: not ctm's any more.
        std::fs::rename(&tree, root.path().join("kept")).unwrap();
        make_tree(root.path(), "web");
        assert_eq!(made_by_ctm(root.path(), "web"), None);
        assert!(made_by_ctm_except(root.path(), &none).is_empty());
    }

    #[test]
    fn set_aside_and_put_back_are_each_idempotent() {
        let root = tempfile::tempdir().unwrap();
        let tree = make_tree(root.path(), "web");
        set_aside(root.path(), "web").unwrap();
        set_aside(root.path(), "web").unwrap();
        assert!(!tree.exists());
        assert!(
            set_aside_path(root.path(), "web")
                .join("etc/os-release")
                .exists()
        );
        put_back(root.path(), "web").unwrap();
        put_back(root.path(), "web").unwrap();
        assert!(tree.join("etc/os-release").exists());
        let err = set_aside(root.path(), "nothing").unwrap_err();
        assert!(err.why.contains("no such directory"), "{err}");
    }

    #[test]
    fn put_back_never_replaces_a_new_tree() {
        let root = tempfile::tempdir().unwrap();
        make_tree(root.path(), "web");
        set_aside(root.path(), "web").unwrap();
        make_tree(root.path(), "web");
        let err = put_back(root.path(), "web").unwrap_err();
        assert!(err.why.contains("stays at"), "{err}");
        assert!(set_aside_path(root.path(), "web").exists());
    }

    #[test]
    fn purge_deletes_what_was_set_aside_and_forgets_gone_trees() {
        let root = tempfile::tempdir().unwrap();
        let web = make_tree(root.path(), "web");
        let db = make_tree(root.path(), "db");
        record(
            root.path(),
            "web",
            "img",
            Some(crate::model::RootMode::Copy),
            &web,
        )
        .unwrap();
        record(
            root.path(),
            "db",
            "img",
            Some(crate::model::RootMode::Copy),
            &db,
        )
        .unwrap();
        set_aside(root.path(), "web").unwrap();
        let mut lines = Vec::new();
        let problems = purge(root.path(), &mut |l| lines.push(l.to_string()));
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!set_aside_path(root.path(), "web").exists());
        assert!(!record_path(root.path(), "web").exists());
        // The tree that stays keeps its record.
        assert!(db.exists());
        assert!(made_by_ctm(root.path(), "db").is_some());
        assert!(
            lines.iter().any(|l| l.starts_with("deleting ")),
            "{lines:?}"
        );
    }

    /// An overlay root of `image` for container `name`, as
    /// `provision::create_overlay` makes it, recorded.
    fn overlay_root(root: &Path, name: &str, image: &Path) {
        let dir = overlay(root, name);
        std::fs::create_dir_all(dir.join("upper")).unwrap();
        std::fs::create_dir_all(dir.join("work")).unwrap();
        std::os::unix::fs::symlink(image, dir.join("lower")).unwrap();
        std::fs::create_dir_all(tree(root, name)).unwrap();
        record(
            root,
            name,
            "img",
            Some(RootMode::Overlay),
            &dir.join("upper"),
        )
        .unwrap();
    }

    #[test]
    fn two_overlay_roots_share_the_image_and_keep_their_writes_apart() {
        if !nix::unistd::Uid::effective().is_root() {
            skip("mounting an overlay needs root");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let image = root.path().join("var/lib/ctm/images/img-1");
        std::fs::create_dir_all(image.join("etc")).unwrap();
        let big = vec![7u8; 4 << 20];
        std::fs::write(image.join("etc/big"), &big).unwrap();
        std::fs::write(image.join("etc/os-release"), "ID=test\n").unwrap();
        overlay_root(root.path(), "a", &image);
        overlay_root(root.path(), "b", &image);
        assert!(mount_overlay(root.path(), "a").unwrap());
        assert!(mount_overlay(root.path(), "b").unwrap());
        // Mounted once: asked again, nothing more is mounted.
        assert!(!mount_overlay(root.path(), "a").unwrap());
        let (a, b) = (tree(root.path(), "a"), tree(root.path(), "b"));
        let result = std::panic::catch_unwind(|| {
            // Both see the image's 4 MiB file; neither holds a copy of
            // it: their own directories stay near empty.
            assert_eq!(std::fs::read(a.join("etc/big")).unwrap(), big);
            assert_eq!(std::fs::read(b.join("etc/big")).unwrap(), big);
            let (own, _) = size(&upper(root.path(), "a"));
            assert!(own < 64 * 1024, "{own}");
            assert!(made_by_ctm(root.path(), "a").is_some());
            // A write in one is seen there only, and the image is as it was.
            std::fs::write(a.join("etc/os-release"), "ID=changed\n").unwrap();
            std::fs::write(a.join("new"), "a's\n").unwrap();
            assert_eq!(
                std::fs::read_to_string(b.join("etc/os-release")).unwrap(),
                "ID=test\n"
            );
            assert!(!b.join("new").exists());
            assert_eq!(
                std::fs::read_to_string(image.join("etc/os-release")).unwrap(),
                "ID=test\n"
            );
            assert_eq!(
                std::fs::read_to_string(upper(root.path(), "a").join("etc/os-release")).unwrap(),
                "ID=changed\n"
            );
            // The image is known to be under both.
            let lowers = overlay_lowers(root.path());
            assert_eq!(lowers.get(&image).map(Vec::len), Some(2));
            // Destroying a unmounts it and deletes its changes, never the
            // image, nor b.
            set_aside(root.path(), "a").unwrap();
            assert!(!is_mounted(&set_aside_path(root.path(), "a")));
            let problems = purge(root.path(), &mut |_| {});
            assert!(problems.is_empty(), "{problems:?}");
            assert!(!a.exists() && !overlay(root.path(), "a").exists());
            assert!(!overlay_set_aside_path(root.path(), "a").exists());
            assert!(made_by_ctm(root.path(), "a").is_none());
            assert_eq!(std::fs::read(image.join("etc/big")).unwrap(), big);
            assert_eq!(std::fs::read(b.join("etc/big")).unwrap(), big);
        });
        let _ = unmount(&a);
        let _ = unmount(&b);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }

    /// Every entry under `dir` with what a container sees of it: type,
    /// permissions, owner, modification time, and bytes or target.
    fn listing(dir: &Path) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(at) = stack.pop() {
            let meta = std::fs::symlink_metadata(&at).unwrap();
            let what = if meta.is_dir() {
                for e in std::fs::read_dir(&at).unwrap() {
                    stack.push(e.unwrap().path());
                }
                String::new()
            } else if meta.file_type().is_symlink() {
                std::fs::read_link(&at).unwrap().display().to_string()
            } else {
                String::from_utf8_lossy(&std::fs::read(&at).unwrap()).into_owned()
            };
            let rel = at.strip_prefix(dir).unwrap().to_path_buf();
            out.insert(
                rel,
                format!(
                    "{:o} {}:{} {}.{} {}",
                    meta.mode(),
                    meta.uid(),
                    meta.gid(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                    what
                ),
            );
        }
        out
    }

    fn cp_archive(from: &Path, to: &Path) {
        let ok = std::process::Command::new("cp")
            .args(["--archive", "--no-target-directory"])
            .arg(from)
            .arg(to)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    #[test]
    fn a_restored_overlay_root_shows_the_snapshot_exactly_with_a_small_upper() {
        if !nix::unistd::Uid::effective().is_root() {
            skip("mounting an overlay needs root");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let image = root.path().join("var/lib/ctm/images/img-1");
        std::fs::create_dir_all(image.join("etc/deep/er")).unwrap();
        std::fs::create_dir_all(image.join("usr/share")).unwrap();
        let big = vec![7u8; 4 << 20];
        std::fs::write(image.join("usr/share/big"), &big).unwrap();
        std::fs::write(image.join("etc/os-release"), "ID=test\n").unwrap();
        std::fs::write(image.join("etc/changed"), "as in the image\n").unwrap();
        std::fs::write(image.join("etc/gone"), "deleted in the container\n").unwrap();
        std::fs::write(image.join("etc/deep/er/file"), "deep\n").unwrap();
        std::os::unix::fs::symlink("os-release", image.join("etc/link")).unwrap();
        overlay_root(root.path(), "a", &image);
        assert!(mount_overlay(root.path(), "a").unwrap());
        let a = tree(root.path(), "a");
        let snapshot = root.path().join("snapshot");
        let result = std::panic::catch_unwind(|| {
            // The state the snapshot holds: a file changed, one deleted,
            // a directory deleted whole, one added, a mode changed.
            std::fs::write(a.join("etc/changed"), "changed in the container\n").unwrap();
            std::fs::remove_file(a.join("etc/gone")).unwrap();
            std::fs::remove_dir_all(a.join("etc/deep")).unwrap();
            std::fs::write(a.join("etc/new"), "new\n").unwrap();
            std::fs::set_permissions(
                a.join("etc/os-release"),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
            // As nspawn's user namespace chowns every file: the 4 MiB
            // file's owner is the container's, its bytes the image's.
            std::os::unix::fs::lchown(a.join("usr/share/big"), Some(1234), Some(1234)).unwrap();
            cp_archive(&a, &snapshot);
            let wanted = listing(&snapshot);
            // Changed again since: what the restore must undo.
            std::fs::write(a.join("etc/gone"), "back\n").unwrap();
            std::fs::write(a.join("etc/changed"), "changed again\n").unwrap();
            std::fs::remove_file(a.join("etc/new")).unwrap();
            std::fs::write(a.join("usr/share/big"), b"small now").unwrap();
            std::fs::create_dir_all(a.join("etc/deep")).unwrap();
            let before = listing(&a);
            assert_ne!(before, wanted);
            let old_upper = inode(&upper(root.path(), "a")).unwrap();

            // Staged beside the tree, as a restore copies it.
            let staged = root.path().join(MACHINES).join(".#a.ctm-restoring");
            cp_archive(&snapshot, &staged);
            // overlayfs's own attributes, as a crafted archive may hold:
            // kept, `etc` would hide the image's files under it.
            xattr::set(staged.join("etc"), "trusted.overlay.opaque", b"y").unwrap();
            xattr::set(staged.join("etc/new"), "trusted.overlay.redirect", b"/usr").unwrap();
            let rebuilt = build_overlay(root.path(), "a", &staged, &mut |_| {}).unwrap();
            // etc/gone and etc/deep are whited out; nothing else. The big
            // file and os-release (mode) are metadata only.
            assert_eq!(rebuilt.whiteouts, 2, "{rebuilt:?}");
            assert_eq!(rebuilt.metadata_only, 2, "{rebuilt:?}");
            // A failure before the swap (here: still mounted) leaves the
            // old upper in place, and the container's view as it was.
            let err = swap_overlay(root.path(), "a", &mut |_| {}).unwrap_err();
            assert!(err.why.contains("still mounted"), "{err}");
            assert_eq!(inode(&upper(root.path(), "a")), Some(old_upper));
            assert!(made_by_ctm(root.path(), "a").is_some());
            assert_eq!(listing(&a), before);

            unmount(&a).unwrap();
            swap_overlay(root.path(), "a", &mut |_| {}).unwrap();
            assert!(!overlay_staged(root.path(), "a").exists());
            assert_ne!(inode(&upper(root.path(), "a")), Some(old_upper));
            // The new upper is ctm's, and the image is under it still.
            assert!(made_by_ctm(root.path(), "a").is_some());
            assert!(mount_overlay(root.path(), "a").unwrap());
            assert_eq!(listing(&a), wanted);
            // The upper holds the changes only: not the image's 4 MiB.
            let new_upper = upper(root.path(), "a");
            let (bytes, _) = size(&new_upper);
            assert!(bytes < 64 * 1024, "{bytes}");
            assert_eq!(
                xattr::get(new_upper.join("usr/share/big"), "trusted.overlay.metacopy").unwrap(),
                Some(Vec::new())
            );
            for (path, attribute) in [("etc", "opaque"), ("etc/new", "redirect")] {
                let name = format!("trusted.overlay.{attribute}");
                assert_eq!(xattr::get(new_upper.join(path), name).unwrap(), None);
            }
            let gone = std::fs::symlink_metadata(new_upper.join("etc/gone")).unwrap();
            assert!(
                std::os::unix::fs::FileTypeExt::is_char_device(&gone.file_type())
                    && gone.rdev() == 0,
                "{gone:?}"
            );
            assert_eq!(
                std::fs::read_to_string(image.join("etc/changed")).unwrap(),
                "as in the image\n"
            );
            assert_eq!(std::fs::read(a.join("usr/share/big")).unwrap(), big);
        });
        let _ = unmount(&a);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }

    #[test]
    fn a_restore_without_the_image_fails_before_it_changes_anything() {
        let root = tempfile::tempdir().unwrap();
        let image = root.path().join("var/lib/ctm/images/img-1");
        overlay_root(root.path(), "a", &image);
        std::fs::write(upper(root.path(), "a").join("mine"), "kept\n").unwrap();
        let staged = root.path().join("staged");
        std::fs::create_dir_all(&staged).unwrap();
        let err = build_overlay(root.path(), "a", &staged, &mut |_| {}).unwrap_err();
        assert!(err.why.contains("is not there"), "{err}");
        assert!(!overlay_staged(root.path(), "a").exists());
        assert_eq!(
            std::fs::read_to_string(upper(root.path(), "a").join("mine")).unwrap(),
            "kept\n"
        );
    }

    #[test]
    fn the_d_type_probe_is_made_once_per_file_system_and_boot() {
        let Some(boot) = boot_id() else {
            skip("no /proc/sys/kernel/random/boot_id");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join(PROBE_RECORD);
        let at = dir.path().join("fs");
        std::fs::create_dir(&at).unwrap();
        let fs = "test-fs";
        let memory = std::sync::Mutex::new(BTreeMap::new());
        let probed = carries_type(&record, &at, fs, &memory).unwrap();
        // Kept for this boot, under the file system's device and type.
        let kept: ProbeRecord = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
        assert_eq!(kept.boot_id, boot);
        let device = std::fs::metadata(&at).unwrap().dev();
        assert_eq!(kept.typed.get(&format!("{device}:{fs}")), Some(&probed));
        // The probe left nothing behind.
        assert_eq!(std::fs::read_dir(&at).unwrap().count(), 0);
        // Asked again, neither this process nor another probes: the
        // answer the record keeps is the answer (here set to the other
        // one, as a probe never gives on this file system).
        let flipped = ProbeRecord {
            boot_id: boot.clone(),
            typed: BTreeMap::from([(format!("{device}:{fs}"), !probed)]),
        };
        std::fs::write(&record, serde_json::to_vec(&flipped).unwrap()).unwrap();
        assert_eq!(carries_type(&record, &at, fs, &memory).unwrap(), probed);
        let another = std::sync::Mutex::new(BTreeMap::new());
        assert_eq!(carries_type(&record, &at, fs, &another).unwrap(), !probed);
        // A record of another boot is probed over.
        let old = ProbeRecord {
            boot_id: "another boot".into(),
            typed: flipped.typed.clone(),
        };
        std::fs::write(&record, serde_json::to_vec(&old).unwrap()).unwrap();
        let fresh = std::sync::Mutex::new(BTreeMap::new());
        assert_eq!(carries_type(&record, &at, fs, &fresh).unwrap(), probed);
        let kept: ProbeRecord = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
        assert_eq!(kept.boot_id, boot);
        // Without a state directory the answer is the same, and no
        // record is made.
        let nowhere = dir.path().join("no/state").join(PROBE_RECORD);
        let empty = std::sync::Mutex::new(BTreeMap::new());
        assert_eq!(carries_type(&nowhere, &at, fs, &empty).unwrap(), probed);
        assert!(!nowhere.exists() && !dir.path().join("no").exists());
    }

    #[test]
    fn the_overlay_reason_names_the_overlays_directory_and_stays_the_same() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(crate::layout::STATE_DIR)).unwrap();
        let first = can_overlay(root.path());
        // Asked again (the answer now kept), and after the overlays
        // directory is made: the same answer, word for word.
        assert_eq!(can_overlay(root.path()), first);
        std::fs::create_dir_all(root.path().join(crate::layout::OVERLAYS)).unwrap();
        assert_eq!(can_overlay(root.path()), first);
        if let Err(why) = &first {
            assert!(!why.contains("ctm-overlay-probe"), "{why}");
        }
    }

    #[test]
    fn size_counts_blocks_and_entries() {
        let root = tempfile::tempdir().unwrap();
        let tree = make_tree(root.path(), "web");
        std::fs::write(tree.join("big"), vec![1u8; 64 * 1024]).unwrap();
        let (bytes, files) = size(&tree);
        assert_eq!(files, 3);
        assert!(bytes >= 64 * 1024, "{bytes}");
    }
}
