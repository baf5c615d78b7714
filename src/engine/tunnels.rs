//! `ctm tunnel status [NAME]`: each tunnel of the current generation, as
//! its host file says it should be and as the kernel has it (link state,
//! MTU, counters, the underlay's route to the remote endpoint), with what
//! looks wrong.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use super::events::Events;
use super::load::stored;
use super::refused::Refused;
use super::session::{Access, Session, Target};
use crate::backend::TunnelLive;
use crate::model::{Encapsulation, Tunnel, VxlanPeer};

/// The tunnels of a root.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tunnels {
    pub root: String,
    /// The generation the host is on; `None` before the first apply (then
    /// there are no tunnels).
    pub generation: Option<u64>,
    /// False on a files-only root: nothing is asked of the kernel.
    pub live_system: bool,
    /// Why some tunnels cannot be shown, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub tunnels: Vec<TunnelStatus>,
}

/// One tunnel: what the host file says, and what the kernel has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TunnelStatus {
    pub name: String,
    /// As networkd and the kernel name it: `gre`, `ip6gre`, `vxlan`.
    pub kind: &'static str,
    pub local: IpAddr,
    /// The peer, or for VXLAN with `group` the multicast group.
    pub remote: IpAddr,
    /// VXLAN only: the network identifier, the UDP port, the underlay
    /// device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The MTU the tunnel should have: the host file's `mtu`, or the one
    /// derived from the underlay's.
    pub expected_mtu: Option<u16>,
    pub addresses: Vec<String>,
    /// `None` on a files-only root.
    pub live: Option<TunnelLive>,
    /// What looks wrong, one sentence each (empty when all is well, or
    /// when nothing could be asked).
    pub problems: Vec<String>,
}

/// The tunnels of the current generation (only `name`, if given), with
/// their live state on the running system.
pub fn status(target: &Target, name: Option<&str>, events: Events<'_>) -> miette::Result<Tunnels> {
    let mut session = Session::open(target, Access::Read, events)?;
    let store = session.store.clone();
    let generation = store.current()?;
    let mut note = None;
    let host_tunnels: Vec<Tunnel> = match generation {
        Some(n) => {
            let outcome = stored(&store, n)?;
            match outcome.validated {
                Some(v) => v.host.tunnels.into_values().collect(),
                None => {
                    note = Some(format!(
                        "the host file stored with generation {n} no longer validates, so its tunnels are not shown"
                    ));
                    Vec::new()
                }
            }
        }
        None => Vec::new(),
    };
    let chosen: Vec<Tunnel> = match name {
        None => host_tunnels,
        Some(wanted) => {
            let names: Vec<String> = host_tunnels.iter().map(|t| t.name.to_string()).collect();
            match host_tunnels.into_iter().find(|t| t.name.as_str() == wanted) {
                Some(t) => vec![t],
                None => {
                    return Err(Refused::NoSuchTunnel {
                        name: wanted.to_string(),
                        generation,
                        help: if names.is_empty() {
                            "the generation has no tunnels".into()
                        } else {
                            format!("its tunnels: {}", names.join(", "))
                        },
                    }
                    .into());
                }
            }
        }
    };
    let remotes: BTreeMap<String, IpAddr> = chosen
        .iter()
        .map(|t| (t.name.to_string(), t.remote()))
        .collect();
    let live_system = session.system.is_live();
    let mut live = if remotes.is_empty() {
        None
    } else {
        session.system.tunnels(&remotes)?
    };
    let tunnels = chosen
        .iter()
        .map(|t| {
            let live = live.as_mut().and_then(|l| l.remove(t.name.as_str()));
            report(t, live)
        })
        .collect();
    Ok(Tunnels {
        root: target.root.display().to_string(),
        generation,
        live_system,
        note,
        tunnels,
    })
}

fn report(tunnel: &Tunnel, live: Option<TunnelLive>) -> TunnelStatus {
    let (id, port, device) = match &tunnel.encapsulation {
        Encapsulation::Gre { .. } => (None, None, None),
        Encapsulation::Vxlan {
            id, port, device, ..
        } => (
            Some(id.get()),
            Some(port.get()),
            device.as_ref().map(ToString::to_string),
        ),
    };
    let expected_mtu = tunnel.mtu.or(tunnel.derived_mtu()).map(|m| m.get());
    let addresses: Vec<String> = tunnel.addresses.iter().map(ToString::to_string).collect();
    let problems = live
        .as_ref()
        .map(|l| problems(tunnel, l, expected_mtu, &addresses))
        .unwrap_or_default();
    TunnelStatus {
        name: tunnel.name.to_string(),
        kind: tunnel.kind(),
        local: tunnel.local,
        remote: tunnel.remote(),
        id,
        port,
        device,
        expected_mtu,
        addresses,
        live,
        problems,
    }
}

/// What the kernel's view shows to be wrong. A pure function, so that
/// each finding is tested without a kernel.
pub fn problems(
    tunnel: &Tunnel,
    live: &TunnelLive,
    expected_mtu: Option<u16>,
    addresses: &[String],
) -> Vec<String> {
    let mut found = Vec::new();
    let remote = tunnel.remote();
    let multicast = matches!(
        tunnel.encapsulation,
        Encapsulation::Vxlan {
            peer: VxlanPeer::Group(_),
            ..
        }
    );
    if !live.exists {
        found.push(format!(
            "link {} is missing: the kernel or networkd did not make it (`ctm info` lists the kinds this kernel has; `networkctl status {}`)",
            tunnel.name, tunnel.name
        ));
    } else {
        if live.kind.as_deref().is_some_and(|k| k != tunnel.kind()) {
            found.push(format!(
                "link {} is a {}, not a {}: another link has the name",
                tunnel.name,
                live.kind.as_deref().unwrap_or("?"),
                tunnel.kind()
            ));
        }
        if !live.up || live.oper_state == "down" {
            found.push(format!(
                "link {} is down (`ip link set {} up`, or `networkctl reconfigure {}`)",
                tunnel.name, tunnel.name, tunnel.name
            ));
        }
        if let (Some(have), Some(want)) = (live.mtu, expected_mtu)
            && have != u32::from(want)
        {
            found.push(format!(
                "link {} has an MTU of {have}, not {want}",
                tunnel.name
            ));
        }
        for address in addresses {
            if !live.addresses.contains(address) {
                found.push(format!("link {} lacks its address {address}", tunnel.name));
            }
        }
    }
    if live.route_to_remote.is_none() && !multicast {
        found.push(format!(
            "no route to the remote endpoint {remote}: the underlay cannot reach it"
        ));
    }
    if let Some(route) = &live.route_to_remote
        && route.device.as_deref() == Some(tunnel.name.as_str())
    {
        found.push(format!(
            "the route to the remote endpoint {remote} goes through the tunnel itself"
        ));
    }
    found
}
