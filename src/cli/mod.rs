//! The command line: argument parsing and wiring. Every side effect of ctm
//! (reading the host file and lock, writing artifacts) happens here or
//! below; the stages it calls are pure.

pub(crate) mod apply;
mod check;
mod compile;
mod container;
mod destroy;
pub(crate) mod generations;
mod info;
pub(crate) mod plan;
mod serve;
pub(crate) mod session;
mod status;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::{self, Format, Source};
use crate::diagnostic::Diagnostic;
use crate::lock::Lock;
use crate::validate::{self, Validated};

#[derive(Debug, Parser)]
#[command(
    name = "ctm",
    version,
    about = "Declarative manager for systemd-nspawn containers",
    long_about = "ctm compiles one declarative host file (KDL or TOML) into systemd-nspawn, \
                  systemd-networkd and nftables configuration.\n\n\
                  Start with `ctm check host.kdl`, then `ctm compile host.kdl --out DIR` to see \
                  the files it would install."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and validate a host file; report every problem at once.
    Check(check::Args),
    /// Compile a host file into the files systemd and nft read.
    Compile(compile::Args),
    /// Show what `apply` would change, and why.
    Plan(plan::Args),
    /// Move the host to the host file's configuration, as a new generation;
    /// roll back by itself if anything fails.
    Apply(apply::Args),
    /// Return the host to an earlier generation.
    Rollback(generations::RollbackArgs),
    /// List the generations.
    Generations(generations::ListArgs),
    /// Show how two generations differ.
    Diff(generations::DiffArgs),
    /// Keep an apply made with --confirm-timeout.
    Confirm {
        #[command(flatten)]
        root: session::RootArgs,
    },
    /// Finish or undo a switch that was interrupted (any command does this first).
    Recover {
        #[command(flatten)]
        root: session::RootArgs,
    },
    /// Show the containers, links and firewall of the current generation as
    /// they are now, with what drifted.
    Status(status::Args),
    /// Start a container of the current generation (its root file system
    /// and provisioning steps first, if they are missing).
    Start(container::Args),
    /// Stop a container (a container that starts at boot then shows as drift).
    Stop(container::Args),
    /// Restart a container.
    Restart(container::Args),
    /// Show a container's journal.
    Logs(container::LogsArgs),
    /// Delete a container's root file system (asks for its name first).
    /// One still in the host file is made afresh from its image by the
    /// next apply or start.
    Destroy(destroy::Args),
    /// Show what this host runs and whether ctm can drive it.
    Info(info::Args),
    /// Remove old generations, and the images that no generation left uses.
    Gc(generations::GcArgs),
    /// Serve the web editor: dashboard, editor with plan preview, apply,
    /// generations and logs (see docs/web.md).
    Serve(serve::Args),
    /// Print the JSON Schema of the TOML form of the host file.
    Schema,
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// How diagnostics are printed.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum OutputFormat {
    /// Annotated source excerpts, for people.
    #[default]
    Human,
    /// One JSON document, for editors and tools.
    Json,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Compile(args) => compile::run(&args),
        Command::Plan(args) => report(plan::run(&args)),
        Command::Apply(args) => report(apply::run(&args)),
        Command::Rollback(args) => report(generations::rollback(&args)),
        Command::Generations(args) => report(generations::list(&args)),
        Command::Diff(args) => report(generations::diff(&args)),
        Command::Confirm { root } => report(generations::confirm_pending(&root)),
        Command::Recover { root } => report(generations::recover(&root)),
        Command::Status(args) => report(status::run(&args)),
        Command::Start(args) => report(container::run(container::Verb::Start, &args)),
        Command::Stop(args) => report(container::run(container::Verb::Stop, &args)),
        Command::Restart(args) => report(container::run(container::Verb::Restart, &args)),
        Command::Logs(args) => report(container::logs(&args)),
        Command::Destroy(args) => report(destroy::run(&args)),
        Command::Info(args) => report(info::run(&args)),
        Command::Gc(args) => report(generations::gc(&args)),
        Command::Serve(args) => report(serve::run(&args)),
        Command::Schema => {
            print!("{}", crate::schema::render());
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ctm", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

/// Prints an error with its causes and help; errors exit 1.
fn report(result: miette::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:?}");
            ExitCode::FAILURE
        }
    }
}

/// The lock file that belongs to a host file: `host.kdl` → `host.kdl.lock`.
pub fn lock_path_for(host_file: &Path) -> PathBuf {
    let mut name = host_file.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// A file that was read, for reporting diagnostics against it.
pub struct Loaded {
    pub path: PathBuf,
    pub text: String,
}

/// Everything `check` and `compile` share: read, parse, validate.
pub struct Outcome {
    pub host_file: Loaded,
    pub lock_file: Option<Loaded>,
    pub lock_path: PathBuf,
    /// Problems in the host file.
    pub diagnostics: Vec<Diagnostic>,
    /// A problem in the lock file.
    pub lock_diagnostic: Option<Diagnostic>,
    pub validated: Option<Validated>,
}

pub fn load_and_validate(
    path: &Path,
    lock_override: Option<&Path>,
) -> Result<Outcome, miette::Report> {
    // A byte past the limit is enough to tell the file is too large.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(config::MAX_SIZE_CLI as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| miette::miette!("cannot read host file {}: {e}", path.display()))?;
    let lock_path = lock_override.map_or_else(|| lock_path_for(path), Path::to_path_buf);
    let lock_text = read_lock(&lock_path)?;
    match config::text_from_bytes(bytes, config::MAX_SIZE_CLI) {
        Ok(text) => Ok(validate_text(path, text, lock_path, lock_text)),
        Err(rejected) => Ok(Outcome {
            host_file: Loaded {
                path: path.to_path_buf(),
                text: rejected.shown,
            },
            lock_file: None,
            lock_path,
            diagnostics: vec![rejected.diagnostic],
            lock_diagnostic: None,
            validated: None,
        }),
    }
}

/// A lock file's text; `None` when there is none yet.
pub fn read_lock(lock_path: &Path) -> Result<Option<String>, miette::Report> {
    match std::fs::read_to_string(lock_path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(miette::miette!(
            "cannot read lock file {}: {e}",
            lock_path.display()
        )),
    }
}

/// Parses and validates a host file's text with its lock file's text.
pub fn validate_text(
    path: &Path,
    text: String,
    lock_path: PathBuf,
    lock_text: Option<String>,
) -> Outcome {
    validate_text_with(path, text, lock_path, lock_text, |text| {
        Lock::parse(text).map(Arc::new)
    })
}

/// [`validate_text`], with the lock file's text parsed by `parse_lock`,
/// which must give what `Lock::parse` gives (`ctm serve` keeps the lock
/// it parsed last: `state::Memory::parse_lock`).
pub fn validate_text_with(
    path: &Path,
    text: String,
    lock_path: PathBuf,
    lock_text: Option<String>,
    parse_lock: impl FnOnce(&str) -> Result<Arc<Lock>, Box<Diagnostic>>,
) -> Outcome {
    let lock_file = lock_text.map(|text| Loaded {
        path: lock_path.clone(),
        text,
    });
    let (previous, lock_diagnostic) = match &lock_file {
        Some(loaded) => match parse_lock(&loaded.text) {
            Ok(lock) => (lock, None),
            Err(d) => (Arc::new(Lock::empty()), Some(*d)),
        },
        None => (Arc::new(Lock::empty()), None),
    };
    let source = Source::new(path.display().to_string(), text, Format::from_path(path));
    let (document, mut diagnostics) = config::parse(&source);
    let mut validated = None;
    // Without a readable document or lock there is nothing sound to
    // validate; structural errors still let semantic ones be found.
    let syntax_failed = document.nodes.is_empty() && !diagnostics.is_empty();
    if lock_diagnostic.is_none() && !syntax_failed {
        match validate::validate(&document, &previous) {
            Ok(v) if diagnostics.is_empty() => validated = Some(v),
            Ok(_) => {}
            Err(more) => diagnostics.extend(more),
        }
    }
    Outcome {
        host_file: Loaded {
            path: path.to_path_buf(),
            text: source.text,
        },
        lock_file,
        lock_path,
        diagnostics,
        lock_diagnostic,
        validated,
    }
}

impl Outcome {
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
            + usize::from(self.lock_diagnostic.is_some())
    }

    /// Prints every diagnostic, sorted by position, in the chosen format.
    pub fn print_diagnostics(&self, format: OutputFormat) {
        let mut sorted: Vec<&Diagnostic> = self.diagnostics.iter().collect();
        sorted.sort_by_key(|d| (d.span.offset(), d.message.clone()));
        let host_name = self.host_file.path.display().to_string();
        let lock_name = self.lock_path.display().to_string();
        let lock_text = self.lock_file.as_ref().map_or("", |l| l.text.as_str());
        match format {
            OutputFormat::Human => {
                for d in &sorted {
                    eprintln!("{:?}", d.report(&host_name, &self.host_file.text));
                }
                if let Some(d) = &self.lock_diagnostic {
                    eprintln!("{:?}", d.report(&lock_name, lock_text));
                }
                let errors = self.error_count();
                if errors > 0 {
                    eprintln!(
                        "error: {host_name}: {errors} problem{} found",
                        if errors == 1 { "" } else { "s" }
                    );
                }
            }
            OutputFormat::Json => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&self.diagnostics_json())
                        .expect("a JSON value always serializes")
                );
            }
        }
    }

    /// The document `ctm check --format json` prints (and the web editor
    /// shows): every diagnostic, sorted by position, then the lock's.
    pub fn diagnostics_json(&self) -> serde_json::Value {
        let mut sorted: Vec<&Diagnostic> = self.diagnostics.iter().collect();
        sorted.sort_by_key(|d| (d.span.offset(), d.message.clone()));
        let host_name = self.host_file.path.display().to_string();
        let mut list: Vec<_> = sorted
            .iter()
            .map(|d| d.to_json(&host_name, &self.host_file.text))
            .collect();
        if let Some(d) = &self.lock_diagnostic {
            let lock_text = self.lock_file.as_ref().map_or("", |l| l.text.as_str());
            list.push(d.to_json(&self.lock_path.display().to_string(), lock_text));
        }
        serde_json::json!({
            "file": host_name,
            "valid": self.error_count() == 0,
            "diagnostics": list,
        })
    }
}
