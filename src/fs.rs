//! The file system, under a root: reading what is at a path, and replacing
//! it atomically (write a temporary file, fsync, rename, fsync the
//! directory), so that a crash leaves either the old or the new file,
//! never half of one. Every error names the path it is about.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// An I/O failure and the path it happened at.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot {action} {}", path.display())]
#[diagnostic(code(ctm::io))]
pub struct IoError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

pub type Result<T> = std::result::Result<T, IoError>;

pub fn context<T>(result: io::Result<T>, action: &'static str, path: &Path) -> Result<T> {
    result.map_err(|source| IoError {
        action,
        path: path.to_path_buf(),
        source,
    })
}

/// What is at a path: the unit plan and apply compare and restore.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Entry {
    Absent,
    File {
        sha256: String,
        mode: u32,
    },
    Symlink {
        target: String,
    },
    /// A directory, device or socket: never ctm's, never touched.
    Other,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Bytes in lower-case hexadecimal (a digest as sha256sum prints it).
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

/// Reads what is at `path` (without following a final symlink), with the
/// file's bytes when it is a regular file.
///
/// One `open` with `O_NOFOLLOW` tells a symlink (`ELOOP`) and a missing
/// path apart from a file without a separate `lstat`: a plan reads every
/// file ctm manages, and the system calls are most of its cost.
/// `O_NONBLOCK` keeps a FIFO at the path from blocking the open.
pub fn read_entry(path: &Path) -> Result<(Entry, Option<Vec<u8>>)> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path);
    let mut file = match opened {
        Ok(file) => file,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(nix::libc::ENOTDIR) =>
        {
            return Ok((Entry::Absent, None));
        }
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            let target = context(fs::read_link(path), "read symlink", path)?;
            return Ok((
                Entry::Symlink {
                    target: target.to_string_lossy().into_owned(),
                },
                None,
            ));
        }
        Err(e) => return context(Err(e), "open", path),
    };
    let meta = context(file.metadata(), "inspect", path)?;
    if !meta.is_file() {
        return Ok((Entry::Other, None));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0) + 1);
    context(file.read_to_end(&mut bytes), "read", path)?;
    Ok((
        Entry::File {
            sha256: sha256_hex(&bytes),
            mode: meta.permissions().mode() & 0o7777,
        },
        Some(bytes),
    ))
}

fn fsync_dir(dir: &Path) -> Result<()> {
    let handle = context(File::open(dir), "open directory", dir)?;
    context(handle.sync_all(), "fsync directory", dir)
}

/// The directory holding `path`; a bare file name lives in the current
/// directory (whose fsync must not be attempted on the empty path).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if dir.as_os_str().is_empty() => Path::new("."),
        Some(dir) => dir,
        None => Path::new("/"),
    }
}

pub fn create_dirs(dir: &Path) -> Result<()> {
    context(fs::create_dir_all(dir), "create directory", dir)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".ctm-new");
    PathBuf::from(name)
}

/// Replaces `path` with a regular file holding `bytes`, atomically and
/// durably.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    create_dirs(parent(path))?;
    let tmp = temp_path(path);
    let _ = fs::remove_file(&tmp);
    let mut file = context(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp),
        "create",
        &tmp,
    )?;
    context(file.write_all(bytes), "write", &tmp)?;
    // The umask may have narrowed the mode given at creation.
    context(
        file.set_permissions(fs::Permissions::from_mode(mode)),
        "set mode of",
        &tmp,
    )?;
    context(file.sync_all(), "fsync", &tmp)?;
    drop(file);
    crate::fault::point("file written, before rename");
    context(fs::rename(&tmp, path), "rename into place", path)?;
    fsync_dir(parent(path))
}

/// Replaces `path` with a symlink to `target`, atomically and durably.
pub fn write_symlink(path: &Path, target: &str) -> Result<()> {
    create_dirs(parent(path))?;
    let tmp = temp_path(path);
    let _ = fs::remove_file(&tmp);
    context(
        std::os::unix::fs::symlink(target, &tmp),
        "create symlink",
        &tmp,
    )?;
    crate::fault::point("symlink created, before rename");
    context(fs::rename(&tmp, path), "rename into place", path)?;
    fsync_dir(parent(path))
}

/// Removes the temporary file a write to `path` may have left when it was
/// interrupted between creating it and renaming it into place.
pub fn remove_temp(path: &Path) -> Result<()> {
    remove(&temp_path(path))
}

/// Removes a file or symlink; absent is fine.
pub fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => fsync_dir(parent(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => context(Err(e), "remove", path),
    }
}

/// Removes a directory tree; absent is fine.
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => fsync_dir(parent(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => context(Err(e), "remove directory", path),
    }
}

/// Renames atomically and makes the rename durable.
pub fn rename(from: &Path, to: &Path) -> Result<()> {
    context(fs::rename(from, to), "rename", from)?;
    fsync_dir(parent(to))
}

/// Writes bytes to a new file and fsyncs it (for staging, where the
/// directory is renamed into place as a whole afterwards).
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    create_dirs(parent(path))?;
    let mut file = context(
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path),
        "create",
        path,
    )?;
    context(file.write_all(bytes), "write", path)?;
    context(
        file.set_permissions(fs::Permissions::from_mode(mode)),
        "set mode of",
        path,
    )?;
    context(file.sync_all(), "fsync", path)
}

/// Creates a new symlink (for staging, like [`write_new`]).
pub fn symlink_new(path: &Path, target: &str) -> Result<()> {
    create_dirs(parent(path))?;
    context(
        std::os::unix::fs::symlink(target, path),
        "create symlink",
        path,
    )
}

/// fsyncs every directory under `dir`, deepest first, and `dir` itself.
pub fn fsync_tree(dir: &Path) -> Result<()> {
    let entries = context(fs::read_dir(dir), "read directory", dir)?;
    for entry in entries {
        let entry = context(entry, "read directory", dir)?;
        let path = entry.path();
        let kind = context(entry.file_type(), "inspect", &path)?;
        if kind.is_dir() {
            fsync_tree(&path)?;
        }
    }
    fsync_dir(dir)
}

pub fn read(path: &Path) -> Result<Vec<u8>> {
    context(fs::read(path), "read", path)
}

pub fn read_to_string(path: &Path) -> Result<String> {
    context(fs::read_to_string(path), "read", path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_lower_case_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_directory() {
        assert_eq!(parent(Path::new("host.kdl.lock")), Path::new("."));
        assert_eq!(parent(Path::new("/etc/x")), Path::new("/etc"));
        assert_eq!(parent(Path::new("/")), Path::new("/"));
    }
}
