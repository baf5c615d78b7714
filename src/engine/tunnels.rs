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
    /// The bytes the kernel adds to each of its packets on the underlay.
    pub overhead: u16,
    pub addresses: Vec<String>,
    /// `None` on a files-only root.
    pub live: Option<TunnelLive>,
    /// What looks wrong, one sentence each (empty when all is well, or
    /// when nothing could be asked).
    pub problems: Vec<String>,
}

/// The tunnels of the current generation (only `name`, if given), with
/// their live state on the running system. `access` is `Read` for the
/// command line, `ReadShared` for the web server's requests.
pub fn status(
    target: &Target,
    name: Option<&str>,
    access: Access,
    events: Events<'_>,
) -> miette::Result<Tunnels> {
    let mut session = Session::open(target, access, events)?;
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
        overhead: tunnel.overhead(),
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

/// One cause `ctm tunnel diagnose` found, with what shows it and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub cause: String,
    pub evidence: String,
    pub fix: String,
    /// An apply of the current generation repairs it (`--fix`).
    pub fixed_by_apply: bool,
}

/// A tunnel, and why it does not carry traffic (nothing found: it looks
/// right from this end).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    pub tunnel: TunnelStatus,
    /// Whether the kernel can make links of the tunnel's kind at all.
    pub kernel_has_kind: Option<bool>,
    /// Whether the remote endpoint answered ping over the underlay; `None`
    /// when it was not asked (a multicast group, or a files-only root).
    pub remote_answers: Option<bool>,
    pub findings: Vec<Finding>,
}

impl Diagnosis {
    pub fn fixable(&self) -> bool {
        self.findings.iter().any(|f| f.fixed_by_apply)
    }
}

/// `ctm tunnel diagnose NAME`: the tunnel's status, then what the kernel
/// says of its kind and whether the remote endpoint answers, each cause
/// with the evidence and the fix. Needs the running system.
pub fn diagnose(
    target: &Target,
    name: &str,
    access: Access,
    events: Events<'_>,
) -> miette::Result<Diagnosis> {
    let mut found = status(target, Some(name), access, events)?;
    if !found.live_system {
        return Err(Refused::FilesOnly {
            root: found.root,
            verb: "diagnose a tunnel of",
        }
        .into());
    }
    let Some(tunnel) = found.tunnels.pop() else {
        return Err(miette::miette!(
            "tunnel {name} is not in the current generation"
        ));
    };
    let mut session = Session::open(target, access, events)?;
    let expect = crate::compile::health::Health {
        links: [(
            tunnel.name.clone(),
            crate::compile::health::LinkHealth {
                kind: tunnel.kind.to_string(),
                addresses: tunnel.addresses.clone(),
            },
        )]
        .into(),
        ..Default::default()
    };
    let kernel_has_kind = session
        .system
        .observe(&expect)?
        .link_kinds
        .and_then(|kinds| kinds.get(tunnel.kind).cloned())
        .and_then(|support| match support {
            crate::plan::KindSupport::Supported => Some(true),
            crate::plan::KindSupport::Unsupported { .. } => Some(false),
            crate::plan::KindSupport::Unknown { .. } => None,
        });
    let multicast = tunnel.remote.is_multicast();
    let remote_answers = if multicast {
        None
    } else {
        session.system.answers_ping(tunnel.remote)?
    };
    let findings = findings(&tunnel, kernel_has_kind, remote_answers);
    Ok(Diagnosis {
        tunnel,
        kernel_has_kind,
        remote_answers,
        findings,
    })
}

/// The causes in what was gathered. A pure function, tested without a
/// kernel.
pub fn findings(
    tunnel: &TunnelStatus,
    kernel_has_kind: Option<bool>,
    remote_answers: Option<bool>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let name = &tunnel.name;
    let kind = tunnel.kind;
    let Some(live) = &tunnel.live else {
        return out;
    };
    let finding = |cause: String, evidence: String, fix: String, fixed_by_apply: bool| Finding {
        cause,
        evidence,
        fix,
        fixed_by_apply,
    };
    if !live.exists {
        if kernel_has_kind == Some(false) {
            out.push(finding(
                format!("this kernel cannot make {kind} links"),
                format!("link {name} does not exist, and the kernel refused a test link of kind {kind}"),
                format!("use a kind of tunnel this kernel has (`ctm info` lists them), or a kernel with {kind} support"),
                false,
            ));
        } else {
            out.push(finding(
                format!("link {name} is missing"),
                format!("the kernel has no link called {name}"),
                "`ctm tunnel diagnose --fix` applies the current generation again, which makes it"
                    .into(),
                true,
            ));
        }
        return out;
    }
    if live.kind.as_deref().is_some_and(|k| k != kind) {
        out.push(finding(
            format!("link {name} is not a {kind} link"),
            format!(
                "the kernel says it is a {}",
                live.kind.as_deref().unwrap_or("?")
            ),
            format!("another link took the name: delete it (`ip link del {name}`) and apply again"),
            false,
        ));
    }
    if !live.up {
        out.push(finding(
            format!("link {name} is down"),
            format!("its state is {} and it is not set up", live.oper_state),
            "`ctm tunnel diagnose --fix` applies the current generation again, which sets it up"
                .into(),
            true,
        ));
    }
    let lacking: Vec<&String> = tunnel
        .addresses
        .iter()
        .filter(|a| !live.addresses.contains(a))
        .collect();
    if !lacking.is_empty() {
        out.push(finding(
            format!("link {name} lacks its addresses"),
            format!(
                "it has {}; the host file gives {}",
                if live.addresses.is_empty() {
                    "none".to_string()
                } else {
                    live.addresses.join(", ")
                },
                tunnel.addresses.join(", ")
            ),
            "`ctm tunnel diagnose --fix` applies the current generation again, which configures them".into(),
            true,
        ));
    }
    if let (Some(mtu), Some(route)) = (live.mtu, &live.route_to_remote)
        && let Some(carried) = route.device_mtu
    {
        let per_packet = u32::from(tunnel.overhead);
        if mtu + per_packet > carried {
            out.push(finding(
                format!("the MTU of {name} is too large for the underlay"),
                format!(
                    "a packet of {mtu} bytes becomes {} on {}, which carries {carried}: larger ones are dropped or fragmented",
                    mtu + per_packet,
                    route.device.as_deref().unwrap_or("the underlay")
                ),
                format!(
                    "give the tunnel `mtu {}` (or `underlay-mtu {carried}`, and ctm derives it) in the host file, and apply",
                    carried.saturating_sub(per_packet)
                ),
                false,
            ));
        }
    }
    if let (Some(have), Some(want)) = (live.mtu, tunnel.expected_mtu)
        && have != u32::from(want)
    {
        out.push(finding(
            format!("link {name} has another MTU than the host file's"),
            format!("the kernel says {have}, the host file {want}"),
            format!(
                "networkd sets a tunnel's MTU only when it makes the link: delete it (`ip link del {name}`) and `ctm tunnel diagnose --fix`"
            ),
            false,
        ));
    }
    let remote = tunnel.remote;
    match &live.route_to_remote {
        None if !remote.is_multicast() => out.push(finding(
            format!("the underlay has no route to {remote}"),
            format!("the kernel finds no route to the remote endpoint {remote}"),
            format!(
                "check `remote` in the host file; give the host a route to {remote} (or an address on its network)"
            ),
            false,
        )),
        Some(route) if route.device.as_deref() == Some(name.as_str()) => out.push(finding(
            format!("the route to {remote} goes through {name} itself"),
            "packets for the remote endpoint would be put in the tunnel they carry".into(),
            format!("route {remote} through the underlay: the tunnel's addresses must not cover it"),
            false,
        )),
        _ => {}
    }
    if remote_answers == Some(false) {
        let traffic = match (tunnel.kind, tunnel.port) {
            ("vxlan", Some(port)) => format!("UDP port {port}"),
            _ => "GRE (IP protocol 47)".to_string(),
        };
        out.push(finding(
            format!("the remote endpoint {remote} does not answer"),
            format!("three pings to {remote} over the underlay got no answer"),
            format!(
                "check `remote` in the host file, that the peer is up, and that its firewall lets ICMP and {traffic} in"
            ),
            false,
        ));
    }
    if let Some(c) = &live.counters
        && c.tx_packets > 0
        && c.rx_packets == 0
    {
        let must_match = match (tunnel.id, tunnel.port) {
            (Some(id), Some(port)) => {
                format!("its `id` ({id}) and `port` ({port}) must be this end's")
            }
            _ => "its `local` and `remote` must mirror this end's".to_string(),
        };
        out.push(finding(
            "nothing comes back through the tunnel".into(),
            format!("{name} has sent {} packets and received none", c.tx_packets),
            format!("check the peer's tunnel: {must_match}, and it must be up"),
            false,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Counters, RouteTo};

    /// vx42 as it looks when it works: up, addressed, routed via eth0.
    fn healthy() -> TunnelStatus {
        TunnelStatus {
            name: "vx42".into(),
            kind: "vxlan",
            local: "10.99.0.1".parse().unwrap(),
            remote: "10.99.0.2".parse().unwrap(),
            id: Some(42),
            port: Some(4789),
            device: None,
            expected_mtu: Some(1450),
            overhead: 50,
            addresses: vec!["172.16.42.0/31".into()],
            live: Some(TunnelLive {
                exists: true,
                kind: Some("vxlan".into()),
                up: true,
                oper_state: "unknown".into(),
                mtu: Some(1450),
                addresses: vec!["172.16.42.0/31".into()],
                counters: Some(Counters {
                    rx_packets: 5,
                    tx_packets: 5,
                    ..Counters::default()
                }),
                route_to_remote: Some(RouteTo {
                    device: Some("eth0".into()),
                    device_mtu: Some(1500),
                    gateway: None,
                    source: None,
                }),
            }),
            problems: Vec::new(),
        }
    }

    fn causes(t: &TunnelStatus, kernel: Option<bool>, answers: Option<bool>) -> Vec<String> {
        findings(t, kernel, answers)
            .into_iter()
            .map(|f| {
                format!(
                    "{}{}",
                    f.cause,
                    if f.fixed_by_apply { " [fix]" } else { "" }
                )
            })
            .collect()
    }

    fn live(t: &mut TunnelStatus) -> &mut TunnelLive {
        t.live.as_mut().unwrap()
    }

    #[test]
    fn a_working_tunnel_has_no_findings() {
        assert!(causes(&healthy(), Some(true), Some(true)).is_empty());
    }

    #[test]
    fn a_missing_link_is_the_kernels_lack_of_the_kind_or_fixed_by_an_apply() {
        let mut t = healthy();
        *live(&mut t) = TunnelLive {
            oper_state: "missing".into(),
            ..TunnelLive::default()
        };
        assert_eq!(
            causes(&t, Some(false), Some(true)),
            ["this kernel cannot make vxlan links"]
        );
        assert_eq!(
            causes(&t, Some(true), Some(true)),
            ["link vx42 is missing [fix]"]
        );
    }

    #[test]
    fn a_link_down_and_without_its_address_is_fixed_by_an_apply() {
        let mut t = healthy();
        live(&mut t).up = false;
        live(&mut t).addresses.clear();
        assert_eq!(
            causes(&t, Some(true), Some(true)),
            [
                "link vx42 is down [fix]",
                "link vx42 lacks its addresses [fix]"
            ]
        );
    }

    #[test]
    fn an_mtu_the_underlay_cannot_carry_names_the_mtu_that_fits() {
        let mut t = healthy();
        live(&mut t).route_to_remote.as_mut().unwrap().device_mtu = Some(1400);
        let found = findings(&t, Some(true), Some(true));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].cause,
            "the MTU of vx42 is too large for the underlay"
        );
        assert!(
            found[0].fix.starts_with("give the tunnel `mtu 1350`"),
            "{found:?}"
        );
    }

    #[test]
    fn an_unanswered_remote_and_silence_in_the_counters_point_at_the_peer() {
        let mut t = healthy();
        live(&mut t).counters.as_mut().unwrap().rx_packets = 0;
        let found = findings(&t, Some(true), Some(false));
        let causes: Vec<&str> = found.iter().map(|f| f.cause.as_str()).collect();
        assert_eq!(
            causes,
            [
                "the remote endpoint 10.99.0.2 does not answer",
                "nothing comes back through the tunnel"
            ]
        );
        assert!(found[0].fix.contains("UDP port 4789"), "{found:?}");
        assert!(
            found[1].fix.contains("`id` (42) and `port` (4789)"),
            "{found:?}"
        );
    }

    #[test]
    fn a_gre_tunnel_is_diagnosed_by_the_same_rules_with_its_own_fixes() {
        let mut t = healthy();
        t.name = "site-b".into();
        t.kind = "gre";
        t.id = None;
        t.port = None;
        t.overhead = 24;
        t.expected_mtu = Some(1476);
        {
            let live = live(&mut t);
            live.kind = Some("gre".into());
            live.mtu = Some(1476);
            live.counters.as_mut().unwrap().rx_packets = 0;
            live.route_to_remote.as_mut().unwrap().device_mtu = Some(1400);
        }
        let found = findings(&t, Some(true), Some(false));
        let found_causes: Vec<&str> = found.iter().map(|f| f.cause.as_str()).collect();
        assert_eq!(
            found_causes,
            [
                "the MTU of site-b is too large for the underlay",
                "the remote endpoint 10.99.0.2 does not answer",
                "nothing comes back through the tunnel"
            ]
        );
        assert!(found[0].fix.contains("`mtu 1376`"), "{found:?}");
        assert!(found[1].fix.contains("GRE (IP protocol 47)"), "{found:?}");
        assert!(
            found[2].fix.contains("`local` and `remote` must mirror"),
            "{found:?}"
        );
        // A kernel without GRE: the link is missing for that reason.
        *live(&mut t) = TunnelLive::default();
        assert_eq!(
            causes(&t, Some(false), None),
            ["this kernel cannot make gre links"]
        );
    }

    #[test]
    fn a_route_to_the_remote_through_the_tunnel_itself_is_found() {
        let mut t = healthy();
        live(&mut t).route_to_remote.as_mut().unwrap().device = Some("vx42".into());
        assert_eq!(
            causes(&t, Some(true), Some(true)),
            ["the route to 10.99.0.2 goes through vx42 itself"]
        );
        live(&mut t).route_to_remote = None;
        assert_eq!(
            causes(&t, Some(true), Some(true)),
            ["the underlay has no route to 10.99.0.2"]
        );
    }
}
