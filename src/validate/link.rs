//! Links between containers and the containers' static routes: checked
//! once the containers are, since a link joins two of them and a route's
//! gateway must lie on one of the container's links or on its network.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use miette::SourceSpan;

use super::container::{NetworkSpan, RouteSpans};
use super::{NetworkEntry, Validator, unknown_reference};
use crate::config::{Document, Node, Spanned};
use crate::diagnostic::Diagnostic;
use crate::model::*;

/// nspawn's own interface in a container with a network.
const HOST0: &str = "host0";

/// The links, in order of their first end, and each link's subnets with
/// the span of the address they were read from (for the overlap check).
pub(super) struct Links {
    pub links: Vec<Link>,
    pub subnets: Vec<(IpNet, SourceSpan, String)>,
}

pub(super) fn links(
    v: &mut Validator,
    doc: &Document,
    containers: &BTreeMap<Name, Container>,
    networks: &BTreeMap<Name, NetworkEntry>,
    route_spans: &RouteSpans,
    network_spans: &[NetworkSpan],
) -> Links {
    let defined: BTreeSet<&str> = doc
        .nodes_named("container")
        .filter_map(|c| c.arg(0)?.value.as_str())
        .collect();
    let known: Vec<&str> = defined.iter().copied().collect();
    let mut out = Links {
        links: Vec::new(),
        subnets: Vec::new(),
    };
    // Interface names in use in each container, host0 for those on a
    // network: a second link may not take one.
    let mut interfaces: BTreeMap<(Name, IfName), SourceSpan> = BTreeMap::new();
    // And the interfaces of their networks after the first.
    let on_networks: BTreeMap<(Name, IfName), SourceSpan> = network_spans
        .iter()
        .map(|s| ((s.container.clone(), s.interface.clone()), s.span))
        .collect();
    for node in doc.nodes_named("link") {
        let (Some(a), Some(b)) = (string(node.arg(0)), string(node.arg(1))) else {
            continue;
        };
        let mut unknown = false;
        for end in [&a, &b] {
            if !defined.contains(end.value.as_str()) {
                v.push_with(|| unknown_reference("container", end, &known));
                unknown = true;
            }
        }
        if unknown {
            continue;
        }
        if a.value == b.value {
            v.push(
                Diagnostic::error(
                    "ctm::link-ends",
                    format!("a link joins two containers, not `{}` to itself", a.value),
                    b.span,
                )
                .with_label("the same container again")
                .with_help("name two different containers: link \"r1\" \"r2\" { … }"),
            );
            continue;
        }
        // Ends left out of the host had an error of their own.
        let (Some((a_name, _)), Some((b_name, _))) = (
            containers.get_key_value(a.value.as_str()),
            containers.get_key_value(b.value.as_str()),
        ) else {
            continue;
        };
        let Some(ends) = link_ends(v, node, [(&a, a_name), (&b, b_name)]) else {
            continue;
        };
        let owner = format!("link `{}`–`{}`", a.value, b.value);
        if !check_subnets(v, &ends, &owner, &mut out.subnets) {
            continue;
        }
        let mut clash = false;
        for end in &ends {
            let key = (end.end.container.clone(), end.end.interface.clone());
            if let Some(network) = on_networks.get(&key) {
                v.push(
                    Diagnostic::error(
                        "ctm::duplicate-interface",
                        format!(
                            "container `{}` has a network interface called `{}` already",
                            key.0, key.1
                        ),
                        end.interface_span,
                    )
                    .with_label("the link's interface")
                    .with_related(*network, "the network's interface")
                    .with_help(format!(
                        "name one of them: interface \"{}\" \"NAME\" on the link, or interface=\"NAME\" on the network",
                        key.0
                    )),
                );
                clash = true;
                continue;
            }
            if let Some(first) = interfaces.get(&key) {
                v.push(
                    Diagnostic::error(
                        "ctm::duplicate-interface",
                        format!("container `{}` has two links called `{}`", key.0, key.1),
                        end.interface_span,
                    )
                    .with_label("used again here")
                    .with_related(*first, "first used here")
                    .with_help(format!(
                        "name one of them: interface \"{}\" \"NAME\"",
                        key.0
                    )),
                );
                clash = true;
                continue;
            }
            interfaces.insert(key, end.interface_span);
        }
        if !clash {
            let [a, b] = ends;
            out.links.push(Link {
                ends: [a.end, b.end],
            });
        }
    }
    out.links.sort_by(|x, y| {
        let key = |l: &Link| (l.ends[0].container.clone(), l.ends[0].interface.clone());
        key(x).cmp(&key(y))
    });
    routes(v, containers, networks, &out.links, route_spans);
    out
}

/// A link's end with the spans its diagnostics point at.
struct EndDraft {
    end: LinkEnd,
    /// The `interface` node's name, or the end's name in the `link` line.
    interface_span: SourceSpan,
    address_spans: Vec<SourceSpan>,
}

/// The two ends: each one's interface name and addresses.
fn link_ends(
    v: &mut Validator,
    node: &Node,
    ends: [(&Spanned<String>, &Name); 2],
) -> Option<[EndDraft; 2]> {
    let mut ok = true;
    let mut drafts = ends.map(|(written, name)| EndDraft {
        end: LinkEnd {
            container: name.clone(),
            interface: IfName::parse(HOST0).expect("host0 is a valid interface name"),
            addresses: Vec::new(),
        },
        interface_span: written.span,
        address_spans: Vec::new(),
    });
    let mut named = [false, false];
    for child in &node.children {
        let kind = child.name.value.as_str();
        let Some(which) = string(child.arg(0)) else {
            continue;
        };
        let Some(i) = ends.iter().position(|(_, n)| n.as_str() == which.value) else {
            v.push(
                Diagnostic::error(
                    "ctm::link-end",
                    format!(
                        "`{}` is not an end of the link between `{}` and `{}`",
                        which.value, ends[0].1, ends[1].1
                    ),
                    which.span,
                )
                .with_label("not an end")
                .with_help(format!("`{kind}` names one of the link's two containers")),
            );
            ok = false;
            continue;
        };
        let draft = &mut drafts[i];
        match kind {
            "interface" => {
                let Some(name) =
                    v.parse_str(child.arg(1), "ctm::invalid-interface-name", interface_name)
                else {
                    ok = false;
                    continue;
                };
                if named[i] {
                    v.push(
                        Diagnostic::error(
                            "ctm::link-end",
                            format!("the link's interface in `{}` is named twice", which.value),
                            child.span,
                        )
                        .with_label("named again here")
                        .with_related(draft.interface_span, "first named here")
                        .with_help("keep one `interface` per end"),
                    );
                    ok = false;
                    continue;
                }
                named[i] = true;
                draft.end.interface = name.value;
                draft.interface_span = name.span;
            }
            "address" => {
                let Some(address) = v.parse_str(child.arg(1), "ctm::invalid-address", |s| {
                    parse_interface_address::<IpNet>(s, "IP")
                }) else {
                    ok = false;
                    continue;
                };
                if let Some(j) = draft
                    .end
                    .addresses
                    .iter()
                    .position(|x| x.addr().is_ipv4() == address.value.addr().is_ipv4())
                {
                    v.push(
                        Diagnostic::error(
                            "ctm::link-address",
                            format!(
                                "`{}` has a second {} address on this link",
                                which.value,
                                family(address.value.addr())
                            ),
                            address.span,
                        )
                        .with_label("second address")
                        .with_related(draft.address_spans[j], "first address")
                        .with_help(
                            "a point-to-point link needs one address of each family per end",
                        ),
                    );
                    ok = false;
                    continue;
                }
                draft.end.addresses.push(address.value);
                draft.address_spans.push(address.span);
            }
            _ => {}
        }
    }
    // Unnamed ends are called after the other end.
    for i in 0..2 {
        if named[i] {
            continue;
        }
        let other = ends[1 - i].1;
        match IfName::parse(&format!("to-{other}")) {
            Ok(name) => drafts[i].end.interface = name,
            Err(_) => {
                v.push(
                    Diagnostic::error(
                        "ctm::link-interface",
                        format!(
                            "`to-{other}`, the default name of the link's interface in `{}`, is not an interface name",
                            ends[i].1
                        ),
                        ends[i].0.span,
                    )
                    .with_label("needs an interface name")
                    .with_help(format!(
                        "name it (at most 15 characters): interface \"{}\" \"eth1\"",
                        ends[i].1
                    )),
                );
                ok = false;
            }
        }
    }
    ok.then_some(drafts)
}

/// The names nspawn leaves free inside a container.
fn interface_name(s: &str) -> Result<IfName, String> {
    let name = IfName::parse(s)?;
    if name.as_str() == HOST0 {
        return Err("`host0` is the interface nspawn gives a container on a network".into());
    }
    Ok(name)
}

/// Each family both ends have: one subnet, two different host addresses.
/// Records the link's subnets for the overlap check; `false` if any is
/// wrong.
fn check_subnets(
    v: &mut Validator,
    ends: &[EndDraft; 2],
    owner: &str,
    subnets: &mut Vec<(IpNet, SourceSpan, String)>,
) -> bool {
    let mut ok = true;
    let [a, b] = ends;
    for (i, address) in a.end.addresses.iter().enumerate() {
        let a_span = a.address_spans[i];
        let peer = b
            .end
            .addresses
            .iter()
            .zip(&b.address_spans)
            .find(|(x, _)| x.addr().is_ipv4() == address.addr().is_ipv4());
        let Some((other, b_span)) = peer else {
            v.push(one_sided(a, b, address.addr(), a_span));
            ok = false;
            continue;
        };
        let problem = if address.trunc() != other.trunc() {
            Some(format!(
                "{address} and {other} are not in one subnet: the link's ends cannot reach each other"
            ))
        } else if address.addr() == other.addr() {
            Some(format!(
                "both ends of the link have the address {}",
                address.addr()
            ))
        } else {
            [address, other]
                .into_iter()
                .find(|x| !is_host_address(x))
                .map(|x| format!("{x} is not a host address of its subnet {}", x.trunc()))
        };
        if let Some(problem) = problem {
            v.push(
                Diagnostic::error("ctm::link-subnet", problem, *b_span)
                    .with_label("this end")
                    .with_related(a_span, "the other end")
                    .with_help(format!(
                        "give both ends addresses of one subnet, e.g. {}",
                        example(address.addr())
                    )),
            );
            ok = false;
            continue;
        }
        subnets.push((address.trunc(), a_span, owner.to_string()));
    }
    for (address, span) in b.end.addresses.iter().zip(&b.address_spans) {
        let paired = a
            .end
            .addresses
            .iter()
            .any(|x| x.addr().is_ipv4() == address.addr().is_ipv4());
        if !paired {
            v.push(one_sided(b, a, address.addr(), *span));
            ok = false;
        }
    }
    ok
}

fn one_sided(has: &EndDraft, lacks: &EndDraft, address: IpAddr, span: SourceSpan) -> Diagnostic {
    let family = family(address);
    Diagnostic::error(
        "ctm::link-subnet",
        format!(
            "`{}` has an {family} address on the link and `{}` none",
            has.end.container, lacks.end.container
        ),
        span,
    )
    .with_label(format!("the only {family} address"))
    .with_help(format!(
        "give `{}` an {family} address of the same subnet, or remove this one",
        lacks.end.container
    ))
}

/// Not the network address, nor IPv4's broadcast, where the prefix has
/// them (a /31 or /32, and IPv6's /127 or /128, has neither).
fn is_host_address(net: &IpNet) -> bool {
    match net {
        IpNet::V4(n) if n.prefix_len() < 31 => n.addr() != n.network() && n.addr() != n.broadcast(),
        IpNet::V6(n) if n.prefix_len() < 127 => n.addr() != n.network(),
        _ => true,
    }
}

fn family(address: IpAddr) -> &'static str {
    if address.is_ipv4() { "IPv4" } else { "IPv6" }
}

fn example(address: IpAddr) -> &'static str {
    if address.is_ipv4() {
        "`10.0.12.1/30` and `10.0.12.2/30`"
    } else {
        "`fd00:12::1/64` and `fd00:12::2/64`"
    }
}

/// Every route's gateway lies in a subnet the container is on: one of its
/// links' or its network's, and is not its own address there.
fn routes(
    v: &mut Validator,
    containers: &BTreeMap<Name, Container>,
    networks: &BTreeMap<Name, NetworkEntry>,
    links: &[Link],
    route_spans: &RouteSpans,
) {
    for (name, container) in containers {
        let Some(spans) = route_spans.get(name) else {
            continue;
        };
        // The container's own addresses, each with its prefix.
        let mut on: Vec<IpNet> = links
            .iter()
            .flat_map(|l| &l.ends)
            .filter(|e| &e.container == name)
            .flat_map(|e| e.addresses.iter().copied())
            .collect();
        for (attach, entry) in container
            .attachments()
            .filter_map(|a| Some((a, networks.get(&a.network)?)))
        {
            let net = &entry.network;
            if let (Some(a), Some(s)) = (attach.ipv4, net.ipv4) {
                on.extend(IpNet::new(a.into(), s.address.prefix_len()).ok());
            }
            if let (Some(a), Some(s)) = (attach.ipv6, net.ipv6) {
                on.extend(IpNet::new(a.into(), s.address.prefix_len()).ok());
            }
        }
        for (route, span) in container.routes.iter().zip(spans) {
            let problem = if route.via.is_ipv4() != route.destination.addr().is_ipv4() {
                format!(
                    "the gateway {} is an {} address, the destination {} an {} one",
                    route.via,
                    family(route.via),
                    route.destination,
                    family(route.destination.addr())
                )
            } else if on.iter().any(|n| n.addr() == route.via) {
                format!("{} is container `{name}`'s own address", route.via)
            } else if !on.iter().any(|n| n.trunc().contains(&route.via)) {
                format!(
                    "the gateway {} is on none of container `{name}`'s links or networks",
                    route.via
                )
            } else {
                continue;
            };
            v.push(
                Diagnostic::error("ctm::route-gateway", problem, *span)
                    .with_label("unreachable gateway")
                    .with_help(
                        "a gateway is a neighbour: an address of the other end of one of the container's links, or on its network",
                    ),
            );
        }
    }
}

fn string(value: Option<&Spanned<crate::config::Value>>) -> Option<Spanned<String>> {
    let value = value?;
    Some(Spanned::new(value.value.as_str()?.to_string(), value.span))
}
