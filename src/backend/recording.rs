//! A recording fake of the running system, for tests: it behaves like a
//! live host that does whatever it is asked, and writes down every call,
//! in order, so that a test can assert the exact sequence of an apply, a
//! rollback or a recovery (youki's habit). Failures are injected by the
//! test, per action.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use super::{ContainerLive, Counters, Progress, RouteTo, System, SystemError, TunnelLive};
use crate::compile::health::Health;
use crate::plan::{Action, KindSupport, SystemState};

/// What the fake has seen, shared with the test that made it.
#[derive(Debug, Default)]
pub struct Log {
    /// One line per call: `perform: start container web`, `health check:
    /// web`, `arm revert`, …
    pub calls: Vec<String>,
    /// Containers running now, as the fake's actions left them.
    pub running: BTreeSet<String>,
    /// Running containers that are paused.
    pub paused: BTreeSet<String>,
    /// How many times resource use was sampled.
    pub samples: u64,
    /// Backup timers stopped by hand (`systemctl stop`): not active until
    /// an apply starts them.
    pub stopped_timers: BTreeSet<String>,
    /// How each container's backup timer last ran its service; none: it
    /// never did.
    pub timer_runs: BTreeMap<String, crate::plan::TimerRun>,
    /// Volume backup timers' runs, by volume.
    pub volume_timer_runs: BTreeMap<String, crate::plan::TimerRun>,
}

/// The fake. Cloning gives another handle on the same log and settings,
/// as each session of a use case gets its own system.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    log: Arc<Mutex<Log>>,
    /// Actions (by summary) that fail the first time they are performed.
    fail: Arc<Mutex<BTreeSet<String>>>,
    /// Actions (by summary) during which the process "dies": the fake
    /// panics, and the switch is left as a crash leaves it.
    crash: Arc<Mutex<BTreeSet<String>>>,
    /// Paths (under `root`) whose presence each `perform` notes, to show
    /// whether files were switched before an action.
    watch: Arc<Vec<(PathBuf, String)>>,
    /// Kinds of link the fake kernel cannot make.
    unsupported_kinds: Arc<Mutex<BTreeSet<String>>>,
    /// Links the fake kernel does not have (`ctm tunnel status`).
    missing_links: Arc<Mutex<BTreeSet<String>>>,
    /// What the fake file system can do for root file systems; `None`
    /// as on a root that is not the running system.
    roots: Arc<Mutex<Option<crate::plan::RootsState>>>,
}

impl Recording {
    pub fn new() -> Recording {
        Recording::default()
    }

    /// Notes, at each `perform`, whether `path` exists, as `label`.
    pub fn watching(mut self, path: PathBuf, label: &str) -> Recording {
        let mut watch = (*self.watch).clone();
        watch.push((path, label.to_string()));
        self.watch = Arc::new(watch);
        self
    }

    /// The fake kernel cannot make links of this kind (`gre`).
    pub fn without_kind(&self, kind: &str) {
        lock(&self.unsupported_kinds).insert(kind.to_string());
    }

    /// The fake file system's abilities for root file systems (and the
    /// containers without a tree).
    pub fn with_roots(&self, roots: crate::plan::RootsState) {
        *lock(&self.roots) = Some(roots);
    }

    /// The fake kernel has no link of this name.
    pub fn without_link(&self, name: &str) {
        lock(&self.missing_links).insert(name.to_string());
    }

    /// Backup timer `timer` is stopped by hand: not active.
    pub fn stop_timer(&self, timer: &str) {
        lock(&self.log).stopped_timers.insert(timer.to_string());
    }

    /// Container `name`'s backup timer ran its service, which ended with
    /// `result` (`success`, `exit-code`).
    pub fn timer_ran(&self, name: &str, result: &str) {
        lock(&self.log).timer_runs.insert(
            name.to_string(),
            crate::plan::TimerRun {
                result: result.to_string(),
                last_trigger_usec: 1_000_000,
            },
        );
    }

    /// Volume `name`'s backup timer ran its service, which ended with
    /// `result`.
    pub fn volume_timer_ran(&self, name: &str, result: &str) {
        lock(&self.log).volume_timer_runs.insert(
            name.to_string(),
            crate::plan::TimerRun {
                result: result.to_string(),
                last_trigger_usec: 1_000_000,
            },
        );
    }

    /// The action with this summary fails, once.
    pub fn fail_on(&self, summary: &str) {
        lock(&self.fail).insert(summary.to_string());
    }

    /// The process dies while performing the action with this summary.
    pub fn crash_on(&self, summary: &str) {
        lock(&self.crash).insert(summary.to_string());
    }

    /// Every call so far, and forgets them.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut lock(&self.log).calls)
    }

    pub fn running(&self) -> BTreeSet<String> {
        lock(&self.log).running.clone()
    }

    fn record(&self, call: String) {
        lock(&self.log).calls.push(call);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl System for Recording {
    fn is_live(&self) -> bool {
        true
    }

    fn observe(&mut self, expect: &Health) -> Result<SystemState, SystemError> {
        self.record("observe".into());
        let running = self.running();
        // Read before the state below, which holds the log's lock.
        let (timers, timer_runs, volume_timer_runs) = {
            let log = lock(&self.log);
            let timers: BTreeMap<String, bool> = crate::plan::all_timers_active(expect)
                .into_keys()
                .map(|timer| {
                    let active = !log.stopped_timers.contains(&timer);
                    (timer, active)
                })
                .collect();
            (
                timers,
                log.timer_runs.clone(),
                log.volume_timer_runs.clone(),
            )
        };
        Ok(SystemState {
            containers: Some(
                expect
                    .containers
                    .keys()
                    .chain(&running)
                    .map(|name| (name.clone(), running.contains(name)))
                    .collect(),
            ),
            links: Some(
                expect
                    .links
                    .iter()
                    .map(|(name, l)| (name.clone(), l.addresses.iter().cloned().collect()))
                    .collect(),
            ),
            firewall: None,
            // A recording has no links of the containers' own.
            ports: None,
            paused: Some(lock(&self.log).paused.clone()),
            made_rootfs: Some(BTreeSet::new()),
            undone_steps: None,
            volumes: None,
            roots: lock(&self.roots).clone(),
            link_kinds: Some(
                expect
                    .links
                    .values()
                    .map(|l| {
                        let support = if lock(&self.unsupported_kinds).contains(&l.kind) {
                            KindSupport::Unsupported {
                                reason: "the kernel has no such kind of link (recording fake)"
                                    .into(),
                            }
                        } else {
                            KindSupport::Supported
                        };
                        (l.kind.clone(), support)
                    })
                    .collect(),
            ),
            // The fake's sockets listen as soon as they are named.
            sockets: Some(expect.sockets.iter().map(|s| (s.clone(), true)).collect()),
            backup_timers: Some(timers),
            timer_runs,
            last_backups: BTreeMap::new(),
            volume_timer_runs,
            last_volume_backups: BTreeMap::new(),
            volume_usage: BTreeMap::new(),
            links_down: Some(BTreeSet::new()),
        })
    }

    fn perform(
        &mut self,
        batch: &[Action],
        _expect: &Health,
        _progress: Progress<'_>,
    ) -> Result<(), SystemError> {
        let summaries: Vec<String> = batch.iter().map(Action::summary).collect();
        let seen: Vec<String> = self
            .watch
            .iter()
            .map(|(path, label)| {
                format!(
                    "{label} {}",
                    if path.exists() { "present" } else { "absent" }
                )
            })
            .collect();
        let mut call = format!("perform: {}", summaries.join(" + "));
        if !seen.is_empty() {
            call.push_str(&format!(" [{}]", seen.join(", ")));
        }
        self.record(call);
        for summary in &summaries {
            if lock(&self.crash).remove(summary) {
                panic!("the process died while it performed {summary} (recording fake)");
            }
            if lock(&self.fail).remove(summary) {
                return Err(SystemError {
                    what: summary.clone(),
                    why: "injected by the test".into(),
                });
            }
        }
        let mut log = lock(&self.log);
        for action in batch {
            match action {
                Action::StartContainer { name, .. } | Action::RestartContainer { name, .. } => {
                    log.running.insert(name.clone());
                }
                Action::StopContainer { name, .. } => {
                    log.running.remove(name);
                }
                Action::ReloadBackupTimers { start, restart, .. } => {
                    for timer in start.iter().chain(restart) {
                        log.stopped_timers.remove(timer);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn health_check(
        &mut self,
        expect: &Health,
        running: &BTreeSet<String>,
        _progress: Progress<'_>,
    ) -> Result<(), SystemError> {
        let names: Vec<&str> = running.iter().map(String::as_str).collect();
        self.record(if names.is_empty() {
            "health check: nothing must run".to_string()
        } else {
            format!("health check: {} must run", names.join(", "))
        });
        let mut missing: Vec<String> = running
            .iter()
            .filter(|n| !self.running().contains(*n))
            .cloned()
            .collect();
        // A backup timer that is not active fails the check, as on a host.
        let stopped = lock(&self.log).stopped_timers.clone();
        missing.extend(
            expect
                .backups
                .keys()
                .map(|name| crate::layout::backup_timer(name))
                .filter(|t| stopped.contains(t)),
        );
        if missing.is_empty() {
            Ok(())
        } else {
            Err(SystemError {
                what: "health check".into(),
                why: format!("not running: {}", missing.join(", ")),
            })
        }
    }

    fn containers(
        &mut self,
        names: &BTreeSet<String>,
    ) -> Result<Option<BTreeMap<String, ContainerLive>>, SystemError> {
        let running = self.running();
        Ok(Some(
            names
                .iter()
                .filter(|n| running.contains(*n))
                .map(|n| {
                    (
                        n.clone(),
                        ContainerLive {
                            state: "running".into(),
                            unit: "active/running".into(),
                            since_usec: 1,
                            addresses: Vec::new(),
                            paused: lock(&self.log).paused.contains(n),
                        },
                    )
                })
                .collect(),
        ))
    }

    fn set_paused(&mut self, name: &str, paused: bool) -> Result<(), SystemError> {
        self.record(format!(
            "{} {name}",
            if paused { "pause" } else { "resume" }
        ));
        let mut log = lock(&self.log);
        if !log.running.contains(name) {
            return Err(SystemError {
                what: format!("container {name}"),
                why: "it is not running".into(),
            });
        }
        if paused {
            log.paused.insert(name.to_string());
        } else {
            log.paused.remove(name);
        }
        Ok(())
    }

    fn leader(&mut self, name: &str) -> Result<Option<u32>, SystemError> {
        let running = self.running();
        Ok(running
            .iter()
            .position(|n| n == name)
            .map(|i| 1000 + i as u32))
    }

    /// Every running container uses one second of CPU more at each
    /// sample, 64 MiB of memory of a 1 GiB limit, and a little I/O.
    fn stats(
        &mut self,
        names: &BTreeSet<String>,
    ) -> Result<Option<BTreeMap<String, super::stats::Stats>>, SystemError> {
        use super::stats::{Io, Memory, Network, Pids, Stats};
        let mut log = lock(&self.log);
        log.samples += 1;
        let n = log.samples;
        Ok(Some(
            names
                .iter()
                .filter(|name| log.running.contains(*name))
                .map(|name| {
                    let stats = Stats {
                        cpu_usec: Some(n * 1_000_000),
                        memory: Some(Memory {
                            current_bytes: 64 << 20,
                            peak_bytes: Some(80 << 20),
                            limit_bytes: Some(1 << 30),
                        }),
                        io: Some(Io {
                            read_bytes: 4096,
                            write_bytes: 8192,
                        }),
                        pids: Some(Pids {
                            current: 7,
                            limit: None,
                        }),
                        network: Some(Network {
                            rx_bytes: 5000,
                            tx_bytes: 3000,
                            rx_packets: 50,
                            tx_packets: 30,
                        }),
                        unavailable: Vec::new(),
                    };
                    (name.clone(), stats)
                })
                .collect(),
        ))
    }

    fn kill(&mut self, name: &str, signal: i32) -> Result<(), SystemError> {
        self.record(format!("kill {name} with signal {signal}"));
        Ok(())
    }

    /// Every address answers.
    fn answers_ping(&mut self, address: IpAddr) -> Result<Option<bool>, SystemError> {
        self.record(format!("ping {address}"));
        Ok(Some(true))
    }

    /// Every tunnel's link is there and up, with an MTU of 1450 and a
    /// little traffic, and reached through `eth0` (unless the test said
    /// it is missing).
    fn tunnels(
        &mut self,
        remotes: &BTreeMap<String, IpAddr>,
    ) -> Result<Option<BTreeMap<String, TunnelLive>>, SystemError> {
        let names: Vec<&str> = remotes.keys().map(String::as_str).collect();
        self.record(format!("tunnels: {}", names.join(", ")));
        let missing = lock(&self.missing_links).clone();
        Ok(Some(
            remotes
                .keys()
                .map(|name| {
                    let route_to_remote = Some(RouteTo {
                        device: Some("eth0".into()),
                        device_mtu: Some(1500),
                        gateway: None,
                        source: None,
                    });
                    let live = if missing.contains(name) {
                        TunnelLive {
                            oper_state: "missing".into(),
                            route_to_remote,
                            ..TunnelLive::default()
                        }
                    } else {
                        TunnelLive {
                            exists: true,
                            kind: Some("vxlan".into()),
                            up: true,
                            oper_state: "unknown".into(),
                            mtu: Some(1450),
                            addresses: Vec::new(),
                            counters: Some(Counters {
                                rx_bytes: 1000,
                                tx_bytes: 2000,
                                rx_packets: 10,
                                tx_packets: 20,
                                ..Counters::default()
                            }),
                            route_to_remote,
                        }
                    };
                    (name.clone(), live)
                })
                .collect(),
        ))
    }

    fn arm_revert(&mut self, deadline: u64) -> Result<(), SystemError> {
        let _ = deadline;
        self.record("arm revert".into());
        Ok(())
    }

    fn disarm_revert(&mut self) -> Result<(), SystemError> {
        self.record("disarm revert".into());
        Ok(())
    }

    fn purge_removed(&mut self, _progress: Progress<'_>) -> Vec<SystemError> {
        self.record("purge removed trees".into());
        Vec::new()
    }
}
