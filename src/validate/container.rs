//! Containers and templates: read each node once into a [`Partial`]
//! (reporting bad values where they are written), resolve `from` chains,
//! merge, then check what only the merged container can show: references,
//! addresses, forwards, and Docker/nesting conflicts.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use miette::SourceSpan;

use super::address::{self, Allocator};
use super::{NetworkEntry, Validator, packages, unknown_reference};
use crate::config::{Document, Node, Spanned};
use crate::diagnostic::Diagnostic;
use crate::lock::{Addresses, Assigned, Lock};
use crate::model::*;

/// What one `container` or `template` node says, before inheritance.
#[derive(Debug, Clone, Default)]
struct Partial {
    from: Option<Spanned<String>>,
    /// Outer `Some`: an `image` node is present (even if its value was bad).
    image: Option<Option<Spanned<String>>>,
    network: Option<Attach>,
    /// `network` given again: the container's other networks, in order.
    more_networks: Vec<Attach>,
    forwards: Vec<Spanned<Forward>>,
    binds: Vec<Spanned<Bind>>,
    volumes: Vec<Spanned<MountDraft>>,
    memory: Option<ByteSize>,
    cpu_quota: Option<CpuQuota>,
    ssh: Option<SshPartial>,
    docker: Option<SourceSpan>,
    nested: Option<SourceSpan>,
    boot: Option<SourceSpan>,
    /// The nodes whose work the container's own systemd does (`network`,
    /// `ssh`, `docker`, `nested`, `packages`): an application container has
    /// none.
    needs_init: Vec<(&'static str, SourceSpan)>,
    autostart: Option<bool>,
    root: Option<RootMode>,
    packages: Vec<PackageName>,
    environment: BTreeMap<EnvName, EnvValue>,
    checks: Vec<Spanned<HealthCheck>>,
    /// `allow` and `deny`, in the order written.
    rules: Vec<Spanned<RuleDraft>>,
    /// Each at the span of its `via`, which is checked against the links.
    routes: Vec<Spanned<Route>>,
    backup: Option<BackupSchedule>,
}

/// A firewall rule whose `from` is not yet checked against the networks.
#[derive(Debug, Clone)]
struct RuleDraft {
    verdict: Verdict,
    traffic: Traffic,
    from: Option<Spanned<String>>,
}

/// A `volume` node of a container: the name is checked once the volumes
/// are known.
#[derive(Debug, Clone)]
struct MountDraft {
    volume: Spanned<String>,
    target: AbsPath,
    read_only: bool,
    idmap: bool,
}

#[derive(Debug, Clone)]
struct Attach {
    network: Spanned<String>,
    ipv4: Option<Spanned<Ipv4Addr>>,
    ipv6: Option<Spanned<Ipv6Addr>>,
    /// `interface=`: the name inside the container of a network after
    /// the first (the first is always nspawn's `host0`).
    interface: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Default)]
struct SshPartial {
    user: Option<UserName>,
    keys: Vec<SshKey>,
}

impl Partial {
    /// Every network the container is on, with its place: 0 the first.
    fn attaches(&self) -> impl Iterator<Item = (usize, &Attach)> {
        self.network.iter().chain(&self.more_networks).enumerate()
    }

    fn attach_mut(&mut self, index: usize) -> Option<&mut Attach> {
        match index {
            0 => self.network.as_mut(),
            i => self.more_networks.get_mut(i - 1),
        }
    }

    fn read(v: &mut Validator, node: &Node) -> Partial {
        let mut p = Partial {
            from: string_arg(node.child("from")),
            image: node.child("image").map(|i| string_arg(Some(i))),
            ..Partial::default()
        };
        for n in node.children_named("network") {
            let Some(name) = string_arg(Some(n)) else {
                continue;
            };
            let attach = Attach {
                network: name,
                ipv4: v.parse_str(n.prop("ipv4"), "ctm::invalid-address", |s| {
                    s.parse::<Ipv4Addr>()
                        .map_err(|_| format!("`{s}` is not an IPv4 address"))
                }),
                ipv6: v.parse_str(n.prop("ipv6"), "ctm::invalid-address", |s| {
                    s.parse::<Ipv6Addr>()
                        .map_err(|_| format!("`{s}` is not an IPv6 address"))
                }),
                interface: string_arg_of(n.prop("interface")),
            };
            if p.network.is_none() {
                if let Some(interface) = &attach.interface {
                    v.push(
                        Diagnostic::error(
                            "ctm::first-network-interface",
                            "the first network's interface is nspawn's `host0` and cannot be renamed",
                            interface.span,
                        )
                        .with_label("on the container's first network")
                        .with_help("remove `interface`: only the networks after the first take one"),
                    );
                }
                p.network = Some(attach);
            } else {
                p.more_networks.push(attach);
            }
        }
        for f in node.children_named("forward") {
            let protocol = v.parse_str(f.arg(0), "ctm::invalid-value", Protocol::parse);
            let host = port(v, f.prop("host"));
            let container = port(v, f.prop("container"));
            let loopback = f.prop("loopback");
            if let (Some(protocol), Some(loopback)) = (&protocol, loopback)
                && protocol.value == Protocol::Udp
                && loopback.value.as_bool() == Some(true)
            {
                v.push(
                    Diagnostic::error(
                        "ctm::loopback-udp",
                        "a `udp` forward cannot take connections on loopback",
                        loopback.span,
                    )
                    .with_label("udp on 127.0.0.1 and ::1")
                    .with_related(protocol.span, "udp here")
                    .with_help("systemd-socket-proxyd relays streams only; remove `loopback`, or reach the container at its own address from the host"),
                );
            }
            if let (Some(protocol), Some(host), Some(container)) = (protocol, host, container) {
                p.forwards.push(Spanned::new(
                    Forward {
                        protocol: protocol.value,
                        host,
                        container,
                        loopback: protocol.value == Protocol::Tcp
                            && loopback.and_then(|l| l.value.as_bool()) != Some(false),
                    },
                    f.span,
                ));
            }
        }
        for b in node.children_named("bind") {
            let source = v.parse_str(b.arg(0), "ctm::invalid-path", AbsPath::parse);
            // Without a target the source path is the target too, and the
            // same rules hold for it.
            let target = match (b.arg(1), &source) {
                (Some(t), _) => v.parse_str(Some(t), "ctm::invalid-path", |s| {
                    bind_target(AbsPath::parse(s)?)
                }),
                (None, Some(src)) => match bind_target(src.value.clone()) {
                    Ok(path) => Some(Spanned::new(path, src.span)),
                    Err(message) => {
                        v.push(
                            Diagnostic::error("ctm::invalid-path", message, src.span)
                                .with_label("invalid value"),
                        );
                        None
                    }
                },
                (None, None) => None,
            };
            let (read_only, idmap) = (flag(b, "read-only"), flag(b, "idmap"));
            if let (Some(source), Some(target)) = (source, target) {
                p.binds.push(Spanned::new(
                    Bind {
                        source: source.value,
                        target: target.value,
                        read_only,
                        idmap,
                    },
                    b.span,
                ));
            }
        }
        for m in node.children_named("volume") {
            let volume = string_arg(Some(m));
            let target = v.parse_str(m.arg(1), "ctm::invalid-path", |s| {
                bind_target(AbsPath::parse(s)?)
            });
            if let (Some(volume), Some(target)) = (volume, target) {
                p.volumes.push(Spanned::new(
                    MountDraft {
                        volume,
                        target: target.value,
                        read_only: flag(m, "read-only"),
                        idmap: flag(m, "idmap"),
                    },
                    m.span,
                ));
            }
        }
        if let Some(limits) = node.child("limits") {
            p.memory = v
                .parse_str(limits.prop("memory"), "ctm::invalid-value", ByteSize::parse)
                .map(|m| m.value);
            if let Some(cpus) = limits.prop("cpus")
                && let Some(n) = cpus.value.as_number()
            {
                match CpuQuota::from_cpus(n) {
                    Ok(q) => p.cpu_quota = Some(q),
                    Err(message) => v.push(
                        Diagnostic::error("ctm::invalid-value", message, cpus.span)
                            .with_label("invalid value"),
                    ),
                }
            }
        }
        if let Some(ssh) = node.child("ssh") {
            let mut s = SshPartial {
                user: ssh
                    .child("user")
                    .and_then(|u| v.parse_str(u.arg(0), "ctm::invalid-value", UserName::parse))
                    .map(|u| u.value),
                keys: Vec::new(),
            };
            for key in ssh.children_named("authorized-key") {
                if let Some(k) = v.parse_str(key.arg(0), "ctm::invalid-ssh-key", SshKey::parse) {
                    s.keys.push(k.value);
                }
            }
            p.ssh = Some(s);
        }
        p.docker = node.child("docker").map(|d| d.name.span);
        p.nested = node.child("nested").map(|d| d.name.span);
        p.boot = node.child("boot").map(|d| d.name.span);
        for kind in ["network", "ssh", "docker", "nested", "packages"] {
            p.needs_init
                .extend(node.children_named(kind).map(|n| (kind, n.name.span)));
        }
        p.autostart = node
            .child("autostart")
            .and_then(|a| a.arg(0))
            .and_then(|a| a.value.as_bool());
        p.root = node
            .child("root")
            .and_then(|r| v.parse_str(r.arg(0), "ctm::invalid-value", RootMode::parse))
            .map(|r| r.value);
        p.packages = packages(v, node);
        if let Some(env) = node.child("environment") {
            for (key, value) in &env.props {
                let name = match EnvName::parse(&key.value) {
                    Ok(name) => name,
                    Err(message) => {
                        v.push(
                            Diagnostic::error("ctm::invalid-value", message, key.span)
                                .with_label("invalid name"),
                        );
                        continue;
                    }
                };
                if let Some(text) = v.parse_str(Some(value), "ctm::invalid-value", EnvValue::parse)
                {
                    p.environment.insert(name, text.value);
                }
            }
        }
        for check in node.children_named("check") {
            if let Some(c) = health_check(v, check) {
                p.checks.push(Spanned::new(c, check.span));
            }
        }
        for node in &node.children {
            let verdict = match node.name.value.as_str() {
                "allow" => Verdict::Allow,
                "deny" => Verdict::Deny,
                _ => continue,
            };
            if let Some(rule) = rule(v, verdict, node) {
                p.rules.push(Spanned::new(rule, node.span));
            }
        }
        for r in node.children_named("route") {
            let destination = v.parse_str(r.arg(0), "ctm::invalid-address", route_destination);
            let via = v.parse_str(r.prop("via"), "ctm::invalid-address", parse_ip);
            if let (Some(destination), Some(via)) = (destination, via) {
                p.routes.push(Spanned::new(
                    Route {
                        destination: destination.value,
                        via: via.value,
                    },
                    via.span,
                ));
            }
        }
        p.backup = node.child("backup").and_then(|b| backup(v, b));
        p
    }

    /// The entries of its lists, which inheriting copies.
    fn entries(&self) -> usize {
        self.forwards.len()
            + self.binds.len()
            + self.volumes.len()
            + self.packages.len()
            + self.environment.len()
            + self.checks.len()
            + self.rules.len()
            + self.routes.len()
            + self.ssh.as_ref().map_or(0, |s| s.keys.len())
    }

    /// `self` inherits from `base`: own values win, lists are merged.
    fn over(&self, base: &Partial) -> Partial {
        // Sets, not scans of the lists: a list can be long, and a scan per
        // entry is quadratic.
        let mut packages = base.packages.clone();
        let inherited: HashSet<&PackageName> = base.packages.iter().collect();
        packages.extend(
            self.packages
                .iter()
                .filter(|p| !inherited.contains(p))
                .cloned(),
        );
        let mut environment = base.environment.clone();
        environment.extend(self.environment.clone());
        let ssh = match (&base.ssh, &self.ssh) {
            (Some(b), Some(s)) => {
                let mut keys = b.keys.clone();
                let inherited: HashSet<&str> = b.keys.iter().map(SshKey::as_str).collect();
                keys.extend(
                    s.keys
                        .iter()
                        .filter(|k| !inherited.contains(k.as_str()))
                        .cloned(),
                );
                Some(SshPartial {
                    user: s.user.clone().or_else(|| b.user.clone()),
                    keys,
                })
            }
            (b, s) => s.clone().or_else(|| b.clone()),
        };
        Partial {
            from: self.from.clone(),
            image: self.image.clone().or_else(|| base.image.clone()),
            // The container's own networks replace its template's, as one
            // list: the first is the one on host0.
            network: self.network.clone().or_else(|| base.network.clone()),
            more_networks: if self.network.is_some() {
                self.more_networks.clone()
            } else {
                base.more_networks.clone()
            },
            forwards: base
                .forwards
                .iter()
                .chain(&self.forwards)
                .cloned()
                .collect(),
            binds: base.binds.iter().chain(&self.binds).cloned().collect(),
            volumes: base.volumes.iter().chain(&self.volumes).cloned().collect(),
            memory: self.memory.or(base.memory),
            cpu_quota: self.cpu_quota.or(base.cpu_quota),
            ssh,
            docker: self.docker.or(base.docker),
            nested: self.nested.or(base.nested),
            boot: self.boot.or(base.boot),
            needs_init: base
                .needs_init
                .iter()
                .chain(&self.needs_init)
                .copied()
                .collect(),
            autostart: self.autostart.or(base.autostart),
            root: self.root.or(base.root),
            packages,
            environment,
            checks: base.checks.iter().chain(&self.checks).cloned().collect(),
            // The container's own rules first: the first rule that matches
            // decides, and the more particular one should.
            rules: self.rules.iter().chain(&base.rules).cloned().collect(),
            routes: base.routes.iter().chain(&self.routes).cloned().collect(),
            // A block is one schedule: the container's replaces its template's.
            backup: self.backup.clone().or_else(|| base.backup.clone()),
        }
    }
}

/// A route's destination: a network with its prefix length and no bits
/// set past it (the kernel would drop them, and the route would not be
/// what the host file says).
fn route_destination(s: &str) -> Result<IpNet, String> {
    let net: IpNet = parse_interface_address(s, "IP")?;
    if net != net.trunc() {
        return Err(format!(
            "`{s}` has bits set past its prefix length; the network is `{}`",
            net.trunc()
        ));
    }
    Ok(net)
}

/// A `backup` block; `None` where a value was bad (reported) or missing
/// (reported by the checker).
pub(super) fn backup(v: &mut Validator, node: &Node) -> Option<BackupSchedule> {
    let to = v.parse_str(
        node.child("to").and_then(|t| t.arg(0)),
        "ctm::invalid-value",
        AbsPath::parse,
    );
    let every = v.parse_str(
        node.child("every").and_then(|e| e.arg(0)),
        "ctm::invalid-calendar",
        Calendar::parse,
    );
    let keep = match node.child("keep").and_then(|k| k.arg(0)) {
        None => Ok(None),
        Some(keep) => match keep.value.as_integer() {
            Some(n) => match u32::try_from(n).ok().and_then(std::num::NonZeroU32::new) {
                Some(n) => Ok(Some(n)),
                None => {
                    v.push(
                        Diagnostic::error(
                            "ctm::invalid-value",
                            if n < 1 {
                                format!("`keep {n}` would keep no backup; keep at least 1")
                            } else {
                                format!("`keep {n}` is more than the most ctm counts, {}", u32::MAX)
                            },
                            keep.span,
                        )
                        .with_label("invalid value")
                        .with_help("leave `keep` out to keep every archive"),
                    );
                    Err(())
                }
            },
            // Not an integer: reported by the checker.
            None => Err(()),
        },
    };
    Some(BackupSchedule {
        to: to?.value,
        every: every?.value,
        keep: keep.ok()?,
    })
}

/// One `check`: exactly one probe, and a timeout.
fn health_check(v: &mut Validator, node: &Node) -> Option<HealthCheck> {
    let timeout = match node.prop("timeout") {
        Some(t) => {
            v.parse_str(Some(t), "ctm::invalid-value", CheckTimeout::parse)?
                .value
        }
        None => CheckTimeout::DEFAULT,
    };
    let probe = match (node.prop("tcp"), node.prop("command")) {
        (Some(tcp), None) => Probe::Tcp(port(v, Some(tcp))?),
        (None, Some(command)) => Probe::Command(
            v.parse_str(Some(command), "ctm::invalid-value", CommandLine::parse)?
                .value,
        ),
        (tcp, _) => {
            let both = tcp.is_some();
            v.push(
                Diagnostic::error(
                    "ctm::check-probe",
                    if both {
                        "a check has both `tcp` and `command`"
                    } else {
                        "a check needs `tcp` or `command`"
                    },
                    node.span,
                )
                .with_label(if both { "two probes" } else { "nothing to check" })
                .with_help("write one probe per check: `check tcp=80` or `check command=\"systemctl is-system-running --wait\"`"),
            );
            return None;
        }
    };
    Some(HealthCheck { probe, timeout })
}

/// One `allow` or `deny`: a port only with its protocol.
fn rule(v: &mut Validator, verdict: Verdict, node: &Node) -> Option<RuleDraft> {
    let protocol = match node.arg(0) {
        Some(arg) => Some(v.parse_str(Some(arg), "ctm::invalid-value", Protocol::parse)?),
        None => None,
    };
    let port = match node.prop("port") {
        Some(value) => Some((port(v, Some(value))?, value.span)),
        None => None,
    };
    let traffic = match (protocol, port) {
        (None, None) => Traffic::All,
        (Some(protocol), None) => Traffic::Protocol {
            protocol: protocol.value,
        },
        (Some(protocol), Some((port, _))) => Traffic::Port {
            protocol: protocol.value,
            port,
        },
        (None, Some((_, span))) => {
            v.push(
                Diagnostic::error(
                    "ctm::port-without-protocol",
                    format!("`{}` names a port but no protocol", node.name.value),
                    span,
                )
                .with_label("tcp or udp?")
                .with_help(format!(
                    "write the protocol first: {} \"tcp\" port=…",
                    node.name.value
                )),
            );
            return None;
        }
    };
    Some(RuleDraft {
        verdict,
        traffic,
        from: string_arg_of(node.prop("from")),
    })
}

fn string_arg_of(value: Option<&Spanned<crate::config::Value>>) -> Option<Spanned<String>> {
    let value = value?;
    Some(Spanned::new(value.value.as_str()?.to_string(), value.span))
}

/// Where a bind may not go, whatever the container does.
fn bind_target(path: AbsPath) -> Result<AbsPath, String> {
    if path.as_str() == "/" {
        return Err("cannot bind over the container's root directory".into());
    }
    if path.is_within("/sys/fs/cgroup") {
        return Err(format!(
            "cannot bind over {path}: systemd-nspawn mounts the container's own cgroup tree there, \
             in a cgroup namespace, and a bind over it breaks booting (systemd#11703)"
        ));
    }
    Ok(path)
}

/// A boolean property, false when absent (or reported as mistyped).
fn flag(node: &Node, name: &str) -> bool {
    node.prop(name)
        .and_then(|r| r.value.as_bool())
        .unwrap_or(false)
}

fn string_arg(node: Option<&Node>) -> Option<Spanned<String>> {
    let arg = node?.arg(0)?;
    Some(Spanned::new(arg.value.as_str()?.to_string(), arg.span))
}

fn port(v: &mut Validator, value: Option<&Spanned<crate::config::Value>>) -> Option<Port> {
    let value = value?;
    let i = value.value.as_integer()?;
    match Port::from_integer(i) {
        Ok(p) => Some(p),
        Err(message) => {
            v.push(
                Diagnostic::error("ctm::invalid-port", message, value.span)
                    .with_label("not a port"),
            );
            None
        }
    }
}

/// How many list entries (packages, environment variables, forwards,
/// binds, SSH keys and checks) containers may inherit from templates, all
/// containers together. Each container gets its own copy, so without a
/// bound a file of a large template and many small containers stands for
/// a host quadratic in its size. A host of 1,000 containers that each
/// inherit 100 entries uses a tenth of it.
pub const MAX_INHERITED: usize = 1_000_000;

/// How many templates a `from` chain may have, counting a template being
/// resolved: a host needs two or three, and a bound keeps what chains copy
/// linear in the size of the file.
pub const MAX_TEMPLATE_CHAIN: usize = 16;

/// Resolves templates by name, remembering results and reporting each
/// missing template, cycle or overlong chain once.
struct Templates<'a> {
    /// Template names as written, for suggestions.
    names: Vec<&'a str>,
    read: HashMap<Name, Partial>,
    /// Each template with its chain merged in, and how many templates
    /// that chain has, itself included.
    resolved: HashMap<Name, (Partial, usize)>,
    reported_cycles: BTreeSet<Vec<String>>,
}

impl Templates<'_> {
    /// `partial` (the template `own_name`, or a container) with its whole
    /// `from` chain merged in, and how many templates that chain has (not
    /// counting `own_name`). The chain is walked up to a template already
    /// resolved (or one without `from`, a missing one, a cycle, or the
    /// limit), then merged down, each template on the way resolved once:
    /// no recursion, however long the chain.
    fn inherit(
        &mut self,
        v: &mut Validator,
        partial: &Partial,
        own_name: Option<&Name>,
    ) -> (Partial, usize) {
        let mut seen: Vec<&Name> = own_name.into_iter().collect();
        let mut chain: Vec<Name> = Vec::new();
        let mut base: Option<(Partial, usize)> = None;
        let mut from = partial.from.as_ref();
        while let Some(reference) = from {
            let name = match Name::parse(&reference.value) {
                Ok(name) if self.read.contains_key(&name) => name,
                _ => {
                    let names = &self.names;
                    v.push_with(|| unknown_reference("template", reference, names));
                    break;
                }
            };
            if let Some(pos) = seen.iter().position(|s| **s == name) {
                report_cycle(&mut self.reported_cycles, v, &seen[pos..], &name, reference);
                break;
            }
            // Templates in the chain with this one and those above it.
            let total = seen.len() + self.resolved.get(&name).map_or(1, |(_, depth)| *depth);
            if total > MAX_TEMPLATE_CHAIN {
                v.push(
                    Diagnostic::error(
                        "ctm::template-chain",
                        format!(
                            "this `from` makes a chain of more than {MAX_TEMPLATE_CHAIN} templates"
                        ),
                        reference.span,
                    )
                    .with_label("one template too many")
                    .with_help("let the template inherit from one nearer the top of the chain"),
                );
                break;
            }
            if let Some(resolved) = self.resolved.get(&name) {
                base = Some(resolved.clone());
                break;
            }
            let Some((name, own)) = self.read.get_key_value(&name) else {
                break;
            };
            seen.push(name);
            chain.push(name.clone());
            from = own.from.as_ref();
        }
        let mut merged = base;
        for name in chain.into_iter().rev() {
            let own = &self.read[&name];
            let resolved = match merged {
                Some((base, depth)) => (own.over(&base), depth + 1),
                None => (own.clone(), 1),
            };
            self.resolved.insert(name, resolved.clone());
            merged = Some(resolved);
        }
        match merged {
            Some((base, depth)) => (partial.over(&base), depth),
            None => (partial.clone(), 0),
        }
    }
}

/// Reports the cycle `names` → `closing`, once whichever template it is
/// found from.
fn report_cycle(
    reported: &mut BTreeSet<Vec<String>>,
    v: &mut Validator,
    names: &[&Name],
    closing: &Name,
    at: &Spanned<String>,
) {
    let mut cycle: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut key = cycle.clone();
    key.sort();
    if reported.insert(key) {
        cycle.push(closing.to_string());
        v.push(
            Diagnostic::error(
                "ctm::template-cycle",
                format!(
                    "templates inherit from each other in a cycle: {}",
                    cycle.join(" → ")
                ),
                at.span,
            )
            .with_label("closes the cycle")
            .with_help("remove one of the `from` lines in the cycle"),
        );
    }
}

/// Checks every container and assigns addresses; returns the containers
/// and the new lock.
pub(super) fn containers(
    v: &mut Validator,
    doc: &Document,
    images: &BTreeMap<Name, (SourceSpan, Image)>,
    networks: &BTreeMap<Name, NetworkEntry>,
    volumes: &BTreeMap<Name, Volume>,
    previous: &Lock,
) -> (
    BTreeMap<Name, Container>,
    Lock,
    RouteSpans,
    Vec<NetworkSpan>,
) {
    let defined = v.named(doc, "template");
    let read = defined
        .iter()
        .map(|(name, (_, node))| (name.clone(), Partial::read(v, node)))
        .collect();
    let mut templates = Templates {
        names: defined.keys().map(Name::as_str).collect(),
        read,
        resolved: HashMap::new(),
        reported_cycles: BTreeSet::new(),
    };
    // Templates nobody uses still get their chains checked.
    for name in defined.keys() {
        if !templates.resolved.contains_key(name)
            && let Some(own) = templates.read.get(name).cloned()
        {
            let (merged, above) = templates.inherit(v, &own, Some(name));
            templates.resolved.insert(name.clone(), (merged, above + 1));
        }
    }

    let image_names: Vec<&str> = images.keys().map(Name::as_str).collect();
    let network_names: Vec<&str> = networks.keys().map(Name::as_str).collect();
    let volume_names: Vec<&str> = volumes.keys().map(Name::as_str).collect();
    let mut drafts: BTreeMap<Name, (SourceSpan, Partial)> = BTreeMap::new();
    let mut inherited = 0;
    for (name, (span, node)) in v.named(doc, "container") {
        let own = Partial::read(v, node);
        let (merged, _) = templates.inherit(v, &own, None);
        inherited += merged.entries().saturating_sub(own.entries());
        if inherited > MAX_INHERITED
            && let Some(from) = &own.from
        {
            v.push(
                Diagnostic::error(
                    "ctm::too-much-inherited",
                    format!(
                        "containers inherit more than {MAX_INHERITED} list entries from templates in all"
                    ),
                    from.span,
                )
                .with_label("the limit is crossed here")
                .with_help(
                    "each container that uses a template gets its own copy of the template's \
                     packages, environment, forwards, binds, keys and checks; \
                     use smaller templates, or fewer containers on one host",
                ),
            );
            break;
        }
        drafts.insert(name, (span, merged));
    }

    // References and per-container rules.
    let mut inside: BTreeMap<Name, Vec<IfName>> = BTreeMap::new();
    for (name, (span, p)) in &drafts {
        match &p.image {
            None => v.push(
                Diagnostic::error(
                    "ctm::missing-image",
                    format!("container `{name}` has no image"),
                    *span,
                )
                .with_label("no image to create it from")
                .with_help("add `image \"NAME\"`, or `from` a template that sets one"),
            ),
            Some(Some(image)) if !is_defined(image, images, &v.broken_images) => {
                v.push_with(|| unknown_reference("image", image, &image_names))
            }
            Some(_) => {}
        }
        if let Some(attach) = &p.network
            && !is_defined(&attach.network, networks, &v.broken_networks)
        {
            v.push_with(|| unknown_reference("network", &attach.network, &network_names));
        }
        for attach in &p.more_networks {
            if !is_defined(&attach.network, networks, &v.broken_networks) {
                v.push_with(|| unknown_reference("network", &attach.network, &network_names));
            }
        }
        if let Some(names) = interfaces(v, name, p) {
            inside.insert(name.clone(), names);
        }
        for mount in &p.volumes {
            if !is_defined(&mount.value.volume, volumes, &v.broken_volumes) {
                v.push_with(|| unknown_reference("volume", &mount.value.volume, &volume_names));
            }
        }
        conflicts(v, name, *span, p);
        application(v, name, p, images);
    }

    let lock = assign_addresses(v, &mut drafts, networks, previous);
    forwards(v, &drafts, networks);
    tcp_checks(v, &drafts, networks);
    let rules = rules(v, &drafts, networks);
    installs_without_a_way_out(v, &drafts, images, networks);

    let mut containers = BTreeMap::new();
    let mut route_spans = RouteSpans::new();
    let mut network_spans = Vec::new();
    let mut rules = rules;
    for (name, (_, p)) in drafts {
        let Some(Some(image)) = p.image else { continue };
        let Ok(image) = Name::parse(&image.value) else {
            continue;
        };
        let network = p.network.and_then(|a| {
            Some(Attachment {
                network: Name::parse(&a.network.value).ok()?,
                ipv4: a.ipv4.map(|s| s.value),
                ipv6: a.ipv6.map(|s| s.value),
            })
        });
        let more_networks = p
            .more_networks
            .iter()
            .zip(inside.remove(&name).unwrap_or_default())
            .enumerate()
            .filter_map(|(i, (a, interface))| {
                let host_interface = host_interface(&name, i + 1);
                network_spans.push(NetworkSpan {
                    container: name.clone(),
                    interface: interface.clone(),
                    host_interface: host_interface.clone(),
                    span: a.interface.as_ref().map_or(a.network.span, |s| s.span),
                });
                Some(ExtraAttachment {
                    attachment: Attachment {
                        network: Name::parse(&a.network.value).ok()?,
                        ipv4: a.ipv4.as_ref().map(|s| s.value),
                        ipv6: a.ipv6.as_ref().map(|s| s.value),
                    },
                    interface,
                    host_interface,
                })
            })
            .collect();
        let rules = rules.remove(&name).unwrap_or_default();
        route_spans.insert(name.clone(), p.routes.iter().map(|r| r.span).collect());
        containers.insert(
            name.clone(),
            Container {
                name,
                image,
                network,
                more_networks,
                forwards: p.forwards.into_iter().map(|f| f.value).collect(),
                binds: p.binds.into_iter().map(|b| b.value).collect(),
                volumes: p
                    .volumes
                    .into_iter()
                    .filter_map(|m| {
                        let m = m.value;
                        Some(VolumeMount {
                            volume: Name::parse(&m.volume.value).ok()?,
                            target: m.target,
                            read_only: m.read_only,
                            idmap: m.idmap,
                        })
                    })
                    .collect(),
                limits: Limits {
                    memory: p.memory,
                    cpu_quota: p.cpu_quota,
                },
                ssh: p.ssh.map(|s| Ssh {
                    user: s.user.unwrap_or_else(UserName::root),
                    authorized_keys: s.keys,
                }),
                docker: p.docker.is_some(),
                nested: p.nested.is_some(),
                boot: p.boot.is_some(),
                autostart: p.autostart.unwrap_or(true),
                root: p.root.unwrap_or_default(),
                packages: p.packages,
                environment: p.environment,
                checks: p.checks.into_iter().map(|c| c.value).collect(),
                rules,
                routes: p.routes.iter().map(|r| r.value).collect(),
                backup: p.backup,
            },
        );
    }
    (containers, lock, route_spans, network_spans)
}

/// Where a container's interface on a network after its first was named
/// (or, named after the network, where the network was given): for the
/// checks against links and the host's interfaces.
pub(super) struct NetworkSpan {
    pub container: Name,
    pub interface: IfName,
    pub host_interface: IfName,
    pub span: SourceSpan,
}

/// The names inside the container of its networks after the first: one
/// diagnostic per network given twice, bad name or name used twice;
/// `None` if any was reported.
fn interfaces(v: &mut Validator, container: &Name, p: &Partial) -> Option<Vec<IfName>> {
    let first = p.network.as_ref()?;
    let mut ok = true;
    let mut seen_networks: Vec<&Spanned<String>> = vec![&first.network];
    let mut names: Vec<IfName> = Vec::new();
    let mut seen_names: BTreeMap<IfName, SourceSpan> = BTreeMap::new();
    for attach in &p.more_networks {
        if let Some(earlier) = seen_networks
            .iter()
            .find(|n| n.value == attach.network.value)
        {
            v.push(
                Diagnostic::error(
                    "ctm::network-twice",
                    format!(
                        "container `{container}` is attached to network `{}` twice",
                        attach.network.value
                    ),
                    attach.network.span,
                )
                .with_label("attached again here")
                .with_related(earlier.span, "first attached here")
                .with_help("a container has one interface on each network; remove one of them"),
            );
            ok = false;
            continue;
        }
        seen_networks.push(&attach.network);
        let (written, span, given) = match &attach.interface {
            Some(i) => (i.value.as_str(), i.span, true),
            None => (attach.network.value.as_str(), attach.network.span, false),
        };
        let parsed = IfName::parse(written).and_then(|name| {
            if name.as_str() == "host0" {
                Err("`host0` is the interface of the container's first network".into())
            } else {
                Ok(name)
            }
        });
        let name = match parsed {
            Ok(name) => name,
            Err(problem) => {
                let message = if given {
                    problem
                } else {
                    format!(
                        "`{written}`, the default name of the interface on network `{written}`, is not an interface name here: {problem}"
                    )
                };
                v.push(
                    Diagnostic::error("ctm::network-interface", message, span)
                        .with_label("needs an interface name")
                        .with_help(format!(
                            "name it (at most 15 characters): network \"{}\" interface=\"eth1\"",
                            attach.network.value
                        )),
                );
                ok = false;
                continue;
            }
        };
        if let Some(first) = seen_names.get(&name) {
            v.push(
                Diagnostic::error(
                    "ctm::duplicate-interface",
                    format!("container `{container}` has two interfaces called `{name}`"),
                    span,
                )
                .with_label("used again here")
                .with_related(*first, "first used here")
                .with_help("name one of them: network \"NAME\" interface=\"eth2\""),
            );
            ok = false;
            continue;
        }
        seen_names.insert(name.clone(), span);
        names.push(name);
    }
    ok.then_some(names)
}

/// The span of each route's `via`, by container, in the order of its
/// routes: the links are validated after the containers.
pub(super) type RouteSpans = BTreeMap<Name, Vec<SourceSpan>>;

/// Whether `name` is defined. Images and networks defined with an error
/// count as defined: their error was reported where they are.
fn is_defined<T>(
    name: &Spanned<String>,
    defined: &BTreeMap<Name, T>,
    broken: &BTreeSet<Name>,
) -> bool {
    let name = name.value.as_str();
    defined.contains_key(name) || broken.contains(name)
}

/// A container of an OCI image runs the image's entrypoint, not an init
/// (unless it says `boot`): nothing inside it configures a network,
/// starts an SSH server, Docker, or installs packages.
fn application(
    v: &mut Validator,
    name: &Name,
    p: &Partial,
    images: &BTreeMap<Name, (SourceSpan, Image)>,
) {
    if p.boot.is_some() {
        return;
    }
    let Some(Some(image)) = &p.image else { return };
    let Some((_, defined)) = images.get(image.value.as_str()) else {
        return;
    };
    if !defined.is_oci() {
        return;
    }
    for (kind, span) in &p.needs_init {
        v.push(
            Diagnostic::error(
                "ctm::application-needs-boot",
                format!(
                    "container `{name}` runs the entrypoint of OCI image `{}`, which cannot take `{kind}`",
                    image.value
                ),
                *span,
            )
            .with_label("done by the container's own systemd")
            .with_related(image.span, "an OCI image: its entrypoint runs, not an init")
            .with_help(format!(
                "add `boot` to the container to boot the image's init (it must have systemd), or remove `{kind}`"
            )),
        );
    }
}

/// Settings that would break Docker or nested containers.
fn conflicts(v: &mut Validator, name: &Name, span: SourceSpan, p: &Partial) {
    if let (Some(docker), None) = (p.docker, &p.network) {
        v.push(
            Diagnostic::error(
                "ctm::docker-needs-network",
                format!("`docker` in container `{name}` needs a private network"),
                docker,
            )
            .with_label("Docker would share the host's network")
            .with_related(span, "this container has no `network`")
            .with_help("attach the container to a network: without one it shares the host's network namespace, and Docker would rewrite the host's own firewall rules"),
        );
    }
    // Binds and volumes are both mounts: the same rules hold for each.
    let mounts: Vec<(&str, &AbsPath, bool, bool, SourceSpan)> = p
        .binds
        .iter()
        .map(|b| {
            let (v, span) = (&b.value, b.span);
            ("bind", &v.target, v.read_only, v.idmap, span)
        })
        .chain(p.volumes.iter().map(|m| {
            let (v, span) = (&m.value, m.span);
            ("volume", &v.target, v.read_only, v.idmap, span)
        }))
        .collect();
    if let Some(nested_span) = p.nested {
        for (kind, target, _, _, span) in mounts.iter().filter(|m| m.3) {
            v.push(
                Diagnostic::error(
                    "ctm::idmap-without-userns",
                    format!(
                        "`idmap` on the {kind} at {target} has nothing to map: a `nested` container shares the host's users",
                    ),
                    *span,
                )
                .with_label("ID-mapped here")
                .with_related(nested_span, "`nested` set here")
                .with_help("remove idmap=#true: the container sees the files with their host owners already"),
            );
        }
    }
    for (feature, feature_span, protected) in [
        ("docker", p.docker, "/var/lib/docker"),
        ("nested", p.nested, "/var/lib/machines"),
    ] {
        let Some(feature_span) = feature_span else {
            continue;
        };
        for (kind, target, _, _, span) in mounts.iter().filter(|m| m.2) {
            if target.is_within(protected) {
                v.push(
                    Diagnostic::error(
                        "ctm::bind-breaks-feature",
                        format!("a read-only {kind} at {target} breaks `{feature}`"),
                        *span,
                    )
                    .with_label("read-only here")
                    .with_related(feature_span, format!("`{feature}` set here"))
                    .with_help(format!(
                        "`{feature}` writes to {protected}; make the {kind} writable or move it"
                    )),
                );
            }
        }
    }
}

/// Checks explicit addresses and assigns the missing ones, keeping the
/// addresses recorded in `previous` wherever they are still valid.
fn assign_addresses(
    v: &mut Validator,
    drafts: &mut BTreeMap<Name, (SourceSpan, Partial)>,
    networks: &BTreeMap<Name, NetworkEntry>,
    previous: &Lock,
) -> Lock {
    let mut lock = Lock::empty();
    // Per network: allocators seeded with explicit addresses, which win.
    let mut v4: BTreeMap<Name, Allocator<Ipv4Addr>> = BTreeMap::new();
    let mut v6: BTreeMap<Name, Allocator<Ipv6Addr>> = BTreeMap::new();
    let mut explicit4: BTreeMap<(Name, Ipv4Addr), (Name, SourceSpan)> = BTreeMap::new();
    let mut explicit6: BTreeMap<(Name, Ipv6Addr), (Name, SourceSpan)> = BTreeMap::new();

    // Explicit addresses in source order, so that of two containers with
    // the same address the one written later is blamed. A subnet given but
    // invalid was reported; addresses are not checked against it.
    let mut claims4: Vec<(&Name, &Name, &NetworkEntry, Spanned<Ipv4Addr>)> = Vec::new();
    let mut claims6: Vec<(&Name, &Name, &NetworkEntry, Spanned<Ipv6Addr>)> = Vec::new();
    for (container, (_, p)) in drafts.iter() {
        for (_, attach) in p.attaches() {
            let Some((net_name, entry)) = networks.get_key_value(attach.network.value.as_str())
            else {
                continue;
            };
            if let Some(addr) = &attach.ipv4
                && !entry.ipv4_invalid
            {
                claims4.push((container, net_name, entry, addr.clone()));
            }
            if let Some(addr) = &attach.ipv6
                && !entry.ipv6_invalid
            {
                claims6.push((container, net_name, entry, addr.clone()));
            }
        }
    }
    claims4.sort_by_key(|(_, _, _, addr)| addr.span.offset());
    claims6.sort_by_key(|(_, _, _, addr)| addr.span.offset());
    for (container, net_name, entry, addr) in claims4 {
        let problem = match &entry.network.ipv4 {
            None => Some(format!("network `{net_name}` has no IPv4 subnet")),
            Some(subnet) => address::container_v4_problem(addr.value, &subnet.address),
        };
        if let Some(problem) = problem {
            v.push(address_error(problem, addr.span, entry.ipv4_span));
        } else if let Some((other, first)) = explicit4.get(&(net_name.clone(), addr.value)) {
            v.push(duplicate_address(
                addr.value.to_string(),
                addr.span,
                other,
                *first,
            ));
        } else {
            explicit4.insert(
                (net_name.clone(), addr.value),
                (container.clone(), addr.span),
            );
        }
    }
    for (container, net_name, entry, addr) in claims6 {
        let problem = match &entry.network.ipv6 {
            None => Some(format!("network `{net_name}` has no IPv6 subnet")),
            Some(subnet) => address::container_v6_problem(addr.value, &subnet.address),
        };
        if let Some(problem) = problem {
            v.push(address_error(problem, addr.span, entry.ipv6_span));
        } else if let Some((other, first)) = explicit6.get(&(net_name.clone(), addr.value)) {
            v.push(duplicate_address(
                addr.value.to_string(),
                addr.span,
                other,
                *first,
            ));
        } else {
            explicit6.insert(
                (net_name.clone(), addr.value),
                (container.clone(), addr.span),
            );
        }
    }
    for (name, entry) in networks {
        if let Some(subnet) = &entry.network.ipv4 {
            v4.insert(name.clone(), Allocator::v4(&subnet.address));
        }
        if let Some(subnet) = &entry.network.ipv6 {
            v6.insert(name.clone(), Allocator::v6(&subnet.address));
        }
    }
    for (net, addr) in explicit4.keys() {
        if let Some(a) = v4.get_mut(net) {
            a.take(*addr);
        }
    }
    for (net, addr) in explicit6.keys() {
        if let Some(a) = v6.get_mut(net) {
            a.take(*addr);
        }
    }

    // Which containers need an address of which family, on which network.
    // The index is the attachment's place: 0 the first network.
    let mut wanting: Vec<(Name, usize, Name, bool, bool)> = Vec::new();
    for (container, (_, p)) in drafts.iter() {
        for (index, attach) in p.attaches() {
            let Some((net, _)) = networks.get_key_value(attach.network.value.as_str()) else {
                continue;
            };
            let want4 = attach.ipv4.is_none() && v4.contains_key(net);
            let want6 = attach.ipv6.is_none() && v6.contains_key(net);
            if want4 || want6 {
                wanting.push((container.clone(), index, net.clone(), want4, want6));
            }
        }
    }

    // First keep what the lock recorded; then hand out new addresses.
    let mut assigned: BTreeMap<(Name, usize), (Option<Ipv4Addr>, Option<Ipv6Addr>)> =
        BTreeMap::new();
    for (container, index, net, want4, want6) in &wanting {
        let recorded = if *index == 0 {
            previous
                .containers
                .get(container.as_str())
                .filter(|r| r.network == net.as_str())
                .map(|r| (r.ipv4, r.ipv6))
        } else {
            previous
                .attached
                .get(container.as_str())
                .and_then(|nets| nets.get(net.as_str()))
                .map(|r| (r.ipv4, r.ipv6))
        };
        let mut kept4 = None;
        let mut kept6 = None;
        if let (true, Some(rec), Some(subnet)) = (
            *want4,
            recorded.and_then(|r| r.0),
            networks[net].network.ipv4,
        ) && address::container_v4_problem(rec, &subnet.address).is_none()
        {
            if let Some((other, span)) = explicit4.get(&(net.clone(), rec)) {
                v.push(taken_from_lock(rec.to_string(), *span, other, container));
            } else if let Some(a) = v4.get_mut(net)
                && !a.is_taken(rec)
            {
                a.take(rec);
                kept4 = Some(rec);
            }
        }
        if let (true, Some(rec), Some(subnet)) = (
            *want6,
            recorded.and_then(|r| r.1),
            networks[net].network.ipv6,
        ) && address::container_v6_problem(rec, &subnet.address).is_none()
        {
            if let Some((other, span)) = explicit6.get(&(net.clone(), rec)) {
                v.push(taken_from_lock(rec.to_string(), *span, other, container));
            } else if let Some(a) = v6.get_mut(net)
                && !a.is_taken(rec)
            {
                a.take(rec);
                kept6 = Some(rec);
            }
        }
        assigned.insert((container.clone(), *index), (kept4, kept6));
    }
    for (container, index, net, want4, want6) in &wanting {
        let (mut got4, mut got6) = assigned
            .get(&(container.clone(), *index))
            .copied()
            .unwrap_or_default();
        let span = drafts
            .get(container)
            .map(|(s, _)| *s)
            .unwrap_or(SourceSpan::new(0.into(), 0));
        if *want4 && got4.is_none() {
            got4 = v4.get_mut(net).and_then(Allocator::next_free);
            if got4.is_none() {
                v.push(exhausted("IPv4", net, container, span));
            }
        }
        if *want6 && got6.is_none() {
            got6 = v6.get_mut(net).and_then(Allocator::next_free);
            if got6.is_none() {
                v.push(exhausted("IPv6", net, container, span));
            }
        }
        if let Some((_, p)) = drafts.get_mut(container)
            && let Some(attach) = p.attach_mut(*index)
        {
            let no_span = attach.network.span;
            if let Some(a) = got4 {
                attach.ipv4 = Some(Spanned::new(a, no_span));
            }
            if let Some(a) = got6 {
                attach.ipv6 = Some(Spanned::new(a, no_span));
            }
        }
        let (ipv4, ipv6) = (got4.filter(|_| *want4), got6.filter(|_| *want6));
        if *index == 0 {
            lock.containers.insert(
                container.to_string(),
                Assigned {
                    network: net.to_string(),
                    ipv4,
                    ipv6,
                },
            );
        } else {
            lock.attached
                .entry(container.to_string())
                .or_default()
                .insert(net.to_string(), Addresses { ipv4, ipv6 });
        }
    }
    lock
}

fn address_error(problem: String, span: SourceSpan, subnet_span: Option<SourceSpan>) -> Diagnostic {
    let mut d = Diagnostic::error("ctm::invalid-container-address", problem, span)
        .with_label("cannot be used for a container")
        .with_help("pick a free host address inside the network's subnet, or leave it out and ctm assigns one");
    if let Some(subnet) = subnet_span {
        d = d.with_related(subnet, "the network's subnet");
    }
    d
}

fn duplicate_address(
    addr: String,
    span: SourceSpan,
    other: &Name,
    first: SourceSpan,
) -> Diagnostic {
    Diagnostic::error(
        "ctm::duplicate-address",
        format!("{addr} is already the address of container `{other}`"),
        span,
    )
    .with_label("used again here")
    .with_related(first, format!("`{other}` has it"))
    .with_help("every container needs its own address")
}

fn taken_from_lock(addr: String, span: SourceSpan, claimer: &Name, holder: &Name) -> Diagnostic {
    Diagnostic::error(
        "ctm::duplicate-address",
        format!("{addr} is already assigned to container `{holder}` (recorded in the lock file)"),
        span,
    )
    .with_label(format!("`{claimer}` claims it here"))
    .with_help(format!(
        "choose another address; ctm never moves `{holder}` by itself. To let it pick a new one for `{holder}`, remove `{holder}` from the lock file"
    ))
}

fn exhausted(family: &str, net: &Name, container: &Name, span: SourceSpan) -> Diagnostic {
    Diagnostic::error(
        "ctm::network-full",
        format!("network `{net}` has no free {family} address left for container `{container}`"),
        span,
    )
    .with_label("no address left")
    .with_help("use a larger subnet (a shorter prefix)")
}

/// A host port and protocol can be forwarded to one container only, and a
/// forward needs an address to go to.
fn forwards(
    v: &mut Validator,
    drafts: &BTreeMap<Name, (SourceSpan, Partial)>,
    networks: &BTreeMap<Name, NetworkEntry>,
) {
    // In source order, so the forward written later is the one blamed.
    let mut all: Vec<(&Name, &Partial, &Spanned<Forward>)> = drafts
        .iter()
        .flat_map(|(name, (_, p))| p.forwards.iter().map(move |f| (name, p, f)))
        .collect();
    all.sort_by_key(|(name, _, f)| (f.span.offset(), (*name).clone()));
    let mut seen: BTreeMap<(Protocol, Port), (Name, SourceSpan)> = BTreeMap::new();
    for (name, p, forward) in all {
        let f = forward.value;
        let has_address = p
            .network
            .as_ref()
            .is_some_and(|a| a.ipv4.is_some() || a.ipv6.is_some());
        if !has_address && !no_address_reported(p, networks) {
            v.push(
                Diagnostic::error(
                    "ctm::forward-without-address",
                    format!(
                        "container `{name}` has no address to forward {} port {} to",
                        f.protocol.as_str(),
                        f.host
                    ),
                    forward.span,
                )
                .with_label("nowhere to forward to")
                .with_help(match &p.network {
                    None => "attach the container to a network with `network \"NAME\"`".to_string(),
                    Some(a) => format!(
                        "network `{}` has no subnet: give it `ipv4` or `ipv6`",
                        a.network.value
                    ),
                }),
            );
        }
        match seen.get(&(f.protocol, f.host)) {
            Some((other, first)) => v.push(
                Diagnostic::error(
                    "ctm::duplicate-forward",
                    format!(
                        "host {} port {} is already forwarded to container `{other}`",
                        f.protocol.as_str(),
                        f.host
                    ),
                    forward.span,
                )
                .with_label("forwarded again here")
                .with_related(*first, "first forwarded here")
                .with_help("a host port can go to one container only; pick another host port"),
            ),
            None => {
                seen.insert((f.protocol, f.host), (name.clone(), forward.span));
            }
        }
    }
}

/// A TCP check connects to the container's addresses, so it needs one.
fn tcp_checks(
    v: &mut Validator,
    drafts: &BTreeMap<Name, (SourceSpan, Partial)>,
    networks: &BTreeMap<Name, NetworkEntry>,
) {
    for (name, (_, p)) in drafts {
        let has_address = p
            .network
            .as_ref()
            .is_some_and(|a| a.ipv4.is_some() || a.ipv6.is_some());
        if has_address || no_address_reported(p, networks) {
            continue;
        }
        for check in &p.checks {
            if let Probe::Tcp(port) = check.value.probe {
                v.push(
                    Diagnostic::error(
                        "ctm::check-without-address",
                        format!("container `{name}` has no address to check tcp port {port} on"),
                        check.span,
                    )
                    .with_label("nowhere to connect to")
                    .with_help(match &p.network {
                        None => "attach the container to a network with `network \"NAME\"`, or check with `command`".to_string(),
                        Some(a) => format!(
                            "network `{}` has no subnet: give it `ipv4` or `ipv6`",
                            a.network.value
                        ),
                    }),
                );
            }
        }
    }
}

/// Whether a container without an address is so for a reason reported
/// already: its network is unknown or defined with an error, has a subnet
/// given but invalid, or has no address left. Only a container on no
/// network, or on a network without subnets, is missing one unreported.
/// Packages a container needs that its image lacks (its own, the SSH
/// server for `ssh`, Docker for `docker`) are installed by apt inside the
/// running container, over its network: on an isolated network, apt would
/// fail on every apply. Only a debootstrap image's packages are known; any
/// other image may well have them.
fn installs_without_a_way_out(
    v: &mut Validator,
    drafts: &BTreeMap<Name, (SourceSpan, Partial)>,
    images: &BTreeMap<Name, (SourceSpan, Image)>,
    networks: &BTreeMap<Name, NetworkEntry>,
) {
    for (name, (_, p)) in drafts {
        let Some(attach) = &p.network else { continue };
        let isolated = networks
            .get(attach.network.value.as_str())
            .is_some_and(|e| e.network.egress == Egress::Isolated);
        let image = p.image.as_ref().and_then(|i| i.as_ref());
        let Some((_, image)) = image.and_then(|i| images.get(i.value.as_str())) else {
            continue;
        };
        if !isolated || !matches!(image.source, ImageSource::Debootstrap { .. }) {
            continue;
        }
        let has: HashSet<&str> = image.packages.iter().map(PackageName::as_str).collect();
        let needed = p
            .packages
            .iter()
            .map(PackageName::as_str)
            .chain(p.ssh.as_ref().map(|_| PackageName::SSH_SERVER))
            .chain(p.docker.map(|_| PackageName::DOCKER));
        let missing: BTreeSet<&str> = needed.filter(|n| !has.contains(n)).collect();
        if missing.is_empty() {
            continue;
        }
        v.push(
            Diagnostic::error(
                "ctm::install-on-isolated-network",
                format!(
                    "container `{name}` would install {} with apt from inside, but network `{}` is isolated",
                    missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
                    attach.network.value
                ),
                attach.network.span,
            )
            .with_label("no way out to a package mirror")
            .with_help(format!(
                "add them to the `packages` of image `{}` (installed when it is built), or give the network `egress \"nat\"` or `\"routed\"`",
                image.name
            )),
        );
    }
}

/// Each container's `allow` and `deny` rules with their `from` checked:
/// a known network other than the container's own. Rules with a problem
/// are reported and left out.
fn rules(
    v: &mut Validator,
    drafts: &BTreeMap<Name, (SourceSpan, Partial)>,
    networks: &BTreeMap<Name, NetworkEntry>,
) -> BTreeMap<Name, Vec<FirewallRule>> {
    let network_names: Vec<&str> = networks.keys().map(Name::as_str).collect();
    let mut all = BTreeMap::new();
    for (name, (_, p)) in drafts {
        let mut rules = Vec::new();
        for rule in &p.rules {
            let what = match rule.value.verdict {
                Verdict::Allow => "allow",
                Verdict::Deny => "deny",
            };
            let Some(_) = &p.network else {
                v.push(
                    Diagnostic::error(
                        "ctm::rule-without-network",
                        format!("container `{name}` has no network for `{what}` to filter"),
                        rule.span,
                    )
                    .with_label("no traffic is routed to this container")
                    .with_help("attach the container to a network with `network \"NAME\"`, or remove the rule"),
                );
                continue;
            };
            let from = match &rule.value.from {
                None => None,
                Some(from) => {
                    let known = networks.get_key_value(from.value.as_str());
                    match known {
                        None if v.broken_networks.contains(from.value.as_str()) => continue,
                        None => {
                            v.push_with(|| unknown_reference("network", from, &network_names));
                            continue;
                        }
                        Some((net, _))
                            if p.attaches().any(|(_, a)| net.as_str() == a.network.value) =>
                        {
                            v.push(
                                Diagnostic::error(
                                    "ctm::rule-own-network",
                                    format!(
                                        "`{what}` from `{net}`, the network container `{name}` is on, filters nothing"
                                    ),
                                    from.span,
                                )
                                .with_label("the container's own network")
                                .with_help("containers on one network reach each other over its bridge, which the firewall does not see; put the containers on two networks to filter between them"),
                            );
                            continue;
                        }
                        Some((net, _)) => Some(net.clone()),
                    }
                }
            };
            rules.push(FirewallRule {
                verdict: rule.value.verdict,
                traffic: rule.value.traffic,
                from,
            });
        }
        if !rules.is_empty() {
            all.insert(name.clone(), rules);
        }
    }
    all
}

fn no_address_reported(p: &Partial, networks: &BTreeMap<Name, NetworkEntry>) -> bool {
    let Some(attach) = &p.network else {
        return false;
    };
    match networks.get(attach.network.value.as_str()) {
        None => true,
        Some(entry) => {
            entry.network.ipv4.is_some()
                || entry.network.ipv6.is_some()
                || entry.ipv4_invalid
                || entry.ipv6_invalid
        }
    }
}
