//! The files of a switch. Each touched path goes through three steps,
//! all of them undone by [`restore`]:
//!
//! 1. [`prepare`]: what the path holds is kept under `PATH.ctm-old` (a
//!    hard link: no copy, no new space), and its new content is written
//!    to `PATH.ctm-new`, without fsync (the caller makes the whole batch
//!    durable at once);
//! 2. [`switch`]: directory by directory, each `PATH.ctm-new` is renamed
//!    over `PATH` (or `PATH` is unlinked); then all of it is made durable
//!    at once;
//! 3. [`commit`], once `current` has moved: the kept links go.
//!
//! Undoing needs no space at all: a kept link is renamed back over its
//! path (or, where the path was never replaced, simply removed), a
//! created path is unlinked. So a switch that fills the disk can always
//! be undone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::compile::Artifacts;
use crate::fs::{self, Batch, Entry, Node};
use crate::plan::FileChange;
use crate::state::{StateError, Store, TouchedPath};

/// The node `path` is to hold after the switch, `None` if it goes.
fn node_of<'a>(desired: &'a Artifacts, path: &str) -> Option<Node<'a>> {
    desired.files.get(path).map(|a| a.node())
}

/// Paths grouped by their directory, in order.
fn by_directory<'a, T>(
    root: &Path,
    paths: impl IntoIterator<Item = (&'a str, T)>,
) -> BTreeMap<PathBuf, Vec<(PathBuf, &'a str, T)>> {
    let mut groups: BTreeMap<PathBuf, Vec<_>> = BTreeMap::new();
    for (rel, item) in paths {
        let live = root.join(rel);
        groups
            .entry(fs::parent(&live).to_path_buf())
            .or_default()
            .push((live, rel, item));
    }
    groups
}

fn changed_meanwhile(path: &Path) -> StateError {
    StateError::Corrupt {
        path: path.to_path_buf(),
        reason: "changed while ctm was planning; run the command again".into(),
    }
}

/// Keeps what each touched path holds and writes its new content beside
/// it (step 1). A path that no longer holds what the plan saw stops the
/// switch: something else is writing there.
pub fn prepare(
    root: &Path,
    files: &[FileChange],
    desired: &Artifacts,
    batch: &mut Batch,
) -> Result<(), StateError> {
    let mut dirs = std::collections::HashSet::new();
    for f in files {
        let live = root.join(&f.path);
        let kept = fs::kept_path(&live);
        match &f.before {
            Entry::File { sha256, .. } => {
                // An existing `PATH.ctm-old` is not ctm's (recovery put
                // back any it left): linking fails rather than replace it.
                fs::hard_link(&live, &kept)?;
                batch.changed(fs::parent(&kept));
                // What is kept is what will be restored: it must be what
                // the plan saw.
                if fs::sha256_hex(&fs::read(&kept)?) != *sha256 {
                    return Err(changed_meanwhile(&live));
                }
            }
            Entry::Symlink { target } => {
                fs::hard_link(&live, &kept)?;
                batch.changed(fs::parent(&kept));
                if std::fs::read_link(&kept).ok().as_deref() != Some(Path::new(target)) {
                    return Err(changed_meanwhile(&live));
                }
            }
            Entry::Absent => {
                if fs::exists(&live)? {
                    return Err(changed_meanwhile(&live));
                }
            }
            Entry::Other => {}
        }
        if let Some(node) = node_of(desired, &f.path) {
            let dir = fs::parent(&live);
            if !dirs.contains(dir) {
                fs::create_dirs(dir)?;
                dirs.insert(dir.to_path_buf());
            }
            let tmp = fs::write_temp(&live, node)?;
            batch.wrote(&tmp);
        }
    }
    crate::fault::point("switch prepared, before the sync");
    Ok(())
}

/// Puts the new content in place, directory by directory (step 2), and
/// makes it durable at once with what `batch` holds already.
pub fn switch(
    root: &Path,
    files: &[FileChange],
    desired: &Artifacts,
    mut batch: Batch,
) -> Result<(), StateError> {
    for (dir, paths) in by_directory(root, files.iter().map(|f| (f.path.as_str(), ()))) {
        for (live, rel, ()) in paths {
            if node_of(desired, rel).is_some() {
                fs::rename_entry(&fs::temp_path(&live), &live)?;
            } else {
                fs::remove_entry(&live)?;
            }
            crate::fault::point("file switched");
        }
        batch.changed(&dir);
        crate::fault::point("directory switched");
    }
    batch.sync()?;
    crate::fault::point("files synced");
    Ok(())
}

/// Drops what a committed switch kept (step 3), durably (before the
/// journal that names it goes). After a crash (`leftovers`), temporary
/// files are looked for too.
pub fn commit(
    root: &Path,
    touched: &BTreeMap<String, TouchedPath>,
    leftovers: bool,
) -> Result<(), StateError> {
    let mut batch = Batch::default();
    for (path, touched) in touched {
        let live = root.join(path);
        let kept = matches!(touched.before, Entry::File { .. } | Entry::Symlink { .. })
            && fs::remove_entry(&fs::kept_path(&live))?;
        if kept | (leftovers && fs::remove_entry(&fs::temp_path(&live))?) {
            batch.changed(fs::parent(&live));
        }
    }
    Ok(batch.sync()?)
}

/// Puts every touched path back as it was before the switch, whichever
/// steps it had reached (or a crash interrupted), durably; needs no new
/// space. Safe to repeat.
pub fn restore(store: &Store, touched: &BTreeMap<String, TouchedPath>) -> Result<(), StateError> {
    let mut batch = Batch::default();
    for (path, touched) in touched {
        let live = store.root().join(path);
        let removed = fs::remove_entry(&fs::temp_path(&live))?;
        if restore_one(store, &live, path, &touched.before)? | removed {
            batch.changed(fs::parent(&live));
        }
        crate::fault::point("file restored");
    }
    Ok(batch.sync()?)
}

/// Returns whether anything in the path's directory changed.
fn restore_one(store: &Store, live: &Path, rel: &str, before: &Entry) -> Result<bool, StateError> {
    let kept = fs::kept_path(live);
    match before {
        Entry::Absent => Ok(fs::remove_entry(live)?),
        Entry::Other => Ok(false),
        Entry::File { .. } | Entry::Symlink { .. } if fs::exists(&kept)? => {
            if fs::exists(live)? && fs::same_inode(&kept, live)? {
                // Never replaced: `rename` between two links of one inode
                // would do nothing.
                fs::remove_entry(&kept)?;
            } else {
                fs::rename_entry(&kept, live)?;
            }
            Ok(true)
        }
        // Nothing kept: the path was never replaced, unless an earlier
        // version of ctm wrote the journal (and kept a copy of the file in
        // it); such a copy is written back (that needs space, as it did).
        Entry::File { mode, .. } => match store.legacy_backup(rel) {
            Some(backup) if fs::read_entry(live)?.0 != *before => {
                fs::write_file(live, &fs::read(&backup)?, *mode)?;
                Ok(true)
            }
            _ => Ok(false),
        },
        Entry::Symlink { target } => {
            if std::fs::read_link(live).ok().as_deref() != Some(Path::new(target)) {
                fs::write_symlink(live, target)?;
                return Ok(true);
            }
            Ok(false)
        }
    }
}
