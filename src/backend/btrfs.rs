//! What volumes and snapshots ask of btrfs: whether a path is on btrfs or
//! is a subvolume, and the `btrfs` command (btrfs-progs, the tool the
//! file system's own developers keep, rather than its ioctls by hand).

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

use nix::sys::statfs;

use super::{Progress, SystemError, exec};

/// `btrfs` answers in moments, but a snapshot or delete of a large tree
/// may take long; a hung file system must not hang ctm for ever.
const TIMEOUT: Duration = Duration::from_secs(3600);

/// The `btrfs` command is installed.
pub fn available() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("btrfs").is_file()))
}

/// `path`, or the nearest ancestor that exists, is on btrfs.
pub fn on_btrfs(path: &Path) -> bool {
    path.ancestors().find(|a| a.exists()).is_some_and(|a| {
        statfs::statfs(a).is_ok_and(|s| s.filesystem_type() == statfs::BTRFS_SUPER_MAGIC)
    })
}

/// `path` is the root of a btrfs subvolume (inode 256 on btrfs).
pub fn is_subvolume(path: &Path) -> bool {
    let on_btrfs =
        statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == statfs::BTRFS_SUPER_MAGIC);
    on_btrfs && std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.ino() == 256)
}

/// Runs `btrfs ARGS…`; its output goes to `progress`.
pub fn run(args: &[&str], progress: Progress<'_>) -> Result<(), SystemError> {
    let mut argv = vec!["btrfs".to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let ran = exec::on_host(&argv, TIMEOUT, &mut |line| progress(line))?;
    if ran.success() {
        Ok(())
    } else {
        Err(SystemError {
            what: format!("`{}`", argv.join(" ")),
            why: format!("{}; {}", ran.describe(), ran.tail(10)),
        })
    }
}
