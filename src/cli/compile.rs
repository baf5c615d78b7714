//! `ctm compile FILE --out DIR`: write the compiled tree, and the lock.

use std::path::PathBuf;
use std::process::ExitCode;

use super::output::errln;
use super::{OutputFormat, print_diagnostics};
use crate::engine::images;
use crate::engine::load::load_at_most;
use crate::engine::preview::{self, Refusal};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The host file (`.kdl`, or `.toml` for the TOML form).
    file: PathBuf,
    #[command(flatten)]
    size: super::SizeLimit,
    /// Directory to write the root-relative tree into (created if missing).
    #[arg(long, short)]
    out: PathBuf,
    /// The root whose OCI blob cache holds what OCI images run: the
    /// configs of the images application containers run are read from
    /// it (and fetched into it when missing).
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
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
    let mut outcome = load_at_most(&args.file, args.lock.as_deref(), args.size.bytes())?;
    print_diagnostics(&outcome, args.format);
    let Some(validated) = &mut outcome.validated else {
        return Ok(ExitCode::FAILURE);
    };
    images::read_configs(&args.root, validated, &mut |event| {
        errln(&event.to_string())
    })?;
    let Some(validated) = &outcome.validated else {
        return Ok(ExitCode::FAILURE);
    };
    let options = preview::Options {
        locked: args.locked,
        force: args.force,
        durable: args.durable,
    };
    match preview::write(&outcome, validated, &args.out, options)? {
        Ok(written) => {
            if let Some(lock_path) = &written.lock_updated {
                errln(&format!("updated {}", lock_path.display()));
            }
            errln(&format!(
                "wrote {} files to {} ({} unchanged)",
                written.written,
                args.out.display(),
                written.unchanged
            ));
            Ok(ExitCode::SUCCESS)
        }
        Err(Refusal::LockOutOfDate { lock_path }) => {
            errln(&format!(
                "error: {} is out of date and --locked was given; run `ctm compile` without --locked to update it",
                lock_path.display()
            ));
            Ok(ExitCode::FAILURE)
        }
        Err(Refusal::Foreign { paths }) => {
            errln("error: these files exist and were not written by ctm; nothing was written:");
            for path in &paths {
                errln(&format!("  {}", path.display()));
            }
            errln("pass --force to replace them");
            Ok(ExitCode::FAILURE)
        }
    }
}
