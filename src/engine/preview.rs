//! `ctm compile FILE --out DIR`: the compiled tree written into a
//! directory for a user to read, diff or ship, and the lock file updated.
//! A preview, not an apply: nothing is synced unless asked, and only the
//! files whose bytes change are written.

use std::path::{Path, PathBuf};

use miette::{IntoDiagnostic as _, WrapErr as _};

use super::load::Outcome;
use crate::compile::{self, Artifact, Artifacts, Existing};
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
    // A directory that does not exist yet holds nothing foreign and
    // nothing unchanged: its thousands of lookups would all say so.
    let out_exists = !matches!(std::fs::symlink_metadata(out), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    let (mut to_write, mut unchanged) = (Vec::new(), 0);
    let mut foreign = Vec::new();
    for (rel, artifact) in &artifacts.files {
        let path = out.join(rel);
        // Each existing file read once: one that holds its bytes and mode
        // is neither foreign nor written again (`compile --out` into an
        // unchanged tree reads each file and writes nothing).
        if out_exists && fs::holds(&path, artifact.node())? {
            unchanged += 1;
            continue;
        }
        if out_exists && !options.force && is_foreign(&path, rel, artifact)? {
            foreign.push(path);
        }
        to_write.push((rel.as_str(), artifact.node()));
    }
    if !foreign.is_empty() {
        return Ok(Err(Refusal::Foreign { paths: foreign }));
    }
    let tree = fs::write_tree(out, to_write, options.durable)?;
    let lock_updated = if lock_changed {
        fs::write_file(&outcome.lock_path, new_lock.as_bytes(), 0o644)?;
        Some(outcome.lock_path.clone())
    } else {
        None
    };
    Ok(Ok(Written {
        written: tree.written,
        unchanged: unchanged + tree.unchanged,
        lock_updated,
    }))
}

/// Whether the path of an artifact holds something ctm did not write.
fn is_foreign(path: &Path, rel: &str, artifact: &Artifact) -> miette::Result<bool> {
    let existing = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(e)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot inspect {}", path.display()));
        }
        Ok(meta) if meta.file_type().is_symlink() => match std::fs::read_link(path) {
            Ok(target) => Existing::Symlink(target.to_string_lossy().into_owned()),
            Err(_) => Existing::Other,
        },
        Ok(meta) if meta.is_file() => match std::fs::read_to_string(path) {
            Ok(text) => Existing::File(text),
            Err(_) => Existing::Other,
        },
        Ok(_) => Existing::Other,
    };
    Ok(!Artifacts::may_replace(rel, artifact, &existing))
}
