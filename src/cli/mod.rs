//! The command line: a thin face over the application layer (`engine`).
//! Each command parses its arguments, calls the use case, and prints what
//! it returns and the events it reports; none holds logic of its own.

mod apply;
mod backup;
mod check;
mod compile;
mod container;
mod destroy;
mod fleet;
mod generations;
mod images;
mod info;
mod output;
mod plan;
pub mod serve;
mod snapshot;
mod status;
mod topology;
mod tunnel;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::clock::Timeout;
use crate::diagnostic::reports_in_file;
use crate::engine::Target;
use crate::engine::load::Outcome;

pub use output::Stdout;

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
    Diff(generations::CompareArgs),
    /// Keep an apply made with --confirm-timeout.
    Confirm(generations::ConfirmArgs),
    /// Finish or undo a switch that was interrupted (any command does this first).
    Recover {
        #[command(flatten)]
        root: RootArgs,
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
    /// Freeze every process of a running container (the cgroup freezer);
    /// applies leave it paused.
    Pause(container::Args),
    /// Thaw a paused container.
    Resume(container::Args),
    /// Send a signal to every process of a running container.
    Kill(container::KillArgs),
    /// Run a command in a running container (on a terminal of its own
    /// when ctm is run at one); exits as the command did.
    Exec(container::ExecArgs),
    /// Open a login shell in a running container.
    Shell(container::ShellArgs),
    /// What running containers use: CPU, memory, block I/O, network, tasks.
    Stats(container::StatsArgs),
    /// Show a container's journal.
    Logs(container::LogsArgs),
    /// Delete a container's root file system (asks for its name first).
    /// One still in the host file is made afresh from its image by the
    /// next apply or start.
    Destroy(destroy::Args),
    /// Take a snapshot of a container: a copy of its root file system
    /// (and, with --volumes, its volumes), frozen for the copy if it runs.
    Snapshot(snapshot::Args),
    /// List the snapshots of a container, or of every container; with
    /// --delete ID or --keep N, delete some of a container's.
    Snapshots(snapshot::ListArgs),
    /// Put a snapshot (or, with --from, a backup archive) of a container
    /// back; what it replaces is kept as a snapshot first. A running
    /// container is stopped and started again. With --volume, a volume's
    /// archive; what it replaces is kept as an archive.
    Restore(snapshot::RestoreArgs),
    /// Write a backup archive of a container (tar + zstd): its root file
    /// system, its volumes, its part of the host file and lock, and a
    /// manifest with the sha256 of every member; with --volume, of one
    /// volume alone (see docs/backups.md).
    Backup(backup::Args),
    /// List the backup archives of a container, or with --volume of a
    /// volume.
    Backups(backup::ListArgs),
    /// Write a container's archive to move it to another host (the
    /// archive of `ctm backup`).
    Export(backup::ExportArgs),
    /// Put a container's archive in place as a container of this host,
    /// never over anything that exists; prints the host file's part to add.
    Import(backup::ImportArgs),
    /// Show what this host runs and whether ctm can drive it.
    Info(info::Args),
    /// Tunnels: `status [NAME]` shows each one's link, counters and the
    /// underlay's route to its remote endpoint, with what looks wrong.
    #[command(subcommand)]
    Tunnel(tunnel::Command),
    /// Bring a topology of the host file up: its networks' bridges, its
    /// links, and its containers started, as one apply of the current
    /// generation's host file (plan, question unless --yes, rollback).
    Up(topology::MoveArgs),
    /// Bring a topology down: its containers stopped and not started at
    /// boot, its links and bridges removed; their root file systems and
    /// volumes stay. One apply, as `up`; the host file is not changed.
    Down(topology::MoveArgs),
    /// List the topologies of the current generation, up or down, with
    /// their members.
    Topologies(topology::ListArgs),
    /// List the images: the current generation's (with the containers
    /// made from them) and those the store keeps for older ones.
    Images(images::ListArgs),
    /// Images: `pull NAME [FILE]` builds, pulls or unpacks one into the
    /// store now; `build NAME [FILE]` builds one from its recipe; `rm
    /// NAME` removes one no container uses.
    #[command(subcommand)]
    Image(images::Command),
    /// Remove old generations, and the images that no generation left uses.
    Gc(generations::GcArgs),
    /// Serve the web editor: dashboard, editor with plan preview, apply,
    /// generations and logs (see docs/web.md).
    Serve(serve::Args),
    /// Many hosts from one fleet file, over SSH: check, plan, apply
    /// (canary, confirmation over a new connection, rollback of the run),
    /// status, push-binary (see docs/fleet.md).
    #[command(subcommand)]
    Fleet(fleet::Command),
    /// Print the JSON Schema of the TOML form of the host file.
    Schema {
        /// The schema of the fleet file instead.
        #[arg(long)]
        fleet: bool,
    },
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

/// The root a command works on.
#[derive(Debug, Clone, clap::Args)]
pub struct RootArgs {
    /// Manage the files under this directory instead of the running
    /// system (system actions are then listed, not performed; volumes,
    /// directories under it, are made).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Give up after waiting this many seconds for another ctm to finish
    /// (default: wait as long as it takes; at most 604800, 7 days).
    #[arg(long, value_name = "SECONDS")]
    pub lock_timeout: Option<Timeout>,
}

impl RootArgs {
    pub fn target(&self) -> Target {
        Target {
            lock_timeout: self.lock_timeout.map(Timeout::duration),
            ..Target::new(&self.root)
        }
    }
}

/// How a switch (apply, rollback) runs on the running system.
#[derive(Debug, Clone, clap::Args)]
pub struct SwitchArgs {
    /// Run the switch in this process rather than in a transient systemd
    /// unit. Then, if this process dies part-way (a dropped SSH session),
    /// the next ctm command rolls the switch back instead of it finishing.
    #[arg(long)]
    pub foreground: bool,
    /// Set by ctm itself for the process that runs in the transient unit.
    #[arg(long, hide = true)]
    pub in_unit: bool,
}

impl SwitchArgs {
    pub fn runner(&self) -> crate::engine::apply::Runner {
        use crate::engine::apply::Runner;
        match (self.in_unit, self.foreground) {
            (true, _) => Runner::InUnit,
            (false, true) => Runner::Foreground,
            (false, false) => Runner::Auto,
        }
    }
}

/// What `plan` and `apply` show of file contents.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DiffArgs {
    /// Leave out the diffs of file contents.
    #[arg(long, conflicts_with = "diff")]
    pub no_diff: bool,
    /// Show new files whole (by default a new file is one line, and a
    /// first apply is summarised by kind).
    #[arg(long)]
    pub diff: bool,
}

impl DiffArgs {
    pub fn show(&self) -> crate::plan::render::Show {
        use crate::plan::render::Show;
        match (self.no_diff, self.diff) {
            (true, _) => Show::NoDiffs,
            (false, true) => Show::Whole,
            (false, false) => Show::Changes,
        }
    }
}

/// What the command line leaves to `main`: the exit code of a command it
/// ran, or the web editor to start.
pub enum Run {
    Done(ExitCode),
    Serve(serve::Args),
}

pub fn main() -> Run {
    let cli = Cli::parse();
    Run::Done(match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Compile(args) => compile::run(&args),
        Command::Plan(args) => report(plan::run(&args)),
        Command::Apply(args) => report(apply::run(&args)),
        Command::Rollback(args) => report(generations::rollback(&args)),
        Command::Generations(args) => report(generations::list(&args)),
        Command::Diff(args) => report(generations::diff(&args)),
        Command::Confirm(args) => report(generations::confirm(&args)),
        Command::Recover { root } => report(generations::recover(&root)),
        Command::Status(args) => report(status::run(&args)),
        Command::Start(args) => report(container::run(
            crate::engine::containers::Verb::Start,
            &args,
        )),
        Command::Stop(args) => report(container::run(crate::engine::containers::Verb::Stop, &args)),
        Command::Restart(args) => report(container::run(
            crate::engine::containers::Verb::Restart,
            &args,
        )),
        Command::Pause(args) => report(container::pause(&args, true)),
        Command::Resume(args) => report(container::pause(&args, false)),
        Command::Kill(args) => report(container::kill(&args)),
        Command::Exec(args) => report(container::exec(&args)),
        Command::Shell(args) => report(container::shell(&args)),
        Command::Stats(args) => report(container::stats(&args)),
        Command::Logs(args) => report(container::logs(&args)),
        Command::Destroy(args) => report(destroy::run(&args)),
        Command::Snapshot(args) => report(snapshot::take(&args)),
        Command::Snapshots(args) => report(snapshot::list(&args)),
        Command::Restore(args) => report(snapshot::restore(&args)),
        Command::Backup(args) => report(backup::backup(&args)),
        Command::Backups(args) => report(backup::list(&args)),
        Command::Export(args) => report(backup::export(&args)),
        Command::Import(args) => report(backup::import(&args)),
        Command::Info(args) => report(info::run(&args)),
        Command::Tunnel(command) => report(tunnel::run(&command)),
        Command::Up(args) => report(topology::run_move(
            &args,
            crate::engine::topologies::Direction::Up,
        )),
        Command::Down(args) => report(topology::run_move(
            &args,
            crate::engine::topologies::Direction::Down,
        )),
        Command::Topologies(args) => report(topology::run_list(&args)),
        Command::Images(args) => report(images::list(&args)),
        Command::Image(command) => report(images::run(&command)),
        Command::Gc(args) => report(generations::gc(&args)),
        Command::Serve(args) => return Run::Serve(args),
        Command::Fleet(command) => report(fleet::run(&command)),
        Command::Schema { fleet } => {
            output::out(&crate::schema::render_of(if fleet {
                crate::schema::Language::Fleet
            } else {
                crate::schema::Language::Host
            }));
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ctm", &mut Stdout);
            ExitCode::SUCCESS
        }
    })
}

/// Prints an error with its causes and help; errors exit 1.
pub fn report(result: miette::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            output::errln(&format!("{e:?}"));
            ExitCode::FAILURE
        }
    }
}

/// How large a host file a command reads: a bound on the memory and time
/// a mistaken path (a disk image, a log) can cost.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct SizeLimit {
    /// Read host files of up to this many MiB (a host of 1,000 containers
    /// is about 200 KB).
    #[arg(long, value_name = "MIB", default_value_t = (crate::config::MAX_SIZE_CLI >> 20) as u64,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_file_size: u64,
}

impl SizeLimit {
    pub fn bytes(self) -> usize {
        usize::try_from(self.max_file_size << 20).unwrap_or(usize::MAX)
    }
}

/// Prints every diagnostic, sorted by position, in the chosen format.
pub fn print_diagnostics(outcome: &Outcome, format: OutputFormat) {
    match format {
        OutputFormat::Human => {
            let host_name = outcome.host_file.path.display().to_string();
            let text = &outcome.host_file.text;
            for report in reports_in_file(&host_name, text, outcome.sorted_diagnostics()) {
                output::errln(&format!("{report:?}"));
            }
            if let Some(d) = &outcome.lock_diagnostic {
                let lock_text = outcome.lock_file.as_ref().map_or("", |l| l.text.as_str());
                output::errln(&format!(
                    "{:?}",
                    d.report(&outcome.lock_path.display().to_string(), lock_text)
                ));
            }
            let errors = outcome.error_count();
            if errors > 0 {
                output::errln(&format!(
                    "error: {host_name}: {errors} problem{} found",
                    if errors == 1 { "" } else { "s" }
                ));
            }
        }
        OutputFormat::Json => output::outln(
            &serde_json::to_string_pretty(&outcome.diagnostics_json())
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")),
        ),
    }
}

/// Asks on a terminal for `answer` to be typed; elsewhere `--yes` is
/// required.
pub fn ask(prompt: &str, answer: &str, yes: bool) -> miette::Result<bool> {
    use miette::{IntoDiagnostic as _, WrapErr as _};
    use std::io::{BufRead as _, Write as _};
    if yes {
        return Ok(true);
    }
    if !output::can_ask() {
        return Err(miette::miette!(
            help = "pass --yes to go ahead without asking",
            "standard input is not a terminal, so ctm cannot ask for confirmation"
        ));
    }
    let _ = write!(std::io::stderr(), "{prompt} ");
    let _ = std::io::stderr().flush();
    let mut typed = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut typed)
        .into_diagnostic()
        .wrap_err("cannot read the answer")?;
    Ok(typed.trim() == answer)
}

/// Asks a yes/no question on a terminal; elsewhere `--yes` is required.
pub fn confirm(question: &str, yes: bool) -> miette::Result<bool> {
    ask(&format!("{question} Only 'yes' is accepted:"), "yes", yes)
}
