//! `ctm compile FILE --out DIR`: the compiled tree written into a
//! directory for a user to read, diff or ship, and the lock file updated.
//! A preview, not an apply: nothing is synced unless asked, and only the
//! files whose bytes change are written.

use std::path::{Path, PathBuf};

use miette::{IntoDiagnostic as _, WrapErr as _};

use super::load::Outcome;
use crate::compile::{self, Artifacts, Existing};
use crate::fs;
use crate::validate::Validated;

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Refuse to update the lock file (for CI).
    pub locked: bool,
    /// Replace files at the output paths even if ctm did not write them.
    pub force: bool,
    /// Make the written files durable before returning.
    pub durable: bool,
}

/// What was written.
#[derive(Debug)]
pub struct Written {
    pub written: usize,
    pub unchanged: usize,
    /// The lock file, when it changed and was written.
    pub lock_updated: Option<PathBuf>,
}

/// Why nothing was written.
#[derive(Debug)]
pub enum Refusal {
    /// The lock file would change, and `locked` was asked for.
    LockOutOfDate { lock_path: PathBuf },
    /// Output paths holding something ctm did not write (without `force`).
    Foreign { paths: Vec<PathBuf> },
}

/// Writes the tree compiled from `validated` (the host file `outcome`
/// read) under `out`, and the lock file when it changed.
pub fn write(
    outcome: &Outcome,
    validated: &Validated,
    out: &Path,
    options: Options,
) -> miette::Result<Result<Written, Refusal>> {
    let new_lock = validated.lock.render();
    let lock_changed =
        outcome.lock_file.as_ref().map(|l| l.text.as_str()) != Some(new_lock.as_str());
    if lock_changed && options.locked {
        return Ok(Err(Refusal::LockOutOfDate {
            lock_path: outcome.lock_path.clone(),
        }));
    }
    let artifacts = compile::compile(&validated.host);
    // A directory that does not exist yet holds nothing foreign: its
    // thousands of lookups would all say so.
    let out_exists = !matches!(std::fs::symlink_metadata(out), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    if !options.force && out_exists {
        let paths = foreign_files(out, &artifacts)?;
        if !paths.is_empty() {
            return Ok(Err(Refusal::Foreign { paths }));
        }
    }
    let tree = fs::write_tree(out, artifacts.nodes(), options.durable)?;
    let lock_updated = if lock_changed {
        fs::write_file(&outcome.lock_path, new_lock.as_bytes(), 0o644)?;
        Some(outcome.lock_path.clone())
    } else {
        None
    };
    Ok(Ok(Written {
        written: tree.written,
        unchanged: tree.unchanged,
        lock_updated,
    }))
}

/// Output paths holding something ctm did not write.
fn foreign_files(root: &Path, artifacts: &Artifacts) -> miette::Result<Vec<PathBuf>> {
    let mut foreign = Vec::new();
    for (rel, artifact) in &artifacts.files {
        let path = root.join(rel);
        let existing = match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(e)
                    .into_diagnostic()
                    .wrap_err_with(|| format!("cannot inspect {}", path.display()));
            }
            Ok(meta) if meta.file_type().is_symlink() => match std::fs::read_link(&path) {
                Ok(target) => Existing::Symlink(target.to_string_lossy().into_owned()),
                Err(_) => Existing::Other,
            },
            Ok(meta) if meta.is_file() => match std::fs::read_to_string(&path) {
                Ok(text) => Existing::File(text),
                Err(_) => Existing::Other,
            },
            Ok(_) => Existing::Other,
        };
        if !Artifacts::may_replace(rel, artifact, &existing) {
            foreign.push(path);
        }
    }
    Ok(foreign)
}
