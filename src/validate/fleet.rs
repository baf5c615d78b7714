//! Stage 2 for the fleet file: syntax tree → [`Fleet`], every problem
//! kept. The structure was checked against `vocab::FLEET` by `config`;
//! here the values get their types (names, SSH destinations, ports,
//! timeouts, paths) and the references their meaning (the canary).

use std::collections::BTreeMap;

use miette::SourceSpan;

use super::Validator;
use crate::clock::Timeout;
use crate::config::{Document, Node, Spanned, Value, did_you_mean};
use crate::diagnostic::Diagnostic;
use crate::model::fleet::{
    Canary, DEFAULT_CONFIRM_TIMEOUT, Fleet, FleetHost, HostFilePath, SshDestination, SshTarget,
};
use crate::model::{AbsPath, Name, Port};

/// A valid fleet, with the places in the fleet file that later problems
/// point at.
#[derive(Debug, Clone)]
pub struct ValidatedFleet {
    pub fleet: Fleet,
    /// Where each host's `file` is given: a host file that cannot be read
    /// is reported there.
    pub file_spans: BTreeMap<Name, SourceSpan>,
}

/// Validates a parsed fleet file.
pub fn validate(doc: &Document) -> Result<ValidatedFleet, Vec<Diagnostic>> {
    let mut v = Validator::default();
    let ctm = doc
        .nodes_named("ctm")
        .next()
        .and_then(|n| v.parse_str(n.arg(0), "ctm::invalid-path", AbsPath::parse))
        .map(|p| p.value);
    let confirm_timeout = doc
        .nodes_named("confirm-timeout")
        .next()
        .and_then(|n| timeout(&mut v, n))
        .unwrap_or(
            Timeout::try_from(DEFAULT_CONFIRM_TIMEOUT).expect("the default is a valid timeout"),
        );
    let mut hosts: Vec<FleetHost> = Vec::new();
    let mut file_spans = BTreeMap::new();
    let mut names: BTreeMap<Name, SourceSpan> = BTreeMap::new();
    let mut destinations: BTreeMap<SshTarget, (Name, SourceSpan)> = BTreeMap::new();
    let mut any_host = false;
    for node in doc.nodes_named("host") {
        any_host = true;
        let Some(name) = v.parse_str(node.arg(0), "ctm::invalid-name", Name::parse) else {
            continue;
        };
        if let Some(first) = names.get(&name.value) {
            v.push(
                Diagnostic::error(
                    "ctm::duplicate-name",
                    format!("host `{}` is defined twice", name.value),
                    name.span,
                )
                .with_label("defined again here")
                .with_related(*first, "first defined here")
                .with_help("every host needs a name of its own"),
            );
            continue;
        }
        names.insert(name.value.clone(), name.span);
        let Some(host) = fleet_host(&mut v, node, name.value, &ctm, confirm_timeout) else {
            continue;
        };
        let (ssh_span, file_span) = (host.1, host.2);
        let host = host.0;
        if let Some((first, first_span)) = destinations.get(&host.ssh) {
            v.push(
                Diagnostic::error(
                    "ctm::duplicate-destination",
                    format!(
                        "hosts `{first}` and `{}` both connect to {}",
                        host.name, host.ssh
                    ),
                    ssh_span,
                )
                .with_label("the same destination again")
                .with_related(*first_span, format!("`{first}` connects here"))
                .with_help(
                    "one machine is one host of the fleet; give each host its own destination",
                ),
            );
            continue;
        }
        destinations.insert(host.ssh.clone(), (host.name.clone(), ssh_span));
        file_spans.insert(host.name.clone(), file_span);
        hosts.push(host);
    }
    if !any_host {
        v.push(
            Diagnostic::error(
                "ctm::no-hosts",
                "the fleet file names no host",
                SourceSpan::new(0.into(), 0),
            )
            .with_label("a fleet needs at least one host")
            .with_help("add one, for example: host \"web1\" { ssh \"root@203.0.113.5\"; file \"hosts/web1.kdl\"; }"),
        );
    }
    let canary = doc
        .nodes_named("canary")
        .next()
        .and_then(|node| canary(&mut v, node, &hosts));
    if v.diagnostics.iter().any(Diagnostic::is_error) {
        return Err(v.diagnostics);
    }
    Ok(ValidatedFleet {
        fleet: Fleet { hosts, canary },
        file_spans,
    })
}

/// One host, with the spans of its destination and its file; `None` when
/// either is missing or wrong (reported).
fn fleet_host(
    v: &mut Validator,
    node: &Node,
    name: Name,
    default_ctm: &Option<AbsPath>,
    default_timeout: Timeout,
) -> Option<(FleetHost, SourceSpan, SourceSpan)> {
    let ssh = node.child("ssh");
    let destination = ssh.and_then(|s| {
        v.parse_str(
            s.arg(0),
            "ctm::invalid-ssh-destination",
            SshDestination::parse,
        )
    });
    let port = ssh.and_then(|s| port(v, s.prop("port")));
    let file = node
        .child("file")
        .and_then(|f| v.parse_str(f.arg(0), "ctm::invalid-host-file", HostFilePath::parse));
    let tags = node.child("tags").map_or_else(Vec::new, |t| {
        let mut tags: Vec<Name> = t
            .args
            .iter()
            .filter_map(|arg| v.parse_str(Some(arg), "ctm::invalid-name", Name::parse))
            .map(|t| t.value)
            .collect();
        tags.sort();
        tags.dedup();
        tags
    });
    let group = node
        .child("group")
        .and_then(|g| v.parse_str(g.arg(0), "ctm::invalid-name", Name::parse))
        .map(|g| g.value);
    let confirm_timeout = node
        .child("confirm-timeout")
        .and_then(|t| timeout(v, t))
        .unwrap_or(default_timeout);
    let ctm = match node.child("ctm") {
        Some(c) => Some(
            v.parse_str(c.arg(0), "ctm::invalid-path", AbsPath::parse)?
                .value,
        ),
        None => default_ctm.clone(),
    };
    let (destination, file) = (destination?, file?);
    Some((
        FleetHost {
            name,
            ssh: SshTarget {
                destination: destination.value,
                port: port.flatten(),
            },
            file: file.value,
            tags,
            group,
            confirm_timeout,
            ctm,
        },
        destination.span,
        file.span,
    ))
}

/// `port=N`: `Some(None)` when not given, `None` when wrong (reported).
fn port(v: &mut Validator, value: Option<&Spanned<Value>>) -> Option<Option<Port>> {
    let Some(value) = value else {
        return Some(None);
    };
    let i = value.value.as_integer()?;
    match Port::from_integer(i) {
        Ok(p) => Some(Some(p)),
        Err(message) => {
            v.push(
                Diagnostic::error("ctm::invalid-port", message, value.span)
                    .with_label("not a port"),
            );
            None
        }
    }
}

fn timeout(v: &mut Validator, node: &Node) -> Option<Timeout> {
    let value = node.arg(0)?;
    let i = value.value.as_integer()?;
    let parsed = u64::try_from(i)
        .map_err(|_| format!("{i} is not a number of seconds"))
        .and_then(Timeout::try_from);
    match parsed {
        Ok(t) => Some(t),
        Err(message) => {
            v.push(
                Diagnostic::error("ctm::invalid-timeout", message, value.span)
                    .with_label("not a timeout")
                    .with_help("give whole seconds, 1 to 604800 (7 days)"),
            );
            None
        }
    }
}

/// The canary names a host (first) or a group.
fn canary(v: &mut Validator, node: &Node, hosts: &[FleetHost]) -> Option<Canary> {
    let name = v.parse_str(node.arg(0), "ctm::invalid-name", Name::parse)?;
    if let Some(canary) = Canary::named(hosts, name.value.as_str()) {
        return Some(canary);
    }
    let mut known: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    known.extend(
        hosts
            .iter()
            .filter_map(|h| h.group.as_ref().map(Name::as_str)),
    );
    v.push(
        Diagnostic::error(
            "ctm::unknown-canary",
            format!("the canary `{}` is neither a host nor a group", name.value),
            name.span,
        )
        .with_label("no host or group has this name")
        .with_help(did_you_mean(name.value.as_str(), &known)),
    );
    None
}
