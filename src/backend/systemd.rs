//! systemd, machined and networkd over D-Bus (zbus).
//!
//! Only methods and properties that systemd 252 (Debian 12) has are used.
//! Every job is waited for through `JobRemoved`, with a time limit, and
//! its result is reported: a start whose job ends `failed` is an error
//! that names the unit, never a silent success.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt as _;
use zbus::{Connection, OwnedObjectPath, Variant, proxy};

use super::SystemError;

#[proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;
    fn reload(&self) -> zbus::Result<()>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;
    // The cgroup freezer, through systemd so that it knows (246 and later).
    fn freeze_unit(&self, name: &str) -> zbus::Result<()>;
    fn thaw_unit(&self, name: &str) -> zbus::Result<()>;
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, Variant<'_>)],
        aux: &[(&str, Vec<(&str, Variant<'_>)>)],
    ) -> zbus::Result<OwnedObjectPath>;

    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;

    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> zbus::Result<String>;
}

#[proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Unit {
    #[zbus(property(emits_changed_signal = "false"))]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property(emits_changed_signal = "false"))]
    fn sub_state(&self) -> zbus::Result<String>;
    #[zbus(property(emits_changed_signal = "false"))]
    fn load_state(&self) -> zbus::Result<String>;
    #[zbus(property(emits_changed_signal = "false"))]
    fn active_enter_timestamp(&self) -> zbus::Result<u64>;
    #[zbus(property(emits_changed_signal = "false"))]
    fn unit_file_state(&self) -> zbus::Result<String>;
    /// `running`, `freezing`, `frozen` or `thawing`.
    #[zbus(property(emits_changed_signal = "false"))]
    fn freezer_state(&self) -> zbus::Result<String>;
}

/// A timer unit's own properties.
#[proxy(
    interface = "org.freedesktop.systemd1.Timer",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Timer {
    /// When it last elapsed, microseconds since the epoch; 0: never.
    #[zbus(property(emits_changed_signal = "false"), name = "LastTriggerUSec")]
    fn last_trigger_usec(&self) -> zbus::Result<u64>;
}

/// A service unit's own properties.
#[proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Service {
    /// How its last run ended: `success`, `exit-code`, `signal`…
    #[zbus(property(emits_changed_signal = "false"))]
    fn result(&self) -> zbus::Result<String>;
}

#[proxy(
    interface = "org.freedesktop.machine1.Manager",
    default_service = "org.freedesktop.machine1",
    default_path = "/org/freedesktop/machine1"
)]
pub trait Machines {
    fn list_machines(&self) -> zbus::Result<Vec<(String, String, String, OwnedObjectPath)>>;
    fn get_machine_addresses(&self, name: &str) -> zbus::Result<Vec<(i32, Vec<u8>)>>;
    fn kill_machine(&self, name: &str, who: &str, signal: i32) -> zbus::Result<()>;
}

#[proxy(
    interface = "org.freedesktop.machine1.Machine",
    default_service = "org.freedesktop.machine1"
)]
pub trait Machine {
    #[zbus(property(emits_changed_signal = "false"))]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property(emits_changed_signal = "false"))]
    fn leader(&self) -> zbus::Result<u32>;
}

#[proxy(
    interface = "org.freedesktop.network1.Manager",
    default_service = "org.freedesktop.network1",
    default_path = "/org/freedesktop/network1"
)]
pub trait Network {
    // Never activated through D-Bus: Debian has no activatable
    // networkd unless it is enabled; ctm starts the service itself.
    #[zbus(no_autostart)]
    fn reload(&self) -> zbus::Result<()>;
    #[zbus(no_autostart)]
    fn reconfigure_link(&self, ifindex: i32) -> zbus::Result<()>;
    #[zbus(no_autostart)]
    fn list_links(&self) -> zbus::Result<Vec<(i32, String, OwnedObjectPath)>>;
}

#[proxy(
    interface = "org.freedesktop.network1.Link",
    default_service = "org.freedesktop.network1"
)]
pub trait NetworkLink {
    #[zbus(property(emits_changed_signal = "false"))]
    fn administrative_state(&self) -> zbus::Result<String>;
    #[zbus(property(emits_changed_signal = "false"))]
    fn operational_state(&self) -> zbus::Result<String>;
}

fn bus_error(what: impl Into<String>, e: zbus::Error) -> SystemError {
    SystemError {
        what: what.into(),
        why: match e {
            zbus::Error::MethodError(name, Some(message), _) => format!("{message} ({name})"),
            other => other.to_string(),
        },
    }
}

/// What a job for a unit is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
        }
    }
}

/// A unit as `ctm status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    pub active: String,
    pub sub: String,
    /// Microseconds since the epoch; 0 if never active.
    pub active_since: u64,
    /// `enabled`, `disabled`, `static`, … as systemd reports it.
    pub file_state: String,
    /// The cgroup freezer: `running`, `freezing`, `frozen`, `thawing`.
    pub freezer: String,
}

/// A running (or starting, or closing) machine registered with machined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    /// `opening`, `running` or `closing`.
    pub state: String,
    pub leader: u32,
}

pub struct Systemd {
    connection: Connection,
    manager: ManagerProxy<'static>,
}

impl Systemd {
    pub async fn connect() -> Result<Systemd, SystemError> {
        let connection = Connection::system().await.map_err(|e| SystemError {
            what: "connecting to the system D-Bus".into(),
            why: format!("{e}; ctm needs systemd as the init system and a running D-Bus"),
        })?;
        let manager = ManagerProxy::new(&connection)
            .await
            .map_err(|e| bus_error("talking to systemd", e))?;
        // Without a subscription systemd sends no JobRemoved signals.
        manager
            .subscribe()
            .await
            .map_err(|e| bus_error("subscribing to systemd's job signals", e))?;
        Ok(Systemd {
            connection,
            manager,
        })
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// systemd's version number (`252` of `252.39-1~deb12u2`).
    pub async fn version(&self) -> Result<(u32, String), SystemError> {
        let text = self
            .manager
            .version()
            .await
            .map_err(|e| bus_error("asking systemd for its version", e))?;
        let number = text
            .trim_start_matches('v')
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| SystemError {
                what: "reading systemd's version".into(),
                why: format!("cannot read a version number in {text:?}"),
            })?;
        Ok((number, text))
    }

    pub async fn daemon_reload(&self) -> Result<(), SystemError> {
        self.manager
            .reload()
            .await
            .map_err(|e| bus_error("reloading systemd's unit files", e))
    }

    /// Runs one job per unit, all at once, and waits for every one of them
    /// to finish (or `timeout`). Returns the units whose job did not end
    /// `done`, with the result systemd gave (`failed`, `timeout`, …).
    pub async fn jobs(
        &self,
        verb: Verb,
        units: &[String],
        timeout: Duration,
    ) -> Result<Vec<(String, String)>, SystemError> {
        // Listen before queueing, so that no JobRemoved can be missed, and
        // keep reading while the jobs are queued: the connection delivers
        // signals and method replies in order through bounded queues, so
        // unread signals (each start ends several jobs) would hold back the
        // reply to the next StartUnit for ever. Seen with 20 containers:
        // the tenth start never returned.
        let mut removed = self
            .manager
            .receive_job_removed()
            .await
            .map_err(|e| bus_error("listening for systemd's job signals", e))?;
        let (ended, mut endings) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
        let reader = tokio::spawn(async move {
            while let Some(signal) = removed.next().await {
                let Ok(args) = signal.args() else { continue };
                if ended
                    .send((args.job.as_str().to_string(), args.result.clone()))
                    .is_err()
                {
                    break;
                }
            }
        });
        let waited = self
            .queue_and_wait(verb, units, timeout, &mut endings)
            .await;
        reader.abort();
        waited
    }

    async fn queue_and_wait(
        &self,
        verb: Verb,
        units: &[String],
        timeout: Duration,
        endings: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    ) -> Result<Vec<(String, String)>, SystemError> {
        let mut waiting: BTreeMap<String, String> = BTreeMap::new();
        for unit in units {
            let job = match verb {
                Verb::Start => self.manager.start_unit(unit, "replace").await,
                Verb::Stop => self.manager.stop_unit(unit, "replace").await,
                Verb::Restart => self.manager.restart_unit(unit, "replace").await,
            }
            .map_err(|e| bus_error(format!("{} {unit}", verb.as_str()), e))?;
            waiting.insert(job.as_str().to_string(), unit.clone());
        }
        let mut failed = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while !waiting.is_empty() {
            let Ok(Some((job, result))) = tokio::time::timeout_at(deadline, endings.recv()).await
            else {
                let units: Vec<&str> = waiting.values().map(String::as_str).collect();
                return Err(SystemError {
                    what: format!("{} {}", verb.as_str(), units.join(", ")),
                    why: format!("the job did not finish within {} s", timeout.as_secs()),
                });
            };
            if let Some(unit) = waiting.remove(&job)
                && result != "done"
            {
                failed.push((unit, result));
            }
        }
        Ok(failed)
    }

    async fn unit(&self, name: &str) -> Result<UnitProxy<'static>, SystemError> {
        let path = self
            .manager
            .load_unit(name)
            .await
            .map_err(|e| bus_error(format!("loading unit {name}"), e))?;
        UnitProxy::builder(&self.connection)
            .path(path)
            .build()
            .await
            .map_err(|e| bus_error(format!("unit {name}"), e))
    }

    pub async fn unit_state(&self, name: &str) -> Result<UnitState, SystemError> {
        let unit = self.unit(name).await?;
        let what = || format!("reading the state of {name}");
        Ok(UnitState {
            active: unit
                .active_state()
                .await
                .map_err(|e| bus_error(what(), e))?,
            sub: unit.sub_state().await.map_err(|e| bus_error(what(), e))?,
            active_since: unit
                .active_enter_timestamp()
                .await
                .map_err(|e| bus_error(what(), e))?,
            file_state: unit
                .unit_file_state()
                .await
                .map_err(|e| bus_error(what(), e))?,
            // Not known to a systemd without the freezer (before 246).
            freezer: unit
                .freezer_state()
                .await
                .unwrap_or_else(|_| "running".into()),
        })
    }

    /// A timer: whether it is active, when it last elapsed and how the
    /// last run of `service`, the unit it starts, ended.
    pub async fn timer_state(
        &self,
        timer: &str,
        service: &str,
    ) -> Result<(bool, crate::plan::TimerRun), SystemError> {
        let active = self.unit_state(timer).await?.active == "active";
        let what = |unit: &str| format!("reading the state of {unit}");
        let path = |unit: &str| {
            let unit = unit.to_string();
            async move {
                self.manager
                    .load_unit(&unit)
                    .await
                    .map_err(|e| bus_error(format!("loading unit {unit}"), e))
            }
        };
        let proxy = TimerProxy::builder(&self.connection)
            .path(path(timer).await?)
            .build()
            .await
            .map_err(|e| bus_error(what(timer), e))?;
        // A timer whose unit is not loaded (no file) has no such property.
        let last_trigger_usec = proxy.last_trigger_usec().await.unwrap_or(0);
        let proxy = ServiceProxy::builder(&self.connection)
            .path(path(service).await?)
            .build()
            .await
            .map_err(|e| bus_error(what(service), e))?;
        let result = proxy.result().await.unwrap_or_else(|_| "success".into());
        Ok((
            active,
            crate::plan::TimerRun {
                result,
                last_trigger_usec,
            },
        ))
    }

    /// Freezes every process of a unit (the cgroup freezer).
    pub async fn freeze(&self, name: &str) -> Result<(), SystemError> {
        self.manager
            .freeze_unit(name)
            .await
            .map_err(|e| bus_error(format!("pausing {name}"), e))
    }

    /// Thaws a frozen unit.
    pub async fn thaw(&self, name: &str) -> Result<(), SystemError> {
        self.manager
            .thaw_unit(name)
            .await
            .map_err(|e| bus_error(format!("resuming {name}"), e))
    }

    pub async fn reset_failed(&self, name: &str) {
        // Only clears a leftover `failed` state; nothing to report if there is none.
        let _ = self.manager.reset_failed_unit(name).await;
    }

    /// Starts a transient unit (like `systemd-run`) and returns its job.
    pub async fn start_transient(
        &self,
        name: &str,
        properties: &[(&str, Variant<'_>)],
        aux: &[(&str, Vec<(&str, Variant<'_>)>)],
    ) -> Result<OwnedObjectPath, SystemError> {
        self.manager
            .start_transient_unit(name, "fail", properties, aux)
            .await
            .map_err(|e| bus_error(format!("starting transient unit {name}"), e))
    }

    pub async fn stop(&self, name: &str) -> Result<(), SystemError> {
        self.manager
            .stop_unit(name, "replace")
            .await
            .map(|_| ())
            .map_err(|e| bus_error(format!("stop {name}"), e))
    }

    /// The job-removed stream, for callers that wait on their own jobs.
    pub async fn job_signals(&self) -> Result<JobRemovedStream, SystemError> {
        self.manager
            .receive_job_removed()
            .await
            .map_err(|e| bus_error("listening for systemd's job signals", e))
    }

    // ---- machined -----------------------------------------------------------

    /// Every registered container, by machine name.
    pub async fn machines(&self) -> Result<BTreeMap<String, MachineInfo>, SystemError> {
        let manager = MachinesProxy::new(&self.connection)
            .await
            .map_err(|e| bus_error("talking to systemd-machined", e))?;
        let list = manager
            .list_machines()
            .await
            .map_err(|e| bus_error("listing machines (systemd-machined)", e))?;
        let mut out = BTreeMap::new();
        for (name, class, _service, path) in list {
            if class != "container" {
                continue;
            }
            let machine = MachineProxy::builder(&self.connection)
                .path(path)
                .build()
                .await
                .map_err(|e| bus_error(format!("machine {name}"), e))?;
            // A machine that goes away while being listed is simply absent.
            let (Ok(state), Ok(leader)) = (machine.state().await, machine.leader().await) else {
                continue;
            };
            out.insert(name, MachineInfo { state, leader });
        }
        Ok(out)
    }

    /// Sends `signal` to every process of a container (machined's
    /// `KillMachine`, as `machinectl kill`).
    pub async fn kill_machine(&self, name: &str, signal: i32) -> Result<(), SystemError> {
        let manager = MachinesProxy::new(&self.connection)
            .await
            .map_err(|e| bus_error("talking to systemd-machined", e))?;
        manager
            .kill_machine(name, "all", signal)
            .await
            .map_err(|e| bus_error(format!("sending signal {signal} to machine {name}"), e))
    }

    /// The addresses machined sees inside a running container.
    pub async fn machine_addresses(
        &self,
        name: &str,
    ) -> Result<Vec<std::net::IpAddr>, SystemError> {
        let manager = MachinesProxy::new(&self.connection)
            .await
            .map_err(|e| bus_error("talking to systemd-machined", e))?;
        let raw = manager
            .get_machine_addresses(name)
            .await
            .map_err(|e| bus_error(format!("reading the addresses of machine {name}"), e))?;
        Ok(raw
            .into_iter()
            .filter_map(|(_, bytes)| match bytes.len() {
                4 => <[u8; 4]>::try_from(bytes.as_slice())
                    .ok()
                    .map(std::net::IpAddr::from),
                16 => <[u8; 16]>::try_from(bytes.as_slice())
                    .ok()
                    .map(std::net::IpAddr::from),
                _ => None,
            })
            .collect())
    }

    /// Waits until a service owns its bus name: a unit's start job can end
    /// (READY=1) a moment before the service has taken its name.
    pub async fn wait_for_name(&self, name: &str, timeout: Duration) -> Result<(), SystemError> {
        let bus = zbus::fdo::DBusProxy::new(&self.connection)
            .await
            .map_err(|e| bus_error("talking to the D-Bus daemon", e))?;
        let bus_name = zbus::names::BusName::try_from(name)
            .map_err(|e| bus_error(format!("bus name {name}"), e))?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let owned = bus
                .name_has_owner(bus_name.clone())
                .await
                .map_err(|e| bus_error(format!("asking whether {name} is on the bus"), e.into()))?;
            if owned {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SystemError {
                    what: format!("waiting for {name} on the system bus"),
                    why: format!("nobody took the name within {} s", timeout.as_secs()),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // ---- networkd -----------------------------------------------------------

    async fn networkd(&self) -> Result<NetworkProxy<'static>, SystemError> {
        NetworkProxy::new(&self.connection)
            .await
            .map_err(|e| bus_error("talking to systemd-networkd", e))
    }

    /// Re-reads `.network` and `.netdev` files; creates new netdevs and
    /// reconfigures links whose `.network` changed.
    pub async fn networkd_reload(&self) -> Result<(), SystemError> {
        self.networkd()
            .await?
            .reload()
            .await
            .map_err(|e| bus_error("reloading systemd-networkd", e))
    }

    pub async fn networkd_reconfigure(&self, ifindex: i32, name: &str) -> Result<(), SystemError> {
        self.networkd()
            .await?
            .reconfigure_link(ifindex)
            .await
            .map_err(|e| bus_error(format!("reconfiguring link {name}"), e))
    }

    /// Link name → networkd's administrative state (`configured`,
    /// `configuring`, `failed`, `unmanaged`, …), for the named links that
    /// exist.
    pub async fn networkd_states(
        &self,
        names: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, String>, SystemError> {
        let links = self
            .networkd()
            .await?
            .list_links()
            .await
            .map_err(|e| bus_error("listing systemd-networkd's links", e))?;
        let mut out = BTreeMap::new();
        for (_, name, path) in links {
            if !names.contains(&name) {
                continue;
            }
            let link = NetworkLinkProxy::builder(&self.connection)
                .path(path)
                .build()
                .await
                .map_err(|e| bus_error(format!("link {name}"), e))?;
            if let Ok(state) = link.administrative_state().await {
                out.insert(name, state);
            }
        }
        Ok(out)
    }
}

/// `ExecStart=` as a transient unit property: `a(sasb)`.
pub fn exec_start(argv: &[String]) -> Variant<'static> {
    let path = argv.first().cloned().unwrap_or_default();
    Variant::from(vec![(path, argv.to_vec(), false)])
}

/// `Environment=` as a transient unit property: `as`.
pub fn environment(vars: &[(String, String)]) -> Variant<'static> {
    Variant::from(
        vars.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>(),
    )
}

/// An owned string variant.
pub fn text(s: &str) -> Variant<'static> {
    Variant::from(s.to_string())
}
