//! Snapshots of containers: copies of a root file system (and its
//! volumes) kept under `var/lib/ctm/snapshots/CONTAINER/ID/`, with a
//! record beside each (`ID.json`), and putting one back.
//!
//! A copy is a btrfs snapshot where the tree is a btrfs subvolume (with
//! the `btrfs` command), else `cp -a --reflink=auto`: GNU cp clones the
//! data where the file system offers it (btrfs, XFS with reflink) and
//! copies it otherwise, keeping owners, modes, times, ACLs and xattrs,
//! symlinks, device nodes and hard links, without crossing into another
//! file system. A copy is made under a temporary name and renamed into
//! place once complete, so a snapshot that exists is whole.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Progress, SystemError, btrfs, exec, rootfs};
use crate::fs;
use crate::layout::SNAPSHOTS;

/// A copy of a large tree takes long; a hung file system must not hang ctm.
const COPY_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
const PARTIAL_SUFFIX: &str = ".ctm-partial";

fn error(what: impl Into<String>, why: impl std::fmt::Display) -> SystemError {
    SystemError {
        what: what.into(),
        why: why.to_string(),
    }
}

/// How a tree was copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// `btrfs subvolume snapshot`: instant, shares every block.
    BtrfsSnapshot,
    /// `cp -a --reflink=auto`: clones where it can, copies otherwise.
    Copy,
}

/// ctm's record of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub container: String,
    pub id: String,
    /// When it was taken (Unix seconds).
    pub created: u64,
    /// Why: `ctm snapshot`, or kept by a restore.
    pub reason: String,
    /// The container ran and was frozen for the copy; false when it did
    /// not run or was stopped for it.
    pub frozen: bool,
    pub method: Method,
    /// The volumes copied with it (`--volumes`), by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// The size of what was copied (blocks, like `du`) and its entries.
    pub bytes: u64,
    pub files: u64,
}

pub fn container_dir(root: &Path, container: &str) -> PathBuf {
    root.join(SNAPSHOTS).join(container)
}

/// Where snapshot `id` of `container` keeps its trees.
pub fn dir(root: &Path, container: &str, id: &str) -> PathBuf {
    container_dir(root, container).join(id)
}

/// Where a snapshot keeps the container's root file system.
pub fn rootfs_in(root: &Path, container: &str, id: &str) -> PathBuf {
    dir(root, container, id).join("rootfs")
}

/// Where a snapshot keeps one of the container's volumes.
pub fn volume_in(root: &Path, container: &str, id: &str, volume: &str) -> PathBuf {
    dir(root, container, id).join("volumes").join(volume)
}

fn record_path(root: &Path, container: &str, id: &str) -> PathBuf {
    container_dir(root, container).join(format!("{id}.json"))
}

/// The snapshots of `container`, oldest first; one whose record is
/// unreadable or whose trees are gone is left out.
pub fn list(root: &Path, container: &str) -> Vec<Snapshot> {
    let Ok(entries) = std::fs::read_dir(container_dir(root, container)) else {
        return Vec::new();
    };
    let mut found: Vec<Snapshot> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let id = e.file_name().to_str()?.strip_suffix(".json")?.to_string();
            let text = std::fs::read(e.path()).ok()?;
            let snapshot: Snapshot = serde_json::from_slice(&text).ok()?;
            (snapshot.id == id && rootfs_in(root, container, &id).is_dir()).then_some(snapshot)
        })
        .collect();
    found.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    found
}

/// The containers that have snapshots.
pub fn containers(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.join(SNAPSHOTS)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| crate::model::Name::parse(n).is_ok())
        .collect();
    names.sort();
    names
}

/// A new snapshot's id: the time, `20261203T171500Z`, with `-2`, `-3`…
/// when that second has one already.
pub fn new_id(root: &Path, container: &str, now: u64) -> String {
    let base = crate::clock::rfc3339(now).replace(['-', ':'], "");
    let taken = |id: &str| {
        dir(root, container, id).symlink_metadata().is_ok()
            || record_path(root, container, id).exists()
    };
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|id| !taken(id))
        .unwrap_or(base)
}

/// Bytes free for an unprivileged writer where `path` is (or would be).
pub fn free_bytes(path: &Path) -> Result<u64, SystemError> {
    let at = path
        .ancestors()
        .find(|p| p.is_dir())
        .unwrap_or(Path::new("/"));
    fs::space(at)
        .map(|s| s.bytes)
        .map_err(|e| error(format!("asking for the free space at {}", at.display()), e))
}

/// Whether `path` is a btrfs subvolume `btrfs` can snapshot.
pub fn is_btrfs_subvolume(path: &Path) -> bool {
    btrfs::is_subvolume(path) && btrfs::available()
}

/// How `from` would be copied to `to`: a btrfs snapshot where `from` is
/// a subvolume and `to` on btrfs. (Whether both are on one btrfs file
/// system, which a snapshot needs, only `btrfs` itself can tell: where
/// they are not, [`copy_tree`] copies instead.)
pub fn method_for(from: &Path, to: &Path) -> Method {
    if is_btrfs_subvolume(from) && btrfs::on_btrfs(to) {
        Method::BtrfsSnapshot
    } else {
        Method::Copy
    }
}

/// Copies the tree at `from` to `to` (which must not exist), under a
/// temporary name renamed into place when complete; reports, every few
/// seconds, how much of `total` bytes is copied. With `subvolume`, the
/// copy is a btrfs subvolume where it lands on btrfs (a volume keeps its
/// kind, and with it its quota).
pub fn copy_tree(
    from: &Path,
    to: &Path,
    subvolume: bool,
    total: u64,
    progress: Progress<'_>,
) -> Result<Method, SystemError> {
    let what = || format!("copying {} to {}", from.display(), to.display());
    if to.symlink_metadata().is_ok() {
        return Err(error(what(), "the destination exists"));
    }
    let parent = to.parent().unwrap_or(Path::new("/"));
    fs::create_dirs(parent).map_err(|e| error(what(), e))?;
    // `.#`: no name of a container or volume starts with a dot.
    let file = to.file_name().and_then(|f| f.to_str()).unwrap_or("copy");
    let partial = to.with_file_name(format!(".#{file}{PARTIAL_SUFFIX}"));
    if partial.symlink_metadata().is_ok() {
        // Left by a copy that died: ctm alone makes this name.
        remove_tree(&partial, progress)?;
    }
    let method = method_for(from, to);
    let (from_text, partial_text) = (from.display().to_string(), partial.display().to_string());
    if method == Method::BtrfsSnapshot {
        match btrfs::run(
            &["subvolume", "snapshot", &from_text, &partial_text],
            &mut |_| {},
        ) {
            Ok(()) => {
                fs::rename(&partial, to).map_err(|e| error(what(), e))?;
                return Ok(method);
            }
            // Two btrfs file systems, for one: a copy does instead.
            Err(e) => progress(&format!("no btrfs snapshot ({}): copying instead", e.why)),
        }
    }
    if subvolume && btrfs::available() && btrfs::on_btrfs(parent) {
        // Made first, then filled: cp copies into it (-T).
        btrfs::run(&["subvolume", "create", &partial_text], &mut |_| {})?;
    }
    let argv: Vec<String> = [
        "cp",
        "--archive",
        "--reflink=auto",
        "--one-file-system",
        "--no-target-directory",
        "--",
        &from_text,
        &partial_text,
    ]
    .map(String::from)
    .into();
    let started = Instant::now();
    let ran = std::thread::scope(|scope| {
        let copying = scope.spawn(|| exec::on_host(&argv, COPY_TIMEOUT, &mut |_| {}));
        // cp says nothing while it works: what is copied so far is
        // measured beside it.
        let mut last = Instant::now();
        while !copying.is_finished() {
            std::thread::sleep(Duration::from_millis(100));
            if last.elapsed() >= Duration::from_secs(5) && !copying.is_finished() {
                last = Instant::now();
                let (bytes, files) = rootfs::size(&partial);
                progress(&format!(
                    "copied {:.1} of {:.1} MB ({files} files) in {:.0} s",
                    bytes as f64 / 1e6,
                    total as f64 / 1e6,
                    started.elapsed().as_secs_f64()
                ));
            }
        }
        copying
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    let ran = ran?;
    if !ran.success() {
        let _ = remove_tree(&partial, &mut |_| {});
        return Err(error(
            what(),
            format!("`{}`: {}; {}", argv[0], ran.describe(), ran.tail(10)),
        ));
    }
    fs::rename(&partial, to).map_err(|e| error(what(), e))?;
    Ok(Method::Copy)
}

/// Makes an empty tree at `at` (which must not exist): a btrfs subvolume
/// with `subvolume` where `at` is on btrfs, a directory otherwise.
pub fn make_tree(at: &Path, subvolume: bool) -> Result<(), SystemError> {
    let parent = at.parent().unwrap_or(Path::new("/"));
    fs::create_dirs(parent).map_err(|e| error(format!("creating {}", at.display()), e))?;
    if subvolume && btrfs::available() && btrfs::on_btrfs(parent) {
        return btrfs::run(
            &["subvolume", "create", &at.display().to_string()],
            &mut |_| {},
        );
    }
    std::fs::create_dir(at).map_err(|e| error(format!("creating {}", at.display()), e))
}

/// Deletes a tree ctm made (a copy, or a snapshot's): a btrfs subvolume
/// with `btrfs subvolume delete`, anything else with `rm
/// --one-file-system`.
pub fn remove_tree(path: &Path, progress: Progress<'_>) -> Result<(), SystemError> {
    rootfs::purge_one(path, progress)
}

/// Deletes what there is of snapshot `id`'s trees, each as the kind of
/// tree it is (a btrfs snapshot inside is a file system boundary that `rm
/// --one-file-system` stops at), and its record.
pub fn delete(
    root: &Path,
    container: &str,
    id: &str,
    progress: Progress<'_>,
) -> Result<(), SystemError> {
    let dir = dir(root, container, id);
    let mut trees = vec![rootfs_in(root, container, id)];
    if let Ok(entries) = std::fs::read_dir(dir.join("volumes")) {
        trees.extend(entries.filter_map(Result::ok).map(|e| e.path()));
    }
    for tree in trees.iter().filter(|t| t.symlink_metadata().is_ok()) {
        remove_tree(tree, progress)?;
    }
    if dir.symlink_metadata().is_ok() {
        remove_tree(&dir, progress)?;
    }
    let record = record_path(root, container, id);
    if record.exists() {
        fs::remove(&record).map_err(|e| error(format!("forgetting snapshot {id}"), e))?;
    }
    Ok(())
}

/// Records `snapshot`, whose trees are in place.
pub fn record(root: &Path, snapshot: &Snapshot) -> Result<(), SystemError> {
    // Plain data: serializing it cannot fail.
    let text = serde_json::to_vec_pretty(snapshot).unwrap_or_default();
    fs::write_file(
        &record_path(root, &snapshot.container, &snapshot.id),
        &text,
        0o644,
    )
    .map_err(|e| error(format!("recording snapshot {}", snapshot.id), e))
}

/// Puts `replacement` where `current` is, at once (`renameat2` with
/// `RENAME_EXCHANGE`): there is never a moment without a tree at
/// `current`. What was there is at `replacement` afterwards.
pub fn exchange(current: &Path, replacement: &Path) -> Result<(), SystemError> {
    nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        current,
        nix::fcntl::AT_FDCWD,
        replacement,
        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
    )
    .map_err(|e| {
        error(
            format!(
                "exchanging {} and {}",
                current.display(),
                replacement.display()
            ),
            e,
        )
    })?;
    if let Some(parent) = current.parent() {
        fs::fsync_dir(parent).map_err(|e| error("syncing the exchange", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    #[test]
    fn a_copy_keeps_modes_owners_symlinks_and_hard_links() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        std::fs::create_dir_all(from.join("etc")).unwrap();
        std::fs::write(from.join("etc/secret"), "s").unwrap();
        std::fs::set_permissions(
            from.join("etc/secret"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::hard_link(from.join("etc/secret"), from.join("etc/again")).unwrap();
        std::os::unix::fs::symlink("/etc/secret", from.join("link")).unwrap();
        nix::unistd::chown(
            &from.join("etc/secret"),
            Some(nix::unistd::Uid::from_raw(1234)),
            Some(nix::unistd::Gid::from_raw(1234)),
        )
        .ok();
        let to = dir.path().join("snap/rootfs");
        let mut lines = Vec::new();
        let method = copy_tree(&from, &to, false, 1, &mut |l| lines.push(l.to_string())).unwrap();
        assert_eq!(method, Method::Copy);
        let meta = |p: &str| std::fs::symlink_metadata(to.join(p)).unwrap();
        let original = std::fs::metadata(from.join("etc/secret")).unwrap();
        assert_eq!(meta("etc/secret").permissions().mode() & 0o7777, 0o600);
        assert_eq!(meta("etc/secret").uid(), original.uid());
        assert_eq!(meta("etc/secret").ino(), meta("etc/again").ino());
        assert_eq!(
            std::fs::read_link(to.join("link")).unwrap(),
            Path::new("/etc/secret")
        );
        assert!(
            !to.with_file_name(format!(".#rootfs{PARTIAL_SUFFIX}"))
                .exists()
        );
        // Never over something that is there.
        let err = copy_tree(&from, &to, false, 1, &mut |_| {}).unwrap_err();
        assert!(err.why.contains("exists"), "{err}");
    }

    #[test]
    fn ids_are_times_and_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let id = new_id(dir.path(), "web", 1_764_782_100);
        assert_eq!(id, "20251203T171500Z");
        std::fs::create_dir_all(super::dir(dir.path(), "web", &id)).unwrap();
        assert_eq!(
            new_id(dir.path(), "web", 1_764_782_100),
            "20251203T171500Z-2"
        );
    }

    #[test]
    fn a_listing_holds_recorded_snapshots_with_their_trees_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (id, created) in [("b", 2), ("a", 1), ("gone", 3)] {
            let snapshot = Snapshot {
                container: "web".into(),
                id: id.into(),
                created,
                reason: "test".into(),
                frozen: false,
                method: Method::Copy,
                volumes: Vec::new(),
                bytes: 0,
                files: 0,
            };
            record(root, &snapshot).unwrap();
            if id != "gone" {
                std::fs::create_dir_all(rootfs_in(root, "web", id)).unwrap();
            }
        }
        let ids: Vec<String> = list(root, "web").into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(containers(root), ["web"]);
    }

    #[test]
    fn an_exchange_swaps_two_trees() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::write(a.join("which"), "a").unwrap();
        std::fs::create_dir(&b).unwrap();
        std::fs::write(b.join("which"), "b").unwrap();
        exchange(&a, &b).unwrap();
        assert_eq!(std::fs::read_to_string(a.join("which")).unwrap(), "b");
        assert_eq!(std::fs::read_to_string(b.join("which")).unwrap(), "a");
    }
}
