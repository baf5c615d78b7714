//! Stage 2: syntax tree → [`Host`], every rule checked, every error kept.
//!
//! Structural problems (unknown nodes, wrong types) were already reported
//! by `config`; here a node whose value could not be read is skipped
//! quietly so one mistake is reported once. This stage checks meaning:
//! names, addresses, references, template inheritance, conflicts between
//! containers, and assigns the addresses containers do not set, keeping
//! those recorded in the previous [`Lock`].

mod address;
mod container;
pub mod fleet;
mod link;
mod topology;

pub use container::{MAX_INHERITED, MAX_TEMPLATE_CHAIN};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use miette::SourceSpan;

use crate::config::{Document, Node, Spanned, Value, did_you_mean};
use crate::diagnostic::{Diagnostic, MAX_REPORTED, omitted};
use crate::lock::Lock;
use crate::model::*;

/// What validation produces: the host and the lock that goes with it.
#[derive(Debug, Clone)]
pub struct Validated {
    pub host: Host,
    pub lock: Lock,
}

/// Validates a parsed host file. `previous` is the lock file read next to
/// it (or [`Lock::empty`]); the returned lock records every address ctm
/// assigned.
///
/// `Ok` always holds a host whose every reference resolves. A document
/// that `config::parse` found errors in may give `Err` with no diagnostics
/// of its own: a definition was left out because of an error already
/// reported there.
pub fn validate(doc: &Document, previous: &Lock) -> Result<Validated, Vec<Diagnostic>> {
    let mut v = Validator::default();
    let (name, uplink) = v.host(doc);
    let mut images = v.images(doc);
    let pinned = pin_from_lock(&mut images, previous);
    let networks = v.networks(doc, uplink.is_some());
    let tunnels = v.tunnels(doc);
    let volumes = v.volumes(doc);
    v.interface_names(doc, &uplink);
    let (containers, mut lock, route_spans, network_spans) =
        container::containers(&mut v, doc, &images, &networks, &volumes, previous);
    v.host_sides(&network_spans, &uplink, &networks, &tunnels);
    let links = link::links(
        &mut v,
        doc,
        &containers,
        &networks,
        &route_spans,
        &network_spans,
    );
    let topologies = topology::topologies(&mut v, doc, &containers, &links.links);
    v.overlaps(&networks, &tunnels, links.subnets);
    v.shadowing_names(doc, name.as_ref());
    lock.images = pinned;
    let left_out = !v.broken_images.is_empty()
        || !v.broken_networks.is_empty()
        || !v.broken_volumes.is_empty();
    if left_out || v.omitted > 0 || v.diagnostics.iter().any(Diagnostic::is_error) {
        return Err(v.into_diagnostics());
    }
    Ok(Validated {
        host: Host {
            name,
            uplink: uplink.map(|u| u.value),
            images: images
                .into_iter()
                .map(|(k, (_, image))| (k, image))
                .collect(),
            networks: networks.into_iter().map(|(k, n)| (k, n.network)).collect(),
            containers,
            tunnels: tunnels.into_iter().map(|(k, t)| (k, t.tunnel)).collect(),
            volumes,
            links: links.links,
            topologies,
        },
        lock,
    })
}

#[derive(Default)]
pub(crate) struct Validator {
    /// At most [`MAX_REPORTED`] of them; the others are counted.
    pub(crate) diagnostics: Vec<Diagnostic>,
    omitted: usize,
    first_omitted: Option<SourceSpan>,
    /// Images and networks defined with an error: they are left out of the
    /// host, but references to them are not reported again.
    pub(crate) broken_images: BTreeSet<Name>,
    pub(crate) broken_networks: BTreeSet<Name>,
    pub(crate) broken_volumes: BTreeSet<Name>,
}

/// A network with the spans later checks point at.
pub(crate) struct NetworkEntry {
    pub network: Network,
    pub ipv4_span: Option<SourceSpan>,
    pub ipv6_span: Option<SourceSpan>,
    /// The subnet of this family was given but is invalid (and reported):
    /// container addresses of that family are not checked against it.
    pub ipv4_invalid: bool,
    pub ipv6_invalid: bool,
}

/// A tunnel with the spans of its addresses, in the same order.
pub(crate) struct TunnelEntry {
    pub tunnel: Tunnel,
    pub address_spans: Vec<SourceSpan>,
}

/// Pins each OCI image named by a tag alone to the digest the previous
/// lock recorded for it, if the lock recorded that same reference; the
/// pins kept. A changed reference is resolved again when planning.
fn pin_from_lock(
    images: &mut BTreeMap<Name, (SourceSpan, Image)>,
    previous: &Lock,
) -> BTreeMap<String, crate::lock::Pinned> {
    let mut kept = BTreeMap::new();
    for (name, (_, image)) in images.iter_mut() {
        if let ImageSource::Oci { reference, .. } = &mut image.source
            && reference.digest().is_none()
            && let Some(pin) = previous.images.get(name.as_str())
            && pin.reference == *reference
        {
            *reference = reference.with_digest(pin.digest.clone());
            kept.insert(name.to_string(), pin.clone());
        }
    }
    kept
}

impl Validator {
    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        self.push_with(|| diagnostic);
    }

    /// Pushes the diagnostic `make` makes, unless [`MAX_REPORTED`] are
    /// there already: then it is only counted, and made only if it is the
    /// first left out (for its place). For diagnostics that cost more to
    /// make than to count, such as those that suggest a name.
    pub(crate) fn push_with(&mut self, make: impl FnOnce() -> Diagnostic) {
        if self.diagnostics.len() < MAX_REPORTED {
            self.diagnostics.push(make());
            return;
        }
        if self.first_omitted.is_none() {
            self.first_omitted = Some(make().span);
        }
        self.omitted += 1;
    }

    /// The diagnostics, with one for those left out.
    fn into_diagnostics(mut self) -> Vec<Diagnostic> {
        if let Some(at) = self.first_omitted {
            self.diagnostics.push(omitted(self.omitted, at));
        }
        self.diagnostics
    }

    /// Parses a string value into `T`, reporting the parser's message at
    /// the value's span. Non-strings were reported by the checker.
    pub(crate) fn parse_str<T>(
        &mut self,
        value: Option<&Spanned<Value>>,
        code: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Spanned<T>> {
        let value = value?;
        let text = value.value.as_str()?;
        match parse(text) {
            Ok(parsed) => Some(Spanned::new(parsed, value.span)),
            Err(message) => {
                self.push(Diagnostic::error(code, message, value.span).with_label("invalid value"));
                None
            }
        }
    }

    fn host(&mut self, doc: &Document) -> (Option<Name>, Option<Spanned<IfName>>) {
        let Some(host) = doc.nodes_named("host").next() else {
            return (None, None);
        };
        let name = self
            .parse_str(host.arg(0), "ctm::invalid-name", Name::parse)
            .map(|n| n.value);
        let uplink = host
            .child("uplink")
            .and_then(|u| self.parse_str(u.arg(0), "ctm::invalid-interface-name", IfName::parse));
        (name, uplink)
    }

    /// A container's name resolves to its addresses, on the host (nss-
    /// mymachines) and in the containers of its network (their hosts
    /// file): one called like the loopback names, or like the host itself,
    /// would answer for them.
    fn shadowing_names(&mut self, doc: &Document, host: Option<&Name>) {
        const LOOPBACK: &[&str] = &[
            "localhost",
            "ip6-localhost",
            "ip6-loopback",
            "ip6-allnodes",
            "ip6-allrouters",
        ];
        for node in doc.nodes_named("container") {
            let Some(arg) = node.arg(0) else { continue };
            let Some(name) = arg.value.as_str() else {
                continue;
            };
            let shadowed = if LOOPBACK.contains(&name) || name.starts_with("localhost.") {
                "a loopback name"
            } else if host.is_some_and(|h| h.as_str() == name) {
                "the host's own name"
            } else {
                continue;
            };
            self.push(
                Diagnostic::error(
                    "ctm::name-shadows-host",
                    format!("container name `{name}` would shadow {shadowed}"),
                    arg.span,
                )
                .with_label("resolves to the container")
                .with_help("a container's name resolves to its addresses, on the host and in the containers of its network: give it another"),
            );
        }
    }

    /// The named nodes of one kind, with duplicates reported; invalid names
    /// are reported and skipped.
    pub(crate) fn named<'d>(
        &mut self,
        doc: &'d Document,
        kind: &'static str,
    ) -> BTreeMap<Name, (SourceSpan, &'d Node)> {
        let mut seen: BTreeMap<Name, (SourceSpan, &'d Node)> = BTreeMap::new();
        for node in doc.nodes_named(kind) {
            let Some(name) = self.parse_str(node.arg(0), "ctm::invalid-name", Name::parse) else {
                continue;
            };
            if let Some((first, _)) = seen.get(&name.value) {
                self.push(
                    Diagnostic::error(
                        "ctm::duplicate-name",
                        format!("{kind} `{}` is defined twice", name.value),
                        name.span,
                    )
                    .with_label("defined again here")
                    .with_related(*first, "first defined here")
                    .with_help(format!("every {kind} needs a name of its own")),
                );
                continue;
            }
            seen.insert(name.value, (name.span, node));
        }
        seen
    }

    fn images(&mut self, doc: &Document) -> BTreeMap<Name, (SourceSpan, Image)> {
        let mut images = BTreeMap::new();
        // The parent each build names, where it names it.
        let mut parents: BTreeMap<Name, Spanned<String>> = BTreeMap::new();
        for (name, (span, node)) in self.named(doc, "image") {
            let mut sources = Vec::new();
            if let Some(d) = node.child("debootstrap") {
                let suite = self.parse_str(d.prop("suite"), "ctm::invalid-value", Word::parse);
                let mirror =
                    self.parse_str(d.prop("mirror"), "ctm::invalid-value", MirrorUrl::parse);
                let variant = self.parse_str(d.prop("variant"), "ctm::invalid-value", |s| {
                    match s {
                        "minbase" | "buildd" | "fakechroot" => Word::parse(s),
                        _ => Err(format!("`{s}` is not a debootstrap variant; use `minbase`, `buildd` or `fakechroot`")),
                    }
                });
                sources.push((
                    d.name.span,
                    suite.map(|suite| ImageSource::Debootstrap {
                        suite: suite.value,
                        mirror: mirror.map(|m| m.value),
                        variant: variant.map(|v| v.value),
                    }),
                ));
            }
            if let Some(d) = node.child("directory") {
                let path = self.parse_str(d.arg(0), "ctm::invalid-path", AbsPath::parse);
                sources.push((
                    d.name.span,
                    path.map(|p| ImageSource::Directory { path: p.value }),
                ));
            }
            if let Some(t) = node.child("tarball") {
                let path = self.parse_str(t.arg(0), "ctm::invalid-path", |s| {
                    let path = AbsPath::parse(s)?;
                    if [".tar", ".tar.zst", ".tar.xz"]
                        .iter()
                        .any(|ext| s.ends_with(ext))
                    {
                        Ok(path)
                    } else {
                        Err(format!(
                            "`{s}` is not a tarball ctm can unpack; use .tar, .tar.zst or .tar.xz"
                        ))
                    }
                });
                let sha256 =
                    self.parse_str(t.prop("sha256"), "ctm::invalid-value", Sha256Hex::parse);
                sources.push((
                    t.name.span,
                    path.map(|p| ImageSource::Tarball {
                        path: p.value,
                        sha256: sha256.map(|s| s.value),
                    }),
                ));
            }
            if let Some(o) = node.child("oci") {
                sources.push((o.name.span, self.oci(o)));
            }
            if let Some(a) = node.child("oci-archive") {
                let path = self.parse_str(a.arg(0), "ctm::invalid-path", AbsPath::parse);
                sources.push((
                    a.name.span,
                    path.map(|p| ImageSource::OciArchive { path: p.value }),
                ));
            }
            let mut parent = None;
            if let Some(f) = node.child("from") {
                let from = self.parse_str(f.arg(0), "ctm::invalid-name", Name::parse);
                let network = f
                    .prop("network")
                    .and_then(|n| n.value.as_bool())
                    .unwrap_or(false);
                let steps = self.build_steps(node);
                if let Some(from) = &from {
                    parent = Some(from.clone().map(|n| n.to_string()));
                }
                sources.push((
                    f.name.span,
                    from.zip(steps).map(|(from, steps)| ImageSource::Build {
                        from: from.value,
                        network,
                        steps,
                    }),
                ));
            } else if let Some(step) = node
                .children
                .iter()
                .find(|c| matches!(c.name.value.as_str(), "run" | "copy" | "env"))
            {
                self.push(
                    Diagnostic::error(
                        "ctm::build-without-from",
                        format!(
                            "image `{name}` has a `{}` step but no `from`",
                            step.name.value
                        ),
                        step.name.span,
                    )
                    .with_label("a build step")
                    .with_help("add `from \"IMAGE\"`: the image the steps start from"),
                );
                sources.push((step.name.span, None));
            }
            if let Some(parent) = parent {
                parents.insert(name.clone(), parent);
            }
            let packages = packages(self, node);
            // debootstrap installs an image's packages as it builds it; a
            // ready-made tree, tarball or OCI image is used as it is.
            if let [(source_span, Some(source))] = sources.as_slice()
                && !matches!(source, ImageSource::Debootstrap { .. })
            {
                let help = if matches!(source, ImageSource::Build { .. }) {
                    "a built image installs packages with a step: run \"apt-get install --yes NAME…\" (with `from … network=#true`)"
                } else {
                    "ctm never changes a directory, tarball or OCI image; list the packages on the containers (or their template) instead, where they are installed when the container is provisioned"
                };
                for p in node.children_named("packages") {
                    self.push(
                        Diagnostic::error(
                            "ctm::image-packages",
                            format!("image `{name}` is used as it is: it cannot get packages"),
                            p.span,
                        )
                        .with_label("packages for a ready-made tree")
                        .with_related(*source_span, "the image's source")
                        .with_help(help),
                    );
                }
            }
            match sources.as_slice() {
                [] => self.push(
                    Diagnostic::error(
                        "ctm::image-source",
                        format!("image `{name}` has no source"),
                        span,
                    )
                    .with_label("nothing to build this image from")
                    .with_help("add one of: debootstrap suite=\"bookworm\", directory \"/path\", tarball \"/path.tar.zst\", oci \"REGISTRY/REPOSITORY:TAG\", oci-archive \"/path.tar\", from \"IMAGE\""),
                ),
                [(_, Some(source))] => {
                    images.insert(
                        name.clone(),
                        (
                            span,
                            Image {
                                name: name.clone(),
                                source: source.clone(),
                                packages,
                                config: None,
                            },
                        ),
                    );
                }
                [(_, None)] => {}
                [(first, _), rest @ ..] => {
                    for (other, _) in rest {
                        self.push(
                            Diagnostic::error(
                                "ctm::image-source",
                                format!("image `{name}` has more than one source"),
                                *other,
                            )
                            .with_label("second source")
                            .with_related(*first, "first source")
                            .with_help("an image is built from exactly one of debootstrap, directory, tarball, oci, oci-archive or from"),
                        );
                    }
                }
            }
            // Whatever kept it out was reported above.
            if !images.contains_key(&name) {
                self.broken_images.insert(name);
            }
        }
        self.parents(&mut images, &parents);
        images
    }

    /// An image's `run`, `copy` and `env` steps in the order the file
    /// gives them (in TOML, the order of their `[[image.NAME.run]]`
    /// tables); `None` if one is invalid (and reported).
    fn build_steps(&mut self, node: &Node) -> Option<Vec<BuildStep>> {
        let mut nodes: Vec<&Node> = node
            .children
            .iter()
            .filter(|c| matches!(c.name.value.as_str(), "run" | "copy" | "env"))
            .collect();
        nodes.sort_by_key(|n| n.span.offset());
        let mut steps = Vec::new();
        let mut valid = true;
        for step in nodes {
            let parsed = match step.name.value.as_str() {
                "run" => self
                    .parse_str(step.arg(0), "ctm::invalid-value", |s| {
                        if s.trim().is_empty() {
                            Err("the command is empty".into())
                        } else if s.contains('\0') {
                            Err("a command may not contain a NUL character".into())
                        } else {
                            Ok(s.to_string())
                        }
                    })
                    .map(|c| BuildStep::Run { command: c.value }),
                "copy" => {
                    let source = self.parse_str(step.arg(0), "ctm::invalid-path", RelPath::parse);
                    let destination =
                        self.parse_str(step.arg(1), "ctm::invalid-path", AbsPath::parse);
                    source.zip(destination).map(|(s, d)| BuildStep::Copy {
                        source: s.value,
                        destination: d.value,
                        host_path: None,
                    })
                }
                _ => {
                    let env_name =
                        self.parse_str(step.arg(0), "ctm::invalid-value", EnvName::parse);
                    let value = self.parse_str(step.arg(1), "ctm::invalid-value", |s| {
                        match s.chars().find(|c| c.is_control()) {
                            Some(c) => Err(format!(
                                "`{}` may not appear in an environment value",
                                c.escape_default()
                            )),
                            None => Ok(s.to_string()),
                        }
                    });
                    env_name.zip(value).map(|(n, v)| BuildStep::Env {
                        name: n.value,
                        value: v.value,
                    })
                }
            };
            match parsed {
                Some(parsed) => steps.push(parsed),
                None => valid = false,
            }
        }
        valid.then_some(steps)
    }

    /// Checks that each build's parent is an image of the file and that
    /// no image is built, through its parents, from itself; an image that
    /// fails either is left out.
    fn parents(
        &mut self,
        images: &mut BTreeMap<Name, (SourceSpan, Image)>,
        parents: &BTreeMap<Name, Spanned<String>>,
    ) {
        let known: Vec<&str> = images
            .keys()
            .chain(&self.broken_images)
            .map(Name::as_str)
            .collect();
        let mut unknown = Vec::new();
        for (name, parent) in parents {
            let defined = images
                .keys()
                .chain(&self.broken_images)
                .any(|n| n.as_str() == parent.value);
            if !defined {
                let others: Vec<&str> = known
                    .iter()
                    .copied()
                    .filter(|k| *k != name.as_str())
                    .collect();
                unknown.push((name.clone(), unknown_reference("image", parent, &others)));
            }
        }
        for (name, diagnostic) in unknown {
            self.push(diagnostic);
            images.remove(&name);
            self.broken_images.insert(name);
        }
        // Each cycle once, named from its least member.
        let mut in_cycle = BTreeSet::new();
        for start in parents.keys() {
            if in_cycle.contains(start) {
                continue;
            }
            let mut path = vec![start.clone()];
            while let Some(next) = parents
                .get(path[path.len() - 1].as_str())
                .and_then(|p| Name::parse(&p.value).ok())
            {
                if next == *start {
                    let chain: Vec<String> = path
                        .iter()
                        .chain([start])
                        .map(|n| format!("`{n}`"))
                        .collect();
                    let mut diagnostic = Diagnostic::error(
                        "ctm::image-cycle",
                        format!("image `{start}` is built from itself: {}", chain.join(" → ")),
                        parents[start].span,
                    )
                    .with_label("from here")
                    .with_help("one image of the chain must start from a debootstrap, directory, tarball, oci or oci-archive source");
                    for other in &path[1..] {
                        diagnostic = diagnostic.with_related(
                            parents[other].span,
                            format!("`{other}` is built from here"),
                        );
                    }
                    self.push(diagnostic);
                    for member in path {
                        images.remove(&member);
                        self.broken_images.insert(member.clone());
                        in_cycle.insert(member);
                    }
                    break;
                }
                if path.contains(&next) || path.len() > parents.len() {
                    break;
                }
                path.push(next);
            }
        }
    }

    /// An `oci` source: the reference, with the `digest` property folded
    /// in (both may name one, and must then agree).
    fn oci(&mut self, node: &Node) -> Option<ImageSource> {
        let reference = self.parse_str(
            node.arg(0),
            "ctm::invalid-reference",
            oci::OciReference::parse,
        );
        let digest = self.parse_str(
            node.prop("digest"),
            "ctm::invalid-value",
            oci::Digest::parse,
        );
        let credentials = self.parse_str(
            node.prop("credentials"),
            "ctm::invalid-path",
            AbsPath::parse,
        );
        let insecure = node
            .prop("insecure")
            .and_then(|i| i.value.as_bool())
            .unwrap_or(false);
        let reference = reference?;
        let pinned = match (reference.value.digest(), digest) {
            (Some(inline), Some(prop)) if *inline != prop.value => {
                self.push(
                    Diagnostic::error(
                        "ctm::image-digest",
                        "the reference and `digest` name different digests",
                        prop.span,
                    )
                    .with_label("this digest")
                    .with_related(reference.span, "the reference's digest")
                    .with_help(
                        "keep one of them: `digest` pins the image as well as `@sha256:…` does",
                    ),
                );
                return None;
            }
            (_, Some(prop)) => reference.value.with_digest(prop.value),
            (_, None) => reference.value,
        };
        Some(ImageSource::Oci {
            reference: pinned,
            credentials: credentials.map(|c| c.value),
            insecure,
        })
    }

    /// The volumes, each with its quota; one with a bad quota is left out
    /// (and references to it are not reported again).
    fn volumes(&mut self, doc: &Document) -> BTreeMap<Name, Volume> {
        let mut volumes = BTreeMap::new();
        for (name, (_, node)) in self.named(doc, "volume") {
            let quota = match node.child("quota") {
                None => None,
                Some(q) => match self.parse_str(q.arg(0), "ctm::invalid-value", Quota::parse) {
                    Some(quota) => Some(quota.value),
                    None => {
                        self.broken_volumes.insert(name);
                        continue;
                    }
                },
            };
            let backup = node
                .child("backup")
                .and_then(|b| container::backup(self, b));
            volumes.insert(
                name.clone(),
                Volume {
                    name,
                    quota,
                    backup,
                },
            );
        }
        volumes
    }

    fn networks(&mut self, doc: &Document, has_uplink: bool) -> BTreeMap<Name, NetworkEntry> {
        let mut networks = BTreeMap::new();
        for (name, (_, node)) in self.named(doc, "network") {
            let bridge = node.child("bridge").and_then(|b| {
                self.parse_str(b.arg(0), "ctm::invalid-interface-name", IfName::parse)
            });
            let ipv4 = node.child("ipv4").and_then(|n| {
                let address = self.parse_str(n.arg(0), "ctm::invalid-address", |s| {
                    let net: Ipv4Net = parse_interface_address(s, "IPv4")?;
                    address::check_subnet_v4(&net)?;
                    Ok(net)
                })?;
                Some((
                    Subnet {
                        address: address.value,
                        nat: self.nat(n, has_uplink),
                    },
                    address.span,
                ))
            });
            let ipv6 = node.child("ipv6").and_then(|n| {
                let address = self.parse_str(n.arg(0), "ctm::invalid-address", |s| {
                    let net: Ipv6Net = parse_interface_address(s, "IPv6")?;
                    address::check_subnet_v6(&net)?;
                    Ok(net)
                })?;
                Some((
                    Subnet {
                        address: address.value,
                        nat: self.nat(n, has_uplink),
                    },
                    address.span,
                ))
            });
            let dns = self.dns(node);
            let egress = self.egress(node, has_uplink);
            let (mut ipv4, mut ipv6) = (ipv4, ipv6);
            // `egress "nat"` masquerades every family the network has, as
            // `nat` on each subnet would.
            if egress == Some(Egress::Nat) {
                for subnet in ipv4.iter_mut().map(|(s, _)| &mut s.nat) {
                    *subnet = true;
                }
                for subnet in ipv6.iter_mut().map(|(s, _)| &mut s.nat) {
                    *subnet = true;
                }
            }
            let nat = ipv4.as_ref().is_some_and(|(s, _)| s.nat)
                || ipv6.as_ref().is_some_and(|(s, _)| s.nat);
            let egress = egress.unwrap_or(if nat { Egress::Nat } else { Egress::Routed });
            // A missing or invalid bridge was reported by the checker or above.
            let Some(bridge) = bridge else {
                self.broken_networks.insert(name);
                continue;
            };
            networks.insert(
                name.clone(),
                NetworkEntry {
                    network: Network {
                        name,
                        bridge: bridge.value,
                        ipv4: ipv4.map(|(s, _)| s),
                        ipv6: ipv6.map(|(s, _)| s),
                        dns,
                        egress,
                    },
                    ipv4_span: ipv4.map(|(_, span)| span),
                    ipv6_span: ipv6.map(|(_, span)| span),
                    ipv4_invalid: ipv4.is_none() && node.child("ipv4").is_some(),
                    ipv6_invalid: ipv6.is_none() && node.child("ipv6").is_some(),
                },
            );
        }
        networks
    }

    /// A network's name servers: addresses, each once, at most three
    /// (glibc's resolver reads no more).
    fn dns(&mut self, network: &Node) -> Vec<IpAddr> {
        const MAX: usize = 3;
        let Some(node) = network.child("dns") else {
            return Vec::new();
        };
        let mut servers: Vec<IpAddr> = Vec::new();
        for arg in &node.args {
            let parsed = self.parse_str(Some(arg), "ctm::invalid-address", |s| {
                s.parse::<IpAddr>()
                    .map_err(|_| format!("`{s}` is not an IPv4 or IPv6 address"))
            });
            if let Some(server) = parsed {
                if servers.contains(&server.value) {
                    self.push(
                        Diagnostic::error(
                            "ctm::invalid-value",
                            format!("name server {} is listed twice", server.value),
                            server.span,
                        )
                        .with_label("again here"),
                    );
                } else if servers.len() == MAX {
                    self.push(
                        Diagnostic::error(
                            "ctm::invalid-value",
                            format!(
                                "at most {MAX} name servers: a container's resolver reads no more"
                            ),
                            server.span,
                        )
                        .with_label("one too many"),
                    );
                } else {
                    servers.push(server.value);
                }
            }
        }
        servers
    }

    /// A network's `egress`, checked against the `nat` of its subnets;
    /// `None` when the host file does not say (or says it wrongly).
    fn egress(&mut self, network: &Node, has_uplink: bool) -> Option<Egress> {
        let node = network.child("egress")?;
        let egress = self.parse_str(node.arg(0), "ctm::invalid-value", Egress::parse)?;
        match egress.value {
            Egress::Nat if !has_uplink => self.push(
                Diagnostic::error(
                    "ctm::nat-without-uplink",
                    "`egress \"nat\"` needs the host's uplink",
                    egress.span,
                )
                .with_label("masquerade out of which interface?")
                .with_help("name the uplink: host \"NAME\" { uplink \"eth0\"; }"),
            ),
            Egress::Nat => {}
            Egress::Routed | Egress::Isolated => {
                for family in ["ipv4", "ipv6"] {
                    let Some(nat) = network.child(family).and_then(|f| f.child("nat")) else {
                        continue;
                    };
                    self.push(
                        Diagnostic::error(
                            "ctm::egress-conflict",
                            format!(
                                "`nat` on the {family} subnet contradicts `egress \"{}\"`",
                                egress.value.as_str()
                            ),
                            nat.name.span,
                        )
                        .with_label("masquerades through the uplink")
                        .with_related(egress.span, "the network's egress policy")
                        .with_help(format!(
                            "remove `nat`, or make the policy `egress \"nat\"`{}",
                            if egress.value == Egress::Isolated {
                                ": an isolated network has no way out to masquerade"
                            } else {
                                ""
                            }
                        )),
                    );
                }
            }
        }
        Some(egress.value)
    }

    fn nat(&mut self, family: &Node, has_uplink: bool) -> bool {
        let Some(nat) = family.child("nat") else {
            return false;
        };
        if !has_uplink {
            self.push(
                Diagnostic::error(
                    "ctm::nat-without-uplink",
                    "`nat` needs the host's uplink",
                    nat.name.span,
                )
                .with_label("masquerade out of which interface?")
                .with_help("name the uplink: host \"NAME\" { uplink \"eth0\"; }"),
            );
        }
        true
    }

    fn tunnels(&mut self, doc: &Document) -> BTreeMap<IfName, TunnelEntry> {
        let mut tunnels = BTreeMap::new();
        let mut seen: BTreeMap<IfName, SourceSpan> = BTreeMap::new();
        // The kernel has one VXLAN device per id, port and family in a
        // network namespace (`vxlan_vni_in_use`: "already exists").
        let mut vxlans: BTreeMap<(u32, u16, bool), (IfName, SourceSpan)> = BTreeMap::new();
        for node in doc.nodes_named("tunnel") {
            let Some(name) =
                self.parse_str(node.arg(0), "ctm::invalid-interface-name", IfName::parse)
            else {
                continue;
            };
            if let Some(first) = seen.get(&name.value) {
                self.push(
                    Diagnostic::error(
                        "ctm::duplicate-name",
                        format!("tunnel `{}` is defined twice", name.value),
                        name.span,
                    )
                    .with_label("defined again here")
                    .with_related(*first, "first defined here"),
                );
                continue;
            }
            seen.insert(name.value.clone(), name.span);
            let addresses: Vec<Spanned<IpNet>> = node
                .children_named("address")
                .filter_map(|a| {
                    self.parse_str(a.arg(0), "ctm::invalid-address", |s| {
                        parse_interface_address::<IpNet>(s, "IP")
                    })
                })
                .collect();
            let mtu = node
                .child("mtu")
                .and_then(|m| self.mtu(m.arg(0)).map(|mtu| (mtu, m.name.span)));
            let Some(kind) = self.tunnel_kind(node) else {
                continue;
            };
            let underlay_mtu = self.mtu(kind.prop("underlay-mtu"));
            let Some((local, encapsulation)) = (match kind.name.value.as_str() {
                "gre" => self.gre(kind),
                _ => self.vxlan(kind),
            }) else {
                continue;
            };
            if let Encapsulation::Vxlan { id, port, .. } = &encapsulation
                && let Some(id_span) = kind.prop("id").map(|v| v.span)
            {
                let key = (id.get(), port.get(), local.is_ipv4());
                if let Some((other, first)) = vxlans.get(&key) {
                    self.push(
                        Diagnostic::error(
                            "ctm::duplicate-vxlan",
                            format!(
                                "tunnel `{other}` already uses VXLAN id {id} on port {port} over {}",
                                if key.2 { "IPv4" } else { "IPv6" }
                            ),
                            id_span,
                        )
                        .with_label("used again here")
                        .with_related(*first, "first used here")
                        .with_help(
                            "the kernel makes one VXLAN link per id and port: give this tunnel another id (both ends), or another port",
                        ),
                    );
                    continue;
                }
                vxlans.insert(key, (name.value.clone(), id_span));
            }
            let tunnel = Tunnel {
                name: name.value.clone(),
                local,
                encapsulation,
                mtu: mtu.map(|(m, _)| m),
                underlay_mtu,
                addresses: addresses.iter().map(|a| a.value).collect(),
            };
            let Some(derived) = tunnel.derived_mtu() else {
                let span = kind.prop("underlay-mtu").map_or(kind.name.span, |v| v.span);
                self.push(
                    Diagnostic::error(
                        "ctm::tunnel-mtu",
                        format!(
                            "an underlay MTU of {} bytes cannot carry {} with its {} bytes of headers",
                            tunnel.underlay_mtu.unwrap_or(Mtu::ETHERNET),
                            tunnel.kind(),
                            tunnel.overhead()
                        ),
                        span,
                    )
                    .with_label("too small"),
                );
                continue;
            };
            if let Some((mtu, mtu_span)) = mtu
                && mtu > derived
            {
                let underlay = tunnel.underlay_mtu.unwrap_or(Mtu::ETHERNET);
                self.push(
                    Diagnostic::error(
                        "ctm::tunnel-mtu",
                        format!(
                            "an MTU of {mtu} is more than a {underlay}-byte underlay carries over {} (at most {derived})",
                            tunnel.kind()
                        ),
                        node.child("mtu").and_then(|m| m.arg(0)).map_or(mtu_span, |v| v.span),
                    )
                    .with_label(format!("{} bytes of headers do not fit", tunnel.overhead()))
                    .with_help(format!(
                        "lower it to {derived} or less, or, if every link between the endpoints carries more, say so: underlay-mtu={}",
                        u32::from(mtu.get()) + u32::from(tunnel.overhead())
                    )),
                );
                continue;
            }
            tunnels.insert(
                name.value,
                TunnelEntry {
                    tunnel,
                    address_spans: addresses.iter().map(|a| a.span).collect(),
                },
            );
        }
        tunnels
    }

    /// The one `gre` or `vxlan` node of a tunnel.
    fn tunnel_kind<'d>(&mut self, tunnel: &'d Node) -> Option<&'d Node> {
        let mut kinds = tunnel
            .children
            .iter()
            .filter(|c| matches!(c.name.value.as_str(), "gre" | "vxlan"));
        let Some(first) = kinds.next() else {
            self.push(
                Diagnostic::error(
                    "ctm::missing-node",
                    "`tunnel` needs `gre` or `vxlan`",
                    tunnel.name.span,
                )
                .with_label("the kind of tunnel is missing here")
                .with_help(
                    "add one, for example: gre local=\"192.0.2.1\" remote=\"198.51.100.7\", \
                     or vxlan id=42 local=\"192.0.2.1\" remote=\"198.51.100.7\"",
                ),
            );
            return None;
        };
        // A second node of the same kind is `ctm::duplicate-node` already.
        if let Some(other) = kinds.find(|k| k.name.value != first.name.value) {
            self.push(
                Diagnostic::error(
                    "ctm::tunnel-kind",
                    "a tunnel is either `gre` or `vxlan`, not both",
                    other.name.span,
                )
                .with_label("second kind")
                .with_related(first.name.span, "first kind")
                .with_help("make a tunnel of each kind, with its own name"),
            );
            return None;
        }
        Some(first)
    }

    /// A GRE tunnel's endpoints: one family, not the same address.
    fn gre(&mut self, gre: &Node) -> Option<(IpAddr, Encapsulation)> {
        let local = self.parse_str(gre.prop("local"), "ctm::invalid-address", parse_ip);
        let remote = self.parse_str(gre.prop("remote"), "ctm::invalid-address", parse_ip);
        let (local, remote) = (local?, remote?);
        self.endpoints(&local, &remote, "gre", "ip6gre").then_some((
            local.value,
            Encapsulation::Gre {
                remote: remote.value,
            },
        ))
    }

    /// Two endpoints of one family, not the same address; `v4` and `v6`
    /// name the kind of tunnel for each family in the help.
    fn endpoints(
        &mut self,
        local: &Spanned<IpAddr>,
        remote: &Spanned<IpAddr>,
        v4: &str,
        v6: &str,
    ) -> bool {
        if local.value.is_ipv4() != remote.value.is_ipv4() {
            self.push(
                Diagnostic::error(
                    "ctm::tunnel-endpoints",
                    "the tunnel's endpoints are of different address families",
                    remote.span,
                )
                .with_label("this endpoint")
                .with_related(local.span, "and this one")
                .with_help(format!(
                    "use two IPv4 addresses ({v4}) or two IPv6 addresses ({v6})"
                )),
            );
            return false;
        }
        if local.value == remote.value {
            self.push(
                Diagnostic::error(
                    "ctm::tunnel-endpoints",
                    "the tunnel's local and remote endpoints are the same address",
                    remote.span,
                )
                .with_label("same as `local`"),
            );
            return false;
        }
        true
    }

    /// A VXLAN tunnel: its id, its peer (`remote` or a multicast `group`,
    /// which needs `device`), port and underlay device.
    fn vxlan(&mut self, vxlan: &Node) -> Option<(IpAddr, Encapsulation)> {
        let id = vxlan.prop("id").and_then(|value| {
            let i = value.value.as_integer()?;
            Vni::from_integer(i)
                .map_err(|message| {
                    self.push(
                        Diagnostic::error("ctm::invalid-value", message, value.span)
                            .with_label("not a VXLAN id"),
                    );
                })
                .ok()
        });
        let port = match vxlan.prop("port") {
            None => Port::from_integer(i128::from(VXLAN_PORT)).ok(),
            Some(value) => value
                .value
                .as_integer()
                .and_then(|i| match Port::from_integer(i) {
                    Ok(p) => Some(p),
                    Err(message) => {
                        self.push(
                            Diagnostic::error("ctm::invalid-port", message, value.span)
                                .with_label("not a port"),
                        );
                        None
                    }
                }),
        };
        let device = vxlan
            .prop("device")
            .map(|value| self.parse_str(Some(value), "ctm::invalid-interface-name", IfName::parse));
        let local = self.parse_str(vxlan.prop("local"), "ctm::invalid-address", parse_ip);
        let remote = self.parse_str(vxlan.prop("remote"), "ctm::invalid-address", parse_ip);
        let group = self.parse_str(vxlan.prop("group"), "ctm::invalid-address", parse_ip);
        let peer = match (vxlan.prop("remote"), vxlan.prop("group")) {
            (Some(_), Some(g)) => {
                self.push(
                    Diagnostic::error(
                        "ctm::vxlan-peer",
                        "a VXLAN tunnel sends to a `remote` or to a `group`, not both",
                        g.span,
                    )
                    .with_label("second peer")
                    .with_help("keep `remote` for one peer, `group` for a multicast group of them"),
                );
                return None;
            }
            (None, None) => {
                self.push(
                    Diagnostic::error(
                        "ctm::vxlan-peer",
                        "a VXLAN tunnel needs `remote` or `group`",
                        vxlan.name.span,
                    )
                    .with_label("sends to whom?")
                    .with_help("add the peer's address: remote=\"198.51.100.7\""),
                );
                return None;
            }
            (Some(_), None) => remote.map(|r| (r, false)),
            (None, Some(_)) => group.map(|g| (g, true)),
        };
        let (id, port, local, (peer, is_group)) = (id?, port?, local?, peer?);
        let device = match device {
            None => None,
            Some(parsed) => Some(parsed?.value),
        };
        if !self.endpoints(&local, &peer, "vxlan over IPv4", "vxlan over IPv6") {
            return None;
        }
        if is_group {
            if !peer.value.is_multicast() {
                self.push(
                    Diagnostic::error(
                        "ctm::vxlan-peer",
                        format!("{} is not a multicast address", peer.value),
                        peer.span,
                    )
                    .with_label("not multicast")
                    .with_help("a group is 224.0.0.0/4 (IPv4) or ff00::/8 (IPv6); for one peer, write remote= instead"),
                );
                return None;
            }
            if device.is_none() {
                self.push(
                    Diagnostic::error(
                        "ctm::vxlan-peer",
                        "a multicast group needs the underlay `device` to join it on",
                        peer.span,
                    )
                    .with_label("joined on which interface?")
                    .with_help("name the interface: device=\"eth0\""),
                );
                return None;
            }
        } else if peer.value.is_multicast() {
            self.push(
                Diagnostic::error(
                    "ctm::vxlan-peer",
                    format!("{} is a multicast address", peer.value),
                    peer.span,
                )
                .with_label("multicast")
                .with_help("write it as group= (with device=), or give the peer's own address"),
            );
            return None;
        }
        let peer = if is_group {
            VxlanPeer::Group(peer.value)
        } else {
            VxlanPeer::Remote(peer.value)
        };
        Some((
            local.value,
            Encapsulation::Vxlan {
                id,
                peer,
                port,
                device,
            },
        ))
    }

    /// An MTU value (`mtu`, `underlay-mtu`).
    fn mtu(&mut self, value: Option<&Spanned<Value>>) -> Option<Mtu> {
        let value = value?;
        let i = value.value.as_integer()?;
        match Mtu::from_integer(i) {
            Ok(m) => Some(m),
            Err(message) => {
                self.push(
                    Diagnostic::error("ctm::invalid-value", message, value.span)
                        .with_label("not an MTU"),
                );
                None
            }
        }
    }

    /// The host's ends of containers' extra networks are the host's
    /// interfaces too: none may take a bridge's, a tunnel's or the
    /// uplink's name (a derived name can only meet one written so).
    fn host_sides(
        &mut self,
        spans: &[container::NetworkSpan],
        uplink: &Option<Spanned<IfName>>,
        networks: &BTreeMap<Name, NetworkEntry>,
        tunnels: &BTreeMap<IfName, TunnelEntry>,
    ) {
        for s in spans {
            let name = &s.host_interface;
            let taken = uplink.as_ref().is_some_and(|u| &u.value == name)
                || networks.values().any(|n| &n.network.bridge == name)
                || tunnels.contains_key(name);
            if taken {
                self.push(
                    Diagnostic::error(
                        "ctm::duplicate-interface",
                        format!(
                            "interface `{name}`, the host's end of container `{}`'s interface `{}`, is used twice",
                            s.container, s.interface
                        ),
                        s.span,
                    )
                    .with_label("its host end takes a name in use")
                    .with_help("rename the bridge, tunnel or uplink: ctm derives the name of the host's end from the container's name"),
                );
            }
        }
    }

    /// Bridges, tunnels and the uplink share the kernel's interface names.
    fn interface_names(&mut self, doc: &Document, uplink: &Option<Spanned<IfName>>) {
        let mut seen: BTreeMap<String, SourceSpan> = BTreeMap::new();
        if let Some(uplink) = uplink {
            seen.insert(uplink.value.to_string(), uplink.span);
        }
        let bridges = doc
            .nodes_named("network")
            .filter_map(|n| n.child("bridge").and_then(|b| b.arg(0)));
        // A tunnel defined twice is reported as a duplicate name already.
        let mut tunnel_names = BTreeSet::new();
        let tunnels = doc
            .nodes_named("tunnel")
            .filter_map(|t| t.arg(0))
            .filter(|name| name.value.as_str().is_none_or(|n| tunnel_names.insert(n)));
        for value in bridges.chain(tunnels) {
            let Some(name) = value.value.as_str() else {
                continue;
            };
            if let Some(first) = seen.get(name) {
                if *first != value.span {
                    self.push(
                        Diagnostic::error(
                            "ctm::duplicate-interface",
                            format!("interface `{name}` is used twice"),
                            value.span,
                        )
                        .with_label("used again here")
                        .with_related(*first, "first used here")
                        .with_help(
                            "bridges, tunnels and the uplink each need their own interface name",
                        ),
                    );
                }
                continue;
            }
            seen.insert(name.to_string(), value.span);
        }
    }

    fn overlaps(
        &mut self,
        networks: &BTreeMap<Name, NetworkEntry>,
        tunnels: &BTreeMap<IfName, TunnelEntry>,
        links: Vec<(IpNet, SourceSpan, String)>,
    ) {
        let mut subnets = links;
        for (name, entry) in networks {
            if let (Some(s), Some(span)) = (entry.network.ipv4, entry.ipv4_span) {
                subnets.push((
                    IpNet::V4(s.address.trunc()),
                    span,
                    format!("network `{name}`"),
                ));
            }
            if let (Some(s), Some(span)) = (entry.network.ipv6, entry.ipv6_span) {
                subnets.push((
                    IpNet::V6(s.address.trunc()),
                    span,
                    format!("network `{name}`"),
                ));
            }
        }
        for (name, entry) in tunnels {
            for (address, span) in entry.tunnel.addresses.iter().zip(&entry.address_spans) {
                subnets.push((address.trunc(), *span, format!("tunnel `{name}`")));
            }
        }
        // Source order, so the later definition is the one blamed.
        subnets.sort_by_key(|(_, span, _)| span.offset());
        let nets: Vec<IpNet> = subnets.iter().map(|(net, _, _)| *net).collect();
        for (i, earlier) in first_overlaps(&nets).into_iter().enumerate() {
            let Some(j) = earlier else { continue };
            let (b, b_span, b_owner) = &subnets[i];
            let (a, a_span, a_owner) = &subnets[j];
            self.push(
                Diagnostic::error(
                    "ctm::overlapping-subnets",
                    format!("{b} of {b_owner} overlaps {a} of {a_owner}"),
                    *b_span,
                )
                .with_label("overlaps")
                .with_related(*a_span, format!("{a_owner} has {a}"))
                .with_help("give every network, tunnel and link its own address range"),
            );
        }
    }
}

/// A subnet as a range of addresses of one family: (IPv6?, first, last).
fn range(net: &IpNet) -> (bool, u128, u128) {
    match net {
        IpNet::V4(n) => (
            false,
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (true, u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// For each subnet, the first one before it that shares an address with
/// it, in O(n log n) (comparing every pair was quadratic: 45,000 pairs for
/// 100 networks and 50 tunnels, and 5·10⁹ for 100,000).
///
/// Two prefixes share an address only if one holds the other. Those that
/// hold subnet `b` are its supernets, at most one per prefix length: looked
/// up by value. Those `b` holds, or that start where `b` does, have their
/// first address within `b`'s range: the earliest of those seen so far is
/// a range minimum, kept in a segment tree over the sorted first
/// addresses.
fn first_overlaps(nets: &[IpNet]) -> Vec<Option<usize>> {
    let ranges: Vec<(bool, u128, u128)> = nets.iter().map(range).collect();
    let mut starts: Vec<(bool, u128)> = ranges.iter().map(|&(v6, lo, _)| (v6, lo)).collect();
    starts.sort_unstable();
    starts.dedup();
    let mut earliest = SegmentMin::new(starts.len());
    let mut by_net: HashMap<IpNet, usize> = HashMap::with_capacity(nets.len());
    let mut found = Vec::with_capacity(nets.len());
    for (i, (net, &(v6, lo, hi))) in nets.iter().zip(&ranges).enumerate() {
        let from = starts.partition_point(|&s| s < (v6, lo));
        let to = starts.partition_point(|&s| s <= (v6, hi));
        let within = earliest.min(from, to);
        let holding = (0..=net.prefix_len())
            .filter_map(|len| {
                let supernet = match net {
                    IpNet::V4(n) => Ipv4Net::new(n.network(), len)
                        .ok()
                        .map(|s| IpNet::V4(s.trunc())),
                    IpNet::V6(n) => Ipv6Net::new(n.network(), len)
                        .ok()
                        .map(|s| IpNet::V6(s.trunc())),
                };
                by_net.get(&supernet?).copied()
            })
            .min();
        found.push(within.into_iter().chain(holding).min());
        earliest.set(from, i);
        by_net.entry(net.trunc()).or_insert(i);
    }
    found
}

/// The least value set in a range of positions, each set once or more.
struct SegmentMin {
    size: usize,
    tree: Vec<usize>,
}

impl SegmentMin {
    fn new(size: usize) -> SegmentMin {
        SegmentMin {
            size,
            tree: vec![usize::MAX; 2 * size],
        }
    }

    /// Position `at` holds at most `value`.
    fn set(&mut self, at: usize, value: usize) {
        let mut node = at + self.size;
        while node > 0 && self.tree[node] > value {
            self.tree[node] = value;
            node /= 2;
        }
    }

    /// The least value in positions `from..to`, if any is set.
    fn min(&self, from: usize, to: usize) -> Option<usize> {
        let (mut lo, mut hi) = (from + self.size, to + self.size);
        let mut least = usize::MAX;
        while lo < hi {
            if lo % 2 == 1 {
                least = least.min(self.tree[lo]);
                lo += 1;
            }
            if hi % 2 == 1 {
                hi -= 1;
                least = least.min(self.tree[hi]);
            }
            lo /= 2;
            hi /= 2;
        }
        (least != usize::MAX).then_some(least)
    }
}

/// `packages` nodes of an image or container, each package once, in order.
pub(crate) fn packages(v: &mut Validator, node: &Node) -> Vec<PackageName> {
    let mut out: Vec<PackageName> = Vec::new();
    // Names as written, which are the names parsed.
    let mut seen: HashSet<&str> = HashSet::new();
    for packages in node.children_named("packages") {
        for arg in &packages.args {
            if let Some(p) = v.parse_str(Some(arg), "ctm::invalid-package", PackageName::parse)
                && seen.insert(arg.value.as_str().unwrap_or_default())
            {
                out.push(p.value);
            }
        }
    }
    out
}

/// A reference to something that does not exist, with the closest name.
pub(crate) fn unknown_reference(kind: &str, name: &Spanned<String>, known: &[&str]) -> Diagnostic {
    Diagnostic::error(
        "ctm::unknown-reference",
        format!("there is no {kind} named `{}`", name.value),
        name.span,
    )
    .with_label(format!("unknown {kind}"))
    .with_help(if known.is_empty() {
        format!("define it with: {kind} \"{}\" {{ … }}", name.value)
    } else {
        did_you_mean(&name.value, known)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The pairwise comparison `first_overlaps` replaced, as the reference.
    fn first_overlaps_pairwise(nets: &[IpNet]) -> Vec<Option<usize>> {
        nets.iter()
            .enumerate()
            .map(|(i, b)| {
                nets[..i]
                    .iter()
                    .position(|a| a.contains(&b.network()) || b.contains(&a.network()))
            })
            .collect()
    }

    fn nets(subnets: &[&str]) -> Vec<IpNet> {
        subnets.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn first_overlaps_agree_with_comparing_every_pair() {
        let cases: &[&[&str]] = &[
            &[],
            &["10.0.0.0/24"],
            &["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/23"],
            &["10.0.0.0/24", "10.0.0.0/24"],
            // The holder and the held are not neighbours in source order,
            // and a disjoint subnet sorts between them by size.
            &["10.2.0.0/16", "11.0.0.0/8", "10.0.0.0/8", "10.1.0.0/16"],
            &["10.0.0.0/8", "10.255.255.255/32"],
            &["10.0.0.0/9", "10.128.0.0/9"],
            // The same bits in both families share no address.
            &["0.0.0.0/0", "::/96"],
            &["fd00::/64", "fd00:0:0:1::/64", "fd00::/48"],
            &["fd00::/64", "fd00:0:0:1::/64", "10.0.0.0/8"],
        ];
        for case in cases {
            let nets = nets(case);
            assert_eq!(
                first_overlaps(&nets),
                first_overlaps_pairwise(&nets),
                "{case:?}"
            );
        }
        assert_eq!(
            first_overlaps(&nets(&["10.2.0.0/16", "11.0.0.0/8", "10.0.0.0/8"])),
            [None, None, Some(0)]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Subnets crowded into a few addresses, so that many overlap.
        #[test]
        fn first_overlaps_agree_on_generated_subnets(
            subnets in prop::collection::vec((any::<bool>(), 0u8..16, 0u8..=32), 0..40)
        ) {
            let nets: Vec<IpNet> = subnets
                .iter()
                .map(|&(v6, bits, len)| {
                    if v6 {
                        let addr = std::net::Ipv6Addr::from(u128::from(bits) << 124);
                        IpNet::V6(Ipv6Net::new(addr, len * 4).unwrap().trunc())
                    } else {
                        let addr = std::net::Ipv4Addr::from(u32::from(bits) << 28);
                        IpNet::V4(Ipv4Net::new(addr, len).unwrap().trunc())
                    }
                })
                .collect();
            prop_assert_eq!(first_overlaps(&nets), first_overlaps_pairwise(&nets));
        }
    }
}
