//! Topologies: groups of networks, containers and links defined elsewhere
//! in the host file, named by reference. Checked last, once every member
//! they may name is.
//!
//! By reference rather than nested: a container or network means the same
//! wherever it is written, the TOML form stays the same tables
//! (`[container.r1]`, `[[link]]`) with a small `[topology.NAME]` beside
//! them, and a member can be moved between topologies (or out of every
//! one) without moving its definition.

use std::collections::{BTreeMap, BTreeSet};

use miette::SourceSpan;

use super::{Validator, unknown_reference};
use crate::config::{Document, Node, Spanned};
use crate::diagnostic::Diagnostic;
use crate::model::*;

pub(super) fn topologies(
    v: &mut Validator,
    doc: &Document,
    containers: &BTreeMap<Name, Container>,
    links: &[Link],
) -> BTreeMap<Name, Topology> {
    let defined = |kind: &'static str| -> BTreeSet<&str> {
        doc.nodes_named(kind)
            .filter_map(|n| n.arg(0)?.value.as_str())
            .collect()
    };
    let networks_defined = defined("network");
    let containers_defined = defined("container");
    let link_keys: BTreeSet<(Name, Name)> = links
        .iter()
        .map(|l| Topology::link_key(&l.ends[0].container, &l.ends[1].container))
        .collect();
    // Where each member was first listed, and in which topology: a member
    // belongs to at most one.
    let mut first: BTreeMap<(&'static str, String), (SourceSpan, Name)> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (name, (_, node)) in v.named(doc, "topology") {
        let mut topology = Topology {
            name: name.clone(),
            networks: BTreeSet::new(),
            containers: BTreeSet::new(),
            links: BTreeSet::new(),
            down: false,
        };
        for member in node.children_named("network") {
            let Some(net) = string(member.arg(0)) else {
                continue;
            };
            if !networks_defined.contains(net.value.as_str()) {
                let known: Vec<&str> = networks_defined.iter().copied().collect();
                v.push_with(|| unknown_reference("network", &net, &known));
                continue;
            }
            let Ok(parsed) = Name::parse(&net.value) else {
                continue; // reported where the network is defined
            };
            if once(v, &mut first, "network", &net, &name) {
                topology.networks.insert(parsed);
            }
        }
        for member in node.children_named("container") {
            let Some(c) = string(member.arg(0)) else {
                continue;
            };
            if !containers_defined.contains(c.value.as_str()) {
                let known: Vec<&str> = containers_defined.iter().copied().collect();
                v.push_with(|| unknown_reference("container", &c, &known));
                continue;
            }
            let Ok(parsed) = Name::parse(&c.value) else {
                continue;
            };
            if once(v, &mut first, "container", &c, &name) {
                topology.containers.insert(parsed);
            }
        }
        for member in node.children_named("link") {
            if let Some(key) = link(v, member, &link_keys)
                && once(
                    v,
                    &mut first,
                    "link",
                    &Spanned::new(format!("{}–{}", key.0, key.1), member.name.span),
                    &name,
                )
            {
                topology.links.insert(key);
            }
        }
        out.insert(name, topology);
    }
    outsiders_on_networks(v, doc, containers, &out);
    out
}

/// The link a topology's `link A B` names, either way round; `None`
/// (reported) when the host file has no link between them.
fn link(v: &mut Validator, member: &Node, keys: &BTreeSet<(Name, Name)>) -> Option<(Name, Name)> {
    let (a, b) = (string(member.arg(0))?, string(member.arg(1))?);
    let key = match (Name::parse(&a.value), Name::parse(&b.value)) {
        (Ok(a), Ok(b)) => Some(Topology::link_key(&a, &b)),
        _ => None,
    };
    if let Some(key) = key.filter(|k| keys.contains(k)) {
        return Some(key);
    }
    v.push(
        Diagnostic::error(
            "ctm::unknown-reference",
            format!("there is no link between `{}` and `{}`", a.value, b.value),
            crate::config::join_spans(a.span, b.span),
        )
        .with_label("unknown link")
        .with_help(format!(
            "a topology names links defined at the top level: link \"{}\" \"{}\" {{ … }}",
            a.value, b.value
        )),
    );
    None
}

/// Records `member` as in `topology`; reports it, and returns false, when
/// it is in a topology already (this one or another).
fn once(
    v: &mut Validator,
    first: &mut BTreeMap<(&'static str, String), (SourceSpan, Name)>,
    kind: &'static str,
    member: &Spanned<String>,
    topology: &Name,
) -> bool {
    match first.get(&(kind, member.value.clone())) {
        Some((span, owner)) => {
            let message = if owner == topology {
                format!(
                    "{kind} `{}` is listed twice in topology `{topology}`",
                    member.value
                )
            } else {
                format!(
                    "{kind} `{}` is in topology `{owner}` already, and a {kind} belongs to at most one",
                    member.value
                )
            };
            v.push(
                Diagnostic::error("ctm::topology-member", message, member.span)
                    .with_label("listed again here")
                    .with_related(*span, format!("in topology `{owner}` here"))
                    .with_help(
                        "`ctm down` of either topology would take it from the other: list it once",
                    ),
            );
            false
        }
        None => {
            first.insert(
                (kind, member.value.clone()),
                (member.span, topology.clone()),
            );
            true
        }
    }
}

/// A container outside a topology on one of the topology's networks would
/// lose its network whenever the topology is down: refused.
fn outsiders_on_networks(
    v: &mut Validator,
    doc: &Document,
    containers: &BTreeMap<Name, Container>,
    topologies: &BTreeMap<Name, Topology>,
) {
    for container in containers.values() {
        for network in networks_of(container) {
            let Some(topology) = topologies.values().find(|t| t.networks.contains(network)) else {
                continue;
            };
            if topology.containers.contains(&container.name) {
                continue;
            }
            let span = doc
                .nodes_named("container")
                .find(|n| n.arg(0).and_then(|a| a.value.as_str()) == Some(container.name.as_str()))
                .and_then(|n| n.arg(0))
                .map_or(SourceSpan::from(0..0), |a| a.span);
            v.push(
                Diagnostic::error(
                    "ctm::topology-network",
                    format!(
                        "container `{}` is on network `{network}` of topology `{}` but not in the topology",
                        container.name, topology.name
                    ),
                    span,
                )
                .with_label("would lose its network when the topology is down")
                .with_help(format!(
                    "add `container \"{}\"` to topology `{}`, or take network `{network}` out of it",
                    container.name, topology.name
                )),
            );
        }
    }
}

/// The networks a container is on.
fn networks_of(container: &Container) -> impl Iterator<Item = &Name> {
    container.attachments().map(|a| &a.network)
}

fn string(value: Option<&Spanned<crate::config::Value>>) -> Option<Spanned<String>> {
    let value = value?;
    Some(Spanned::new(value.value.as_str()?.to_string(), value.span))
}
