//! Applying OCI image layers (tar streams, gzip, zstd or uncompressed)
//! onto a tree, in order, with the specification's whiteouts: `.wh.NAME`
//! deletes NAME of the layers below, `.wh..wh..opq` empties its directory
//! of them.
//!
//! A layer is hostile until applied. Every entry's path is checked before
//! anything is written: relative, no `..`, and walked from the root one
//! component at a time without following a symbolic link, so a link the
//! image made (`etc -> /`, `x -> ../../..`) is never a way out of the root:
//! an entry below a link is refused. Hard links are checked the same way
//! at both ends. The root is a fresh directory that only this process
//! writes into, so checking by path cannot race with anyone.
//!
//! Each layer is read twice from its (verified) file: first its whiteouts
//! are carried out, then its entries are written. Whiteouts hide what the
//! layers below have, never what the same layer adds, whatever their
//! order in the archive.

use std::ffi::OsStr;
use std::io::{BufReader, Read};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

/// What went wrong applying a layer, with the entry at fault.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("entry `{path}` is refused: {why}")]
    Refused { path: String, why: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LayerError {
    let what = what.into();
    move |source| LayerError::Io { what, source }
}

fn refused(path: &Path, why: impl Into<String>) -> LayerError {
    LayerError::Refused {
        path: path.display().to_string(),
        why: why.into(),
    }
}

/// How a layer's bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From a layer's media type (`application/vnd.oci.image.layer.v1.tar+gzip`,
    /// Docker's `…rootfs.diff.tar.gzip`); `None` for a media type that is
    /// not a layer ctm can read.
    pub fn of_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Compression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// What applying one layer did, for progress.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub entries: u64,
    pub removed: u64,
}

/// Applies the layer in `file` onto `root`.
pub fn apply(root: &Path, file: &Path, compression: Compression) -> Result<Applied, LayerError> {
    let mut applied = Applied::default();
    // Pass 1: whiteouts, against what the layers below made.
    let mut opaque = Vec::new();
    let mut whiteouts = Vec::new();
    for_each_entry(file, compression, |entry| {
        let path = entry_path(entry)?;
        let name = path.file_name().map(OsStr::as_bytes).unwrap_or_default();
        if name == b".wh..wh..opq" {
            opaque.push(parent_of(&path));
        } else if let Some(hidden) = name.strip_prefix(b".wh.") {
            // `.wh..wh.*` other than the opaque marker are aufs's own
            // bookkeeping, not whiteouts.
            if !hidden.starts_with(b".wh.") {
                if matches!(hidden, b"" | b"." | b"..") {
                    return Err(refused(&path, "a whiteout that names no file"));
                }
                whiteouts.push(parent_of(&path).join(OsStr::from_bytes(hidden)));
            }
        }
        Ok(())
    })?;
    for dir in &opaque {
        if let Some(real) = existing_dir(root, dir)? {
            for child in
                std::fs::read_dir(&real).map_err(io(format!("reading {}", real.display())))?
            {
                let child = child.map_err(io(format!("reading {}", real.display())))?;
                remove(&child.path())?;
                applied.removed += 1;
            }
        }
    }
    for hidden in &whiteouts {
        let parent = parent_of(hidden);
        if let (Some(real), Some(name)) = (existing_dir(root, &parent)?, hidden.file_name()) {
            let target = real.join(name);
            if std::fs::symlink_metadata(&target).is_ok() {
                remove(&target)?;
                applied.removed += 1;
            }
        }
    }
    // Pass 2: the entries. Directories get their times last: writing into
    // them changes them.
    let mut directories = Vec::new();
    for_each_entry(file, compression, |entry| {
        let path = entry_path(entry)?;
        let name = path.file_name().map(OsStr::as_bytes).unwrap_or_default();
        if name.starts_with(b".wh.") {
            // Carried out above; a whiteout below a link this layer made
            // is as hostile as a file there.
            existing_dir(root, &parent_of(&path))?;
            return Ok(());
        }
        if let Some(dir) = write_entry(root, &path, entry, Path::new(""))? {
            directories.push(dir);
        }
        applied.entries += 1;
        Ok(())
    })?;
    for (dir, mtime) in directories {
        set_mtime(&dir, mtime)?;
    }
    Ok(applied)
}

fn for_each_entry(
    file: &Path,
    compression: Compression,
    mut each: impl FnMut(&mut tar::Entry<'_, Box<dyn Read + '_>>) -> Result<(), LayerError>,
) -> Result<(), LayerError> {
    let what = || format!("reading layer {}", file.display());
    let raw = BufReader::new(std::fs::File::open(file).map_err(io(what()))?);
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(raw)),
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(raw).map_err(io(what()))?),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(io(what()))? {
        let mut entry = entry.map_err(io(what()))?;
        each(&mut entry)?;
    }
    Ok(())
}

/// An entry's path, checked: relative (a leading `./` is fine), no `..`,
/// not empty; normalised to its plain components.
fn entry_path<R: Read>(entry: &tar::Entry<'_, R>) -> Result<PathBuf, LayerError> {
    let raw = entry.path_bytes();
    let shown = Path::new(OsStr::from_bytes(&raw));
    safe_relative(shown)
}

/// `path` as plain components under a root: refused if absolute, if any
/// component is `..`, or if nothing is left (`.`, the root itself, is
/// fine only for a directory: `None` then).
pub fn safe_relative(path: &Path) -> Result<PathBuf, LayerError> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused(path, "an absolute path in a layer"));
            }
            Component::ParentDir => {
                return Err(refused(path, "`..` in a layer's path"));
            }
        }
    }
    Ok(clean)
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `root/dir` if every component of `dir` is a real directory (not a link
/// to one); `None` if one is missing; refused if one is anything else.
fn existing_dir(root: &Path, dir: &Path) -> Result<Option<PathBuf>, LayerError> {
    walk_dirs(root, dir, false)
}

/// Makes every missing directory of `dir` under `root` (mode 0755, as
/// other tools do for directories a layer implies), refusing to pass
/// through anything that is not a real directory.
fn make_dirs(root: &Path, dir: &Path) -> Result<PathBuf, LayerError> {
    let made = walk_dirs(root, dir, true)?;
    // Every missing component was made, so the walk reached the end.
    Ok(made.unwrap_or_else(|| root.join(dir)))
}

/// The one walk down `dir` under `root`, component by component without
/// following a link: a missing directory ends it (`None`), or, with
/// `create`, is made.
fn walk_dirs(root: &Path, dir: &Path, create: bool) -> Result<Option<PathBuf>, LayerError> {
    let mut at = root.to_path_buf();
    for part in dir.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refused(
                    dir,
                    format!(
                        "`{}` is a symbolic link; ctm never {} one inside an image",
                        at.strip_prefix(root).unwrap_or(&at).display(),
                        if create { "writes through" } else { "follows" }
                    ),
                ));
            }
            Ok(_) => return Err(refused(dir, "a component of its path is not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&at).map_err(io(format!("creating {}", at.display())))?;
                std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o755))
                    .map_err(io(format!("setting the mode of {}", at.display())))?;
            }
            Err(e) => return Err(io(format!("reading {}", at.display()))(e)),
        }
    }
    Ok(Some(at))
}

/// Removes what is at `path` (a link itself, never what it points at).
fn remove(path: &Path) -> Result<(), LayerError> {
    let meta =
        std::fs::symlink_metadata(path).map_err(io(format!("reading {}", path.display())))?;
    let removed = if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    removed.map_err(io(format!("removing {}", path.display())))
}

/// Writes one entry at `path` (checked by [`safe_relative`]) under
/// `root`, never through a link; returns a directory and its mtime, to be
/// set last ([`set_mtime`]). A hard link's target is an archive path:
/// `link_prefix` (where `root`'s tree starts in the archive) is taken off
/// it, and a target outside that prefix is refused.
pub fn write_entry<R: Read>(
    root: &Path,
    path: &Path,
    entry: &mut tar::Entry<'_, R>,
    link_prefix: &Path,
) -> Result<Option<(PathBuf, u64)>, LayerError> {
    let xattrs = xattrs(entry, path)?;
    let header = entry.header();
    let kind = header.entry_type();
    let device = (
        header.device_major().ok().flatten().unwrap_or(0),
        header.device_minor().ok().flatten().unwrap_or(0),
    );
    let mode = header
        .mode()
        .map_err(io(format!("reading the mode of {}", path.display())))?
        & 0o7777;
    let uid = header
        .uid()
        .map_err(io(format!("reading the owner of {}", path.display())))?;
    let gid = header
        .gid()
        .map_err(io(format!("reading the group of {}", path.display())))?;
    let mtime = header.mtime().unwrap_or(0);
    let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
        return Err(refused(path, "its owner or group does not fit in 32 bits"));
    };
    if path.as_os_str().is_empty() {
        // The root itself (`./`): only its mode and owner.
        if kind.is_dir() {
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode))
                .map_err(io(format!("setting the mode of {}", root.display())))?;
            std::os::unix::fs::lchown(root, Some(uid), Some(gid))
                .map_err(io(format!("setting the owner of {}", root.display())))?;
            return Ok(None);
        }
        return Err(refused(path, "the root of a layer can only be a directory"));
    }
    let parent = make_dirs(root, &parent_of(path))?;
    // `path` has a file name: it is not empty and has no `..`.
    let target = parent.join(path.file_name().unwrap_or_default());
    let existing = std::fs::symlink_metadata(&target).ok();
    // A directory over a directory merges; anything else replaces.
    if let Some(meta) = &existing
        && !(kind.is_dir() && meta.is_dir())
    {
        remove(&target)?;
    }
    let what = |verb: &str| format!("{verb} {}", target.display());
    match kind {
        tar::EntryType::Directory => {
            if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                std::fs::create_dir(&target).map_err(io(what("creating")))?;
            }
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            // create_new: O_EXCL, which never follows a link at the end.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&target)
                .map_err(io(what("creating")))?;
            std::io::copy(entry, &mut file).map_err(io(what("writing")))?;
        }
        tar::EntryType::Symlink => {
            let Some(to) = entry.link_name_bytes() else {
                return Err(refused(path, "a symbolic link without a target"));
            };
            // The target is stored as it is: it is only ever resolved
            // inside the container, never by ctm.
            std::os::unix::fs::symlink(OsStr::from_bytes(&to), &target)
                .map_err(io(what("creating the link")))?;
        }
        tar::EntryType::Link => {
            let Some(to) = entry.link_name_bytes() else {
                return Err(refused(path, "a hard link without a target"));
            };
            let to = safe_relative(Path::new(OsStr::from_bytes(&to)))?;
            let Ok(to) = to.strip_prefix(link_prefix).map(Path::to_path_buf) else {
                return Err(refused(path, "a hard link to a file of another tree"));
            };
            let Some(dir) = existing_dir(root, &parent_of(&to))? else {
                return Err(refused(
                    path,
                    "a hard link to a file the layers do not have",
                ));
            };
            let source = dir.join(to.file_name().unwrap_or_default());
            match std::fs::symlink_metadata(&source) {
                Ok(m) if !m.is_dir() => {}
                _ => {
                    return Err(refused(
                        path,
                        "a hard link to a file the layers do not have",
                    ));
                }
            }
            // linkat without AT_SYMLINK_FOLLOW: a link to a symbolic link
            // links the link.
            std::fs::hard_link(&source, &target).map_err(io(what("linking")))?;
            // A hard link shares its inode's mode and owner: set by its file.
            return Ok(None);
        }
        tar::EntryType::Fifo | tar::EntryType::Char | tar::EntryType::Block => {
            use nix::sys::stat::{Mode, SFlag, makedev, mknod};
            let (flag, dev) = match kind {
                tar::EntryType::Fifo => (SFlag::S_IFIFO, 0),
                other => {
                    let (major, minor) = device;
                    let flag = if other == tar::EntryType::Char {
                        SFlag::S_IFCHR
                    } else {
                        SFlag::S_IFBLK
                    };
                    (flag, makedev(major.into(), minor.into()))
                }
            };
            mknod(&target, flag, Mode::from_bits_truncate(0o600), dev)
                .map_err(|e| io(what("creating the node"))(e.into()))?;
        }
        other => {
            return Err(refused(
                path,
                format!("a tar entry of kind {other:?}, which a layer does not hold"),
            ));
        }
    }
    std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
        .map_err(io(what("setting the owner of")))?;
    if kind != tar::EntryType::Symlink {
        // After chown, which clears set-user-ID bits.
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
            .map_err(io(what("setting the mode of")))?;
        for (name, value) in &xattrs {
            xattr::set(&target, name, value).map_err(io(format!(
                "setting attribute {} of {}",
                name.to_string_lossy(),
                target.display()
            )))?;
        }
    }
    if kind.is_dir() {
        return Ok(Some((target, mtime)));
    }
    set_mtime(&target, mtime)?;
    Ok(None)
}

/// The extended attributes a PAX header carries (`SCHILY.xattr.NAME`):
/// file capabilities (`security.capability`) matter to programs such as
/// `ping`.
pub fn xattrs<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &Path,
) -> Result<Vec<(std::ffi::OsString, Vec<u8>)>, LayerError> {
    let mut found = Vec::new();
    let Some(extensions) = entry
        .pax_extensions()
        .map_err(io(format!("reading the headers of {}", path.display())))?
    else {
        return Ok(found);
    };
    for extension in extensions {
        let extension =
            extension.map_err(io(format!("reading the headers of {}", path.display())))?;
        if let Some(name) = extension.key_bytes().strip_prefix(b"SCHILY.xattr.") {
            found.push((
                OsStr::from_bytes(name).to_os_string(),
                extension.value_bytes().to_vec(),
            ));
        }
    }
    Ok(found)
}

/// Sets the modification (and access) time of `path` itself, not of what
/// a link points at.
pub fn set_mtime(path: &Path, seconds: u64) -> Result<(), LayerError> {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let time = TimeSpec::new(i64::try_from(seconds).unwrap_or(i64::MAX), 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &time,
        &time,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io(format!("setting the time of {}", path.display()))(e.into()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The paths under `root`: every entry, sorted,
    /// relative, directories with a trailing `/`.
    fn listing(root: &Path) -> BTreeSet<String> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                let relative = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if is_dir {
                    out.insert(format!("{relative}/"));
                    walk(root, &path, out);
                } else {
                    out.insert(relative);
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(root, root, &mut out);
        out
    }

    /// One tar entry as a test writes it.
    enum E<'a> {
        Dir(&'a str),
        File(&'a str, &'a str),
        Link(&'a str, &'a str),
        Hard(&'a str, &'a str),
    }

    /// A layer made of `entries`, written to `dir/name` with `compression`.
    fn layer(dir: &Path, name: &str, compression: Compression, entries: &[E<'_>]) -> PathBuf {
        let mut builder = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(1_700_000_000);
            h.set_uid(0);
            h.set_gid(0);
            // Set raw, so that hostile names reach the archive as they are.
            let (path, kind, mode, data, link) = match e {
                E::Dir(p) => (*p, tar::EntryType::Directory, 0o755, "", None),
                E::File(p, d) => (*p, tar::EntryType::Regular, 0o644, *d, None),
                E::Link(p, t) => (*p, tar::EntryType::Symlink, 0o777, "", Some(*t)),
                E::Hard(p, t) => (*p, tar::EntryType::Link, 0o644, "", Some(*t)),
            };
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(t) = link {
                h.as_old_mut().linkname[..t.len()].copy_from_slice(t.as_bytes());
            }
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            h.set_cksum();
            builder.append(&h, data.as_bytes()).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let bytes = match compression {
            Compression::None => tar,
            Compression::Gzip => {
                use std::io::Write as _;
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&tar).unwrap();
                gz.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(&tar[..], 1).unwrap(),
        };
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn tree(root: &Path) -> Vec<String> {
        listing(root).into_iter().collect()
    }

    #[test]
    fn layers_apply_in_order_with_whiteouts_and_opaque_directories() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let base = layer(
            work.path(),
            "base",
            Compression::Gzip,
            &[
                E::Dir("./"),
                E::Dir("./etc/"),
                E::File("./etc/motd", "hello"),
                E::File("./etc/gone", "x"),
                E::Dir("./srv/"),
                E::File("./srv/old", "old"),
                E::Dir("./srv/sub/"),
                E::File("./srv/sub/deep", "deep"),
                E::Link("./bin", "usr/bin"),
            ],
        );
        // The whiteout and the opaque marker come after what this layer
        // adds to the same directory: they hide only the layer below.
        let top = layer(
            work.path(),
            "top",
            Compression::Zstd,
            &[
                E::File("etc/new", "new"),
                E::File("etc/.wh.gone", ""),
                E::File("srv/fresh", "fresh"),
                E::File("srv/.wh..wh..opq", ""),
                E::Hard("etc/motd-again", "etc/motd"),
                E::File(".wh.bin", ""),
            ],
        );
        apply(&root, &base, Compression::Gzip).unwrap();
        let srv = std::fs::metadata(root.join("srv")).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::mtime(&srv),
            1_700_000_000,
            "a directory's time is set after its entries"
        );
        let applied = apply(&root, &top, Compression::Zstd).unwrap();
        assert_eq!(
            tree(&root),
            [
                "etc/",
                "etc/motd",
                "etc/motd-again",
                "etc/new",
                "srv/",
                "srv/fresh"
            ]
        );
        assert_eq!(applied.removed, 4, "gone, bin, and srv's two children");
        assert_eq!(
            std::fs::read_to_string(root.join("etc/motd-again")).unwrap(),
            "hello"
        );
    }

    #[test]
    fn an_uncompressed_layer_replaces_a_file_with_a_directory_and_back() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let one = layer(work.path(), "1", Compression::None, &[E::File("a", "file")]);
        let two = layer(
            work.path(),
            "2",
            Compression::None,
            &[E::Dir("a/"), E::File("a/b", "")],
        );
        let three = layer(work.path(), "3", Compression::None, &[E::Link("a", "b")]);
        apply(&root, &one, Compression::None).unwrap();
        apply(&root, &two, Compression::None).unwrap();
        assert_eq!(tree(&root), ["a/", "a/b"]);
        apply(&root, &three, Compression::None).unwrap();
        assert_eq!(tree(&root), ["a"]);
        assert_eq!(std::fs::read_link(root.join("a")).unwrap(), Path::new("b"));
    }

    /// Applies `entries` as one layer onto a root inside `work`, beside a
    /// file `outside` that no layer may reach; the error, and whether
    /// anything appeared outside.
    fn hostile(entries: &[E<'_>]) -> (LayerError, Vec<String>) {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(work.path().join("outside")).unwrap();
        let file = layer(work.path(), "evil", Compression::None, entries);
        let err = apply(&root, &file, Compression::None).unwrap_err();
        (err, tree(&work.path().join("outside")))
    }

    #[test]
    fn a_path_out_of_the_root_is_refused() {
        let (err, outside) = hostile(&[E::File("../outside/pwned", "x")]);
        assert!(err.to_string().contains("`..` in a layer's path"), "{err}");
        assert!(outside.is_empty());
        let (err, _) = hostile(&[E::File("a/../../outside/pwned", "x")]);
        assert!(err.to_string().contains("`..`"), "{err}");
        let (err, _) = hostile(&[E::File("/etc/pwned", "x")]);
        assert!(err.to_string().contains("an absolute path"), "{err}");
    }

    #[test]
    fn nothing_is_written_through_a_symbolic_link() {
        // An absolute link, then a file below it.
        let work_outside = tempfile::tempdir().unwrap();
        let escape = work_outside.path().display().to_string();
        let (err, _) = hostile(&[E::Link("evil", &escape), E::File("evil/pwned", "x")]);
        assert!(
            err.to_string().contains("`evil` is a symbolic link"),
            "{err}"
        );
        assert!(tree(work_outside.path()).is_empty());
        // A relative link up and out, then a directory and a file below.
        let (err, outside) = hostile(&[
            E::Link("up", "../outside"),
            E::Dir("up/d/"),
            E::File("up/d/pwned", "x"),
        ]);
        assert!(err.to_string().contains("`up` is a symbolic link"), "{err}");
        assert!(outside.is_empty(), "{outside:?}");
        // A whiteout through a link deletes nothing outside.
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join("keep"), "x").unwrap();
        let target = work.path().display().to_string();
        let (err, _) = hostile(&[E::Link("l", &target), E::File("l/.wh.keep", "")]);
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(work.path().join("keep").exists());
        // A hard link to a file outside, by `..` or through a link.
        let (err, _) = hostile(&[E::Hard("h", "../outside/x")]);
        assert!(err.to_string().contains("`..`"), "{err}");
        let (err, _) = hostile(&[E::Link("l", "/etc"), E::Hard("h", "l/passwd")]);
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // A whiteout of `.` would be the directory itself.
        let (err, _) = hostile(&[E::Dir("d/"), E::File("d/.wh..", "")]);
        assert!(err.to_string().contains("names no file"), "{err}");
    }

    #[test]
    fn a_file_replacing_a_link_does_not_write_through_it() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let victim = work.path().join("victim");
        std::fs::write(&victim, "safe").unwrap();
        let one = layer(
            work.path(),
            "1",
            Compression::None,
            &[E::Link("f", &victim.display().to_string())],
        );
        let two = layer(work.path(), "2", Compression::None, &[E::File("f", "over")]);
        apply(&root, &one, Compression::None).unwrap();
        apply(&root, &two, Compression::None).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "safe");
        assert_eq!(std::fs::read_to_string(root.join("f")).unwrap(), "over");
    }

    #[test]
    fn extended_attributes_of_a_pax_header_are_set() {
        // On disk: a tmpfs may not take user attributes.
        let work = tempfile::tempdir_in("/var/tmp").unwrap();
        let root = work.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_pax_extensions([("SCHILY.xattr.user.ctm-test", b"yes".as_slice())])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_path("f").unwrap();
        h.set_size(0);
        h.set_mode(0o4755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        builder.append(&h, &b""[..]).unwrap();
        let file = work.path().join("layer");
        std::fs::write(&file, builder.into_inner().unwrap()).unwrap();
        apply(&root, &file, Compression::None).unwrap();
        let target = root.join("f");
        let value = xattr::get(&target, "user.ctm-test").unwrap();
        assert_eq!(value.as_deref(), Some(&b"yes"[..]));
        // The mode is set after the owner, so set-user-ID survives.
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o4755);
    }

    #[test]
    fn media_types_tell_the_compression() {
        assert_eq!(
            Compression::of_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::of_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::of_media_type("application/json"), None);
    }
}
