//! `ctm fleet …`: many hosts from one fleet file, over SSH
//! (docs/fleet.md). The use cases are `engine::fleet`'s; this prints
//! their plans, tables and events.

use std::path::PathBuf;
use std::process::ExitCode;

use miette::{IntoDiagnostic as _, WrapErr as _};

use super::output::{errln, out_styled, outln, say};
use super::{DiffArgs, OutputFormat, confirm};
use crate::backend::ssh::OpenSsh;
use crate::diagnostic::reports_in_file;
use crate::engine::events::generation_name;
use crate::engine::fleet::{self, ApplyOptions, Controller, FleetPlan, Pushed};
use crate::plan::render;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate the fleet file and every host file it names; every
    /// problem at once.
    Check(CheckArgs),
    /// Plan every host with its own ctm, over SSH; exit 2 if any would
    /// change.
    Plan(PlanArgs),
    /// Apply each host's plan: the canary first, then group by group;
    /// each host confirmed over a new SSH connection; stop at the first
    /// failure and roll back the hosts this run switched.
    Apply(ApplyArgs),
    /// Each host's generation, drift, pending confirmation and last apply.
    Status(StatusArgs),
    /// Install this ctm on the hosts that lack it or run another version
    /// (checked by its SHA-256 on each host).
    PushBinary(PushArgs),
}

#[derive(Debug, clap::Args)]
pub struct FleetFile {
    /// The fleet file (`.kdl`, or `.toml` for the TOML form).
    #[arg(default_value = "fleet.kdl")]
    fleet: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct Hosts {
    /// Only these hosts: a host's name or a tag (repeat, or separate
    /// with commas).
    #[arg(long, value_name = "TAG|HOST", value_delimiter = ',')]
    on: Vec<String>,
    /// The ssh configuration file for every ssh call (`ssh -F FILE`);
    /// by default ssh reads the user's own.
    #[arg(long, value_name = "FILE")]
    ssh_config: Option<PathBuf>,
}

impl Hosts {
    fn ssh(&self) -> miette::Result<OpenSsh> {
        OpenSsh::new(self.ssh_config.as_deref())
            .into_diagnostic()
            .wrap_err("cannot make a directory for the SSH connections")
    }
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    file: FleetFile,
    /// How to print problems.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    file: FleetFile,
    #[command(flatten)]
    hosts: Hosts,
    /// Print the plans as JSON: each host's as `ctm plan --json` prints it.
    #[arg(long)]
    json: bool,
    /// How many hosts are planned at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    parallel: usize,
    #[command(flatten)]
    diff: DiffArgs,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    file: FleetFile,
    #[command(flatten)]
    hosts: Hosts,
    /// Apply without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// How many hosts of a group are applied at once.
    #[arg(long, value_name = "N", default_value_t = 1)]
    parallel: usize,
    /// The host, or group, to switch first and alone (default: the fleet
    /// file's `canary`).
    #[arg(long, value_name = "HOST|GROUP", conflicts_with = "no_canary")]
    canary: Option<String>,
    /// No canary, even if the fleet file names one.
    #[arg(long)]
    no_canary: bool,
    /// Go on past a failed host (but a failed canary), and roll back
    /// nothing.
    #[arg(long)]
    keep_going: bool,
    /// Where the record of the run goes (default: .ctm-fleet/runs beside
    /// the fleet file).
    #[arg(long, value_name = "DIR")]
    record_dir: Option<PathBuf>,
    #[command(flatten)]
    diff: DiffArgs,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    file: FleetFile,
    #[command(flatten)]
    hosts: Hosts,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// How many hosts are asked at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    parallel: usize,
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    #[command(flatten)]
    file: FleetFile,
    #[command(flatten)]
    hosts: Hosts,
    /// Install it even where the same version answers.
    #[arg(long)]
    force: bool,
    /// How many hosts are done at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    parallel: usize,
}

pub fn run(command: &Command) -> miette::Result<ExitCode> {
    match command {
        Command::Check(args) => check(args),
        Command::Plan(args) => plan(args),
        Command::Apply(args) => apply(args),
        Command::Status(args) => status(args),
        Command::PushBinary(args) => push_binary(args),
    }
}

fn check(args: &CheckArgs) -> miette::Result<ExitCode> {
    let checked = fleet::check(&args.file.fleet)?;
    match args.format {
        OutputFormat::Json => {
            outln(&serde_json::to_string_pretty(&checked.diagnostics_json()).into_diagnostic()?)
        }
        OutputFormat::Human => {
            let file = &checked.fleet.file;
            let name = file.path.display().to_string();
            for report in reports_in_file(&name, &file.text, checked.fleet.sorted_diagnostics()) {
                errln(&format!("{report:?}"));
            }
            for (_, outcome) in &checked.hosts {
                super::print_diagnostics(outcome, OutputFormat::Human);
            }
        }
    }
    let errors = checked.error_count();
    if errors > 0 {
        errln(&format!(
            "error: {}: {errors} problem{} found",
            args.file.fleet.display(),
            if errors == 1 { "" } else { "s" }
        ));
        return Ok(ExitCode::FAILURE);
    }
    if let OutputFormat::Human = args.format {
        let hosts = checked.hosts.len();
        errln(&format!(
            "{}: ok ({hosts} host{}, every host file valid)",
            args.file.fleet.display(),
            if hosts == 1 { "" } else { "s" }
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(plan: &FleetPlan, diff: &DiffArgs) {
    for (selected, result) in &plan.hosts {
        let host = &selected.host;
        let title = format!("{} ({})", host.name, host.ssh);
        match result {
            Ok(p) => out_styled(&render::text(&p.plan, &title, diff.show())),
            Err(e) => outln(&format!("{title}: cannot be planned: {e}")),
        }
        outln("");
    }
    let t = plan.totals();
    let mut line = format!(
        "Fleet: {} of {} host{} would change ({} to add, {} to change, {} to destroy; {} actions)",
        t.hosts_changing,
        t.hosts,
        if t.hosts == 1 { "" } else { "s" },
        t.add,
        t.change,
        t.destroy,
        t.actions
    );
    if t.failed > 0 {
        line.push_str(&format!("; {} could not be planned", t.failed));
    }
    outln(&format!("{line}."));
}

fn plan(args: &PlanArgs) -> miette::Result<ExitCode> {
    let ready = fleet::ready(&args.file.fleet, &args.hosts.on)?;
    let ssh = args.hosts.ssh()?;
    let ctl = Controller {
        transport: &ssh,
        parallel: args.parallel,
    };
    let plan = fleet::plan(&ctl, &ready, &mut say);
    fleet::discard(&ctl, &plan);
    if args.json {
        outln(
            &serde_json::to_string_pretty(&plan.to_json(|p| serde_json::json!(p)))
                .into_diagnostic()?,
        );
    } else {
        print_plan(&plan, &args.diff);
    }
    Ok(if !plan.problems().is_empty() {
        ExitCode::FAILURE
    } else if plan.would_change() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn apply(args: &ApplyArgs) -> miette::Result<ExitCode> {
    let ready = fleet::ready(&args.file.fleet, &args.hosts.on)?;
    let valid = ready.fleet.fleet().expect("ready");
    let canary = match (&args.canary, args.no_canary) {
        (_, true) => None,
        (Some(name), false) => Some(fleet::canary_named(valid, name)?),
        (None, false) => valid.canary.clone(),
    };
    let options = ApplyOptions {
        canary,
        keep_going: args.keep_going,
        record_dir: args
            .record_dir
            .clone()
            .unwrap_or_else(|| ready.fleet.record_dir()),
    };
    let ssh = args.hosts.ssh()?;
    let ctl = Controller {
        transport: &ssh,
        parallel: args.parallel,
    };
    let plan = fleet::plan(&ctl, &ready, &mut say);
    print_plan(&plan, &args.diff);
    let go = match plan.refusal() {
        Some(refused) => Err(refused.into()),
        None if !plan.would_change() => {
            errln("Nothing to apply: no host would change.");
            Ok(false)
        }
        None => {
            let n = plan.totals().hosts_changing;
            confirm(
                &format!(
                    "Apply these changes to {n} host{}?",
                    if n == 1 { "" } else { "s" }
                ),
                args.yes,
            )
        }
    };
    let run = match go {
        Ok(true) => fleet::apply(&ctl, &ready, &plan, &options, &mut say),
        Ok(false) => {
            fleet::discard(&ctl, &plan);
            return Ok(if plan.would_change() {
                errln("Nothing applied.");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        Err(e) => Err(e),
    };
    fleet::discard(&ctl, &plan);
    let run = run?;
    print_summary(&run.record);
    match &run.record_path {
        Ok(path) => errln(&format!("The run is recorded in {}.", path.display())),
        Err(e) => errln(&format!("warning: the run could not be recorded: {e}")),
    }
    Ok(if run.record.succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A table, its columns as wide as their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        outln(text.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn print_summary(record: &fleet::RunRecord) {
    let rows: Vec<Vec<String>> = record
        .hosts
        .iter()
        .map(|h| {
            let (before, after) = h.outcome.generations();
            vec![
                h.host.clone(),
                h.destination.clone(),
                generation_name(before),
                generation_name(after),
                h.outcome.describe(),
            ]
        })
        .collect();
    outln("");
    table(
        &["host", "destination", "before", "after", "outcome"],
        &rows,
    );
}

fn status(args: &StatusArgs) -> miette::Result<ExitCode> {
    let loaded = fleet::load_valid(&args.file.fleet)?;
    let hosts = fleet::select(loaded.fleet().expect("valid"), &args.hosts.on)?;
    let ssh = args.hosts.ssh()?;
    let ctl = Controller {
        transport: &ssh,
        parallel: args.parallel,
    };
    let statuses = fleet::status(&ctl, &hosts, &loaded.record_dir(), &mut |_| {});
    let unreachable = statuses.iter().any(|s| s.error.is_some());
    if args.json {
        outln(&serde_json::to_string_pretty(&statuses).into_diagnostic()?);
    } else {
        let rows: Vec<Vec<String>> = statuses
            .iter()
            .map(|s| {
                let generation = s
                    .generation
                    .as_ref()
                    .and_then(|g| g.get("number"))
                    .map_or("none".to_string(), |n| n.to_string());
                let pending = s.pending_confirm.as_ref().map_or(String::new(), |p| {
                    format!(
                        "{} waits until {}",
                        p.generation,
                        crate::clock::rfc3339(p.deadline)
                    )
                });
                let last = s.last_apply.as_ref().map_or(String::new(), |l| {
                    format!("{}: {}", l.started, l.outcome.describe())
                });
                match &s.error {
                    Some(e) => vec![
                        s.host.clone(),
                        s.destination.clone(),
                        "?".into(),
                        "?".into(),
                        String::new(),
                        format!("unreachable: {e}"),
                    ],
                    None => vec![
                        s.host.clone(),
                        s.destination.clone(),
                        generation,
                        s.drift.map_or("?".into(), |d| d.to_string()),
                        pending,
                        last,
                    ],
                }
            })
            .collect();
        table(
            &[
                "host",
                "destination",
                "generation",
                "drift",
                "confirmation",
                "last apply",
            ],
            &rows,
        );
    }
    Ok(if unreachable {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn push_binary(args: &PushArgs) -> miette::Result<ExitCode> {
    let loaded = fleet::load_valid(&args.file.fleet)?;
    let hosts = fleet::select(loaded.fleet().expect("valid"), &args.hosts.on)?;
    let binary = std::env::current_exe()
        .into_diagnostic()
        .wrap_err("cannot find ctm's own binary")?;
    let ssh = args.hosts.ssh()?;
    let ctl = Controller {
        transport: &ssh,
        parallel: args.parallel,
    };
    let pushed = fleet::push_binary(&ctl, &hosts, &binary, args.force, &mut say);
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .zip(&pushed)
        .map(|(host, p)| {
            let what = match p {
                Pushed::Current { version } => format!("runs ctm {version} already"),
                Pushed::Installed { path, previous, .. } => format!(
                    "installed at {path} (it ran {})",
                    previous.as_deref().unwrap_or("no ctm that answered")
                ),
                Pushed::Failed { reason } => format!("failed: {reason}"),
            };
            vec![host.name.to_string(), host.ssh.to_string(), what]
        })
        .collect();
    outln("");
    table(&["host", "destination", "ctm"], &rows);
    let failed = pushed.iter().any(|p| matches!(p, Pushed::Failed { .. }));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
