//! The running system: [`System`] for the root `/` of a systemd host.
//!
//! Each action waits for its outcome (systemd jobs through `JobRemoved`,
//! networkd until its links are configured), and independent container
//! actions run at once. Health checks poll until the system matches the
//! generation's expectations or a time limit passes, and report every
//! problem found, not just the first.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::exec;
use super::netlink::{self, Netlink};
use super::nft::Nft;
use super::provision;
use super::rootfs;
use super::systemd::{self, Systemd, Verb};
use super::volumes;
use super::{ContainerLive, Progress, StepRecord, System, SystemError, TunnelLive, stats};
use crate::compile::NFT_RULESET;
use crate::compile::health::{AttachmentHealth, Check, Health};
use crate::fs;
use crate::layout::{self, STATE_DIR};
use crate::plan::{Action, FirewallState, SystemState, TimerRun};

/// Each backup timer's activity and its service's last run, by container.
/// The backup timers' states by unit, and their services' last runs by
/// container and by volume.
type BackupTimers = (
    BTreeMap<String, bool>,
    BTreeMap<String, TimerRun>,
    BTreeMap<String, TimerRun>,
);

/// Where the cgroup tree is mounted.
const SYS_FS_CGROUP: &str = "/sys/fs/cgroup";

/// The oldest systemd ctm supports: Debian 12's.
pub const MIN_SYSTEMD: u32 = 252;
/// A container's start or restart job (booting it) may take this long.
const CONTAINER_JOB_TIMEOUT: Duration = Duration::from_secs(180);
const SERVICE_JOB_TIMEOUT: Duration = Duration::from_secs(60);
/// How long networkd may take to configure its links after a reload.
const LINK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a started container may take to be `running` in machined.
/// How long the host end of a container's network after its first may
/// stay out of its bridge before it is reconfigured (networkd matches a
/// new link by itself, unless it appeared while networkd reloaded).
const PORT_NUDGE: Duration = Duration::from_secs(5);
const RUNNING_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a container's own systemd may take to finish booting before
/// the provisioning steps that need it run.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// The transient units ctm starts: the switch of an apply or rollback
/// (so that it survives the SSH session that asked for it), and the timer
/// that reverts an unconfirmed apply.
pub const APPLY_UNIT: &str = "ctm-apply.service";
pub const REVERT_TIMER: &str = "ctm-revert.timer";
pub const REVERT_SERVICE: &str = "ctm-revert.service";

/// What ctm found at start, for `ctm info` and error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    pub systemd: String,
    pub nft: String,
}

pub struct LiveSystem {
    runtime: tokio::runtime::Runtime,
    systemd: Systemd,
    netlink: Netlink,
    nft: Nft,
    root: PathBuf,
    pub versions: Versions,
    /// Provisioning steps performed, by container, until taken.
    step_records: Mutex<BTreeMap<String, Vec<StepRecord>>>,
}

fn error(what: impl Into<String>, why: impl Into<String>) -> SystemError {
    SystemError {
        what: what.into(),
        why: why.into(),
    }
}

/// What `nft` listed right after ctm loaded a ruleset, so that a later
/// listing that differs shows an edit by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FirewallRecord {
    ruleset_sha256: String,
    listing_sha256: String,
}

impl LiveSystem {
    /// Connects to systemd, machined and networkd (D-Bus), the kernel
    /// (netlink) and finds `nft`; refuses a systemd older than 252.
    pub fn connect(root: &Path) -> Result<LiveSystem, SystemError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| error("starting ctm's event loop", e.to_string()))?;
        let (systemd, netlink) = runtime.block_on(async {
            let systemd = Systemd::connect().await?;
            let netlink = Netlink::connect()?;
            Ok::<_, SystemError>((systemd, netlink))
        })?;
        let (major, systemd_version) = runtime.block_on(systemd.version())?;
        if major < MIN_SYSTEMD {
            return Err(error(
                "checking systemd's version",
                format!(
                    "this host runs systemd {systemd_version}; ctm needs {MIN_SYSTEMD} or newer (Debian 12 or later)"
                ),
            ));
        }
        let (nft, nft_version) = Nft::find()?;
        Ok(LiveSystem {
            runtime,
            systemd,
            netlink,
            nft,
            root: root.to_path_buf(),
            versions: Versions {
                systemd: systemd_version,
                nft: nft_version,
            },
            step_records: Mutex::default(),
        })
    }

    pub fn systemd(&self) -> &Systemd {
        &self.systemd
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Runs `argv` as the transient oneshot service `unit` (like
    /// `systemd-run --wait`), its output appended to `log`, which is
    /// followed meanwhile and passed on line by line. Returns whether it
    /// succeeded. The unit belongs to systemd, not to this process: if
    /// this process dies, the unit runs on to its end.
    pub fn run_in_unit(
        &self,
        unit: &str,
        description: &str,
        argv: &[String],
        env: &[(String, String)],
        log: &Path,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<bool, SystemError> {
        use futures_util::StreamExt as _;

        let log_text = log.display().to_string();
        let mut follow = std::fs::File::open(log)
            .map_err(|e| error(format!("reading {}", log.display()), e.to_string()))?;
        let mut pending = String::new();
        self.runtime.block_on(async {
            let mut removed = self.systemd.job_signals().await?;
            let properties = vec![
                ("Description", systemd::text(description)),
                ("Type", systemd::text("oneshot")),
                ("ExecStart", systemd::exec_start(argv)),
                ("Environment", systemd::environment(env)),
                ("StandardOutputFileToAppend", systemd::text(&log_text)),
                ("StandardErrorFileToAppend", systemd::text(&log_text)),
                ("CollectMode", systemd::text("inactive-or-failed")),
                // A oneshot's start job lasts as long as the switch.
                ("TimeoutStartUSec", zbus::Variant::from(u64::MAX)),
            ];
            let job = self
                .systemd
                .start_transient(unit, &properties, &[])
                .await?;
            loop {
                let tick = tokio::time::sleep(Duration::from_millis(100));
                tokio::select! {
                    signal = removed.next() => {
                        let Some(signal) = signal else {
                            return Err(error(format!("waiting for {unit}"), "the D-Bus connection closed"));
                        };
                        if let Ok(args) = signal.args()
                            && args.job.as_str() == job.as_str()
                        {
                            pass_on(&mut follow, &mut pending, on_line);
                            if !pending.is_empty() {
                                on_line(&pending);
                            }
                            return Ok(args.result == "done");
                        }
                    }
                    () = tick => pass_on(&mut follow, &mut pending, on_line),
                }
            }
        })
    }

    fn record_path(&self) -> PathBuf {
        self.root.join(STATE_DIR).join("firewall.json")
    }

    fn record(&self) -> Option<FirewallRecord> {
        let text = std::fs::read_to_string(self.record_path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn installed_ruleset_sha256(&self) -> Option<String> {
        std::fs::read(self.root.join(NFT_RULESET))
            .ok()
            .map(|b| fs::sha256_hex(&b))
    }

    /// Whether the processes of container `name` are frozen: the
    /// `frozen` key of its unit's `cgroup.events` (a cheap read, not a
    /// D-Bus call per container).
    fn is_frozen(&self, name: &str) -> bool {
        stats::unified_root(Path::new(SYS_FS_CGROUP)).is_some_and(|unified| {
            std::fs::read_to_string(
                unified
                    .join("machine.slice")
                    .join(layout::unit(name))
                    .join("cgroup.events"),
            )
            .is_ok_and(|events| events.lines().any(|l| l == "frozen 1"))
        })
    }

    /// Refuses an operation on a container that does not run.
    fn require_running(&self, name: &str) -> Result<(), SystemError> {
        match self.machines()?.get(name) {
            Some(m) if m.state == "running" => Ok(()),
            _ => Err(error(
                format!("container {name}"),
                "it is not running (`ctm status` shows its state; `ctm start` starts it)",
            )),
        }
    }

    /// Every container machined knows, by name.
    pub fn machines(&self) -> Result<BTreeMap<String, systemd::MachineInfo>, SystemError> {
        self.runtime.block_on(self.systemd.machines())
    }

    /// Runs systemd jobs for containers, all at once; a failure names each
    /// container with the end of its unit's log.
    fn container_jobs(&self, verb: Verb, names: &[&str]) -> Result<(), SystemError> {
        let units: Vec<String> = names.iter().map(|n| layout::unit(n)).collect();
        let failed =
            self.runtime
                .block_on(self.systemd.jobs(verb, &units, CONTAINER_JOB_TIMEOUT))?;
        if failed.is_empty() {
            return Ok(());
        }
        let reports: Vec<String> = failed
            .iter()
            .map(|(unit, result)| format!("{unit}: {result}{}", log_tail(unit)))
            .collect();
        Err(error(
            format!("{} {}", verb_name(verb), names.join(", ")),
            reports.join("\n"),
        ))
    }

    fn reload_networkd(
        &self,
        delete_links: &[String],
        reconfigure_links: &[String],
        expect: &Health,
    ) -> Result<(), SystemError> {
        // networkd may not run yet (Debian does not enable it): the host
        // file's networks need it, and ctm-network.target keeps it wanted.
        let failed = self.runtime.block_on(self.systemd.jobs(
            Verb::Start,
            &["systemd-networkd.service".to_string()],
            SERVICE_JOB_TIMEOUT,
        ))?;
        if let Some((unit, result)) = failed.first() {
            return Err(error(
                format!("start {unit}"),
                format!("{result}{}", log_tail(unit)),
            ));
        }
        self.runtime.block_on(
            self.systemd
                .wait_for_name("org.freedesktop.network1", SERVICE_JOB_TIMEOUT),
        )?;
        let names: BTreeSet<String> = delete_links
            .iter()
            .chain(reconfigure_links)
            .chain(expect.links.keys())
            .cloned()
            .collect();
        let existing = self.runtime.block_on(self.netlink.links(&names))?;
        for name in delete_links {
            if let Some(link) = existing.get(name) {
                self.runtime
                    .block_on(self.netlink.delete(name, link.index))?;
            }
        }
        self.runtime.block_on(self.systemd.networkd_reload())?;
        for name in reconfigure_links {
            if let Some(link) = existing.get(name).filter(|_| !delete_links.contains(name)) {
                let index = i32::try_from(link.index)
                    .map_err(|_| error(format!("link {name}"), "its index is out of range"))?;
                self.runtime
                    .block_on(self.systemd.networkd_reconfigure(index, name))?;
            }
        }
        self.wait_for_links(expect, LINK_TIMEOUT)
    }

    /// The host ends of the networks after their first of the containers
    /// that `running` says run, each with the link it is a port of.
    fn ports_of(
        &self,
        expect: &Health,
        running: impl Fn(&str) -> bool,
    ) -> Result<BTreeMap<String, Option<String>>, SystemError> {
        let names: BTreeSet<String> = expect
            .ports()
            .filter(|(container, _)| running(container))
            .map(|(_, a)| a.host_interface.clone())
            .collect();
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.runtime.block_on(self.netlink.masters(&names))
    }

    /// Waits until the host end of each network after the first of the
    /// containers in `running` exists and is a port of its bridge.
    /// networkd bridges it as its file says when the container makes it;
    /// one still out after [`PORT_NUDGE`] is reconfigured, once.
    fn wait_for_ports(
        &self,
        expect: &Health,
        running: &BTreeSet<String>,
        timeout: Duration,
        progress: Progress<'_>,
    ) -> Result<(), SystemError> {
        let wanted: Vec<(&str, &AttachmentHealth)> = expect
            .ports()
            .filter(|(container, _)| running.contains(*container))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        let mut nudged = BTreeSet::new();
        loop {
            let ports = self.ports_of(expect, |c| running.contains(c))?;
            let mut problems = Vec::new();
            for (container, a) in &wanted {
                let name = &a.host_interface;
                let what = format!("{name} (container {container} on network {})", a.network);
                match ports.get(name) {
                    Some(Some(master)) if *master == a.bridge => continue,
                    Some(master) => problems.push(format!(
                        "{what} is {}not a port of {}",
                        master
                            .as_ref()
                            .map_or(String::new(), |m| format!("a port of {m}, ")),
                        a.bridge
                    )),
                    None => {
                        problems.push(format!("{what} does not exist"));
                        continue;
                    }
                }
                if start.elapsed() >= PORT_NUDGE && nudged.insert(name.clone()) {
                    progress(&format!(
                        "{name} is not in {} yet: reconfiguring it",
                        a.bridge
                    ));
                    let found = self
                        .runtime
                        .block_on(self.netlink.links(&BTreeSet::from([name.clone()])))?;
                    if let Some(link) = found.get(name) {
                        let index = i32::try_from(link.index).map_err(|_| {
                            error(format!("link {name}"), "its index is out of range")
                        })?;
                        self.runtime
                            .block_on(self.systemd.networkd_reconfigure(index, name))?;
                    }
                }
            }
            if problems.is_empty() {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(error(
                    "waiting for the containers' extra interfaces",
                    format!("after {} s: {}", timeout.as_secs(), problems.join("; ")),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until every link of `expect` exists, networkd says it is
    /// configured, and it holds its addresses.
    fn wait_for_links(&self, expect: &Health, timeout: Duration) -> Result<(), SystemError> {
        if expect.links.is_empty() {
            return Ok(());
        }
        let names: BTreeSet<String> = expect.links.keys().cloned().collect();
        let deadline = Instant::now() + timeout;
        loop {
            let links = self.runtime.block_on(self.netlink.links(&names))?;
            let states = self
                .runtime
                .block_on(self.systemd.networkd_states(&names))?;
            let mut problems = Vec::new();
            for (name, want) in &expect.links {
                let Some(link) = links.get(name) else {
                    problems.push(format!("{name} does not exist"));
                    continue;
                };
                match states.get(name).map(String::as_str) {
                    Some("configured") => {}
                    Some("failed") => {
                        return Err(error(
                            format!("configuring link {name}"),
                            format!(
                                "systemd-networkd failed to configure it{}",
                                log_tail("systemd-networkd.service")
                            ),
                        ));
                    }
                    state => problems.push(format!(
                        "{name} is {} in systemd-networkd",
                        state.unwrap_or("unknown")
                    )),
                }
                let lacking: Vec<&str> = want
                    .addresses
                    .iter()
                    .filter(|a| !link.addresses.contains(*a))
                    .map(String::as_str)
                    .collect();
                if !lacking.is_empty() {
                    problems.push(format!("{name} lacks {}", lacking.join(", ")));
                }
            }
            if problems.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(error(
                    "waiting for systemd-networkd",
                    format!("after {} s: {}", timeout.as_secs(), problems.join("; ")),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn replace_firewall(&self) -> Result<(), SystemError> {
        let ruleset = self.root.join(NFT_RULESET);
        if !ruleset.exists() {
            // No generation has a ruleset any more (a rollback to none).
            self.nft.delete_table()?;
            return fs::remove(&self.record_path())
                .map_err(|e| error("forgetting the firewall record", e.to_string()));
        }
        self.nft.load(&ruleset)?;
        let table = self.nft.table()?.ok_or_else(|| {
            error(
                format!("loading {}", ruleset.display()),
                "nft accepted the ruleset, but table inet ctm does not exist",
            )
        })?;
        let record = FirewallRecord {
            ruleset_sha256: self.installed_ruleset_sha256().unwrap_or_default(),
            listing_sha256: table.listing_sha256,
        };
        // Plain data: serializing it cannot fail.
        let text = serde_json::to_string_pretty(&record).unwrap_or_default() + "\n";
        fs::write_file(&self.record_path(), text.as_bytes(), 0o644)
            .map_err(|e| error("recording the loaded firewall", e.to_string()))
    }

    /// Each socket unit and whether it is active (listening).
    fn active_sockets(&self, sockets: &[String]) -> Result<BTreeMap<String, bool>, SystemError> {
        self.runtime.block_on(async {
            let mut active = BTreeMap::new();
            for socket in sockets {
                let state = self.systemd.unit_state(socket).await?;
                active.insert(socket.clone(), state.active == "active");
            }
            Ok(active)
        })
    }

    /// Each backup timer of `expect` and whether it is active, and how its
    /// service last ran, by container.
    fn backup_timers(&self, expect: &Health) -> Result<BackupTimers, SystemError> {
        self.runtime.block_on(async {
            let (mut active, mut runs, mut volume_runs) =
                (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
            for name in expect.backups.keys() {
                let timer = crate::layout::backup_timer(name);
                let (up, run) = self
                    .systemd
                    .timer_state(&timer, &crate::layout::backup_service(name))
                    .await?;
                active.insert(timer, up);
                runs.insert(name.clone(), run);
            }
            let volumes = expect.volumes.iter().filter(|(_, v)| v.backup.is_some());
            for (name, _) in volumes {
                let timer = crate::layout::volume_backup_timer(name);
                let (up, run) = self
                    .systemd
                    .timer_state(&timer, &crate::layout::volume_backup_service(name))
                    .await?;
                active.insert(timer, up);
                volume_runs.insert(name.clone(), run);
            }
            Ok((active, runs, volume_runs))
        })
    }

    /// Stops the proxies of changed and removed forwards (a running proxy
    /// keeps relaying to the address it started with), stops the removed
    /// sockets, and (re)starts the new and changed ones.
    fn reload_loopback_forwards(
        &self,
        start: &[String],
        restart: &[String],
        stop: &[String],
    ) -> Result<(), SystemError> {
        // A proxy runs only once a connection came, and a unit whose file
        // is gone is known to systemd only while it runs: stopping one
        // that does not run would fail with NoSuchUnit.
        let running = |units: Vec<String>| -> Result<Vec<String>, SystemError> {
            let mut active = Vec::new();
            for unit in units {
                let state = self.runtime.block_on(self.systemd.unit_state(&unit))?;
                if state.active != "inactive" {
                    active.push(unit);
                }
            }
            Ok(active)
        };
        let services = running(
            restart
                .iter()
                .chain(stop)
                .map(|socket| crate::layout::loopback_service(socket))
                .collect(),
        )?;
        let stop = running(stop.to_vec())?;
        let to_start: Vec<String> = restart.iter().chain(start).cloned().collect();
        self.unit_jobs(&[
            (Verb::Stop, &services),
            (Verb::Stop, &stop),
            (Verb::Restart, &to_start),
        ])
    }

    /// Starts new timers, restarts changed ones and stops removed ones
    /// that systemd still runs (a unit whose file is gone is known to it
    /// only while active). Their services are left alone: a backup under
    /// way finishes.
    fn reload_backup_timers(
        &self,
        start: &[String],
        restart: &[String],
        stop: &[String],
    ) -> Result<(), SystemError> {
        let mut active = Vec::new();
        for unit in stop {
            let state = self.runtime.block_on(self.systemd.unit_state(unit))?;
            match state.active.as_str() {
                "inactive" => {}
                // A timer whose service's file went with the daemon reload
                // fails; once reset it is gone, as stopped.
                "failed" => self.runtime.block_on(self.systemd.reset_failed(unit)),
                _ => active.push(unit.clone()),
            }
        }
        let to_start: Vec<String> = restart.iter().chain(start).cloned().collect();
        self.unit_jobs(&[(Verb::Stop, &active), (Verb::Restart, &to_start)])
    }

    /// Runs each group of jobs in turn, waiting for it; the first unit
    /// that fails ends it, with the unit's log.
    fn unit_jobs(&self, steps: &[(Verb, &[String])]) -> Result<(), SystemError> {
        for &(verb, units) in steps {
            if units.is_empty() {
                continue;
            }
            let failed =
                self.runtime
                    .block_on(self.systemd.jobs(verb, units, SERVICE_JOB_TIMEOUT))?;
            if let Some((unit, result)) = failed.first() {
                return Err(error(
                    format!("{} {unit}", verb.as_str()),
                    format!("{result}{}", log_tail(unit)),
                ));
            }
        }
        Ok(())
    }

    fn prepare(&self, names: &[&str], progress: Progress<'_>) -> Result<(), SystemError> {
        let root = self.root.clone();
        let failures = in_parallel(names, progress, |name, echo| {
            let steps = provision::read_steps(&root, name)?;
            let records = provision::before_boot(&root, name, &steps, echo)?;
            self.keep_records(name, records);
            Ok(())
        });
        joined(failures)
    }

    /// Sets aside the trees of stopped containers (`rootfs::set_aside`);
    /// a tree in use is never touched.
    fn remove_rootfs(&self, names: &[&str]) -> Result<(), SystemError> {
        let machines = self.machines()?;
        for name in names {
            if machines.contains_key(*name) {
                return Err(error(
                    format!("deleting the root file system of container {name}"),
                    "the container is running",
                ));
            }
            rootfs::set_aside(&self.root, name)?;
        }
        Ok(())
    }

    fn provision(&self, names: &[&str], progress: Progress<'_>) -> Result<(), SystemError> {
        // A start job ends when nspawn says it is ready, which can be a
        // moment before machined lists the container as running.
        let wanted: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
        let leaders = self
            .wait_for_containers(&wanted, RUNNING_TIMEOUT)
            .map_err(|why| error("waiting for containers to run", why))?;
        let root = self.root.clone();
        let failures = in_parallel(names, progress, |name, echo| {
            let leader = *leaders
                .get(name)
                .ok_or_else(|| error(format!("container {name}"), "it is not running"))?;
            let steps = provision::read_steps(&root, name)?;
            // Nothing to wait for in a container without steps inside:
            // an application container has no init to finish booting.
            if steps
                .iter()
                .any(|s| s.phase == crate::compile::provision::Phase::Running)
            {
                provision::wait_until_booted(leader, name, BOOT_TIMEOUT)?;
            }
            let records = provision::running(leader, name, &steps, echo)?;
            self.keep_records(name, records);
            Ok(())
        });
        joined(failures)
    }

    fn keep_records(&self, name: &str, records: Vec<StepRecord>) {
        // A poisoned lock means a thread panicked while pushing; the
        // records are only a report, so keep what is there.
        let mut kept = self
            .step_records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        kept.entry(name.to_string()).or_default().extend(records);
    }

    /// Every container in `running` is `running` in machined.
    fn wait_for_containers(
        &self,
        running: &BTreeSet<String>,
        timeout: Duration,
    ) -> Result<BTreeMap<String, u32>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let machines = self.machines().map_err(|e| e.to_string())?;
            let not_running: Vec<&String> = running
                .iter()
                .filter(|n| machines.get(*n).is_none_or(|m| m.state != "running"))
                .collect();
            if not_running.is_empty() {
                return Ok(running
                    .iter()
                    .filter_map(|n| machines.get(n).map(|m| (n.clone(), m.leader)))
                    .collect());
            }
            if Instant::now() >= deadline {
                let reports: Vec<String> = not_running
                    .iter()
                    .map(|n| {
                        let unit = layout::unit(n);
                        let state = self
                            .runtime
                            .block_on(self.systemd.unit_state(&unit))
                            .map(|s| format!("{}/{}", s.active, s.sub))
                            .unwrap_or_else(|e| e.to_string());
                        format!(
                            "container {n} is not running ({unit} is {state}){}",
                            log_tail(&unit)
                        )
                    })
                    .collect();
                return Err(reports.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Passes on the complete lines appended to a followed file.
fn pass_on(follow: &mut std::fs::File, pending: &mut String, on_line: &mut dyn FnMut(&str)) {
    use std::io::Read as _;
    let mut chunk = Vec::new();
    if follow.read_to_end(&mut chunk).is_ok() {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find('\n') {
            on_line(&pending[..end]);
            pending.drain(..=end);
        }
    }
}

fn verb_name(verb: Verb) -> &'static str {
    match verb {
        Verb::Start => "start",
        Verb::Stop => "stop",
        Verb::Restart => "restart",
    }
}

/// The end of a unit's journal, for an error message ("" if unreadable).
fn log_tail(unit: &str) -> String {
    let argv: Vec<String> = [
        "journalctl",
        "--no-pager",
        "--quiet",
        "--output=cat",
        "--lines=15",
        "--unit",
        unit,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match exec::on_host(&argv, Duration::from_secs(10), &mut |_| {}) {
        Ok(ran) if ran.success() && !ran.output.trim().is_empty() => {
            format!("; its log ends:\n{}", indent(ran.output.trim_end()))
        }
        _ => format!(" (see `journalctl -u {unit}`)"),
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `work` for every name on its own thread; their progress lines
/// reach `progress` on this thread, as they come. Returns the failures.
fn in_parallel(
    names: &[&str],
    progress: Progress<'_>,
    work: impl Fn(&str, Progress<'_>) -> Result<(), SystemError> + Sync,
) -> Vec<SystemError> {
    let (lines, received) = mpsc::channel::<String>();
    std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| {
                let lines = lines.clone();
                let work = &work;
                scope.spawn(move || {
                    let mut echo = |line: &str| {
                        let _ = lines.send(line.to_string());
                    };
                    work(name, &mut echo)
                })
            })
            .collect();
        drop(lines);
        for line in received {
            progress(&line);
        }
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(result) => result.err(),
                Err(_) => Some(error("a parallel task", "it panicked")),
            })
            .collect()
    })
}

fn joined(failures: Vec<SystemError>) -> Result<(), SystemError> {
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.into_iter().next().expect("one failure")),
        n => Err(error(
            format!("{n} tasks"),
            failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )),
    }
}

impl System for LiveSystem {
    fn is_live(&self) -> bool {
        true
    }

    fn observe(&mut self, expect: &Health) -> Result<SystemState, SystemError> {
        let machines = self.machines()?;
        let containers: BTreeMap<String, bool> = machines
            .iter()
            .map(|(name, m)| (name.clone(), m.state == "running"))
            .collect();
        let paused = machines
            .keys()
            .filter(|name| self.is_frozen(name))
            .cloned()
            .collect();
        let names: BTreeSet<String> = expect.links.keys().cloned().collect();
        let found = self.runtime.block_on(self.netlink.links(&names))?;
        let links_down = found
            .iter()
            .filter(|(_, link)| !link.up)
            .map(|(name, _)| name.clone())
            .collect();
        let links = found
            .into_iter()
            .map(|(name, link)| (name, link.addresses))
            .collect();
        let table = self.nft.table()?;
        let edited = match (&table, self.record(), self.installed_ruleset_sha256()) {
            (Some(table), Some(record), Some(installed)) if record.ruleset_sha256 == installed => {
                record.listing_sha256 != table.listing_sha256
            }
            _ => false,
        };
        let (timers, timer_runs, volume_timer_runs) = self.backup_timers(expect)?;
        let ports = self.ports_of(expect, |name| containers.get(name) == Some(&true))?;
        Ok(SystemState {
            containers: Some(containers),
            paused: Some(paused),
            made_rootfs: Some(rootfs::made_by_ctm_except(&self.root, &expect.containers)),
            undone_steps: None,
            links: Some(links),
            link_kinds: Some(netlink::probe_kinds(
                &expect.links.values().map(|l| l.kind.clone()).collect(),
            )),
            firewall: Some(FirewallState {
                chains: table.map(|t| t.chains),
                edited,
            }),
            sockets: Some(self.active_sockets(&expect.sockets)?),
            backup_timers: Some(timers),
            timer_runs,
            last_backups: BTreeMap::new(),
            volume_timer_runs,
            // Read by the engine for every root.
            last_volume_backups: BTreeMap::new(),
            volume_usage: BTreeMap::new(),
            links_down: Some(links_down),
            ports: Some(ports),
            // Read by the engine for every root (`volumes::observe`).
            volumes: None,
            roots: Some(rootfs::observe(&self.root, &expect.containers)),
        })
    }

    fn perform(
        &mut self,
        batch: &[Action],
        expect: &Health,
        progress: Progress<'_>,
    ) -> Result<(), SystemError> {
        batch.iter().try_for_each(super::injected_failure)?;
        let names: Vec<&str> = batch.iter().filter_map(Action::container).collect();
        let Some(first) = batch.first() else {
            return Ok(());
        };
        match first {
            Action::StopContainer { .. } => self.container_jobs(Verb::Stop, &names),
            Action::StartContainer { .. } => self.container_jobs(Verb::Start, &names),
            Action::RestartContainer { .. } => self.container_jobs(Verb::Restart, &names),
            Action::PrepareContainer { .. } => self.prepare(&names, progress),
            Action::ProvisionContainer { .. } => self.provision(&names, progress),
            Action::DaemonReload { .. } => self.runtime.block_on(self.systemd.daemon_reload()),
            Action::ApplySysctl { .. } => {
                let unit = "systemd-sysctl.service".to_string();
                let failed = self.runtime.block_on(self.systemd.jobs(
                    Verb::Restart,
                    std::slice::from_ref(&unit),
                    SERVICE_JOB_TIMEOUT,
                ))?;
                match failed.first() {
                    None => Ok(()),
                    Some((unit, result)) => Err(error(
                        format!("restart {unit}"),
                        format!("{result}{}", log_tail(unit)),
                    )),
                }
            }
            Action::ReloadNetworkd {
                delete_links,
                reconfigure_links,
                ..
            } => self.reload_networkd(delete_links, reconfigure_links, expect),
            Action::ReplaceFirewall { .. } => self.replace_firewall(),
            Action::ReloadLoopbackForwards {
                start,
                restart,
                stop,
                ..
            } => self.reload_loopback_forwards(start, restart, stop),
            Action::ReloadBackupTimers {
                start,
                restart,
                stop,
                ..
            } => self.reload_backup_timers(start, restart, stop),
            Action::RemoveRootfs { .. } => self.remove_rootfs(&names),
            Action::RestoreRootfs { .. } => names
                .iter()
                .try_for_each(|name| rootfs::put_back(&self.root, name)),
            Action::CreateVolume { .. }
            | Action::SetVolumeQuota { .. }
            | Action::RemoveVolume { .. }
            | Action::RestoreVolume { .. } => batch.iter().try_for_each(|action| {
                volumes::perform(&self.root, action, progress).unwrap_or(Ok(()))
            }),
        }
    }

    fn unmount_root(&mut self, root: &std::path::Path, name: &str) -> Result<(), SystemError> {
        let unit = crate::layout::overlay_mount_unit(name);
        let failed = self.runtime.block_on(self.systemd.jobs(
            Verb::Stop,
            std::slice::from_ref(&unit),
            SERVICE_JOB_TIMEOUT,
        ))?;
        if let Some((unit, result)) = failed.first() {
            return Err(error(
                format!("stop {unit}"),
                format!("{result}{}", log_tail(unit)),
            ));
        }
        rootfs::unmount(&rootfs::tree(root, name))
    }

    fn answers_ping(&mut self, address: IpAddr) -> Result<Option<bool>, SystemError> {
        // Three echoes a second apart: one lost packet is not an answer.
        let argv: Vec<String> = ["ping", "-n", "-q", "-c", "3", "-i", "1", "-W", "1"]
            .iter()
            .map(|s| s.to_string())
            .chain([address.to_string()])
            .collect();
        let ran = exec::on_host(&argv, Duration::from_secs(10), &mut |_| {})?;
        Ok(Some(ran.success()))
    }

    fn tunnels(
        &mut self,
        remotes: &BTreeMap<String, IpAddr>,
    ) -> Result<Option<BTreeMap<String, TunnelLive>>, SystemError> {
        let names: BTreeSet<String> = remotes.keys().cloned().collect();
        let netlink = &self.netlink;
        let found = self.runtime.block_on(async {
            let links = netlink.links(&names).await?;
            let mut found = BTreeMap::new();
            for (name, remote) in remotes {
                let route_to_remote = netlink.route_to(*remote).await?;
                let live = match links.get(name) {
                    Some(link) => TunnelLive {
                        exists: true,
                        kind: link.kind.clone(),
                        up: link.up,
                        oper_state: link.oper_state.clone(),
                        mtu: link.mtu,
                        addresses: link.addresses.iter().cloned().collect(),
                        counters: link.counters,
                        route_to_remote,
                    },
                    None => TunnelLive {
                        oper_state: "missing".into(),
                        route_to_remote,
                        ..TunnelLive::default()
                    },
                };
                found.insert(name.clone(), live);
            }
            Ok::<_, SystemError>(found)
        })?;
        Ok(Some(found))
    }

    fn undone_steps(
        &mut self,
        names: &BTreeSet<String>,
        progress: Progress<'_>,
    ) -> Result<Option<BTreeMap<String, Vec<String>>>, SystemError> {
        let machines = self.machines()?;
        let leaders: BTreeMap<&str, u32> = names
            .iter()
            .filter_map(|n| {
                machines
                    .get(n)
                    .filter(|m| m.state == "running")
                    .map(|m| (n.as_str(), m.leader))
            })
            .collect();
        let running: Vec<&str> = leaders.keys().copied().collect();
        let found = std::sync::Mutex::new(BTreeMap::new());
        let root = self.root.clone();
        let failures = in_parallel(&running, progress, |name, _| {
            let leader = *leaders
                .get(name)
                .ok_or_else(|| error(format!("container {name}"), "it is not running"))?;
            let steps = provision::read_steps(&root, name)?;
            let undone = provision::undone(leader, name, &steps)?;
            if !undone.is_empty() {
                found
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.to_string(), undone);
            }
            Ok(())
        });
        joined(failures)?;
        Ok(Some(found.into_inner().unwrap_or_else(|p| p.into_inner())))
    }

    fn purge_removed(&mut self, progress: Progress<'_>) -> Vec<SystemError> {
        let mut problems = rootfs::purge(&self.root, progress);
        problems.extend(volumes::purge(&self.root, progress));
        problems
    }

    fn health_check(
        &mut self,
        expect: &Health,
        running: &BTreeSet<String>,
        progress: Progress<'_>,
    ) -> Result<(), SystemError> {
        let mut problems = Vec::new();
        let leaders = match self.wait_for_containers(running, RUNNING_TIMEOUT) {
            Ok(leaders) => leaders,
            Err(e) => {
                problems.push(e);
                BTreeMap::new()
            }
        };
        if let Err(e) = self.wait_for_links(expect, LINK_TIMEOUT) {
            problems.push(e.why);
        }
        if let Err(e) = self.wait_for_ports(expect, running, LINK_TIMEOUT, &mut *progress) {
            problems.push(e.why);
        }
        match self.backup_timers(expect) {
            Ok((active, _, _)) => problems.extend(
                active
                    .into_iter()
                    .filter(|(_, up)| !up)
                    .map(|(timer, _)| format!("{timer} is not active{}", log_tail(&timer))),
            ),
            Err(e) => problems.push(e.to_string()),
        }
        match self.active_sockets(&expect.sockets) {
            Ok(active) => problems.extend(
                active
                    .into_iter()
                    .filter(|(_, up)| !up)
                    .map(|(socket, _)| format!("{socket} is not active{}", log_tail(&socket))),
            ),
            Err(e) => problems.push(e.to_string()),
        }
        if !expect.firewall.is_empty() {
            match self.nft.table() {
                Ok(Some(table)) if table.chains == expect.firewall => {}
                Ok(Some(table)) => problems.push(format!(
                    "table inet ctm has chains {:?}, expected {:?}",
                    table.chains, expect.firewall
                )),
                Ok(None) => problems.push("table inet ctm does not exist".into()),
                Err(e) => problems.push(e.to_string()),
            }
        }
        // The declared checks of the containers that run, all at once.
        let mut checks: Vec<(String, Check, Vec<IpAddr>, Option<u32>)> = Vec::new();
        for name in running {
            if let Some(c) = expect.containers.get(name) {
                // A frozen container answers nothing until it is resumed;
                // its checks would only time out.
                if !c.checks.is_empty() && self.is_frozen(name) {
                    progress(&format!(
                        "{name}: paused, its checks are not run (`ctm resume {name}`)"
                    ));
                    continue;
                }
                for check in &c.checks {
                    checks.push((
                        name.clone(),
                        check.clone(),
                        c.addresses.clone(),
                        leaders.get(name).copied(),
                    ));
                }
            }
        }
        if !checks.is_empty() {
            let labels: Vec<String> = checks
                .iter()
                .map(|(name, check, _, _)| format!("{name}: {}", check.describe()))
                .collect();
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            let failures = in_parallel(&labels, progress, |label, echo| {
                let index = labels.iter().position(|l| *l == label).unwrap_or(0);
                let (name, check, addresses, leader) = &checks[index];
                run_check(name, check, addresses, *leader, echo)
            });
            problems.extend(failures.into_iter().map(|e| e.to_string()));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(error("health check", problems.join("\n")))
        }
    }

    fn take_step_records(&mut self) -> BTreeMap<String, Vec<StepRecord>> {
        std::mem::take(
            self.step_records
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    fn containers(
        &mut self,
        names: &BTreeSet<String>,
    ) -> Result<Option<BTreeMap<String, ContainerLive>>, SystemError> {
        let machines = self.machines()?;
        let mut out = BTreeMap::new();
        for name in names {
            let unit = self
                .runtime
                .block_on(self.systemd.unit_state(&layout::unit(name)))?;
            let machine = machines.get(name);
            let addresses = match machine {
                Some(_) => self
                    .runtime
                    .block_on(self.systemd.machine_addresses(name))
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            out.insert(
                name.clone(),
                ContainerLive {
                    state: machine.map_or("stopped".into(), |m| m.state.clone()),
                    unit: format!("{}/{}", unit.active, unit.sub),
                    since_usec: unit.active_since,
                    addresses,
                    paused: machine.is_some() && self.is_frozen(name),
                },
            );
        }
        Ok(Some(out))
    }

    fn stats(
        &mut self,
        names: &BTreeSet<String>,
    ) -> Result<Option<BTreeMap<String, stats::Stats>>, SystemError> {
        let machines = self.machines()?;
        let unified = stats::unified_root(Path::new(SYS_FS_CGROUP));
        let proc = Path::new("/proc");
        let mut out = BTreeMap::new();
        for name in names {
            let Some(machine) = machines.get(name) else {
                continue;
            };
            let cgroup = unified
                .as_deref()
                .and_then(|u| stats::container_cgroup(proc, u, machine.leader));
            out.insert(
                name.clone(),
                match cgroup {
                    Some(cgroup) => stats::sample(&cgroup, proc, machine.leader),
                    None => stats::Stats {
                        unavailable: vec![format!(
                            "cgroup: no unified (v2) cgroup tree under {SYS_FS_CGROUP}, or container {name} is not in it"
                        )],
                        ..stats::Stats::default()
                    },
                },
            );
        }
        Ok(Some(out))
    }

    fn set_paused(&mut self, name: &str, paused: bool) -> Result<(), SystemError> {
        self.require_running(name)?;
        let unit = layout::unit(name);
        if paused {
            self.runtime.block_on(self.systemd.freeze(&unit))
        } else {
            self.runtime.block_on(self.systemd.thaw(&unit))
        }
    }

    fn kill(&mut self, name: &str, signal: i32) -> Result<(), SystemError> {
        self.require_running(name)?;
        self.runtime
            .block_on(self.systemd.kill_machine(name, signal))
    }

    fn leader(&mut self, name: &str) -> Result<Option<u32>, SystemError> {
        Ok(self
            .machines()?
            .get(name)
            .filter(|m| m.state == "running")
            .map(|m| m.leader))
    }

    fn arm_revert(&mut self, deadline: u64) -> Result<(), SystemError> {
        let ctm = std::env::current_exe()
            .map_err(|e| error("finding ctm's own binary", e.to_string()))?;
        let argv = vec![
            ctm.display().to_string(),
            "recover".to_string(),
            "--root".to_string(),
            self.root.display().to_string(),
        ];
        // One second late rather than early: `ctm recover` reverts only
        // once the deadline in ctm's state has passed.
        let seconds = deadline.saturating_sub(crate::clock::now_unix()) + 1;
        self.disarm_revert()?;
        self.runtime.block_on(async {
            let timer = vec![
                (
                    "Description",
                    systemd::text("Revert an unconfirmed ctm apply (ctm confirm disarms this)"),
                ),
                (
                    "TimersMonotonic",
                    zbus::Variant::from(vec![("OnActiveSec".to_string(), seconds * 1_000_000)]),
                ),
                // The default accuracy is a minute.
                ("AccuracyUSec", zbus::Variant::from(1_000_000u64)),
                ("RemainAfterElapse", zbus::Variant::from(false)),
            ];
            let service = vec![
                (
                    "Description",
                    systemd::text("Revert an unconfirmed ctm apply"),
                ),
                ("Type", systemd::text("oneshot")),
                ("ExecStart", systemd::exec_start(&argv)),
                ("CollectMode", systemd::text("inactive-or-failed")),
                ("TimeoutStartUSec", zbus::Variant::from(u64::MAX)),
            ];
            self.systemd
                .start_transient(REVERT_TIMER, &timer, &[(REVERT_SERVICE, service)])
                .await
                .map(|_| ())
        })
    }

    fn disarm_revert(&mut self) -> Result<(), SystemError> {
        let loaded = self
            .runtime
            .block_on(self.systemd.unit_state(REVERT_TIMER))
            .map(|s| s.active != "inactive")
            .unwrap_or(false);
        if !loaded {
            return Ok(());
        }
        let failed = self.runtime.block_on(self.systemd.jobs(
            Verb::Stop,
            &[REVERT_TIMER.to_string()],
            SERVICE_JOB_TIMEOUT,
        ))?;
        match failed.first() {
            None => Ok(()),
            Some((unit, result)) => Err(error(format!("stop {unit}"), result.clone())),
        }
    }
}

/// Retries one declared check until it passes or its timeout is up.
fn run_check(
    name: &str,
    check: &Check,
    addresses: &[IpAddr],
    leader: Option<u32>,
    progress: Progress<'_>,
) -> Result<(), SystemError> {
    let what = format!("check {} of container {name}", check.describe());
    let timeout = Duration::from_secs(u64::from(check.timeout_seconds()));
    let deadline = Instant::now() + timeout;
    loop {
        let outcome = match check {
            Check::Tcp { port, .. } => {
                let failed: Vec<String> = addresses
                    .iter()
                    .filter_map(|ip| {
                        let address = SocketAddr::new(*ip, *port);
                        TcpStream::connect_timeout(&address, Duration::from_secs(2))
                            .err()
                            .map(|e| format!("{address}: {e}"))
                    })
                    .collect();
                if failed.is_empty() {
                    Ok(())
                } else {
                    Err(failed.join("; "))
                }
            }
            Check::Command { argv, .. } => match leader {
                None => Err("the container is not running".to_string()),
                Some(leader) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match exec::in_container(
                        leader,
                        argv,
                        &[],
                        left.max(Duration::from_secs(1)),
                        &mut |_| {},
                    ) {
                        Ok(ran) if ran.success() => Ok(()),
                        Ok(ran) => Err(format!("{}: {}", ran.describe(), ran.tail(5))),
                        Err(e) => Err(e.to_string()),
                    }
                }
            },
        };
        match outcome {
            Ok(()) => {
                progress(&format!("{name}: {} passed", check.describe()));
                return Ok(());
            }
            Err(why) if Instant::now() >= deadline => {
                return Err(error(
                    what,
                    format!("still failing after {} s: {why}", timeout.as_secs()),
                ));
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
