//! `ctm compile FILE --out DIR`: write the compiled tree, and the lock.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use miette::{IntoDiagnostic, WrapErr};

use super::output::errln;
use super::{OutputFormat, print_diagnostics};
use crate::compile::{self, Artifacts, Existing};
use crate::engine::load::load_and_validate;
use crate::fs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The host file (`.kdl`, or `.toml` for the TOML form).
    file: PathBuf,
    /// Directory to write the root-relative tree into (created if missing).
    #[arg(long, short)]
    out: PathBuf,
    /// The lock file to read and update (default: FILE.lock).
    #[arg(long)]
    lock: Option<PathBuf>,
    /// Fail instead of updating the lock file (for CI).
    #[arg(long)]
    locked: bool,
    /// Replace files at the output paths even if ctm did not write them.
    #[arg(long)]
    force: bool,
    /// Make the written files durable (fsynced) before returning; by
    /// default the tree is a preview and is not synced.
    #[arg(long)]
    durable: bool,
    /// How to print problems.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
}

pub fn run(args: &Args) -> ExitCode {
    match compile_to(args) {
        Ok(code) => code,
        Err(report) => {
            errln(&format!("{report:?}"));
            ExitCode::FAILURE
        }
    }
}

fn compile_to(args: &Args) -> miette::Result<ExitCode> {
    let outcome = load_and_validate(&args.file, args.lock.as_deref())?;
    print_diagnostics(&outcome, args.format);
    let Some(validated) = &outcome.validated else {
        return Ok(ExitCode::FAILURE);
    };
    let new_lock = validated.lock.render();
    let lock_changed =
        outcome.lock_file.as_ref().map(|l| l.text.as_str()) != Some(new_lock.as_str());
    if lock_changed && args.locked {
        errln(&format!(
            "error: {} is out of date and --locked was given; run `ctm compile` without --locked to update it",
            outcome.lock_path.display()
        ));
        return Ok(ExitCode::FAILURE);
    }
    let artifacts = compile::compile(&validated.host);
    if !args.force {
        let foreign = foreign_files(&args.out, &artifacts)?;
        if !foreign.is_empty() {
            errln("error: these files exist and were not written by ctm; nothing was written:");
            for path in &foreign {
                errln(&format!("  {}", path.display()));
            }
            errln("pass --force to replace them");
            return Ok(ExitCode::FAILURE);
        }
    }
    let written = fs::write_tree(&args.out, artifacts.nodes(), args.durable)?;
    if lock_changed {
        fs::write_file(&outcome.lock_path, new_lock.as_bytes(), 0o644)?;
        errln(&format!("updated {}", outcome.lock_path.display()));
    }
    errln(&format!(
        "wrote {} files to {} ({} unchanged)",
        written.written,
        args.out.display(),
        written.unchanged
    ));
    Ok(ExitCode::SUCCESS)
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
