//! The nftables ruleset: one table, `inet ctm`, replaced as a whole.
//!
//! The file declares the table, deletes it and defines it again. `nft -f`
//! applies a file as one kernel transaction (nftables wiki, "Atomic rule
//! replacement"), so the old table is swapped for the new one at once; the
//! empty declaration first makes the delete succeed on the very first load.
//! Only validated addresses, ports and interface names are written; no
//! user text reaches the ruleset.

use std::fmt::Write as _;

use super::{Artifacts, NFT_RULESET, NFT_UNIT, Owner};
use crate::model::{Egress, Host, Traffic, Verdict};

const UNIT_TEMPLATE: &str = include_str!("../../templates/ctm-nftables.service");
const RULESET_TEMPLATE: &str = include_str!("../../templates/ctm.nft");

/// The four chains of `table inet ctm`, each a list of rule lines.
pub struct Chains {
    pub prerouting: Vec<String>,
    pub output: Vec<String>,
    pub postrouting: Vec<String>,
    pub forward: Vec<String>,
}

impl Chains {
    /// Chain name → number of rules: what the live table must hold.
    pub fn rule_counts(&self) -> std::collections::BTreeMap<String, usize> {
        [
            ("prerouting", &self.prerouting),
            ("output", &self.output),
            ("postrouting", &self.postrouting),
            ("forward", &self.forward),
        ]
        .into_iter()
        .map(|(name, rules)| (name.to_string(), rules.len()))
        .collect()
    }
}

pub fn firewall(chains: &Chains, header: &[String], out: &mut Artifacts) {
    out.file(NFT_RULESET.into(), Owner::Firewall, ruleset(chains, header));
    let mut unit = String::new();
    for line in header {
        let _ = writeln!(unit, "# {}", super::ini::escape_controls(line));
    }
    unit.push_str(UNIT_TEMPLATE);
    out.file(NFT_UNIT.into(), Owner::Firewall, unit);
    out.symlink(
        "etc/systemd/system/multi-user.target.wants/ctm-nftables.service".into(),
        Owner::Firewall,
        &format!("/{NFT_UNIT}"),
    );
}

pub fn chains(host: &Host) -> Chains {
    let mut prerouting = Vec::new();
    let mut output = Vec::new();
    let mut postrouting = Vec::new();

    for container in host.containers.values() {
        let Some(attach) = &container.network else {
            continue;
        };
        for f in &container.forwards {
            let proto = f.protocol.as_str();
            let (host_port, port) = (f.host, f.container);
            if let Some(addr) = attach.ipv4 {
                let dnat = format!("{proto} dport {host_port} dnat ip to {addr}:{port}");
                prerouting.push(format!("meta nfproto ipv4 fib daddr type local {dnat}"));
                // Loopback is left out: DNAT from 127.0.0.1 to a bridge
                // needs route_localnet, which ctm does not turn on.
                output.push(format!(
                    "meta nfproto ipv4 fib daddr type local ip daddr != 127.0.0.0/8 {dnat}"
                ));
            }
            if let Some(addr) = attach.ipv6 {
                let dnat = format!("{proto} dport {host_port} dnat ip6 to [{addr}]:{port}");
                prerouting.push(format!("meta nfproto ipv6 fib daddr type local {dnat}"));
                output.push(format!(
                    "meta nfproto ipv6 fib daddr type local ip6 daddr != ::1 {dnat}"
                ));
            }
        }
    }
    if let Some(uplink) = &host.uplink {
        for network in host.networks.values() {
            if let Some(v4) = network.ipv4.filter(|s| s.nat) {
                postrouting.push(format!(
                    "ip saddr {} oifname \"{uplink}\" masquerade",
                    v4.address.trunc()
                ));
            }
            if let Some(v6) = network.ipv6.filter(|s| s.nat) {
                postrouting.push(format!(
                    "ip6 saddr {} oifname \"{uplink}\" masquerade",
                    v6.address.trunc()
                ));
            }
        }
    }
    Chains {
        prerouting,
        output,
        postrouting,
        forward: forward(host),
    }
}

/// The forward chain: what is routed to, from and between the networks.
/// Answers and port forwards first; then the containers' own rules, in
/// order; then each network's egress policy; then every other packet that
/// enters or leaves a network's bridge is dropped. The chain's policy
/// stays `accept`: traffic between interfaces that are not ctm's is not
/// ctm's to judge (a drop here would drop it whatever other tables say).
fn forward(host: &Host) -> Vec<String> {
    let mut forward = vec![
        "ct state established,related accept".to_string(),
        "ct status dnat accept".to_string(),
    ];
    if host.networks.is_empty() {
        return forward;
    }
    let bridges = format!(
        "{{ {} }}",
        host.networks
            .values()
            .map(|n| format!("\"{}\"", n.bridge))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for container in host.containers.values() {
        // A rule holds for the container's addresses on each of its
        // networks, the first's first: the rule lines of a container on
        // one network are as they always were.
        let attached: Vec<_> = container
            .attachments()
            .filter_map(|a| Some((a, host.networks.get(&a.network)?)))
            .collect();
        for rule in &container.rules {
            let from = match &rule.from {
                Some(name) => match host.networks.get(name) {
                    Some(peer) => format!(" iifname \"{}\"", peer.bridge),
                    None => continue,
                },
                None => String::new(),
            };
            let traffic = match rule.traffic {
                Traffic::All => String::new(),
                Traffic::Protocol { protocol } => format!(" meta l4proto {}", protocol.as_str()),
                Traffic::Port { protocol, port } => format!(" {} dport {port}", protocol.as_str()),
            };
            let verdict = match rule.verdict {
                Verdict::Allow => "accept",
                Verdict::Deny => "drop",
            };
            for (attach, network) in &attached {
                let addresses = [
                    attach.ipv4.map(|a| format!("ip daddr {a}")),
                    attach.ipv6.map(|a| format!("ip6 daddr {a}")),
                ];
                for daddr in addresses.into_iter().flatten() {
                    forward.push(format!(
                        "oifname \"{}\"{from} {daddr}{traffic} {verdict}",
                        network.bridge
                    ));
                }
            }
        }
    }
    for network in host.networks.values() {
        let bridge = &network.bridge;
        // Within a network traffic is bridged; with br_netfilter loaded
        // (as Docker does) it would come through here too.
        forward.push(format!("iifname \"{bridge}\" oifname \"{bridge}\" accept"));
        match network.egress {
            Egress::Nat => {
                forward.push(format!("iifname \"{bridge}\" oifname != {bridges} accept"));
            }
            Egress::Routed => {
                forward.push(format!("iifname \"{bridge}\" oifname != {bridges} accept"));
                forward.push(format!("iifname != {bridges} oifname \"{bridge}\" accept"));
            }
            Egress::Isolated => {}
        }
    }
    forward.push(format!("iifname {bridges} drop"));
    forward.push(format!("oifname {bridges} drop"));
    forward
}

pub fn ruleset(chains: &Chains, header: &[String]) -> String {
    let mut comment = String::new();
    for line in header {
        let _ = writeln!(comment, "# {}", super::ini::escape_controls(line));
    }
    fill(
        RULESET_TEMPLATE,
        &[
            ("{header}", comment),
            ("{prerouting}", rules(&chains.prerouting)),
            ("{output}", rules(&chains.output)),
            ("{postrouting}", rules(&chains.postrouting)),
            ("{forward}", rules(&chains.forward)),
        ],
    )
}

/// Rule lines, indented to sit inside a chain of the template.
fn rules(rules: &[String]) -> String {
    rules.iter().map(|r| format!("\t\t{r}\n")).collect()
}

/// Replaces each placeholder of a template once, in one pass, so that no
/// replacement text is ever scanned for placeholders itself.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        match values.iter().find(|(key, _)| rest.starts_with(key)) {
            Some((key, value)) => {
                out.push_str(value);
                rest = &rest[key.len()..];
            }
            None => {
                out.push('{');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}
