//! One container of the current generation, on the running system: start,
//! stop, restart, pause, resume, kill, exec, shell, stats and logs.

use std::io::IsTerminal as _;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use miette::{IntoDiagnostic as _, WrapErr as _, miette};

use super::RootArgs;
use super::output::{errln, out, outln, say};
use crate::backend::journal::{Journalctl, LogQuery};
use crate::backend::pty;
use crate::engine::containers::{self, ContainerStats, ExecRequest, Verb};
use crate::model::{Name, UserName};

fn name(text: &str) -> miette::Result<Name> {
    Name::parse(text).map_err(|e| miette!("{e}"))
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container's name.
    name: String,
    #[command(flatten)]
    root: RootArgs,
}

pub fn run(verb: Verb, args: &Args) -> miette::Result<ExitCode> {
    let name = name(&args.name)?;
    containers::act(&args.root.target(), verb, &name, &mut say)?;
    errln(&format!("{} container {name}.", verb.done()));
    Ok(ExitCode::SUCCESS)
}

/// `ctm pause NAME` / `ctm resume NAME`.
pub fn pause(args: &Args, paused: bool) -> miette::Result<ExitCode> {
    let name = name(&args.name)?;
    containers::set_paused(&args.root.target(), &name, paused, &mut say)?;
    errln(&if paused {
        format!(
            "Paused container {name}: its processes are frozen until `ctm resume {name}`; applies leave it paused."
        )
    } else {
        format!("Resumed container {name}.")
    });
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// The container's name.
    name: String,
    /// The signal: a name (TERM, KILL, HUP, …) or a number.
    #[arg(long, short = 's', default_value = "TERM", value_parser = containers::parse_signal)]
    signal: i32,
    #[command(flatten)]
    root: RootArgs,
}

pub fn kill(args: &KillArgs) -> miette::Result<ExitCode> {
    let name = name(&args.name)?;
    containers::kill(&args.root.target(), &name, args.signal, &mut say)?;
    errln(&format!(
        "Sent signal {} to every process of container {name}.",
        args.signal
    ));
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The container's name.
    name: String,
    /// Run as this user of the container (default: root).
    #[arg(long, short = 'u', value_parser = UserName::parse)]
    user: Option<UserName>,
    /// The working directory inside the container (an absolute path).
    #[arg(long, short = 'w', value_name = "DIR")]
    workdir: Option<String>,
    #[command(flatten)]
    root: RootArgs,
    /// The command and its arguments (after `--`).
    #[arg(required = true, last = true)]
    command: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ShellArgs {
    /// The container's name.
    name: String,
    /// Log in as this user of the container (default: root).
    #[arg(long, short = 'u', value_parser = UserName::parse)]
    user: Option<UserName>,
    #[command(flatten)]
    root: RootArgs,
}

/// Runs a command in a container: on a pty of its own when this
/// process's standard input is a terminal, else with this process's own
/// standard streams; exits as the command did.
fn run_in(root: &RootArgs, request: ExecRequest) -> miette::Result<ExitCode> {
    let attached = std::io::stdin().is_terminal();
    let request = ExecRequest {
        term: attached.then(|| std::env::var("TERM").unwrap_or_default()),
        ..request
    };
    let containers::Exec {
        mut command,
        container_root,
    } = containers::exec(&root.target(), &request, &mut say)?;
    let status = if attached {
        pty::run_attached(command, Some(&container_root))
            .into_diagnostic()
            .wrap_err("cannot run the command on a terminal")?
    } else {
        command
            .status()
            .into_diagnostic()
            .wrap_err("cannot run nsenter (from util-linux)")?
    };
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        // As a shell reports a command killed by a signal.
        (None, Some(signal)) => ExitCode::from(u8::try_from(128 + signal).unwrap_or(1)),
        (None, None) => ExitCode::FAILURE,
    })
}

pub fn exec(args: &ExecArgs) -> miette::Result<ExitCode> {
    run_in(
        &args.root,
        ExecRequest {
            name: name(&args.name)?,
            argv: args.command.clone(),
            user: args.user.clone(),
            workdir: args.workdir.clone(),
            term: None,
        },
    )
}

pub fn shell(args: &ShellArgs) -> miette::Result<ExitCode> {
    run_in(
        &args.root,
        ExecRequest {
            name: name(&args.name)?,
            argv: Vec::new(),
            user: args.user.clone(),
            workdir: None,
            term: None,
        },
    )
}

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// The containers (default: every container of the current generation).
    names: Vec<String>,
    /// Keep measuring, every two seconds, until interrupted.
    #[arg(long)]
    watch: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    root: RootArgs,
}

pub fn stats(args: &StatsArgs) -> miette::Result<ExitCode> {
    let names: Vec<Name> = args
        .names
        .iter()
        .map(|n| name(n))
        .collect::<Result<_, _>>()?;
    let target = args.root.target();
    loop {
        let interval = Duration::from_secs(if args.watch { 2 } else { 1 });
        let stats = containers::stats(&target, &names, interval, &mut say)?;
        if args.json {
            outln(&serde_json::to_string(&stats).into_diagnostic()?);
        } else {
            if args.watch {
                // Clear the screen and go home, as `watch` does.
                out("\x1b[H\x1b[2J");
            }
            out(&table(&stats));
        }
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

pub(super) fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

/// The table `ctm stats` prints, and what it could not measure.
fn table(stats: &[ContainerStats]) -> String {
    let mut rows = vec![
        [
            "CONTAINER",
            "STATE",
            "CPU",
            "CPU TIME",
            "MEMORY",
            "PEAK",
            "LIMIT",
            "READ",
            "WRITTEN",
            "NET IN",
            "NET OUT",
            "TASKS",
        ]
        .map(String::from),
    ];
    let mut notes = Vec::new();
    let dash = || "-".to_string();
    for c in stats {
        let s = c.stats.as_ref();
        let memory = s.and_then(|s| s.memory.as_ref());
        let io = s.and_then(|s| s.io.as_ref());
        let net = s.and_then(|s| s.network.as_ref());
        rows.push([
            c.name.clone(),
            c.state.clone(),
            c.cpu_percent.map_or_else(dash, |p| format!("{p:.1}%")),
            s.and_then(|s| s.cpu_usec)
                .map_or_else(dash, |u| format!("{:.1} s", u as f64 / 1e6)),
            memory.map_or_else(dash, |m| megabytes(m.current_bytes)),
            memory
                .and_then(|m| m.peak_bytes)
                .map_or_else(dash, megabytes),
            memory.map_or_else(dash, |m| m.limit_bytes.map_or("none".into(), megabytes)),
            io.map_or_else(dash, |i| megabytes(i.read_bytes)),
            io.map_or_else(dash, |i| megabytes(i.write_bytes)),
            net.map_or_else(dash, |n| {
                format!("{} ({} pkts)", megabytes(n.rx_bytes), n.rx_packets)
            }),
            net.map_or_else(dash, |n| {
                format!("{} ({} pkts)", megabytes(n.tx_bytes), n.tx_packets)
            }),
            s.and_then(|s| s.pids.as_ref())
                .map_or_else(dash, |p| match p.limit {
                    Some(limit) => format!("{}/{limit}", p.current),
                    None => p.current.to_string(),
                }),
        ]);
        for why in s.map(|s| s.unavailable.as_slice()).unwrap_or_default() {
            notes.push(format!("{}: {why}", c.name));
        }
    }
    let mut widths = [0usize; 12];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    if !notes.is_empty() {
        text.push_str("\nNot measured:\n");
        for note in notes {
            text.push_str(&format!("  {note}\n"));
        }
    }
    text
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The container's name.
    name: String,
    /// Keep printing new entries as they come.
    #[arg(long, short = 'f')]
    follow: bool,
    /// How many of the last entries to show.
    #[arg(long, short = 'n', default_value_t = 50)]
    lines: u32,
    /// Only entries since this time: `-1h`, `2026-12-03 10:00`, `today`
    /// (as journalctl reads it).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only entries whose message matches this pattern (PCRE2).
    #[arg(long, value_name = "PATTERN")]
    grep: Option<String>,
    /// The host's log of the container's unit (systemd-nspawn's own
    /// messages and the boot console) instead of the container's journal.
    #[arg(long)]
    unit: bool,
}

/// Replaces this process with `journalctl`, so that following and ^C
/// behave as they do there.
pub fn logs(args: &LogsArgs) -> miette::Result<ExitCode> {
    let query = LogQuery {
        name: name(&args.name)?.to_string(),
        follow: args.follow,
        lines: args.lines,
        unit: args.unit,
        since: args.since.clone(),
        grep: args.grep.clone(),
    };
    let journal = Journalctl {
        root: PathBuf::from("/"),
    };
    let mut command = containers::logs(&journal, &query)?;
    let error = command.exec();
    Err(error)
        .into_diagnostic()
        .wrap_err("cannot run journalctl (from systemd)")
}
