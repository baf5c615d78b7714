//! Volumes: the directories ctm makes for containers' data, their quotas,
//! and ctm's records of them.
//!
//! A volume lives at `var/lib/ctm/volumes/NAME` (`layout::volume_dir`): a
//! btrfs subvolume where that directory is on btrfs, a plain directory
//! otherwise. ctm records each volume it makes, like the root file systems
//! it makes (`rootfs`): `var/lib/ctm/volume-records/NAME.json` holds the
//! directory's inode and birth time, so that a directory someone later
//! puts at the same path is not taken for ctm's (a btrfs subvolume's root
//! is always inode 256: the birth time tells two apart). Only a recorded
//! volume is ever deleted (`--prune`), in two steps like a root file
//! system: set aside within the switch, purged once it is committed.
//!
//! Quotas: on btrfs a qgroup limit (`btrfs quota enable`, then `btrfs
//! qgroup limit`); on XFS, and on ext4 with project quotas, mounted with
//! `prjquota`, a project quota: the directory gets a project ID of its own
//! that what is made in it inherits (`FS_IOC_FSSETXATTR`), and the
//! project a block limit (`quotactl_fd`, Linux 5.14). Anywhere else a
//! quota is refused at plan time ([`quota_support`]).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::statfs;
use serde::{Deserialize, Serialize};

use super::{Progress, SystemError, btrfs, rootfs};
use crate::compile::health::VolumeHealth;
use crate::fs;
use crate::layout::{VOLUME_RECORDS, VOLUMES};
use crate::plan::{Action, Present, QuotaSupport, VolumesState};

const NEW_SUFFIX: &str = ".ctm-new";
const SET_ASIDE_PREFIX: &str = ".#";
const SET_ASIDE_SUFFIX: &str = ".ctm-removed";
/// Project IDs ctm gives volumes start here, far from the small numbers
/// people pick in /etc/projid.
const FIRST_PROJECT: u32 = 0x6374_0000;

/// What a volume is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    BtrfsSubvolume,
    Directory,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::BtrfsSubvolume => "btrfs subvolume",
            Kind::Directory => "directory",
        }
    }
}

/// ctm's record of a volume it made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Made {
    pub kind: Kind,
    /// The directory's inode and birth time (nanoseconds since the epoch,
    /// where the file system keeps one): a rename keeps both.
    pub inode: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub born: Option<u128>,
    /// When ctm made it (Unix seconds).
    pub created: u64,
    /// The quota ctm set, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    /// Its project ID, when its quota is a project quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<u32>,
}

fn error(what: impl Into<String>, why: impl std::fmt::Display) -> SystemError {
    SystemError {
        what: what.into(),
        why: why.to_string(),
    }
}

/// Where volume `name` is, under `root`.
pub fn path(root: &Path, name: &str) -> PathBuf {
    root.join(VOLUMES).join(name)
}

/// Where a volume is made before it is renamed into place: `.#` as no
/// volume name starts with a dot, so it is never another volume's path.
fn new_path(root: &Path, name: &str) -> PathBuf {
    root.join(VOLUMES).join(format!(".#{name}{NEW_SUFFIX}"))
}

fn set_aside_path(root: &Path, name: &str) -> PathBuf {
    root.join(VOLUMES)
        .join(format!("{SET_ASIDE_PREFIX}{name}{SET_ASIDE_SUFFIX}"))
}

fn record_path(root: &Path, name: &str) -> PathBuf {
    root.join(VOLUME_RECORDS).join(format!("{name}.json"))
}

/// A directory's identity: inode and birth time.
fn identity(path: &Path) -> Option<(u64, Option<u128>)> {
    let meta = std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_dir())?;
    let born = meta
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos());
    Some((meta.ino(), born))
}

fn read_record(root: &Path, name: &str) -> Option<Made> {
    let text = std::fs::read(record_path(root, name)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn write_record(root: &Path, name: &str, made: &Made) -> Result<(), SystemError> {
    // Plain data: serializing it cannot fail.
    let text = serde_json::to_vec_pretty(made).unwrap_or_default();
    fs::write_file(&record_path(root, name), &text, 0o644)
        .map_err(|e| error(format!("recording volume {name}"), e))
}

/// The record of volume `name`, if ctm made the directory that is at
/// `at` (its path, or where it was set aside).
fn made_at(root: &Path, name: &str, at: &Path) -> Option<Made> {
    let made = read_record(root, name)?;
    (identity(at) == Some((made.inode, made.born))).then_some(made)
}

/// The record of volume `name`, if ctm made the directory there now.
pub fn made_by_ctm(root: &Path, name: &str) -> Option<Made> {
    made_at(root, name, &path(root, name))
}

// ---- the file system ---------------------------------------------------------

/// The file system a path is on, or would be: its nearest existing
/// ancestor's (the volumes directory is made by the first volume).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSystem {
    /// `btrfs`, `xfs`, `ext4`, `tmpfs`, `overlayfs`, or the magic number.
    pub name: String,
    /// Its mount's super options (`prjquota`), from /proc/self/mountinfo.
    pub options: Vec<String>,
    /// The nearest existing directory, which was asked.
    pub at: PathBuf,
}

pub fn file_system(path: &Path) -> Result<FileSystem, SystemError> {
    let at = path
        .ancestors()
        .find(|p| p.is_dir())
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    let found = statfs::statfs(&at)
        .map_err(|e| error(format!("reading the file system of {}", at.display()), e))?;
    let kind = found.filesystem_type();
    let name = [
        (statfs::BTRFS_SUPER_MAGIC, "btrfs"),
        (statfs::XFS_SUPER_MAGIC, "xfs"),
        (statfs::EXT4_SUPER_MAGIC, "ext4"),
        (statfs::TMPFS_MAGIC, "tmpfs"),
        (statfs::OVERLAYFS_SUPER_MAGIC, "overlayfs"),
    ]
    .iter()
    .find(|(magic, _)| *magic == kind)
    .map_or_else(|| format!("{:#x}", kind.0), |(_, n)| n.to_string());
    let options = std::fs::metadata(&at)
        .ok()
        .and_then(|m| mount_options(m.dev()))
        .unwrap_or_default();
    Ok(FileSystem { name, options, at })
}

/// The super options of the mount of device `dev` (a `stat`'s `st_dev`).
fn mount_options(dev: u64) -> Option<Vec<String>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let wanted = format!(
        "{}:{}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    text.lines()
        .find_map(|line| mountinfo_options(line, &wanted))
}

/// A mountinfo line's super options, if it is of device `wanted`
/// (`MAJOR:MINOR`): `36 35 98:0 / /mnt rw - xfs /dev/loop0 rw,prjquota`.
fn mountinfo_options(line: &str, wanted: &str) -> Option<Vec<String>> {
    let mut fields = line.split(' ');
    if fields.nth(2)? != wanted {
        return None;
    }
    let (_, after) = line.split_once(" - ")?;
    let options = after.split(' ').nth(2)?;
    Some(options.split(',').map(str::to_string).collect())
}

/// Whether, and how, a quota can be enforced on `fs`. `btrfs_tool`: the
/// `btrfs` command is there.
pub fn quota_support(fs: &FileSystem, btrfs_tool: bool) -> QuotaSupport {
    let project = fs.options.iter().any(|o| o == "prjquota" || o == "pquota");
    let unsupported = |reason: String| QuotaSupport::Unsupported { reason };
    match fs.name.as_str() {
        "btrfs" if btrfs_tool => QuotaSupport::Btrfs,
        "btrfs" => unsupported(
            "the volumes are on btrfs, but the `btrfs` command (btrfs-progs) is not installed"
                .into(),
        ),
        "xfs" | "ext4" if project => QuotaSupport::Project,
        "xfs" => unsupported(format!(
            "the volumes are on XFS ({}) mounted without project quotas; mount it with `prjquota`",
            fs.at.display()
        )),
        "ext4" => unsupported(format!(
            "the volumes are on ext4 ({}) mounted without project quotas; enable them \
             (`tune2fs -O project,quota` unmounted) and mount it with `prjquota`",
            fs.at.display()
        )),
        other => unsupported(format!(
            "the volumes are on {other} ({}), which has no quotas ctm can set; put {} on btrfs, \
             or on XFS or ext4 mounted with `prjquota`",
            fs.at.display(),
            format_args!("/{VOLUMES}")
        )),
    }
}

/// What the plan needs of the volumes: their file system, how it takes a
/// quota, and what is at each wanted volume's path and every recorded
/// one's. `None` when there are neither wanted nor recorded volumes, so
/// that a host without volumes is planned exactly as before.
pub fn observe(
    root: &Path,
    wanted: &BTreeMap<String, VolumeHealth>,
) -> Result<Option<VolumesState>, SystemError> {
    let recorded = recorded(root);
    if wanted.is_empty() && recorded.is_empty() {
        return Ok(None);
    }
    let fs = file_system(&root.join(VOLUMES))?;
    let quota = quota_support(&fs, btrfs::available());
    let mut present = BTreeMap::new();
    let mut no_quota = BTreeMap::new();
    for name in wanted.keys().chain(&recorded) {
        let entry = match made_by_ctm(root, name) {
            Some(made) => {
                if made.kind == Kind::Directory && quota == QuotaSupport::Btrfs {
                    no_quota.insert(
                        name.clone(),
                        format!(
                            "volume {name} is a plain directory on btrfs (made where btrfs-progs was \
                             missing), and btrfs limits subvolumes only; make a new volume and move \
                             its data there"
                        ),
                    );
                }
                Present::Ctm { quota: made.quota }
            }
            None if path(root, name).symlink_metadata().is_ok() => Present::Other,
            None => continue,
        };
        present.insert(name.clone(), entry);
    }
    Ok(Some(VolumesState {
        fs: fs.name,
        quota,
        present,
        no_quota,
    }))
}

/// The names of the volumes ctm has records of (whether or not their
/// directory is still there).
fn recorded(root: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(root.join(VOLUME_RECORDS)) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".json")?.to_string();
            crate::model::Name::parse(&name).ok()?;
            Some(name)
        })
        .collect()
}

/// The volumes ctm made that are there now, with their records.
pub fn made_volumes(root: &Path) -> BTreeMap<String, Made> {
    recorded(root)
        .into_iter()
        .filter_map(|name| made_by_ctm(root, &name).map(|made| (name, made)))
        .collect()
}

// ---- making and changing -------------------------------------------------------

/// Performs `action` if it is one of the volumes' (`None` otherwise):
/// the running system and a files-only root alike, as a volume is a
/// directory under the root that ctm manages.
pub fn perform(
    root: &Path,
    action: &Action,
    progress: Progress<'_>,
) -> Option<Result<(), SystemError>> {
    Some(match action {
        Action::CreateVolume { name, quota, .. } => create(root, name, *quota, progress),
        Action::SetVolumeQuota { name, quota, .. } => set_quota(root, name, *quota, progress),
        Action::RemoveVolume { name, .. } => set_aside(root, name),
        Action::RestoreVolume { name, .. } => put_back(root, name),
        _ => return None,
    })
}

/// Makes volume `name` with `quota` and records it as ctm's. It is made
/// under a temporary name, given its quota, recorded, and only then
/// renamed into place: a crash leaves no volume half made at its path
/// (a record without its directory is ignored, and the leftover is
/// removed by the next try).
pub fn create(
    root: &Path,
    name: &str,
    quota: Option<u64>,
    progress: Progress<'_>,
) -> Result<(), SystemError> {
    let target = path(root, name);
    let what = || format!("creating volume {name} at {}", target.display());
    if made_by_ctm(root, name).is_some() {
        return Ok(());
    }
    if target.symlink_metadata().is_ok() {
        return Err(error(
            what(),
            "something ctm did not make is at its path; move it away",
        ));
    }
    let dir = root.join(VOLUMES);
    fs::create_dirs(&dir).map_err(|e| error(what(), e))?;
    let fs = file_system(&dir)?;
    let new = new_path(root, name);
    if new.symlink_metadata().is_ok() {
        // Left by a try that died: only ctm makes this name.
        delete(&new, Kind::BtrfsSubvolume, progress)
            .or_else(|_| delete(&new, Kind::Directory, progress))?;
    }
    let kind = if fs.name == "btrfs" && btrfs::available() {
        btrfs::run(
            &["subvolume", "create", &new.display().to_string()],
            progress,
        )?;
        Kind::BtrfsSubvolume
    } else {
        std::fs::create_dir(&new).map_err(|e| error(what(), e))?;
        Kind::Directory
    };
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| error(what(), e))?;
    let (inode, born) = identity(&new).ok_or_else(|| error(what(), "it vanished"))?;
    let mut made = Made {
        kind,
        inode,
        born,
        created: crate::clock::now_unix(),
        quota: None,
        project: None,
    };
    if let Some(bytes) = quota {
        limit(root, &new, &fs, &mut made, Some(bytes), progress)?;
    }
    write_record(root, name, &made)?;
    fs::rename(&new, &target).map_err(|e| error(what(), e))?;
    progress(&format!(
        "created volume {name} ({}{})",
        kind.describe(),
        quota.map_or(String::new(), |q| format!(
            ", quota {}",
            crate::model::size_text(q)
        ))
    ));
    Ok(())
}

/// Sets volume `name`'s quota (`None`: no limit) and records it.
pub fn set_quota(
    root: &Path,
    name: &str,
    quota: Option<u64>,
    progress: Progress<'_>,
) -> Result<(), SystemError> {
    let target = path(root, name);
    let mut made = made_by_ctm(root, name).ok_or_else(|| {
        error(
            format!("setting the quota of volume {name}"),
            "ctm did not make the directory at its path",
        )
    })?;
    let fs = file_system(&target)?;
    limit(root, &target, &fs, &mut made, quota, progress)?;
    write_record(root, name, &made)
}

/// Sets the limit of the volume at `dir`, noting it in `made`.
fn limit(
    root: &Path,
    dir: &Path,
    fs: &FileSystem,
    made: &mut Made,
    quota: Option<u64>,
    progress: Progress<'_>,
) -> Result<(), SystemError> {
    match (made.kind, quota_support(fs, btrfs::available())) {
        (Kind::BtrfsSubvolume, QuotaSupport::Btrfs) => {
            let dir = dir.display().to_string();
            if quota.is_some() {
                // Once per file system; a no-op when quotas are on.
                btrfs::run(&["quota", "enable", &dir], progress)?;
            }
            let size = quota.map_or("none".to_string(), |q| q.to_string());
            btrfs::run(&["qgroup", "limit", &size, &dir], progress)?;
        }
        (Kind::Directory, QuotaSupport::Project) => {
            let project = match made.project {
                Some(id) => id,
                None => next_project(root),
            };
            project::assign(dir, project)?;
            project::set_limit(dir, project, quota.unwrap_or(0))?;
            made.project = Some(project);
        }
        (_, QuotaSupport::Unsupported { reason }) if quota.is_some() => {
            return Err(error(
                format!("setting a quota on {}", dir.display()),
                reason,
            ));
        }
        (_, QuotaSupport::Unsupported { .. }) => {}
        (kind, _) => {
            return Err(error(
                format!("setting a quota on {}", dir.display()),
                format!(
                    "it is a {} on {}, which takes no quota of that kind",
                    kind.describe(),
                    fs.name
                ),
            ));
        }
    }
    made.quota = quota;
    Ok(())
}

/// A project ID no volume of ctm's has, nor /etc/projid names.
fn next_project(root: &Path) -> u32 {
    let mut taken: BTreeSet<u32> = recorded(root)
        .iter()
        .filter_map(|name| read_record(root, name)?.project)
        .collect();
    if let Ok(text) = std::fs::read_to_string(root.join("etc/projid")) {
        taken.extend(
            text.lines()
                .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u32>().ok()),
        );
    }
    (FIRST_PROJECT..)
        .find(|id| !taken.contains(id))
        .unwrap_or(FIRST_PROJECT)
}

/// A volume ctm made, as `ctm status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    pub kind: Kind,
    /// The quota ctm set, in bytes.
    pub quota: Option<u64>,
    /// What it holds, in bytes.
    pub used: u64,
}

/// How long a `du`-like count of a volume is reused: `ctm serve` asks
/// for the status every few seconds, and walking a large volume that
/// often would cost more than the figure is worth.
const COUNT_REUSED_FOR: Duration = Duration::from_secs(60);

/// Counts already made, by volume path, with when and of which tree
/// (inode and birth time: a restored volume is counted afresh).
type Counts = BTreeMap<PathBuf, (Instant, (u64, Option<u128>), u64)>;

static COUNTS: Mutex<Counts> = Mutex::new(BTreeMap::new());

/// Every volume ctm made that is there, with what it holds: its
/// project's usage where it has a project quota (the kernel's own count),
/// else the blocks of its files counted like `du` (not crossing into
/// another file system; reused for a minute).
pub fn measure(root: &Path) -> BTreeMap<String, Measured> {
    made_volumes(root)
        .into_iter()
        .map(|(name, made)| {
            let dir = path(root, &name);
            let used = made
                .project
                .and_then(|project| project::usage(&dir, project).ok())
                .unwrap_or_else(|| counted(&dir, (made.inode, made.born)));
            let measured = Measured {
                kind: made.kind,
                quota: made.quota,
                used,
            };
            (name, measured)
        })
        .collect()
}

fn counted(dir: &Path, tree: (u64, Option<u128>)) -> u64 {
    let mut counts = COUNTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((at, of, bytes)) = counts.get(dir)
        && *of == tree
        && at.elapsed() < COUNT_REUSED_FOR
    {
        return *bytes;
    }
    let bytes = rootfs::size(dir).0;
    counts.insert(dir.to_path_buf(), (Instant::now(), tree, bytes));
    bytes
}

/// Makes the tree at `staged` (an archive's volume, unpacked) volume
/// `name`, recorded as ctm's, without a quota (the next apply sets the
/// host file's). Refused if anything is at the volume's path: the rename
/// never replaces (`RENAME_NOREPLACE`).
pub fn adopt(root: &Path, name: &str, staged: &Path) -> Result<(), SystemError> {
    let target = path(root, name);
    let what = || format!("importing volume {name} at {}", target.display());
    let (inode, born) = identity(staged).ok_or_else(|| error(what(), "the tree is gone"))?;
    let kind = if btrfs::is_subvolume(staged) {
        Kind::BtrfsSubvolume
    } else {
        Kind::Directory
    };
    let made = Made {
        kind,
        inode,
        born,
        created: crate::clock::now_unix(),
        quota: None,
        project: None,
    };
    fs::create_dirs(&root.join(VOLUME_RECORDS)).map_err(|e| error(what(), e))?;
    write_record(root, name, &made)?;
    nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        staged,
        nix::fcntl::AT_FDCWD,
        &target,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(|e| error(what(), e))?;
    fs::fsync_dir(&root.join(VOLUMES)).map_err(|e| error(what(), e))
}

/// Puts the tree at `staged` (a copy from a snapshot, on the same file
/// system) in the place of volume `name`, at once: what was the volume is
/// at `staged` afterwards. The volume stays ctm's, with its quota, which
/// is set again on the new tree (a qgroup or project belongs to a tree).
pub fn replace(
    root: &Path,
    name: &str,
    staged: &Path,
    progress: Progress<'_>,
) -> Result<(), SystemError> {
    let target = path(root, name);
    let what = || format!("restoring volume {name}");
    let mut made = made_by_ctm(root, name)
        .ok_or_else(|| error(what(), "ctm did not make the directory at its path"))?;
    let (inode, born) = identity(staged).ok_or_else(|| error(what(), "the copy is gone"))?;
    let kind = if btrfs::is_subvolume(staged) {
        Kind::BtrfsSubvolume
    } else {
        Kind::Directory
    };
    let previous = made.clone();
    made.inode = inode;
    made.born = born;
    made.kind = kind;
    // Recorded first, like a new volume: the record never names a tree
    // that was not whole.
    write_record(root, name, &made)?;
    if let Err(e) = super::snapshots::exchange(&target, staged) {
        write_record(root, name, &previous)?;
        return Err(e);
    }
    if let Some(quota) = made.quota {
        let fs = file_system(&target)?;
        if let Some(project) = made.project {
            // A copy's files have no project: all of them are given it.
            project::assign_tree(&target, project)?;
        }
        limit(root, &target, &fs, &mut made, Some(quota), progress)?;
        write_record(root, name, &made)?;
    }
    Ok(())
}

// ---- deleting (`--prune`) ------------------------------------------------------

/// Moves volume `name` out of the way, to be purged once the change that
/// removes it is committed. Only a volume ctm made; done already is fine.
pub fn set_aside(root: &Path, name: &str) -> Result<(), SystemError> {
    let from = path(root, name);
    let to = set_aside_path(root, name);
    let what = || format!("setting aside volume {name}");
    if made_by_ctm(root, name).is_none() {
        return if made_at(root, name, &to).is_some() {
            Ok(())
        } else {
            Err(error(what(), "ctm did not make the directory at its path"))
        };
    }
    if to.symlink_metadata().is_ok() {
        return Err(error(
            what(),
            format!("{} is in the way; remove it first", to.display()),
        ));
    }
    fs::rename(&from, &to).map_err(|e| error(what(), e))
}

/// Undoes [`set_aside`]. Nothing set aside is fine.
pub fn put_back(root: &Path, name: &str) -> Result<(), SystemError> {
    let from = set_aside_path(root, name);
    let to = path(root, name);
    if from.symlink_metadata().is_err() {
        return Ok(());
    }
    if to.symlink_metadata().is_ok() {
        return Err(error(
            format!("putting back volume {name}"),
            format!(
                "something is at its path again; the old volume stays at {}",
                from.display()
            ),
        ));
    }
    fs::rename(&from, &to).map_err(|e| error(format!("putting back volume {name}"), e))
}

/// Deletes every volume set aside that ctm made, with its record.
/// Returns what could not be deleted; the next purge tries again.
pub fn purge(root: &Path, progress: Progress<'_>) -> Vec<SystemError> {
    let mut problems = Vec::new();
    for name in recorded(root) {
        let aside = set_aside_path(root, &name);
        let Some(made) = made_at(root, &name, &aside) else {
            continue;
        };
        match delete(&aside, made.kind, progress) {
            Ok(()) => {
                if let Err(e) = fs::remove(&record_path(root, &name)) {
                    problems.push(error(format!("forgetting volume {name}"), e));
                }
            }
            Err(e) => problems.push(e),
        }
    }
    problems
}

fn delete(dir: &Path, kind: Kind, progress: Progress<'_>) -> Result<(), SystemError> {
    match kind {
        Kind::BtrfsSubvolume => btrfs::run(
            &["subvolume", "delete", &dir.display().to_string()],
            progress,
        ),
        Kind::Directory => rootfs::purge_one(dir, progress),
    }
}

/// Project quotas through the kernel's own interfaces: the project ID of
/// a directory (`FS_IOC_FSGETXATTR`/`FS_IOC_FSSETXATTR`, as `xfs_io -c
/// chproj` and `chattr -p` set it) and the project's limit and usage
/// (`quotactl_fd`, on any file of the file system, so no device path is
/// needed: a loop device or a device mapper name would do as well).
mod project {
    use super::*;
    use nix::libc;

    /// `struct fsxattr` of linux/fs.h.
    #[repr(C)]
    #[derive(Default)]
    pub struct FsXattr {
        xflags: u32,
        extsize: u32,
        nextents: u32,
        projid: u32,
        cowextsize: u32,
        pad: [u8; 8],
    }

    nix::ioctl_read!(get_xattr, b'X', 31, FsXattr);
    nix::ioctl_write_ptr!(set_xattr, b'X', 32, FsXattr);

    /// New files and directories take the directory's project ID.
    const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;
    const Q_GETQUOTA: u32 = 0x80_0007;
    const Q_SETQUOTA: u32 = 0x80_0008;
    const PRJQUOTA: u32 = 2;
    /// `dqb_bhardlimit` and `dqb_bsoftlimit` are set.
    const QIF_BLIMITS: u32 = 1;

    fn qcmd(cmd: u32) -> libc::c_int {
        ((cmd << 8) | PRJQUOTA) as libc::c_int
    }

    fn open(dir: &Path) -> Result<std::fs::File, SystemError> {
        std::fs::File::open(dir).map_err(|e| error(format!("opening {}", dir.display()), e))
    }

    /// Gives `dir` project `id`, inherited by what is made in it (a file
    /// takes the ID alone).
    pub fn assign(dir: &Path, id: u32) -> Result<(), SystemError> {
        let file = open(dir)?;
        let what = || format!("setting the project ID of {}", dir.display());
        let mut attr = FsXattr::default();
        // SAFETY: the fd is open for the call; `attr` is the kernel's
        // struct fsxattr, which the ioctl fills.
        unsafe { get_xattr(file.as_raw_fd(), &mut attr) }.map_err(|e| error(what(), e))?;
        attr.projid = id;
        if dir.is_dir() {
            attr.xflags |= FS_XFLAG_PROJINHERIT;
        }
        // SAFETY: as above; the kernel only reads `attr`.
        unsafe { set_xattr(file.as_raw_fd(), &attr) }.map_err(|e| error(what(), e))?;
        Ok(())
    }

    /// [`assign`] to `dir` and everything below it on its file system
    /// (files and directories; the kernel keeps no project on symlinks
    /// and devices).
    pub fn assign_tree(dir: &Path, id: u32) -> Result<(), SystemError> {
        assign(dir, id)?;
        let device = std::fs::metadata(dir)
            .map_err(|e| error(format!("reading {}", dir.display()), e))?
            .dev();
        let entries =
            std::fs::read_dir(dir).map_err(|e| error(format!("reading {}", dir.display()), e))?;
        for entry in entries.filter_map(Result::ok) {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.dev() != device {
                continue;
            }
            if meta.is_dir() {
                assign_tree(&entry.path(), id)?;
            } else if meta.is_file() {
                assign(&entry.path(), id)?;
            }
        }
        Ok(())
    }

    fn quotactl(dir: &Path, cmd: u32, id: u32, block: &mut libc::dqblk) -> std::io::Result<()> {
        let file = std::fs::File::open(dir)?;
        // SAFETY: quotactl_fd(2) with an open fd and a `struct if_dqblk`
        // (libc's `dqblk` has its layout), read or written by the kernel.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_quotactl_fd,
                file.as_raw_fd(),
                qcmd(cmd),
                id as libc::c_int,
                block as *mut libc::dqblk,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    fn empty() -> libc::dqblk {
        libc::dqblk {
            dqb_bhardlimit: 0,
            dqb_bsoftlimit: 0,
            dqb_curspace: 0,
            dqb_ihardlimit: 0,
            dqb_isoftlimit: 0,
            dqb_curinodes: 0,
            dqb_btime: 0,
            dqb_itime: 0,
            dqb_valid: 0,
        }
    }

    /// Limits project `id` to `bytes` (0: no limit), as hard and soft limit.
    pub fn set_limit(dir: &Path, id: u32, bytes: u64) -> Result<(), SystemError> {
        // The kernel counts limits in 1 KiB blocks (QIF_DQBLKSIZE).
        let blocks = bytes.div_ceil(1024);
        let mut block = libc::dqblk {
            dqb_bhardlimit: blocks,
            dqb_bsoftlimit: blocks,
            dqb_valid: QIF_BLIMITS,
            ..empty()
        };
        quotactl(dir, Q_SETQUOTA, id, &mut block).map_err(|e| {
            error(
                format!("setting the quota of project {id} ({})", dir.display()),
                e,
            )
        })
    }

    /// The bytes project `id` uses.
    pub fn usage(dir: &Path, id: u32) -> std::io::Result<u64> {
        let mut block = empty();
        quotactl(dir, Q_GETQUOTA, id, &mut block)?;
        Ok(block.dqb_curspace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume_health() -> BTreeMap<String, VolumeHealth> {
        BTreeMap::from([(
            "data".to_string(),
            VolumeHealth {
                quota: None,
                containers: vec!["db".into()],
                backup_to: None,
            },
        )])
    }

    #[test]
    fn mountinfo_lines_give_their_super_options() {
        let line =
            "36 35 7:0 / /mnt rw,relatime shared:1 - xfs /dev/loop0 rw,attr2,inode64,prjquota";
        assert_eq!(
            mountinfo_options(line, "7:0").unwrap(),
            ["rw", "attr2", "inode64", "prjquota"]
        );
        assert_eq!(mountinfo_options(line, "7:1"), None);
    }

    #[test]
    fn quota_support_by_file_system_and_options() {
        let fs = |name: &str, options: &[&str]| FileSystem {
            name: name.into(),
            options: options.iter().map(|o| o.to_string()).collect(),
            at: "/var/lib/ctm".into(),
        };
        assert_eq!(quota_support(&fs("btrfs", &[]), true), QuotaSupport::Btrfs);
        assert_eq!(
            quota_support(&fs("xfs", &["rw", "prjquota"]), false),
            QuotaSupport::Project
        );
        assert_eq!(
            quota_support(&fs("ext4", &["rw", "prjquota"]), false),
            QuotaSupport::Project
        );
        let reason = |support| match support {
            QuotaSupport::Unsupported { reason } => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason(quota_support(&fs("btrfs", &[]), false)).contains("btrfs-progs"));
        assert!(reason(quota_support(&fs("xfs", &["rw"]), true)).contains("`prjquota`"));
        assert!(reason(quota_support(&fs("ext4", &["rw"]), true)).contains("tune2fs"));
        let tmpfs = reason(quota_support(&fs("tmpfs", &["rw"]), true));
        assert_eq!(
            tmpfs,
            "the volumes are on tmpfs (/var/lib/ctm), which has no quotas ctm can set; put \
             /var/lib/ctm/volumes on btrfs, or on XFS or ext4 mounted with `prjquota`"
        );
    }

    #[test]
    fn a_host_without_volumes_reports_none() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(observe(root.path(), &BTreeMap::new()).unwrap(), None);
    }

    #[test]
    fn a_made_volume_is_ctms_until_another_directory_takes_its_place() {
        let root = tempfile::tempdir().unwrap();
        let wanted = volume_health();
        let state = observe(root.path(), &wanted).unwrap().unwrap();
        assert!(state.present.is_empty(), "{state:?}");
        // The nearest existing directory tells the file system.
        assert!(!state.fs.is_empty());

        let mut lines = Vec::new();
        create(root.path(), "data", None, &mut |l| {
            lines.push(l.to_string())
        })
        .unwrap();
        let dir = path(root.path(), "data");
        assert!(dir.is_dir());
        let made = made_by_ctm(root.path(), "data").unwrap();
        assert_eq!(made.quota, None);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(dir.metadata().unwrap().permissions().mode() & 0o7777, 0o755);
        assert!(!new_path(root.path(), "data").exists());
        // Again: nothing to do.
        create(root.path(), "data", None, &mut |_| {}).unwrap();
        let state = observe(root.path(), &wanted).unwrap().unwrap();
        assert_eq!(state.present["data"], Present::Ctm { quota: None });

        // Someone replaces it by hand: not ctm's any more, and never
        // deleted or made over.
        std::fs::rename(&dir, root.path().join("kept")).unwrap();
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(made_by_ctm(root.path(), "data"), None);
        let state = observe(root.path(), &wanted).unwrap().unwrap();
        assert_eq!(state.present["data"], Present::Other);
        let err = create(root.path(), "data", None, &mut |_| {}).unwrap_err();
        assert!(err.why.contains("move it away"), "{err}");
        let err = set_aside(root.path(), "data").unwrap_err();
        assert!(err.why.contains("did not make"), "{err}");
    }

    #[test]
    fn a_recorded_volume_no_longer_wanted_is_still_reported() {
        let root = tempfile::tempdir().unwrap();
        create(root.path(), "old", None, &mut |_| {}).unwrap();
        let state = observe(root.path(), &BTreeMap::new()).unwrap().unwrap();
        assert_eq!(
            state.present.keys().collect::<Vec<_>>(),
            ["old"],
            "{state:?}"
        );
    }

    #[test]
    fn set_aside_put_back_and_purge_touch_only_ctms_volumes() {
        let root = tempfile::tempdir().unwrap();
        create(root.path(), "old", None, &mut |_| {}).unwrap();
        std::fs::write(path(root.path(), "old").join("file"), "data").unwrap();
        set_aside(root.path(), "old").unwrap();
        set_aside(root.path(), "old").unwrap();
        assert!(!path(root.path(), "old").exists());
        put_back(root.path(), "old").unwrap();
        put_back(root.path(), "old").unwrap();
        assert_eq!(
            std::fs::read_to_string(path(root.path(), "old").join("file")).unwrap(),
            "data"
        );
        // A directory someone put beside it under a set-aside name is not
        // ctm's: a purge leaves it.
        let theirs = set_aside_path(root.path(), "theirs");
        std::fs::create_dir_all(&theirs).unwrap();
        set_aside(root.path(), "old").unwrap();
        let problems = purge(root.path(), &mut |_| {});
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!set_aside_path(root.path(), "old").exists());
        assert_eq!(read_record(root.path(), "old"), None);
        assert!(theirs.exists());
    }
}
