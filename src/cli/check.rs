//! `ctm check FILE`: validate and report.

use std::path::PathBuf;
use std::process::ExitCode;

use super::output::errln;
use super::{OutputFormat, print_diagnostics};
use crate::engine::load::load_at_most;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The host file (`.kdl`, or `.toml` for the TOML form).
    file: PathBuf,
    /// How to print problems.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
    /// The lock file to read (default: FILE.lock).
    #[arg(long)]
    lock: Option<PathBuf>,
    #[command(flatten)]
    size: super::SizeLimit,
}

pub fn run(args: &Args) -> ExitCode {
    let outcome = match load_at_most(&args.file, args.lock.as_deref(), args.size.bytes()) {
        Ok(o) => o,
        Err(report) => {
            errln(&format!("{report:?}"));
            return ExitCode::FAILURE;
        }
    };
    print_diagnostics(&outcome, args.format);
    if outcome.error_count() > 0 {
        return ExitCode::FAILURE;
    }
    if let (OutputFormat::Human, Some(v)) = (args.format, &outcome.validated) {
        let h = &v.host;
        // Volumes are named only where there are some, so that the line
        // of a host without them reads as it always did.
        let volumes = match h.volumes.len() {
            0 => String::new(),
            n => format!(", {n} volume{}", plural(n)),
        };
        errln(&format!(
            "{}: ok ({} container{}, {} network{}, {} tunnel{}{volumes})",
            args.file.display(),
            h.containers.len(),
            plural(h.containers.len()),
            h.networks.len(),
            plural(h.networks.len()),
            h.tunnels.len(),
            plural(h.tunnels.len()),
        ));
    }
    ExitCode::SUCCESS
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
