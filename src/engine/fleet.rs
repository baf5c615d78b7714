//! Fleets: many hosts from one repository, each changed by its own ctm,
//! driven over SSH (docs/fleet.md). No agent and no daemon: the
//! controller (this process) sends each host its host file, asks the
//! host's ctm to plan and apply it, and confirms each apply over a new
//! SSH connection, so that a change that cuts the controller off is
//! undone by the host itself when its confirmation time is up.
//!
//! The use cases:
//!
//! | use case | what |
//! |---|---|
//! | [`check`] | the fleet file and every host file, validated here, every problem at once |
//! | [`plan`] | each host's ctm is reached and checked, then plans its host file |
//! | [`apply`] | the planned hosts are switched: canary first, in groups, stopping at the first failure and undoing the run's earlier switches |
//! | [`status`] | each host's generation, drift and pending confirmation, and the last run that touched it |
//! | [`push_binary`] | this ctm installed on hosts that lack it or run another |
//!
//! Everything said to and by the hosts goes through a
//! [`Transport`](crate::backend::ssh::Transport), so that the
//! orchestration is tested with the recording fake.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use miette::{IntoDiagnostic as _, WrapErr as _, miette};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::events::{Event, Events};
use super::load::{Loaded, Outcome, lock_path_for, read_at_most, read_lock, validate_bytes};
use super::refused::Refused;
use crate::backend::ssh::{Flow, Reply, Transport, Via, one_line};
use crate::clock::now_rfc3339;
use crate::config::{self, Format, Source, did_you_mean, vocab};
use crate::diagnostic::{Diagnostic, json_in_file};
use crate::fs;
use crate::model::Name;
use crate::model::fleet::{Canary, Fleet, FleetHost};
use crate::plan::Plan;
use crate::state::PendingConfirm;
use crate::validate::fleet::{ValidatedFleet, validate};

/// This ctm's version: the remote ctm must be of the same series.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the records of runs go, under the fleet file's directory.
pub const RECORD_DIR: &str = ".ctm-fleet/runs";

/// How long a host's ctm waits for another ctm there to let go of its
/// lock before it gives up (`--lock-timeout`), rather than holding the
/// run for as long as the other takes.
pub const REMOTE_LOCK_TIMEOUT: &str = "120";

// ---- the fleet file ------------------------------------------------------

/// A fleet file, read, parsed and validated.
pub struct FleetFile {
    pub file: Loaded,
    pub diagnostics: Vec<Diagnostic>,
    pub validated: Option<ValidatedFleet>,
}

impl FleetFile {
    pub fn load(path: &Path) -> miette::Result<FleetFile> {
        let text = std::fs::read_to_string(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read the fleet file {}", path.display()))?;
        Ok(FleetFile::from_text(path, text))
    }

    pub fn from_text(path: &Path, text: String) -> FleetFile {
        let source = Source::new(path.display().to_string(), text, Format::from_path(path));
        let (document, mut diagnostics) = config::parse_as(&source, &vocab::FLEET);
        let syntax_failed = document.nodes.is_empty() && !diagnostics.is_empty();
        let mut validated = None;
        if !syntax_failed {
            match validate(&document) {
                Ok(v) if diagnostics.is_empty() => validated = Some(v),
                Ok(_) => {}
                Err(more) => diagnostics.extend(more),
            }
        }
        FleetFile {
            file: Loaded {
                path: path.to_path_buf(),
                text: source.text,
            },
            diagnostics,
            validated,
        }
    }

    pub fn fleet(&self) -> Option<&Fleet> {
        self.validated.as_ref().map(|v| &v.fleet)
    }

    fn dir(&self) -> &Path {
        self.file.path.parent().unwrap_or(Path::new(""))
    }

    /// The host file of `host`, relative to the fleet file's directory.
    pub fn host_file(&self, host: &FleetHost) -> PathBuf {
        self.dir().join(host.file.as_str())
    }

    /// Where the records of runs go by default.
    pub fn record_dir(&self) -> PathBuf {
        self.dir().join(RECORD_DIR)
    }

    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// The diagnostics sorted by position, then message.
    pub fn sorted_diagnostics(&self) -> Vec<&Diagnostic> {
        crate::diagnostic::sorted(&self.diagnostics)
    }
}

/// The fleet file, refused if it has errors (`ctm fleet check` lists
/// them): what the use cases that need no host file start from.
pub fn load_valid(path: &Path) -> miette::Result<FleetFile> {
    let fleet = FleetFile::load(path)?;
    if fleet.validated.is_none() {
        return Err(invalid(Checked {
            fleet,
            hosts: Vec::new(),
        }));
    }
    Ok(fleet)
}

fn invalid(checked: Checked) -> miette::Report {
    Refused::InvalidFleet {
        file: checked.fleet.file.path.display().to_string(),
        check: checked.diagnostics_json(),
    }
    .into()
}

/// The fleet file and every host file, validated.
pub struct Checked {
    pub fleet: FleetFile,
    /// Each host's file, read and validated, in the fleet's order.
    pub hosts: Vec<(Name, Outcome)>,
}

impl Checked {
    pub fn error_count(&self) -> usize {
        self.fleet.error_count()
            + self
                .hosts
                .iter()
                .map(|(_, o)| o.error_count())
                .sum::<usize>()
    }

    /// `ctm fleet check --format json`: the fleet file's document, then
    /// each host file's (as `ctm check --format json` prints it).
    pub fn diagnostics_json(&self) -> Value {
        let name = self.fleet.file.path.display().to_string();
        let list = json_in_file(
            &name,
            &self.fleet.file.text,
            self.fleet.sorted_diagnostics(),
        );
        serde_json::json!({
            "file": name,
            "valid": self.error_count() == 0,
            "diagnostics": list,
            "hosts": self.hosts.iter().map(|(host, outcome)| {
                let mut doc = outcome.diagnostics_json();
                doc["host"] = serde_json::json!(host.as_str());
                doc
            }).collect::<Vec<_>>(),
        })
    }
}

/// `ctm fleet check`: the fleet file, and every host file it names,
/// validated here; every problem at once. A host file that cannot be
/// read is reported where the fleet file names it.
pub fn check(path: &Path) -> miette::Result<Checked> {
    let mut fleet = FleetFile::load(path)?;
    let mut hosts = Vec::new();
    let mut unreadable = Vec::new();
    if let Some(validated) = &fleet.validated {
        for host in &validated.fleet.hosts {
            let file = fleet.host_file(host);
            let read = read_at_most(&file, config::MAX_SIZE_CLI).map_err(|e| e.to_string());
            let lock_path = lock_path_for(&file);
            let lock = read_lock(&lock_path).map_err(|e| e.to_string());
            match (read, lock) {
                (Ok(bytes), Ok(lock)) => {
                    hosts.push((
                        host.name.clone(),
                        validate_bytes(&file, bytes, config::MAX_SIZE_CLI, lock_path, lock),
                    ));
                }
                (Err(e), _) | (_, Err(e)) => {
                    let span = validated.file_spans[&host.name];
                    unreadable.push(
                        Diagnostic::error(
                            "ctm::missing-host-file",
                            format!("cannot read the host file of `{}`: {e}", host.name),
                            span,
                        )
                        .with_label(format!("{} cannot be read", file.display()))
                        .with_help("the path is relative to the fleet file"),
                    );
                }
            }
        }
    }
    if !unreadable.is_empty() {
        fleet.diagnostics.extend(unreadable);
        fleet.validated = None;
    }
    Ok(Checked { fleet, hosts })
}

/// The canary `--canary NAME` names: a host (first) or a group.
pub fn canary_named(fleet: &Fleet, name: &str) -> miette::Result<Canary> {
    Canary::named(&fleet.hosts, name)
        .ok_or_else(|| miette!("the canary `{name}` is neither a host nor a group of the fleet"))
}

/// The hosts `--on NAME...` selects (a host's name, or a tag); all of
/// them without names. A name that selects nothing is refused.
pub fn select<'a>(fleet: &'a Fleet, on: &[String]) -> miette::Result<Vec<&'a FleetHost>> {
    for name in on {
        if !fleet.hosts.iter().any(|h| h.is_named_by(name)) {
            let mut known: Vec<&str> = fleet.hosts.iter().map(|h| h.name.as_str()).collect();
            known.extend(
                fleet
                    .hosts
                    .iter()
                    .flat_map(|h| h.tags.iter().map(Name::as_str)),
            );
            known.sort_unstable();
            known.dedup();
            return Err(miette!(
                help = did_you_mean(name, &known),
                "no host or tag of the fleet is called `{name}`"
            ));
        }
    }
    Ok(fleet
        .hosts
        .iter()
        .filter(|h| on.is_empty() || on.iter().any(|n| h.is_named_by(n)))
        .collect())
}

/// A selected host, with its host file and lock as they are here.
#[derive(Debug, Clone)]
pub struct Selected {
    pub host: FleetHost,
    pub local_file: PathBuf,
    pub text: String,
    pub lock: Option<String>,
}

impl Selected {
    /// The host file's name on the host: the host's name, which cannot
    /// hold a separator, and the extension that says its syntax.
    fn remote_name(&self) -> String {
        format!("{}.{}", self.host.name, self.host.file.extension())
    }
}

/// The fleet, checked, and the hosts to work on with their host files.
pub struct Ready {
    pub fleet: FleetFile,
    pub hosts: Vec<Selected>,
}

/// Checks the fleet and every host file (refused, as `ctm fleet check`
/// would report it, if any has a problem), and selects the hosts.
pub fn ready(path: &Path, on: &[String]) -> miette::Result<Ready> {
    let checked = check(path)?;
    if checked.error_count() > 0 {
        return Err(invalid(checked));
    }
    let Checked { fleet, hosts } = checked;
    let texts: BTreeMap<Name, Outcome> = hosts.into_iter().collect();
    let selected = {
        let valid = fleet.fleet().expect("checked");
        select(valid, on)?
            .into_iter()
            .map(|host| {
                let outcome = &texts[&host.name];
                Selected {
                    host: host.clone(),
                    local_file: outcome.host_file.path.clone(),
                    text: outcome.host_file.text.clone(),
                    lock: outcome.lock_file.as_ref().map(|l| l.text.clone()),
                }
            })
            .collect()
    };
    Ok(Ready {
        fleet,
        hosts: selected,
    })
}

// ---- working on many hosts -----------------------------------------------

/// How the controller reaches the hosts.
pub struct Controller<'a> {
    pub transport: &'a dyn Transport,
    /// How many hosts are worked on at once (at least 1).
    pub parallel: usize,
}

enum Msg<R> {
    Event(Event),
    Done(usize, R),
    /// An item's work panicked (the panic goes on once all have ended).
    Lost,
}

/// Runs `work` for each item, on up to `limit` threads at once, passing
/// their events on as they come (on this thread); after each result,
/// `go_on` says whether more may start. `None`: never started.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    limit: usize,
    work: impl Fn(&T, Events<'_>) -> R + Sync,
    mut go_on: impl FnMut(&T, &R) -> bool,
    events: Events<'_>,
) -> Vec<Option<R>> {
    let mut results: Vec<Option<R>> = items.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<Msg<R>>();
        let (mut next, mut running, mut stop) = (0, 0, false);
        loop {
            while !stop && running < limit.max(1) && next < items.len() {
                let (tx, item, work, index) = (tx.clone(), &items[next], &work, next);
                scope.spawn(move || {
                    let mut say = |e: Event| {
                        let _ = tx.send(Msg::Event(e));
                    };
                    let worked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        work(item, &mut say)
                    }));
                    match worked {
                        Ok(result) => {
                            let _ = tx.send(Msg::Done(index, result));
                        }
                        Err(panic) => {
                            let _ = tx.send(Msg::Lost);
                            std::panic::resume_unwind(panic);
                        }
                    }
                });
                next += 1;
                running += 1;
            }
            if running == 0 {
                break;
            }
            match rx.recv() {
                Ok(Msg::Event(e)) => events(e),
                Ok(Msg::Done(index, result)) => {
                    running -= 1;
                    stop |= !go_on(&items[index], &result);
                    results[index] = Some(result);
                }
                Ok(Msg::Lost) => {
                    running -= 1;
                    stop = true;
                }
                Err(_) => break,
            }
        }
    });
    results
}

fn words(argv: &[&str]) -> Vec<String> {
    argv.iter().map(|w| w.to_string()).collect()
}

/// The version `ctm --version` prints (`ctm 0.1.0`).
fn parse_version(stdout: &str) -> Option<String> {
    let version = stdout.lines().next()?.trim().strip_prefix("ctm ")?.trim();
    let ok = !version.is_empty()
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    ok.then(|| version.to_string())
}

/// Whether this ctm can drive a host's ctm of version `remote`: the same
/// release series (the same minor version before 1.0, the same major
/// after), whose remote interface is this one's.
pub fn compatible(remote: &str, local: &str) -> bool {
    fn series(v: &str) -> Option<(u64, u64)> {
        let mut parts = v.split(['.', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(if major == 0 { (0, minor) } else { (major, 0) })
    }
    series(remote).is_some() && series(remote) == series(local)
}

/// Opens the host's connection and asks its ctm for its version; a ctm
/// this one cannot drive is a reason to stop.
fn reach(ctl: &Controller<'_>, host: &FleetHost, events: Events<'_>) -> Result<String, String> {
    ctl.transport
        .connect(&host.ssh)
        .map_err(|e| format!("cannot connect to {}: {e}", host.ssh))?;
    let ctm = host.ctm_command();
    let reply = run(ctl, host, Via::Shared, &[ctm, "--version"], b"")?;
    if !reply.success() {
        return Err(format!(
            "`{ctm} --version` failed on the host ({}); `ctm fleet push-binary` installs this ctm there",
            reply.error_text()
        ));
    }
    let version = parse_version(&reply.stdout).ok_or_else(|| {
        format!(
            "`{ctm} --version` does not answer like ctm: {:?}",
            reply.stdout.trim()
        )
    })?;
    if !compatible(&version, VERSION) {
        return Err(format!(
            "it runs ctm {version}, which this ctm {VERSION} cannot drive; `ctm fleet push-binary` installs this ctm there"
        ));
    }
    events(Event::of_host(
        host.name.as_str(),
        Event::RemoteCtm {
            version: version.clone(),
        },
    ));
    Ok(version)
}

fn run(
    ctl: &Controller<'_>,
    host: &FleetHost,
    via: Via,
    argv: &[&str],
    stdin: &[u8],
) -> Result<Reply, String> {
    ctl.transport
        .run(&host.ssh, via, &words(argv), stdin)
        .map_err(|e| format!("{}: {e}", host.ssh))
}

/// Writes `bytes` to `path` on the host (a file of the run's directory).
fn upload(ctl: &Controller<'_>, host: &FleetHost, path: &str, bytes: &[u8]) -> Result<(), String> {
    let reply = run(
        ctl,
        host,
        Via::Shared,
        &["sh", "-c", "umask 077 && cat > \"$1\"", "sh", path],
        bytes,
    )?;
    if reply.success() {
        Ok(())
    } else {
        Err(format!(
            "cannot write {path} on the host: {}",
            reply.error_text()
        ))
    }
}

// ---- plan -------------------------------------------------------------------

/// One host's plan, made by its own ctm, and where its files are on it.
#[derive(Debug, Clone)]
pub struct HostPlan {
    pub selected: Selected,
    /// The run's directory on the host (`mktemp -d`): the host file, its
    /// lock and the saved plan.
    pub remote_dir: String,
    pub plan: Plan,
}

impl HostPlan {
    fn saved_plan(&self) -> String {
        format!("{}/plan.json", self.remote_dir)
    }

    fn remote_file(&self) -> String {
        format!("{}/{}", self.remote_dir, self.selected.remote_name())
    }
}

/// The plans of the selected hosts, or why a host has none.
pub struct FleetPlan {
    pub hosts: Vec<(Selected, Result<HostPlan, String>)>,
}

impl FleetPlan {
    /// Why the run must not go ahead, if anything: a host without a plan,
    /// with conflicts, or whose kernel cannot make a kind of link it needs
    /// (its own ctm would refuse the apply; better before any host moves).
    pub fn refusal(&self) -> Option<Refused> {
        let problems = self.problems();
        (!problems.is_empty()).then(|| Refused::FleetHosts {
            problems: problems
                .into_iter()
                .map(|(h, e)| format!("{h}: {e}"))
                .collect(),
        })
    }

    /// Whether any host would change.
    pub fn would_change(&self) -> bool {
        self.plans().any(|p| !p.plan.is_empty())
    }

    pub fn plans(&self) -> impl Iterator<Item = &HostPlan> {
        self.hosts.iter().filter_map(|(_, p)| p.as_ref().ok())
    }

    /// The hosts without a plan, and why.
    pub fn problems(&self) -> Vec<(&str, String)> {
        let mut problems: Vec<(&str, String)> = self
            .hosts
            .iter()
            .filter_map(|(s, p)| p.as_ref().err().map(|e| (s.host.name.as_str(), e.clone())))
            .collect();
        for p in self.plans().filter(|p| !p.plan.conflicts.is_empty()) {
            problems.push((
                p.selected.host.name.as_str(),
                format!(
                    "its plan has conflicts ({})",
                    p.plan
                        .conflicts
                        .iter()
                        .map(|c| c.path.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        for p in self.plans().filter(|p| !p.plan.blocking_links().is_empty()) {
            problems.push((
                p.selected.host.name.as_str(),
                format!(
                    "its kernel cannot make {}",
                    p.plan
                        .unsupported_links
                        .iter()
                        .map(|n| format!("{} links ({})", n.kind, n.links.join(", ")))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ));
        }
        problems
    }

    /// The fleet's totals: hosts that would change, and the sums of
    /// their plans' summaries.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for p in self.plans() {
            if !p.plan.is_empty() {
                t.hosts_changing += 1;
            }
            t.add += p.plan.summary.add;
            t.change += p.plan.summary.change;
            t.destroy += p.plan.summary.destroy;
            t.actions += p.plan.summary.actions;
        }
        t.hosts = self.hosts.len();
        t.failed = self.hosts.iter().filter(|(_, p)| p.is_err()).count();
        t
    }

    /// `ctm fleet plan --json` (and the fleet page's plan): each host's
    /// plan, as `plan_json` writes it, or its error; and the totals.
    pub fn to_json(&self, plan_json: impl Fn(&Plan) -> Value) -> Value {
        let hosts: Vec<Value> = self
            .hosts
            .iter()
            .map(|(s, p)| {
                let mut doc = serde_json::json!({
                    "host": s.host.name.as_str(),
                    "destination": s.host.ssh.to_string(),
                    "host_file": s.host.file.as_str(),
                });
                match p {
                    Ok(p) => doc["plan"] = plan_json(&p.plan),
                    Err(e) => doc["error"] = serde_json::json!(e),
                }
                doc
            })
            .collect();
        serde_json::json!({
            "hosts": hosts,
            "totals": self.totals(),
            "would_change": self.would_change(),
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub hosts: usize,
    pub hosts_changing: usize,
    /// Hosts that could not be planned.
    pub failed: usize,
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    pub actions: usize,
}

/// Reaches the host, sends its host file and lock to a directory of its
/// own there, and has its ctm plan it (saving the plan there, for the
/// apply to apply exactly it, or refuse it if the host moved since).
fn plan_host(
    ctl: &Controller<'_>,
    selected: &Selected,
    events: Events<'_>,
) -> Result<HostPlan, String> {
    let host = &selected.host;
    reach(ctl, host, events)?;
    let made = run(
        ctl,
        host,
        Via::Shared,
        &["mktemp", "-d", "-t", "ctm-fleet.XXXXXXXX"],
        b"",
    )?;
    let remote_dir = made.stdout.trim().to_string();
    if !made.success() || !remote_dir.starts_with('/') || remote_dir.chars().any(char::is_control) {
        return Err(format!(
            "cannot make a directory on the host: {}",
            made.error_text()
        ));
    }
    let planned = (|| {
        let file = format!("{remote_dir}/{}", selected.remote_name());
        upload(ctl, host, &file, selected.text.as_bytes())?;
        if let Some(lock) = &selected.lock {
            upload(ctl, host, &format!("{file}.lock"), lock.as_bytes())?;
        }
        let saved = format!("{remote_dir}/plan.json");
        let reply = run(
            ctl,
            host,
            Via::Shared,
            &[
                host.ctm_command(),
                "plan",
                &file,
                "--lock-timeout",
                REMOTE_LOCK_TIMEOUT,
                "--json",
                "-o",
                &saved,
            ],
            b"",
        )?;
        // A plan with conflicts exits 1 and is printed all the same.
        match serde_json::from_str::<Plan>(&reply.stdout) {
            Ok(plan) if reply.success() || !plan.conflicts.is_empty() => Ok(plan),
            _ => Err(format!("its ctm could not plan: {}", reply.error_text())),
        }
    })();
    match planned {
        Ok(plan) => Ok(HostPlan {
            selected: selected.clone(),
            remote_dir,
            plan,
        }),
        Err(e) => {
            remove_dir(ctl, host, &remote_dir);
            Err(e)
        }
    }
}

fn remove_dir(ctl: &Controller<'_>, host: &FleetHost, dir: &str) {
    let _ = run(ctl, host, Via::Shared, &["rm", "-rf", "--", dir], b"");
}

/// `ctm fleet plan`: every selected host planned by its own ctm, at once
/// (up to `ctl.parallel`); a host that cannot be reached, or runs a ctm
/// this one cannot drive, has an error instead of a plan.
pub fn plan(ctl: &Controller<'_>, ready: &Ready, events: Events<'_>) -> FleetPlan {
    let results = in_parallel(
        &ready.hosts,
        ctl.parallel,
        |selected, events| plan_host(ctl, selected, events),
        |_, _| true,
        events,
    );
    FleetPlan {
        hosts: ready
            .hosts
            .iter()
            .cloned()
            .zip(results)
            .map(|(s, r)| (s, r.expect("every host is planned")))
            .collect(),
    }
}

/// Removes the run's directories from the hosts.
pub fn discard(ctl: &Controller<'_>, plan: &FleetPlan) {
    let plans: Vec<&HostPlan> = plan.plans().collect();
    in_parallel(
        &plans,
        ctl.parallel,
        |p, _| remove_dir(ctl, &p.selected.host, &p.remote_dir),
        |_, _| true,
        &mut |_| {},
    );
}

// ---- apply ------------------------------------------------------------------

/// What became of one host in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum HostOutcome {
    /// Its plan was empty: left alone.
    Unchanged { generation: Option<u64> },
    /// Switched to `to`, and confirmed.
    Switched { from: Option<u64>, to: u64 },
    /// Its apply failed; the host's own ctm rolled it back (or never
    /// switched).
    Failed { from: Option<u64>, reason: String },
    /// Switched to `to`, but not reached again to confirm it: the host
    /// returns to `from` by itself at `deadline` (Unix seconds).
    NotReachedAgain {
        from: Option<u64>,
        to: u64,
        deadline: u64,
        reason: String,
    },
    /// Switched to `to` and confirmed, then returned to `from` because a
    /// later host failed.
    RolledBack { from: Option<u64>, to: u64 },
    /// Switched to `to` and confirmed; a later host failed, and the
    /// return to `from` failed or was not possible.
    NotRolledBack {
        from: Option<u64>,
        to: u64,
        reason: String,
    },
    /// The run stopped before this host was started.
    NotStarted { generation: Option<u64> },
}

impl HostOutcome {
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            HostOutcome::Failed { .. }
                | HostOutcome::NotReachedAgain { .. }
                | HostOutcome::NotRolledBack { .. }
        )
    }

    /// `(before, after)`: the generation the host was on, and the one it
    /// is on (or returns to) now; `None` where nothing was applied yet.
    pub fn generations(&self) -> (Option<u64>, Option<u64>) {
        match self {
            HostOutcome::Unchanged { generation } | HostOutcome::NotStarted { generation } => {
                (*generation, *generation)
            }
            HostOutcome::Switched { from, to } | HostOutcome::NotRolledBack { from, to, .. } => {
                (*from, Some(*to))
            }
            HostOutcome::Failed { from, .. }
            | HostOutcome::NotReachedAgain { from, .. }
            | HostOutcome::RolledBack { from, .. } => (*from, *from),
        }
    }

    /// In a few words, for the summary table.
    pub fn describe(&self) -> String {
        match self {
            HostOutcome::Unchanged { .. } => "unchanged".into(),
            HostOutcome::Switched { .. } => "switched and confirmed".into(),
            HostOutcome::Failed { reason, .. } => format!("failed: {reason}"),
            HostOutcome::NotReachedAgain {
                deadline, reason, ..
            } => format!(
                "not reached again ({reason}); returns by itself at {}",
                crate::clock::rfc3339(*deadline)
            ),
            HostOutcome::RolledBack { to, .. } => {
                format!("rolled back (generation {to} undone: a later host failed)")
            }
            HostOutcome::NotRolledBack { reason, .. } => {
                format!("switched, but not rolled back: {reason}")
            }
            HostOutcome::NotStarted { .. } => "not started".into(),
        }
    }
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Switched first, alone; the run stops if it fails.
    pub canary: Option<Canary>,
    /// Go on past a failed host, and undo nothing.
    pub keep_going: bool,
    /// Where the record of the run is written.
    pub record_dir: PathBuf,
}

/// A run of `ctm fleet apply`, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub ctm_fleet_run: u32,
    pub started: String,
    pub finished: String,
    pub fleet_file: String,
    pub fleet_sha256: String,
    pub ctm_version: String,
    pub canary: Option<String>,
    pub keep_going: bool,
    pub parallel: usize,
    /// Every host switched or unchanged, none failed.
    pub succeeded: bool,
    pub hosts: Vec<HostRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub host: String,
    pub destination: String,
    pub host_file: String,
    pub host_file_sha256: String,
    #[serde(flatten)]
    pub outcome: HostOutcome,
}

/// The run, and where its record was written (or why it was not).
pub struct Run {
    pub record: RunRecord,
    pub record_path: Result<PathBuf, String>,
}

/// The order of a run: the canary's hosts first, alone; then the
/// groups, in the order they first appear (the hosts without a group
/// are one group), each group's hosts together.
pub fn waves<'a>(
    hosts: &[&'a HostPlan],
    canary: Option<&Canary>,
) -> Vec<(bool, Vec<&'a HostPlan>)> {
    let mut waves: Vec<(bool, Vec<&HostPlan>)> = Vec::new();
    let is_canary = |p: &HostPlan| canary.is_some_and(|c| c.includes(&p.selected.host));
    let first: Vec<&HostPlan> = hosts.iter().copied().filter(|p| is_canary(p)).collect();
    if !first.is_empty() {
        waves.push((true, first));
    }
    let mut groups: Vec<(Option<&Name>, Vec<&HostPlan>)> = Vec::new();
    for p in hosts.iter().copied().filter(|p| !is_canary(p)) {
        let group = p.selected.host.group.as_ref();
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, members)) => members.push(p),
            None => groups.push((group, vec![p])),
        }
    }
    waves.extend(groups.into_iter().map(|(_, members)| (false, members)));
    waves
}

/// `ctm fleet apply`: the planned hosts are switched, the canary first,
/// then group by group, up to `ctl.parallel` at once. Each host applies
/// its saved plan with a confirmation timeout and is confirmed over a
/// new SSH connection. The first failure stops the run: no further
/// host starts, and the hosts this run switched are rolled back (unless
/// `keep_going`, which also goes on past a failure but the canary's).
/// Refused before anything changes if a host could not be planned.
pub fn apply(
    ctl: &Controller<'_>,
    ready: &Ready,
    plan: &FleetPlan,
    options: &ApplyOptions,
    events: Events<'_>,
) -> miette::Result<Run> {
    if let Some(refused) = plan.refusal() {
        return Err(refused.into());
    }
    let started = now_rfc3339();
    let mut outcomes: BTreeMap<Name, HostOutcome> = BTreeMap::new();
    let mut changing: Vec<&HostPlan> = Vec::new();
    for p in plan.plans() {
        if p.plan.is_empty() {
            let generation = p.plan.from_generation;
            events(Event::of_host(
                p.selected.host.name.as_str(),
                Event::Unchanged { generation },
            ));
            outcomes.insert(
                p.selected.host.name.clone(),
                HostOutcome::Unchanged { generation },
            );
        } else {
            changing.push(p);
        }
    }
    // The order in which hosts were switched, to undo them backwards.
    let mut switched: Vec<&HostPlan> = Vec::new();
    let mut failed = false;
    for (canary, wave) in waves(&changing, options.canary.as_ref()) {
        if failed {
            break;
        }
        events(Event::Wave {
            hosts: wave
                .iter()
                .map(|p| p.selected.host.name.to_string())
                .collect(),
            canary,
        });
        let stops = |outcome: &HostOutcome| outcome.is_failure() && (canary || !options.keep_going);
        let results = in_parallel(
            &wave,
            ctl.parallel,
            |p, events| apply_host(ctl, p, events),
            |_, outcome| !stops(outcome),
            events,
        );
        for (p, outcome) in wave.iter().zip(results) {
            let outcome = outcome.unwrap_or(HostOutcome::NotStarted {
                generation: p.plan.from_generation,
            });
            if matches!(outcome, HostOutcome::Switched { .. }) {
                switched.push(p);
            }
            if stops(&outcome) && !failed {
                failed = true;
                events(Event::Stopping {
                    host: p.selected.host.name.to_string(),
                });
            }
            outcomes.insert(p.selected.host.name.clone(), outcome);
        }
    }
    if failed && !options.keep_going {
        for p in switched.iter().rev() {
            let name = &p.selected.host.name;
            let HostOutcome::Switched { from, to } = outcomes[name] else {
                continue;
            };
            let undone = roll_back_host(ctl, p, from, to, events);
            outcomes.insert(name.clone(), undone);
        }
    }
    let record = RunRecord {
        ctm_fleet_run: 1,
        started,
        finished: now_rfc3339(),
        fleet_file: ready.fleet.file.path.display().to_string(),
        fleet_sha256: fs::sha256_hex(ready.fleet.file.text.as_bytes()),
        ctm_version: VERSION.into(),
        canary: options.canary.as_ref().map(|c| match c {
            Canary::Host(n) | Canary::Group(n) => n.to_string(),
        }),
        keep_going: options.keep_going,
        parallel: ctl.parallel,
        succeeded: !outcomes.values().any(HostOutcome::is_failure),
        hosts: plan
            .plans()
            .map(|p| {
                let s = &p.selected;
                HostRecord {
                    host: s.host.name.to_string(),
                    destination: s.host.ssh.to_string(),
                    host_file: s.host.file.to_string(),
                    host_file_sha256: fs::sha256_hex(s.text.as_bytes()),
                    outcome: outcomes
                        .remove(&s.host.name)
                        .unwrap_or(HostOutcome::NotStarted {
                            generation: p.plan.from_generation,
                        }),
                }
            })
            .collect(),
    };
    let record_path = write_record(&options.record_dir, &record);
    Ok(Run {
        record,
        record_path,
    })
}

/// Applies one host's saved plan with its confirmation timeout, and
/// confirms it over a new SSH connection once its ctm says it waits.
fn apply_host(ctl: &Controller<'_>, p: &HostPlan, events: Events<'_>) -> HostOutcome {
    let host = &p.selected.host;
    let name = host.name.as_str();
    let from = p.plan.from_generation;
    let ctm = host.ctm_command();
    let timeout = host.confirm_timeout.to_string();
    let saved = p.saved_plan();
    let argv = words(&[
        ctm,
        "apply",
        &saved,
        "--yes",
        "--confirm-timeout",
        &timeout,
        "--lock-timeout",
        REMOTE_LOCK_TIMEOUT,
        "--json",
    ]);
    let mut confirmed = None;
    let mut not_confirmed = None;
    let mut not_reached = None;
    // The error the switch's unit reported, if it failed: the apply's own
    // error only says that it did.
    let mut unit_error: Vec<String> = Vec::new();
    let streamed = ctl.transport.stream(&host.ssh, &argv, &mut |line| {
        let event = serde_json::from_str::<Event>(line).unwrap_or_else(|_| Event::Step {
            line: line.to_string(),
        });
        match &event {
            // The lock the host's ctm wrote is its copy in the run's
            // directory; the one here is updated once it is confirmed.
            Event::LockFile { .. } => return Flow::Continue,
            Event::UnitOutput { line } if line.starts_with("ctm::") => {
                unit_error = vec![line.clone()];
            }
            Event::UnitOutput { line } if !unit_error.is_empty() => unit_error.push(line.clone()),
            _ => {}
        }
        let Event::ConfirmBefore {
            generation,
            deadline,
            ..
        } = event
        else {
            events(Event::of_host(name, event));
            return Flow::Continue;
        };
        events(Event::of_host(
            name,
            Event::ConfirmingOverNewConnection { generation },
        ));
        let confirm = generation.to_string();
        match ctl.transport.run(
            &host.ssh,
            Via::Fresh,
            &words(&[ctm, "confirm", &confirm]),
            b"",
        ) {
            Ok(reply) if reply.success() => {
                confirmed = Some(generation);
                Flow::Continue
            }
            // Refused (too late): the apply reports the rollback.
            Ok(reply) => {
                not_confirmed = Some(reply.error_text());
                Flow::Continue
            }
            Err(e) => {
                let reason = e.to_string();
                events(Event::of_host(
                    name,
                    Event::NotReachedAgain {
                        generation,
                        previous: from,
                        deadline,
                        reason: reason.clone(),
                    },
                ));
                not_reached = Some((generation, deadline, reason));
                // The apply waits for a confirmation that cannot come;
                // its session is ended, and the host's timer reverts.
                Flow::Stop
            }
        }
    });
    let outcome = match (streamed, not_reached, confirmed) {
        (_, Some((to, deadline, reason)), _) => HostOutcome::NotReachedAgain {
            from,
            to,
            deadline,
            reason,
        },
        (Err(e), _, _) => HostOutcome::Failed {
            from,
            reason: format!(
                "the connection was lost during the apply ({e}); if the host switched, it returns to generation {} by itself once its {} s are up",
                super::events::generation_name(from),
                host.confirm_timeout
            ),
        },
        (Ok(reply), _, Some(to)) if reply.success() => {
            fetch_lock(ctl, p, events);
            HostOutcome::Switched { from, to }
        }
        (Ok(reply), _, None) if reply.success() => HostOutcome::Unchanged { generation: from },
        (Ok(reply), _, _) => HostOutcome::Failed {
            from,
            reason: not_confirmed.unwrap_or_else(|| {
                if unit_error.is_empty() {
                    reply.error_text()
                } else {
                    one_line(&unit_error.join("\n"))
                }
            }),
        },
    };
    if let HostOutcome::Failed { reason, .. } = &outcome {
        events(Event::of_host(
            name,
            Event::Failed {
                reason: reason.clone(),
            },
        ));
    }
    outcome
}

/// Brings back the lock file the host's ctm wrote (the addresses it
/// assigned), next to the host file here.
fn fetch_lock(ctl: &Controller<'_>, p: &HostPlan, events: Events<'_>) {
    let host = &p.selected.host;
    let remote = format!("{}.lock", p.remote_file());
    let message = match run(ctl, host, Via::Shared, &["cat", "--", &remote], b"") {
        Ok(reply) if reply.success() => {
            if p.selected.lock.as_deref() == Some(reply.stdout.as_str()) {
                return;
            }
            let path = lock_path_for(&p.selected.local_file);
            match fs::write_file(&path, reply.stdout.as_bytes(), 0o644) {
                Ok(()) => format!("updated {}", path.display()),
                Err(e) => format!("warning: {e}; the host's generation keeps the lock"),
            }
        }
        Ok(reply) => format!(
            "warning: cannot read the lock file back from the host: {}",
            reply.error_text()
        ),
        Err(e) => format!("warning: cannot read the lock file back from the host: {e}"),
    };
    events(Event::of_host(
        host.name.as_str(),
        Event::LockFile { message },
    ));
}

/// Returns a host this run switched to the generation it was on.
fn roll_back_host(
    ctl: &Controller<'_>,
    p: &HostPlan,
    from: Option<u64>,
    to: u64,
    events: Events<'_>,
) -> HostOutcome {
    let host = &p.selected.host;
    let name = host.name.as_str();
    let Some(back) = from else {
        let reason =
            "it had no generation before this run, and ctm rolls back only to a generation"
                .to_string();
        events(Event::of_host(
            name,
            Event::Warning {
                message: format!("not rolled back: {reason}"),
            },
        ));
        return HostOutcome::NotRolledBack { from, to, reason };
    };
    events(Event::of_host(name, Event::UndoingRun { generation: back }));
    let back_to = back.to_string();
    let argv = words(&[
        host.ctm_command(),
        "rollback",
        &back_to,
        "--yes",
        "--lock-timeout",
        REMOTE_LOCK_TIMEOUT,
        "--json",
    ]);
    let streamed = ctl.transport.stream(&host.ssh, &argv, &mut |line| {
        let event = serde_json::from_str::<Event>(line).unwrap_or_else(|_| Event::Step {
            line: line.to_string(),
        });
        events(Event::of_host(name, event));
        Flow::Continue
    });
    match streamed {
        Ok(reply) if reply.success() => HostOutcome::RolledBack { from, to },
        Ok(reply) => HostOutcome::NotRolledBack {
            from,
            to,
            reason: reply.error_text(),
        },
        Err(e) => HostOutcome::NotRolledBack {
            from,
            to,
            reason: e.to_string(),
        },
    }
}

fn write_record(dir: &Path, record: &RunRecord) -> Result<PathBuf, String> {
    let stamp: String = record
        .started
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let path = dir.join(format!("{stamp}-{}.json", std::process::id()));
    let text = serde_json::to_string_pretty(record).map_err(|e| e.to_string())? + "\n";
    fs::write_file(&path, text.as_bytes(), 0o644)
        .map(|()| path)
        .map_err(|e| e.to_string())
}

/// The records of earlier runs, oldest first (unreadable ones skipped).
pub fn records(dir: &Path) -> Vec<RunRecord> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| serde_json::from_str(&t).ok())
        .collect()
}

// ---- status -----------------------------------------------------------------

/// One host as the fleet page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    pub host: String,
    pub destination: String,
    pub host_file: String,
    pub tags: Vec<String>,
    pub group: Option<String>,
    /// Why the host could not be reached or read, if it could not.
    pub error: Option<String>,
    pub ctm_version: Option<String>,
    /// The current generation: `number`, `created`, `summary`, ….
    pub generation: Option<Value>,
    pub pending_confirm: Option<PendingConfirm>,
    /// How many things differ from the current generation (files,
    /// actions, conflicts, firewall lines); `None` when unknown.
    pub drift: Option<usize>,
    /// The newest run that got to this host: when, and its outcome.
    pub last_apply: Option<LastApply>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastApply {
    pub started: String,
    #[serde(flatten)]
    pub outcome: HostOutcome,
}

/// `ctm fleet status` and the fleet page: each selected host's
/// generation, drift and pending confirmation (its `ctm status --json`),
/// and the newest recorded run that got to it.
pub fn status(
    ctl: &Controller<'_>,
    hosts: &[&FleetHost],
    record_dir: &Path,
    events: Events<'_>,
) -> Vec<HostStatus> {
    let runs = records(record_dir);
    let results = in_parallel(
        hosts,
        ctl.parallel,
        |host, events| {
            let version = reach(ctl, host, events)?;
            let reply = run(
                ctl,
                host,
                Via::Shared,
                &[host.ctm_command(), "status", "--json"],
                b"",
            )?;
            if !reply.success() {
                return Err(format!("`ctm status` failed: {}", reply.error_text()));
            }
            let doc: Value = serde_json::from_str(&reply.stdout)
                .map_err(|e| format!("`ctm status --json` answered no JSON: {e}"))?;
            Ok((version, doc))
        },
        |_, _| true,
        events,
    );
    hosts
        .iter()
        .zip(results)
        .map(|(host, result)| {
            let last_apply = runs.iter().rev().find_map(|run| {
                let entry = run.hosts.iter().find(|h| h.host == host.name.as_str())?;
                (!matches!(entry.outcome, HostOutcome::NotStarted { .. })).then(|| LastApply {
                    started: run.started.clone(),
                    outcome: entry.outcome.clone(),
                })
            });
            let mut status = HostStatus {
                host: host.name.to_string(),
                destination: host.ssh.to_string(),
                host_file: host.file.to_string(),
                tags: host.tags.iter().map(Name::to_string).collect(),
                group: host.group.as_ref().map(Name::to_string),
                error: None,
                ctm_version: None,
                generation: None,
                pending_confirm: None,
                drift: None,
                last_apply,
            };
            match result.expect("every host is asked") {
                Ok((version, doc)) => {
                    status.ctm_version = Some(version);
                    status.generation = doc.get("generation").filter(|g| !g.is_null()).cloned();
                    status.pending_confirm = doc
                        .get("pending_confirm")
                        .and_then(|p| serde_json::from_value(p.clone()).ok());
                    status.drift = doc.get("drift").map(|d| {
                        ["files", "conflicts", "actions", "firewall"]
                            .iter()
                            .filter_map(|k| d.get(k).and_then(Value::as_array))
                            .map(Vec::len)
                            .sum()
                    });
                }
                Err(e) => status.error = Some(e),
            }
            status
        })
        .collect()
}

// ---- push-binary ------------------------------------------------------------

/// What `ctm fleet push-binary` did on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Pushed {
    /// It runs this very version already.
    Current {
        version: String,
    },
    Installed {
        path: String,
        sha256: String,
        /// What it ran before, if anything answered.
        previous: Option<String>,
    },
    Failed {
        reason: String,
    },
}

/// The remote script that checks an uploaded copy (`$1`) against its
/// SHA-256 (`$2`) and moves it into place (`$3`); every value is an
/// argument, none is part of the script.
const INSTALL: &str = r#"sum=$(sha256sum -- "$1") && sum=${sum%% *} && if [ "$sum" != "$2" ]; then rm -f -- "$1"; echo "the copy on the host has sha256 $sum, not $2" >&2; exit 3; fi && chmod 0755 -- "$1" && mv -f -- "$1" "$3""#;

/// `ctm fleet push-binary`: installs `binary` (this ctm) on each host
/// that lacks it or runs another version (every host with `force`), at
/// the fleet file's `ctm` path, else where `ctm` is on the remote PATH,
/// else /usr/local/bin/ctm; the copy is checked by its SHA-256 on the
/// host before it replaces anything.
pub fn push_binary(
    ctl: &Controller<'_>,
    hosts: &[&FleetHost],
    binary: &Path,
    force: bool,
    events: Events<'_>,
) -> Vec<Pushed> {
    let binary = Binary {
        path: binary,
        read: std::sync::OnceLock::new(),
    };
    let results = in_parallel(
        hosts,
        ctl.parallel,
        |host, events| {
            let pushed = push_to(ctl, host, &binary, force, events)
                .unwrap_or_else(|reason| Pushed::Failed { reason });
            if let Pushed::Failed { reason } = &pushed {
                events(Event::of_host(
                    host.name.as_str(),
                    Event::Failed {
                        reason: reason.clone(),
                    },
                ));
            }
            pushed
        },
        |_, _| true,
        events,
    );
    results
        .into_iter()
        .map(|r| r.expect("every host is tried"))
        .collect()
}

/// This ctm's binary, read (and hashed) once, and only if a host needs it.
struct Binary<'a> {
    path: &'a Path,
    read: std::sync::OnceLock<Result<(Vec<u8>, String), String>>,
}

impl Binary<'_> {
    fn bytes_and_sha256(&self) -> Result<(&[u8], &str), String> {
        let read = self.read.get_or_init(|| {
            let bytes = std::fs::read(self.path).map_err(|e| {
                format!("cannot read this ctm's binary {}: {e}", self.path.display())
            })?;
            let sha256 = fs::sha256_hex(&bytes);
            Ok((bytes, sha256))
        });
        match read {
            Ok((bytes, sha256)) => Ok((bytes, sha256)),
            Err(e) => Err(e.clone()),
        }
    }
}

fn push_to(
    ctl: &Controller<'_>,
    host: &FleetHost,
    binary: &Binary<'_>,
    force: bool,
    events: Events<'_>,
) -> Result<Pushed, String> {
    ctl.transport
        .connect(&host.ssh)
        .map_err(|e| format!("cannot connect to {}: {e}", host.ssh))?;
    let machine = run(ctl, host, Via::Shared, &["uname", "-m"], b"")?;
    let arch = machine.stdout.trim();
    if arch != std::env::consts::ARCH {
        return Err(format!(
            "the host is {arch:?}, and this ctm is built for {}",
            std::env::consts::ARCH
        ));
    }
    let asked = run(
        ctl,
        host,
        Via::Shared,
        &[host.ctm_command(), "--version"],
        b"",
    )?;
    let previous = asked
        .success()
        .then(|| parse_version(&asked.stdout))
        .flatten();
    if previous.as_deref() == Some(VERSION) && !force {
        events(Event::of_host(
            host.name.as_str(),
            Event::RemoteCtm {
                version: VERSION.into(),
            },
        ));
        return Ok(Pushed::Current {
            version: VERSION.into(),
        });
    }
    let path = match &host.ctm {
        Some(path) => path.to_string(),
        None => {
            let found = run(ctl, host, Via::Shared, &["sh", "-c", "command -v ctm"], b"")?;
            let found = found.stdout.trim();
            match crate::model::AbsPath::parse(found) {
                Ok(p) => p.to_string(),
                Err(_) => "/usr/local/bin/ctm".to_string(),
            }
        }
    };
    let (bytes, sha256) = binary.bytes_and_sha256()?;
    let copy = format!("{path}.ctm-push");
    let made = run(
        ctl,
        host,
        Via::Shared,
        &["mkdir", "-p", "--", parent_of(&path)],
        b"",
    )?;
    if !made.success() {
        return Err(format!(
            "cannot make {}: {}",
            parent_of(&path),
            made.error_text()
        ));
    }
    upload(ctl, host, &copy, bytes)?;
    let installed = run(
        ctl,
        host,
        Via::Shared,
        &["sh", "-c", INSTALL, "sh", &copy, sha256, &path],
        b"",
    )?;
    if !installed.success() {
        return Err(format!("not installed: {}", installed.error_text()));
    }
    let check = run(ctl, host, Via::Shared, &[&path, "--version"], b"")?;
    if parse_version(&check.stdout).as_deref() != Some(VERSION) {
        return Err(format!(
            "{path} was installed, but `{path} --version` says {:?}",
            check.stdout.trim()
        ));
    }
    events(Event::of_host(
        host.name.as_str(),
        Event::Installed {
            path: path.clone(),
            sha256: sha256.to_string(),
        },
    ));
    Ok(Pushed::Installed {
        path,
        sha256: sha256.to_string(),
        previous,
    })
}

fn parent_of(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((parent, _)) => parent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_series_is_compatible() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.7", "0.1.0"));
        assert!(!compatible("0.0.9", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.2.3"));
        assert!(!compatible("2.0.0", "1.2.3"));
        assert!(!compatible("garbage", "0.1.0"));
        assert_eq!(parse_version("ctm 0.1.0\n").as_deref(), Some("0.1.0"));
        assert_eq!(parse_version("bash: ctm: not found"), None);
    }
}
