//! Links and addresses through rtnetlink: what bridges and tunnels exist
//! and which addresses they hold (for health checks, drift and status),
//! deleting a link whose `.netdev` changed, since networkd never changes
//! an existing netdev, and which kinds of link the kernel can make.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use futures_util::TryStreamExt as _;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{LinkAttribute, State};
use rtnetlink::Handle;

use super::{Counters, RouteTo, SystemError};
use crate::plan::KindSupport;

/// One link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    pub index: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// The kernel's operational state, lower-case (`up`, `down`, `unknown`…).
    pub oper_state: String,
    /// Addresses with their prefix, as `10.42.0.1/24` and `fd42:42::1/64`.
    pub addresses: BTreeSet<String>,
    /// Its kind (`IFLA_INFO_KIND`: `bridge`, `vxlan`…), if it has one.
    pub kind: Option<String>,
    pub mtu: Option<u32>,
    pub counters: Option<Counters>,
}

fn netlink_error(what: impl Into<String>, e: impl std::fmt::Display) -> SystemError {
    SystemError {
        what: what.into(),
        why: e.to_string(),
    }
}

pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a netlink socket in this process's network namespace. Must be
    /// called inside a tokio runtime, which drives the connection.
    pub fn connect() -> Result<Netlink, SystemError> {
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|e| netlink_error("opening a netlink socket", e))?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// The named links that exist, with their addresses.
    pub async fn links(
        &self,
        names: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Link>, SystemError> {
        let mut by_index: BTreeMap<u32, String> = BTreeMap::new();
        let mut out: BTreeMap<String, Link> = BTreeMap::new();
        let mut links = self.handle.link().get().execute();
        while let Some(message) = links
            .try_next()
            .await
            .map_err(|e| netlink_error("listing network links", e))?
        {
            let mut name = None;
            let mut oper_state = String::from("unknown");
            let (mut kind, mut mtu, mut counters) = (None, None, None);
            for attribute in &message.attributes {
                match attribute {
                    LinkAttribute::IfName(n) => name = Some(n.clone()),
                    LinkAttribute::OperState(state) => oper_state = state_name(*state),
                    LinkAttribute::Mtu(m) => mtu = Some(*m),
                    LinkAttribute::Stats64(s) => {
                        counters = Some(Counters {
                            rx_bytes: s.rx_bytes,
                            tx_bytes: s.tx_bytes,
                            rx_packets: s.rx_packets,
                            tx_packets: s.tx_packets,
                            rx_errors: s.rx_errors,
                            tx_errors: s.tx_errors,
                            rx_dropped: s.rx_dropped,
                            tx_dropped: s.tx_dropped,
                        })
                    }
                    LinkAttribute::LinkInfo(infos) => {
                        kind = infos.iter().find_map(|info| match info {
                            netlink_packet_route::link::LinkInfo::Kind(k) => Some(k.to_string()),
                            _ => None,
                        });
                    }
                    _ => {}
                }
            }
            let Some(name) = name.filter(|n| names.contains(n)) else {
                continue;
            };
            let index = message.header.index;
            by_index.insert(index, name.clone());
            out.insert(
                name,
                Link {
                    index,
                    up: message
                        .header
                        .flags
                        .contains(netlink_packet_route::link::LinkFlags::Up),
                    oper_state,
                    addresses: BTreeSet::new(),
                    kind,
                    mtu,
                    counters,
                },
            );
        }
        if out.is_empty() {
            return Ok(out);
        }
        let mut addresses = self.handle.address().get().execute();
        while let Some(message) = addresses
            .try_next()
            .await
            .map_err(|e| netlink_error("listing addresses", e))?
        {
            let Some(name) = by_index.get(&message.header.index) else {
                continue;
            };
            // IFA_LOCAL is the interface's own IPv4 address (IFA_ADDRESS is
            // the peer on point-to-point links); IPv6 has only IFA_ADDRESS.
            let mut local = None;
            let mut address = None;
            for attribute in &message.attributes {
                match attribute {
                    AddressAttribute::Local(a) => local = Some(*a),
                    AddressAttribute::Address(a) => address = Some(*a),
                    _ => {}
                }
            }
            if let (Some(addr), Some(link)) = (local.or(address), out.get_mut(name)) {
                link.addresses
                    .insert(format!("{addr}/{}", message.header.prefix_len));
            }
        }
        Ok(out)
    }

    /// The named links that exist, each with the name of the link it is
    /// a port of (its master: a bridge), if any.
    pub async fn masters(
        &self,
        names: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Option<String>>, SystemError> {
        let mut by_index: BTreeMap<u32, String> = BTreeMap::new();
        let mut found: Vec<(String, Option<u32>)> = Vec::new();
        let mut links = self.handle.link().get().execute();
        while let Some(message) = links
            .try_next()
            .await
            .map_err(|e| netlink_error("listing network links", e))?
        {
            let mut name = None;
            let mut master = None;
            for attribute in &message.attributes {
                match attribute {
                    LinkAttribute::IfName(n) => name = Some(n.clone()),
                    LinkAttribute::Controller(index) => master = Some(*index),
                    _ => {}
                }
            }
            let Some(name) = name else {
                continue;
            };
            by_index.insert(message.header.index, name.clone());
            if names.contains(&name) {
                found.push((name, master));
            }
        }
        Ok(found
            .into_iter()
            .map(|(name, master)| (name, master.and_then(|i| by_index.get(&i).cloned())))
            .collect())
    }

    /// The route the kernel takes to `to`; `None` when there is none
    /// (unreachable).
    pub async fn route_to(&self, to: IpAddr) -> Result<Option<RouteTo>, SystemError> {
        use netlink_packet_route::route::{RouteAddress, RouteAttribute};
        let what = || format!("looking up the route to {to}");
        let full = if to.is_ipv4() { 32 } else { 128 };
        let message = rtnetlink::RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(to, full)
            .map_err(|e| netlink_error(what(), format!("{e:?}")))?
            .build();
        let mut routes = self.handle.route().get(message).execute();
        let route = match routes.try_next().await {
            Ok(Some(route)) => route,
            Ok(None) => return Ok(None),
            Err(rtnetlink::Error::NetlinkError(e))
                if [nix::libc::ENETUNREACH, nix::libc::EHOSTUNREACH].contains(&-e.raw_code()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(netlink_error(what(), e)),
        };
        let address = |a: &RouteAddress| match a {
            RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
            RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
            _ => None,
        };
        let mut found = RouteTo {
            device: None,
            device_mtu: None,
            gateway: None,
            source: None,
        };
        let mut index = None;
        for attribute in &route.attributes {
            match attribute {
                RouteAttribute::Oif(i) => index = Some(*i),
                RouteAttribute::Gateway(a) => found.gateway = address(a),
                RouteAttribute::PrefSource(a) => found.source = address(a),
                _ => {}
            }
        }
        if let Some(index) = index {
            let mut links = self.handle.link().get().match_index(index).execute();
            if let Ok(Some(link)) = links.try_next().await {
                for attribute in &link.attributes {
                    match attribute {
                        LinkAttribute::IfName(n) => found.device = Some(n.clone()),
                        LinkAttribute::Mtu(m) => found.device_mtu = Some(*m),
                        _ => {}
                    }
                }
            }
        }
        Ok(Some(found))
    }

    pub async fn delete(&self, name: &str, index: u32) -> Result<(), SystemError> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(|e| netlink_error(format!("deleting link {name}"), e))
    }
}

fn state_name(state: State) -> String {
    match state {
        State::Up => "up",
        State::Down => "down",
        State::LowerLayerDown => "lower-layer-down",
        State::Dormant => "dormant",
        State::NotPresent => "not-present",
        State::Testing => "testing",
        _ => "unknown",
    }
    .to_string()
}

/// Whether the kernel can make links of each kind (`gre`, `vxlan`…).
///
/// The kernel itself answers: in a network namespace of its own, made for
/// the probe and gone with it, ctm asks for a link of each kind with
/// nothing but a name and the kind. `rtnl_newlink` looks the kind up
/// before it reads any setting, loading the module `rtnl-link-KIND` when
/// the kernel has modules, and answers `EOPNOTSUPP` ("Unknown device
/// type") only when there is no such kind; any other answer (the link made,
/// or a setting missing, as vxlan's id) means the kind exists. Neither
/// `/proc/modules` nor `/sys/module` can tell this: a kernel without
/// modules has neither, and built-in drivers need not appear there.
/// Nothing in the host's own namespace is touched.
///
/// A kind found is remembered for the life of the process (support does
/// not go away; `ctm serve` plans often, and a namespace is not free to
/// make); a kind missing is asked again each time, so that a module
/// installed meanwhile is seen.
pub fn probe_kinds(kinds: &BTreeSet<String>) -> BTreeMap<String, KindSupport> {
    use std::sync::{Mutex, OnceLock, PoisonError};
    static FOUND: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();
    let found = FOUND.get_or_init(|| Mutex::new(BTreeSet::new()));
    let known: BTreeSet<String> = found
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .intersection(kinds)
        .cloned()
        .collect();
    let mut support: BTreeMap<String, KindSupport> = known
        .iter()
        .map(|k| (k.clone(), KindSupport::Supported))
        .collect();
    let unknown: BTreeSet<String> = kinds.difference(&known).cloned().collect();
    let probed = probe_now(&unknown);
    found.lock().unwrap_or_else(PoisonError::into_inner).extend(
        probed
            .iter()
            .filter(|(_, s)| **s == KindSupport::Supported)
            .map(|(k, _)| k.clone()),
    );
    support.extend(probed);
    support
}

/// [`probe_kinds`] without the memory.
fn probe_now(kinds: &BTreeSet<String>) -> BTreeMap<String, KindSupport> {
    if kinds.is_empty() {
        return BTreeMap::new();
    }
    let wanted: Vec<String> = kinds.iter().cloned().collect();
    let probe = std::thread::Builder::new()
        .name("ctm-link-probe".into())
        .spawn(move || probe_in_new_namespace(&wanted));
    let failed = |why: String| {
        kinds
            .iter()
            .map(|k| {
                (
                    k.clone(),
                    KindSupport::Unknown {
                        reason: why.clone(),
                    },
                )
            })
            .collect()
    };
    match probe.map(std::thread::JoinHandle::join) {
        Ok(Ok(Ok(found))) => found,
        Ok(Ok(Err(why))) => failed(why),
        Ok(Err(_)) => failed("the probe's thread panicked".into()),
        Err(e) => failed(format!("cannot start the probe's thread: {e}")),
    }
}

/// On a thread of its own (a network namespace belongs to a thread, and
/// this one ends with the probe, taking the namespace and its links with
/// it).
fn probe_in_new_namespace(kinds: &[String]) -> Result<BTreeMap<String, KindSupport>, String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("cannot make a network namespace to probe in: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the probe's runtime: {e}"))?;
    runtime.block_on(async {
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|e| format!("cannot open a netlink socket: {e}"))?;
        tokio::spawn(connection);
        let mut found = BTreeMap::new();
        for (i, kind) in kinds.iter().enumerate() {
            let support = match try_kind(&handle, &format!("ctmprobe{i}"), kind).await {
                Ok(()) => KindSupport::Supported,
                Err(rtnetlink::Error::NetlinkError(e))
                    if e.raw_code() == -nix::libc::EOPNOTSUPP =>
                {
                    KindSupport::Unsupported {
                        reason: "the kernel has no such kind of link (Unknown device type: \
                                 neither built in nor loadable as a module)"
                            .into(),
                    }
                }
                Err(rtnetlink::Error::NetlinkError(_)) => KindSupport::Supported,
                Err(e) => KindSupport::Unknown {
                    reason: format!("the probe failed: {e}"),
                },
            };
            found.insert(kind.clone(), support);
        }
        Ok(found)
    })
}

/// Asks for a link of `kind` named `name`, with no settings at all.
async fn try_kind(handle: &Handle, name: &str, kind: &str) -> Result<(), rtnetlink::Error> {
    use netlink_packet_route::link::{InfoKind, LinkInfo, LinkMessage};
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_string()));
    message
        .attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::from(kind),
        )]));
    handle.link().add(message).execute().await
}
