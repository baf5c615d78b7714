//! The file system, under a root: reading what is at a path, replacing it
//! atomically (write a temporary file, make it durable, rename, fsync the
//! directory), so that a crash leaves either the old or the new file,
//! never half of one, and making many writes durable at once ([`Batch`]).
//! Every error names the path it is about, and every write that takes
//! space passes `fault::no_space` (the full-disk tests).

use std::collections::BTreeSet;
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

impl<'de> serde::Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Entry, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Entry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an entry: a map with its kind")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Entry, A::Error> {
                let mut fields = EntryFields::default();
                while let Some(key) = map.next_key::<EntryKey>()? {
                    fields.take(key, &mut map)?;
                }
                fields.finish()
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// The keys of an [`Entry`] written as a map (`{"kind": "file",
/// "sha256": …, "mode": …}`), and `owner`, which a manifest's entries
/// have beside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
pub enum EntryKey {
    Kind,
    Sha256,
    Mode,
    Target,
    Owner,
    #[serde(other)]
    Unknown,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum EntryKind {
    Absent,
    File,
    Symlink,
    Other,
}

/// An [`Entry`] read field by field. serde's derived reading of an
/// internally tagged enum buffers each value whole before it looks at
/// its tag, and a plan reads thousands of entries (the manifest's, the
/// plan's own); this reads them in one pass.
#[derive(Default)]
pub struct EntryFields {
    kind: Option<EntryKind>,
    sha256: Option<String>,
    mode: Option<u32>,
    target: Option<String>,
}

/// Reads a field's value into `slot`; a key given twice is an error, as
/// it is for serde's derived readers (a file that says two things is not
/// read as either).
pub fn once<'de, T: serde::Deserialize<'de>, A: serde::de::MapAccess<'de>>(
    slot: &mut Option<T>,
    name: &'static str,
    map: &mut A,
) -> std::result::Result<(), A::Error> {
    if slot.is_some() {
        return Err(serde::de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl EntryFields {
    /// Reads the value of an entry's `key`; any other key's value is
    /// skipped (an `owner` is the caller's to read instead).
    pub fn take<'de, A: serde::de::MapAccess<'de>>(
        &mut self,
        key: EntryKey,
        map: &mut A,
    ) -> std::result::Result<(), A::Error> {
        match key {
            EntryKey::Kind => once(&mut self.kind, "kind", map),
            EntryKey::Sha256 => once(&mut self.sha256, "sha256", map),
            EntryKey::Mode => once(&mut self.mode, "mode", map),
            EntryKey::Target => once(&mut self.target, "target", map),
            EntryKey::Owner | EntryKey::Unknown => {
                map.next_value::<serde::de::IgnoredAny>()?;
                Ok(())
            }
        }
    }

    pub fn finish<E: serde::de::Error>(self) -> std::result::Result<Entry, E> {
        Ok(match self.kind.ok_or_else(|| E::missing_field("kind"))? {
            EntryKind::Absent => Entry::Absent,
            EntryKind::Other => Entry::Other,
            EntryKind::File => Entry::File {
                sha256: self.sha256.ok_or_else(|| E::missing_field("sha256"))?,
                mode: self.mode.ok_or_else(|| E::missing_field("mode"))?,
            },
            EntryKind::Symlink => Entry::Symlink {
                target: self.target.ok_or_else(|| E::missing_field("target"))?,
            },
        })
    }
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

/// fsyncs a directory, so that the names created, renamed or removed in
/// it survive a crash.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let handle = context(File::open(dir), "open directory", dir)?;
    context(handle.sync_all(), "fsync directory", dir)
}

/// The directory holding `path`; a bare file name lives in the current
/// directory (whose fsync must not be attempted on the empty path).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if dir.as_os_str().is_empty() => Path::new("."),
        Some(dir) => dir,
        None => Path::new("/"),
    }
}

/// Creates `dir` and its missing parents (an existing directory is only
/// looked at, never made again).
pub fn create_dirs(dir: &Path) -> Result<()> {
    make_dirs(dir).map(drop)
}

/// [`create_dirs`], returning whether `dir` had to be made.
fn make_dirs(dir: &Path) -> Result<bool> {
    if dir.as_os_str().is_empty() || fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Ok(false);
    }
    make_dirs(parent(dir))?;
    context(
        crate::fault::no_space("create directory", dir),
        "create directory",
        dir,
    )?;
    match fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(e) => context(Err(e), "create directory", dir),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Where a new version of `path` is written before it is renamed over it.
pub fn temp_path(path: &Path) -> PathBuf {
    with_suffix(path, ".ctm-new")
}

/// Where a switch keeps what `path` held (a hard link to it) until the
/// switch is committed or undone.
pub fn kept_path(path: &Path) -> PathBuf {
    with_suffix(path, ".ctm-old")
}

/// What a path is to hold: the unit the tree writer and a switch write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node<'a> {
    File { bytes: &'a [u8], mode: u32 },
    Symlink { target: &'a str },
}

/// Creates `path`, which must not exist, holding `node`, without fsync.
/// A file that cannot be written whole is removed again: on a full disk,
/// nothing is left half written.
pub fn create(path: &Path, node: Node<'_>) -> Result<()> {
    match node {
        Node::File { bytes, mode } => {
            context(crate::fault::no_space("create", path), "create", path)?;
            let mut file = context(
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(path),
                "create",
                path,
            )?;
            let written = (|| {
                if !bytes.is_empty() {
                    context(crate::fault::no_space("write", path), "write", path)?;
                    context(file.write_all(bytes), "write", path)?;
                }
                // The umask may have narrowed the mode given at creation.
                context(
                    file.set_permissions(fs::Permissions::from_mode(mode)),
                    "set mode of",
                    path,
                )
            })();
            if written.is_err() {
                drop(file);
                let _ = fs::remove_file(path);
            }
            written
        }
        Node::Symlink { target } => {
            context(
                crate::fault::no_space("create symlink", path),
                "create symlink",
                path,
            )?;
            context(
                std::os::unix::fs::symlink(target, path),
                "create symlink",
                path,
            )
        }
    }
}

/// Writes `node` to the temporary path of `path` (replacing a leftover
/// one), without fsync; returns the temporary path.
pub fn write_temp(path: &Path, node: Node<'_>) -> Result<PathBuf> {
    let tmp = temp_path(path);
    match create(&tmp, node) {
        Err(e) if e.source.kind() == io::ErrorKind::AlreadyExists => {
            remove_entry(&tmp)?;
            create(&tmp, node)?;
        }
        created => created?,
    }
    Ok(tmp)
}

/// Whether `path` holds `node` already, byte for byte and with its mode.
pub fn holds(path: &Path, node: Node<'_>) -> Result<bool> {
    use std::io::Read as _;
    match node {
        Node::File { bytes, mode } => {
            let opened = OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
                .open(path);
            let mut file = match opened {
                Ok(file) => file,
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        || matches!(
                            e.raw_os_error(),
                            Some(nix::libc::ELOOP | nix::libc::ENOTDIR)
                        ) =>
                {
                    return Ok(false);
                }
                Err(e) => return context(Err(e), "open", path),
            };
            let meta = context(file.metadata(), "inspect", path)?;
            if !meta.is_file()
                || meta.len() != bytes.len() as u64
                || meta.permissions().mode() & 0o7777 != mode
            {
                return Ok(false);
            }
            // Its size is the size of `bytes`: one read of that many
            // (`read_to_end` would ask again to see the end).
            let mut held = vec![0; bytes.len()];
            match file.read_exact(&mut held) {
                Ok(()) => Ok(held == bytes),
                // Shortened since: not what it was to hold.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
                Err(e) => context(Err(e), "read", path),
            }
        }
        Node::Symlink { target } => Ok(fs::read_link(path).is_ok_and(|t| t.as_os_str() == target)),
    }
}

/// Writes that become durable together, at one [`Batch::sync`]: the
/// files written and the directories whose entries changed.
#[derive(Debug, Default)]
pub struct Batch {
    files: Vec<PathBuf>,
    dirs: BTreeSet<PathBuf>,
}

impl Batch {
    /// A file (or symlink) was created or written at `path`.
    pub fn wrote(&mut self, path: &Path) {
        self.files.push(path.to_path_buf());
        self.dirs.insert(parent(path).to_path_buf());
    }

    /// A name in `dir` was created, renamed or removed.
    pub fn changed(&mut self, dir: &Path) {
        self.dirs.insert(dir.to_path_buf());
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }

    /// Makes everything recorded durable, and forgets it.
    ///
    /// One `syncfs` per file system the writes are on: it writes back
    /// every dirty page and inode of that file system and commits its
    /// journal once, where an `fsync` per file commits the journal and
    /// flushes the disk's cache once per file (docs/benchmarks.md, "Fewer
    /// syncs").
    pub fn sync(&mut self) -> Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        let mut devices = BTreeSet::new();
        for dir in &self.dirs {
            // A directory removed since (a rollback's) has nothing to sync.
            let meta = match fs::metadata(dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                meta => context(meta, "inspect", dir)?,
            };
            if devices.insert(meta.dev()) {
                let handle = context(File::open(dir), "open directory", dir)?;
                context(
                    nix::unistd::syncfs(&handle).map_err(io::Error::from),
                    "sync the file system of",
                    dir,
                )?;
            }
        }
        self.files.clear();
        self.dirs.clear();
        Ok(())
    }
}

/// Replaces `path` with a regular file holding `bytes`, atomically and
/// durably.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    create_dirs(parent(path))?;
    let tmp = write_temp(path, Node::File { bytes, mode })?;
    let file = context(File::open(&tmp), "open", &tmp)?;
    context(file.sync_all(), "fsync", &tmp)?;
    drop(file);
    crate::fault::point("file written, before rename");
    context(fs::rename(&tmp, path), "rename into place", path)?;
    fsync_dir(parent(path))
}

/// Replaces `path` with a symlink to `target`, atomically and durably.
pub fn write_symlink(path: &Path, target: &str) -> Result<()> {
    create_dirs(parent(path))?;
    let tmp = write_temp(path, Node::Symlink { target })?;
    crate::fault::point("symlink created, before rename");
    context(fs::rename(&tmp, path), "rename into place", path)?;
    fsync_dir(parent(path))
}

/// Writes a tree of files under `root` (`ctm compile --out`): each path
/// that does not hold its node already is written to a temporary file and
/// renamed over it, so that a reader sees the old file or the new one (in
/// a directory this call made, without `durable`, a file is created in
/// place: there is no old file);
/// a file that holds its bytes and mode already is left alone, and a
/// directory that exists is not made again.
///
/// Without `durable`, nothing is fsynced: the tree is a preview, and a
/// crash can at worst lose the newest files, which the next run writes
/// again. With `durable`, the temporary files are made durable together
/// ([`Batch::sync`]) before the renames, and each directory is fsynced
/// once after them.
pub fn write_tree<'a>(
    root: &Path,
    nodes: impl IntoIterator<Item = (&'a str, Node<'a>)>,
    durable: bool,
) -> Result<TreeWritten> {
    let nodes: Vec<(&str, Node<'_>)> = nodes.into_iter().collect();
    let mut batch = Batch::default();
    if durable {
        let (written, renames) = write_nodes(root, &nodes, Some(&mut batch))?;
        batch.sync()?;
        for (tmp, path) in &renames {
            context(fs::rename(tmp, path), "rename into place", path)?;
            batch.changed(parent(path));
        }
        batch.sync()?;
        return Ok(written);
    }
    // Without a sync, what a fresh tree costs is the kernel creating each
    // file (about 100 µs of system time apiece on this project's disks):
    // two threads create two at a time. Each writes a run of the sorted
    // paths; a directory both runs write into is made by one and found by
    // the other, which then writes under a temporary name as into any
    // directory it did not make.
    let runs = crate::cores::in_runs(&nodes, WRITE_RUN_MIN, 2, |run| write_nodes(root, run, None));
    let mut written = TreeWritten::default();
    for run in runs {
        let (run, _) = run?;
        written.written += run.written;
        written.unchanged += run.unchanged;
    }
    Ok(written)
}

/// Below this many paths a run, a second thread costs more than it saves.
const WRITE_RUN_MIN: usize = 128;

/// Writes `nodes` (sorted by path) under `root`: with a `batch`, each
/// under a temporary name that it records, returned with the rename
/// still to do; without, into place.
fn write_nodes(
    root: &Path,
    nodes: &[(&str, Node<'_>)],
    mut batch: Option<&mut Batch>,
) -> Result<(TreeWritten, Vec<(PathBuf, PathBuf)>)> {
    let mut written = TreeWritten::default();
    // The directory of the previous path, and whether it was made now.
    let mut dir: Option<(PathBuf, bool)> = None;
    let mut made = std::collections::HashSet::new();
    let mut renames = Vec::new();
    for &(rel, node) in nodes {
        let path = root.join(rel);
        let here = parent(&path);
        if dir.as_ref().is_none_or(|(d, _)| d != here) {
            let fresh = made.contains(here) || make_dirs(here)?;
            if fresh {
                made.insert(here.to_path_buf());
            }
            dir = Some((here.to_path_buf(), fresh));
        }
        let fresh = dir.as_ref().is_some_and(|(_, fresh)| *fresh);
        if !fresh && holds(&path, node)? {
            written.unchanged += 1;
            continue;
        }
        written.written += 1;
        match batch.as_deref_mut() {
            None if fresh => {
                // In a directory made by this call nothing was there to
                // replace, so nobody could read an old file: the file is
                // made in place, sparing a temporary name and a rename
                // (which cost as much as the file itself on a fresh tree).
                create(&path, node)?;
            }
            None => {
                let tmp = write_temp(&path, node)?;
                context(fs::rename(&tmp, &path), "rename into place", &path)?;
            }
            Some(batch) => {
                let tmp = write_temp(&path, node)?;
                batch.wrote(&tmp);
                renames.push((tmp, path));
            }
        }
    }
    Ok((written, renames))
}

/// What [`write_tree`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeWritten {
    /// Paths written (new or changed).
    pub written: usize,
    /// Paths that held their node already.
    pub unchanged: usize,
}

/// Creates `link` as a hard link to what `path` is (a symlink itself, not
/// what it points to), without fsync.
pub fn hard_link(path: &Path, link: &Path) -> Result<()> {
    context(crate::fault::no_space("link", link), "link", link)?;
    context(fs::hard_link(path, link), "link", link)
}

/// Whether two paths name the same inode (both exist).
pub fn same_inode(a: &Path, b: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt as _;
    let (a, b) = (
        context(fs::symlink_metadata(a), "inspect", a)?,
        context(fs::symlink_metadata(b), "inspect", b)?,
    );
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
}

/// Whether something (even a dangling symlink) is at `path`.
pub fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(nix::libc::ENOTDIR) =>
        {
            Ok(false)
        }
        Err(e) => context(Err(e), "inspect", path),
    }
}

/// Removes a file or symlink without fsync; returns whether there was
/// one.
pub fn remove_entry(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(nix::libc::ENOTDIR) =>
        {
            Ok(false)
        }
        Err(e) => context(Err(e), "remove", path),
    }
}

/// Renames without fsync (the caller fsyncs the directories after a
/// group of renames).
pub fn rename_entry(from: &Path, to: &Path) -> Result<()> {
    context(fs::rename(from, to), "rename", from)
}

/// Removes a file or symlink; absent is fine.
pub fn remove(path: &Path) -> Result<()> {
    if remove_entry(path)? {
        fsync_dir(parent(path))?;
    }
    Ok(())
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

/// Free space and inodes of the file system holding `path` (a directory
/// that exists), for an unprivileged writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub device: u64,
    pub bytes: u64,
    /// `None` where the file system has no fixed number of inodes.
    pub inodes: Option<u64>,
    pub block: u64,
}

pub fn space(path: &Path) -> Result<Space> {
    use std::os::unix::fs::MetadataExt as _;
    let device = context(fs::metadata(path), "inspect", path)?.dev();
    let stat = context(
        nix::sys::statvfs::statvfs(path).map_err(io::Error::from),
        "ask for the free space of",
        path,
    )?;
    let block = stat.fragment_size().max(1);
    Ok(Space {
        device,
        bytes: stat.blocks_available().saturating_mul(block),
        inodes: (stat.files() > 0).then_some(stat.files_available()),
        block,
    })
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

    #[test]
    fn a_large_tree_is_written_by_two_threads_whole_and_then_only_where_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Files of one directory on both sides of the split (`d/x…` sort
        // around `d/sub/…`), nested directories, and symlinks.
        let mut paths: Vec<String> = Vec::new();
        for i in 0..300 {
            paths.push(format!("d/x{i:03}"));
            paths.push(format!("d/sub{}/f{i:03}", i % 7));
            paths.push(format!("e{}/g{i:03}", i % 13));
        }
        paths.sort();
        let texts: Vec<String> = paths.iter().map(|p| format!("{p} one")).collect();
        let tree = |changed: usize| -> Vec<(&str, Node<'_>)> {
            paths
                .iter()
                .zip(&texts)
                .enumerate()
                .map(|(i, (p, t))| {
                    let node = if p.ends_with('7') {
                        Node::Symlink { target: t }
                    } else if i < changed {
                        Node::File {
                            bytes: b"changed",
                            mode: 0o600,
                        }
                    } else {
                        Node::File {
                            bytes: t.as_bytes(),
                            mode: 0o644,
                        }
                    };
                    (p.as_str(), node)
                })
                .collect()
        };
        assert!(paths.len() >= 2 * WRITE_RUN_MIN);
        let written = write_tree(root, tree(0), false).unwrap();
        assert_eq!((written.written, written.unchanged), (paths.len(), 0));
        for (node_path, node) in tree(0) {
            assert!(holds(&root.join(node_path), node).unwrap(), "{node_path}");
        }
        // The first 500 changed: those files (not the symlinks among
        // them) are written, the rest left alone, nothing temporary left.
        let changed = tree(500)
            .iter()
            .take(500)
            .filter(|(_, n)| matches!(n, Node::File { .. }))
            .count();
        let written = write_tree(root, tree(500), false).unwrap();
        assert_eq!(
            (written.written, written.unchanged),
            (changed, paths.len() - changed)
        );
        for (node_path, node) in tree(500) {
            assert!(holds(&root.join(node_path), node).unwrap(), "{node_path}");
        }
        let mut left = 0;
        for entry in walk(root) {
            assert!(!entry.ends_with(".ctm-new"), "{entry}");
            left += 1;
        }
        assert_eq!(left, paths.len());
    }

    /// The files and symlinks under `dir`, by path.
    fn walk(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                out.extend(walk(&entry.path()));
            } else {
                out.push(entry.path().display().to_string());
            }
        }
        out
    }

    #[test]
    fn a_tree_is_written_once_and_then_only_where_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let tree = |text: &'static str| {
            vec![
                (
                    "a/b/f",
                    Node::File {
                        bytes: text.as_bytes(),
                        mode: 0o640,
                    },
                ),
                ("a/b/l", Node::Symlink { target: "/t" }),
                (
                    "a/g",
                    Node::File {
                        bytes: b"g",
                        mode: 0o644,
                    },
                ),
            ]
        };
        let written = write_tree(root, tree("one"), false).unwrap();
        assert_eq!((written.written, written.unchanged), (3, 0));
        assert_eq!(std::fs::read(root.join("a/b/f")).unwrap(), b"one");
        let mode = std::fs::metadata(root.join("a/b/f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o640);
        assert_eq!(
            std::fs::read_link(root.join("a/b/l")).unwrap(),
            Path::new("/t")
        );
        let inode = |p: &str| {
            use std::os::unix::fs::MetadataExt as _;
            std::fs::symlink_metadata(root.join(p)).unwrap().ino()
        };
        let (g, l) = (inode("a/g"), inode("a/b/l"));
        // Again, one file changed (durably this time): only it is written.
        let written = write_tree(root, tree("two"), true).unwrap();
        assert_eq!((written.written, written.unchanged), (1, 2));
        assert_eq!(std::fs::read(root.join("a/b/f")).unwrap(), b"two");
        assert_eq!((inode("a/g"), inode("a/b/l")), (g, l));
        // A changed mode is a change; nothing temporary is left.
        std::fs::set_permissions(root.join("a/g"), fs::Permissions::from_mode(0o600)).unwrap();
        let written = write_tree(root, tree("two"), false).unwrap();
        assert_eq!((written.written, written.unchanged), (1, 2));
        let mut names: Vec<String> = std::fs::read_dir(root.join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["f", "l"]);
    }

    #[test]
    fn a_hard_link_to_a_symlink_is_a_link_to_the_symlink_itself() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("/nowhere", &link).unwrap();
        let kept = kept_path(&link);
        hard_link(&link, &kept).unwrap();
        assert!(same_inode(&link, &kept).unwrap());
        assert_eq!(std::fs::read_link(&kept).unwrap(), Path::new("/nowhere"));
    }

    #[test]
    fn a_batch_syncs_the_file_systems_it_wrote_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut batch = Batch::default();
        create(
            &path,
            Node::File {
                bytes: b"x",
                mode: 0o644,
            },
        )
        .unwrap();
        batch.wrote(&path);
        assert!(!batch.is_empty());
        batch.sync().unwrap();
        assert!(batch.is_empty());
        // Space is that of a directory's file system.
        let space = space(dir.path()).unwrap();
        assert!(space.block > 0);
    }
}
