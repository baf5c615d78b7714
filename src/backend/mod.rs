//! The outside world, behind small traits: the running system
//! ([`System`]: systemd, networkd, nftables, machined).
//!
//! Under a root other than `/`, ctm manages files only: [`FilesOnly`]
//! performs no system action and says so, like `systemctl --root`, but
//! for volumes, which are directories under the root. On `/`,
//! [`live::LiveSystem`] drives the real thing: [`systemd`] (D-Bus),
//! [`netlink`], [`nft`] and [`exec`] (commands inside containers).

pub mod archive;
pub mod btrfs;
pub mod build;
pub mod cgroups;
pub mod exec;
pub mod git;
pub mod journal;
pub mod layers;
pub mod live;
pub mod netlink;
pub mod nft;
pub mod oci;
pub mod probe;
pub mod provision;
pub mod pty;
pub mod recording;
pub mod registry;
pub mod rootfs;
pub mod snapshots;
pub mod ssh;
pub mod stats;
pub mod systemd;
pub mod volumes;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::compile::health::Health;
use crate::plan::{Action, SystemState};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{what} failed: {why}")]
#[diagnostic(code(ctm::system))]
pub struct SystemError {
    pub what: String,
    pub why: String,
}

/// A container as the running system reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerLive {
    /// machined's state (`opening`, `running`, `closing`), or `stopped`
    /// when machined does not know the container.
    pub state: String,
    /// `systemd-nspawn@NAME.service`'s active and sub state
    /// (`active/running`, `failed/failed`, `inactive/dead`).
    pub unit: String,
    /// When the unit last became active, microseconds since the epoch
    /// (0: never).
    pub since_usec: u64,
    /// The addresses machined sees inside the container.
    pub addresses: Vec<IpAddr>,
    /// Its processes are frozen (`ctm pause`).
    pub paused: bool,
}

/// A link's counters (`IFLA_STATS64`), since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// The route the kernel takes to an address (`ip route get`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTo {
    /// The interface packets leave through.
    pub device: Option<String>,
    /// That interface's MTU: what the underlay carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_mtu: Option<u32>,
    /// The next hop, when it is not on a directly attached network.
    pub gateway: Option<IpAddr>,
    /// The source address the kernel picks.
    pub source: Option<IpAddr>,
}

/// A tunnel's link as the kernel reports it (`ctm tunnel status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelLive {
    /// The link exists; the rest is empty when it does not.
    pub exists: bool,
    /// As the kernel names it (`vxlan`, `gre`, `ip6gre`).
    pub kind: Option<String>,
    /// Administratively up.
    pub up: bool,
    /// The kernel's operational state (`up`, `down`, `unknown`…).
    pub oper_state: String,
    pub mtu: Option<u32>,
    /// Addresses with their prefix.
    pub addresses: Vec<String>,
    pub counters: Option<Counters>,
    /// How the underlay reaches the remote endpoint; `None`: no route.
    pub route_to_remote: Option<RouteTo>,
}

/// What one provisioning step of a container did in an apply; the new
/// generation keeps them (`provisioned.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub id: String,
    pub description: String,
    /// False when its check said it was done already.
    pub ran: bool,
    /// How long the check and the action took, in milliseconds.
    pub millis: u64,
    /// The end of what the action printed (empty when it did not run).
    pub output: String,
}

/// Where progress lines go (the terminal, the apply unit's log, the web UI).
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// The running system, as apply and plan need it.
pub trait System {
    /// Whether actions really happen (false for a files-only root).
    fn is_live(&self) -> bool;
    /// The live state that `expect` (the desired generation's
    /// expectations) is about.
    fn observe(&mut self, expect: &Health) -> Result<SystemState, SystemError>;
    /// Performs a batch of independent actions (see [`batches`]); the
    /// system may run them in parallel. The files of the generation being
    /// switched to, whose expectations are `expect`, are in place.
    fn perform(
        &mut self,
        batch: &[Action],
        expect: &Health,
        progress: Progress<'_>,
    ) -> Result<(), SystemError>;
    /// After all actions: is the system in the state `expect` describes,
    /// with the containers in `running` running and their checks passing?
    fn health_check(
        &mut self,
        expect: &Health,
        running: &BTreeSet<String>,
        progress: Progress<'_>,
    ) -> Result<(), SystemError>;
    /// The provisioning steps performed since the last call, by container.
    fn take_step_records(&mut self) -> BTreeMap<String, Vec<StepRecord>> {
        BTreeMap::new()
    }
    /// The named containers as the running system reports them (for
    /// `ctm status`); `None` on a files-only root.
    fn containers(
        &mut self,
        _names: &BTreeSet<String>,
    ) -> Result<Option<BTreeMap<String, ContainerLive>>, SystemError> {
        Ok(None)
    }
    /// The named tunnels' links, each with the route to its remote
    /// endpoint (`ctm tunnel status`); `None` on a files-only root.
    fn tunnels(
        &mut self,
        _remotes: &BTreeMap<String, IpAddr>,
    ) -> Result<Option<BTreeMap<String, TunnelLive>>, SystemError> {
        Ok(None)
    }
    /// Whether `address` answers an ICMP echo from this host (`ctm tunnel
    /// diagnose`); `None` on a files-only root.
    fn answers_ping(&mut self, _address: IpAddr) -> Result<Option<bool>, SystemError> {
        Ok(None)
    }
    /// Arms the revert of an apply that waits for `ctm confirm`: at
    /// `deadline` (Unix seconds) `ctm recover` runs, whether or not any
    /// ctm process is left. A files-only root has nothing to arm: the
    /// deadline is in ctm's state, and the next ctm command reverts.
    fn arm_revert(&mut self, _deadline: u64) -> Result<(), SystemError> {
        Ok(())
    }
    /// Disarms it (confirmed, or reverted already).
    fn disarm_revert(&mut self) -> Result<(), SystemError> {
        Ok(())
    }
    /// Runs the checks of the installed provisioning steps inside each of
    /// the named containers that runs (`--check-steps`); returns the
    /// containers with steps not done. `None` on a files-only root.
    fn undone_steps(
        &mut self,
        _names: &BTreeSet<String>,
        _progress: Progress<'_>,
    ) -> Result<Option<BTreeMap<String, Vec<String>>>, SystemError> {
        Ok(None)
    }
    /// What each of the named containers that runs uses now (`ctm stats`);
    /// `None` on a files-only root.
    fn stats(
        &mut self,
        _names: &BTreeSet<String>,
    ) -> Result<Option<BTreeMap<String, stats::Stats>>, SystemError> {
        Ok(None)
    }
    /// Freezes every process of a running container (`paused`), or thaws
    /// them.
    fn set_paused(&mut self, name: &str, _paused: bool) -> Result<(), SystemError> {
        Err(not_live(format!("pausing or resuming container {name}")))
    }
    /// Sends a signal to every process of a running container.
    fn kill(&mut self, name: &str, _signal: i32) -> Result<(), SystemError> {
        Err(not_live(format!("signalling container {name}")))
    }
    /// The process that leads a running container (its PID 1, as the host
    /// sees it), to enter it; `None` when it does not run.
    fn leader(&mut self, _name: &str) -> Result<Option<u32>, SystemError> {
        Ok(None)
    }
    /// Unmounts container `name`'s overlay root (under `root`), for a
    /// restore to replace its upper directory: its mount unit stopped on
    /// the running system, then whatever is mounted there still (a mount
    /// ctm made by hand for a snapshot) unmounted.
    fn unmount_root(&mut self, root: &std::path::Path, name: &str) -> Result<(), SystemError> {
        rootfs::unmount(&rootfs::tree(root, name))
    }
    /// Deletes the root file systems that [`Action::RemoveRootfs`] set
    /// aside, once nothing can roll back to them; returns what failed
    /// (the next purge tries again).
    fn purge_removed(&mut self, _progress: Progress<'_>) -> Vec<SystemError> {
        Vec::new()
    }
}

fn not_live(what: String) -> SystemError {
    SystemError {
        what,
        why: "this root is not the running system (files only)".into(),
    }
}

/// A root that is not the running system: files only, no actions but
/// the volumes' (directories under the root, made and kept like the
/// files).
#[derive(Debug)]
pub struct FilesOnly {
    root: std::path::PathBuf,
}

impl FilesOnly {
    pub fn new(root: &std::path::Path) -> FilesOnly {
        FilesOnly {
            root: root.to_path_buf(),
        }
    }
}

impl System for FilesOnly {
    fn is_live(&self) -> bool {
        false
    }

    fn observe(&mut self, _expect: &Health) -> Result<SystemState, SystemError> {
        Ok(SystemState::default())
    }

    fn perform(
        &mut self,
        batch: &[Action],
        _expect: &Health,
        progress: Progress<'_>,
    ) -> Result<(), SystemError> {
        batch.iter().try_for_each(|action| {
            injected_failure(action)?;
            volumes::perform(&self.root, action, progress).unwrap_or(Ok(()))
        })
    }

    fn purge_removed(&mut self, progress: Progress<'_>) -> Vec<SystemError> {
        volumes::purge(&self.root, progress)
    }

    fn health_check(
        &mut self,
        _expect: &Health,
        _running: &BTreeSet<String>,
        _progress: Progress<'_>,
    ) -> Result<(), SystemError> {
        match std::env::var("CTM_FAULT_HEALTH") {
            Ok(why) if cfg!(feature = "fault-injection") => Err(SystemError {
                what: "health check".into(),
                why,
            }),
            _ => Ok(()),
        }
    }
}

/// With fault injection compiled in, `CTM_FAULT_ACTION=SUMMARY` makes the
/// action with that summary fail, once, so tests can drive a rollback
/// through the real binary (and see the rollback's own actions succeed).
pub fn injected_failure(action: &Action) -> Result<(), SystemError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static FIRED: AtomicBool = AtomicBool::new(false);
    if cfg!(feature = "fault-injection")
        && let Ok(wanted) = std::env::var("CTM_FAULT_ACTION")
        && action.summary() == wanted
        && !FIRED.swap(true, Ordering::SeqCst)
    {
        return Err(SystemError {
            what: action.summary(),
            why: "injected failure (CTM_FAULT_ACTION)".into(),
        });
    }
    Ok(())
}
