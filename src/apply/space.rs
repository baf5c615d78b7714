//! Whether the file systems have room for a switch, checked before it
//! writes anything (`statvfs`): a switch that would fill a disk is
//! refused with what it needs, rather than started and undone.
//!
//! The check is an estimate and cannot reserve anything (another process
//! may write in between), so a switch that runs out of space anyway is
//! undone like any failed switch, which needs no space.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::compile::{Artifacts, Content};
use crate::fs::{self, Space};
use crate::plan::{FileChange, Manifest};
use crate::state::Store;

/// Room kept free beyond the estimate, in blocks and inodes: directory
/// blocks that grow, and the small files of the state (meta, journal).
const SLACK: u64 = 16;

/// What one file system must have free.
#[derive(Debug, Default)]
struct Need {
    /// A directory on it, to name it by.
    at: PathBuf,
    space: Option<Space>,
    bytes: u64,
    inodes: u64,
}

impl Need {
    fn file(&mut self, len: u64) {
        let block = self.space.map_or(4096, |s| s.block);
        self.bytes += len.div_ceil(block) * block;
        self.inodes += 1;
    }
}

/// The needs of a switch, by file system.
#[derive(Default)]
struct Needs {
    by_device: BTreeMap<u64, Need>,
    /// Directory → (its device, how many directories must be made for
    /// it to exist).
    dirs: HashMap<PathBuf, (u64, u64)>,
}

impl Needs {
    /// The need of the file system `dir` is (or will be) on; counts the
    /// directories that must be made for it, once each.
    fn of(&mut self, dir: &Path) -> Result<&mut Need, String> {
        let (device, _) = self.locate(dir)?;
        Ok(self.by_device.get_mut(&device).expect("located"))
    }

    fn locate(&mut self, dir: &Path) -> Result<(u64, u64), String> {
        if let Some(found) = self.dirs.get(dir) {
            return Ok(*found);
        }
        let found = if dir.is_dir() {
            let space = fs::space(dir).map_err(|e| e.to_string())?;
            self.by_device.entry(space.device).or_insert_with(|| Need {
                at: dir.to_path_buf(),
                space: Some(space),
                ..Need::default()
            });
            (space.device, 0)
        } else {
            let (device, missing) = self.locate(fs::parent(dir))?;
            let need = self.by_device.get_mut(&device).expect("located");
            let block = need.space.map_or(4096, |s| s.block);
            need.file(block);
            (device, missing + 1)
        };
        self.dirs.insert(dir.to_path_buf(), found);
        Ok(found)
    }
}

fn kib(bytes: u64) -> String {
    format!("{} KiB", bytes.div_ceil(1024))
}

/// Checks that the switch of `files` to `desired` (staging a generation
/// with this manifest and these new contents, if given) fits.
pub fn check(
    store: &Store,
    files: &[FileChange],
    desired: &Artifacts,
    staged: Option<(&Manifest, &BTreeSet<String>)>,
) -> Result<(), String> {
    let mut needs = Needs::default();
    // The state: the journal, and a new generation.
    let state = needs.of(store.dir())?;
    state.file(files.iter().map(|f| f.path.len() as u64 + 200).sum());
    if let Some((manifest, new_objects)) = staged {
        // Source, lock, meta and manifest; the manifest's size estimated
        // from its number of entries.
        state.inodes += 6;
        state.file(manifest.files.len() as u64 * 200);
        let mut counted = BTreeSet::new();
        for (path, artifact) in &desired.files {
            if let (Content::File { text, .. }, Some(m)) =
                (&artifact.content, manifest.files.get(path))
                && let fs::Entry::File { sha256, .. } = &m.entry
                && new_objects.contains(sha256)
                && counted.insert(sha256)
            {
                state.file(text.len() as u64);
            }
        }
    }
    // The live files: each new file or symlink is written beside its path
    // first (what it replaces is kept by a hard link: no space).
    for f in files {
        let Some(artifact) = desired.files.get(&f.path) else {
            continue;
        };
        let live = store.root().join(&f.path);
        let need = needs.of(fs::parent(&live))?;
        match &artifact.content {
            Content::File { text, .. } => need.file(text.len() as u64),
            Content::Symlink { .. } => need.file(0),
        }
    }
    for need in needs.by_device.values() {
        let Some(space) = need.space else { continue };
        let block = space.block;
        let short_of_bytes = need.bytes + SLACK * block > space.bytes;
        let short_of_inodes = space.inodes.is_some_and(|free| need.inodes + SLACK > free);
        let mut short = Vec::new();
        if short_of_bytes {
            short.push(format!(
                "it needs {} of space and {} are free",
                kib(need.bytes + SLACK * block),
                kib(space.bytes)
            ));
        }
        if let (true, Some(free)) = (short_of_inodes, space.inodes) {
            short.push(format!(
                "it needs {} inodes and {free} are free",
                need.inodes + SLACK
            ));
        }
        if !short.is_empty() {
            return Err(format!(
                "not enough room on the file system of {} for this switch: {}; free some (`ctm gc` removes old generations) and try again",
                need.at.display(),
                short.join(", and ")
            ));
        }
    }
    Ok(())
}
